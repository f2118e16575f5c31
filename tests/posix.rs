//! POSIX behaviour of a mount, checked by two outside tools run against the embedded server
//! through a real FUSE mount:
//!
//! - `fsx` (fsx-rs): a long pseudo-random sequence of reads, writes, mmap reads and writes,
//!   truncations, reopens and fsyncs on one file, every read checked against a model; then
//!   the server's copy must equal the file as read through the mount.
//! - `pjdfstest` 0.2.2: the POSIX file system suite. edrive has no symlinks, hard links,
//!   fifos, sockets or device nodes, so many cases fail by design (see docs/posix.md); the
//!   test only guards the pass count against regressions and against `rclone mount`'s.
//!
//! Both tools are `cargo install`ed by `scripts/test`; a missing tool fails the test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `rclone mount` passes 105 of the 398 cases of pjdfstest 0.2.2.
const RCLONE_PJDFSTEST_PASSED: usize = 105;

/// The number of cases in pjdfstest 0.2.2 on Linux (the comparison assumes this suite).
const PJDFSTEST_TOTAL: usize = 398;

/// fsx operations per run, and the seed that makes the run reproducible.
const FSX_OPS: u32 = 100_000;
const FSX_SEED: u64 = 20_261_122;

/// fsx-rs 0.3.2 never unmaps the mappings of its mmap reads, so every truncate walks all
/// of them and a run gets quadratically slower (on any file system); mapread is therefore
/// rarer than the other I/O. `posix_fallocate` and `punch_hole` stay off: edrive has no
/// fallocate (glibc's posix_fallocate emulates it by writing, fsx does not).
const FSX_CONFIG: &str = r#"
flen = 262144

[weights]
close_open = 1
read = 10
write = 10
mapread = 2
mapwrite = 10
truncate = 5
fsync = 1
fdatasync = 1
invalidate = 1
copy_file_range = 1
sendfile = 1
posix_fadvise = 1
"#;

/// An installed test tool: `$CARGO_HOME/bin`, `~/.cargo/bin`, then `$PATH`. Panics (the
/// test fails, it is not skipped) when it is missing.
fn tool(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .or_else(|| find_in_path(name))
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (looked in $CARGO_HOME/bin, ~/.cargo/bin and $PATH); \
                 scripts/test installs it (cargo install pjdfstest@0.2.2 --locked; \
                 cargo install fsx --locked)"
            )
        })
}

/// Runs `cmd` with stdout and stderr in files under `dir`; returns (status, stdout,
/// stderr). Kills it and panics with its output if it runs longer than `timeout`.
fn run_logged(
    mut cmd: Command,
    dir: &Path,
    tag: &str,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let out = std::fs::File::create(&out_path).expect("cannot create a stdout file");
    let err = std::fs::File::create(&err_path).expect("cannot create a stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{tag} did not finish within {timeout:?}\nstdout (end):\n{}\nstderr (end):\n{}",
                tail(&read_from(&out_path, 0), 100),
                tail(&read_from(&err_path, 0), 100)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, read_from(&out_path, 0), read_from(&err_path, 0))
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The end of the mount daemon's log (`edrive.log` in its cache dir), for failure messages.
fn daemon_log_tail(m: &Mount) -> String {
    fn find(dir: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let p = entry.path();
            if p.file_name().is_some_and(|n| n == "edrive.log") {
                return Some(p);
            }
            if p.is_dir() {
                if let Some(found) = find(&p) {
                    return Some(found);
                }
            }
        }
        None
    }
    match find(&m.xdg_cache_home()) {
        Some(p) => tail(&read_from(&p, 0), 40),
        None => "(no edrive.log found)".to_string(),
    }
}

/// `edrive sync`, asserting it succeeds. The kernel sends FUSE RELEASE asynchronously, so
/// right after a writer exits edrive may still count the file as open for writing and a
/// sync then ends at once with "still open for writing" (an edrive race, see
/// docs/posix.md): that answer is retried for up to 10 s; any other failure is fatal.
fn sync_after_writer_exit(m: &Mount, server: &EmbeddedServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, _out, err) = m.edrive(&["sync"]);
        if status.success() {
            if attempts > 1 {
                eprintln!(
                    "note: edrive sync needed {attempts} attempts (the first ones: \
                     \"still open for writing\" after the writer had exited)"
                );
            }
            return;
        }
        if !err.contains("still open for writing") || Instant::now() >= deadline {
            panic!(
                "edrive sync failed ({status}, attempt {attempts}):\n{err}\n\
                 edrive.log (end):\n{}\nserver log (end):\n{}",
                daemon_log_tail(m),
                tail(&server.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn fsx_runs_100k_operations_without_mismatch() {
    let fsx = tool("fsx");
    let data = tempdir();
    let work = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(
        &server.url(),
        MountOpts::default().arg("--upload-delay").arg("200ms"),
    );

    let conf = work.path().join("fsx.toml");
    std::fs::write(&conf, FSX_CONFIG).unwrap();
    let file = m.join("fsx.bin");
    let mut cmd = Command::new(&fsx);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-N")
        .arg(FSX_OPS.to_string())
        .arg("-S")
        .arg(FSX_SEED.to_string())
        .arg("-P")
        .arg(work.path())
        .arg(&file)
        .current_dir(work.path());
    let (status, out, err) = run_logged(cmd, work.path(), "fsx", Duration::from_secs(20 * 60));
    assert!(
        status.success(),
        "fsx -N {FSX_OPS} -S {FSX_SEED} failed ({status})\nstdout (end):\n{}\nstderr (end):\n{}\n\
         edrive.log (end):\n{}",
        tail(&out, 200),
        tail(&err, 200),
        daemon_log_tail(&m)
    );
    assert!(
        format!("{out}{err}").contains("A-OK"),
        "fsx exited 0 without its success line:\n{out}\n{err}"
    );

    sync_after_writer_exit(&m, &server);
    let local = sha256_file(&file);
    let remote = sha256_file(&data.path().join("fsx.bin"));
    assert_eq!(
        remote,
        local,
        "the server's copy differs from the file read through the mount \
         (server {} bytes, mount {} bytes)",
        file_len(&data.path().join("fsx.bin")),
        file_len(&file)
    );
    m.unmount();
}

/// The summary line `Summary: F failed, S skipped, P passed, E expected failures, T total`.
#[derive(Debug, Default)]
struct PjdSummary {
    failed: usize,
    skipped: usize,
    passed: usize,
    total: usize,
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_summary(out: &str) -> Option<PjdSummary> {
    let line = out.lines().find(|l| l.starts_with("Summary:"))?;
    let mut s = PjdSummary::default();
    for part in line.trim_start_matches("Summary:").split(',') {
        let mut words = part.split_whitespace();
        let n: usize = words.next()?.parse().ok()?;
        match words.next()? {
            "failed" => s.failed = n,
            "skipped" => s.skipped = n,
            "passed" => s.passed = n,
            "total" => s.total = n,
            _ => {}
        }
    }
    Some(s)
}

/// Per test group (`chmod`, `rename`, ...): (passed, failed, skipped), and the failed names.
fn tally(out: &str) -> (BTreeMap<String, [usize; 3]>, Vec<String>) {
    let mut groups: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut failed = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(result), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let i = match result {
            "ok" => 0,
            "FAILED" => 1,
            "skipped" => 2,
            _ => continue,
        };
        let group = name.split("::").next().unwrap_or(name).to_string();
        groups.entry(group).or_default()[i] += 1;
        if i == 1 {
            failed.push(name.to_string());
        }
    }
    (groups, failed)
}

/// Two existing unprivileged users, each with its primary group's name, for pjdfstest's
/// `[dummy_auth]` (it switches to them for permission tests). Its default, `nobody` and
/// `tests`, is not present everywhere.
fn dummy_users() -> Vec<(String, String)> {
    let found: Vec<(String, String)> = ["nobody", "daemon", "bin", "sys"]
        .iter()
        .filter_map(|u| {
            let out = Command::new("id").arg("-gn").arg(u).output().ok()?;
            let group = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !group.is_empty()).then(|| (u.to_string(), group))
        })
        .take(2)
        .collect();
    assert!(
        found.len() == 2,
        "pjdfstest needs two unprivileged users; found only {found:?} among nobody, daemon, bin, sys"
    );
    found
}

/// Measured on 2026-11-22 (2-core Linux VM, debug build, mounted with `--allow-other`):
/// 155 passed, 220 failed, 23 skipped of 398. 216 of the failures need symlinks, hard
/// links, fifos, sockets or device nodes, which a WebDAV drive does not have;
/// docs/posix.md lists the rest.
/// The whole suite takes a few seconds, so it runs unfiltered.
#[test]
fn pjdfstest_passes_more_than_rclone() {
    let pjdfstest = tool("pjdfstest");
    let version = Command::new(&pjdfstest)
        .arg("--version")
        .output()
        .expect("cannot run pjdfstest --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert_eq!(
        version, "pjdfstest 0.2.2",
        "the comparison with rclone holds for pjdfstest 0.2.2; scripts/test installs it \
         (cargo install pjdfstest@0.2.2 --locked)"
    );

    let data = tempdir();
    let work = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    // pjdfstest switches to its dummy users for permission cases: they need --allow-other.
    let m = Mount::new(
        &server.url(),
        MountOpts::default()
            .arg("--upload-delay")
            .arg("200ms")
            .arg("--allow-other"),
    );

    // The features of pjdfstest's own Linux/ext4 CI configuration.
    let users = dummy_users();
    let conf = work.path().join("pjdfstest.toml");
    std::fs::write(
        &conf,
        format!(
            "[features]\nposix_fallocate = {{}}\nutime_now = {{}}\nutimensat = {{}}\n\n\
             [settings]\nnaptime = 0.01\n\n\
             [dummy_auth]\nentries = [\n  [\"{}\", \"{}\"],\n  [\"{}\", \"{}\"],\n]\n",
            users[0].0, users[0].1, users[1].0, users[1].1
        ),
    )
    .unwrap();
    let dir = m.join("pjdfstest");
    std::fs::create_dir(&dir).unwrap();

    let mut cmd = Command::new(&pjdfstest);
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .current_dir(work.path())
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    // pjdfstest exits 1 when any case fails, which is expected here.
    let (_status, out, err) = run_logged(cmd, work.path(), "pjdfstest", Duration::from_secs(600));
    let out = strip_ansi(&out);
    let summary = parse_summary(&out).unwrap_or_else(|| {
        panic!(
            "no summary line in pjdfstest's output\nstdout (end):\n{}\nstderr (end):\n{}",
            tail(&out, 60),
            tail(&err, 60)
        )
    });

    let (groups, failed) = tally(&out);
    eprintln!("pjdfstest: {summary:?}");
    for (group, [ok, fail, skip]) in &groups {
        eprintln!("  {group:16} {ok:3} passed {fail:3} failed {skip:3} skipped");
    }
    eprintln!("failed: {}", failed.join(" "));

    assert!(
        is_mounted(m.path()),
        "the mount went away during pjdfstest; edrive.log (end):\n{}",
        daemon_log_tail(&m)
    );
    assert_eq!(
        summary.total, PJDFSTEST_TOTAL,
        "pjdfstest ran {} cases, the comparison assumes the {PJDFSTEST_TOTAL} of 0.2.2",
        summary.total
    );
    assert!(
        summary.passed > RCLONE_PJDFSTEST_PASSED,
        "pjdfstest passed {} of {} cases (failed {}, skipped {}); rclone mount passes \
         {RCLONE_PJDFSTEST_PASSED}\nfailed cases: {}",
        summary.passed,
        summary.total,
        summary.failed,
        summary.skipped,
        failed.join(" ")
    );
    m.unmount();
}
