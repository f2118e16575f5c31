//! Pinning for offline use, unpin and free, with real mounts against the embedded server:
//! `edrive pin DIR` fetches a tree of 200 files; with the server stopped every one of them
//! reads byte-identical while a file outside DIR that was never opened fails fast; pinned
//! content survives a cache limit far smaller than it while unpinned content is evicted;
//! `free` gives clean bytes back and keeps changes not uploaded yet; `unpin` makes the
//! content evictable again; `setfattr -n user.edrive.pin -v 1|0` pins and unpins too.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: u64 = 1 << 20;

fn cache_numbers(m: &Mount) -> (u64, u64) {
    let s = m.status_json();
    let c = &s["cache"];
    (
        c["used_bytes"].as_u64().unwrap_or(0),
        c["pinned_bytes"].as_u64().unwrap_or(0),
    )
}

#[test]
fn pinned_trees_stay_readable_offline_and_out_of_eviction() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    for d in 0..10 {
        let dir = share.join(format!("Projects/p{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..20 {
            let seed = (d * 100 + f) as u64;
            fs::write(
                dir.join(format!("f{f}.dat")),
                pseudo_random_bytes(seed, 10_000),
            )
            .expect("seed");
        }
    }
    fs::create_dir_all(share.join("Other")).expect("mkdir");
    for f in 0..20 {
        fs::write(
            share.join(format!("Other/big{f}.bin")),
            pseudo_random_bytes(5000 + f, 200_000),
        )
        .expect("seed");
    }
    let mut srv = EmbeddedServer::start(&share, None);
    let m = Mount::new(
        &srv.url(),
        MountOpts::default()
            .cache_size("1M")
            .dir_cache_ttl("1h")
            .arg("--upload-delay=100ms"),
    );

    let (status, out, err) = m.edrive_plain(&["pin", &m.join("Projects").display().to_string()]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("200 of 200 file(s) local"), "{out}");
    let (used, pinned) = cache_numbers(&m);
    assert!(pinned >= 2_000_000, "pinned {pinned}");
    assert!(used >= pinned, "{used} {pinned}");
    assert_eq!(
        xattr(&m.join("Projects/p3/f7.dat"), "user.edrive.state"),
        "pinned"
    );
    assert_eq!(xattr(&m.join("Projects/p3"), "user.edrive.pinned"), "1");
    assert_eq!(xattr(&m.join("Other/big1.bin"), "user.edrive.pinned"), "0");
    let (_, out, _) = m.edrive(&["status"]);
    assert!(out.contains("exceeds the cache limit"), "{out}");

    // The limit applies to the rest: reading unpinned files evicts them, not the pins.
    for f in 0..10 {
        let data = fs::read(m.join(&format!("Other/big{f}.bin"))).expect("read");
        assert_eq!(data.len(), 200_000);
    }
    let (used, pinned_after) = cache_numbers(&m);
    assert_eq!(pinned_after, pinned, "pins hold");
    assert!(
        used - pinned_after <= LIMIT,
        "unpinned {} > limit",
        used - pinned_after
    );

    // Offline: every pinned file reads; a file never opened fails fast.
    srv.stop();
    for d in 0..10 {
        for f in 0..20 {
            let rel = format!("Projects/p{d}/f{f}.dat");
            let data = fs::read(m.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(data, fs::read(share.join(&rel)).expect("share"), "{rel}");
        }
    }
    let t = Instant::now();
    let r = fs::read(m.join("Other/big19.bin"));
    assert!(r.is_err(), "never opened, server stopped");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        fs::read_dir(m.join("Projects"))
            .expect("still usable")
            .count(),
        10
    );
    srv.restart();
    assert!(
        wait_until(Duration::from_secs(30), || m.status_json()["link"]["state"]
            == "online"),
        "back online by itself: {}",
        m.status_json()
    );

    // free: the clean bytes under Other go; a change not uploaded stays and uploads.
    fs::write(m.join("Other/new.txt"), b"not uploaded yet").expect("write");
    let _ = m.edrive(&["suspend"]);
    fs::read(m.join("Other/big11.bin")).expect("read");
    let (before, _) = cache_numbers(&m);
    let (status, out, err) = m.edrive_plain(&["free", &m.join("Other").display().to_string()]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("changes not uploaded yet"), "{out}");
    let (after, _) = cache_numbers(&m);
    assert!(after + 200_000 <= before, "before {before}, after {after}");
    assert_eq!(
        fs::read(m.join("Other/new.txt")).expect("kept"),
        b"not uploaded yet"
    );
    let _ = m.edrive(&["resume"]);
    let (status, out, err) = m.edrive(&["sync"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        fs::read(share.join("Other/new.txt")).expect("uploaded"),
        b"not uploaded yet"
    );

    // unpin: the content stays until space is needed, then the limit applies to it too.
    let (status, out, err) = m.edrive_plain(&["unpin", &m.join("Projects").display().to_string()]);
    assert!(status.success(), "{out}{err}");
    let (used, pinned) = cache_numbers(&m);
    assert_eq!(pinned, 0);
    assert!(used <= LIMIT, "used {used} after unpin");
    assert_ne!(
        xattr(&m.join("Projects/p3/f7.dat"), "user.edrive.state"),
        "pinned"
    );

    // The same through an extended attribute, as file managers and scripts do.
    let file = m.join("Other/big12.bin");
    let set = |v: &str| {
        let out = Command::new("setfattr")
            .args(["-n", "user.edrive.pin", "-v", v])
            .arg(&file)
            .output()
            .expect("setfattr");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set("1");
    assert_eq!(xattr(&file, "user.edrive.pinned"), "1");
    assert!(
        wait_until(Duration::from_secs(20), || xattr(
            &file,
            "user.edrive.state"
        ) == "pinned"),
        "fetched without being opened: {}",
        xattr(&file, "user.edrive.state")
    );
    assert_eq!(cache_numbers(&m).1, 200_000);
    set("0");
    assert_eq!(xattr(&file, "user.edrive.pinned"), "0");
    assert_eq!(cache_numbers(&m).1, 0);
    m.unmount();
}

/// Files that appear on the server under a pinned folder, and new versions of pinned
/// files, are fetched by the poller without anyone opening them: with the server stopped
/// afterwards, both read with the new content.
#[test]
fn the_poller_fetches_new_and_changed_pinned_content() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("Trip/maps")).expect("mkdir");
    fs::write(share.join("Trip/plan.txt"), b"plan v1").expect("seed");
    let mut srv = EmbeddedServer::start(&share, None);
    let url = srv.url();
    let m = Mount::new(
        &url,
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--poll-interval=1s"),
    );
    let (st, out, err) = m.edrive_plain(&["pin", m.join("Trip").to_str().expect("utf-8")]);
    assert!(st.success(), "{out}{err}");
    assert_eq!(
        xattr(&m.join("Trip/plan.txt"), "user.edrive.state"),
        "pinned"
    );

    let gets_before = srv.count_requests("GET");
    dav::put(&url, "/Trip/maps/city.map", &pseudo_random_bytes(9, 50_000));
    dav::put(&url, "/Trip/plan.txt", b"plan v2, with hotels");
    // Only attributes are looked at here (no open): the content must arrive by itself.
    // Twice the poll interval, plus room for a loaded machine.
    let fetched = wait_until(Duration::from_secs(10), || {
        xattr(&m.join("Trip/maps/city.map"), "user.edrive.state") == "pinned"
            && xattr(&m.join("Trip/plan.txt"), "user.edrive.state") == "pinned"
            && fs::metadata(m.join("Trip/plan.txt"))
                .map(|md| md.len())
                .ok()
                == Some(20)
    });
    assert!(
        fetched,
        "states: {} {}",
        xattr(&m.join("Trip/maps/city.map"), "user.edrive.state"),
        xattr(&m.join("Trip/plan.txt"), "user.edrive.state")
    );
    assert!(srv.count_requests("GET") >= gets_before + 2);
    srv.stop();
    assert_eq!(
        fs::read(m.join("Trip/maps/city.map")).expect("offline read"),
        pseudo_random_bytes(9, 50_000)
    );
    assert_eq!(
        fs::read(m.join("Trip/plan.txt")).expect("offline read"),
        b"plan v2, with hotels"
    );
    drop(m);
}
