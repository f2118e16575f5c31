//! [`ApacheServer`]: a private Apache httpd with mod_dav, configured entirely from a temp dir.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    chown_www_data, config_path, file_len, find_in_path, free_port, give_to_www_data, http_answers,
    parse_access_log, read_from, read_settled_log, running_as_root, terminate_child, TestServer,
};

/// The Apache binary (Debian's path).
const APACHE_BIN: &str = "/usr/sbin/apache2";
/// Where Debian keeps the loadable modules.
const MODULE_DIR: &str = "/usr/lib/apache2/modules";
/// The configuration, shared with `bench/run`; `@NAME@` are filled in.
const APACHE_CONF: &str = include_str!("apache.conf.in");

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
    /// Folders (relative to `root`) where only reading methods are allowed.
    read_only: Vec<String>,
}

impl ApacheServer {
    /// Starts Apache serving `root` (which must exist) at `http://127.0.0.1:PORT/dav/`,
    /// requiring HTTP Basic auth when `auth` is given. When running as root, `root` is
    /// chowned recursively to www-data so PUT/MKCOL/DELETE work. Panics (with the error log)
    /// if apache2 is missing or the server does not answer within 10 s.
    pub fn start(root: &Path, auth: Option<(&str, &str)>) -> ApacheServer {
        ApacheServer::start_read_only(root, auth, &[])
    }

    /// Like [`ApacheServer::start`], with the folders `read_only` (relative to `root`)
    /// closed to every method but GET, HEAD, OPTIONS and PROPFIND
    /// (`<LimitExcept GET HEAD OPTIONS PROPFIND> Require all denied`): a read-only space.
    pub fn start_read_only(
        root: &Path,
        auth: Option<(&str, &str)>,
        read_only: &[&str],
    ) -> ApacheServer {
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
        let as_www_data = running_as_root();
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
            read_only: read_only.iter().map(|s| s.to_string()).collect(),
        };
        give_to_www_data(server.dir.path(), &server.root);
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

    /// Writes `httpd.conf` for the current port, from the template `apache.conf.in` that
    /// `bench/run` fills too (with its own tuning and log format).
    fn write_config(&self, with_auth: bool) {
        let t = config_path(self.dir.path());
        let data = config_path(&self.root);
        let user = if self.as_www_data {
            "User www-data\nGroup www-data"
        } else {
            ""
        };
        let access = if with_auth {
            format!(
                "  AuthType Basic\n  AuthName \"edrive\"\n  AuthBasicProvider file\n  \
                 AuthUserFile \"{t}/htpasswd\"\n  Require valid-user"
            )
        } else {
            "  Require all granted".to_string()
        };
        let mut c = APACHE_CONF
            .replace("@ROOT@", &t)
            .replace("@DATA@", &data)
            .replace("@PORT@", &self.port.to_string())
            .replace("@MODULES@", MODULE_DIR)
            .replace("@USER@", user)
            .replace(
                "@TUNING@",
                "StartServers 1\nServerLimit 2\nThreadsPerChild 25\nMaxRequestWorkers 50\n\
                 MinSpareThreads 5\nMaxSpareThreads 50\nThreadLimit 25\n\
                 KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 15\nTimeout 60",
            )
            .replace("@LOG_FORMAT@", "%>s %r")
            .replace("@ACCESS@", &access);
        for ro in &self.read_only {
            let _ = writeln!(
                c,
                "<Directory \"{data}/{ro}\">\n  <LimitExcept GET HEAD OPTIONS PROPFIND>\n    \
                 Require all denied\n  </LimitExcept>\n</Directory>"
            );
        }
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
            if http_answers(self.port) {
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

impl TestServer for ApacheServer {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/dav/", self.port)
    }

    /// Apache writes the log line after the response went out, so this waits until the log
    /// has been quiet for 150 ms (at most 2 s) before reading it.
    fn requests(&self) -> Vec<(String, String, u16)> {
        super::without_probe(parse_access_log(&read_settled_log(
            &self.access_log(),
            self.mark,
        )))
    }

    fn reset_requests(&mut self) {
        // Let in-flight log lines land first.
        let _ = TestServer::requests(self);
        self.mark = file_len(&self.access_log());
    }

    fn chown_data(&self) {
        ApacheServer::chown_data(self);
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
