//! Issue 4 acceptance, continued: `edrive resolve` does what each choice says, a file
//! locked on the server by someone else waits (state `locked`) while the rest uploads, and
//! two mounts of one share editing different files converge. Real mounts; "another
//! client" is a direct WebDAV request or the second mount.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

#[test]
fn resolve_use_local_use_remote_keep_both() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    for n in ["a", "b", "c"] {
        fs::write(share.join(format!("{n}.txt")), format!("base {n}")).expect("seed");
    }
    let srv = EmbeddedServer::start(&share, None);
    let url = srv.url();
    let m = Mount::new(
        &url,
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--on-conflict=ask")
            .arg("--upload-delay=100ms"),
    );
    for n in ["a", "b", "c"] {
        assert_eq!(
            fs::read(m.join(&format!("{n}.txt"))).expect("read"),
            format!("base {n}").as_bytes()
        );
    }
    m.edrive_ok(&["suspend"]);
    for n in ["a", "b", "c"] {
        dav::put(&url, &format!("/{n}.txt"), format!("remote {n}").as_bytes());
        fs::write(m.join(&format!("{n}.txt")), format!("local {n}, edited")).expect("edit");
    }
    m.edrive_ok(&["resume"]);
    let _ = m.edrive(&["sync"]);
    let listed = wait_until(Duration::from_secs(20), || {
        let (_, out, _) = m.edrive(&["conflicts", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v["conflicts"].as_array().map(|a| a.len()))
            == Some(3)
    });
    let (_, out, _) = m.edrive(&["conflicts", "--json"]);
    assert!(listed, "three conflicts listed: {out}");
    assert_eq!(xattr(&m.join("a.txt"), "user.edrive.state"), "conflict");
    // Policy "ask": the local versions stay visible and nothing was uploaded.
    assert_eq!(fs::read(m.join("a.txt")).expect("read"), b"local a, edited");
    for n in ["a", "b", "c"] {
        assert_eq!(
            dav::get(&url, &format!("/{n}.txt")).expect("on server"),
            format!("remote {n}").as_bytes()
        );
    }

    // --use-local: the server gets the local version.
    let a = m.join("a.txt");
    let (st, out, err) = m.edrive_plain(&["resolve", a.to_str().expect("utf-8"), "--use-local"]);
    assert!(st.success(), "{out}{err}");
    assert!(
        wait_until(Duration::from_secs(20), || dav::get(&url, "/a.txt")
            .as_deref()
            == Some(&b"local a, edited"[..])),
        "a.txt: the local version reaches the server"
    );
    // ... and the server's version it replaced is kept, as --use-remote keeps ours.
    let kept = out
        .split("kept at ")
        .nth(1)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("resolve says where the server's version went: {out}"));
    assert_eq!(
        fs::read(&kept).expect("the kept server version"),
        b"remote a"
    );

    // --use-remote: the mount shows the server's version; the local bytes are kept.
    let b = m.join("b.txt");
    let (st, out, err) = m.edrive_plain(&["resolve", b.to_str().expect("utf-8"), "--use-remote"]);
    assert!(st.success(), "{out}{err}");
    assert_eq!(fs::read(&b).expect("read"), b"remote b");
    let kept = out
        .split("kept at ")
        .nth(1)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("resolve says where the local version went: {out}"));
    assert_eq!(
        fs::read(&kept).expect("the kept local version"),
        b"local b, edited"
    );
    assert_eq!(dav::get(&url, "/b.txt").expect("on server"), b"remote b");

    // --keep-both: the server's keeps the name, the local one becomes a conflict copy.
    let c = m.join("c.txt");
    let (st, out, err) = m.edrive_plain(&["resolve", c.to_str().expect("utf-8"), "--keep-both"]);
    assert!(st.success(), "{out}{err}");
    let _ = m.edrive(&["sync"]);
    let both = wait_until(Duration::from_secs(20), || {
        let server = file_contents(&share);
        server.get("c.txt").map(|d| d.as_slice()) == Some(&b"remote c"[..])
            && server
                .iter()
                .any(|(k, d)| k.starts_with("c (conflict ") && d.as_slice() == b"local c, edited")
    });
    assert!(
        both,
        "c.txt kept both: {:?}",
        file_contents(&share).keys().collect::<Vec<_>>()
    );
    let mine = file_contents(m.path());
    assert_eq!(
        mine.get("c.txt").map(|d| d.as_slice()),
        Some(&b"remote c"[..])
    );
    assert!(mine.keys().any(|k| k.starts_with("c (conflict ")));

    let (_, out, _) = m.edrive(&["conflicts", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["conflicts"].as_array().map(|a| a.len()), Some(0), "{out}");
    m.unmount();
}

fn locked_file_waits(kind: Server) {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    fs::write(share.join("locked.txt"), b"base").expect("seed");
    fs::write(share.join("free.txt"), b"base").expect("seed");
    let srv = start_server(kind, &share);
    let url = srv.url();
    let m = Mount::new(
        &url,
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--upload-delay=100ms"),
    );
    assert_eq!(fs::read(m.join("locked.txt")).expect("read"), b"base");
    let t = std::time::Instant::now();
    let token = dav::lock(&url, "/locked.txt", "colleague");
    fs::write(m.join("locked.txt"), b"my edit of the locked file").expect("edit");
    fs::write(m.join("free.txt"), b"my edit of the free file").expect("edit");
    let _ = m.edrive(&["sync"]);
    assert!(
        wait_until(Duration::from_secs(20), || dav::get(&url, "/free.txt")
            .as_deref()
            == Some(&b"my edit of the free file"[..])),
        "the other file uploads"
    );
    assert!(
        wait_until(Duration::from_secs(20), || xattr(
            &m.join("locked.txt"),
            "user.edrive.state"
        ) == "locked"),
        "state: {}",
        xattr(&m.join("locked.txt"), "user.edrive.state")
    );
    let path = m.join("locked.txt").display().to_string();
    let (_, out, _) = m.edrive_plain(&["status", &path, "--json"]);
    assert!(
        out.contains("\"problem\": \"locked"),
        "status PATH says why: {out}"
    );
    assert_eq!(dav::get(&url, "/locked.txt").expect("on server"), b"base");
    assert_eq!(
        fs::read(m.join("locked.txt")).expect("read"),
        b"my edit of the locked file"
    );
    eprintln!("{kind:?}: locked state after {:?}", t.elapsed());
    dav::unlock(&url, "/locked.txt", &token);
    assert!(
        wait_until(Duration::from_secs(90), || dav::get(&url, "/locked.txt")
            .as_deref()
            == Some(&b"my edit of the locked file"[..])),
        "the edit uploads once the lock is gone; log:\n{}",
        m.log()
    );
    eprintln!("{kind:?}: uploaded after {:?}", t.elapsed());
    m.unmount();
}

#[test]
fn locked_file_waits_embedded() {
    locked_file_waits(Server::Embedded);
}

#[test]
fn locked_file_waits_apache() {
    locked_file_waits(Server::Apache);
}

#[test]
fn two_mounts_editing_different_files_converge() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("shared")).expect("mkdir");
    let srv = EmbeddedServer::start(&share, None);
    let url = srv.url();
    let opts = || {
        MountOpts::default()
            .arg("--poll-interval=1s")
            .arg("--upload-delay=100ms")
    };
    let a = Mount::new(&url, opts());
    let b = Mount::new(&url, opts());
    // Both look at the shared folder, so both poll it.
    assert!(fs::read_dir(a.join("shared")).is_ok() && fs::read_dir(b.join("shared")).is_ok());
    let write_many = |m: &Mount, who: &str| {
        fs::create_dir_all(m.join(who)).expect("mkdir");
        for i in 0..15 {
            fs::write(m.join(&format!("{who}/{i}.txt")), format!("{who} {i}")).expect("write");
            fs::write(
                m.join(&format!("shared/{who}-{i}.txt")),
                format!("{who} shared {i}"),
            )
            .expect("write");
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| write_many(&a, "alice"));
        s.spawn(|| write_many(&b, "bob"));
    });
    let _ = a.edrive(&["sync"]);
    let _ = b.edrive(&["sync"]);
    let converged = wait_until(Duration::from_secs(30), || {
        let server = file_contents(&share);
        server.len() == 60 && file_contents(a.path()) == server && file_contents(b.path()) == server
    });
    assert!(
        converged,
        "server {} files, alice's mount {}, bob's {}",
        file_contents(&share).len(),
        file_contents(a.path()).len(),
        file_contents(b.path()).len()
    );
    a.unmount();
    b.unmount();
}
