//! [`ApacheServer`]: a private Apache httpd with mod_dav, configured entirely from a temp dir.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{file_len, find_in_path, free_port, read_from, set_mode, terminate_child, TestServer};

/// The Apache binary (Debian's path).
const APACHE_BIN: &str = "/usr/sbin/apache2";
/// Where Debian keeps the loadable modules.
const MODULE_DIR: &str = "/usr/lib/apache2/modules";
/// Path of the readiness probe request; it is left out of `requests()`.
const PROBE_PATH: &str = "/__edrive_harness_probe__";

/// Apache httpd serving a data folder over WebDAV at `/dav/`, with its own config, logs,
/// lock database and pid file in a temp dir (no system-wide config is read). Runs as
/// `www-data` when the test runs as root. Dropping it stops the server.
pub struct ApacheServer {
    child: Option<Child>,
    root: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_www_data: bool,
    mark: u64,
}

impl ApacheServer {
    /// Starts Apache serving `root` (which must exist) at `http://127.0.0.1:PORT/dav/`,
    /// requiring HTTP Basic auth when `auth` is given. When running as root, `root` is
    /// chowned recursively to www-data so PUT/MKCOL/DELETE work. Panics (with the error log)
    /// if apache2 is missing or the server does not answer within 10 s.
    pub fn start(root: &Path, auth: Option<(&str, &str)>) -> ApacheServer {
        if !Path::new(APACHE_BIN).is_file() {
            panic!(
                "requires apache2: {APACHE_BIN} not found (apt-get install apache2 apache2-utils)"
            );
        }
        let root = std::fs::canonicalize(root)
            .unwrap_or_else(|e| panic!("cannot serve {}: {e}", root.display()));
        assert!(root.is_dir(), "{} is not a directory", root.display());
        let dir = tempfile::Builder::new()
            .prefix("edrive-apache-")
            .tempdir()
            .expect("cannot create the Apache temp dir");
        // SAFETY: geteuid has no preconditions.
        let as_www_data = unsafe { libc::geteuid() } == 0;
        for sub in ["run", "logs", "lock", "htdocs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("cannot create Apache dirs");
        }
        std::fs::write(
            dir.path().join("mime.types"),
            "text/plain txt md csv\ntext/html html htm\napplication/octet-stream bin\n\
             image/jpeg jpg jpeg\nimage/png png\n",
        )
        .expect("cannot write mime.types");
        if let Some((user, password)) = auth {
            let htpasswd = find_in_path("htpasswd").unwrap_or_else(|| {
                panic!("requires htpasswd on PATH (apt-get install apache2-utils)")
            });
            let out = Command::new(htpasswd)
                .arg("-cb")
                .arg(dir.path().join("htpasswd"))
                .arg(user)
                .arg(password)
                .output()
                .expect("cannot run htpasswd");
            assert!(
                out.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut server = ApacheServer {
            child: None,
            root,
            dir,
            port: 0,
            as_www_data,
            mark: 0,
        };
        server.make_accessible();
        let mut last_err = String::new();
        for _ in 0..3 {
            server.port = free_port();
            server.write_config(auth.is_some());
            match server.spawn() {
                Ok(()) => {
                    server.mark = file_len(&server.access_log());
                    return server;
                }
                // Another process may have taken the port between probe and bind.
                Err(e) if e.contains("Address already in use") => last_err = e,
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
        format!("http://127.0.0.1:{}/dav/{}", self.port, rel)
    }

    /// The Apache error log so far.
    pub fn error_log(&self) -> String {
        read_from(&self.dir.path().join("logs/error.log"), 0)
    }

    /// Gives the served tree back to www-data (run after the test itself created files in
    /// it, so DAV can modify them). No-op when not running as root.
    pub fn chown_data(&self) {
        if self.as_www_data {
            chown_www_data(&self.root);
        }
    }

    /// Stops the server (SIGTERM to its process group, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child, Duration::from_secs(10), true);
        }
    }

    /// Stops the server (if running) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn access_log(&self) -> PathBuf {
        self.dir.path().join("logs/access.log")
    }

    /// Makes the temp dir and the data tree usable by www-data.
    fn make_accessible(&self) {
        set_mode(self.dir.path(), 0o755);
        if !self.as_www_data {
            return;
        }
        chown_www_data(self.dir.path());
        chown_www_data(&self.root);
        // www-data must be able to traverse every ancestor of the data dir. Temp dirs are
        // created 0700: open those up, refuse to touch anything else.
        let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| "/tmp".into());
        let mut cur = self.root.parent();
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
                        "Apache runs as www-data and cannot reach {}: {} is not traversable \
                         (mode {:o}); put the data under {}",
                        self.root.display(),
                        p.display(),
                        mode & 0o7777,
                        tmp.display()
                    );
                }
            }
            cur = p.parent();
        }
    }

    /// Writes `httpd.conf` for the current port.
    fn write_config(&self, with_auth: bool) {
        let t = self.dir.path().display().to_string();
        let data = self.root.display().to_string();
        for p in [&t, &data] {
            assert!(
                !p.contains('"') && !p.contains('\n'),
                "path unusable in an Apache config: {p:?}"
            );
        }
        let mut c = String::new();
        let _ = writeln!(c, "ServerRoot \"{t}\"");
        let _ = writeln!(c, "ServerName 127.0.0.1");
        let _ = writeln!(c, "Listen 127.0.0.1:{}", self.port);
        let _ = writeln!(c, "PidFile \"{t}/run/httpd.pid\"");
        let _ = writeln!(c, "DefaultRuntimeDir \"{t}/run\"");
        let _ = writeln!(c, "ErrorLog \"{t}/logs/error.log\"");
        let _ = writeln!(c, "LogLevel warn");
        for (name, file) in [
            ("mpm_event_module", "mod_mpm_event.so"),
            ("unixd_module", "mod_unixd.so"),
            ("log_config_module", "mod_log_config.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("authn_core_module", "mod_authn_core.so"),
            ("authn_file_module", "mod_authn_file.so"),
            ("authz_user_module", "mod_authz_user.so"),
            ("auth_basic_module", "mod_auth_basic.so"),
            ("alias_module", "mod_alias.so"),
            ("dir_module", "mod_dir.so"),
            ("mime_module", "mod_mime.so"),
            ("setenvif_module", "mod_setenvif.so"),
            ("dav_module", "mod_dav.so"),
            ("dav_fs_module", "mod_dav_fs.so"),
        ] {
            let _ = writeln!(
                c,
                "<IfModule !{name}>\n  LoadModule {name} {MODULE_DIR}/{file}\n</IfModule>"
            );
        }
        if self.as_www_data {
            let _ = writeln!(c, "User www-data\nGroup www-data");
        }
        c.push_str(
            "StartServers 1\nServerLimit 2\nThreadsPerChild 25\nMaxRequestWorkers 50\n\
             MinSpareThreads 5\nMaxSpareThreads 50\nThreadLimit 25\n\
             KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 15\nTimeout 60\n",
        );
        let _ = writeln!(c, "TypesConfig \"{t}/mime.types\"");
        let _ = writeln!(c, "DavLockDB \"{t}/lock/DavLock\"");
        let _ = writeln!(c, "LogFormat \"%>s %r\" edrive");
        let _ = writeln!(c, "CustomLog \"{t}/logs/access.log\" edrive");
        let _ = writeln!(c, "DocumentRoot \"{t}/htdocs\"");
        let _ = writeln!(
            c,
            "<Directory />\n  AllowOverride None\n  Require all denied\n</Directory>"
        );
        let _ = writeln!(
            c,
            "<Directory \"{t}/htdocs\">\n  Require all granted\n</Directory>"
        );
        let _ = writeln!(c, "Alias /dav \"{data}\"");
        let _ = writeln!(c, "<Directory \"{data}\">");
        c.push_str("  Dav On\n  Options None\n  AllowOverride None\n  DirectoryIndex disabled\n");
        if with_auth {
            let _ = writeln!(
                c,
                "  AuthType Basic\n  AuthName \"edrive\"\n  AuthBasicProvider file\n  \
                 AuthUserFile \"{t}/htpasswd\"\n  Require valid-user"
            );
        } else {
            c.push_str("  Require all granted\n");
        }
        c.push_str("</Directory>\n");
        c.push_str("BrowserMatch \"Microsoft-WebDAV-MiniRedir\" redirect-carefully\n");
        std::fs::write(self.dir.path().join("httpd.conf"), c).expect("cannot write httpd.conf");
    }

    /// Runs `apache2 -f CONF -DFOREGROUND` and waits until it answers a probe request.
    fn spawn(&mut self) -> Result<(), String> {
        let err_log = self.dir.path().join("logs/error.log");
        let err_start = file_len(&err_log);
        let console = self.dir.path().join("logs/console.log");
        let console_file = std::fs::File::create(&console).expect("cannot create console log");
        let mut child = Command::new(APACHE_BIN)
            .arg("-f")
            .arg(self.dir.path().join("httpd.conf"))
            .arg("-DFOREGROUND")
            // Keep Debian's envvars (and any APACHE_* from the environment) out of it.
            .env_remove("APACHE_CONFDIR")
            .env_remove("APACHE_ARGUMENTS")
            .stdin(Stdio::null())
            .stdout(console_file.try_clone().expect("cannot dup console log"))
            .stderr(console_file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {APACHE_BIN}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if probe(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            let failed = match child.try_wait() {
                Ok(Some(status)) => Some(format!("apache2 exited with {status}")),
                _ if Instant::now() >= deadline => {
                    terminate_child(&mut child, Duration::from_secs(2), true);
                    Some("apache2 did not answer within 10 s".to_string())
                }
                _ => None,
            };
            if let Some(what) = failed {
                return Err(format!(
                    "{what} (port {}); console:\n{}\nerror log:\n{}",
                    self.port,
                    read_from(&console, 0),
                    read_from(&err_log, err_start)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether the server answers an HTTP request on `port`.
fn probe(port: u16) -> bool {
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

/// `chown -R www-data:www-data PATH`.
fn chown_www_data(path: &Path) {
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

/// Parses `STATUS METHOD PATH PROTO` access-log lines; the query string is dropped and the
/// harness's readiness probes are left out.
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
        if path == PROBE_PATH {
            continue;
        }
        out.push((method.to_string(), path.to_string(), status));
    }
    out
}

impl TestServer for ApacheServer {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/dav/", self.port)
    }

    /// Apache writes the log line after the response went out, so this waits until the log
    /// has been quiet for 150 ms (at most 2 s) before reading it.
    fn requests(&self) -> Vec<(String, String, u16)> {
        let log = self.access_log();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut len = file_len(&log);
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = file_len(&log);
            if now == len || Instant::now() >= deadline {
                break;
            }
            len = now;
        }
        parse_access_log(&read_from(&log, self.mark))
    }

    fn reset_requests(&mut self) {
        // Let in-flight log lines land first.
        let _ = TestServer::requests(self);
        self.mark = file_len(&self.access_log());
    }
}

impl ApacheServer {
    /// Same as [`TestServer::url`]: `http://127.0.0.1:PORT/dav/`.
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

impl Drop for ApacheServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child, Duration::from_secs(5), true);
        }
        // The temp dir is owned by www-data now; root removes it regardless.
    }
}
