//! The client commands that talk to a running mount: `unmount`, `status`, `sync`,
//! `suspend`, `resume`, `pin`, `unpin`, `free` and `login`; `status` in `commands/status.rs`,
//! `conflicts` and `resolve` in `commands/conflicts.rs`.

mod conflicts;
mod status;

pub use conflicts::{conflicts, resolve};
pub use status::status;

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::{
    ConflictsArgs, LoginArgs, PathsArgs, PinArgs, ResolveArgs, ResumeArgs, StatusArgs, SuspendArgs,
    SyncArgs, UnmountArgs,
};
use crate::control::{self, Request};
use crate::paths;

/// `edrive unmount`: asks the daemon to unmount and waits until it has; falls back to
/// `fusermount3 -u` for a mount whose daemon is gone.
pub fn unmount(args: UnmountArgs) -> anyhow::Result<()> {
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    if args.force {
        if let Ok(s) = control::request(&mp, &Request::Status) {
            let pending = s["sync"]["pending"].as_u64().unwrap_or(0);
            if pending > 0 {
                eprintln!(
                    "edrive: warning: {pending} local change(s) are not on the server yet; \
                     they stay in the cache and are uploaded by the next mount"
                );
            }
        }
    } else if control::request(&mp, &Request::Status).is_ok() {
        let left = wait_for_sync(&mp, args.timeout)?;
        if left.pending > 0 {
            eprintln!(
                "edrive: warning: {} local change(s) could not be uploaded ({}); they stay in \
                 the cache for the next mount",
                left.pending,
                left.why()
            );
            left.print_problems();
        }
    }
    // The daemon's pid, to return only once it has exited (its cache is free again).
    let pid = control::request(&mp, &Request::Status)
        .ok()
        .and_then(|s| s["pid"].as_u64())
        .and_then(|p| i32::try_from(p).ok());
    match control::request(&mp, &Request::Unmount) {
        Ok(reply) if reply["ok"] == true => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while (paths::socket_path(&mp).exists() || pid.is_some_and(process_alive))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if pid.is_some_and(process_alive) {
                bail!("unmounted, but the daemon has not exited after 60 s");
            }
            Ok(())
        }
        Ok(reply) => bail!("{}", reply["error"].as_str().unwrap_or("unmount failed")),
        Err(e) => {
            if !paths::is_mounted(&mp) {
                bail!("{e}");
            }
            let out = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(&mp)
                .output()?;
            if !out.status.success() {
                bail!(
                    "the daemon does not answer and fusermount3 failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        }
    }
}

/// Whether process `pid` still runs (a zombie counts as gone: it holds no files).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// What a sync left behind.
struct Leftover {
    pending: u64,
    stuck: u64,
    last_error: Option<String>,
    /// The changes that wait, each with why (as `edrive status` lists them).
    problems: Vec<(String, String)>,
    /// The wait ended at the timeout, not because nothing more could move.
    timed_out: bool,
    /// What waits for the user, said in words (empty if nothing does).
    attention: String,
}

impl Leftover {
    /// Prints each change that could not be uploaded, with why, one per line.
    fn print_problems(&self) {
        for (path, why) in &self.problems {
            eprintln!("edrive:   {path}: {why}");
        }
    }

    fn why(&self) -> String {
        let mut parts = Vec::new();
        if !self.attention.is_empty() {
            parts.push(format!("waiting for you: {}", self.attention));
        }
        if self.stuck > 0 {
            parts.push(format!(
                "{} need attention, see `edrive status`",
                self.stuck
            ));
        }
        if self.pending > self.stuck {
            parts.push(format!(
                "{} still open for writing",
                self.pending - self.stuck
            ));
        }
        if self.timed_out {
            parts.push("gave up waiting (--timeout); the uploads go on in the background".into());
        }
        if let Some(e) = &self.last_error {
            parts.push(format!("last error: {e}"));
        }
        parts.join("; ")
    }
}

/// Asks the daemon to upload everything now and waits until it has done what it can,
/// showing progress (a bar on a terminal, a line every few seconds otherwise).
fn wait_for_sync(mp: &std::path::Path, timeout: Duration) -> anyhow::Result<Leftover> {
    let started = Instant::now();
    let reply = control::request(mp, &Request::Sync)?;
    if reply["ok"] != true {
        bail!("{}", reply["error"].as_str().unwrap_or("sync failed"));
    }
    let bar = byte_bar();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    loop {
        let s = control::request(mp, &Request::Status)?;
        let sync = &s["sync"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let pending = n(&sync["pending"]);
        let stuck = n(&sync["stuck"]);
        let up = &sync["uploading"];
        let msg = if up.is_null() {
            format!("{pending} change(s) pending")
        } else {
            format!(
                "{pending} change(s) pending; uploading {}",
                up["path"].as_str().unwrap_or("?")
            )
        };
        if let Some(bar) = &bar {
            bar.set_message(msg.clone());
            bar.set_length(n(&up["total_bytes"]));
            bar.set_position(n(&up["sent_bytes"]));
        } else if last_line.elapsed() >= Duration::from_secs(2) {
            last_line = Instant::now();
            if up.is_null() {
                eprintln!("edrive: {msg}");
            } else {
                eprintln!(
                    "edrive: {msg} ({} of {})",
                    human_bytes(n(&up["sent_bytes"])),
                    human_bytes(n(&up["total_bytes"]))
                );
            }
        }
        let timed_out = started.elapsed() >= timeout;
        if (sync["syncing"] != true && up.is_null()) || timed_out {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let problems = sync["problems"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            let text = |k: &str| p[k].as_str().unwrap_or("?").to_string();
                            (text("path"), text("problem"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Leftover {
                pending,
                stuck,
                last_error: sync["last_error"].as_str().map(str::to_string),
                problems,
                timed_out,
                attention: crate::attention::describe(sync),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `edrive sync`: returns once every pending change that can be uploaded is on the
/// server; fails if some could not be.
pub fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    let left = wait_for_sync(&mp, args.timeout)?;
    if left.pending > 0 {
        left.print_problems();
        bail!(
            "{} local change(s) are not on the server: {}",
            left.pending,
            left.why()
        );
    }
    println!("edrive: everything is on the server");
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar in bytes with a message, on a terminal only (`None` otherwise: the
/// caller prints plain lines).
fn byte_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// `edrive suspend`.
pub fn suspend(args: SuspendArgs) -> anyhow::Result<()> {
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    let r = control::request(
        &mp,
        &Request::Suspend {
            offline: args.offline,
        },
    )?;
    if r["ok"] != true {
        bail!("{}", r["error"].as_str().unwrap_or("suspend failed"));
    }
    if args.offline {
        println!(
            "suspended (offline): nothing goes to or comes from the server; files that are not cached cannot be opened"
        );
    } else {
        println!("suspended: the transfer in flight finishes, then no more uploads; files that are not cached still open");
    }
    Ok(())
}

/// `edrive resume`.
pub fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    let r = control::request(&mp, &Request::Resume)?;
    if r["ok"] != true {
        bail!("{}", r["error"].as_str().unwrap_or("resume failed"));
    }
    println!("resumed");
    Ok(())
}

/// The mount a path lies in, and the path's components below its mountpoint.
pub(crate) fn locate(path: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, Vec<String>)> {
    let abs =
        std::fs::canonicalize(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for mp in abs.ancestors() {
        if paths::socket_path(mp).exists() && paths::is_mounted(mp) {
            let rel = abs.strip_prefix(mp).unwrap_or(std::path::Path::new(""));
            let parts = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            return Ok((mp.to_path_buf(), parts));
        }
    }
    bail!("{} is not inside an edrive mount", path.display())
}

/// Sends one request about `path`; the reply if it succeeded.
fn path_request(
    path: &std::path::Path,
    make: impl FnOnce(Vec<String>) -> Request,
) -> anyhow::Result<(std::path::PathBuf, serde_json::Value)> {
    let (mp, parts) = locate(path)?;
    let r = control::request(&mp, &make(parts))?;
    if r["ok"] != true {
        bail!(
            "{}: {}",
            path.display(),
            r["error"].as_str().unwrap_or("failed")
        );
    }
    Ok((mp, r))
}

/// `edrive pin`.
pub fn pin(args: PinArgs) -> anyhow::Result<()> {
    let mut mounts = Vec::new();
    for p in &args.paths {
        let (mp, _) = path_request(p, |path| Request::Pin { path })?;
        if !mounts.contains(&mp) {
            mounts.push(mp);
        }
    }
    if args.no_wait {
        println!("pinned; the content is fetched in the background (see edrive status)");
        return Ok(());
    }
    let mut failed = 0;
    for mp in mounts {
        let bar = byte_bar();
        let mut last_line = Instant::now();
        loop {
            let s = control::request(&mp, &Request::Status)?;
            let p = &s["pins"];
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            let msg = format!("{} of {} file(s) local", n(&p["done"]), n(&p["files"]));
            if let Some(bar) = &bar {
                bar.set_message(msg.clone());
                bar.set_length(n(&p["bytes"]));
                bar.set_position(n(&p["done_bytes"]));
            } else if last_line.elapsed() >= Duration::from_secs(2) {
                last_line = Instant::now();
                eprintln!("edrive: {msg}");
            }
            if p["running"] != true {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                failed += n(&p["failed"]);
                println!("pinned: {msg} ({})", human_bytes(n(&p["done_bytes"])));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if failed > 0 {
        bail!(
            "{failed} file(s) could not be fetched (see the log); retried on the next pin or mount"
        );
    }
    Ok(())
}

/// `edrive unpin`.
pub fn unpin(args: PathsArgs) -> anyhow::Result<()> {
    for p in &args.paths {
        path_request(p, |path| Request::Unpin { path })?;
    }
    println!("unpinned; the content stays cached until space is needed");
    Ok(())
}

/// `edrive free`.
pub fn free(args: PathsArgs) -> anyhow::Result<()> {
    for p in &args.paths {
        let (_, r) = path_request(p, |path| Request::Free { path })?;
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        println!("{}: freed {}", p.display(), human_bytes(n("freed_bytes")));
        if n("dirty_bytes") > 0 {
            println!(
                "  kept {} of changes not uploaded yet (never freed; they upload first)",
                human_bytes(n("dirty_bytes"))
            );
        }
        if n("pinned_bytes") > 0 {
            println!(
                "  kept {} pinned (edrive unpin first)",
                human_bytes(n("pinned_bytes"))
            );
        }
        if n("open_bytes") > 0 {
            println!("  kept {} of open files", human_bytes(n("open_bytes")));
        }
    }
    Ok(())
}

/// `edrive login`: reads the new password (`--password-file`, else `$EDRIVE_PASSWORD`,
/// else a prompt without echo) or token (`--bearer-token-file`, or a prompt on a bearer
/// mount), and has the daemon check, use and store it.
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    use crate::credentials::{first_line, prompt_hidden, Secret};
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    let s = control::request(&mp, &Request::Status)?;
    let auth = &s["auth"];
    let bearer_mount = auth["kind"] == "bearer";
    let (password, bearer_token) = if let Some(f) = &args.bearer_token_file {
        (None, Some(first_line(f)?))
    } else if let Some(f) = &args.password_file {
        (Some(first_line(f)?), None)
    } else if let Some(p) = std::env::var("EDRIVE_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        (Some(Secret::new(p)), None)
    } else if bearer_mount && args.user.is_none() {
        let prompt = format!("Bearer token for {}: ", mp.display());
        (None, Some(prompt_hidden(&prompt)?))
    } else {
        let user = args
            .user
            .as_deref()
            .or(auth["user"].as_str())
            .unwrap_or("?");
        let prompt = format!(
            "Password for {user} at {}: ",
            s["url"].as_str().unwrap_or("?")
        );
        (Some(prompt_hidden(&prompt)?), None)
    };
    let r = control::request(
        &mp,
        &Request::Login {
            user: args.user,
            password,
            bearer_token,
        },
    )?;
    if r["ok"] != true {
        bail!("{}", r["error"].as_str().unwrap_or("login failed"));
    }
    println!(
        "edrive: credentials accepted; {} is online again",
        mp.display()
    );
    match r["stored"].as_str() {
        Some(file) => println!("edrive: stored in {file} for later mounts"),
        None => eprintln!(
            "edrive: warning: {}",
            r["warning"]
                .as_str()
                .unwrap_or("the credentials were not stored")
        ),
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(10), "10 B");
        assert_eq!(super::human_bytes(10 << 20), "10.0 MiB");
    }
}
