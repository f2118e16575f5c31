//! Set up once (issue 24), with real mounts against the embedded server:
//! - named drives: `edrive add` with a wrong password fails and writes nothing; add →
//!   `mount --all` / `mount NAME` → write → `unmount NAME` → `remove`; the password lands
//!   in a 0600 file when there is no keyring, never in config.toml; a malformed config is
//!   reported with its file, line and key;
//! - the keyring: in a `dbus-run-session` with gnome-keyring-daemon unlocked, the secret
//!   lands in the Secret Service (read back with `secret-tool`), in no file, and a mount
//!   uses it;
//! - `--read-only`, `--uid`, `--gid`, `--umask`;
//! - systemd: the unit `edrive enable` writes passes `systemd-analyze verify`; READY=1 and
//!   STOPPING=1 reach a NOTIFY_SOCKET the test listens on; SIGTERM uploads first;
//! - fstab: `mount -T FSTAB MP` mounts through `mount.edrive` (in a private mount
//!   namespace whose /usr/sbin has it), `umount` unmounts, a bad option is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

const USER: &str = "alice";
const PW: &str = "pw-setup-Rk38sQ";
const PW_WRONG: &str = "pw-wrong-Lm20xT";

/// A private user environment: config, cache and runtime folders, HOME, no D-Bus session
/// (so no keyring), and the mountpoints it made, all unmounted when dropped.
struct Home {
    dir: tempfile::TempDir,
    mountpoints: Vec<PathBuf>,
}

impl Home {
    fn new() -> Home {
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

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A mountpoint (created) that is unmounted when the test ends.
    fn mountpoint(&mut self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).expect("cannot create a mountpoint");
        self.mountpoints.push(p.clone());
        p
    }

    fn env(&self) -> Vec<(String, String)> {
        let p = |r: &str| self.path(r).display().to_string();
        vec![
            ("HOME".into(), p("")),
            ("XDG_CONFIG_HOME".into(), p("cfg")),
            ("XDG_CACHE_HOME".into(), p("cache")),
            ("XDG_RUNTIME_DIR".into(), p("run")),
            ("XDG_DATA_HOME".into(), p("data")),
        ]
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env())
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("EDRIVE_PASSWORD")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        c
    }

    /// Runs `edrive ARGS` (with `$EDRIVE_PASSWORD` when given): status, stdout, stderr.
    fn edrive(&self, args: &[&str], password: Option<&str>) -> (ExitStatus, String, String) {
        let mut c = self.command(edrive_bin());
        c.args(args);
        if let Some(p) = password {
            c.env("EDRIVE_PASSWORD", p);
        }
        run(c, &self.path(""))
    }

    fn edrive_ok(&self, args: &[&str], password: Option<&str>) -> String {
        let (status, out, err) = self.edrive(args, password);
        assert!(
            status.success(),
            "edrive {args:?} failed ({status}):\n{out}\n{err}"
        );
        out
    }

    fn config_text(&self) -> String {
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
fn run(mut c: Command, dir: &Path) -> (ExitStatus, String, String) {
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
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
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

fn list_json(home: &Home) -> serde_json::Value {
    let out = home.edrive_ok(&["list", "--json"], None);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list --json: {e}: {out}"))
}

fn drive_row(list: &serde_json::Value, name: &str) -> serde_json::Value {
    list["drives"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no drive {name} in {list}"))
}

#[test]
fn named_drives_round_trip_and_wrong_password_writes_nothing() {
    require_fuse();
    let data = tempdir();
    std::fs::write(data.path().join("a.txt"), "from the server").unwrap();
    let server = EmbeddedServer::start(data.path(), Some((USER, PW)));
    let url = server.url();
    let mut home = Home::new();
    let mp = home.mountpoint("work");
    let mp2 = home.mountpoint("two");
    let mp_s = mp.display().to_string();

    // Wrong password: refused by the server, nothing written.
    let (status, _out, err) = home.edrive(
        &[
            "add",
            "work",
            &url,
            &mp_s,
            "--user",
            USER,
            "--cache-size",
            "20M",
        ],
        Some(PW_WRONG),
    );
    assert!(!status.success(), "add with a wrong password succeeded");
    assert!(err.contains("refused") && err.contains("401"), "{err}");
    assert!(err.contains("nothing was saved"), "{err}");
    assert!(
        !home.path("cfg/edrive").exists(),
        "add wrote something after a refusal: {:?}",
        std::fs::read_dir(home.path("cfg/edrive")).map(|d| d.count())
    );

    // The right one: the drive in config.toml, the password in a 0600 file (no keyring).
    home.edrive_ok(
        &[
            "add",
            "work",
            &url,
            &mp_s,
            "--user",
            USER,
            "--cache-size",
            "20M",
        ],
        Some(PW),
    );
    let text = home.config_text();
    assert!(
        text.contains("[drives.work]") && text.contains("cache_size = \"20M\""),
        "{text}"
    );
    let cred = home.path("cfg/edrive/credentials/work");
    let mode = std::fs::metadata(&cred).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "{}", cred.display());
    assert_eq!(files_containing(home.dir.path(), PW), vec![cred.clone()]);
    // A second name for the same share; adding a name twice fails.
    home.edrive_ok(
        &[
            "add",
            "two",
            &url,
            &mp2.display().to_string(),
            "--user",
            USER,
        ],
        Some(PW),
    );
    let (status, _, err) = home.edrive(&["add", "two", &url, &mp_s], None);
    assert!(!status.success() && err.contains("exists already"), "{err}");
    let list = list_json(&home);
    assert_eq!(drive_row(&list, "work")["state"], "not mounted", "{list}");

    // mount --all mounts both, without a password (the stored one).
    home.edrive_ok(&["mount", "--all"], None);
    assert!(is_mounted(&mp) && is_mounted(&mp2));
    assert_eq!(
        std::fs::read_to_string(mp.join("a.txt")).unwrap(),
        "from the server"
    );
    std::fs::write(mp.join("hello.txt"), "written through a named drive").unwrap();
    let list = list_json(&home);
    let row = drive_row(&list, "work");
    assert_eq!(row["mounted"], true, "{list}");
    assert_ne!(row["state"], "not mounted", "{list}");
    home.edrive_ok(&["unmount", "work"], None);
    home.edrive_ok(&["unmount", "two"], None);
    assert!(!is_mounted(&mp) && !is_mounted(&mp2));
    assert_eq!(
        std::fs::read_to_string(data.path().join("hello.txt")).unwrap(),
        "written through a named drive"
    );

    // mount NAME again; remove refuses a mounted drive.
    home.edrive_ok(&["mount", "work"], None);
    assert!(is_mounted(&mp));
    let (status, _, err) = home.edrive(&["remove", "work"], None);
    assert!(!status.success() && err.contains("unmount"), "{err}");
    home.edrive_ok(&["unmount", "work"], None);

    // remove: the drive goes; the secret stays while "two" uses the same share.
    home.edrive_ok(&["remove", "work"], None);
    assert!(!home.config_text().contains("[drives.work]"));
    assert!(home.config_text().contains("[drives.two]"));
    home.edrive_ok(&["remove", "two"], None);
    assert!(files_containing(home.dir.path(), PW).is_empty());
    let (status, _, err) = home.edrive(&["mount", "work"], None);
    assert!(
        !status.success() && err.contains("no drive named 'work'"),
        "{err}"
    );
}

#[test]
fn malformed_config_is_reported_with_file_line_and_key() {
    let home = Home::new();
    let file = home.path("cfg/edrive/config.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "# drives\n[drives.work]\nurl = \"http://127.0.0.1:9/\"\ncache_sise = \"1G\"\nmountpoint = \"/mnt/w\"\n",
    )
    .unwrap();
    for args in [&["list"][..], &["mount", "work"], &["mount", "--all"]] {
        let (status, _, err) = home.edrive(args, None);
        assert!(!status.success(), "{args:?} accepted a bad config");
        assert!(
            err.contains(&file.display().to_string())
                && err.contains("line 4")
                && err.contains("cache_sise"),
            "{args:?}: {err}"
        );
    }
    // A bad value names the drive and the option.
    std::fs::write(
        &file,
        "[drives.work]\nurl = \"http://127.0.0.1:9/\"\nmountpoint = \"/mnt/w\"\numask = \"999\"\n",
    )
    .unwrap();
    let (status, _, err) = home.edrive(&["list"], None);
    assert!(!status.success());
    assert!(err.contains("'work'") && err.contains("--umask"), "{err}");
}

#[test]
fn read_only_owner_and_umask_options() {
    let data = tempdir();
    std::fs::write(data.path().join("a.txt"), "x").unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(
        &server.url(),
        MountOpts::default()
            .arg("--read-only")
            .arg("--uid=4321")
            .arg("--gid=4322")
            .arg("--umask=027"),
    );
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::metadata(m.join("a.txt")).unwrap();
    let d = std::fs::metadata(m.join("sub")).unwrap();
    assert_eq!((f.uid(), f.gid()), (4321, 4322));
    assert_eq!(f.mode() & 0o777, 0o640);
    assert_eq!(d.mode() & 0o777, 0o750);
    let e = std::fs::write(m.join("new.txt"), "y").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let e = std::fs::remove_file(m.join("a.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert!(!data.path().join("new.txt").exists());
}

/// Panics unless `program` is on PATH.
fn require_program(program: &str, package: &str) {
    assert!(
        find_in_path(program).is_some(),
        "{program} is needed (apt-get install {package}; scripts/test installs it)"
    );
}

#[test]
fn secret_lands_in_the_keyring_and_in_no_file() {
    require_fuse();
    require_program("dbus-run-session", "dbus");
    require_program("gnome-keyring-daemon", "gnome-keyring");
    require_program("secret-tool", "libsecret-tools");
    let data = tempdir();
    std::fs::write(data.path().join("a.txt"), "kept in the keyring").unwrap();
    let server = EmbeddedServer::start(data.path(), Some((USER, PW)));
    let url = server.url();
    let mut home = Home::new();
    let mp = home.mountpoint("kr");
    let out = home.path("out");
    std::fs::create_dir(&out).unwrap();
    // gnome-keyring-daemon in the foreground, so the session reaps it; it is ready once
    // it owns org.freedesktop.secrets on the session bus.
    let script = r#"
set -e
printf '%s' "$KEYRING_PW" | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
KR=$!
trap 'kill $KR 2>/dev/null; wait $KR 2>/dev/null || true' EXIT
for i in $(seq 1 200); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q true && break
  sleep 0.05
done
EDRIVE_PASSWORD="$DRIVE_PW" "$EDRIVE" add kr "$URL" "$MP" --user alice > "$OUT/add" 2>&1
secret-tool lookup service edrive username "$URL" > "$OUT/lookup"
"$EDRIVE" mount kr > "$OUT/mount" 2>&1
cat "$MP/a.txt" > "$OUT/read"
"$EDRIVE" status "$MP" > "$OUT/status" 2>&1
"$EDRIVE" unmount kr >> "$OUT/mount" 2>&1
"$EDRIVE" remove kr >> "$OUT/mount" 2>&1
secret-tool lookup service edrive username "$URL" > "$OUT/after-remove" || true
"#;
    let mut c = home.command("dbus-run-session");
    c.args(["--", "sh", "-c", script])
        .env("KEYRING_PW", "keyring-unlock-pw")
        .env("DRIVE_PW", PW)
        .env("EDRIVE", edrive_bin())
        .env("URL", &url)
        .env("MP", &mp)
        .env("OUT", &out);
    let (status, stdout, stderr) = run(c, &home.path(""));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    assert!(
        status.success(),
        "keyring session failed ({status}):\n{stdout}\n{stderr}\nadd: {}\nmount: {}",
        read("add"),
        read("mount")
    );
    assert!(
        read("add").contains("stored in the keyring"),
        "{}",
        read("add")
    );
    let stored: serde_json::Value = serde_json::from_str(read("lookup").trim())
        .unwrap_or_else(|e| panic!("keyring item: {e}: {}", read("lookup")));
    assert_eq!(stored["password"], PW);
    assert_eq!(stored["user"], USER);
    assert_eq!(read("read"), "kept in the keyring");
    assert!(
        read("status").contains("auth:    user alice, stored in the keyring"),
        "{}",
        read("status")
    );
    assert_eq!(
        read("after-remove"),
        "",
        "remove left the secret in the keyring"
    );
    // In no file: not the config, not a credentials file, not the cache or its log (the
    // keyring's own file is encrypted). `lookup` is the test's copy; it goes first.
    std::fs::remove_file(out.join("lookup")).unwrap();
    assert_eq!(files_containing(home.dir.path(), PW), Vec::<PathBuf>::new());
    assert!(home.path("data/keyrings").exists(), "no keyring was used");
}

/// A datagram socket standing in for systemd's NOTIFY_SOCKET.
struct NotifySocket {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> NotifySocket {
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind NOTIFY_SOCKET");
        NotifySocket { sock, path }
    }

    /// The next message, or `None` after `timeout`.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

#[test]
fn systemd_unit_verifies_and_the_daemon_speaks_notify() {
    require_fuse();
    require_program("systemd-analyze", "systemd");
    require_program("man", "man-db");
    let data = tempdir();
    let server = EmbeddedServer::start(data.path(), Some((USER, PW)));
    let mut home = Home::new();
    let mp = home.mountpoint("sd");
    home.edrive_ok(
        &[
            "add",
            "sd",
            &server.url(),
            &mp.display().to_string(),
            "--user",
            USER,
        ],
        Some(PW),
    );

    // enable writes the template and the login link; the unit verifies (its man page
    // from generate-assets, as the package installs it).
    home.edrive_ok(&["enable", "sd"], None);
    let unit_dir = home.path("cfg/systemd/user");
    let template = std::fs::read_to_string(unit_dir.join("edrive@.service")).unwrap();
    assert!(template.contains("Type=notify"), "{template}");
    assert!(
        template.contains(&format!("ExecStart={} mount %i --foreground", edrive_bin())),
        "{template}"
    );
    let link = unit_dir.join("default.target.wants/edrive@sd.service");
    assert!(link.symlink_metadata().is_ok());
    assert_eq!(drive_row(&list_json(&home), "sd")["enabled"], true);
    let assets = home.path("assets");
    home.edrive_ok(
        &[
            "generate-assets",
            &assets.display().to_string(),
            "--exe",
            edrive_bin(),
        ],
        None,
    );
    let man1 = home.path("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    for page in ["edrive.1", "edrive-mount.1"] {
        std::fs::copy(assets.join(page), man1.join(page)).unwrap();
    }
    let verify_dir = home.path("verify");
    std::fs::create_dir(&verify_dir).unwrap();
    let instance = verify_dir.join("edrive@sd.service");
    std::fs::copy(unit_dir.join("edrive@.service"), &instance).unwrap();
    let mut c = home.command("systemd-analyze");
    c.args(["verify", "--user"])
        .arg(&instance)
        .env("MANPATH", home.path("man"));
    let (status, out, err) = run(c, &home.path(""));
    assert!(
        status.success() && err.trim().is_empty(),
        "systemd-analyze verify ({status}):\n{out}\n{err}"
    );
    home.edrive_ok(&["disable", "sd"], None);
    assert!(link.symlink_metadata().is_err());

    // As systemd runs it: mount NAME --foreground with NOTIFY_SOCKET.
    let notify = NotifySocket::bind(home.path("notify.sock"));
    let mut c = home.command(edrive_bin());
    c.args(["mount", "sd", "--foreground"])
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("cannot start the daemon");
    let ready = notify.recv(Duration::from_secs(60));
    let mounted_at_ready = is_mounted(&mp);
    let guard = KillOnDrop(&mut child);
    let ready = ready.expect("no message on NOTIFY_SOCKET within 60 s");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(mounted_at_ready, "READY=1 came before the mount existed");
    // A change still waiting for its upload delay when SIGTERM comes.
    std::fs::write(mp.join("at-stop.txt"), "uploaded before exit").unwrap();
    signal_pid(guard.0.id(), libc::SIGTERM);
    let stopping = notify
        .recv(Duration::from_secs(60))
        .expect("no STOPPING=1 after SIGTERM");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Ok(Some(s)) = guard.0.try_wait() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "daemon exit: {status}");
    assert!(!is_mounted(&mp));
    assert_eq!(
        std::fs::read_to_string(data.path().join("at-stop.txt")).unwrap_or_default(),
        "uploaded before exit"
    );
}

/// Kills and reaps a child if the test fails before it exits.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            terminate_child(self.0, Duration::from_secs(30), false);
        }
    }
}

#[test]
fn fstab_line_mounts_through_mount_edrive() {
    require_fuse();
    require_program("unshare", "util-linux");
    let data = tempdir();
    std::fs::write(data.path().join("a.txt"), "via fstab").unwrap();
    let server = EmbeddedServer::start(data.path(), Some((USER, PW)));
    let mut home = Home::new();
    // The mounts live in the private namespace only, but a failure must not leave one
    // there either: the script unmounts on exit.
    let mp = home.mountpoint("fstab-mnt");
    let mp_bad = home.mountpoint("fstab-bad");
    let sbin = home.path("sbin");
    std::fs::create_dir(&sbin).unwrap();
    std::os::unix::fs::symlink(edrive_bin(), sbin.join("mount.edrive")).unwrap();
    let pw_file = home.path("cfg/alice.pw");
    std::fs::write(&pw_file, format!("{PW}\n")).unwrap();
    set_mode(&pw_file, 0o600);
    let cache = home.path("cache/fstab");
    let fstab = home.path("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# a test fstab\n{} {} edrive user={USER},credentials={},cache_size=20M,cache_dir={},_netdev,nofail,x-systemd.automount 0 0\n{} {} edrive cache_sise=20M 0 0\n",
            server.url(),
            mp.display(),
            pw_file.display(),
            cache.display(),
            server.url(),
            mp_bad.display(),
        ),
    )
    .unwrap();
    let out = home.path("out");
    std::fs::create_dir(&out).unwrap();
    let script = r#"
trap 'umount -l "$MP" 2>/dev/null; umount -l "$MP_BAD" 2>/dev/null; true' EXIT
mount -t overlay overlay -o "lowerdir=$SBIN:/usr/sbin" /usr/sbin || exit 10
mount -T "$FSTAB" "$MP" > "$OUT/mount" 2>&1 || exit 11
grep -q " $MP " /proc/mounts || exit 12
cat "$MP/a.txt" > "$OUT/read" || exit 13
echo "written before umount" > "$MP/before-umount.txt" || exit 18
"$EDRIVE" status "$MP" --json > "$OUT/status" || exit 19
umount "$MP" > "$OUT/umount" 2>&1 || exit 14
grep -q " $MP " /proc/mounts && exit 15
mount -T "$FSTAB" "$MP_BAD" > "$OUT/bad" 2>&1 && exit 16
echo "bad-exit=$?" >> "$OUT/bad"
grep -q " $MP_BAD " /proc/mounts && exit 17
exit 0
"#;
    let mut c = home.command("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("SBIN", &sbin)
        .env("FSTAB", &fstab)
        .env("MP", &mp)
        .env("MP_BAD", &mp_bad)
        .env("EDRIVE", edrive_bin())
        .env("OUT", &out);
    let (status, stdout, stderr) = run(c, &home.path(""));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    assert!(
        status.success(),
        "fstab script failed ({status}):\n{stdout}\n{stderr}\nmount: {}\numount: {}\nbad: {}",
        read("mount"),
        read("umount"),
        read("bad")
    );
    assert_eq!(read("read"), "via fstab");
    let bad = read("bad");
    assert!(
        bad.contains("mount.edrive: unknown option 'cache_sise=20M'")
            && bad.contains("bad-exit=32"),
        "{bad}"
    );
    assert!(!is_mounted(&mp));
    // The daemon uploads what was written before `umount`, then exits.
    let uploaded = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(data.path().join("before-umount.txt")).unwrap_or_default()
            == "written before umount\n"
    });
    assert!(
        uploaded,
        "a change made before umount did not reach the server"
    );
    // ... and exits (before the test removes its folders).
    let status: serde_json::Value =
        serde_json::from_str(&read("status")).unwrap_or(serde_json::Value::Null);
    let pid = status["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    let pid = pid.unwrap_or_else(|| panic!("no daemon pid in {status}"));
    assert!(
        wait_until(Duration::from_secs(60), || !pid_alive(pid)),
        "the daemon did not exit after umount"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let home = Home::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef edrive"),
        ("fish", "complete -c edrive"),
    ] {
        let out = home.edrive_ok(&["completions", shell], None);
        assert!(
            out.contains(marker),
            "{shell}: {}",
            &out[..out.len().min(300)]
        );
        assert!(out.contains("unmount") && out.contains("enable"), "{shell}");
    }
    let (status, _, err) = home.edrive(&["completions", "tcsh"], None);
    assert!(!status.success() && err.contains("tcsh"), "{err}");
}
