//! The daemon's side of the control channel, and its life until the mount goes away.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edrive_fs_core::Drive;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::control::Request;
use crate::paths;
use crate::status_reply::{answer, MountInfo, UnmountReply};
use crate::status_watch;

/// Creates the control socket of `mountpoint`, replacing a stale one.
pub fn bind(mountpoint: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let sock = paths::socket_path(mountpoint);
    paths::check_runtime_dir(true)?;
    if sock.exists() {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return Err(std::io::Error::other(format!(
                "another edrive daemon answers at {}",
                sock.display()
            )));
        }
        std::fs::remove_file(&sock)?;
    }
    let l = std::os::unix::net::UnixListener::bind(&sock)?;
    {
        use std::os::unix::fs::PermissionsExt;
        // `login` sends secrets over it: the owner's only (its folder is 0700 too).
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// How long a daemon whose mount was taken away from outside keeps uploading.
const OUTSIDE_UNMOUNT_DRAIN: Duration = Duration::from_secs(30);

/// The signals that end a mount: SIGINT, SIGTERM and SIGHUP (a closed terminal).
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts catching them; must run inside the runtime.
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Uploads what can be uploaded before the daemon exits; a second signal stops waiting
/// (what is left stays in the cache for the next mount).
async fn drain(drive: &Drive, signals: &mut Signals) {
    #[cfg(target_os = "linux")]
    crate::systemd::notify_stopping();
    drive.request_sync();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let p = drive.sync_progress();
                if !p.syncing && p.current.is_none() {
                    if p.pending > 0 {
                        warn!(pending = p.pending, "changes left for the next mount");
                    }
                    return;
                }
            }
            _ = signals.int.recv() => break,
            _ = signals.term.recv() => break,
        }
    }
    warn!("stopped waiting for uploads; pending changes stay in the cache for the next mount");
}

/// Serves control requests until the filesystem is unmounted — by `edrive unmount`, a
/// signal (SIGINT/SIGTERM), or from outside (`fusermount3 -u`).
pub async fn run_until_unmounted(
    listener: std::os::unix::net::UnixListener,
    drive: Arc<Drive>,
    info: MountInfo,
    session: &fuser::BackgroundSession,
    mut signals: Signals,
) -> anyhow::Result<()> {
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let (unmount_tx, mut unmount_rx) = mpsc::channel::<UnmountReply>(4);
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut handlers = tokio::task::JoinSet::new();
    // Ends the subscriptions (`watch`) when the daemon stops.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let drive = drive.clone();
                    let info = info.clone();
                    let tx = unmount_tx.clone();
                    let stop = stop_rx.clone();
                    handlers.spawn(async move {
                        if let Err(e) = handle(stream, &drive, &info, tx, stop).await {
                            warn!(error = %e, "control request failed");
                        }
                    });
                }
            }
            Some(reply) = unmount_rx.recv() => {
                #[cfg(target_os = "linux")]
                crate::systemd::notify_stopping();
                let result = unmount(&info.mountpoint, false);
                let ok = result.is_ok();
                let _ = reply.send(result.map_err(|e| e.to_string()));
                if ok {
                    break;
                }
            }
            _ = signals.int.recv() => {
                info!("interrupted; uploading pending changes, then unmounting");
                drain(&drive, &mut signals).await;
                lazy_unmount(&info.mountpoint);
                break;
            }
            _ = signals.term.recv() => {
                info!("terminated; uploading pending changes, then unmounting");
                drain(&drive, &mut signals).await;
                lazy_unmount(&info.mountpoint);
                break;
            }
            _ = signals.hup.recv() => {
                info!("hung up; unmounting");
                lazy_unmount(&info.mountpoint);
                break;
            }
            _ = tick.tick() => {
                if session.guard.is_finished() {
                    // `umount`, `fusermount3 -u`: the changes are in the cache; send them
                    // now rather than at the next mount, for a while (the cache stays
                    // locked meanwhile; what is left goes with the next mount).
                    info!("unmounted from outside; uploading pending changes before exit");
                    if tokio::time::timeout(OUTSIDE_UNMOUNT_DRAIN, drain(&drive, &mut signals))
                        .await
                        .is_err()
                    {
                        warn!("changes left for the next mount");
                    }
                    break;
                }
            }
        }
    }
    // Let requests in flight (the unmount request among them) send their replies.
    drop(unmount_tx);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while handlers.join_next().await.is_some() {}
    })
    .await;
    for _ in 0..100 {
        if session.guard.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn lazy_unmount(mountpoint: &Path) {
    if let Err(e) = unmount(mountpoint, false) {
        warn!(error = %e, "unmount failed; detaching lazily");
        if let Err(e) = unmount(mountpoint, true) {
            warn!(error = %e, "lazy unmount failed");
        }
    }
}

/// Unmounts `mountpoint`: directly as root, through `fusermount3 -u` otherwise.
fn unmount(mountpoint: &Path, lazy: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), flags) } != 0 {
            let e = std::io::Error::last_os_error();
            anyhow::bail!("cannot unmount {}: {e}", mountpoint.display());
        }
        return Ok(());
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg(mountpoint).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "cannot unmount {}: {}",
            mountpoint.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn handle(
    stream: UnixStream,
    drive: &Arc<Drive>,
    info: &MountInfo,
    unmount_tx: mpsc::Sender<UnmountReply>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Only the mount's owner (or root) may talk to it, whatever the socket's mode.
    let peer = stream.peer_cred()?.uid();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if peer != me && peer != 0 {
        anyhow::bail!("refused a control connection from uid {peer}");
    }
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r);
    r.read_line(&mut line).await?;
    if let Ok(Request::Watch { period_s }) = serde_json::from_str::<Request>(&line) {
        let period = period_s.map_or(status_watch::DEFAULT_PERIOD, Duration::from_secs);
        status_watch::stream(r, w, drive.clone(), info.clone(), period, stop).await?;
        return Ok(());
    }
    let out = answer(&line, drive, info, unmount_tx).await?;
    w.write_all(out.as_bytes()).await?;
    Ok(())
}
