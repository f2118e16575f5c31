//! Set up once (issue 24), starting by itself, with real mounts against the embedded
//! server:
//! - systemd: the unit `edrive enable` writes passes `systemd-analyze verify`; READY=1 and
//!   STOPPING=1 reach a NOTIFY_SOCKET the test listens on; SIGTERM uploads first;
//! - fstab: `mount -T FSTAB MP` mounts through `mount.edrive` (in a private mount
//!   namespace whose /usr/sbin has it), `umount` unmounts (and the daemon uploads what
//!   was pending), a bad option is refused.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::home::*;
use common::*;

const USER: &str = "alice";
const PW: &str = "pw-boot-Xe71pQ";

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
