//! Finds the running mounts (their control sockets in the runtime folder) and follows each
//! one's subscription (`watch`), handing every snapshot to the panel's loop.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

/// How often the runtime folder is looked at for new mounts.
const RESCAN: Duration = Duration::from_secs(2);
/// The heartbeat asked of each daemon.
const PERIOD_S: u64 = 10;

/// What a followed mount says.
#[derive(Debug)]
pub enum Update {
    /// A snapshot from the daemon at this socket.
    Snapshot(PathBuf, serde_json::Value),
    /// The daemon at this socket went away (or never answered).
    Gone(PathBuf),
}

/// Follows every mount that is or comes up, forever.
pub async fn discover(tx: UnboundedSender<Update>) {
    let followed: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
    loop {
        for sock in crate::paths::control_sockets() {
            let new = followed
                .lock()
                .map(|mut f| f.insert(sock.clone()))
                .unwrap_or(false);
            if new {
                let tx = tx.clone();
                let followed = followed.clone();
                tokio::spawn(async move {
                    if let Err(e) = follow(&sock, &tx).await {
                        debug!(socket = %sock.display(), error = %e, "mount not followed");
                    }
                    let _ = tx.send(Update::Gone(sock.clone()));
                    if let Ok(mut f) = followed.lock() {
                        f.remove(&sock);
                    }
                });
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(RESCAN).await;
    }
}

/// Subscribes at `sock` and forwards snapshots until the daemon closes the connection.
async fn follow(sock: &std::path::Path, tx: &UnboundedSender<Update>) -> anyhow::Result<()> {
    let stream = tokio::net::UnixStream::connect(sock).await?;
    let (r, mut w) = stream.into_split();
    let req = serde_json::to_string(&crate::control::Request::Watch {
        period_s: Some(PERIOD_S),
    })?;
    w.write_all(format!("{req}\n").as_bytes()).await?;
    let mut lines = BufReader::new(r).lines();
    // A daemon that stays silent past two heartbeats is taken as gone.
    let patience = Duration::from_secs(PERIOD_S * 2 + 5);
    while let Some(line) = tokio::time::timeout(patience, lines.next_line()).await?? {
        match serde_json::from_str(&line) {
            Ok(v) => {
                if tx.send(Update::Snapshot(sock.to_path_buf(), v)).is_err() {
                    return Ok(());
                }
            }
            Err(e) => debug!(error = %e, "unreadable snapshot"),
        }
    }
    Ok(())
}
