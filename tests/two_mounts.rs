//! Issue 19: two people, one folder. Two mounts (A and B, separate caches) of one share on
//! a real server, the embedded one and Apache. Each case makes the two sides' changes
//! concurrent by suspending both mounts while they are made, then resumes and syncs:
//! - the same file edited on both sides;
//! - a file edited on one side and deleted on the other, both orders;
//! - a file edited inside a folder the other side deleted (and a new file elsewhere
//!   uploads meanwhile);
//! - a rename onto a name the other side has just taken;
//! - the same file renamed to two different names (x→y on A, x→z on B);
//! - the same new name created on both sides;
//! - a file edited on one side while the other renames it, or moves it to another folder;
//! - a folder deleted on one side while a file in it is edited on the other, both orders.
//!
//! Afterwards: both `edrive sync` succeed, every version a close produced is on the server
//! under a visible name (or was deleted or overwritten by its own side after), no
//! `.edrive-` name is on the server, nothing is left with a problem, and both mounts show
//! the server's tree.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use common::*;

fn opts() -> MountOpts {
    MountOpts::default()
        .arg("--poll-interval=1s")
        .arg("--upload-delay=0s")
        .dir_cache_ttl("1s")
}

/// Syncs both mounts, twice over, with a poll interval between: each sees what the
/// other's sync did.
fn settle(a: &Mount, b: &Mount) {
    for _ in 0..2 {
        for m in [a, b] {
            m.edrive_ok(&["sync"]);
        }
        std::thread::sleep(Duration::from_millis(2500));
    }
}

fn scenario(kind: Server) {
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("d")).unwrap();
    fs::create_dir_all(share.join("keep")).unwrap();
    fs::create_dir_all(share.join("e")).unwrap();
    for (rel, data) in [
        ("same.txt", "base same\n"),
        ("edit-del.txt", "base edit-del\n"),
        ("del-edit.txt", "base del-edit\n"),
        ("d/f.txt", "base d/f\n"),
        ("d/g.txt", "base d/g\n"),
        ("x1.txt", "base x1\n"),
        ("x2.txt", "base x2\n"),
        ("r.txt", "base r\n"),
        ("m.txt", "base m\n"),
        ("e/h.txt", "base e/h\n"),
    ] {
        fs::write(share.join(rel), data).unwrap();
    }
    let srv = start_server(kind, &share);
    let url = srv.url();
    let a = Mount::new(&url, opts());
    let b = Mount::new(&url, opts());
    // Both have seen (and cached) everything.
    for m in [&a, &b] {
        for rel in [
            "same.txt",
            "edit-del.txt",
            "del-edit.txt",
            "d/f.txt",
            "x1.txt",
            "x2.txt",
        ] {
            assert!(fs::read(m.join(rel)).is_ok(), "{rel}");
        }
    }
    let mut written: BTreeSet<Vec<u8>> = BTreeSet::new();
    written.insert(b"base x1\n".to_vec());
    written.insert(b"base x2\n".to_vec());
    let mut w = |m: &Mount, rel: &str, data: &str| {
        fs::write(m.join(rel), data).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        written.insert(data.as_bytes().to_vec());
    };

    a.edrive_ok(&["suspend"]);
    b.edrive_ok(&["suspend"]);
    // The same file, both sides.
    w(&a, "same.txt", "A's edit of same\n");
    w(&b, "same.txt", "B's edit of same, longer\n");
    // Edit here, delete there; and the other order.
    w(&a, "edit-del.txt", "A's edit of edit-del\n");
    fs::remove_file(b.join("edit-del.txt")).unwrap();
    fs::remove_file(a.join("del-edit.txt")).unwrap();
    w(&b, "del-edit.txt", "B's edit of del-edit\n");
    // An edit inside a folder the other side deletes.
    w(&a, "d/f.txt", "A's edit of d/f\n");
    fs::remove_dir_all(b.join("d")).unwrap();
    // Rename onto a name the other side takes; the same file renamed two ways.
    w(&a, "t1.txt", "A's new t1\n");
    fs::rename(b.join("x1.txt"), b.join("t1.txt")).unwrap();
    fs::rename(a.join("x2.txt"), a.join("y.txt")).unwrap();
    fs::rename(b.join("x2.txt"), b.join("z.txt")).unwrap();
    // The same new name on both sides; an edit while the other side renames the file.
    w(&a, "new.txt", "A's new.txt\n");
    w(&b, "new.txt", "B's new.txt, longer\n");
    w(&a, "r.txt", "A's edit of r\n");
    fs::rename(b.join("r.txt"), b.join("r2.txt")).unwrap();
    // An edit while the other side moves the file to another folder; a folder deleted
    // here while a file in it is edited there (the other order of the d/ case).
    w(&a, "m.txt", "A's edit of m\n");
    fs::rename(b.join("m.txt"), b.join("keep/m.txt")).unwrap();
    fs::remove_dir_all(a.join("e")).unwrap();
    w(&b, "e/h.txt", "B's edit of e/h\n");
    // B goes first, then A: A's changes meet B's on the server.
    b.edrive_ok(&["resume"]);
    b.edrive_ok(&["sync"]);
    a.edrive_ok(&["resume"]);
    // A new file elsewhere uploads at once, whatever waits.
    w(&a, "keep/new.txt", "A's new file elsewhere\n");
    settle(&a, &b);

    let tree = file_contents(&share);
    let stray: Vec<&String> = tree.keys().filter(|k| k.contains(".edrive-")).collect();
    assert!(
        stray.is_empty(),
        "{kind:?}: work names on the server: {stray:?}"
    );
    let on_server: BTreeSet<&Vec<u8>> = tree.values().collect();
    let lost: Vec<String> = written
        .iter()
        .filter(|c| !on_server.contains(c))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(
        lost.is_empty(),
        "{kind:?}: versions lost: {lost:?}; server: {:?}",
        tree.keys().collect::<Vec<_>>()
    );
    assert!(
        !tree.contains_key("d/g.txt"),
        "B deleted d/g.txt: {:?}",
        tree.keys()
    );
    for (name, m) in [("A", &a), ("B", &b)] {
        let s = m.status_json();
        let problems = s["sync"]["problems"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            problems.is_empty(),
            "{kind:?}: {name} has stuck changes: {problems:?}"
        );
        assert_eq!(
            file_contents(m.path()),
            tree,
            "{kind:?}: {name} does not show the server's tree"
        );
    }
    a.unmount();
    b.unmount();
}

#[test]
fn two_mounts_on_the_embedded_server_lose_nothing() {
    scenario(Server::Embedded);
}

#[test]
fn two_mounts_on_apache_lose_nothing() {
    scenario(Server::Apache);
}
