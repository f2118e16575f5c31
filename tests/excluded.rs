//! Excluded folders, with a real mount on the embedded server: after `edrive exclude`
//! the folder is an empty read-only placeholder that costs no request (the server's log,
//! with polling on and the whole mount walked), its cached content is freed, a pin in it
//! is refused, it stays excluded across a remount, and `edrive include` lists it again.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

fn arch_requests(srv: &EmbeddedServer) -> Vec<(String, String, u16)> {
    srv.requests()
        .into_iter()
        .filter(|(_, p, _)| p.contains("/arch"))
        .collect()
}

#[test]
fn excluded_folder_costs_nothing_and_comes_back() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    for sub in ["arch/one", "arch/two", "keep"] {
        fs::create_dir_all(share.join(sub)).expect("mkdir");
    }
    for i in 0..20 {
        fs::write(
            share.join(format!("arch/one/{i}.bin")),
            pseudo_random_bytes(i, 10_000),
        )
        .expect("seed");
        fs::write(share.join(format!("arch/two/{i}.txt")), b"two\n").expect("seed");
    }
    fs::write(share.join("keep/a.txt"), b"a\n").expect("seed");
    let mut srv = EmbeddedServer::start(&share, None);
    let cache = tmp.path().join("cache");
    let opts = MountOpts::default()
        .cache_dir(&cache)
        .dir_cache_ttl("200ms")
        .arg("--poll-interval=200ms");
    let m = Mount::new(&srv.url(), opts.clone());
    assert_eq!(walk(&m.join("arch")).len(), 42, "listed");
    assert_eq!(
        fs::read(m.join("arch/one/3.bin")).expect("read"),
        pseudo_random_bytes(3, 10_000)
    );
    let arch = m.join("arch").display().to_string();
    let entry = |path: &str| -> serde_json::Value {
        let (st, out, err) = m.edrive_plain(&["status", path, "--json"]);
        assert!(st.success(), "{out}{err}");
        serde_json::from_str(&out).expect("json")
    };
    assert_eq!(entry(&arch)["cached_bytes"], 10_000);

    let (st, out, err) = m.edrive_plain(&["exclude", &arch]);
    assert!(st.success(), "exclude: {out}{err}");
    assert!(walk(&m.join("arch")).is_empty(), "an empty placeholder");
    assert_eq!(xattr(&m.join("arch"), "user.edrive.state"), "excluded");
    assert_eq!(entry(&arch)["state"], "excluded");
    assert_eq!(m.status_json()["hydrated_files"], 0, "cached content freed");
    assert_eq!(m.status_json()["excluded"][0], "/arch");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(m.join("arch"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "read-only placeholder: {mode:o}");
    for r in [
        fs::write(m.join("arch/new.txt"), b"x"),
        fs::create_dir(m.join("arch/d")),
        fs::remove_dir(m.join("arch")),
    ] {
        assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EACCES));
    }
    let (st, _, err) = m.edrive_plain(&["pin", &arch]);
    assert!(
        !st.success() && err.contains("excluded"),
        "pin refused: {err}"
    );

    // No request for it: the mount walked, listings expired, polls run.
    srv.reset_requests();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let _ = walk(m.path());
        let _ = fs::metadata(m.join("arch/one/3.bin"));
    }
    assert!(walk(m.path()).contains_key("keep/a.txt"));
    assert!(
        arch_requests(&srv).is_empty(),
        "requests for the excluded folder: {:?}",
        arch_requests(&srv)
    );

    // Across a remount.
    m.unmount();
    let m = Mount::new(&srv.url(), opts);
    let _ = walk(m.path());
    std::thread::sleep(Duration::from_millis(500));
    assert!(walk(&m.join("arch")).is_empty());
    assert_eq!(xattr(&m.join("arch"), "user.edrive.state"), "excluded");
    assert!(arch_requests(&srv).is_empty(), "{:?}", arch_requests(&srv));

    // Included again: listed.
    let (st, out, err) = m.edrive_plain(&["include", &m.join("arch").display().to_string()]);
    assert!(st.success(), "include: {out}{err}");
    assert_eq!(walk(&m.join("arch")).len(), 42, "listed again");
    assert!(!arch_requests(&srv).is_empty());
    assert_eq!(fs::read(m.join("arch/two/5.txt")).expect("read"), b"two\n");
    m.unmount();
}
