//! Read-only spaces, with a real mount on Apache whose folder `ro/` takes only reading
//! methods (`<LimitExcept GET HEAD OPTIONS PROPFIND> Require all denied`):
//! - changes made before the refusal is known are kept, shown as `refused` (the mount in
//!   `attention`, not `transferring`), and settled by `resolve --save-as` / `--discard`;
//! - from then on `touch`, `echo >>`, `mkdir`, `rm` and `mv` there fail with EACCES
//!   before any request (the server's log), and the mode bits show no write permission;
//! - the folder next to it stays writable.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const WRITES: [&str; 6] = ["PUT", "MKCOL", "DELETE", "MOVE", "COPY", "PROPPATCH"];

fn eacces(what: &str, r: std::io::Result<()>) {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        other => panic!("{what}: expected EACCES, got {other:?}"),
    }
}

fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(data)
}

#[test]
fn read_only_space_on_apache() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("ro/sub")).expect("mkdir");
    fs::create_dir_all(share.join("rw")).expect("mkdir");
    fs::write(share.join("ro/doc.txt"), b"original\n").expect("seed");
    fs::write(share.join("ro/other.txt"), b"other\n").expect("seed");
    fs::write(share.join("rw/y.txt"), b"y\n").expect("seed");
    let mut srv = ApacheServer::start_read_only(&share, None, &["ro"]);
    let m = Mount::new(
        &srv.url(),
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--upload-delay=100ms")
            .arg("--poll-interval=0"),
    );
    assert_eq!(fs::read(m.join("ro/doc.txt")).expect("read"), b"original\n");

    // Before the server said no: the changes are taken, and kept when refused.
    if let Err(e) = append(&m.join("ro/doc.txt"), b"edit\n") {
        let log_file = m.status_json()["log_file"]
            .as_str()
            .unwrap_or("")
            .to_string();
        panic!(
            "an edit is taken at first: {e}\n{}",
            fs::read_to_string(log_file).unwrap_or_default()
        );
    }
    fs::write(m.join("ro/new.txt"), b"new\n").expect("a new file is taken at first");
    let (st, out, err) = m.edrive(&["sync"]);
    assert!(!st.success(), "sync must fail: {out}{err}");
    assert!(
        err.contains("refused by the server"),
        "sync says why: {err}"
    );
    assert_eq!(
        fs::read(share.join("ro/doc.txt")).expect("server copy"),
        b"original\n"
    );
    assert!(!share.join("ro/new.txt").exists());
    assert_eq!(xattr(&m.join("ro/doc.txt"), "user.edrive.state"), "refused");
    assert_eq!(xattr(&m.join("ro/new.txt"), "user.edrive.state"), "refused");
    assert_eq!(
        fs::read(m.join("ro/doc.txt")).expect("kept"),
        b"original\nedit\n"
    );
    let s = m.status_json();
    assert_eq!(s["state"], "attention", "{s}");
    assert_eq!(s["sync"]["attention"]["refused"], 2, "{s}");

    // Now known: refused at once, nothing sent.
    srv.reset_requests();
    eacces("touch", fs::write(m.join("ro/t.txt"), b"").map(|_| ()));
    eacces("echo >>", append(&m.join("ro/other.txt"), b"x"));
    eacces("mkdir", fs::create_dir(m.join("ro/d")));
    eacces("rm", fs::remove_file(m.join("ro/other.txt")));
    eacces("rm -r", fs::remove_dir(m.join("ro/sub")));
    eacces(
        "mv out",
        fs::rename(m.join("ro/other.txt"), m.join("rw/other.txt")),
    );
    eacces("mv in", fs::rename(m.join("rw/y.txt"), m.join("ro/y.txt")));
    for rel in ["ro", "ro/other.txt", "ro/sub"] {
        let mode = fs::metadata(m.join(rel))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "{rel}: mode {mode:o} has write bits");
    }
    assert_ne!(
        fs::metadata(m.join("rw/y.txt"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o200,
        0
    );
    assert_eq!(
        xattr(&m.join("ro/other.txt"), "user.edrive.state"),
        "read-only"
    );
    let entry: serde_json::Value = serde_json::from_str(
        &m.edrive_plain(&[
            "status",
            &m.join("ro/other.txt").display().to_string(),
            "--json",
        ])
        .1,
    )
    .expect("json");
    assert_eq!(entry["state"], "read-only", "{entry}");
    let writes: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|(method, _, _)| WRITES.contains(&method.as_str()))
        .collect();
    assert!(writes.is_empty(), "no write request may go out: {writes:?}");

    // Settled: saved elsewhere, or discarded; the server's version is back.
    let saved = tmp.path().join("saved.txt");
    let (st, out, err) = m.edrive_plain(&[
        "resolve",
        &m.join("ro/doc.txt").display().to_string(),
        "--save-as",
        &saved.display().to_string(),
    ]);
    assert!(st.success(), "save-as: {out}{err}");
    assert_eq!(fs::read(&saved).expect("saved"), b"original\nedit\n");
    assert_eq!(fs::read(m.join("ro/doc.txt")).expect("read"), b"original\n");
    let (st, out, err) = m.edrive_plain(&[
        "resolve",
        &m.join("ro/new.txt").display().to_string(),
        "--discard",
    ]);
    assert!(st.success(), "discard: {out}{err}");
    assert!(!m.join("ro/new.txt").exists());
    m.edrive_ok(&["sync"]);
    assert_eq!(m.status_json()["state"], "synced");

    // The folder next to it is not affected.
    fs::write(m.join("rw/ok.txt"), b"ok\n").expect("write");
    m.edrive_ok(&["sync"]);
    assert_eq!(fs::read(share.join("rw/ok.txt")).expect("server"), b"ok\n");
    m.unmount();
}
