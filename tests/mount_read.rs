//! Issue 2 acceptance: browsing never downloads, reads are byte-identical, the cache stays
//! within its budget, a remount reuses cached content, odd names work — each against both
//! the embedded server and Apache httpd with mod_dav, through a real FUSE mount.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::*;

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path).unwrap().read_to_end(&mut v).unwrap();
    v
}

fn state_of(path: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "user.edrive.state"])
        .arg(path)
        .output()
        .expect("getfattr (package attr) is needed");
    assert!(
        out.status.success(),
        "getfattr failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (at most 10 s) until `path` is cached whole, and fails the test otherwise.
fn assert_cached_whole(path: &Path) {
    assert!(
        wait_until(std::time::Duration::from_secs(10), || state_of(path)
            == "hydrated"),
        "not cached whole: {}",
        state_of(path)
    );
}

/// How many GETs of a path ending in `/name` are in `requests` (of `status`, if given).
fn gets(requests: &[(String, String, u16)], name: &str, status: Option<u16>) -> usize {
    let suffix = format!("/{name}");
    requests
        .iter()
        .filter(|(method, path, s)| {
            method == "GET" && path.ends_with(&suffix) && status.is_none_or(|st| *s == st)
        })
        .count()
}

fn listing_shows_tree_without_downloading(kind: Server) {
    let data = tempdir();
    let spec = TreeSpec {
        depth: 3,
        dirs_per_dir: 3,
        files_per_dir: 50,
        sizes: vec![0, 1, 4096, 12_345],
        seed: 7,
    };
    let files = make_tree(data.path(), &spec);
    assert!(files.len() >= 2000, "tree has only {} files", files.len());
    let server = start_server(kind, data.path());
    let m = Mount::new(&server.url(), MountOpts::default());

    let find = Command::new("find")
        .arg(m.path())
        .arg("-type")
        .arg("f")
        .output()
        .unwrap();
    assert!(find.status.success());
    let found = String::from_utf8_lossy(&find.stdout).lines().count();
    assert_eq!(found, files.len(), "find sees every file");
    let ls = Command::new("ls")
        .arg("-lR")
        .arg(m.path())
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "ls -lR: {}",
        String::from_utf8_lossy(&ls.stderr)
    );

    let want = walk(data.path());
    let got = walk(m.path());
    let names = |t: &std::collections::BTreeMap<String, (bool, u64, i64)>| {
        t.keys().cloned().collect::<BTreeSet<_>>()
    };
    assert_eq!(names(&got), names(&want), "same names");
    for (rel, (is_dir, size, mtime)) in &want {
        let (g_dir, g_size, g_mtime) = got[rel];
        assert_eq!(g_dir, *is_dir, "{rel}: kind");
        if !is_dir {
            assert_eq!(g_size, *size, "{rel}: size");
            assert_eq!(g_mtime, *mtime, "{rel}: mtime");
        }
    }
    assert_eq!(
        server.count_requests("GET"),
        0,
        "listing must not download: {:?}",
        server
            .requests()
            .iter()
            .filter(|r| r.0 == "GET")
            .take(5)
            .collect::<Vec<_>>()
    );
    m.unmount();
}

#[test]
fn listing_shows_tree_without_downloading_embedded() {
    listing_shows_tree_without_downloading(Server::Embedded);
}

#[test]
fn listing_shows_tree_without_downloading_apache() {
    listing_shows_tree_without_downloading(Server::Apache);
}

fn reads_are_byte_identical(kind: Server) {
    let data = tempdir();
    let sizes: [usize; 6] = [0, 1, 4095, 4096, (1 << 20) + 1, 200 << 20];
    for (i, size) in sizes.iter().enumerate() {
        write(
            &data.path().join(format!("f{i}.bin")),
            &pseudo_random_bytes(i as u64, *size),
        );
    }
    let mut server = start_server(kind, data.path());
    let m = Mount::new(&server.url(), MountOpts::default());
    for i in 0..sizes.len() {
        let name = format!("f{i}.bin");
        assert_eq!(
            state_of(&m.join(&name)),
            "online-only",
            "{name} before reading"
        );
        assert_eq!(
            sha256_file(&m.join(&name)),
            sha256_file(&data.path().join(&name)),
            "{name}"
        );
        assert_eq!(state_of(&m.join(&name)), "hydrated", "{name} after reading");
    }
    // Every non-empty file came from the server exactly once; an empty one needs no GET.
    // (Should one request be slow on a busy machine, the 200 MiB file may get helper
    // requests for pieces of it: ranged, 206.)
    let requests = server.requests();
    let gets = |status: u16| {
        requests
            .iter()
            .filter(move |r| r.0 == "GET" && r.2 == status)
    };
    assert_eq!(
        gets(200).count(),
        sizes.len() - 1,
        "content came from the server once per non-empty file: {requests:?}"
    );
    assert!(
        gets(206).all(|r| r.1.ends_with("/f5.bin")),
        "a ranged GET of a small file: {requests:?}"
    );
    server.reset_requests();
    for i in 0..sizes.len() {
        let name = format!("f{i}.bin");
        assert_eq!(
            sha256_file(&m.join(&name)),
            sha256_file(&data.path().join(&name)),
            "{name}"
        );
    }
    assert_eq!(
        server.count_requests("GET"),
        0,
        "second reads come from the cache"
    );
    m.unmount();
}

#[test]
fn reads_are_byte_identical_embedded() {
    reads_are_byte_identical(Server::Embedded);
}

#[test]
fn reads_are_byte_identical_apache() {
    reads_are_byte_identical(Server::Apache);
}

#[test]
fn cache_stays_within_its_budget_and_evicted_files_read_back() {
    let data = tempdir();
    for i in 0..60 {
        write(
            &data.path().join(format!("m{i:02}.bin")),
            &pseudo_random_bytes(100 + i, 1 << 20),
        );
    }
    let mut server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default().cache_size("10M"));
    let limit = 10u64 << 20;

    // Three files stay open while the others stream through the cache.
    let mut held: Vec<File> = (0..3)
        .map(|i| File::open(m.join(&format!("m{i:02}.bin"))).unwrap())
        .collect();
    for f in held.iter_mut() {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
    }
    for i in 3..60 {
        let name = format!("m{i:02}.bin");
        assert_eq!(
            read_all(&m.join(&name)),
            pseudo_random_bytes(100 + i, 1 << 20),
            "{name}"
        );
        let used = m.status_json()["cache"]["used_bytes"].as_u64().unwrap();
        assert!(
            used <= limit + 3 * (1 << 20),
            "cache holds {used} bytes after {name}"
        );
    }
    drop(held);
    let s = m.status_json();
    let used = s["cache"]["used_bytes"].as_u64().unwrap();
    assert!(used <= limit, "cache holds {used} bytes with no file open");
    assert!(s["hydrated_files"].as_u64().unwrap() <= 10, "{s}");
    assert_eq!(s["cache"]["limit_bytes"].as_u64(), Some(limit));

    // Everything evicted reads back correctly (hydrated again).
    server.reset_requests();
    for i in 0..60 {
        let name = format!("m{i:02}.bin");
        assert_eq!(
            read_all(&m.join(&name)),
            pseudo_random_bytes(100 + i, 1 << 20),
            "{name}"
        );
    }
    assert!(
        server.count_requests("GET") >= 50,
        "evicted files were fetched again"
    );
    let used = m.status_json()["cache"]["used_bytes"].as_u64().unwrap();
    assert!(used <= limit, "cache holds {used} bytes");
    m.unmount();
}

fn remount_reuses_cached_content(kind: Server) {
    let data = tempdir();
    for i in 0..5u64 {
        write(
            &data.path().join(format!("d/r{i}.txt")),
            &pseudo_random_bytes(i, 70_000),
        );
    }
    let cache = tempdir();
    let mut server = start_server(kind, data.path());
    let opts = MountOpts::default().cache_dir(cache.path());
    let m = Mount::new(&server.url(), opts.clone());
    for i in 0..5 {
        read_all(&m.join(&format!("d/r{i}.txt")));
    }
    m.unmount();

    server.reset_requests();
    let m = Mount::new(&server.url(), opts);
    assert_eq!(
        state_of(&m.join("d/r0.txt")),
        "hydrated",
        "state survives the remount"
    );
    for i in 0..5u64 {
        assert_eq!(
            read_all(&m.join(&format!("d/r{i}.txt"))),
            pseudo_random_bytes(i, 70_000)
        );
    }
    assert_eq!(
        server.count_requests("GET"),
        0,
        "a remount reads cached files without GET"
    );
    m.unmount();
}

#[test]
fn remount_reuses_cached_content_embedded() {
    remount_reuses_cached_content(Server::Embedded);
}

#[test]
fn remount_reuses_cached_content_apache() {
    remount_reuses_cached_content(Server::Apache);
}

const ODD_NAMES: [&str; 11] = [
    "with space.txt",
    "hash#tag.txt",
    "100%.txt",
    "what?.txt",
    "a&b.txt",
    "c++.txt",
    "café.txt",
    "日本.txt",
    "party 🎉.txt",
    "dir é 日本",
    "semi;colon=eq,comma'quote.txt",
];

fn odd_names_list_and_read(kind: Server) {
    let data = tempdir();
    for (i, n) in ODD_NAMES.iter().enumerate() {
        if n.starts_with("dir") {
            write(&data.path().join(n).join("inner #1.txt"), b"inside");
        } else {
            write(&data.path().join(n), format!("content {i}").as_bytes());
        }
    }
    let server = start_server(kind, data.path());
    let m = Mount::new(&server.url(), MountOpts::default());
    let listed: BTreeSet<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let want: BTreeSet<String> = ODD_NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed, want);
    for (i, n) in ODD_NAMES.iter().enumerate() {
        if n.starts_with("dir") {
            assert_eq!(read_all(&m.join(n).join("inner #1.txt")), b"inside");
        } else {
            assert_eq!(
                read_all(&m.join(n)),
                format!("content {i}").as_bytes(),
                "{n}"
            );
        }
    }
    m.unmount();
}

#[test]
fn odd_names_list_and_read_embedded() {
    odd_names_list_and_read(Server::Embedded);
}

#[test]
fn odd_names_list_and_read_apache() {
    odd_names_list_and_read(Server::Apache);
}

/// Every name in `dir`, as many times as the listing gave it, sorted.
fn listed_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A folder of several store batches and many kernel pages is listed whole, each name
/// once, and relisted after the server changed it.
fn a_large_folder_lists_each_entry_once(kind: Server) {
    let data = tempdir();
    let big = data.path().join("big");
    let mut want: Vec<String> = (0..3000).map(|i| format!("f-{i:04}")).collect();
    for n in &want {
        write(&big.join(n), b"");
    }
    let server = start_server(kind, data.path());
    let m = Mount::new(&server.url(), MountOpts::default().dir_cache_ttl("0s"));
    assert_eq!(listed_names(&m.join("big")), want);

    // On the server: ten removed, ten added, one renamed.
    for i in 0..10 {
        std::fs::remove_file(big.join(format!("f-{i:04}"))).unwrap();
        write(&big.join(format!("g-{i:04}")), b"new");
    }
    std::fs::rename(big.join("f-0100"), big.join("h-0100")).unwrap();
    want.retain(|n| !(n.as_str() < "f-0010" || n == "f-0100"));
    want.extend((0..10).map(|i| format!("g-{i:04}")));
    want.push("h-0100".into());
    want.sort();
    assert_eq!(listed_names(&m.join("big")), want);
    assert_eq!(read_all(&m.join("big/g-0003")), b"new");
    m.unmount();
}

#[test]
fn a_large_folder_lists_each_entry_once_embedded() {
    a_large_folder_lists_each_entry_once(Server::Embedded);
}

#[test]
fn a_large_folder_lists_each_entry_once_apache() {
    a_large_folder_lists_each_entry_once(Server::Apache);
}

/// The errno `getfattr -n name path` reports, as its message.
fn getxattr_error(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["-n", name])
        .arg(path)
        .output()
        .expect("getfattr (package attr) is needed");
    assert!(!out.status.success(), "{name} exists on {}", path.display());
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Attributes outside `user.` (SELinux labels, ACLs, capabilities) are not supported,
/// not merely absent: `ls -l` then asks once per mount instead of twice per entry.
#[test]
fn only_user_attributes_are_supported() {
    let data = tempdir();
    write(&data.path().join("a.txt"), b"a");
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default());
    let file = m.join("a.txt");
    for name in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
        let err = getxattr_error(&file, name);
        assert!(err.contains("Operation not supported"), "{name}: {err}");
    }
    let err = getxattr_error(&file, "user.nope");
    assert!(err.contains("No such attribute"), "{err}");
    assert_eq!(state_of(&file), "online-only");
    let ls = Command::new("ls")
        .arg("-l")
        .arg(m.join(""))
        .output()
        .expect("ls");
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(String::from_utf8_lossy(&ls.stdout).contains("a.txt"));
    m.unmount();
}

#[test]
fn each_mount_has_its_own_private_cache_dir() {
    let data = tempdir();
    write(&data.path().join("a.txt"), b"a");
    let server = EmbeddedServer::start(data.path(), None);
    let m1 = Mount::new(&server.url(), MountOpts::default());
    let m2 = Mount::new(&server.url(), MountOpts::default());
    let d1 = m1.status_json()["cache_dir"].as_str().unwrap().to_string();
    let d2 = m2.status_json()["cache_dir"].as_str().unwrap().to_string();
    assert_ne!(
        d1, d2,
        "two mounts of one server must not share a cache directory"
    );
    for d in [&d1, &d2] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d}");
    }
    // The same cache directory cannot be used by a second mount at the same time.
    let err = Mount::try_new(
        &server.url(),
        MountOpts::default().cache_dir(Path::new(&d1)),
    )
    .err()
    .expect("a cache directory in use must be refused");
    assert!(err.1.contains("in use"), "{}", err.1);
    assert_eq!(read_all(&m1.join("a.txt")), b"a");
    assert_eq!(read_all(&m2.join("a.txt")), b"a");
    m1.unmount();
    m2.unmount();
}

#[test]
fn listings_are_revalidated_after_their_ttl() {
    let data = tempdir();
    write(&data.path().join("d/old.txt"), b"old");
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default().dir_cache_ttl("300ms"));
    let names = |p: &Path| -> BTreeSet<String> {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert_eq!(names(&m.join("d")), BTreeSet::from(["old.txt".to_string()]));
    write(&data.path().join("d/new.txt"), b"new");
    std::fs::remove_file(data.path().join("d/old.txt")).unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(10), || names(&m.join("d"))
            == BTreeSet::from(["new.txt".to_string()])),
        "the listing was not revalidated: {:?}",
        names(&m.join("d"))
    );
    assert_eq!(read_all(&m.join("d/new.txt")), b"new");
    m.unmount();
}

#[test]
fn a_file_changed_on_the_server_is_never_read_stale() {
    let data = tempdir();
    write(&data.path().join("doc.txt"), b"version one");
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default().dir_cache_ttl("300ms"));
    assert_eq!(read_all(&m.join("doc.txt")), b"version one");
    assert_eq!(state_of(&m.join("doc.txt")), "hydrated");
    // Same length, new content: only the version (ETag) tells them apart.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&data.path().join("doc.txt"), b"version two");
    assert!(
        wait_until(std::time::Duration::from_secs(10), || read_all(
            &m.join("doc.txt")
        ) == b"version two"),
        "still reading {:?}",
        String::from_utf8_lossy(&read_all(&m.join("doc.txt")))
    );
    m.unmount();
}

/// 4 KiB block `i` of the seek test's file: its index, repeated.
fn block(i: u64) -> Vec<u8> {
    i.to_le_bytes().repeat(512)
}

/// `mib` MiB of numbered 4 KiB blocks ([`block`]): any misplaced range shows.
fn numbered_blocks(mib: u64) -> Vec<u8> {
    (0..mib * 256).flat_map(block).collect()
}

/// Issue 7, streaming hydration: a read far into a cold file is served by a ranged GET
/// from there, not after everything before it arrived; the rest of the file is still
/// fetched while it is open, so the file ends up cached whole and byte-identical.
fn a_seek_in_a_cold_file_fetches_from_there(kind: Server) {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    // 256 MiB: far more than arrives on 127.0.0.1 between the open and the first read.
    let data = numbered_blocks(256);
    write(&share.join("big.bin"), &data);
    let srv = start_server(kind, &share);
    let m = Mount::new(&srv.url(), MountOpts::default());
    let path = m.join("big.bin");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), data.len() as u64);

    use std::io::{Seek, SeekFrom};
    let mut f = File::open(&path).unwrap();
    let far = data.len() as u64 / 4096 - 1000;
    f.seek(SeekFrom::Start(far * 4096)).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact(&mut buf).unwrap();
    assert!(buf == block(far), "wrong bytes at block {far}");
    let ranged = gets(&srv.requests(), "big.bin", Some(206));
    assert!(
        ranged >= 1,
        "the far read did not start a ranged GET: {:?}",
        srv.requests()
    );
    // Back to the start: the gap before the seek is fetched too, and every byte is right.
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    assert!(all == data, "the file read back differs");
    drop(f);
    assert_cached_whole(&path);
    m.unmount();
}

#[test]
fn a_seek_in_a_cold_file_fetches_from_there_embedded() {
    a_seek_in_a_cold_file_fetches_from_there(Server::Embedded);
}

#[test]
fn a_seek_in_a_cold_file_fetches_from_there_apache() {
    a_seek_in_a_cold_file_fetches_from_there(Server::Apache);
}

/// Issue 7, parallel ranged GETs: when one request is slow (here a server that sends every
/// body at 8 MiB/s, as one that caps each connection does), a sequential read of a cold
/// file gets helper requests for pieces ahead of it, every byte is still right and the file
/// ends up cached whole. With `--download-streams 1` the same read is one request.
#[test]
fn a_slow_connection_gets_helper_requests() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let data = numbered_blocks(24);
    write(&share.join("v.bin"), &data);
    let mut srv = EmbeddedServer::start_with(&share, None, &["--rate-limit", "8M"]);
    let gets = |srv: &EmbeddedServer, status: u16| gets(&srv.requests(), "v.bin", Some(status));

    let m = Mount::new(&srv.url(), MountOpts::default());
    let path = m.join("v.bin");
    assert!(read_all(&path) == data, "the file read back differs");
    assert_cached_whole(&path);
    assert_eq!(gets(&srv, 200), 1, "one main request: {:?}", srv.requests());
    assert!(
        gets(&srv, 206) >= 2,
        "no helper requests beside the slow one: {:?}",
        srv.requests()
    );
    m.unmount();

    srv.reset_requests();
    let m = Mount::new(&srv.url(), MountOpts::default().arg("--download-streams=1"));
    let path = m.join("v.bin");
    assert!(
        read_all(&path) == data,
        "the file read back differs (one stream)"
    );
    assert_eq!(
        (gets(&srv, 200), gets(&srv, 206)),
        (1, 0),
        "one request with --download-streams 1: {:?}",
        srv.requests()
    );
    m.unmount();
}

/// A slow server that ignores Range (every GET answered with the whole file) gets one
/// helper attempt, not one per piece: each piece would cost all the bytes before it. The
/// main request reads the file to its end, byte-identical.
#[test]
fn a_server_that_ignores_range_stops_the_helper_requests() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let data = numbered_blocks(24);
    write(&share.join("v.bin"), &data);
    let srv = EmbeddedServer::start_with(&share, None, &["--rate-limit", "8M", "--ignore-range"]);
    // One helper at most at a time, so that every piece it took would be a request.
    let m = Mount::new(&srv.url(), MountOpts::default().arg("--download-streams=2"));
    let path = m.join("v.bin");
    assert!(read_all(&path) == data, "the file read back differs");
    assert_cached_whole(&path);
    let gets = gets(&srv.requests(), "v.bin", None);
    // The main request, one helper attempt, and the main request again if it had
    // stopped at the helper's piece before the helper gave up.
    assert!(
        (2..=3).contains(&gets),
        "expected the main request and one helper attempt, got {gets}: {:?}",
        srv.requests()
    );
    m.unmount();
}

/// Parallel ranged GETs never mix two versions: a file replaced on the server while it is
/// being read (slowly, so helper requests start after the change) is read whole in its old
/// version, or the read fails; it is never pieced together from both. Afterwards the new
/// version reads back whole.
#[test]
fn a_file_replaced_during_a_parallel_download_is_never_mixed() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let old = numbered_blocks(32);
    write(&share.join("v.bin"), &old);
    let srv = EmbeddedServer::start_with(&share, None, &["--rate-limit", "4M"]);
    let m = Mount::new(&srv.url(), MountOpts::default().dir_cache_ttl("300ms"));
    let path = m.join("v.bin");
    let mut f = File::open(&path).unwrap();
    let mut head = vec![0u8; 1 << 20];
    f.read_exact(&mut head).unwrap();
    assert!(head[..] == old[..1 << 20], "the first MiB differs");
    // Replaced (a new file renamed over it), one block longer: another version.
    let new: Vec<u8> = numbered_blocks(33).iter().map(|b| b ^ 0x5a).collect();
    write(&share.join("v.tmp"), &new);
    std::fs::rename(share.join("v.tmp"), share.join("v.bin")).unwrap();
    let mut rest = Vec::new();
    match f.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest[..] == old[1 << 20..],
            "the old version read back differs (mixed with the new one?)"
        ),
        Err(e) => eprintln!("the read of the old version failed, as it may: {e}"),
    }
    drop(f);
    assert!(
        wait_until(std::time::Duration::from_secs(30), || std::fs::read(&path)
            .is_ok_and(|b| b == new)),
        "the new version does not read back whole"
    );
    m.unmount();
}

/// Bytes of `path` in the cache (or downloaded so far), from `edrive status PATH --json`.
fn cached_bytes(m: &Mount, path: &Path) -> u64 {
    let out = m.edrive_plain(&["status", path.to_str().unwrap(), "--json"]);
    assert!(
        out.0.success(),
        "edrive status PATH failed: {}{}",
        out.1,
        out.2
    );
    let v: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    v["cached_bytes"].as_u64().unwrap_or(0)
}

/// Issue 7, streaming hydration: a file held open after a partial read is not fetched
/// whole; the download stops a read-ahead window past what was read, and goes on when
/// reading does.
fn a_partly_read_open_file_is_not_fetched_whole(kind: Server) {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let data = numbered_blocks(256);
    write(&share.join("big.bin"), &data);
    let srv = start_server(kind, &share);
    let m = Mount::new(&srv.url(), MountOpts::default());
    let path = m.join("big.bin");

    let mut f = File::open(&path).unwrap();
    let mut head = vec![0u8; 1 << 20];
    f.read_exact(&mut head).unwrap();
    assert!(head[..] == data[..1 << 20]);
    // Wait until the download stops growing (or, without a bound, completes).
    let mut last = u64::MAX;
    let settled = wait_until(std::time::Duration::from_secs(60), || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = cached_bytes(&m, &path);
        let same = now == last;
        last = now;
        same
    });
    assert!(settled, "the download never settled");
    assert!(
        last < 32 << 20,
        "{last} bytes fetched after reading 1 MiB of a 256 MiB file"
    );
    assert_ne!(state_of(&path), "hydrated");
    // Reading on fetches the rest, byte-identical.
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    assert!(rest[..] == data[1 << 20..], "the rest of the file differs");
    drop(f);
    assert_cached_whole(&path);
    m.unmount();
}

#[test]
fn a_partly_read_open_file_is_not_fetched_whole_embedded() {
    a_partly_read_open_file_is_not_fetched_whole(Server::Embedded);
}

#[test]
fn a_partly_read_open_file_is_not_fetched_whole_apache() {
    a_partly_read_open_file_is_not_fetched_whole(Server::Apache);
}

/// Reads `len` bytes at `offset` of `path` (a fresh open each time).
fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// A partial download is not kept for a file the server deleted while it was read:
/// nothing could ever resume it, so it would only take cache space until evicted.
#[test]
fn a_partial_download_of_a_deleted_file_is_dropped_at_close() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let data = numbered_blocks(64);
    write(&share.join("big.bin"), &data);
    write(&share.join("other.bin"), &data);
    let srv = EmbeddedServer::start(&share, None);
    let m = Mount::new(
        &srv.url(),
        MountOpts::default()
            .dir_cache_ttl("1h")
            .arg("--poll-interval=1s"),
    );
    let partial = |m: &Mount| m.status_json()["cache"]["partial_bytes"].as_u64();
    // The same reads of a file that stays: its partial download is kept (the test
    // below would pass without reading anything otherwise).
    assert!(read_at(&m.join("other.bin"), 0, 1 << 20).unwrap() == data[..1 << 20]);
    assert!(
        wait_until(std::time::Duration::from_secs(10), || partial(&m)
            .is_some_and(|n| n >= 1 << 20)),
        "a partial download was not kept: {}",
        m.status_json()
    );
    let kept = partial(&m).unwrap_or(0);

    let path = m.join("big.bin");
    let mut f = File::open(&path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact(&mut buf).expect("read");
    assert!(buf == data[..1 << 20]);
    dav::delete(&srv.url(), "big.bin");
    assert!(
        wait_until(std::time::Duration::from_secs(20), || !path.exists()),
        "the deletion did not show"
    );
    drop(f);
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            m.status_json()["downloads"].as_u64() == Some(0) && partial(&m) == Some(kept)
        }),
        "partial bytes after the close: {:?} (other.bin's: {kept})",
        partial(&m)
    );
    // Still after a moment: the close's parking thread has run by now.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(partial(&m), Some(kept));
    m.unmount();
}

/// Issue 7, sparse cache: what a reader fetched of a file it did not read whole is kept
/// with its map of present ranges, across a remount, and served from the cache even with
/// the server gone; what was never fetched is not.
#[test]
fn a_partial_download_is_kept_across_a_remount_and_read_offline() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let data = numbered_blocks(64);
    write(&share.join("big.bin"), &data);
    let mut srv = EmbeddedServer::start(&share, None);
    let cache = tmp.path().join("cache");
    let opts = || MountOpts::default().cache_dir(&cache).dir_cache_ttl("1h");
    let m = Mount::new(&srv.url(), opts());
    let path = m.join("big.bin");
    let (head, far) = (0u64, 48u64 << 20);
    assert!(read_at(&path, head, 1 << 20).unwrap() == data[..1 << 20]);
    assert!(
        read_at(&path, far, 1 << 20).unwrap() == data[far as usize..(far as usize + (1 << 20))]
    );
    // Kept once no download runs any more (the last one is parked after its close).
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            state_of(&path) == "partial" && m.status_json()["downloads"].as_u64() == Some(0)
        }),
        "state after a partial read: {}",
        state_of(&path)
    );
    let kept = cached_bytes(&m, &path);
    assert!(
        kept >= 2 << 20 && kept < data.len() as u64,
        "{kept} bytes kept of a 64 MiB file read 2 MiB of"
    );
    m.unmount();

    let m = Mount::new(&srv.url(), opts());
    let path = m.join("big.bin");
    assert_eq!(
        state_of(&path),
        "partial",
        "the partial download did not survive"
    );
    srv.stop();
    assert!(
        read_at(&path, head, 1 << 20).expect("head, offline") == data[..1 << 20],
        "head differs"
    );
    assert!(
        read_at(&path, far, 1 << 20).expect("far range, offline")
            == data[far as usize..(far as usize + (1 << 20))],
        "far range differs"
    );
    assert!(
        read_at(&path, 32 << 20, 4096).is_err(),
        "bytes never fetched were read with the server stopped"
    );
    m.unmount();
}
