//! What `statfs` reports: the server's quota when it gives one, else the room the cache
//! has (its budget, and the free space of the disk it is on).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::debug;

use super::Drive;
use crate::lock;
use crate::remote::Quota;

/// How long an answer about the server's quota (or that it gives none) is used.
const QUOTA_TTL: Duration = Duration::from_secs(60);

/// How long `statfs` waits for the server when its last answer is too old; it answers
/// from what it knew (or from the cache's room) after that, and the answer is used when
/// it comes.
const QUOTA_WAIT: Duration = Duration::from_secs(2);

/// Space as `statfs` reports it, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// The size of the drive: the server's quota (used and available), or the cache's
    /// budget.
    pub total: u64,
    /// What can still be written: the server's available quota, or the cache's room.
    pub free: u64,
    /// Whether the numbers are the server's quota (else the cache's room).
    pub from_server: bool,
}

/// The last answer about the server's quota.
#[derive(Default)]
pub(super) struct QuotaCache {
    /// When it came, and what it said (`None`: no quota, or the server could not be
    /// asked).
    known: Option<(Instant, Option<Quota>)>,
    /// A request is on its way.
    asking: bool,
}

impl Drive {
    /// The drive's size and free space: the server's quota (RFC 4331) if it gives one,
    /// else the cache's room. Asks the server at most once a minute, and never fails
    /// because of it: offline, or with a server that gives no quota, the cache's room is
    /// reported.
    pub async fn statfs(&self) -> Space {
        match self.quota().await {
            Some(q) => Space {
                total: q.available.saturating_add(q.used.unwrap_or(0)),
                free: q.available,
                from_server: true,
            },
            None => self.cache_room(),
        }
    }

    /// The server's quota as last learnt, asked again if that was over [`QUOTA_TTL`] ago
    /// (waiting up to [`QUOTA_WAIT`] for the answer).
    async fn quota(&self) -> Option<Quota> {
        let (known, ask) = {
            let mut c = lock(&self.quota);
            let fresh = c.known.is_some_and(|(at, _)| at.elapsed() < QUOTA_TTL);
            let ask = !fresh && !c.asking;
            if ask {
                c.asking = true;
            }
            (c.known.and_then(|(_, q)| q), ask)
        };
        if !ask {
            return known;
        }
        let remote = self.remote.clone();
        let cache: Arc<Mutex<QuotaCache>> = self.quota.clone();
        let asked = tokio::spawn(async move {
            let q = match remote.quota().await {
                Ok(q) => q,
                Err(e) => {
                    debug!(error = %e, "quota: the server could not be asked");
                    None
                }
            };
            let mut c = lock(&cache);
            c.known = Some((Instant::now(), q));
            c.asking = false;
            q
        });
        match tokio::time::timeout(QUOTA_WAIT, asked).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                debug!(error = %e, "quota: the request ended abnormally");
                lock(&self.quota).asking = false;
                known
            }
            Err(_) => known,
        }
    }

    /// The cache's room: its budget is the size; free is what it can still take, the
    /// budget less what it cannot evict (pinned content, changes not uploaded), and no
    /// more than the free space of its disk plus what it can evict.
    pub fn cache_room(&self) -> Space {
        let st = self.cache.stats();
        let held = st.pinned_bytes.saturating_add(st.dirty_bytes);
        let evictable = st.used_bytes.saturating_sub(held);
        let mut free = st.limit_bytes.saturating_sub(held);
        if let Some(disk) = disk_free(self.cache.dir()) {
            free = free.min(disk.saturating_add(evictable));
        }
        Space {
            total: st.limit_bytes,
            free,
            from_server: false,
        }
    }
}

/// Bytes an unprivileged user may still write on the file system holding `path`.
#[cfg(unix)]
fn disk_free(path: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Not asked on this platform: the budget alone bounds the room.
#[cfg(not(unix))]
fn disk_free(_path: &std::path::Path) -> Option<u64> {
    None
}
