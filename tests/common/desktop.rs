//! [`Desktop`]: a headless desktop session as a user would have one — an X server (Xvfb),
//! a D-Bus session bus (`dbus-run-session`), a home folder — in which tests start the real
//! file managers, take screenshots and find windows. Everything it started is stopped when
//! it is dropped (drop it before the mount its programs looked at).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{find_in_path, stop_group, wait_until};

/// The programs a desktop test needs (Debian packages in brackets, installed by
/// `scripts/test`).
pub const DESKTOP_PROGRAMS: &[(&str, &str)] = &[
    ("Xvfb", "xvfb"),
    ("dbus-run-session", "dbus-daemon"),
    ("xdotool", "xdotool"),
    ("import", "imagemagick"),
];

/// A running headless session.
pub struct Desktop {
    xvfb: Child,
    bus: Child,
    display: String,
    bus_address: String,
    home: tempfile::TempDir,
    cache_home: PathBuf,
    artifacts: PathBuf,
    apps: Vec<Child>,
    /// A command every session program runs under (e.g. `nsenter … setpriv …` to run as
    /// another user in a mount namespace); empty: none.
    wrapper: Vec<String>,
}

impl Desktop {
    /// Starts Xvfb (1280×1024, a display number it picks) and a session bus, with a fresh
    /// home whose cache folder is `cache_home` (share it with the mount's daemon, as a
    /// user's programs share `~/.cache`). Screenshots go to `target/test-artifacts/NAME/`.
    pub fn start(name: &str, cache_home: &Path) -> Desktop {
        Desktop::start_as(name, cache_home, Vec::new(), None)
    }

    /// As [`Desktop::start`], with every program of the session (the bus, the file
    /// managers, screenshots; not the X server) run under `wrapper`, and the session's
    /// folders owned by `owner` (uid, gid).
    pub fn start_as(
        name: &str,
        cache_home: &Path,
        wrapper: Vec<String>,
        owner: Option<(u32, u32)>,
    ) -> Desktop {
        for (program, package) in DESKTOP_PROGRAMS {
            assert!(
                find_in_path(program).is_some(),
                "{program} is not installed (apt-get install {package}; scripts/test does)"
            );
        }
        let home = tempfile::Builder::new()
            .prefix("edrive-desktop-home-")
            .tempdir()
            .expect("a temp dir for the desktop's home");
        let runtime = home.path().join("run");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        super::set_mode(&runtime, 0o700);
        std::fs::create_dir_all(cache_home).expect("cache home");
        let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("test-artifacts")
            .join(name);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).expect("artifacts dir");
        if let Some((uid, gid)) = owner {
            for d in [
                home.path(),
                runtime.as_path(),
                cache_home,
                artifacts.as_path(),
            ] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown");
            }
        }

        // Xvfb picks a free display itself and writes its number to fd 1 (a pipe here)
        // once it accepts clients: two sessions started at the same moment (tests of one
        // binary run in parallel) cannot pick the same number.
        let xvfb_log = std::fs::File::create(artifacts.join("Xvfb.log")).expect("a log file");
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x1024x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(xvfb_log)
            .process_group(0)
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        let _ = BufReader::new(xvfb.stdout.take().expect("Xvfb's stdout")).read_line(&mut line);
        let Ok(n) = line.trim().parse::<u32>() else {
            let _ = xvfb.kill();
            let _ = xvfb.wait();
            panic!(
                "Xvfb reported no display ({line:?}); Xvfb.log:\n{}",
                super::read_from(&artifacts.join("Xvfb.log"), 0)
            );
        };
        let display = format!(":{n}");
        let mut d = Desktop {
            xvfb,
            bus: Command::new("true").spawn().expect("true"),
            display,
            bus_address: String::new(),
            cache_home: cache_home.to_path_buf(),
            home,
            artifacts,
            apps: Vec::new(),
            wrapper,
        };
        let _ = d.bus.wait();
        // The bus lives as long as the `sleep` under it; its services (tumblerd, gvfsd, …)
        // are started by it and end with it.
        let mut bus = d
            .command("dbus-run-session")
            .args([
                "--",
                "sh",
                "-c",
                "echo \"$DBUS_SESSION_BUS_ADDRESS\"; exec sleep 3600",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start dbus-run-session");
        let mut addr = String::new();
        let stdout = bus.stdout.take().expect("the bus's stdout");
        let _ = BufReader::new(stdout).read_line(&mut addr);
        d.bus = bus;
        d.bus_address = addr.trim().to_string();
        assert!(
            d.bus_address.starts_with("unix:"),
            "dbus-run-session gave no address: {addr:?}"
        );
        d
    }

    /// The session's environment: display, bus, home and XDG folders.
    fn vars(&self) -> Vec<(String, String)> {
        let home = self.home.path();
        let p = |p: PathBuf| p.display().to_string();
        let mut vars = vec![
            ("DISPLAY".into(), self.display.clone()),
            ("HOME".into(), p(home.to_path_buf())),
            ("XDG_CACHE_HOME".into(), p(self.cache_home.clone())),
            ("XDG_CONFIG_HOME".into(), p(home.join(".config"))),
            ("XDG_DATA_HOME".into(), p(home.join(".local/share"))),
            ("XDG_RUNTIME_DIR".into(), p(home.join("run"))),
            ("NO_AT_BRIDGE".into(), "1".into()),
            ("GTK_A11Y".into(), "none".into()),
            // GTK 4's GL renderer on llvmpipe can starve a loaded 2-core machine for
            // minutes (Nautilus stays at "Loading…"); cairo draws the same.
            ("GSK_RENDERER".into(), "cairo".into()),
        ];
        if !self.bus_address.is_empty() {
            vars.push(("DBUS_SESSION_BUS_ADDRESS".into(), self.bus_address.clone()));
        }
        if !self.wrapper.is_empty() {
            vars.push((
                "PATH".into(),
                "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
            ));
        }
        vars
    }

    /// `program` to run in the session (under the wrapper, with the session's
    /// environment).
    pub fn command(&self, program: &str) -> Command {
        if let Some((first, rest)) = self.wrapper.split_first() {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg("env");
            cmd.args(self.vars().into_iter().map(|(k, v)| format!("{k}={v}")));
            cmd.arg(program);
            cmd
        } else {
            let mut cmd = Command::new(program);
            cmd.envs(self.vars()).env_remove("WAYLAND_DISPLAY");
            cmd
        }
    }

    /// Starts `program args` in the session, its output in the artifacts folder; stopped
    /// when the session is dropped.
    pub fn spawn(&mut self, program: &str, args: &[&str]) {
        let log = std::fs::File::create(self.artifacts.join(format!("{program}.log")))
            .expect("a log file");
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        self.apps.push(child);
    }

    /// Runs `program args` in the session to its end; whether it succeeded.
    pub fn run(&self, program: &str, args: &[&str]) -> bool {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The first visible window whose class is `class`, waiting up to `timeout`; panics
    /// with the log of `program` (started with [`Desktop::spawn`]) when none appears.
    pub fn expect_window(&self, class: &str, program: &str, timeout: Duration) -> String {
        self.window(class, timeout).unwrap_or_else(|| {
            let xvfb = self.xvfb.id();
            panic!(
                "no {class} window within {timeout:?} on {} (Xvfb pid {xvfb} {}); \
                 {program}.log:\n{}\nXvfb.log:\n{}",
                self.display,
                if Path::new(&format!("/proc/{xvfb}")).exists() {
                    "running"
                } else {
                    "gone"
                },
                self.log(program),
                self.log("Xvfb"),
            )
        })
    }

    /// What `program` (started with [`Desktop::spawn`]) printed so far.
    pub fn log(&self, program: &str) -> String {
        super::read_from(&self.artifacts.join(format!("{program}.log")), 0)
    }

    /// The first visible window whose class is `class`, waiting up to `timeout`.
    pub fn window(&self, class: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            let out = self
                .command("xdotool")
                .args(["search", "--onlyvisible", "--class", class])
                .output();
            found = out.ok().and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            });
            found.is_some()
        });
        found
    }

    /// A screenshot of the whole screen, saved as `NAME.png` among the artifacts.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{name}.png"));
        let ok = self.run(
            "import",
            &["-window", "root", path.to_str().expect("UTF-8 path")],
        );
        assert!(ok, "screenshot {name} failed");
        path
    }

    /// The session's home folder.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Where screenshots and program logs go.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// Stops the programs started with [`Desktop::spawn`].
    pub fn stop_apps(&mut self) {
        for mut app in self.apps.drain(..) {
            let _ = app.kill();
            let _ = app.wait();
        }
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        self.stop_apps();
        // The bus and what it started (one process group), then the X server.
        stop_group(&mut self.bus, Duration::from_secs(3));
        stop_group(&mut self.xvfb, Duration::from_secs(3));
    }
}
