//! A private `rclone serve webdav` of a local folder (Debian's `rclone`).

use std::path::Path;
use std::process::Command;

use super::{find_in_path, DaemonServer, DaemonSpec, PROBE_PATH};

static SPEC: DaemonSpec = DaemonSpec {
    name: "rclone",
    www_data: false,
    access_log: "rclone.log",
    parse_log: parse_rclone_log,
    error_logs: &["rclone.log"],
    require,
    command,
};

/// Starts `rclone serve webdav ROOT` at `http://127.0.0.1:PORT/`, as the test's user, with
/// no directory cache (`--dir-cache-time 0s`), so that files the test changes directly in
/// `root` show at once, as they would on a server whose folder only it changes.
///
/// rclone logs no access log: [`TestServer::requests`](super::TestServer::requests) comes
/// from its `INFO : PATH: METHOD from ADDR` lines, whose path is percent-decoded and which
/// carry no status (reported as 0).
pub fn start(root: &Path) -> DaemonServer {
    DaemonServer::start(root, &SPEC)
}

fn require() {
    assert!(
        find_in_path("rclone").is_some(),
        "requires rclone on PATH (apt-get install rclone)"
    );
}

/// Returns `rclone serve webdav ROOT --addr 127.0.0.1:PORT` logging at level INFO into the
/// temp dir, with an empty config file of its own.
fn command(dir: &Path, root: &Path, port: u16, _as_www_data: bool) -> Command {
    std::fs::write(dir.join("rclone.conf"), "").expect("cannot write rclone.conf");
    let mut cmd = Command::new("rclone");
    cmd.args(["serve", "webdav"])
        .arg(root)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--dir-cache-time", "0s", "-v"])
        .arg("--config")
        .arg(dir.join("rclone.conf"))
        .arg("--log-file")
        .arg(dir.join(SPEC.access_log));
    cmd
}

/// Parses rclone's `… INFO  : /a b.txt: GET from 127.0.0.1:4711` lines into (method,
/// decoded path, 0); the harness's readiness probes are left out.
pub fn parse_rclone_log(log: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(" INFO  : ") else {
            continue;
        };
        let Some((head, _addr)) = rest.rsplit_once(" from ") else {
            continue;
        };
        let Some((path, method)) = head.rsplit_once(": ") else {
            continue;
        };
        let is_method = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
        if !is_method || path == PROBE_PATH {
            continue;
        }
        out.push((method.to_string(), path.to_string(), 0));
    }
    out
}
