//! The client commands that talk to a running mount: `unmount`, `status`, `sync`,
//! `suspend`, `resume`, `pin`, `unpin`, `free` and `login`.

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

/// `edrive conflicts`.
pub fn conflicts(args: ConflictsArgs) -> anyhow::Result<()> {
    let mp = std::fs::canonicalize(&args.mountpoint)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.mountpoint.display()))?;
    let r = control::request(&mp, &Request::Conflicts)?;
    if r["ok"] != true {
        bail!("{}", r["error"].as_str().unwrap_or("failed"));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let empty = Vec::new();
    let conflicts = r["conflicts"].as_array().unwrap_or(&empty);
    if conflicts.is_empty() {
        println!("no conflicts wait for a decision");
    } else {
        println!(
            "{} file(s) changed here and on the server:",
            conflicts.len()
        );
        for c in conflicts {
            println!(
                "  {}  (local version: {})",
                c["path"].as_str().unwrap_or("?"),
                human_bytes(c["local_size"].as_u64().unwrap_or(0))
            );
        }
        println!("settle each with: edrive resolve PATH --use-local | --use-remote | --keep-both");
    }
    let stuck = r["stuck"].as_array().unwrap_or(&empty);
    if !stuck.is_empty() {
        println!("{} other change(s) do not reach the server:", stuck.len());
        for c in stuck {
            println!(
                "  {}  ({})",
                c["path"].as_str().unwrap_or("?"),
                c["problem"].as_str().unwrap_or("?")
            );
        }
        println!(
            "try again now with: edrive resolve PATH --use-local; give the change up with --use-remote"
        );
    }
    let events = r["events"].as_array().unwrap_or(&empty);
    if !events.is_empty() {
        println!("recent events:");
        for e in events {
            let when = e["at_ms"].as_u64().unwrap_or(0) / 1000;
            let ago = unix_now().saturating_sub(when);
            let detail = e["detail"].as_str().unwrap_or("");
            let what = match e["kind"].as_str().unwrap_or("") {
                "kept-both" => format!("changed on both sides; your version is kept as {detail}"),
                "kept-local" => {
                    "deleted on the server while changed here; kept and uploaded again".to_string()
                }
                "restored" => {
                    "deleted here but changed on the server; the server's version is back"
                        .to_string()
                }
                "used-local" => "resolved: the local version replaced the server's".to_string(),
                "used-remote" => {
                    format!("resolved: took the server's version; yours is kept at {detail}")
                }
                other => format!("{other} {detail}"),
            };
            println!(
                "  {} ago  {}: {what}",
                human_age(ago),
                e["path"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `edrive resolve`.
pub fn resolve(args: ResolveArgs) -> anyhow::Result<()> {
    let choice = if args.use_local {
        "use-local"
    } else if args.use_remote {
        "use-remote"
    } else if args.discard {
        "discard"
    } else if args.save_as.is_some() {
        "save-as"
    } else {
        "keep-both"
    };
    let save_as = args
        .save_as
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let (_, r) = path_request(&args.path, |path| Request::Resolve {
        path,
        choice: choice.to_string(),
        save_as,
    })?;
    println!("{}", r["message"].as_str().unwrap_or("resolved"));
    Ok(())
}

/// `edrive status`: of the mount when given its mountpoint, else of the entry at the
/// path inside a mount.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    // A mountpoint is found without touching it (it may be a hung mount).
    let mp = paths::absolute_mountpoint(&args.path)?;
    if paths::socket_path(&mp).exists() {
        return mount_status(&mp, args.json);
    }
    let (mp, parts) = locate(&args.path)?;
    if parts.is_empty() {
        mount_status(&mp, args.json)
    } else {
        entry_status(&args, &mp, parts)
    }
}

/// `edrive status PATH` for an entry inside the mount at `mp`.
fn entry_status(args: &StatusArgs, mp: &std::path::Path, parts: Vec<String>) -> anyhow::Result<()> {
    let r = control::request(mp, &Request::Entry { path: parts })?;
    if r["ok"] != true {
        bail!(
            "{}: {}",
            args.path.display(),
            r["error"].as_str().unwrap_or("status failed")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let folder = r["kind"] == "folder";
    println!("{}", args.path.display());
    println!("  state:   {}", r["state"].as_str().unwrap_or("?"));
    println!(
        "  pinned:  {}",
        if r["pinned"] == true { "yes" } else { "no" }
    );
    println!(
        "  size:    {} ({} bytes{})",
        human_bytes(n(&r["size"])),
        n(&r["size"]),
        if folder { ", files below" } else { "" }
    );
    println!("  cached:  {}", human_bytes(n(&r["cached_bytes"])));
    if let Some(p) = r["problem"].as_str() {
        println!("  problem: {p}");
    }
    Ok(())
}

/// `edrive status MOUNTPOINT`.
fn sync_of(s: &serde_json::Value) -> &serde_json::Value {
    &s["sync"]
}

fn mount_status(mp: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let mp = mp.to_path_buf();
    let s = control::request(&mp, &Request::Status)?;
    if s["ok"] != true {
        bail!("{}", s["error"].as_str().unwrap_or("status failed"));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let c = &s["cache"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!("edrive mount at {}", mp.display());
    println!("  server:  {}", s["url"].as_str().unwrap_or("?"));
    let srv = &s["server"];
    if srv["probed"] == true {
        let yn = |k: &str| match srv[k].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        println!(
            "  guarantees: ETags {}, If-Match {}, If-None-Match {}, MOVE Overwrite: F {}, mtime {}, ranges {}",
            yn("etags"),
            yn("if_match"),
            yn("if_none_match"),
            yn("move_no_overwrite"),
            yn("mtime"),
            yn("ranges")
        );
    } else if let Some(note) = srv["note"].as_str() {
        println!("  guarantees: unknown ({note})");
    }
    println!(
        "  conflicts checked by: {}",
        srv["write_check"].as_str().unwrap_or("?")
    );
    let link = &s["link"];
    let state = s["state"].as_str().unwrap_or("?");
    let detail = match state {
        "offline" => format!(
            " (server unreachable for {} s: {}; next retry in {} s)",
            unix_now().saturating_sub(n(&link["since_unix"])),
            link["reason"].as_str().unwrap_or("?"),
            n(&link["next_retry_in_s"])
        ),
        "auth-required" => format!(
            " (the server refused the credentials with HTTP {}; local data is kept, changes are queued; `edrive login {}` gives new ones)",
            n(&link["http_status"]),
            mp.display()
        ),
        "suspended" if s["suspended"] == "offline" => " (offline: no requests at all)".into(),
        "attention" => format!(" ({})", crate::attention::describe(sync_of(&s))),
        "transferring" => {
            let t = &s["transfer"];
            format!(
                " ({} change(s) to upload, {} downloading, {}/s)",
                n(&t["pending"]),
                n(&t["downloads"]),
                human_bytes(n(&t["upload_rate_bytes_per_s"]))
            )
        }
        _ => String::new(),
    };
    println!("  state:   {state}{detail}");
    let auth = &s["auth"];
    match auth["kind"].as_str() {
        Some("basic") => println!(
            "  auth:    user {}{}",
            auth["user"].as_str().unwrap_or("?"),
            stored_note(auth)
        ),
        Some("bearer") => println!("  auth:    bearer token{}", stored_note(auth)),
        _ => {}
    }
    println!(
        "  cache:   {} used of {} ({} files hydrated, {} downloading)",
        human_bytes(n(&c["used_bytes"])),
        human_bytes(n(&c["limit_bytes"])),
        n(&s["hydrated_files"]),
        n(&s["downloads"]),
    );
    let bg = &s["background_reads_refused"];
    let by: Vec<String> = bg["by_program"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {}", n(v))).collect())
        .unwrap_or_default();
    println!(
        "  background: refused {} download(s) to thumbnailers and indexers{}",
        n(&bg["total"]),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        }
    );
    let kr = &s["kernel_reads"];
    println!(
        "  reads:   {}",
        if kr["available"] == true {
            format!(
                "cached files read by the kernel (passthrough; {} open now)",
                n(&kr["open"])
            )
        } else {
            "through the daemon (passthrough off or not offered by the kernel)".to_string()
        }
    );
    let sync = &s["sync"];
    println!(
        "  uploads: {} change(s) pending, {} dirty{}",
        n(&sync["pending"]),
        human_bytes(n(&sync["pending_bytes"])),
        if n(&sync["stuck"]) > 0 {
            format!(
                ", {} need attention (conflict, full server or error; see the log)",
                n(&sync["stuck"])
            )
        } else {
            String::new()
        }
    );
    if !sync["uploading"].is_null() {
        let up = &sync["uploading"];
        println!(
            "           uploading {} ({} of {})",
            up["path"].as_str().unwrap_or("?"),
            human_bytes(n(&up["sent_bytes"])),
            human_bytes(n(&up["total_bytes"]))
        );
    }
    if let Some(problems) = sync["problems"].as_array() {
        for p in problems {
            println!(
                "           {}: {}",
                p["path"].as_str().unwrap_or("?"),
                p["problem"].as_str().unwrap_or("?")
            );
        }
    }
    if let Some(e) = sync["last_error"].as_str() {
        println!("           last error: {e}");
    }
    let p = &s["pins"];
    if p["running"] == true {
        println!(
            "  pins:    fetching, {} of {} file(s) local",
            n(&p["done"]),
            n(&p["files"])
        );
    }
    if n(&c["pinned_bytes"]) > n(&c["limit_bytes"]) {
        println!(
            "  warning: pinned content ({}) exceeds the cache limit ({}); pins hold, the limit applies to the rest",
            human_bytes(n(&c["pinned_bytes"])),
            human_bytes(n(&c["limit_bytes"]))
        );
    }
    if n(&c["over_limit_bytes"]) > 0 {
        println!(
            "  warning: {} over the limit, held by open files",
            human_bytes(n(&c["over_limit_bytes"]))
        );
    }
    println!(
        "  daemon:  pid {}, log {}",
        n(&s["pid"]),
        s["log_file"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// ", stored in FILE" when `edrive login` stored the mount's credentials.
fn stored_note(auth: &serde_json::Value) -> String {
    if auth["in_keyring"] == true {
        ", stored in the keyring".to_string()
    } else if auth["stored"] == true {
        format!(
            ", stored in {}",
            auth["credentials_file"].as_str().unwrap_or("?")
        )
    } else {
        String::new()
    }
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
