//! Issue 18: the same end-to-end scenario against six real WebDAV servers, each started by
//! the harness on 127.0.0.1 with a data folder of its own: the embedded `edrive serve`,
//! Apache httpd with mod_dav, nginx with dav-ext, lighttpd with mod_webdav, WsgiDAV 4 on
//! cheroot and `rclone serve webdav`. Every result is checked on the server's own disk.
//!
//! The steps, on a fresh mount each time:
//! 0. `guarantees`: the probe ran, and trusts exactly the servers that enforce If-Match
//!    and If-None-Match and send ETags (not nginx, not rclone);
//! 1. `listing`: walking the whole tree (names with spaces, `#`, `%`, `&`, `+`, é, 日本語, a
//!    0-byte file, a large file) shows what the server has, and makes no GET request;
//! 2. `reads`: every file reads back exactly (SHA-256 equal to the server's file);
//! 3. `writes`: create, append, overwrite, rename within a folder, move across folders,
//!    create a folder with files, rename a folder, delete a folder tree; after
//!    `edrive sync` the server's disk has each result;
//! 4. `remote-changes`: a file written and one deleted directly in the server's folder
//!    show in the mount within two poll intervals;
//! 5. `conflict`: a file edited in the (suspended) mount and changed on the server's disk
//!    ends up as both versions on the server after `edrive resume` and `edrive sync`: the
//!    server's under the name, the local one as `NAME (conflict …)`;
//! 6. `unmount`: nothing is pending, `edrive unmount` returns with the mount gone, and the
//!    same cache mounts again at once (the daemon has exited).
//!
//! A failed step does not stop the scenario (later steps use their own files); the test
//! fails at the end naming every failed step, with the server's write requests and the
//! mount's warnings made during it. The large file is 20 MiB; `EDRIVE_MATRIX_BIG_MIB`
//! changes that (e.g. 200).
//!
//! The six tests take turns (one lock), so that the timing checks mean something.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// The mount's `--poll-interval`.
const POLL: Duration = Duration::from_secs(2);
/// Slack on top of two poll intervals, for a loaded machine.
const GRACE: Duration = Duration::from_secs(3);
/// How long results may take to show on the server after `edrive sync` returned.
const SETTLE: Duration = Duration::from_secs(20);

/// One matrix test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn matrix_embedded() {
    scenario(Server::Embedded);
}

#[test]
fn matrix_apache() {
    scenario(Server::Apache);
}

#[test]
fn matrix_nginx() {
    scenario(Server::Nginx);
}

#[test]
fn matrix_lighttpd() {
    scenario(Server::Lighttpd);
}

#[test]
fn matrix_wsgidav() {
    scenario(Server::Wsgidav);
}

#[test]
fn matrix_rclone() {
    scenario(Server::Rclone);
}

/// The size of the large file, in bytes.
fn big_size() -> usize {
    let mib = std::env::var("EDRIVE_MATRIX_BIG_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20);
    mib << 20
}

/// The large file's path in the tree.
const BIG: &str = "big/large file.bin";
/// The file both sides change in step `conflict`.
const SHARED: &str = "conflict/shared doc #1.txt";

/// The tree on the server's disk before the mount: relative path → content.
fn initial_tree() -> BTreeMap<&'static str, Vec<u8>> {
    let text = |s: &str| s.as_bytes().to_vec();
    BTreeMap::from([
        ("read me.txt", text("a name with a space\n")),
        ("empty.bin", Vec::new()),
        (BIG, pseudo_random_bytes(18, big_size())),
        ("names/#hash.txt", text("hash\n")),
        ("names/100% sure.txt", text("percent\n")),
        ("names/Tom & Jerry.txt", text("ampersand\n")),
        ("names/a+b=c.txt", text("plus\n")),
        ("names/café.txt", text("e acute\n")),
        ("names/日本語 ファイル.txt", text("japanese\n")),
        ("日本語/説明.txt", text("a japanese folder\n")),
        ("dir #1 & 100%/inner+é.txt", pseudo_random_bytes(1, 70_000)),
        ("edit/append me+.txt", text("line 1\n")),
        ("edit/overwrite 100%.txt", pseudo_random_bytes(2, 50_000)),
        ("edit/rename me é.txt", text("renamed within its folder\n")),
        ("edit/move me #1.txt", text("moved to another folder\n")),
        (
            "old folder & co/a.txt",
            text("in a folder that is renamed\n"),
        ),
        ("old folder & co/sub 日本/b.txt", text("deeper in it\n")),
        ("doomed tree #/x.txt", text("x\n")),
        ("doomed tree #/sub/y.txt", text("y\n")),
        ("doomed tree #/sub/deeper/z.txt", text("z\n")),
        ("remote/delete me.txt", text("deleted on the server\n")),
        ("remote/kept.txt", text("stays\n")),
        (SHARED, text("base version\n")),
    ])
}

/// Every path below `root` → (is_dir, size), leaving out Apache's `.DAV` folders.
fn listing(root: &Path) -> BTreeMap<String, (bool, u64)> {
    walk(root)
        .into_iter()
        .filter(|(rel, _)| !rel.split('/').any(|p| p.starts_with(".DAV")))
        .map(|(rel, (is_dir, size, _))| (rel, (is_dir, size)))
        .collect()
}

/// What the scenario knows while it runs, and the failures so far.
struct Run {
    kind: Server,
    srv: Box<dyn TestServer>,
    share: PathBuf,
    mount: Option<Mount>,
    /// The mount's `edrive.log`.
    log: PathBuf,
    failures: Vec<String>,
    steps: usize,
}

impl Run {
    fn mount(&self) -> &Mount {
        self.mount.as_ref().expect("the mount is gone")
    }

    /// Runs one step: a panic or an `Err` is recorded as its failure, with the server's
    /// write requests and the mount's warnings made meanwhile.
    fn step(&mut self, name: &str, f: impl FnOnce(&mut Run) -> Result<(), String>) {
        self.steps += 1;
        let kind = self.kind;
        let log_start = file_len(&self.log);
        let requests_before = self.srv.requests().len();
        let t = Instant::now();
        eprintln!("[{kind:?}] step `{name}` ...");
        match caught(|| f(self)) {
            Ok(()) => eprintln!("[{kind:?}] step `{name}`: ok ({:.1?})", t.elapsed()),
            Err(msg) => {
                let msg = squeeze(&msg);
                eprintln!(
                    "[{kind:?}] step `{name}`: FAILED ({:.1?}): {msg}",
                    t.elapsed()
                );
                let writes: Vec<(String, String, u16)> = self
                    .srv
                    .requests()
                    .into_iter()
                    .skip(requests_before)
                    .filter(|(m, _, _)| !matches!(m.as_str(), "GET" | "PROPFIND" | "HEAD"))
                    .collect();
                let no_status = if writes.iter().any(|w| w.2 == 0) {
                    " (status 0: the server logs none)"
                } else {
                    ""
                };
                let shown: Vec<String> = writes
                    .iter()
                    .map(|(m, p, s)| format!("    {s} {m} {p}"))
                    .collect();
                self.failures.push(format!(
                    "step `{name}` FAILED: {msg}\n  server write requests during the \
                     step{no_status}:\n{}\n  mount log, {}",
                    last_lines(&squeeze(&shown.join("\n")), 40),
                    log_excerpt(&self.log, log_start)
                ));
            }
        }
    }

    /// `edrive sync`; `Err` with its output if it fails or does not return in time.
    fn sync(&self) -> Result<(), String> {
        caught(|| {
            let (status, out, err) = self.mount().edrive(&["sync"]);
            if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "edrive sync failed ({status}): {}{}",
                    out.trim(),
                    err.trim()
                ))
            }
        })
        .map_err(|msg| squeeze(&msg))
    }
}

/// Runs `f`, turning a panic into `Err` with its message.
fn caught(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".to_string())),
    }
}

/// `text` with each run of identical lines (`edrive sync` progress, retried requests)
/// written once, with a count.
fn squeeze(text: &str) -> String {
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for line in text.lines() {
        match runs.last_mut() {
            Some((l, n)) if *l == line => *n += 1,
            _ => runs.push((line, 1)),
        }
    }
    runs.iter()
        .map(|(l, n)| match n {
            1 => l.to_string(),
            _ => format!("{l}  (×{n})"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The WARN and ERROR lines of the log from byte `from` on (the last 40), or its last 15
/// lines if there are none, after a line saying which.
fn log_excerpt(log: &Path, from: u64) -> String {
    let text = read_from(log, from);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let (what, shown) = if bad.is_empty() {
        (
            "no warnings during the step; its last lines",
            last_lines(&text, 15),
        )
    } else {
        (
            "warnings and errors during the step",
            last_lines(&bad.join("\n"), 40),
        )
    };
    let indented: Vec<String> = shown.lines().map(|l| format!("    {l}")).collect();
    format!("{what}:\n{}", indented.join("\n"))
}

/// Checks that `rel` on the server holds `want`; describes the difference otherwise.
fn check_file(share: &Path, rel: &str, want: &[u8], problems: &mut Vec<String>) {
    match fs::read(share.join(rel)) {
        Ok(got) if got == want => {}
        Ok(got) => problems.push(format!(
            "{rel:?}: {} on the server, want {}",
            describe(&got),
            describe(want)
        )),
        Err(e) => problems.push(format!("{rel:?}: not on the server ({e})")),
    }
}

/// Content in a few words: its size and, for short text, the text.
fn describe(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) if data.len() <= 60 => format!("{} bytes {text:?}", data.len()),
        _ => format!("{} bytes, sha256 {:.12}…", data.len(), sha256_bytes(data)),
    }
}

/// Checks that `rel` is not on the server.
fn check_gone(share: &Path, rel: &str, problems: &mut Vec<String>) {
    if share.join(rel).exists() {
        problems.push(format!("{rel:?}: still on the server"));
    }
}

/// `Err` listing the problems (one per line, the first 20), if any.
fn verdict(problems: Vec<String>) -> Result<(), String> {
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems[0].clone()),
        n => {
            let more = n.saturating_sub(20);
            let tail = if more > 0 {
                format!("\n  - … and {more} more")
            } else {
                String::new()
            };
            Err(format!(
                "{n} problems:\n  - {}{tail}",
                problems[..n - more].join("\n  - ")
            ))
        }
    }
}

fn scenario(kind: Server) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_fuse();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    let tree = initial_tree();
    for (rel, data) in &tree {
        let path = share.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, data).expect("seed the share");
    }
    let srv = start_server(kind, &share);
    let cache = tmp.path().join("cache");
    let mount = Mount::new(
        &srv.url(),
        MountOpts::default()
            .cache_dir(&cache)
            // Listings are trusted for an hour: only the poller can bring remote changes.
            .dir_cache_ttl("1h")
            .arg(&format!("--poll-interval={}s", POLL.as_secs()))
            .arg("--upload-delay=200ms"),
    );
    let log = mount.status_json()["log_file"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("edrive.log"));
    let mut run = Run {
        kind,
        srv,
        share,
        mount: Some(mount),
        log,
        failures: Vec::new(),
        steps: 0,
    };

    // What the probe learnt: only servers that enforce both preconditions and send ETags
    // are trusted to refuse a write over another version (README "Servers").
    run.step("guarantees", |r| {
        let m = r.mount();
        let server = || m.status_json()["server"].clone();
        if !wait_until(SETTLE, || server()["probed"] == true) {
            return Err(format!("the server was not probed: {}", server()));
        }
        let trusted = !matches!(r.kind, Server::Nginx | Server::Rclone);
        if server()["conditional_writes"] != trusted {
            return Err(format!(
                "expected conditional_writes={trusted}: {}",
                server()
            ));
        }
        // What closes the client's own check (README "Servers"): all six refuse a MOVE
        // onto an existing name and keep a file's ETag across a MOVE.
        if server()["move_no_overwrite"] != true || server()["etag_survives_move"] != true {
            return Err(format!(
                "expected MOVE Overwrite: F refused and ETags kept by MOVE: {}",
                server()
            ));
        }
        Ok(())
    });

    run.srv.reset_requests();
    run.step("listing", |r| {
        let seen = listing(r.mount().path());
        let gets = r.srv.count_requests("GET");
        let want = listing(&r.share);
        let mut problems = Vec::new();
        for (rel, v) in &want {
            match seen.get(rel) {
                None => problems.push(format!("{rel:?} missing in the mount")),
                Some(s) if s != v => {
                    problems.push(format!("{rel:?}: mount shows {s:?}, server has {v:?}"))
                }
                Some(_) => {}
            }
        }
        for rel in seen.keys().filter(|k| !want.contains_key(*k)) {
            problems.push(format!("{rel:?} in the mount but not on the server"));
        }
        if gets != 0 {
            problems.push(format!("walking the tree made {gets} GET requests, want 0"));
        }
        verdict(problems)
    });

    run.step("reads", |r| {
        let mut problems = Vec::new();
        for (rel, data) in &tree {
            match fs::read(r.mount().join(rel)) {
                Ok(got) if sha256_bytes(&got) == sha256_bytes(data) => {}
                Ok(got) => problems.push(format!(
                    "{rel:?}: read {} bytes, sha256 {} ≠ server's {}",
                    got.len(),
                    sha256_bytes(&got),
                    sha256_file(&r.share.join(rel))
                )),
                Err(e) => problems.push(format!("{rel:?}: cannot read: {e}")),
            }
        }
        verdict(problems)
    });

    run.step("writes", |r| {
        let m = r.mount();
        let op = |what: &str, res: std::io::Result<()>| {
            res.unwrap_or_else(|e| panic!("{what} in the mount failed: {e}"))
        };
        op(
            "create",
            fs::write(m.join("new #1 & café.txt"), b"created in the mount\n"),
        );
        op(
            "append",
            OpenOptions::new()
                .append(true)
                .open(m.join("edit/append me+.txt"))
                .and_then(|mut f| f.write_all(b"line 2, appended\n")),
        );
        op(
            "overwrite",
            fs::write(m.join("edit/overwrite 100%.txt"), b"overwritten, shorter\n"),
        );
        op(
            "rename within a folder",
            fs::rename(
                m.join("edit/rename me é.txt"),
                m.join("edit/renamed + 日本.txt"),
            ),
        );
        op(
            "move across folders",
            fs::rename(
                m.join("edit/move me #1.txt"),
                m.join("日本語/moved & here.txt"),
            ),
        );
        op(
            "create a folder with files",
            fs::create_dir_all(m.join("new folder %20 #/sub é"))
                .and_then(|()| fs::write(m.join("new folder %20 #/one.txt"), b"one\n"))
                .and_then(|()| fs::write(m.join("new folder %20 #/sub é/two.txt"), b"two\n")),
        );
        op(
            "rename a folder",
            fs::rename(m.join("old folder & co"), m.join("renamed folder+日本")),
        );
        op(
            "delete a folder tree",
            fs::remove_dir_all(m.join("doomed tree #")),
        );
        let synced = r.sync();
        let share = r.share.clone();
        let expect = move || {
            let mut problems = Vec::new();
            let p = &mut problems;
            check_file(&share, "new #1 & café.txt", b"created in the mount\n", p);
            check_file(
                &share,
                "edit/append me+.txt",
                b"line 1\nline 2, appended\n",
                p,
            );
            check_file(
                &share,
                "edit/overwrite 100%.txt",
                b"overwritten, shorter\n",
                p,
            );
            check_gone(&share, "edit/rename me é.txt", p);
            check_file(
                &share,
                "edit/renamed + 日本.txt",
                b"renamed within its folder\n",
                p,
            );
            check_gone(&share, "edit/move me #1.txt", p);
            check_file(
                &share,
                "日本語/moved & here.txt",
                b"moved to another folder\n",
                p,
            );
            check_file(&share, "new folder %20 #/one.txt", b"one\n", p);
            check_file(&share, "new folder %20 #/sub é/two.txt", b"two\n", p);
            check_gone(&share, "old folder & co", p);
            check_file(
                &share,
                "renamed folder+日本/a.txt",
                b"in a folder that is renamed\n",
                p,
            );
            check_file(
                &share,
                "renamed folder+日本/sub 日本/b.txt",
                b"deeper in it\n",
                p,
            );
            check_gone(&share, "doomed tree #", p);
            problems
        };
        let wait = if synced.is_ok() {
            SETTLE
        } else {
            Duration::ZERO
        };
        wait_until(wait, || expect().is_empty());
        let mut problems = expect();
        if let Err(e) = synced {
            problems.insert(0, e);
        }
        verdict(problems)
    });

    run.step("remote-changes", |r| {
        let fresh = "remote/from server é.txt";
        fs::write(r.share.join(fresh), b"written on the server\n").expect("server write");
        fs::remove_file(r.share.join("remote/delete me.txt")).expect("server delete");
        r.srv.chown_data();
        let t = Instant::now();
        let m = r.mount();
        let shows = || {
            fs::read(m.join(fresh)).ok().as_deref() == Some(&b"written on the server\n"[..])
                && !m.join("remote/delete me.txt").exists()
        };
        if wait_until(2 * POLL + GRACE, shows) {
            eprintln!(
                "[{:?}] remote changes visible after {:?}",
                r.kind,
                t.elapsed()
            );
            Ok(())
        } else {
            let names: Vec<String> = fs::read_dir(m.join("remote"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            Err(format!(
                "after {:?} (poll interval {POLL:?}) the mount's remote/ holds {names:?}; \
                 want {fresh:?} in it and \"delete me.txt\" gone",
                t.elapsed()
            ))
        }
    });

    run.step("conflict", |r| {
        let m = r.mount();
        m.edrive_ok(&["suspend"]);
        fs::write(m.join(SHARED), b"local version, edited in the mount\n").expect("local edit");
        // A later mtime second and another size: the server's version is a new one.
        std::thread::sleep(Duration::from_millis(1100));
        fs::write(r.share.join(SHARED), b"server version\n").expect("server edit");
        r.srv.chown_data();
        m.edrive_ok(&["resume"]);
        let synced = r.sync();
        let dir = r.share.join("conflict");
        let both = || {
            let server_kept =
                fs::read(r.share.join(SHARED)).ok().as_deref() == Some(&b"server version\n"[..]);
            let copy = fs::read_dir(&dir).into_iter().flatten().flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("shared doc #1 (conflict ")
                    && name.ends_with(").txt")
                    && fs::read(e.path()).ok().as_deref()
                        == Some(&b"local version, edited in the mount\n"[..])
            });
            server_kept && copy
        };
        if wait_until(SETTLE, both) {
            return Ok(());
        }
        let files: Vec<String> = file_contents(&dir)
            .into_iter()
            .map(|(k, v)| format!("{k:?}: {:?}", String::from_utf8_lossy(&v)))
            .collect();
        Err(format!(
            "want the server's version under the name and the local one as a conflict \
             copy; the server's conflict/ holds {{{}}}{}",
            files.join(", "),
            synced.err().map(|e| format!("; {e}")).unwrap_or_default()
        ))
    });

    run.step("unmount", |r| {
        let m = r.mount();
        let pending = || m.status_json()["transfer"]["pending"].as_u64().unwrap_or(0);
        if !wait_until(SETTLE, || pending() == 0) {
            return Err(format!(
                "{} changes still pending {SETTLE:?} after the last step",
                pending()
            ));
        }
        let mp = m.path().to_path_buf();
        r.mount.take().expect("mounted").unmount();
        if is_mounted(&mp) {
            return Err(format!("{} still mounted", mp.display()));
        }
        // unmount returns once the daemon is gone: the same cache mounts again at once.
        let again = Mount::try_new(&r.srv.url(), MountOpts::default().cache_dir(&cache))
            .map_err(|(_, err)| format!("mounting again right after unmount: {err}"))?;
        again.unmount();
        Ok(())
    });

    // Whatever happened, nothing stays mounted (Mount's Drop unmounts by force).
    drop(run.mount.take());
    if !run.failures.is_empty() {
        panic!(
            "{kind:?}: {} of {} steps failed:\n\n{}",
            run.failures.len(),
            run.steps,
            run.failures.join("\n\n")
        );
    }
}
