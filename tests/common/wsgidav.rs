//! A private WsgiDAV 4 on cheroot, from the Python venv of [`venv_dir`] (`scripts/test`
//! creates it: `python3 -m venv target/test-venv` and `pip install wsgidav cheroot`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{config_path, edrive_bin, parse_access_log, DaemonServer, DaemonSpec};

/// Runs WsgiDAV the way `wsgidav --server cheroot` does (a cheroot `wsgi.Server` with 50
/// threads around `WsgiDAVApp`), with WsgiDAV's default options, anonymous access, and one
/// access-log line `STATUS METHOD RAW-PATH PROTOCOL` per request.
const LAUNCHER: &str = r#"import sys

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

root, port, access_log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = WsgiDAVApp({
    "host": "127.0.0.1",
    "port": port,
    "provider_mapping": {"/": root},
    "simple_dc": {"user_mapping": {"*": True}},
    "verbose": 2,
    "logging": {"enable": True},
})
log = open(access_log, "a", buffering=1, encoding="utf-8")


def logged(environ, start_response):
    def start(status, headers, exc_info=None):
        log.write("%s %s %s %s\n" % (status.split()[0], environ["REQUEST_METHOD"],
                  environ.get("REQUEST_URI", "-"), environ.get("SERVER_PROTOCOL", "-")))
        return start_response(status, headers, exc_info)
    return app(environ, start)


wsgi.Server(("127.0.0.1", port), logged, numthreads=50).start()
"#;

static SPEC: DaemonSpec = DaemonSpec {
    name: "wsgidav",
    www_data: false,
    access_log: "access.log",
    parse_log: parse_access_log,
    error_logs: &[],
    require,
    command,
};

/// Starts WsgiDAV serving `root` at `http://127.0.0.1:PORT/`, as the test's user.
pub fn start(root: &Path) -> DaemonServer {
    DaemonServer::start(root, &SPEC)
}

/// The venv with wsgidav and cheroot: `$EDRIVE_TEST_VENV`, else `test-venv` in the cargo
/// target dir (the one holding the `edrive` binary under test).
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDRIVE_TEST_VENV") {
        return dir.into();
    }
    let bin = Path::new(edrive_bin());
    // target/debug/edrive -> target
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("target"))
        .join("test-venv")
}

fn python() -> PathBuf {
    venv_dir().join("bin/python3")
}

fn require() {
    let venv = venv_dir();
    let ok = Command::new(python())
        .args(["-c", "import wsgidav, cheroot"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "requires WsgiDAV: no venv with wsgidav and cheroot at {} (run scripts/test, or \
         python3 -m venv {0} && {0}/bin/pip install wsgidav cheroot; EDRIVE_TEST_VENV \
         picks another venv)",
        venv.display()
    );
}

/// Writes the launcher into `dir` and returns `python3 serve.py ROOT PORT ACCESS-LOG`.
fn command(dir: &Path, root: &Path, port: u16, _as_www_data: bool) -> Command {
    std::fs::write(dir.join("serve.py"), LAUNCHER).expect("cannot write serve.py");
    let mut cmd = Command::new(python());
    cmd.arg(dir.join("serve.py"))
        .arg(config_path(root))
        .arg(port.to_string())
        .arg(dir.join(SPEC.access_log))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}
