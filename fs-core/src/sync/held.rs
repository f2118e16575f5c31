//! Held mass deletions. A script gone wrong, an `rm -rf` in the wrong folder or a `mv`
//! out of the mount must not empty the server: deletions that come in one burst (no
//! deletion quiet for the upload delay) and exceed a limit in entries or bytes are held,
//! not sent. They wait, as tombstones with problem [`Problem::Held`], for
//! `edrive deletions --confirm` (sent then) or `--restore` (the entries come back). The
//! mark is in the store, so held deletions survive a restart, a SIGKILL and an outage;
//! a burst cut short by a crash is judged again, whole, before anything of it is sent.

use std::time::{Duration, Instant};

use crate::meta::{Entry, Meta, MetaError};

use super::Activity;
use crate::meta::Problem;

/// The shortest pause that ends a burst of deletions.
const BURST_GAP: Duration = Duration::from_secs(3);

/// Above how many entries, or how many bytes, one burst of deletions is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    /// Entries (files and folders; a folder's content counts entry by entry).
    pub entries: u64,
    /// Bytes of the files deleted.
    pub bytes: u64,
}

impl Default for HoldLimits {
    fn default() -> Self {
        HoldLimits {
            entries: 100,
            bytes: 1 << 30,
        }
    }
}

/// Decides whether the deletions among `pending` may be planned now. While the burst
/// they belong to goes on (some deletion is younger than `debounce`), none is: the
/// burst is judged whole, and `wake_at` is brought forward to when it may have ended. A
/// burst over the limits is marked held (and not planned).
pub(super) fn deletions_may_go(
    meta: &Meta,
    activity: &Activity,
    debounce: Duration,
    pending: &[Entry],
    wake_at: &mut Option<Instant>,
) -> Result<bool, MetaError> {
    let mut burst: Vec<&Entry> = pending
        .iter()
        .filter(|e| e.deleted && e.problem.is_none() && e.remote.is_some())
        .collect();
    if burst.is_empty() {
        return Ok(true);
    }
    // What the user confirmed goes (and is not counted again).
    let confirmed = meta.confirmed_deletions()?;
    burst.retain(|e| !confirmed.contains(&e.ino));
    if burst.is_empty() {
        return Ok(true);
    }
    // A burst ends when no deletion came for the upload delay (at least BURST_GAP, so
    // a short delay does not cut an `rm -r` in pieces); a sync asked for ends it now.
    let gap = if debounce.is_zero() {
        debounce
    } else {
        debounce.max(BURST_GAP)
    };
    let mut going_on = false;
    for e in &burst {
        if let Err(when) = activity.quiet(e.ino, gap) {
            going_on = true;
            if let Some(t) = when {
                *wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            }
        }
    }
    if going_on {
        return Ok(false);
    }
    let limits = activity.hold_limits();
    let entries = burst.len() as u64;
    let bytes: u64 = burst
        .iter()
        .filter(|e| !e.is_dir())
        .map(|e| e.size)
        .fold(0, u64::saturating_add);
    if entries > limits.entries || bytes > limits.bytes {
        let inos: Vec<u64> = burst.iter().map(|e| e.ino).collect();
        meta.hold(&inos)?;
        tracing::warn!(
            entries,
            bytes,
            "a mass deletion is held, not sent: see `edrive deletions` (--confirm sends it, --restore brings the entries back)"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Whether `problem` marks a held deletion.
pub fn is_held(problem: Option<&Problem>) -> bool {
    problem == Some(&Problem::Held)
}
