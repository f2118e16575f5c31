//! Issue 7: cached files are read by the kernel itself (FUSE passthrough), and a change on
//! the server still reaches those reads. Real mounts against the embedded server and
//! Apache httpd with mod_dav.
//!
//! The kernel serves a passthrough-opened inode only from one backing file, so the rules
//! checked here are the drive's: a handle held open keeps reading its version whole, the
//! next open after a remote change gets the new version (through passthrough again once
//! cached), and a file the kernel is serving cannot be opened for writing until those
//! readers close (ETXTBSY), while `--no-passthrough` serves every read through the daemon.

mod common;

use std::fs;
use std::io::Read;
use std::time::Duration;

use common::*;

/// Whether this kernel has FUSE passthrough (Linux 6.9 and later).
fn kernel_has_passthrough() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 9)
}

/// `(available, handles served by the kernel since the mount)`.
fn kernel_reads(m: &Mount) -> (bool, u64) {
    let s = m.status_json();
    let kr = &s["kernel_reads"];
    (
        kr["available"].as_bool().unwrap_or(false),
        kr["opened"].as_u64().unwrap_or(0),
    )
}

fn passthrough_follows_remote_changes(kind: Server) {
    require_fuse();
    if !kernel_has_passthrough() {
        eprintln!("SKIPPED: this kernel has no FUSE passthrough (Linux < 6.9)");
        return;
    }
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    let v1 = pseudo_random_bytes(1, 3 << 20);
    fs::write(share.join("big.bin"), &v1).expect("seed");
    let srv = start_server(kind, &share);
    let url = srv.url();
    let m = Mount::new(
        &url,
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--poll-interval=1s"),
    );
    let path = m.join("big.bin");

    // Cold: hydrated through the daemon. Then cached: the kernel reads the cache file.
    assert_eq!(fs::read(&path).expect("cold read"), v1);
    let (available, before) = kernel_reads(&m);
    assert!(
        available,
        "passthrough not available on a kernel that has it"
    );
    assert_eq!(fs::read(&path).expect("warm read"), v1);
    let (available, after) = kernel_reads(&m);
    assert!(
        available,
        "the kernel refused the backing file:\n{}",
        m.log()
    );
    assert!(after > before, "the warm read did not use passthrough");

    // A file the kernel is serving is not opened for writing behind its back.
    let mut held = fs::File::open(&path).expect("open held reader");
    let err = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect_err("opened for writing while read through passthrough");
    assert_eq!(err.raw_os_error(), Some(libc::ETXTBSY), "{err}");

    // Another client writes a new version (another size, so stat shows when the
    // poller has seen it).
    let v2 = pseudo_random_bytes(2, (3 << 20) + 4096);
    std::thread::sleep(Duration::from_millis(1100));
    dav::put(&url, "/big.bin", &v2);
    let seen = wait_until(Duration::from_secs(20), || {
        fs::metadata(&path).map(|md| md.len()).ok() == Some(v2.len() as u64)
    });
    assert!(seen, "the poller did not see the new version");

    // The handle held open reads its version whole, never a mix.
    let mut old = Vec::new();
    held.read_to_end(&mut old).expect("read held");
    assert!(
        old == v1,
        "the held handle read {} bytes, not v1",
        old.len()
    );
    drop(held);

    // The next open gets the new version; once cached, through passthrough again.
    let got = wait_until(Duration::from_secs(10), || {
        fs::read(&path).ok().as_deref() == Some(&v2[..])
    });
    assert!(
        got,
        "the new version never showed after the held handle closed"
    );
    let (_, before) = kernel_reads(&m);
    assert_eq!(fs::read(&path).expect("warm read of v2"), v2);
    let (available, after) = kernel_reads(&m);
    assert!(available);
    assert!(
        after > before,
        "the warm read of v2 did not use passthrough"
    );

    // No reader left: writing works again and reaches the server.
    fs::write(&path, b"written after the readers closed").expect("write");
    let uploaded = wait_until(Duration::from_secs(30), || {
        dav::get(&url, "/big.bin").as_deref() == Some(&b"written after the readers closed"[..])
    });
    assert!(uploaded, "the write never reached the server");
    m.unmount();
}

#[test]
fn passthrough_follows_remote_changes_embedded() {
    passthrough_follows_remote_changes(Server::Embedded);
}

#[test]
fn passthrough_follows_remote_changes_apache() {
    passthrough_follows_remote_changes(Server::Apache);
}

#[test]
fn no_passthrough_serves_reads_through_the_daemon() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).expect("mkdir");
    let v1 = pseudo_random_bytes(3, 1 << 20);
    fs::write(share.join("f.bin"), &v1).expect("seed");
    let srv = start_server(Server::Embedded, &share);
    let m = Mount::new(&srv.url(), MountOpts::default().arg("--no-passthrough"));
    let path = m.join("f.bin");
    assert_eq!(fs::read(&path).expect("cold"), v1);
    assert_eq!(fs::read(&path).expect("warm"), v1);
    assert_eq!(kernel_reads(&m), (false, 0));
    // Without passthrough a reader does not keep writers out.
    let held = fs::File::open(&path).expect("open reader");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for writing next to a reader");
    drop(held);
    m.unmount();
}
