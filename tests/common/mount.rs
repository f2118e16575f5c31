//! [`Mount`]: an `edrive mount` of a URL on a temp mountpoint that is always unmounted again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{edrive_bin, find_in_path, pid_alive, read_from, require_fuse, signal_pid, wait_until};

/// Options for [`Mount::new`]. `Default` gives a plain anonymous mount.
#[derive(Clone, Debug, Default)]
pub struct MountOpts {
    /// `--user`.
    pub user: Option<String>,
    /// The password, passed in `$EDRIVE_PASSWORD` (never on the command line).
    pub password: Option<String>,
    /// `--cache-dir` (default: under this mount's private `$XDG_CACHE_HOME`).
    pub cache_dir: Option<PathBuf>,
    /// `--cache-size`, e.g. `"10M"`.
    pub cache_size: Option<String>,
    /// `--dir-cache-ttl`, e.g. `"500ms"`.
    pub dir_cache_ttl: Option<String>,
    /// More arguments, appended after the others.
    pub extra_args: Vec<String>,
    /// More environment variables for every `edrive` command of this mount.
    pub env: Vec<(String, String)>,
}

impl MountOpts {
    /// Sets `--user` and the password.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.user = Some(user.to_string());
        self.password = Some(password.to_string());
        self
    }

    /// Sets `--cache-dir`.
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// Sets `--cache-size`.
    pub fn cache_size(mut self, size: &str) -> Self {
        self.cache_size = Some(size.to_string());
        self
    }

    /// Sets `--dir-cache-ttl`.
    pub fn dir_cache_ttl(mut self, ttl: &str) -> Self {
        self.dir_cache_ttl = Some(ttl.to_string());
        self
    }

    /// Appends one extra argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// How long one `edrive` command (mount, unmount, status) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A mounted share. Dropping it always leaves nothing mounted (even after a panic): it tries
/// `edrive unmount`, then `fusermount3 -u -z`, then `umount -l`, and kills the daemon.
pub struct Mount {
    dir: Option<tempfile::TempDir>,
    mountpoint: PathBuf,
    env: Vec<(String, String)>,
    pid: Option<u32>,
    foreground: Option<Child>,
}

impl Mount {
    /// Runs `edrive mount URL MP` (background mode) on a fresh temp mountpoint and asserts it
    /// exits 0 with the mountpoint mounted; panics with its stderr otherwise.
    pub fn new(url: &str, opts: MountOpts) -> Mount {
        match Mount::try_new(url, opts) {
            Ok(m) => m,
            Err((status, stderr)) => panic!("edrive mount {url} failed ({status}):\n{stderr}"),
        }
    }

    /// Like [`Mount::new`] but returns the exit status and stderr when `edrive mount` fails
    /// (for tests that expect failure).
    pub fn try_new(url: &str, opts: MountOpts) -> Result<Mount, (ExitStatus, String)> {
        require_fuse();
        let mut m = Mount::prepare(&opts);
        let args = m.mount_args(url, &opts);
        let dir = m.dir_path();
        let (status, _out, err) = run_cmd(
            edrive_bin(),
            &args,
            &m.env,
            opts.password.as_deref(),
            &dir,
            "mount",
        );
        if !status.success() {
            // Nothing should be mounted, but never leave a mount behind.
            m.cleanup();
            return Err((status, err));
        }
        if !is_mounted(&m.mountpoint) {
            m.cleanup();
            panic!(
                "edrive mount {url} exited 0 but {} is not in /proc/mounts; stderr:\n{err}",
                m.mountpoint.display()
            );
        }
        m.pid = m.read_pid();
        Ok(m)
    }

    /// Runs `edrive mount --foreground URL MP` as a child and waits (≤ 30 s) until the
    /// mountpoint is mounted. Its stderr is in [`Mount::log`].
    pub fn spawn_foreground(url: &str, opts: MountOpts) -> Mount {
        require_fuse();
        let mut m = Mount::prepare(&opts);
        let mut args = m.mount_args(url, &opts);
        args.push("--foreground".into());
        let dir = m.dir_path();
        let out = std::fs::File::create(dir.join("foreground.stdout")).expect("stdout file");
        let err = std::fs::File::create(dir.join("foreground.stderr")).expect("stderr file");
        let mut cmd = Command::new(edrive_bin());
        cmd.args(&args)
            .envs(m.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(p) = &opts.password {
            cmd.env("EDRIVE_PASSWORD", p);
        }
        let child = cmd.spawn().expect("cannot run edrive mount --foreground");
        m.pid = Some(child.id());
        m.foreground = Some(child);
        let mp = m.mountpoint.clone();
        let up = wait_until(Duration::from_secs(30), || {
            is_mounted(&mp)
                || matches!(
                    m.foreground.as_mut().map(|c| c.try_wait()),
                    Some(Ok(Some(_)))
                )
        });
        if !up || !is_mounted(&mp) {
            let log = m.log();
            m.cleanup();
            panic!("edrive mount --foreground {url} did not mount; stderr:\n{log}");
        }
        m
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `path().join(rel)`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// The daemon's pid, from `edrive status --json` right after mounting (or the
    /// foreground child's pid).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// This mount's private `$XDG_CACHE_HOME` (where the default cache dir lives).
    pub fn xdg_cache_home(&self) -> PathBuf {
        self.dir_path().join("xdg-cache")
    }

    /// The foreground child's stderr (empty for background mounts).
    pub fn log(&self) -> String {
        read_from(&self.dir_path().join("foreground.stderr"), 0)
    }

    /// Sends a signal to the daemon (or foreground child).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid {
            signal_pid(pid, sig);
        }
    }

    /// Waits ≤ `timeout` for the foreground child to exit; its status if it did.
    pub fn wait_foreground_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.foreground.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `edrive status MP --json` and parses its stdout; panics on failure.
    pub fn status_json(&self) -> serde_json::Value {
        let (status, out, err) = self.edrive(&["status", "--json"]);
        assert!(
            status.success(),
            "edrive status --json failed ({status}):\n{err}"
        );
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("edrive status --json printed invalid JSON ({e}):\n{out}"))
    }

    /// Runs `edrive SUBCOMMAND MP [args...]`, asserts it succeeded and returns its stdout.
    pub fn edrive_ok(&self, sub_and_args: &[&str]) -> String {
        let (status, out, err) = self.edrive(sub_and_args);
        assert!(
            status.success(),
            "edrive {sub_and_args:?} failed: {out}{err}"
        );
        out
    }

    /// Runs `edrive SUBCOMMAND MP [args...]` with this mount's environment; returns
    /// (status, stdout, stderr).
    pub fn edrive(&self, sub_and_args: &[&str]) -> (ExitStatus, String, String) {
        self.edrive_as(sub_and_args, None)
    }

    /// Like [`Mount::edrive`], with `password` in `$EDRIVE_PASSWORD` (e.g. for `login`).
    pub fn edrive_with_password(
        &self,
        sub_and_args: &[&str],
        password: &str,
    ) -> (ExitStatus, String, String) {
        self.edrive_as(sub_and_args, Some(password))
    }

    fn edrive_as(
        &self,
        sub_and_args: &[&str],
        password: Option<&str>,
    ) -> (ExitStatus, String, String) {
        let mut args: Vec<String> = Vec::new();
        if let Some((sub, rest)) = sub_and_args.split_first() {
            args.push(sub.to_string());
            args.push(self.mountpoint.display().to_string());
            args.extend(rest.iter().map(|s| s.to_string()));
        }
        run_cmd(
            edrive_bin(),
            &args,
            &self.env,
            password,
            &self.dir_path(),
            "cmd",
        )
    }

    /// Runs `edrive ARGS...` as given (no mountpoint added), with the mount's environment.
    #[allow(dead_code)]
    pub fn edrive_plain(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_cmd(
            edrive_bin(),
            &args,
            &self.env,
            None,
            &self.dir_path(),
            "cmd",
        )
    }

    /// Runs `edrive unmount MP`, asserts it succeeded, the mountpoint left /proc/mounts and
    /// the daemon exited (≤ 10 s).
    pub fn unmount(mut self) {
        let (status, _out, err) = self.edrive(&["unmount"]);
        assert!(status.success(), "edrive unmount failed ({status}):\n{err}");
        assert!(
            !is_mounted(&self.mountpoint),
            "{} is still mounted after edrive unmount",
            self.mountpoint.display()
        );
        if let Some(pid) = self.pid {
            let _ = self.wait_foreground_exit(Duration::from_secs(10));
            assert!(
                wait_until(Duration::from_secs(10), || !pid_alive(pid)),
                "daemon {pid} still running 10 s after edrive unmount"
            );
        }
        // Drop finds nothing left to do.
    }

    /// Creates the temp dir, the mountpoint and the private XDG dirs.
    fn prepare(opts: &MountOpts) -> Mount {
        let dir = super::tempdir();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("cannot create the mountpoint");
        let mountpoint = std::fs::canonicalize(&mountpoint).expect("cannot resolve mountpoint");
        let xdg = dir.path().join("xdg-cache");
        std::fs::create_dir(&xdg).expect("cannot create XDG_CACHE_HOME");
        let mut env = vec![("XDG_CACHE_HOME".to_string(), xdg.display().to_string())];
        env.extend(opts.env.iter().cloned());
        Mount {
            dir: Some(dir),
            mountpoint,
            env,
            pid: None,
            foreground: None,
        }
    }

    fn mount_args(&self, url: &str, opts: &MountOpts) -> Vec<String> {
        let mut args = vec![
            "mount".to_string(),
            url.to_string(),
            self.mountpoint.display().to_string(),
        ];
        if let Some(u) = &opts.user {
            args.extend(["--user".into(), u.clone()]);
        }
        if let Some(d) = &opts.cache_dir {
            args.extend(["--cache-dir".into(), d.display().to_string()]);
        }
        if let Some(s) = &opts.cache_size {
            args.extend(["--cache-size".into(), s.clone()]);
        }
        if let Some(t) = &opts.dir_cache_ttl {
            args.extend(["--dir-cache-ttl".into(), t.clone()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        args
    }

    fn dir_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    /// The `"pid"` of `edrive status --json`, if it answers.
    fn read_pid(&self) -> Option<u32> {
        let (status, out, err) = self.edrive(&["status", "--json"]);
        if !status.success() {
            eprintln!("warning: edrive status --json failed ({status}); daemon pid unknown: {err}");
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok())
    }

    /// Unmounts by every means available and stops the daemon; never panics.
    fn cleanup(&mut self) {
        let mp = self.mountpoint.display().to_string();
        if is_mounted(&self.mountpoint) {
            let _ = try_run(
                edrive_bin(),
                &["unmount", &mp],
                &self.env,
                Duration::from_secs(20),
            );
        }
        if is_mounted(&self.mountpoint) {
            if let Some(fm) = find_in_path("fusermount3") {
                let _ = try_run(
                    &fm.display().to_string(),
                    &["-u", "-z", &mp],
                    &[],
                    Duration::from_secs(10),
                );
            }
        }
        if is_mounted(&self.mountpoint) {
            let _ = try_run("umount", &["-l", &mp], &[], Duration::from_secs(10));
        }
        if let Some(mut child) = self.foreground.take() {
            super::terminate_child(&mut child, Duration::from_secs(5), false);
        }
        if let Some(pid) = self.pid.take() {
            if !wait_until(Duration::from_secs(5), || !pid_alive(pid)) && is_edrive(pid) {
                signal_pid(pid, libc::SIGTERM);
                if !wait_until(Duration::from_secs(5), || !pid_alive(pid)) {
                    signal_pid(pid, libc::SIGKILL);
                }
            }
        }
        if is_mounted(&self.mountpoint) {
            // Removing the temp dir now would delete through the mount: leak it instead.
            eprintln!(
                "error: {} is still mounted; leaving its temp dir in place",
                self.mountpoint.display()
            );
            if let Some(d) = self.dir.take() {
                let _ = d.keep();
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Whether `/proc/<pid>/cmdline` belongs to an `edrive` process.
fn is_edrive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("edrive"))
        .unwrap_or(false)
}

/// Whether `path` is a mountpoint listed in /proc/mounts (octal escapes decoded).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|mp| unescape_mount_path(mp) == want)
}

/// Decodes the `\040`-style escapes of /proc/mounts.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a command with its output in files under `dir` (so a daemon inheriting them cannot
/// block us), `password` in `$EDRIVE_PASSWORD`; panics if it exceeds [`COMMAND_TIMEOUT`].
fn run_cmd(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    password: Option<&str>,
    dir: &Path,
    tag: &str,
) -> (ExitStatus, String, String) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let out_path = dir.join(format!("{tag}-{n}.stdout"));
    let err_path = dir.join(format!("{tag}-{n}.stderr"));
    let out = std::fs::File::create(&out_path).expect("cannot create stdout file");
    let err = std::fs::File::create(&err_path).expect("cannot create stderr file");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("EDRIVE_PASSWORD")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(p) = password {
        cmd.env("EDRIVE_PASSWORD", p);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {} did not finish within {COMMAND_TIMEOUT:?}; stderr:\n{}",
                args.join(" "),
                read_from(&err_path, 0)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, read_from(&out_path, 0), read_from(&err_path, 0))
}

/// Runs a command with a timeout, output discarded; never panics. `Some(success)` if it ran.
fn try_run(
    program: &str,
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> Option<bool> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
