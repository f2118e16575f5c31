//! Credentials, with real mounts against the embedded server:
//! - the password changes on the server: the mount goes `auth-required` and sends at most
//!   a handful of requests a minute, local files stay readable and writes queue;
//!   `edrive login` with a wrong password fails and changes nothing, with the right one
//!   brings the mount back and uploads the queue; a remount without a password uses the
//!   stored credentials; no password shows in `ps`, the debug log or `edrive status`;
//! - bearer tokens: mount, token change, `edrive login --bearer-token-file`, remount;
//! - `edrive status PATH` for files and folders inside a mount.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const USER: &str = "alice";
const PW_A: &str = "pw-A-q7Zx93";
const PW_B: &str = "pw-B-m4Kt28";
const PW_WRONG: &str = "pw-W-c1Vn55";

fn state(m: &Mount) -> String {
    m.status_json()["state"].as_str().unwrap_or("?").to_string()
}

fn wait_state(m: &Mount, want: &str, timeout: Duration) {
    let ok = wait_until(timeout, || state(m) == want);
    assert!(ok, "state is not {want}: {}", m.status_json());
}

/// Standard base64 (what a Basic `Authorization` header carries).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form in which one of `secrets` could leak: itself, and as a Basic header value.
fn leak_forms(secrets: &[&str]) -> Vec<String> {
    let mut forms = Vec::new();
    for s in secrets {
        forms.push(s.to_string());
        forms.push(base64(format!("{USER}:{s}").as_bytes()));
    }
    forms
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for form in leak_forms(secrets) {
        assert!(!text.contains(&form), "{what} shows a secret ({form})");
    }
}

fn ps_aux() -> String {
    let out = std::process::Command::new("ps")
        .arg("auxww")
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn daemon_log(m: &Mount) -> String {
    let s = m.status_json();
    let path = s["log_file"].as_str().expect("status names the log file");
    fs::read_to_string(path).expect("daemon log")
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_changed_password_stops_the_network_until_login_brings_the_mount_back() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir(&share).expect("mkdir");
    let seed = pseudo_random_bytes(10, 100_000);
    fs::write(share.join("seed.bin"), &seed).expect("seed");
    let cache = tmp.path().join("cache");
    let mut srv = EmbeddedServer::start(&share, Some((USER, PW_A)));
    let opts = || {
        MountOpts::default()
            .cache_dir(&cache)
            .arg("--upload-delay=100ms")
            .dir_cache_ttl("1h")
            .env("EDRIVE_LOG", "debug")
            .env("RUST_LOG", "debug")
    };
    let m = Mount::new(&srv.url(), opts().auth(USER, PW_A));
    assert_eq!(fs::read(m.join("seed.bin")).expect("hydrate"), seed);
    fs::write(m.join("before.txt"), b"written with password A").expect("write");
    let (status, out, err) = m.edrive(&["sync"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        fs::read(share.join("before.txt")).expect("uploaded"),
        b"written with password A"
    );
    assert_eq!(m.status_json()["auth"]["kind"], "basic");

    // The password changes on the server; local writes queue and the mount notices.
    srv.restart_with_auth(Some((USER, PW_B)));
    let queued: Vec<(&str, Vec<u8>)> = vec![
        ("after-1.bin", pseudo_random_bytes(11, 300_000)),
        ("dir/after-2.txt", b"in a new folder".to_vec()),
        ("before.txt", b"changed after the password change".to_vec()),
    ];
    fs::create_dir(m.join("dir")).expect("mkdir");
    for (name, data) in &queued {
        fs::write(m.join(name), data).expect("writes are queued");
    }
    wait_state(&m, "auth-required", Duration::from_secs(30));
    let status_json = m.status_json();
    assert_eq!(status_json["link"]["http_status"], 401, "{status_json}");
    let (_, text, _) = m.edrive(&["status"]);
    assert!(text.contains("edrive login"), "{text}");

    // A minute of auth-required: a handful of requests at most; local files readable.
    srv.reset_requests();
    let start = Instant::now();
    assert_eq!(fs::read(m.join("seed.bin")).expect("cached read"), seed);
    for (name, data) in &queued {
        assert_eq!(&fs::read(m.join(name)).expect("queued file reads"), data);
    }
    let names: Vec<String> = fs::read_dir(m.path())
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"after-1.bin".to_string()), "{names:?}");
    let ps_while_refused = ps_aux();
    std::thread::sleep(Duration::from_secs(60).saturating_sub(start.elapsed()));
    let requests = srv.requests();
    assert!(
        requests.len() <= 5,
        "{} requests in 60 s while auth-required: {requests:?}",
        requests.len()
    );
    assert_eq!(state(&m), "auth-required");

    // A wrong password: a clear error, nothing changes.
    let cred_file = cache.join("credentials");
    let (status, out, err) = m.edrive_with_password(&["login"], PW_WRONG);
    assert!(!status.success(), "a wrong password must fail: {out}{err}");
    assert!(err.contains("refused"), "{err}");
    assert_no_secret("login's output", &format!("{out}{err}"), &[PW_WRONG]);
    assert_eq!(state(&m), "auth-required");
    assert!(!cred_file.exists(), "a wrong password was stored");
    assert!(!share.join("after-1.bin").exists());

    // The right one: online again, the queue uploads, the credentials are stored.
    let (status, out, err) = m.edrive_with_password(&["login"], PW_B);
    assert!(status.success(), "login failed: {out}{err}");
    assert!(out.contains("online again"), "{out}");
    assert_no_secret("login's output", &format!("{out}{err}"), &[PW_B]);
    wait_state(&m, "synced", Duration::from_secs(60));
    for (name, data) in &queued {
        assert_eq!(
            &fs::read(share.join(name)).unwrap_or_else(|e| panic!("{name} on the server: {e}")),
            data,
            "{name} differs on the server"
        );
    }
    assert_eq!(mode_of(&cred_file), 0o600);
    let status_json = m.status_json();
    assert_eq!(status_json["auth"]["stored"], true, "{status_json}");

    // Never shown: ps, the debug log, status (of the mount and of an entry).
    let secrets = [PW_A, PW_B, PW_WRONG];
    assert_no_secret("ps (auth-required)", &ps_while_refused, &secrets);
    assert_no_secret("ps", &ps_aux(), &secrets);
    let log = daemon_log(&m);
    assert!(log.contains("DEBUG"), "the log is not at debug level");
    assert_no_secret("the daemon's log", &log, &secrets);
    assert_no_secret("edrive status --json", &status_json.to_string(), &secrets);
    let (_, text, _) = m.edrive(&["status"]);
    assert_no_secret("edrive status", &text, &secrets);
    let entry = m.join("after-1.bin").display().to_string();
    let (_, entry_json, _) = m.edrive_plain(&["status", &entry, "--json"]);
    assert!(entry_json.contains("\"state\""), "{entry_json}");
    assert_no_secret("edrive status PATH --json", &entry_json, &secrets);
    m.unmount();

    // A later mount without a password uses the stored credentials.
    let m = Mount::new(&srv.url(), {
        let mut o = opts();
        o.user = Some(USER.into());
        o
    });
    fs::write(m.join("remounted.txt"), b"with the stored password").expect("write");
    let (status, out, err) = m.edrive(&["sync"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        fs::read(share.join("remounted.txt")).expect("uploaded"),
        b"with the stored password"
    );
    assert_no_secret("the daemon's log", &daemon_log(&m), &secrets);
    m.unmount();
}

#[test]
fn bearer_tokens_mount_change_and_are_stored() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir(&share).expect("mkdir");
    fs::write(share.join("a.txt"), b"token-protected").expect("seed");
    let server_token = tmp.path().join("server-token");
    fs::write(&server_token, "tok-one-8Hq2\n").expect("token");
    let mut srv = EmbeddedServer::start_with(
        &share,
        None,
        &["--bearer-token-file", &server_token.display().to_string()],
    );
    let client_token = tmp.path().join("client-token");
    fs::write(&client_token, "tok-one-8Hq2\n").expect("token");
    let cache = tmp.path().join("cache");
    let opts = || {
        MountOpts::default()
            .cache_dir(&cache)
            .arg("--upload-delay=100ms")
            .dir_cache_ttl("1h")
    };
    let m = Mount::new(
        &srv.url(),
        opts()
            .arg("--bearer-token-file")
            .arg(&client_token.display().to_string()),
    );
    assert_eq!(fs::read(m.join("a.txt")).expect("read"), b"token-protected");
    assert_eq!(m.status_json()["auth"]["kind"], "bearer");

    fs::write(&server_token, "tok-two-3Lp9\n").expect("token");
    srv.restart();
    fs::write(m.join("b.txt"), b"queued").expect("write");
    wait_state(&m, "auth-required", Duration::from_secs(30));

    fs::write(&client_token, "tok-bad-0000\n").expect("token");
    let token_arg = client_token.display().to_string();
    let (status, out, err) = m.edrive(&["login", "--bearer-token-file", &token_arg]);
    assert!(!status.success(), "a wrong token must fail: {out}{err}");
    assert_eq!(state(&m), "auth-required");

    fs::write(&client_token, "tok-two-3Lp9\n").expect("token");
    let (status, out, err) = m.edrive(&["login", "--bearer-token-file", &token_arg]);
    assert!(status.success(), "login failed: {out}{err}");
    wait_state(&m, "synced", Duration::from_secs(60));
    assert_eq!(fs::read(share.join("b.txt")).expect("uploaded"), b"queued");
    let tokens = ["tok-one-8Hq2", "tok-two-3Lp9", "tok-bad-0000"];
    assert_no_secret("the daemon's log", &daemon_log(&m), &tokens);
    assert_no_secret(
        "edrive status --json",
        &m.status_json().to_string(),
        &tokens,
    );
    m.unmount();

    // The stored token serves a remount without one.
    let m = Mount::new(&srv.url(), opts());
    assert_eq!(fs::read(m.join("b.txt")).expect("read"), b"queued");
    assert_eq!(m.status_json()["auth"]["kind"], "bearer");
    m.unmount();
}

/// `edrive status PATH --json` of an entry inside `m`.
fn entry_status(m: &Mount, rel: &str) -> serde_json::Value {
    let path = m.join(rel).display().to_string();
    let (status, out, err) = m.edrive_plain(&["status", &path, "--json"]);
    assert!(status.success(), "edrive status {path} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {out}"))
}

#[test]
fn status_of_a_path_inside_a_mount() {
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("dir")).expect("mkdir");
    fs::write(share.join("cold.txt"), b"never opened").expect("seed");
    let hot = pseudo_random_bytes(20, 70_000);
    fs::write(share.join("hot.bin"), &hot).expect("seed");
    fs::write(share.join("dir/pinned.txt"), b"keep me local").expect("seed");
    let srv = EmbeddedServer::start(&share, None);
    let m = Mount::new(
        &srv.url(),
        MountOpts::default()
            // The conflict below waits for a decision (state `conflict`).
            .arg("--on-conflict=ask")
            .arg("--upload-delay=1h")
            .dir_cache_ttl("1h"),
    );

    let cold = entry_status(&m, "cold.txt");
    assert_eq!(cold["ok"], true, "{cold}");
    assert_eq!(cold["kind"], "file", "{cold}");
    assert_eq!(cold["state"], "online-only", "{cold}");
    assert_eq!(cold["pinned"], false, "{cold}");
    assert_eq!(cold["size"], 12, "{cold}");
    assert_eq!(cold["cached_bytes"], 0, "{cold}");
    assert!(cold["problem"].is_null(), "{cold}");

    assert_eq!(fs::read(m.join("hot.bin")).expect("read"), hot);
    let h = entry_status(&m, "hot.bin");
    assert_eq!(h["state"], "hydrated", "{h}");
    assert_eq!(h["cached_bytes"], 70_000, "{h}");

    let dir = m.join("dir").display().to_string();
    let (status, out, err) = m.edrive_plain(&["pin", &dir]);
    assert!(status.success(), "{out}{err}");
    let p = entry_status(&m, "dir/pinned.txt");
    assert_eq!(p["state"], "pinned", "{p}");
    assert_eq!(p["pinned"], true, "{p}");
    assert_eq!(p["cached_bytes"], 13, "{p}");
    let d = entry_status(&m, "dir");
    assert_eq!(d["kind"], "folder", "{d}");
    assert_eq!(d["pinned"], true, "{d}");
    assert_eq!(d["cached_bytes"], 13, "{d}");

    fs::write(m.join("new.txt"), b"not uploaded yet").expect("write");
    let n = entry_status(&m, "new.txt");
    assert_eq!(n["state"], "dirty", "{n}");
    assert_eq!(n["size"], 16, "{n}");
    assert_eq!(n["cached_bytes"], 16, "{n}");

    // A conflict: edited here while the server got another version.
    fs::write(m.join("hot.bin"), b"local edit").expect("write");
    fs::write(share.join("hot.bin"), b"the server's newer version").expect("server edit");
    let (status, _, _) = m.edrive(&["sync"]);
    assert!(!status.success(), "a conflict is reported by sync");
    let c = entry_status(&m, "hot.bin");
    assert_eq!(c["state"], "conflict", "{c}");
    assert!(c["problem"].as_str().is_some_and(|p| !p.is_empty()), "{c}");
    let path = m.join("hot.bin").display().to_string();
    let (status, text, err) = m.edrive_plain(&["status", &path]);
    assert!(status.success(), "{err}");
    assert!(text.contains("state:   conflict"), "{text}");
    assert!(text.contains("problem:"), "{text}");

    // The mountpoint still gives the mount's state; a missing path fails.
    let whole = m.status_json();
    assert!(whole["transfer"].is_object(), "{whole}");
    let missing = m.join("missing.txt").display().to_string();
    let (status, _, err) = m.edrive_plain(&["status", &missing]);
    assert!(!status.success());
    assert!(err.contains("missing.txt"), "{err}");
    let (status, out, err) = m.edrive(&["unmount", "--force"]);
    assert!(status.success(), "{out}{err}");
}
