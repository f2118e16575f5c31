//! Set up once (issue 24), with real mounts against the embedded server:
//! - named drives: `edrive add` with a wrong password fails and writes nothing; add →
//!   `mount --all` / `mount NAME` → write → `unmount NAME` → `remove`; the password lands
//!   in a 0600 file when there is no keyring, never in config.toml; a malformed config is
//!   reported with its file, line and key;
//! - the keyring: in a `dbus-run-session` with gnome-keyring-daemon unlocked, the secret
//!   lands in the Secret Service (read back with `secret-tool`), in no file, and a mount
//!   uses it;
//! - `--read-only`, `--uid`, `--gid`, `--umask`; completions.
//!
//! Systemd and fstab are in `setup_boot.rs`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::home::*;
use common::*;

const USER: &str = "alice";
const PW: &str = "pw-setup-Rk38sQ";
const PW_WRONG: &str = "pw-wrong-Lm20xT";

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
