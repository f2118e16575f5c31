//! The subscription of the control channel (`Request::Watch`): the panel icon is told of
//! a mount's state changes instead of asking every mount again and again. The daemon
//! compares a snapshot of its state (`status_reply::snapshot`) every [`CHECK`] and sends
//! it when it differs from the last one sent, and at least once per period as a
//! heartbeat. (The Windows named pipe answers a subscription with one snapshot: the
//! panel icon is Linux-only.)

#[cfg(unix)]
use std::sync::Arc;
#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use edrive_fs_core::Drive;
#[cfg(unix)]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[cfg(unix)]
use crate::status_reply::{snapshot, MountInfo};

/// How often the daemon looks whether its state changed (a cheap in-memory comparison).
#[cfg(unix)]
pub const CHECK: Duration = Duration::from_millis(250);
/// The heartbeat when the subscriber names none.
#[cfg(unix)]
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
/// What of a snapshot counts as a change: all of it but the countdown to the next retry.
#[cfg(unix)]
fn fingerprint(s: &serde_json::Value) -> serde_json::Value {
    let mut f = s.clone();
    if let Some(link) = f.get_mut("link").and_then(|l| l.as_object_mut()) {
        link.remove("next_retry_in_s");
    }
    f
}

/// Streams snapshots to `w` until the subscriber closes its side (`r` reaches its end),
/// a write fails, or `stop` says the daemon is stopping.
#[cfg(unix)]
pub async fn stream<R, W>(
    mut r: R,
    mut w: W,
    drive: Arc<Drive>,
    info: MountInfo,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let period = period.max(CHECK);
    let mut last: Option<serde_json::Value> = None;
    let mut sent_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = snapshot(&drive, &info);
                let f = fingerprint(&s);
                if last.as_ref() != Some(&f) || sent_at.elapsed() >= period {
                    let mut line = serde_json::to_string(&s)?;
                    line.push('\n');
                    w.write_all(line.as_bytes()).await?;
                    w.flush().await?;
                    last = Some(f);
                    sent_at = tokio::time::Instant::now();
                }
            }
            n = r.read(&mut sink) => {
                if n? == 0 {
                    return Ok(());
                }
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_retry_countdown_is_no_change() {
        let a = json!({"state": "offline", "link": {"state": "offline", "next_retry_in_s": 5}});
        let b = json!({"state": "offline", "link": {"state": "offline", "next_retry_in_s": 4}});
        let c = json!({"state": "synced", "link": {"state": "online"}});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
