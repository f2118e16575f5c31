//! `edrive mount` as a normal user (issue 20), with a user this test creates (and always
//! removes). A normal user mounts through the setuid-root `fusermount3`, which opens
//! `/dev/fuse` with the caller's rights, so it needs `/dev/fuse` mode 0666. The machine's
//! device is never changed: each scenario runs in a private mount namespace (`unshare -m
//! --propagation private`) where a copy of the device node (char 10,229) with the mode
//! the scenario needs is bind-mounted over `/dev/fuse`. `fusermount3` run in there mounts
//! in there, and every command of the scenario enters it with `nsenter` and becomes the
//! user with `setpriv`, with no `XDG_RUNTIME_DIR` (as for `su` or a user without a login
//! session) and a private `TMPDIR`.
//!
//! - 0666: mount, list, read, write reaching the server (checked in the served folder),
//!   pin (through the installed file-manager action), status (daemon, control socket and
//!   cache dir all the user's), unmount.
//! - 0600: `edrive mount` fails with one line that says what is missing and the fix.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::user::*;
use common::*;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_normal_user_mounts_reads_writes_pins_and_unmounts() {
    require_tools();
    let user = TestUser::create();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(share.join("docs")).expect("mkdir");
    std::fs::write(share.join("docs/a.txt"), b"hello from the server\n").expect("seed");
    std::fs::write(share.join("docs/b.bin"), pseudo_random_bytes(7, 300_000)).expect("seed");
    let srv = EmbeddedServer::start(&share, None);
    let edrive = edrive_for_others(tmp.path());
    let (home, userdir, mnt) = (
        tmp.path().join("home"),
        tmp.path().join("tmp"),
        tmp.path().join("mnt"),
    );
    for d in [&home, &userdir, &mnt] {
        std::fs::create_dir(d).expect("mkdir");
        chown(d, &user);
    }
    let env = vec![
        ("HOME", home.display().to_string()),
        ("TMPDIR", userdir.display().to_string()),
        (
            "PATH",
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_string(),
        ),
    ];

    let ns = Namespace::new(0o666);
    let mut m = UserMount {
        ns: &ns,
        user: &user,
        env: env.clone(),
        edrive: edrive.clone(),
        mountpoint: mnt.clone(),
        pid: None,
    };
    let mp = mnt.display().to_string();
    let out = m.edrive(&["mount", &srv.url(), &mp]);
    assert!(
        out.status.success(),
        "mount as {} failed: {}",
        user.name,
        text(&out)
    );
    let line = ns.mount_line(&mnt).expect("mounted in the namespace");
    assert!(line.contains(" fuse.edrive "), "{line}");
    assert!(line.contains(&format!("user_id={}", user.uid)), "{line}");
    assert!(
        !is_mounted(&mnt),
        "the mount leaked out of the private namespace"
    );

    let status = m.edrive(&["status", &mp, "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let pid = s["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .expect("daemon pid");
    m.pid = Some(pid);
    // The daemon is the user's, and so are its control socket and cache.
    let daemon_uid = std::fs::metadata(format!("/proc/{pid}"))
        .expect("daemon")
        .uid();
    assert_eq!(daemon_uid, user.uid);
    let sockets = userdir.join(format!("edrive-{}", user.uid));
    let md = std::fs::symlink_metadata(&sockets).expect("the control socket folder");
    assert_eq!(
        (md.uid(), md.permissions().mode() & 0o777),
        (user.uid, 0o700)
    );
    let cache = home.join(".cache/edrive");
    let caches: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache under HOME")
        .collect();
    assert_eq!(caches.len(), 1);
    assert_eq!(
        s["kernel_reads"]["available"], false,
        "no passthrough without root: {s}"
    );

    // List and read.
    let ls = ns.run_as(&user, &env, Path::new("/bin/ls"), &[&format!("{mp}/docs")]);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "a.txt\nb.bin\n",
        "{}",
        text(&ls)
    );
    let cat = ns.run_as(
        &user,
        &env,
        Path::new("/bin/cat"),
        &[&format!("{mp}/docs/a.txt")],
    );
    assert_eq!(cat.stdout, b"hello from the server\n", "{}", text(&cat));
    let sum = ns.run_as(
        &user,
        &env,
        Path::new("/usr/bin/sha256sum"),
        &[&format!("{mp}/docs/b.bin")],
    );
    let want = sha256_bytes(&pseudo_random_bytes(7, 300_000));
    assert!(
        String::from_utf8_lossy(&sum.stdout).starts_with(&want),
        "{}",
        text(&sum)
    );

    // Write, and the server has it.
    let w = ns.run_as(
        &user,
        &env,
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!("printf 'written by a normal user' > '{mp}/docs/new.txt'"),
        ],
    );
    assert!(w.status.success(), "{}", text(&w));
    let sync = m.edrive(&["sync", &mp]);
    assert!(sync.status.success(), "{}", text(&sync));
    assert_eq!(
        std::fs::read(share.join("docs/new.txt")).expect("on the server"),
        b"written by a normal user"
    );

    // Pin through the file-manager action the user installed.
    let install = ns.run_as(&user, &env, &edrive, &["desktop", "install"]);
    assert!(install.status.success(), "{}", text(&install));
    let action = home.join(".local/share/edrive/edrive-action");
    let pin = ns.run_as(&user, &env, &action, &["pin", &format!("{mp}/docs")]);
    assert!(pin.status.success(), "{}", text(&pin));
    let st = m.edrive(&["status", &format!("{mp}/docs/b.bin"), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(
        (st["state"].as_str(), st["pinned"].as_bool()),
        (Some("pinned"), Some(true)),
        "{st}"
    );

    // Unmount.
    let out = m.edrive(&["unmount", &mp]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        ns.mount_line(&mnt).is_none(),
        "still mounted after edrive unmount"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "daemon still running"
    );
    drop(m);
}

#[test]
fn without_access_to_dev_fuse_mount_says_so_in_one_line() {
    require_tools();
    let user = TestUser::create();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let srv = EmbeddedServer::start(&share, None);
    let edrive = edrive_for_others(tmp.path());
    let (home, mnt) = (tmp.path().join("home"), tmp.path().join("mnt"));
    for d in [&home, &mnt] {
        std::fs::create_dir(d).expect("mkdir");
        chown(d, &user);
    }
    let env = vec![
        ("HOME", home.display().to_string()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
    ];
    let ns = Namespace::new(0o600);
    let m = UserMount {
        ns: &ns,
        user: &user,
        env: env.clone(),
        edrive: edrive.clone(),
        mountpoint: mnt.clone(),
        pid: None,
    };
    let out = m.edrive(&["mount", &srv.url(), &mnt.display().to_string()]);
    assert!(!out.status.success(), "mounted without access to /dev/fuse");
    assert!(ns.mount_line(&mnt).is_none());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(
        err.contains("/dev/fuse is not readable and writable for you (mode 0600")
            && err.contains("chmod 0666 /dev/fuse"),
        "{err}"
    );
    drop(m);
}
