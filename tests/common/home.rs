//! [`Home`]: a private user environment for the set-up tests (named drives, keyring,
//! systemd, fstab): its own config, cache, runtime and data folders, and every mountpoint
//! it made unmounted when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{edrive_bin, find_in_path, is_mounted, set_mode, tempdir};

/// A private user environment: config, cache and runtime folders, HOME, no D-Bus session
/// (so no keyring), and the mountpoints it made, all unmounted when dropped.
pub struct Home {
    /// The private folder (removed when dropped).
    pub dir: tempfile::TempDir,
    mountpoints: Vec<PathBuf>,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempdir();
        for d in ["cfg", "cache", "run", "data"] {
            std::fs::create_dir(dir.path().join(d)).expect("cannot create a folder");
        }
        set_mode(&dir.path().join("run"), 0o700);
        Home {
            dir,
            mountpoints: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A mountpoint (created) that is unmounted when the test ends.
    pub fn mountpoint(&mut self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).expect("cannot create a mountpoint");
        self.mountpoints.push(p.clone());
        p
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let p = |r: &str| self.path(r).display().to_string();
        vec![
            ("HOME".into(), p("")),
            ("XDG_CONFIG_HOME".into(), p("cfg")),
            ("XDG_CACHE_HOME".into(), p("cache")),
            ("XDG_RUNTIME_DIR".into(), p("run")),
            ("XDG_DATA_HOME".into(), p("data")),
        ]
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env())
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("EDRIVE_PASSWORD")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        c
    }

    /// Runs `edrive ARGS` (with `$EDRIVE_PASSWORD` when given): status, stdout, stderr.
    pub fn edrive(&self, args: &[&str], password: Option<&str>) -> (ExitStatus, String, String) {
        let mut c = self.command(edrive_bin());
        c.args(args);
        if let Some(p) = password {
            c.env("EDRIVE_PASSWORD", p);
        }
        run(c, &self.path(""))
    }

    pub fn edrive_ok(&self, args: &[&str], password: Option<&str>) -> String {
        let (status, out, err) = self.edrive(args, password);
        assert!(
            status.success(),
            "edrive {args:?} failed ({status}):\n{out}\n{err}"
        );
        out
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.path("cfg/edrive/config.toml")).unwrap_or_default()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        for mp in &self.mountpoints {
            if !is_mounted(mp) {
                continue;
            }
            let mut c = self.command(edrive_bin());
            c.arg("unmount").arg(mp).arg("--force");
            let _ = run(c, &self.path(""));
            if is_mounted(mp) {
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(mp)
                    .status();
            }
            if is_mounted(mp) {
                let _ = Command::new("umount").arg("-l").arg(mp).status();
            }
        }
    }
}

/// Runs `c` with its output in files under `dir` (a daemon it leaves behind cannot hold
/// a pipe open); panics after 120 s.
pub fn run(mut c: Command, dir: &Path) -> (ExitStatus, String, String) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let (o, e) = (dir.join(format!("{n}.out")), dir.join(format!("{n}.err")));
    c.stdout(std::fs::File::create(&o).expect("stdout file"))
        .stderr(std::fs::File::create(&e).expect("stderr file"));
    let mut child = c.spawn().expect("cannot run the command");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let out = (status, read(&o), read(&e));
    let _ = std::fs::remove_file(&o);
    let _ = std::fs::remove_file(&e);
    out
}

/// Every regular file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() && !is_mounted(&p) {
                stack.push(p);
            } else if md.is_file() {
                let data = std::fs::read(&p).unwrap_or_default();
                if data.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(p);
                }
            }
        }
    }
    found
}

pub fn list_json(home: &Home) -> serde_json::Value {
    let out = home.edrive_ok(&["list", "--json"], None);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list --json: {e}: {out}"))
}

pub fn drive_row(list: &serde_json::Value, name: &str) -> serde_json::Value {
    list["drives"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no drive {name} in {list}"))
}

/// Panics unless `program` is on PATH.
pub fn require_program(program: &str, package: &str) {
    assert!(
        find_in_path(program).is_some(),
        "{program} is needed (apt-get install {package}; scripts/test installs it)"
    );
}
