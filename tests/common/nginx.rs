//! A private nginx with its WebDAV module and the dav-ext module (for PROPFIND), as
//! Debian's `nginx-light` and `libnginx-mod-http-dav-ext` ship them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{config_path, parse_access_log, DaemonServer, DaemonSpec};

/// The nginx binary (Debian's path).
const NGINX_BIN: &str = "/usr/sbin/nginx";
/// The dav-ext module (PROPFIND, OPTIONS).
const DAV_EXT_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";

static SPEC: DaemonSpec = DaemonSpec {
    name: "nginx",
    www_data: true,
    access_log: "logs/access.log",
    parse_log: parse_access_log,
    error_logs: &["logs/error.log"],
    require,
    command,
};

/// Starts nginx serving `root` over WebDAV at `http://127.0.0.1:PORT/` (PUT, DELETE, MKCOL,
/// COPY, MOVE from the dav module, PROPFIND and OPTIONS from dav-ext; no intermediate
/// folders are created for a PUT). Its workers run as www-data when the test runs as root.
pub fn start(root: &Path) -> DaemonServer {
    DaemonServer::start(root, &SPEC)
}

fn require() {
    for (file, what) in [
        (NGINX_BIN, "nginx"),
        (DAV_EXT_MODULE, "the nginx dav-ext module"),
    ] {
        assert!(
            Path::new(file).is_file(),
            "requires {what}: {file} not found \
             (apt-get install nginx-light libnginx-mod-http-dav-ext)"
        );
    }
}

/// Writes `nginx.conf` into `dir` and returns `nginx -p DIR -c nginx.conf` (in the
/// foreground, nothing read from /etc/nginx).
fn command(dir: &Path, root: &Path, port: u16, as_www_data: bool) -> Command {
    let t = config_path(dir);
    let data = config_path(root);
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("cannot create the nginx dirs");
    }
    let mut c = String::new();
    let _ = writeln!(c, "load_module \"{DAV_EXT_MODULE}\";");
    c.push_str("daemon off;\nworker_processes 1;\n");
    if as_www_data {
        c.push_str("user www-data www-data;\n");
    }
    let _ = writeln!(c, "pid \"{t}/nginx.pid\";");
    let _ = writeln!(c, "error_log \"{t}/logs/error.log\" warn;");
    c.push_str("events { worker_connections 256; }\nhttp {\n");
    c.push_str("  log_format edrive '$status $request';\n");
    let _ = writeln!(c, "  access_log \"{t}/logs/access.log\" edrive;");
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = writeln!(c, "  {temp}_temp_path \"{t}/tmp/{temp}\";");
    }
    c.push_str("  types { text/plain txt; }\n  default_type application/octet-stream;\n");
    c.push_str("  server {\n");
    let _ = writeln!(c, "    listen 127.0.0.1:{port};");
    let _ = writeln!(c, "    root \"{data}\";");
    c.push_str(
        "    client_max_body_size 0;\n    dav_methods PUT DELETE MKCOL COPY MOVE;\n    \
         dav_ext_methods PROPFIND OPTIONS;\n  }\n}\n",
    );
    std::fs::write(dir.join("nginx.conf"), c).expect("cannot write nginx.conf");
    let mut cmd = Command::new(NGINX_BIN);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        // The error log before the config is read (default: /var/log/nginx/error.log).
        .arg("-e")
        .arg(dir.join("logs/error.log"));
    cmd
}
