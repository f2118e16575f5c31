//! A normal user for tests: [`TestUser`] (created and always removed), a private mount
//! namespace where `/dev/fuse` is a copy with the mode a test needs ([`Namespace`]; the
//! machine's device is never changed), and [`UserMount`], that user's mount in it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;

pub fn require_tools() {
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
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn create() -> TestUser {
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
pub struct Namespace {
    holder: Child,
    _dir: tempfile::TempDir,
}

impl Namespace {
    /// A command prefix that runs a program in this namespace as `user` (the program
    /// and its arguments follow; the environment is the caller's).
    pub fn wrapper(&self, user: &TestUser) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.holder.id().to_string(),
            "-m".into(),
            "--".into(),
            "setpriv".into(),
            format!("--reuid={}", user.uid),
            format!("--regid={}", user.gid),
            "--init-groups".into(),
            "--".into(),
        ]
    }

    pub fn new(mode: u32) -> Namespace {
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
    pub fn run_as(
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
    pub fn run_as_root(&self, program: &str, args: &[&str]) -> Option<bool> {
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
    pub fn mount_line(&self, mountpoint: &Path) -> Option<String> {
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
pub struct UserMount<'a> {
    pub ns: &'a Namespace,
    pub user: &'a TestUser,
    pub env: Vec<(&'static str, String)>,
    pub edrive: PathBuf,
    pub mountpoint: PathBuf,
    pub pid: Option<u32>,
}

impl UserMount<'_> {
    pub fn edrive(&self, args: &[&str]) -> Output {
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
pub fn edrive_for_others(dir: &Path) -> PathBuf {
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

pub fn chown(path: &Path, user: &TestUser) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}
