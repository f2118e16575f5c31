//! Held mass deletions, with real mounts on the embedded server and Apache:
//! - `rm -r` of a folder of 500 files is held: the server gets no DELETE, the mount says
//!   `attention`, `edrive deletions` lists it, `edrive sync` says why it fails;
//! - the hold survives a SIGKILL of the daemon and a remount;
//! - `--restore` brings the tree back as the server has it (with its pin), `--confirm`
//!   deletes it there;
//! - 5 files, below the threshold, are deleted as before.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

const FILES: usize = 500;

fn seed(share: &Path) {
    for sub in ["a", "b"] {
        fs::create_dir_all(share.join("big").join(sub)).expect("mkdir");
    }
    for i in 0..FILES {
        let sub = if i % 2 == 0 { "a" } else { "b" };
        fs::write(
            share.join(format!("big/{sub}/f{i:03}.txt")),
            format!("file {i}\n"),
        )
        .expect("seed");
    }
    fs::create_dir_all(share.join("small")).expect("mkdir");
    for i in 0..5 {
        fs::write(share.join(format!("small/s{i}.txt")), b"small\n").expect("seed");
    }
}

fn deletes_under(srv: &dyn TestServer, dir: &str) -> usize {
    without_probe(srv.requests())
        .iter()
        .filter(|(m, p, _)| m == "DELETE" && p.contains(dir))
        .count()
}

fn files_below(dir: &Path) -> usize {
    walk(dir).values().filter(|(is_dir, _, _)| !is_dir).count()
}

fn held_deletions(kind: Server) {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    seed(&share);
    let mut srv = start_server(kind, &share);
    srv.chown_data();
    let cache = tmp.path().join("cache");
    let opts = MountOpts::default()
        .cache_dir(&cache)
        .dir_cache_ttl("1h")
        .arg("--upload-delay=200ms")
        .arg("--poll-interval=0");
    let m = Mount::new(&srv.url(), opts.clone());
    assert_eq!(files_below(&m.join("big")), FILES, "the tree is listed");
    m.edrive_ok(&["sync"]);
    let pin_path = m.join("big/a").display().to_string();
    let (st, out, err) = m.edrive_plain(&["pin", &pin_path]);
    assert!(st.success(), "pin: {out}{err}");

    // Below the threshold: deleted as before.
    srv.reset_requests();
    fs::remove_dir_all(m.join("small")).expect("rm -r small");
    m.edrive_ok(&["sync"]);
    assert!(!share.join("small").exists(), "5 files go through");
    assert!(deletes_under(srv.as_ref(), "/small") > 0);

    // A mass deletion is held.
    srv.reset_requests();
    fs::remove_dir_all(m.join("big")).expect("rm -r big");
    assert!(!m.join("big").exists(), "gone from the mount");
    let (st, out, err) = m.edrive(&["sync"]);
    assert!(
        !st.success(),
        "sync must say the deletions are not sent: {out}{err}"
    );
    assert!(err.contains("deletion(s) held"), "sync says why: {err}");
    assert_eq!(files_below(&share.join("big")), FILES, "server untouched");
    assert_eq!(deletes_under(srv.as_ref(), "/big"), 0);
    let s = m.status_json();
    assert_eq!(s["state"], "attention", "{s}");
    assert_eq!(s["sync"]["attention"]["held"], FILES as u64 + 3, "{s}");
    let (_, out, _) = m.edrive(&["status"]);
    assert!(out.contains("attention (503 deletion(s) held"), "{out}");
    let list: serde_json::Value =
        serde_json::from_str(&m.edrive_ok(&["deletions", "--json"])).expect("json");
    assert_eq!(list["held"][0]["path"], "/big", "{list}");
    assert_eq!(list["held"][0]["entries"], FILES as u64 + 3, "{list}");
    let text = m.edrive_ok(&["deletions"]);
    assert!(text.contains("/big/  held: 503 entries"), "{text}");

    // Survives a SIGKILL of the daemon and a remount.
    let pid = m.pid().expect("daemon pid");
    signal_pid(pid, libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(pid)));
    drop(m);
    let m = Mount::new(&srv.url(), opts.clone());
    let s = m.status_json();
    assert_eq!(s["state"], "attention", "{s}");
    let (st, _, _) = m.edrive(&["sync"]);
    assert!(!st.success());
    assert!(!m.join("big").exists(), "still deleted here");
    assert_eq!(files_below(&share.join("big")), FILES, "server untouched");
    assert_eq!(deletes_under(srv.as_ref(), "/big"), 0);

    // Restore: back as the server has it now (a file changed there meanwhile).
    fs::write(share.join("big/b/f001.txt"), b"changed on the server\n").expect("edit");
    srv.chown_data();
    let big = m.join("big").display().to_string();
    let (st, out, err) = m.edrive_plain(&["deletions", &big, "--restore"]);
    assert!(st.success(), "restore: {out}{err}");
    assert!(out.contains("503"), "{out}");
    assert_eq!(files_below(&m.join("big")), FILES, "the tree is back");
    assert_eq!(
        fs::read(m.join("big/b/f001.txt")).expect("read"),
        b"changed on the server\n"
    );
    assert_eq!(
        fs::read(m.join("big/a/f000.txt")).expect("read"),
        b"file 0\n"
    );
    assert_eq!(
        xattr(&m.join("big/a"), "user.edrive.pinned"),
        "1",
        "pin restored"
    );
    m.edrive_ok(&["sync"]);
    assert_eq!(m.status_json()["sync"]["pending"], 0);
    assert_eq!(deletes_under(srv.as_ref(), "/big"), 0);

    // Confirm: deleted on the server.
    fs::remove_dir_all(m.join("big")).expect("rm -r big");
    let (st, _, _) = m.edrive(&["sync"]);
    assert!(!st.success(), "held again");
    assert!(share.join("big").exists());
    m.edrive_ok(&["deletions", "--confirm"]);
    m.edrive_ok(&["sync"]);
    assert!(!share.join("big").exists(), "the server has the deletion");
    assert_eq!(m.status_json()["state"], "synced");
    assert!(m.edrive_ok(&["deletions"]).contains("no deletion is held"));
    m.unmount();
}

#[test]
fn held_deletions_embedded() {
    held_deletions(Server::Embedded);
}

#[test]
fn held_deletions_apache() {
    held_deletions(Server::Apache);
}
