//! Issue 4 acceptance: changes made by others show up in the mount, and when both sides
//! changed something, the three-way rules decide and no version is lost. Real mounts
//! against the embedded server and Apache httpd with mod_dav; "another client" is a direct
//! WebDAV request ([`common::dav`]) or a second mount.
//!
//! # The matrix
//! Every pair {local: unchanged, modified, deleted, renamed} × {remote: the same four}, on
//! one file each (`LR.txt`, L and R ∈ u m d r), made while the mount's write-back and
//! poller are suspended, then resumed — once with the daemon running throughout, once
//! across an unmount (remote changes made while nothing is mounted). The outcome (the
//! server and the mount agree on it; `rn-local`/`rn-remote` are the two rename targets):
//!
//! | local \ remote | unchanged   | modified                      | deleted        | renamed                       |
//! |----------------|-------------|-------------------------------|----------------|-------------------------------|
//! | unchanged      | base        | remote                        | gone           | rn-remote: base               |
//! | modified       | local       | remote + conflict copy: local | local (re-up)  | local + rn-remote: base       |
//! | deleted        | gone        | remote (restored)             | gone           | rn-remote: base               |
//! | renamed        | rn-local    | rn-local: remote              | rn-local: base | rn-local: base + rn-remote: base |
//!
//! Every byte either side wrote is on the server under some name.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// With a poll interval of [`POLL`], a change must show within twice that; the grace
/// covers a loaded machine.
const POLL: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(3);

fn remote_changes_appear(kind: Server) {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("sub")).expect("mkdir");
    fs::write(share.join("edited.txt"), b"old content").expect("seed");
    fs::write(share.join("renamed.txt"), b"a file that moves").expect("seed");
    fs::write(share.join("deleted.txt"), b"doomed").expect("seed");
    fs::write(share.join("sub/kept.txt"), b"kept").expect("seed");
    let srv = start_server(kind, &share);
    let url = srv.url();
    // A listing is trusted for an hour: only the poller can bring these changes.
    let m = Mount::new(
        &url,
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg(&format!("--poll-interval={}s", POLL.as_secs())),
    );
    assert_eq!(
        fs::read(m.join("edited.txt")).expect("read"),
        b"old content"
    );
    assert_eq!(names(&m.join("sub")), ["kept.txt"]);
    let moved_ino = fs::metadata(m.join("renamed.txt")).expect("stat").ino();

    dav::put(&url, "/edited.txt", b"new content, and longer");
    dav::put(&url, "/sub/new.txt", b"fresh");
    dav::mv(&url, "/renamed.txt", "/renamed-now.txt");
    dav::delete(&url, "/deleted.txt");
    let t = Instant::now();
    let want_root = ["edited.txt", "renamed-now.txt", "sub"];
    let seen = wait_until(2 * POLL + GRACE, || {
        names(m.path()) == want_root
            && names(&m.join("sub")) == ["kept.txt", "new.txt"]
            && fs::read(m.join("edited.txt")).ok().as_deref()
                == Some(&b"new content, and longer"[..])
    });
    assert!(
        seen,
        "after {:?}: root {:?}, sub {:?}, edited.txt {:?}",
        t.elapsed(),
        names(m.path()),
        names(&m.join("sub")),
        fs::read(m.join("edited.txt")).map(|d| String::from_utf8_lossy(&d).into_owned())
    );
    eprintln!("{kind:?}: remote changes visible after {:?}", t.elapsed());
    assert_eq!(
        fs::read(m.join("renamed-now.txt")).expect("read"),
        b"a file that moves"
    );
    assert_eq!(
        fs::metadata(m.join("renamed-now.txt")).expect("stat").ino(),
        moved_ino,
        "a file renamed on the server keeps its inode (and its cached content and pins)"
    );
    assert!(!m.join("deleted.txt").exists());
    m.unmount();
}

#[test]
fn remote_changes_appear_embedded() {
    remote_changes_appear(Server::Embedded);
}

#[test]
fn remote_changes_appear_apache() {
    remote_changes_appear(Server::Apache);
}

const KINDS: [char; 4] = ['u', 'm', 'd', 'r'];

fn base(c: &str) -> Vec<u8> {
    format!("base {c}\n").into_bytes()
}
fn local(c: &str) -> Vec<u8> {
    format!("local edit of {c}\n").into_bytes()
}
fn remote(c: &str) -> Vec<u8> {
    format!("remote version of {c}, longer\n").into_bytes()
}

/// What the matrix table above says cell `c` ends as: (name, content); a name ending in
/// `(conflict` stands for any conflict copy of that file.
fn expected(l: char, r: char) -> Vec<(String, Vec<u8>)> {
    let c = format!("{l}{r}");
    let name = format!("{c}.txt");
    let rn_local = format!("{c}.rn-local.txt");
    let rn_remote = format!("{c}.rn-remote.txt");
    let mut v = match (l, r) {
        ('u', 'u') => vec![(name, base(&c))],
        ('u', 'm') => vec![(name, remote(&c))],
        ('u', 'd') | ('d', 'u') | ('d', 'd') => vec![],
        ('u', 'r') | ('d', 'r') => vec![(rn_remote, base(&c))],
        ('m', 'u') | ('m', 'd') => vec![(name, local(&c))],
        ('m', 'm') => vec![(name, remote(&c)), (format!("{c} (conflict"), local(&c))],
        ('m', 'r') => vec![(name, local(&c)), (rn_remote, base(&c))],
        ('d', 'm') => vec![(name, remote(&c))],
        ('r', 'u') | ('r', 'd') => vec![(rn_local, base(&c))],
        ('r', 'm') => vec![(rn_local, remote(&c))],
        ('r', 'r') => vec![(rn_local, base(&c)), (rn_remote, base(&c))],
        _ => unreachable!(),
    };
    v.sort();
    v
}

/// The files of cell `c` in `tree`, conflict copies under their stand-in name.
fn cell_of(tree: &BTreeMap<String, Vec<u8>>, c: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = tree
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{c}.")) || k.starts_with(&format!("{c} ")))
        .map(|(k, d)| {
            let k = if k.starts_with(&format!("{c} (conflict ")) && k.ends_with(").txt") {
                format!("{c} (conflict")
            } else {
                k.clone()
            };
            (k, d.clone())
        })
        .collect();
    v.sort();
    v
}

fn remote_change(url: &str, l: char, r: char) {
    let c = format!("{l}{r}");
    let name = format!("/{c}.txt");
    match r {
        'm' => dav::put(url, &name, &remote(&c)),
        'd' => dav::delete(url, &name),
        'r' => dav::mv(url, &name, &format!("/{c}.rn-remote.txt")),
        _ => {}
    }
}

fn local_change(mnt: &Path, l: char, r: char) {
    let c = format!("{l}{r}");
    let p = mnt.join(format!("{c}.txt"));
    match l {
        'm' => fs::write(&p, local(&c)).expect("local edit"),
        'd' => fs::remove_file(&p).expect("local delete"),
        'r' => fs::rename(&p, mnt.join(format!("{c}.rn-local.txt"))).expect("local rename"),
        _ => {}
    }
}

fn matrix(kind: Server, across_unmount: bool) {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    for l in KINDS {
        for r in KINDS {
            let c = format!("{l}{r}");
            fs::write(share.join(format!("{c}.txt")), base(&c)).expect("seed");
        }
    }
    // Apache gives a weak ETag to a file changed within the last second.
    std::thread::sleep(Duration::from_millis(1100));
    let srv = start_server(kind, &share);
    let url = srv.url();
    let cache = tmp.path().join("cache");
    let opts = || {
        MountOpts::default()
            .cache_dir(&cache)
            .dir_cache_ttl("1h")
            .arg("--poll-interval=1s")
            .arg("--upload-delay=100ms")
    };
    let m = Mount::new(&url, opts());
    for l in KINDS {
        for r in KINDS {
            let c = format!("{l}{r}");
            assert_eq!(
                fs::read(m.join(&format!("{c}.txt"))).expect("hydrate"),
                base(&c)
            );
        }
    }
    m.edrive_ok(&["suspend"]);
    let m = if across_unmount {
        for l in KINDS {
            for r in KINDS {
                local_change(m.path(), l, r);
            }
        }
        m.edrive_ok(&["unmount", "--force"]);
        drop(m);
        for l in KINDS {
            for r in KINDS {
                remote_change(&url, l, r);
            }
        }
        Mount::new(&url, opts())
    } else {
        for l in KINDS {
            for r in KINDS {
                remote_change(&url, l, r);
                local_change(m.path(), l, r);
            }
        }
        m
    };
    m.edrive_ok(&["resume"]);
    let _ = m.edrive(&["sync"]);
    let settled = wait_until(Duration::from_secs(30), || {
        let server = file_contents(&share);
        let mine = file_contents(m.path());
        server == mine
            && KINDS.iter().all(|&l| {
                KINDS
                    .iter()
                    .all(|&r| cell_of(&server, &format!("{l}{r}")) == expected(l, r))
            })
    });
    let server = file_contents(&share);
    let mine = file_contents(m.path());
    let mut wrong = Vec::new();
    for l in KINDS {
        for r in KINDS {
            let c = format!("{l}{r}");
            let want = expected(l, r);
            let (got_s, got_m) = (cell_of(&server, &c), cell_of(&mine, &c));
            if got_s != want || got_m != want {
                wrong.push(format!(
                    "{c}: want {:?}\n    server {:?}\n    mount  {:?}",
                    show(&want),
                    show(&got_s),
                    show(&got_m)
                ));
            }
        }
    }
    assert!(
        settled && wrong.is_empty(),
        "{kind:?}, across unmount: {across_unmount}\n{}\nlog:\n{}",
        wrong.join("\n"),
        m.log()
    );
    // Nothing anybody wrote is lost.
    for l in KINDS {
        for r in KINDS {
            let c = format!("{l}{r}");
            let mut written = Vec::new();
            if l == 'm' {
                written.push(local(&c));
            }
            if r == 'm' {
                written.push(remote(&c));
            }
            for w in written {
                assert!(
                    server.values().any(|d| *d == w),
                    "{c}: {:?} lost",
                    String::from_utf8_lossy(&w)
                );
            }
        }
    }
    let (_, out, _) = m.edrive(&["conflicts"]);
    assert!(
        out.contains("mm (conflict"),
        "the conflict copy is reported:\n{out}"
    );
    m.unmount();
}

fn show(v: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, d)| (k.clone(), String::from_utf8_lossy(d).trim_end().to_string()))
        .collect()
}

#[test]
fn matrix_online_embedded() {
    matrix(Server::Embedded, false);
}

#[test]
fn matrix_across_unmount_embedded() {
    matrix(Server::Embedded, true);
}

#[test]
fn matrix_online_apache() {
    matrix(Server::Apache, false);
}

#[test]
fn matrix_across_unmount_apache() {
    matrix(Server::Apache, true);
}

/// A file held open for writing while another client changes it: the poller must not
/// take the new version as the base of what the open handle writes later (that upload
/// would overwrite the other client's version), and the unwritten copy must not hide the
/// new version after close.
#[test]
fn a_file_open_for_writing_keeps_its_base() {
    use std::io::{Seek, Write};
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    fs::write(share.join("held.txt"), b"version one").expect("seed");
    fs::write(share.join("idle.txt"), b"idle one").expect("seed");
    let srv = EmbeddedServer::start(&share, None);
    let url = srv.url();
    let m = Mount::new(
        &url,
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--poll-interval=1s")
            .arg("--upload-delay=100ms"),
    );
    let mut held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("held.txt"))
        .expect("open for writing");
    // Opened for writing and closed without a write.
    drop(
        fs::OpenOptions::new()
            .write(true)
            .open(m.join("idle.txt"))
            .expect("open"),
    );
    dav::put(&url, "/held.txt", b"their version two");
    dav::put(&url, "/idle.txt", b"their idle two");
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read(m.join("idle.txt")).ok().as_deref() == Some(&b"their idle two"[..])
        }),
        "an unwritten working copy does not hide the server's new version"
    );
    std::thread::sleep(Duration::from_secs(2));
    held.seek(std::io::SeekFrom::Start(0)).expect("seek");
    held.write_all(b"my edit on one").expect("write");
    drop(held);
    let _ = m.edrive(&["sync"]);
    let settled = wait_until(Duration::from_secs(20), || {
        let server = file_contents(&share);
        server.get("held.txt").map(Vec::as_slice) == Some(&b"their version two"[..])
            && server
                .iter()
                .any(|(k, d)| k.starts_with("held (conflict ") && d.as_slice() == b"my edit on one")
    });
    assert!(settled, "both versions kept: {:?}", file_contents(&share));
    m.unmount();
}
