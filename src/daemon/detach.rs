//! The detached daemon: `mount` without `--foreground` starts itself again as a child
//! and waits for the child's one-line verdict ("ready" or "error: …"); the child reports
//! it through [`Ready`] and then lets go of the parent's pipes.

use super::*;

/// Starts the daemon as a detached child and waits for its one-line verdict. The password
/// or token goes through a pipe: never on a command line, never in the child's
/// environment.
pub(super) fn spawn_daemon(args: &MountArgs, handoff: &Handoff) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the edrive executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg(&args.url)
        .arg(&args.mountpoint)
        .arg("--cache-size")
        .arg(args.cache_size.to_string())
        .arg("--dir-cache-ttl")
        .arg(format!("{}ms", args.dir_cache_ttl.as_millis()))
        .arg("--upload-delay")
        .arg(format!("{}ms", args.upload_delay.as_millis()))
        .arg("--poll-interval")
        .arg(format!("{}ms", args.poll_interval.as_millis()))
        .arg("--on-conflict")
        .arg(args.on_conflict.as_str())
        .arg("--conditional-writes")
        .arg(args.conditional_writes.as_str())
        .arg("--download-streams")
        .arg(args.download_streams.to_string())
        .arg("--hold-deletions-over")
        .arg(args.hold_deletions_over.to_string())
        .arg("--hold-deletions-bytes")
        .arg(args.hold_deletions_bytes.to_string())
        .arg("--daemon-child")
        .args(args.s3.to_args())
        .env_remove("EDRIVE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = &args.user {
        cmd.arg("--user").arg(u);
    }
    if let Some(d) = &args.cache_dir {
        cmd.arg("--cache-dir").arg(d);
    }
    if let Some(f) = &args.credentials_file {
        cmd.arg("--credentials-file").arg(f);
    }
    for p in &args.ignore {
        cmd.arg(format!("--ignore={p}"));
    }
    if args.no_default_ignore {
        cmd.arg("--no-default-ignore");
    }
    if args.allow_other {
        cmd.arg("--allow-other");
    }
    if args.no_passthrough {
        cmd.arg("--no-passthrough");
    }
    if args.read_only {
        cmd.arg("--read-only");
    }
    for (flag, v) in [("--uid", args.uid), ("--gid", args.gid)] {
        if let Some(v) = v {
            cmd.arg(flag).arg(v.to_string());
        }
    }
    if let Some(m) = args.umask {
        cmd.arg("--umask").arg(format!("{m:o}"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal
        // so that closing the shell does not stop the mount.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        // DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP: closing or interrupting the console
        // that ran `edrive mount` does not stop the daemon.
        cmd.creation_flags(0x0000_0008 | 0x0000_0200);
    }
    let mut child = cmd.spawn().context("cannot start the mount daemon")?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut line = Zeroizing::new(serde_json::to_string(handoff)?);
        line.push('\n');
        let _ = stdin.write_all(line.as_bytes());
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no daemon stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let line = line.trim();
    if line == "ready" {
        return Ok(());
    }
    if let Some(reason) = line.strip_prefix("error: ") {
        let _ = child.wait();
        bail!("{reason}");
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = child.wait();
    let err = err
        .lines()
        .find(|l| l.contains("panicked") || l.starts_with("edrive:"))
        .or_else(|| err.lines().last())
        .unwrap_or("no reason given")
        .to_string();
    bail!("the mount daemon stopped before the mount was ready: {err}")
}

pub(super) struct Ready {
    pub(super) daemon_child: bool,
}

impl Ready {
    pub(super) fn fail(&self, msg: &str) -> anyhow::Error {
        error!("{msg}");
        if self.daemon_child {
            println!("error: {msg}");
            let _ = std::io::stdout().flush();
        }
        anyhow!("{msg}")
    }

    #[cfg(unix)]
    pub(super) fn ok(&self) {
        if self.daemon_child {
            println!("ready");
            let _ = std::io::stdout().flush();
            detach_stdio();
        }
    }

    #[cfg(windows)]
    pub(super) fn ok(&self) {
        if self.daemon_child {
            println!("ready");
            let _ = std::io::stdout().flush();
        }
    }
}

/// After the parent has its verdict, nothing may write to its pipes any more.
#[cfg(unix)]
fn detach_stdio() {
    #[cfg(unix)]
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors with a valid open fd.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}
