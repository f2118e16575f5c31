//! Issue 23 acceptance: the panel icon. A real X server (Xvfb), a private session bus
//! (`dbus-daemon --session`, what `dbus-run-session` starts), a real StatusNotifier host
//! (xfce4-panel with its systray plugin, which is the StatusNotifierWatcher) and `edrive
//! tray` against one mount of the embedded server. Everything is checked through D-Bus
//! with `busctl --user`: the item's Status, IconName, ToolTip and menu in each state, menu
//! entries clicked with com.canonical.dbusmenu `Event`, and the notifications a listener
//! that owns org.freedesktop.Notifications receives. A screenshot of the panel is taken
//! per state into `$CARGO_TARGET_TMPDIR/tray-PID/` (kept when the test fails, or with
//! `EDRIVE_TEST_KEEP=1`).
//!
//! Also here, without a desktop: the control socket's `watch` subscription.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const USER: &str = "alice";
const PW_A: &str = "first-password";
const PW_B: &str = "second-password";
/// The longest any state change may take to show (a bound, not a speed claim).
const WAIT: Duration = Duration::from_secs(60);

fn need(tool: &str, package: &str) {
    if find_in_path(tool).is_none() {
        panic!("{tool} is not on PATH (apt-get install {package}; scripts/test does)");
    }
}

fn private_runtime_dir(root: &Path) -> PathBuf {
    let run = root.join("run");
    fs::create_dir_all(&run).expect("mkdir run");
    set_mode(&run, 0o700);
    run
}

/// The control sockets in a runtime folder.
fn sockets(run: &Path) -> Vec<PathBuf> {
    fs::read_dir(run.join("edrive"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn watch_streams_a_snapshot_when_the_state_changes() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir(&share).expect("mkdir");
    fs::write(share.join("a.txt"), "a").expect("seed");
    let srv = EmbeddedServer::start(&share, None);
    let run = private_runtime_dir(tmp.path());
    let m = Mount::new(
        &srv.url(),
        MountOpts::default().env("XDG_RUNTIME_DIR", &run.display().to_string()),
    );
    let [sock] = &sockets(&run)[..] else {
        panic!("one control socket expected in {}", run.display());
    };
    let stream = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    // A bound for a hung daemon only: the heartbeat (1 h) never comes in this test.
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    (&stream)
        .write_all(b"{\"cmd\":\"watch\",\"period_s\":3600}\n")
        .expect("send watch");
    let mut lines = BufReader::new(&stream).lines();
    let mut next = || -> Value {
        let line = lines
            .next()
            .expect("the daemon closed the subscription")
            .expect("no snapshot within the bound");
        serde_json::from_str(&line).expect("a snapshot is JSON")
    };
    let first = next();
    assert_eq!(first["state"], "synced", "{first}");
    assert_eq!(first["mountpoint"], m.path().display().to_string());
    assert!(first["conflicts"].is_array() && first["events"].is_array());
    m.edrive_ok(&["suspend"]);
    let mut s = next();
    while s["state"] != "suspended" {
        s = next();
    }
    m.edrive_ok(&["resume"]);
    while s["state"] != "synced" {
        s = next();
    }
    // The plain request/reply still works beside a subscription.
    assert_eq!(m.status_json()["state"], "synced");
    m.unmount();
    // The daemon ends the subscription when it stops: the stream reaches its end (a hung
    // one would fail with a timeout here).
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut &stream, &mut rest).expect("the subscription ends");
}

/// A program of the desktop, stopped with its process group.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        terminate_child(&mut self.0, Duration::from_secs(5), true);
    }
}

/// Xvfb, a session bus and xfce4-panel, in private folders.
struct Desktop {
    env: Vec<(String, String)>,
    procs: Vec<Proc>,
    shots: PathBuf,
    logs: PathBuf,
}

impl Desktop {
    fn start(root: &Path, run: &Path) -> Desktop {
        for (tool, pkg) in [
            ("Xvfb", "xvfb"),
            ("dbus-daemon", "dbus-daemon"),
            ("xfce4-panel", "xfce4-panel"),
            ("busctl", "systemd"),
            ("import", "imagemagick"),
        ] {
            need(tool, pkg);
        }
        let logs = root.join("logs");
        fs::create_dir_all(&logs).expect("mkdir logs");
        let home = root.join("home");
        let config = root.join("config");
        let panel_cfg = config.join("xfce4/xfconf/xfce-perchannel-xml");
        fs::create_dir_all(&home).expect("mkdir home");
        fs::create_dir_all(&panel_cfg).expect("mkdir config");
        fs::write(panel_cfg.join("xfce4-panel.xml"), PANEL_XML).expect("panel config");
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), home.display().to_string()),
            ("XDG_CONFIG_HOME".into(), config.display().to_string()),
            ("XDG_RUNTIME_DIR".into(), run.display().to_string()),
            (
                "XDG_CACHE_HOME".into(),
                root.join("cache").display().to_string(),
            ),
            ("NO_AT_BRIDGE".into(), "1".into()),
            ("GTK_A11Y".into(), "none".into()),
        ];
        let mut procs = Vec::new();
        // Xvfb picks a free display and writes its number to fd 3 (here: a pipe).
        let (display, xvfb) = spawn_reporting(
            Command::new("Xvfb").args([
                "-displayfd",
                "3",
                "-screen",
                "0",
                "480x96x24",
                "-nolisten",
                "tcp",
            ]),
            &env,
            &logs.join("xvfb.log"),
        );
        procs.push(xvfb);
        env.push(("DISPLAY".into(), format!(":{}", display.trim())));
        let (bus, dbus) = spawn_reporting(
            Command::new("dbus-daemon").args(["--session", "--nofork", "--print-address=3"]),
            &env,
            &logs.join("dbus.log"),
        );
        procs.push(dbus);
        env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.trim().to_string()));
        let panel = Command::new("xfce4-panel")
            .arg("--disable-wm-check")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file(&logs.join("panel.log")))
            .stderr(log_file(&logs.join("panel.log")))
            .process_group(0)
            .die_with_test()
            .spawn()
            .expect("cannot run xfce4-panel");
        procs.push(Proc(panel));
        let shots =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tray-{}", std::process::id()));
        fs::create_dir_all(&shots).expect("mkdir screenshots");
        let d = Desktop {
            env,
            procs,
            shots,
            logs,
        };
        let up = wait_until(WAIT, || {
            d.busctl(&["status", "org.kde.StatusNotifierWatcher"])
                .is_some()
        });
        assert!(
            up,
            "xfce4-panel's systray never became the StatusNotifierWatcher; {}",
            d.log("panel.log")
        );
        d
    }

    fn log(&self, name: &str) -> String {
        format!("{name}:\n{}", read_from(&self.logs.join(name), 0))
    }

    /// `busctl --user ARGS` on the private bus: stdout when it succeeded.
    fn busctl(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("busctl")
            .arg("--user")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("cannot run busctl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn busctl_json(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["--json=short"];
        all.extend_from_slice(args);
        self.busctl(&all)
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
    }

    /// Takes a screenshot of the panel, once the panel has had a moment to fetch and draw
    /// the new icon (for the picture only; no check depends on this pause).
    fn screenshot(&self, name: &str) {
        std::thread::sleep(Duration::from_millis(800));
        let file = self.shots.join(format!("{name}.png"));
        let ok = Command::new("import")
            .args(["-window", "root"])
            .arg(&file)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .status()
            .expect("cannot run import")
            .success();
        assert!(ok, "screenshot {name} failed");
    }

    /// Gives the panel a dark (or its default) background, through xfconf.
    fn dark_panel(&self, dark: bool) {
        let set = |prop: &str, value: &[&str]| {
            let mut args = vec![
                "call",
                "org.xfce.Xfconf",
                "/org/xfce/Xfconf",
                "org.xfce.Xfconf",
                "SetProperty",
                "ssv",
                "xfce4-panel",
                prop,
            ];
            args.extend_from_slice(value);
            assert!(self.busctl(&args).is_some(), "xfconf {prop} {value:?}");
        };
        if dark {
            set(
                "/panels/panel-1/background-rgba",
                &["av", "4", "d", "0.13", "d", "0.14", "d", "0.16", "d", "1"],
            );
            set("/panels/panel-1/background-style", &["u", "1"]);
        } else {
            set("/panels/panel-1/background-style", &["u", "0"]);
        }
    }

    /// Spawns `edrive tray` in this desktop.
    fn tray(&self) -> Proc {
        let child = Command::new(edrive_bin())
            .arg("tray")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("EDRIVE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log_file(&self.logs.join("tray.log")))
            .stderr(log_file(&self.logs.join("tray.log")))
            .process_group(0)
            .die_with_test()
            .spawn()
            .expect("cannot run edrive tray");
        Proc(child)
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
        if std::thread::panicking() || std::env::var_os("EDRIVE_TEST_KEEP").is_some() {
            for f in ["tray.log", "panel.log", "dbus.log", "xvfb.log"] {
                let _ = fs::copy(self.logs.join(f), self.shots.join(f));
            }
            eprintln!(
                "tray test: screenshots and logs kept in {}",
                self.shots.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.shots);
        }
    }
}

/// Desktop programs end with the test even when it is killed (no Drop runs then).
trait DieWithTest {
    fn die_with_test(&mut self) -> &mut Self;
}

impl DieWithTest for Command {
    fn die_with_test(&mut self) -> &mut Self {
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            self.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            })
        }
    }
}

fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// Spawns `cmd` (its own process group) with a pipe on fd 3 and returns the first line
/// it writes there.
fn spawn_reporting(cmd: &mut Command, env: &[(String, String)], log: &Path) -> (String, Proc) {
    use std::os::unix::io::{AsRawFd, FromRawFd};
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: pipe just created these descriptors, owned here alone.
    let (r, w) = unsafe { (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1])) };
    let wfd = w.as_raw_fd();
    let rfd = r.as_raw_fd();
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log_file(log))
        .stderr(log_file(log))
        .process_group(0)
        .die_with_test();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(rfd);
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Proc(cmd.spawn().expect("cannot spawn"));
    drop(w);
    let mut line = String::new();
    BufReader::new(r)
        .read_line(&mut line)
        .expect("read the reported line");
    assert!(
        !line.trim().is_empty(),
        "{cmd:?} reported nothing: {}",
        read_from(log, 0)
    );
    (line, child)
}

const PANEL_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="40"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray">
      <property name="icon-size" type="uint" value="32"/>
      <property name="square-icons" type="bool" value="false"/>
    </property>
  </property>
</channel>
"#;

/// A notification daemon for the test: owns org.freedesktop.Notifications on the private
/// bus and records every notification.
struct Listener {
    got: Received,
}

/// The notifications received: (summary, body, actions).
type Received = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Listener {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut got = self.got.lock().expect("lock");
        got.push((summary, body, actions));
        got.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".into(), "body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "edrive-test".into(),
            "edrive".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// The item as seen over D-Bus.
struct Item<'a> {
    d: &'a Desktop,
    name: String,
}

impl Item<'_> {
    fn prop(&self, p: &str) -> Value {
        self.d
            .busctl_json(&[
                "get-property",
                &self.name,
                "/StatusNotifierItem",
                "org.kde.StatusNotifierItem",
                p,
            ])
            .map(|v| v["data"].clone())
            .unwrap_or(Value::Null)
    }

    /// (Status, IconName, tooltip title, tooltip text).
    fn look(&self) -> (String, String, String, String) {
        let tip = self.prop("ToolTip");
        (
            self.prop("Status").as_str().unwrap_or("").into(),
            self.prop("IconName").as_str().unwrap_or("").into(),
            tip[2].as_str().unwrap_or("").into(),
            tip[3].as_str().unwrap_or("").into(),
        )
    }

    /// Waits until the item shows `status`, `icon` and the tooltip title `title`; returns
    /// the tooltip text.
    fn wait_for(&self, status: &str, icon: &str, title: &str) -> String {
        let mut last = Default::default();
        let ok = wait_until(WAIT, || {
            last = self.look();
            (last.0.as_str(), last.1.as_str(), last.2.as_str()) == (status, icon, title)
        });
        assert!(
            ok,
            "the item never showed {status}/{icon}/{title:?}; last: {last:?}\n{}",
            self.d.log("tray.log")
        );
        last.3
    }

    /// The menu: (id, label) of every entry, depth first.
    fn menu(&self) -> Vec<(i64, String)> {
        let layout = self
            .d
            .busctl_json(&[
                "call",
                &self.name,
                "/MenuBar",
                "com.canonical.dbusmenu",
                "GetLayout",
                "iias",
                "--",
                "0",
                "-1",
                "0",
            ])
            .unwrap_or(Value::Null);
        let mut out = Vec::new();
        walk_menu(&layout["data"][1], &mut out);
        out
    }

    fn labels(&self) -> Vec<String> {
        self.menu().into_iter().map(|(_, l)| l).collect()
    }

    /// Clicks the first entry labelled `label`.
    fn click(&self, label: &str) {
        let menu = self.menu();
        let Some((id, _)) = menu.iter().find(|(_, l)| l == label) else {
            panic!("no menu entry {label:?} in {menu:?}");
        };
        let id = id.to_string();
        let r = self.d.busctl(&[
            "call",
            &self.name,
            "/MenuBar",
            "com.canonical.dbusmenu",
            "Event",
            "isvu",
            &id,
            "clicked",
            "s",
            "",
            "0",
        ]);
        assert!(r.is_some(), "Event on {label:?} failed");
    }
}

/// Collects (id, label) from a dbusmenu layout node `[id, {props}, [children]]`.
fn walk_menu(node: &Value, out: &mut Vec<(i64, String)>) {
    let (Some(id), Some(label)) = (node[0].as_i64(), node[1]["label"]["data"].as_str()) else {
        if let Some(children) = node[2].as_array() {
            for c in children {
                walk_menu(&c["data"], out);
            }
        }
        return;
    };
    out.push((id, label.to_string()));
    if let Some(children) = node[2].as_array() {
        for c in children {
            walk_menu(&c["data"], out);
        }
    }
}

#[test]
fn the_panel_icon_follows_the_mount_and_its_menu_acts() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir(&share).expect("mkdir");
    fs::write(share.join("a.txt"), "base a").expect("seed");
    let run = private_runtime_dir(tmp.path());
    let desktop = Desktop::start(tmp.path(), &run);
    let d = &desktop;

    // The notification daemon of this session.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let got = Arc::new(Mutex::new(Vec::new()));
    let bus = d
        .env
        .iter()
        .find(|(k, _)| k == "DBUS_SESSION_BUS_ADDRESS")
        .map(|(_, v)| v.clone())
        .expect("bus address");
    let _listener = rt.block_on(async {
        zbus::connection::Builder::address(bus.as_str())
            .expect("address")
            .name("org.freedesktop.Notifications")
            .expect("name")
            .serve_at(
                "/org/freedesktop/Notifications",
                Listener { got: got.clone() },
            )
            .expect("serve")
            .build()
            .await
            .expect("own org.freedesktop.Notifications")
    });
    let count = |summary_has: &str| {
        got.lock()
            .expect("lock")
            .iter()
            .filter(|(s, _, _)| s.contains(summary_has))
            .count()
    };

    let mut srv = EmbeddedServer::start(&share, Some((USER, PW_A)));
    let m = Mount::new(
        &srv.url(),
        MountOpts::default()
            .auth(USER, PW_A)
            .cache_dir(&tmp.path().join("cache"))
            .env("XDG_RUNTIME_DIR", &run.display().to_string())
            .dir_cache_ttl("1h")
            .arg("--on-conflict=ask")
            .arg("--upload-delay=1h")
            .arg("--poll-interval=1s"),
    );
    assert_eq!(fs::read_to_string(m.join("a.txt")).expect("read"), "base a");
    let _tray = d.tray();

    // Registered with the panel's watcher.
    let mut name = String::new();
    let registered = wait_until(WAIT, || {
        let v = d.busctl_json(&[
            "get-property",
            "org.kde.StatusNotifierWatcher",
            "/StatusNotifierWatcher",
            "org.kde.StatusNotifierWatcher",
            "RegisteredStatusNotifierItems",
        ]);
        match v.as_ref().and_then(|v| v["data"][0].as_str()) {
            Some(item) => {
                name = item.split('/').next().unwrap_or("").to_string();
                true
            }
            None => false,
        }
    });
    assert!(registered, "no item registered; {}", d.log("tray.log"));
    let item = Item { d, name };
    // One panel icon per session: a second one says so and leaves.
    let second = Command::new(edrive_bin())
        .arg("tray")
        .envs(d.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run a second edrive tray");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already runs in this session"),
        "{second:?}"
    );

    // Synced.
    let text = item.wait_for("Active", "edrive-synced", "edrive: up to date");
    assert_eq!(text, "mnt: Up to date");
    let labels = item.labels();
    for l in [
        "mnt: up to date",
        "Open folder",
        "Up to date",
        "Pause",
        "Sync now",
        "Free up space…",
        "Unmount",
    ] {
        assert!(
            labels.iter().any(|x| x == l),
            "menu lacks {l:?}: {labels:?}"
        );
    }
    assert!(!labels.iter().any(|x| x == "Log in again…"));
    d.screenshot("1-synced");
    d.dark_panel(true);
    d.screenshot("1-synced-dark-panel");
    d.dark_panel(false);

    // A change waits (the upload delay is an hour): transferring, until "Sync now".
    fs::write(m.join("new.txt"), "new here").expect("write");
    let text = item.wait_for("Active", "edrive-transferring", "edrive: syncing");
    assert!(text.starts_with("mnt: Uploading 1 change"), "{text}");
    d.screenshot("2-transferring");
    item.click("Sync now");
    item.wait_for("Active", "edrive-synced", "edrive: up to date");
    assert_eq!(
        fs::read_to_string(share.join("new.txt")).expect("uploaded"),
        "new here"
    );

    // Pause suspends the mount; Resume resumes it.
    item.click("Pause");
    item.wait_for("Active", "edrive-paused", "edrive: paused");
    assert_eq!(m.status_json()["suspended"], "on");
    assert!(item.labels().iter().any(|l| l == "Resume"));
    d.screenshot("3-paused");
    item.click("Resume");
    item.wait_for("Active", "edrive-synced", "edrive: up to date");
    assert!(m.status_json()["suspended"].is_null());

    // A conflict: changed on the server and here.
    fs::write(share.join("a.txt"), "server's version of a").expect("server edit");
    fs::write(m.join("a.txt"), "local a").expect("local edit");
    item.click("Sync now");
    let text = item.wait_for(
        "NeedsAttention",
        "edrive-attention",
        "edrive: needs attention",
    );
    assert!(text.contains("1 conflict"), "{text}");
    let labels = item.labels();
    for l in [
        "mnt: needs attention (1 conflict)",
        "Conflicts (1)…",
        "a.txt",
        "Use local",
        "Use remote",
        "Keep both",
    ] {
        assert!(
            labels.iter().any(|x| x == l),
            "menu lacks {l:?}: {labels:?}"
        );
    }
    assert!(
        wait_until(WAIT, || count("Conflict in mnt") == 1),
        "no conflict notification: {:?}",
        got.lock().expect("lock")
    );
    d.screenshot("4-conflict");
    // Use remote: the server's version wins, the local bytes go to recovered/.
    item.click("Use remote");
    item.wait_for("Active", "edrive-synced", "edrive: up to date");
    assert_eq!(
        fs::read_to_string(m.join("a.txt")).expect("read"),
        "server's version of a"
    );
    assert_eq!(
        fs::read_to_string(share.join("a.txt")).expect("read"),
        "server's version of a"
    );
    assert!(!item.labels().iter().any(|l| l.starts_with("Conflicts")));

    // Offline: the server stops.
    srv.stop();
    let text = item.wait_for("Active", "edrive-offline", "edrive: offline");
    assert!(text.starts_with("mnt: Offline"), "{text}");
    d.screenshot("5-offline");

    // The password changed on the server: auth required, "Log in again…" in the menu.
    srv.restart_with_auth(Some((USER, PW_B)));
    let text = item.wait_for("NeedsAttention", "edrive-auth", "edrive: sign-in required");
    assert!(text.starts_with("mnt: Sign-in required"), "{text}");
    assert!(item.labels().iter().any(|l| l == "Log in again…"));
    assert!(
        wait_until(WAIT, || count("sign-in required") == 1),
        "no auth notification: {:?}",
        got.lock().expect("lock")
    );
    d.screenshot("6-auth-required");
    let (status, out, err) = m.edrive_with_password(&["login"], PW_B);
    assert!(status.success(), "login: {out}{err}");
    item.wait_for("Active", "edrive-synced", "edrive: up to date");

    // Each notification came once, however many snapshots passed meanwhile.
    let all = got.lock().expect("lock").clone();
    assert_eq!(count("Conflict in mnt"), 1, "{all:?}");
    assert_eq!(count("sign-in required"), 1, "{all:?}");
    let conflict = all
        .iter()
        .find(|(s, _, _)| s.contains("Conflict in mnt"))
        .expect("conflict");
    assert!(conflict.1.contains("/a.txt"), "{conflict:?}");
    assert_eq!(conflict.2, ["resolve", "Resolve"]);

    // Unmount from the menu: the mount goes, the icon goes idle.
    item.click("Unmount");
    item.wait_for("Passive", "edrive-idle", "edrive: no drive mounted");
    assert!(!is_mounted(m.path()));
    d.screenshot("7-no-mount");
}
