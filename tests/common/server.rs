//! [`EmbeddedServer`]: `edrive serve` run as a child process.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{edrive_bin, file_len, read_from, terminate_child, TestServer};

/// `edrive serve DIR` on 127.0.0.1, its stderr (the request log) kept in a temp file.
/// Dropping it kills the server.
pub struct EmbeddedServer {
    child: Option<Child>,
    root: PathBuf,
    auth: Option<(String, String)>,
    port: u16,
    logs: tempfile::TempDir,
    /// Byte offset in the stderr log where `requests()` starts reading.
    mark: u64,
    /// More `edrive serve` arguments (`--quota`, `--fail-every`).
    extra: Vec<String>,
}

impl EmbeddedServer {
    /// Starts `edrive serve ROOT --addr 127.0.0.1:0` (with `--user/--password-file` when
    /// `auth` is given) and waits for its listening line. Panics with the server's stderr if it
    /// does not come up within 20 s.
    pub fn start(root: &Path, auth: Option<(&str, &str)>) -> EmbeddedServer {
        EmbeddedServer::start_with(root, auth, &[])
    }

    /// Like [`EmbeddedServer::start`] with more `edrive serve` arguments.
    pub fn start_with(root: &Path, auth: Option<(&str, &str)>, extra: &[&str]) -> EmbeddedServer {
        let mut s = EmbeddedServer {
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
            root: root.to_path_buf(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            port: 0,
            logs: tempfile::Builder::new()
                .prefix("edrive-serve-log-")
                .tempdir()
                .expect("cannot create a temp dir for the server log"),
            mark: 0,
        };
        s.spawn(0);
        s
    }

    /// The served folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `rel` (a percent-encoded relative path, no leading `/`) on this server.
    pub fn url_of(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, rel)
    }

    /// The server's stderr so far (its tracing log), for diagnostics.
    pub fn log(&self) -> String {
        read_from(&self.log_path(), 0)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops the server gracefully (SIGTERM; SIGKILL after 10 s). The request log is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child, Duration::from_secs(10), false);
        }
    }

    /// Stops the server (if running) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.spawn(port);
    }

    /// Stops the server and starts it again on the same port (same folder) requiring other
    /// credentials (`None`: none).
    pub fn restart_with_auth(&mut self, auth: Option<(&str, &str)>) {
        self.stop();
        self.auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
        let port = self.port;
        self.spawn(port);
    }

    /// Stops the server and starts it again on the same port with other extra arguments.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.stop();
        self.extra = extra.iter().map(|a| a.to_string()).collect();
        let port = self.port;
        self.spawn(port);
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join("serve.stderr.log")
    }

    /// Spawns the server on `port` (0 = any) and waits for the listening line. Retries a
    /// fixed port for a while in case the old socket is still being released.
    fn spawn(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.try_spawn(port) {
                Ok(p) => {
                    self.port = p;
                    return;
                }
                Err(_) if port != 0 && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(msg) => panic!("{msg}"),
            }
        }
    }

    fn try_spawn(&mut self, port: u16) -> Result<u16, String> {
        let stdout_path = self.logs.path().join("serve.stdout");
        let stdout = File::create(&stdout_path).expect("cannot create the stdout file");
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the server log");
        let log_start = file_len(&self.log_path());
        let mut cmd = Command::new(edrive_bin());
        cmd.arg("serve")
            .arg(&self.root)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(&self.extra);
        if let Some((user, password)) = &self.auth {
            // In a file, so that no password shows in `ps` (tests grep it for passwords).
            let file = self.logs.path().join("password");
            std::fs::write(&file, password).expect("cannot write the server's password file");
            cmd.arg("--user")
                .arg(user)
                .arg("--password-file")
                .arg(&file);
        }
        // Request lines are logged at info by the `edrive::serve` target: make sure an
        // EDRIVE_LOG / RUST_LOG in the environment cannot hide them.
        let base = std::env::var("EDRIVE_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_default();
        let filter = if base.trim().is_empty() {
            "info".to_string()
        } else {
            format!("{base},edrive::serve=trace")
        };
        cmd.env("EDRIVE_LOG", &filter)
            .env("RUST_LOG", &filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", edrive_bin()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(port) = parse_listening_line(&out) {
                self.child = Some(child);
                return Ok(port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "edrive serve {} exited with {status} before listening; stderr:\n{}",
                    self.root.display(),
                    read_from(&self.log_path(), log_start)
                ));
            }
            if Instant::now() >= deadline {
                terminate_child(&mut child, Duration::from_secs(2), false);
                panic!(
                    "edrive serve {} printed no listening line within 20 s; stdout: {out:?}; stderr:\n{}",
                    self.root.display(),
                    read_from(&self.log_path(), log_start)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The port in `edrive serve: listening on http://127.0.0.1:PORT/`.
fn parse_listening_line(out: &str) -> Option<u16> {
    let line = out
        .lines()
        .find(|l| l.starts_with("edrive serve: listening on http://"))?;
    let rest = line.trim_end().strip_suffix('/')?;
    rest.rsplit(':').next()?.parse().ok()
}

/// Parses `request method=GET path=/a%20b status=200` lines out of a tracing log.
pub fn parse_request_log(log: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(i) = line.find("request method=") else {
            continue;
        };
        let mut method = None;
        let mut path = None;
        let mut status = None;
        for field in line[i + "request ".len()..].split_whitespace() {
            if let Some(v) = field.strip_prefix("method=") {
                method = Some(v.to_string());
            } else if let Some(v) = field.strip_prefix("path=") {
                path = Some(v.to_string());
            } else if let Some(v) = field.strip_prefix("status=") {
                status = v.parse::<u16>().ok();
            }
        }
        if let (Some(m), Some(p), Some(s)) = (method, path, status) {
            out.push((m, p, s));
        }
    }
    out
}

impl TestServer for EmbeddedServer {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn requests(&self) -> Vec<(String, String, u16)> {
        super::without_probe(parse_request_log(&read_from(&self.log_path(), self.mark)))
    }

    fn reset_requests(&mut self) {
        self.mark = file_len(&self.log_path());
    }
}

impl EmbeddedServer {
    /// Same as [`TestServer::url`], without importing the trait.
    pub fn url(&self) -> String {
        TestServer::url(self)
    }

    /// Same as [`TestServer::requests`], without importing the trait.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        TestServer::requests(self)
    }

    /// Same as [`TestServer::count_requests`], without importing the trait.
    pub fn count_requests(&self, method: &str) -> usize {
        TestServer::count_requests(self, method)
    }

    /// Same as [`TestServer::reset_requests`], without importing the trait.
    pub fn reset_requests(&mut self) {
        TestServer::reset_requests(self)
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child, Duration::from_secs(5), false);
        }
    }
}
