//! The daemon's side of the control channel on Windows — a named pipe per mount (see
//! [`paths::pipe_name`]) speaking the same JSON-lines protocol as the Unix socket — and the
//! mount's life until `edrive unmount` or Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edrive_fs_core::Drive;
use edrive_fs_projfs::Session;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::paths;

/// How long an unmount waits for local changes noticed before it to be recorded.
const RECORD_GRACE: Duration = Duration::from_secs(60);
use crate::status_reply::{answer, MountInfo, UnmountReply};

/// The control pipe of a mount: its name and the instance waiting for the next client.
pub struct Listener {
    name: String,
    server: NamedPipeServer,
}

/// Creates the first instance of the control pipe of `mountpoint`. Fails when another
/// daemon already owns the pipe. Must run inside the runtime.
pub fn bind(mountpoint: &Path) -> std::io::Result<Listener> {
    let name = paths::pipe_name(mountpoint);
    let server = ServerOptions::new()
        .first_pipe_instance(true)
        .reject_remote_clients(true)
        .create(&name)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create {name} (is another edrive daemon running?): {e}"),
            )
        })?;
    Ok(Listener { name, server })
}

fn next_instance(name: &str) -> std::io::Result<NamedPipeServer> {
    ServerOptions::new()
        .reject_remote_clients(true)
        .create(name)
}

/// Serves control requests until `edrive unmount` or Ctrl-C, then stops `session`. An
/// unmount request is answered only once the projection has stopped.
pub async fn run_until_unmounted(
    listener: Listener,
    drive: Arc<Drive>,
    info: MountInfo,
    session: Session,
) -> anyhow::Result<()> {
    let Listener { name, mut server } = listener;
    let (unmount_tx, mut unmount_rx) = mpsc::channel::<UnmountReply>(4);
    let mut handlers = tokio::task::JoinSet::new();
    let mut pending_reply = None;
    loop {
        tokio::select! {
            connected = server.connect() => {
                if let Err(e) = connected {
                    warn!(error = %e, "control pipe connection failed");
                    let _ = server.disconnect();
                    continue;
                }
                match next_instance(&name) {
                    Ok(next) => {
                        let client = std::mem::replace(&mut server, next);
                        let drive = drive.clone();
                        let info = info.clone();
                        let tx = unmount_tx.clone();
                        handlers.spawn(async move {
                            if let Err(e) = handle(client, &drive, &info, tx).await {
                                warn!(error = %e, "control request failed");
                            }
                        });
                    }
                    Err(e) => {
                        // Without a next instance this one cannot be handed off; turn the
                        // client away and keep listening on it.
                        warn!(error = %e, "cannot create another control pipe instance");
                        let _ = server.disconnect();
                    }
                }
            }
            Some(reply) = unmount_rx.recv() => {
                info!("unmount requested");
                pending_reply = Some(reply);
                break;
            }
            interrupted = tokio::signal::ctrl_c() => {
                match interrupted {
                    Ok(()) => info!("interrupted; unmounting"),
                    Err(e) => warn!(error = %e, "cannot wait for Ctrl-C; unmounting"),
                }
                break;
            }
        }
    }
    drop(server);
    // PrjStopVirtualizing waits for running callbacks, so it must not block a worker.
    let stopped = tokio::task::spawn_blocking(move || session.stop()).await;
    let result = match stopped {
        Ok(recorder) => {
            // Local changes noticed before the stop are recorded (in the journal, uploaded
            // by the next mount if not now) before the runtime goes.
            if let Some(recorder) = recorder {
                if tokio::time::timeout(RECORD_GRACE, recorder).await.is_err() {
                    warn!("local changes still being recorded after {RECORD_GRACE:?}; stopping anyway");
                }
            }
            Ok(())
        }
        Err(e) => Err(format!("stopping the projection failed: {e}")),
    };
    // Every unmount request, the one that ended the loop and any queued behind it, learns
    // how the stop went.
    unmount_rx.close();
    while let Some(reply) = pending_reply.take().or_else(|| unmount_rx.try_recv().ok()) {
        let _ = reply.send(result.clone());
    }
    // Let requests in flight (the unmount requests among them) send their replies.
    drop(unmount_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while handlers.join_next().await.is_some() {}
    })
    .await;
    result.map_err(anyhow::Error::msg)
}

async fn handle(
    pipe: NamedPipeServer,
    drive: &Arc<Drive>,
    info: &MountInfo,
    unmount_tx: mpsc::Sender<UnmountReply>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(pipe);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let out = answer(&line, drive, info, unmount_tx).await?;
    let mut pipe = reader.into_inner();
    pipe.write_all(out.as_bytes()).await?;
    pipe.flush().await?;
    // Closing our end before the client has read could lose the reply: wait (briefly) for
    // the client to hang up first.
    let mut rest = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(2), pipe.read(&mut rest)).await;
    Ok(())
}
