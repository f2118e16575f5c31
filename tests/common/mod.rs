//! Shared integration-test harness: servers (the embedded `edrive serve`, private instances
//! of Apache httpd with mod_dav, nginx with dav-ext, lighttpd with mod_webdav, WsgiDAV and
//! `rclone serve webdav`, a hostile canned-response server), FUSE mounts of `edrive`, and
//! helpers to build and compare file trees.
//!
//! Use it from a test file with `mod common;` and `use common::*;`. Anything a test needs
//! that the machine lacks (root, /dev/fuse, fusermount3, a server's binary) makes the test
//! panic with a clear message; nothing is skipped silently.

#![allow(dead_code)]

pub mod apache;
pub mod dav;
pub mod desktop;
pub mod home;
pub mod hostile;
pub mod http;
pub mod lighttpd;
pub mod mount;
pub mod nginx;
pub mod rclone;
pub mod seaweedfs;
pub mod server;
pub mod strip_proxy;
pub mod tree;
pub mod user;
pub mod wsgidav;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use apache::ApacheServer;
#[allow(unused_imports)]
pub use hostile::{multistatus, multistatus_xml, Canned, DavEntry, HostileServer};
#[allow(unused_imports)]
pub use http::{client, propfind};
#[allow(unused_imports)]
pub use mount::{is_mounted, Mount, MountOpts};
#[allow(unused_imports)]
pub use server::EmbeddedServer;
#[allow(unused_imports)]
pub use tree::{
    file_contents, make_tree, pseudo_random_bytes, sha256_bytes, sha256_file, walk, TreeSpec,
};

/// What every test server offers: its share URL and a log of the requests it answered.
pub trait TestServer {
    /// The share's root URL, ending in `/` (e.g. `http://127.0.0.1:PORT/`).
    fn url(&self) -> String;
    /// Every request answered so far (since the last `reset_requests`), in order, as
    /// (method, raw request path without query, status). The requests of edrive's probe
    /// of the server (under `.edrive-probe-*`, see README "Servers") are left out: they
    /// touch no content of the share.
    fn requests(&self) -> Vec<(String, String, u16)>;
    /// How many requests with this method (e.g. `"GET"`) were answered.
    fn count_requests(&self, method: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, _, _)| m.eq_ignore_ascii_case(method))
            .count()
    }
    /// Forgets the requests logged so far (later `requests()` start from here).
    fn reset_requests(&mut self);
    /// Gives what the test itself wrote into the served folder to the server's user, so
    /// that the server can change it over WebDAV. No-op unless the server runs as another
    /// user (`www-data`).
    fn chown_data(&self) {}
}

/// Which real server a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    /// `edrive serve`.
    Embedded,
    /// Apache httpd with mod_dav.
    Apache,
    /// nginx with its dav module and the dav-ext module (PROPFIND).
    Nginx,
    /// lighttpd with mod_webdav.
    Lighttpd,
    /// WsgiDAV 4 on cheroot (from the venv of [`wsgidav::venv_dir`]).
    Wsgidav,
    /// `rclone serve webdav` of a local folder.
    Rclone,
}

/// A started server of any kind, behind the shared test interface.
pub fn start_server(kind: Server, root: &std::path::Path) -> Box<dyn TestServer> {
    match kind {
        Server::Embedded => Box::new(EmbeddedServer::start(root, None)),
        Server::Apache => Box::new(ApacheServer::start(root, None)),
        Server::Nginx => Box::new(nginx::start(root)),
        Server::Lighttpd => Box::new(lighttpd::start(root)),
        Server::Wsgidav => Box::new(wsgidav::start(root)),
        Server::Rclone => Box::new(rclone::start(root)),
    }
}

/// `requests` without those of edrive's probe of the server (see [`TestServer::requests`]).
pub fn without_probe(requests: Vec<(String, String, u16)>) -> Vec<(String, String, u16)> {
    requests
        .into_iter()
        .filter(|(_, path, _)| !path.contains(".edrive-probe-"))
        .collect()
}

/// A fresh temporary directory (mode 0755, so a server running as `www-data` can traverse
/// it), removed when dropped. Lives under `$TMPDIR` (default /tmp).
pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("edrive-test-")
        .tempdir()
        .expect("cannot create a temporary directory");
    set_mode(dir.path(), 0o755);
    dir
}

/// Panics unless this test can mount FUSE file systems: running as root, `/dev/fuse`
/// present, `fusermount3` on PATH.
pub fn require_fuse() {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("not running as root".to_string());
    }
    if !Path::new("/dev/fuse").exists() {
        missing.push("/dev/fuse does not exist".to_string());
    }
    if find_in_path("fusermount3").is_none() {
        missing.push("fusermount3 is not on PATH (apt-get install fuse3)".to_string());
    }
    if !missing.is_empty() {
        panic!("requires /dev/fuse and root: {}", missing.join("; "));
    }
}

/// The full path of an executable found on `$PATH`, if any.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `edrive` binary under test.
pub fn edrive_bin() -> &'static str {
    env!("CARGO_BIN_EXE_edrive")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
        .port()
}

/// Polls `cond` every 20 ms until it returns true or `timeout` passes; returns its last value.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// Sends `sig` to a process (ignores a process that is already gone).
pub fn signal_pid(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesized command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Stops a child we spawned: SIGTERM (to its process group when `group` is true), wait up
/// to `grace`, then SIGKILL; always reaps it.
pub fn terminate_child(child: &mut Child, grace: Duration, group: bool) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id() as libc::pid_t;
    let target = if group { -pid } else { pid };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(target, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            if group {
                // Reap stragglers of the group (e.g. Apache workers).
                unsafe { libc::kill(target, libc::SIGKILL) };
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(target, libc::SIGKILL) };
    let _ = child.wait();
}

/// Reads a log file from byte offset `from` (empty if it does not exist).
pub fn read_from(path: &Path, from: u64) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let start = (from as usize).min(data.len());
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// The current length of a file (0 if it does not exist).
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The value of extended attribute `name` of `path` (trimmed; empty if it has none), read
/// with `getfattr` as a user would.
pub fn xattr(path: &Path, name: &str) -> String {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (package attr) is needed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Path of the harness's readiness probe request; access-log parsers leave it out.
pub const PROBE_PATH: &str = "/__edrive_harness_probe__";

/// Whether an HTTP server on `port` answers `HEAD PROBE_PATH` (with any status).
pub fn http_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("HEAD {PROBE_PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/"))
}

/// Parses `STATUS METHOD PATH PROTO` access-log lines (Apache `%>s %r`, nginx
/// `$status $request`, lighttpd `%>s %r`, the WsgiDAV launcher's log) into (method, raw
/// path, status); the query string is dropped and the harness's readiness probes are left
/// out.
pub fn parse_access_log(log: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let mut parts = line.split_whitespace();
        let (Some(status), Some(method)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(status) = status.parse::<u16>() else {
            continue;
        };
        let path = parts.next().unwrap_or("-");
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with(PROBE_PATH) {
            continue;
        }
        out.push((method.to_string(), path.to_string(), status));
    }
    out
}

/// Reads an access log from byte offset `from` once it has been quiet for 150 ms (at most
/// 2 s): servers write the line after the response went out.
pub fn read_settled_log(log: &Path, from: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut len = file_len(log);
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let now = file_len(log);
        if now == len || Instant::now() >= deadline {
            break;
        }
        len = now;
    }
    read_from(log, from)
}

/// Whether the test process runs as root (servers that can switch users then run as
/// `www-data`, like a packaged server does).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `chown -R www-data:www-data PATH`.
pub fn chown_www_data(path: &Path) {
    let out = Command::new("chown")
        .arg("-R")
        .arg("www-data:www-data")
        .arg(path)
        .output()
        .expect("cannot run chown");
    assert!(
        out.status.success(),
        "chown -R www-data {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a server's temp dir `conf_dir` and the data folder `root` usable by `www-data`:
/// both are chowned to it, and 0700 temp-dir ancestors of `root` are made traversable
/// (anything else that is not traversable is refused with a panic). `conf_dir` gets mode
/// 0755 even when not running as root.
pub fn give_to_www_data(conf_dir: &Path, root: &Path) {
    set_mode(conf_dir, 0o755);
    if !running_as_root() {
        return;
    }
    chown_www_data(conf_dir);
    chown_www_data(root);
    let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| "/tmp".into());
    let mut cur = root.parent();
    while let Some(p) = cur {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o001 == 0 {
            if p.starts_with(&tmp) && p != tmp {
                set_mode(p, (mode & 0o7777) | 0o011);
            } else {
                panic!(
                    "the server runs as www-data and cannot reach {}: {} is not traversable \
                     (mode {:o}); put the data under {}",
                    root.display(),
                    p.display(),
                    mode & 0o7777,
                    tmp.display()
                );
            }
        }
        cur = p.parent();
    }
}

/// `path` as text to put between double quotes in a server's config file; panics if it
/// holds a character some config syntax would take specially (`"`, `'`, `\`, `$`, a
/// line break).
pub fn config_path(path: &Path) -> String {
    let s = path.display().to_string();
    assert!(
        !s.contains(['"', '\'', '\\', '$', '\n', '\r']),
        "path unusable in a server config: {s:?}"
    );
    s
}

/// What differs between the servers a [`DaemonServer`] runs.
pub struct DaemonSpec {
    /// Name for messages and the temp dir, e.g. `"nginx"`.
    pub name: &'static str,
    /// Whether the server drops to `www-data` when started as root (the data folder and
    /// the temp dir are then chowned to it).
    pub www_data: bool,
    /// Its access log, relative to the temp dir.
    pub access_log: &'static str,
    /// Turns the access log into (method, path, status) triples.
    pub parse_log: fn(&str) -> Vec<(String, String, u16)>,
    /// Logs (relative to the temp dir) shown when it fails to start, besides its console.
    pub error_logs: &'static [&'static str],
    /// Panics with what to install when the server is missing.
    pub require: fn(),
    /// Writes the config for (temp dir, data folder, port, runs as www-data) and returns
    /// the command that runs the server in the foreground. The temp dir is chowned to
    /// www-data afterwards when the server runs as www-data.
    pub command: fn(&Path, &Path, u16, bool) -> Command,
}

/// How long a server may take to answer its first request.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A WebDAV server serving a data folder at `http://127.0.0.1:PORT/`, configured entirely
/// in a temp dir (config, logs, temp files, pid file), run in the foreground in its own
/// process group and logging every request to an access log. Dropping it stops the whole
/// process group, also when the test panicked. nginx, lighttpd, WsgiDAV and rclone use it
/// (see [`DaemonSpec`]).
pub struct DaemonServer {
    spec: &'static DaemonSpec,
    child: Option<Child>,
    root: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_www_data: bool,
    mark: u64,
}

impl DaemonServer {
    /// Starts the server `spec` describes on a free port, serving `root` (which must
    /// exist), and waits until it answers. Panics with its logs if it is missing or does
    /// not answer within 20 s.
    pub fn start(root: &Path, spec: &'static DaemonSpec) -> DaemonServer {
        (spec.require)();
        let root = std::fs::canonicalize(root)
            .unwrap_or_else(|e| panic!("cannot serve {}: {e}", root.display()));
        assert!(root.is_dir(), "{} is not a directory", root.display());
        let dir = tempfile::Builder::new()
            .prefix(&format!("edrive-{}-", spec.name))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the {} temp dir: {e}", spec.name));
        let as_www_data = spec.www_data && running_as_root();
        let mut server = DaemonServer {
            spec,
            child: None,
            root,
            dir,
            port: 0,
            as_www_data,
            mark: 0,
        };
        if spec.www_data {
            give_to_www_data(server.dir.path(), &server.root);
        }
        let mut last_err = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => {
                    server.mark = file_len(&server.access_log());
                    return server;
                }
                // Another process may have taken the port between probe and bind.
                Err(e) if e.to_ascii_lowercase().contains("address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}");
    }

    /// The served folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `rel` (a percent-encoded path relative to the share, no leading `/`).
    pub fn url_of(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, rel)
    }

    /// The server's console output and error logs so far, for diagnostics.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in std::iter::once(&"console.log").chain(self.spec.error_logs) {
            out.push_str(&format!(
                "--- {name} ---\n{}",
                read_from(&self.dir.path().join(name), 0)
            ));
        }
        out
    }

    /// Stops the server (SIGTERM to its process group, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::from_secs(10));
        }
    }

    fn access_log(&self) -> PathBuf {
        self.dir.path().join(self.spec.access_log)
    }

    /// Runs the server's command on the current port and waits until it answers a probe.
    fn spawn(&mut self) -> Result<(), String> {
        let name = self.spec.name;
        let console = self.dir.path().join("console.log");
        let console_file = std::fs::File::create(&console).expect("cannot create console log");
        let mut cmd = (self.spec.command)(self.dir.path(), &self.root, self.port, self.as_www_data);
        if self.as_www_data {
            // What the command just wrote (temp-file dirs, databases) is the server's too.
            chown_www_data(self.dir.path());
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(console_file.try_clone().expect("cannot dup console log"))
            .stderr(console_file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {name} ({cmd:?}): {e}"))?;
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        loop {
            if http_answers(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            let failed = match child.try_wait() {
                Ok(Some(status)) => Some(format!("{name} exited with {status}")),
                _ if Instant::now() >= deadline => {
                    terminate_child(&mut child, Duration::from_secs(2), true);
                    Some(format!(
                        "{name} did not answer within {DAEMON_START_TIMEOUT:?}"
                    ))
                }
                _ => None,
            };
            if let Some(what) = failed {
                stop_group(&mut child, Duration::from_secs(2));
                return Err(format!(
                    "{what} (port {}; command {cmd:?}):\n{}",
                    self.port,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl TestServer for DaemonServer {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn requests(&self) -> Vec<(String, String, u16)> {
        without_probe((self.spec.parse_log)(&read_settled_log(
            &self.access_log(),
            self.mark,
        )))
    }

    fn reset_requests(&mut self) {
        // Let in-flight log lines land first.
        let _ = read_settled_log(&self.access_log(), self.mark);
        self.mark = file_len(&self.access_log());
    }

    fn chown_data(&self) {
        if self.as_www_data {
            chown_www_data(&self.root);
        }
    }
}

impl Drop for DaemonServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::from_secs(5));
        }
    }
}

/// Stops a child that leads its own process group: SIGTERM to the group, SIGKILL after
/// `grace`, then SIGKILL to whatever is left in the group (workers, a piped logger), also
/// when the leader had already exited.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    terminate_child(child, grace, true);
    // SAFETY: kill has no memory-safety preconditions; an empty group gives ESRCH.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}
