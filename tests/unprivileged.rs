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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;

fn require_tools() {
    require_fuse();
    let missing: Vec<&str> = [
        "unshare", "nsenter", "setpriv", "useradd", "userdel", "mount",
    ]
    .into_iter()
    .filter(|t| {
        find_in_path(t).is_none()
            && !Path::new("/usr/sbin").join(t).exists()
            && !Path::new("/sbin").join(t).exists()
    })
    .collect();
    assert!(
        missing.is_empty(),
        "requires {missing:?} (packages util-linux, passwd, mount)"
    );
}

/// A user created for this test (no home, no login shell); deleted when dropped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn create() -> TestUser {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "edrv{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        // Other tests may be adding users at the same time: useradd then fails to lock
        // /etc/passwd for a moment.
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(&name)
                .output()
                .expect("run useradd");
            if out.status.success() {
                let id = |flag: &str| -> u32 {
                    let out = Command::new("id")
                        .arg(flag)
                        .arg(&name)
                        .output()
                        .expect("id");
                    String::from_utf8_lossy(&out.stdout)
                        .trim()
                        .parse()
                        .expect("a numeric id")
                };
                return TestUser {
                    uid: id("-u"),
                    gid: id("-g"),
                    name,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("useradd {name} failed: {last}");
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("userdel")
                .arg(&self.name)
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("error: could not remove test user {}", self.name);
    }
}

/// A private mount namespace where `/dev/fuse` is a copy with mode `mode`, held open by
/// a `sleep` (killed when dropped).
struct Namespace {
    holder: Child,
    _dir: tempfile::TempDir,
}

impl Namespace {
    fn new(mode: u32) -> Namespace {
        let dir = tempdir();
        let dev = dir.path().join("fuse");
        let c = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mknod has no other preconditions.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(10, 229)) };
        assert_eq!(
            r,
            0,
            "mknod {}: {}",
            dev.display(),
            std::io::Error::last_os_error()
        );
        set_mode(&dev, mode);
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind '{}' /dev/fuse && echo ready && exec sleep 100000",
                dev.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        if line.trim() != "ready" {
            terminate_child(&mut holder, Duration::from_secs(1), false);
            panic!("could not set up a mount namespace with a copy of /dev/fuse");
        }
        Namespace { holder, _dir: dir }
    }

    /// `program args` in the namespace as `user`, with exactly the environment `env`.
    fn run_as(
        &self,
        user: &TestUser,
        env: &[(&str, String)],
        program: &Path,
        args: &[&str],
    ) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder.id().to_string(), "-m", "--", "setpriv"])
            .arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args(["--init-groups", "--", "env", "-i"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        let out = cmd.output().expect("run nsenter");
        eprintln!(
            "as {}: {} {args:?} -> {}\n{}{}",
            user.name,
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `program args` in the namespace as root.
    fn run_as_root(&self, program: &str, args: &[&str]) -> Option<bool> {
        Command::new("nsenter")
            .args(["-t", &self.holder.id().to_string(), "-m", "--", program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .map(|s| s.success())
    }

    /// The line of /proc/mounts (as seen in the namespace) for `mountpoint`.
    fn mount_line(&self, mountpoint: &Path) -> Option<String> {
        let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", self.holder.id())).ok()?;
        let want = mountpoint.display().to_string();
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(want.as_str()))
            .map(str::to_string)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        terminate_child(&mut self.holder, Duration::from_secs(1), false);
    }
}

/// The user's mount: unmounted (by the user, else by root with `fusermount3 -u -z`) and
/// its daemon stopped when dropped, also after a failed assertion.
struct UserMount<'a> {
    ns: &'a Namespace,
    user: &'a TestUser,
    env: Vec<(&'static str, String)>,
    edrive: PathBuf,
    mountpoint: PathBuf,
    pid: Option<u32>,
}

impl UserMount<'_> {
    fn edrive(&self, args: &[&str]) -> Output {
        self.ns.run_as(self.user, &self.env, &self.edrive, args)
    }
}

impl Drop for UserMount<'_> {
    fn drop(&mut self) {
        let mp = self.mountpoint.display().to_string();
        if self.ns.mount_line(&self.mountpoint).is_some() {
            let _ = self.edrive(&["unmount", "--force", "--timeout", "10s", &mp]);
        }
        if self.ns.mount_line(&self.mountpoint).is_some() {
            let _ = self.ns.run_as_root("fusermount3", &["-u", "-z", &mp]);
        }
        if let Some(pid) = self.pid {
            if !wait_until(Duration::from_secs(5), || !pid_alive(pid)) {
                signal_pid(pid, libc::SIGKILL);
            }
        }
    }
}

/// The edrive binary, where the test user can run it: in place when every folder above
/// it is traversable by others, else a copy in `dir`.
fn edrive_for_others(dir: &Path) -> PathBuf {
    let bin = PathBuf::from(edrive_bin());
    let reachable = bin
        .ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
        && std::fs::metadata(&bin).is_ok_and(|m| m.mode() & 0o005 == 0o005);
    if reachable {
        return bin;
    }
    let copy = dir.join("edrive");
    std::fs::copy(&bin, &copy).expect("copy the edrive binary");
    set_mode(&copy, 0o755);
    copy
}

fn chown(path: &Path, user: &TestUser) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

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
