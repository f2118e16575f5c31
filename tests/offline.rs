//! Offline mode and suspend/resume, with real mounts against the embedded server:
//! - the server stopped: cached content reads, content that is not cached fails at once
//!   (ENETUNREACH), writes queue, `status` says `offline`; the server back: the mount is
//!   `synced` again by itself and the server has every write;
//! - `suspend`: the upload in flight finishes, nothing else is sent (the server's request
//!   log), the suspension survives a remount, `resume` sends the queue; `suspend --offline`
//!   holds back on-demand reads too.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn state(m: &Mount) -> String {
    m.status_json()["state"].as_str().unwrap_or("?").to_string()
}

fn wait_state(m: &Mount, want: &str, timeout: Duration) {
    let ok = wait_until(timeout, || state(m) == want);
    assert!(ok, "state is not {want}: {}", m.status_json());
}

/// Reads `path`; the error (and how long it took) if it fails.
fn read_timed(path: &Path) -> (Result<Vec<u8>, std::io::Error>, Duration) {
    let t = Instant::now();
    let r = fs::read(path);
    (r, t.elapsed())
}

fn puts_of(srv: &EmbeddedServer, name: &str) -> usize {
    srv.requests()
        .iter()
        .filter(|(m, p, _)| m == "PUT" && p.ends_with(name))
        .count()
}

#[test]
fn offline_serves_what_is_cached_fails_fast_otherwise_and_comes_back_by_itself() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("dir")).expect("mkdir");
    let cached = pseudo_random_bytes(1, 300_000);
    fs::write(share.join("cached.bin"), &cached).expect("seed");
    fs::write(share.join("dir/cold.bin"), pseudo_random_bytes(2, 50_000)).expect("seed");
    let mut srv = EmbeddedServer::start(&share, None);
    let m = Mount::new(
        &srv.url(),
        MountOpts::default()
            .arg("--upload-delay=100ms")
            .dir_cache_ttl("1h"),
    );
    assert_eq!(fs::read(m.join("cached.bin")).expect("hydrate"), cached);
    assert!(m.join("dir/cold.bin").exists(), "listed while online");
    wait_state(&m, "synced", Duration::from_secs(10));

    srv.stop();
    let written = pseudo_random_bytes(3, 2 << 20);
    fs::write(m.join("written-offline.bin"), &written).expect("writes are queued");
    fs::write(m.join("dir/note.txt"), b"offline note").expect("writes are queued");
    wait_state(&m, "offline", Duration::from_secs(15));
    let status = m.status_json();
    assert!(status["link"]["since_unix"].as_u64().is_some(), "{status}");
    assert!(
        status["link"]["next_retry_in_s"].as_u64().is_some(),
        "{status}"
    );
    let (_, out, _) = m.edrive(&["status"]);
    assert!(out.contains("offline (server unreachable"), "{out}");

    // Cached content and listings keep working; what is not cached fails at once.
    assert_eq!(fs::read(m.join("cached.bin")).expect("cached read"), cached);
    let names: Vec<String> = fs::read_dir(m.join("dir"))
        .expect("listing from the store")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"cold.bin".to_string()), "{names:?}");
    let (r, took) = read_timed(&m.join("dir/cold.bin"));
    let err = r.expect_err("content that is not cached cannot be read offline");
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    assert!(took < Duration::from_secs(2), "failed after {took:?}");
    assert_eq!(xattr_state(&m.join("written-offline.bin")), "dirty");

    // Back by itself, without a remount, with every write.
    srv.restart();
    wait_state(&m, "synced", Duration::from_secs(60));
    assert_eq!(
        fs::read(share.join("written-offline.bin")).expect("uploaded"),
        written
    );
    assert_eq!(
        fs::read(share.join("dir/note.txt")).expect("uploaded"),
        b"offline note"
    );
    assert_eq!(
        fs::read(m.join("dir/cold.bin")).expect("readable again"),
        pseudo_random_bytes(2, 50_000)
    );
    m.unmount();
}

#[test]
fn suspend_lets_the_upload_in_flight_finish_sends_nothing_more_and_survives_a_remount() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir(&share).expect("mkdir");
    fs::write(share.join("cold.txt"), b"never opened").expect("seed");
    fs::write(share.join("never-read.txt"), b"stays on the server").expect("seed");
    let cache = tmp.path().join("cache");
    let srv = EmbeddedServer::start(&share, None);
    let opts = || {
        MountOpts::default()
            .arg("--upload-delay=100ms")
            .dir_cache_ttl("1h")
            .cache_dir(&cache)
    };
    let m = Mount::new(&srv.url(), opts());

    // Suspend while a large upload runs: it finishes.
    let big = pseudo_random_bytes(4, 200 << 20);
    fs::write(m.join("big.bin"), &big).expect("write");
    let caught = wait_until(Duration::from_secs(20), || {
        !m.status_json()["sync"]["uploading"].is_null()
    });
    let (status, out, err) = m.edrive(&["suspend"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(state(&m), "suspended");
    assert!(
        caught,
        "the upload was never seen running: {}",
        m.status_json()
    );
    {
        let done = wait_until(Duration::from_secs(60), || {
            fs::metadata(share.join("big.bin")).is_ok_and(|md| md.len() == big.len() as u64)
                && m.status_json()["sync"]["uploading"].is_null()
        });
        assert!(done, "the upload in flight finishes: {}", m.status_json());
        assert_eq!(fs::read(share.join("big.bin")).expect("uploaded"), big);
    }

    // Nothing else goes out while suspended; reads of uncached files still work.
    fs::write(m.join("queued.txt"), b"queued while suspended").expect("write");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(puts_of(&srv, "queued.txt"), 0, "{:?}", srv.requests());
    assert!(!share.join("queued.txt").exists());
    assert_eq!(
        fs::read(m.join("cold.txt")).expect("on-demand read"),
        b"never opened"
    );

    // A remount stays suspended.
    let (status, out, err) = m.edrive(&["unmount", "--force"]);
    assert!(status.success(), "{out}{err}");
    drop(m);
    let m = Mount::new(&srv.url(), opts());
    assert_eq!(state(&m), "suspended", "{}", m.status_json());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(puts_of(&srv, "queued.txt"), 0, "{:?}", srv.requests());

    // Offline suspension: on-demand reads fail at once too.
    assert!(m.join("never-read.txt").exists(), "listed");
    let (status, out, err) = m.edrive(&["suspend", "--offline"]);
    assert!(status.success(), "{out}{err}");
    let before = srv.requests().len();
    let (r, took) = read_timed(&m.join("never-read.txt"));
    let e = r.expect_err("no download while suspended offline");
    assert_eq!(e.raw_os_error(), Some(libc::ENETUNREACH), "{e}");
    assert!(took < Duration::from_secs(2), "failed after {took:?}");
    assert_eq!(
        fs::read(m.join("cold.txt")).expect("cached"),
        b"never opened"
    );
    assert_eq!(
        srv.requests().len(),
        before,
        "no request while suspended offline"
    );

    let (status, out, err) = m.edrive(&["resume"]);
    assert!(status.success(), "{out}{err}");
    let (status, out, err) = m.edrive(&["sync"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        fs::read(share.join("queued.txt")).expect("uploaded after resume"),
        b"queued while suspended"
    );
    wait_state(&m, "synced", Duration::from_secs(10));
    m.unmount();
}

fn xattr_state(path: &Path) -> String {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.edrive.state"])
        .arg(path)
        .output()
        .expect("getfattr");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
