//! A private lighttpd with mod_webdav (Debian's `lighttpd` and `lighttpd-mod-webdav`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{config_path, parse_access_log, DaemonServer, DaemonSpec};

/// The lighttpd binary (Debian's path).
const LIGHTTPD_BIN: &str = "/usr/sbin/lighttpd";
/// mod_webdav (package lighttpd-mod-webdav).
const WEBDAV_MODULE: &str = "/usr/lib/lighttpd/mod_webdav.so";

static SPEC: DaemonSpec = DaemonSpec {
    name: "lighttpd",
    www_data: true,
    access_log: "logs/access.log",
    parse_log: parse_access_log,
    error_logs: &["logs/error.log"],
    require,
    command,
};

/// Starts lighttpd serving `root` over WebDAV (read-write, locks and properties in an
/// SQLite file in its temp dir) at `http://127.0.0.1:PORT/`. It runs as www-data when the
/// test runs as root.
pub fn start(root: &Path) -> DaemonServer {
    DaemonServer::start(root, &SPEC)
}

fn require() {
    for (file, what) in [
        (LIGHTTPD_BIN, "lighttpd"),
        (WEBDAV_MODULE, "lighttpd mod_webdav"),
    ] {
        assert!(
            Path::new(file).is_file(),
            "requires {what}: {file} not found (apt-get install lighttpd lighttpd-mod-webdav)"
        );
    }
}

/// Writes `lighttpd.conf` into `dir` and returns `lighttpd -D -f lighttpd.conf`.
fn command(dir: &Path, root: &Path, port: u16, as_www_data: bool) -> Command {
    let t = config_path(dir);
    let data = config_path(root);
    for sub in ["logs", "upload"] {
        std::fs::create_dir_all(dir.join(sub)).expect("cannot create the lighttpd dirs");
    }
    let mut c = String::new();
    c.push_str("server.modules = (\"mod_webdav\", \"mod_accesslog\")\n");
    let _ = writeln!(c, "server.document-root = \"{data}\"");
    let _ = writeln!(c, "server.bind = \"127.0.0.1\"\nserver.port = {port}");
    let _ = writeln!(c, "server.errorlog = \"{t}/logs/error.log\"");
    let _ = writeln!(c, "server.upload-dirs = (\"{t}/upload\")");
    if as_www_data {
        c.push_str("server.username = \"www-data\"\nserver.groupname = \"www-data\"\n");
    }
    // A file logger is flushed every 4 s; a piped one after every line.
    let _ = writeln!(
        c,
        "accesslog.filename = \"|exec /bin/cat >> '{t}/logs/access.log'\""
    );
    c.push_str("accesslog.format = \"%>s %r\"\n");
    c.push_str("webdav.activate = \"enable\"\nwebdav.is-readonly = \"disable\"\n");
    let _ = writeln!(c, "webdav.sqlite-db-name = \"{t}/webdav.db\"");
    std::fs::write(dir.join("lighttpd.conf"), c).expect("cannot write lighttpd.conf");
    let mut cmd = Command::new(LIGHTTPD_BIN);
    cmd.arg("-D").arg("-f").arg(dir.join("lighttpd.conf"));
    cmd
}
