//! Finding changes made on the server by others.
//!
//! A background poller relists, every poll interval, the folders the user is working in
//! (listed or looked into within [`RECENT`]) and every folder under a pin. Each listing is
//! merged three-way by [`crate::meta::Meta::apply_listing`]; what it changed is dropped
//! from the kernel's caches ([`crate::notify`]) and from the content cache, and pinned
//! content that changed or appeared is fetched. A failed listing changes nothing.
//!
//! Depth-1 listings are used for every server: directory ETags (Apache's change when a
//! direct child is added or removed, not when a child's content changes) cannot prove
//! that nothing below changed, and RFC 6578 `sync-collection` is not offered by Apache
//! or the embedded server.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edrive_cache::BlobKey;
use tracing::{debug, info, warn};

use super::{lock, Drive};
use crate::meta::ListingChanges;
use crate::notify::KernelCache;

/// How long a folder counts as "in use" after its last listing or lookup.
pub(super) const RECENT: Duration = Duration::from_secs(15 * 60);
/// At most this many recently used folders are polled (the most recent first).
const RECENT_MAX: usize = 512;

/// What one poll round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Folders listed.
    pub listed: usize,
    /// Folders whose listing failed (nothing was changed for them).
    pub failed: usize,
    /// Folders whose listing changed something.
    pub changed: usize,
}

impl Drive {
    /// Sends the kernel invalidations from now on to `sink` (the kernel adapter's).
    pub fn install_kernel_cache(&self, sink: Arc<dyn KernelCache>) {
        self.inval.install(sink);
    }

    /// Records that folder `ino` is in use, so the poller keeps it fresh.
    pub(super) fn note_recent(&self, ino: u64) {
        let mut recent = lock(&self.recent);
        recent.insert(ino, Instant::now());
        if recent.len() > 4 * RECENT_MAX {
            // Keep the most recent half (what is polled anyway), so this stays rare.
            let mut times: Vec<Instant> = recent.values().copied().collect();
            times.sort_unstable();
            let cutoff = times[times.len() - RECENT_MAX];
            recent.retain(|_, t| *t >= cutoff && t.elapsed() < RECENT);
        }
    }

    /// Folders to poll: the recently used ones and every folder under a pin.
    fn poll_set(&self) -> Vec<u64> {
        let mut dirs: Vec<(u64, Instant)> = {
            let mut recent = lock(&self.recent);
            recent.retain(|_, t| t.elapsed() < RECENT);
            recent.iter().map(|(i, t)| (*i, *t)).collect()
        };
        dirs.sort_by_key(|d| std::cmp::Reverse(d.1));
        dirs.truncate(RECENT_MAX);
        let mut out: Vec<u64> = dirs.into_iter().map(|(i, _)| i).collect();
        if let Ok(pins) = self.meta.pins() {
            for p in pins {
                match self.meta.get(p) {
                    // A pinned file: its folder's listing tells its version.
                    Ok(Some(e)) if !e.is_dir() => out.push(e.parent),
                    _ => {
                        if let Ok(d) = self.meta.dirs_below(p) {
                            out.extend(d);
                        }
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|i| seen.insert(*i));
        out
    }

    /// Relists the folders in use and under pins once (unless listed less than `fresh`
    /// ago); see the module documentation.
    pub async fn poll_once(&self, fresh: Duration) -> PollReport {
        let mut report = PollReport::default();
        // Folders the write-back found stale first, outermost first, whatever their age.
        let wanted = self.activity.take_want_listed();
        let wanted_len = wanted.len();
        let mut set = wanted;
        set.extend(self.poll_set());
        for (i, ino) in set.into_iter().enumerate() {
            let fresh = if i < wanted_len {
                Duration::ZERO
            } else {
                fresh
            };
            if self.suspended().is_some() || !self.conn.usable() {
                break;
            }
            match self.meta.get(ino) {
                Ok(Some(e)) if e.is_dir() => {}
                _ => {
                    lock(&self.recent).remove(&ino);
                    continue;
                }
            }
            match self.list_if_older(ino, fresh, false).await {
                Ok(Some(changes)) => {
                    report.listed += 1;
                    if changes.any() {
                        report.changed += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    report.failed += 1;
                    debug!(ino, error = %e, "poll: listing failed; nothing changed");
                }
            }
        }
        report
    }

    /// Polls every `interval` until the drive is dropped (spawn it). Suspended or offline
    /// rounds are skipped. Pinned content that changed or appeared is fetched.
    pub async fn run_poller(self: Arc<Self>, interval: Duration) {
        let interval = interval.max(Duration::from_millis(100));
        let mut seen_news = self.uploader.remote_news.load(Ordering::SeqCst);
        let mut was_usable = true;
        loop {
            tokio::time::sleep(interval).await;
            if Arc::strong_count(&self) == 1 {
                return;
            }
            if self.suspended().is_some() || !self.conn.usable() {
                was_usable = false;
                continue;
            }
            if !was_usable {
                // Back online: pinned content a run could not fetch meanwhile.
                was_usable = true;
                seen_news = seen_news.wrapping_sub(1);
            }
            let report = self.poll_once(interval / 2).await;
            if report.changed > 0 {
                info!(
                    folders = report.listed,
                    changed = report.changed,
                    "poll: remote changes applied"
                );
            }
            let news = self.uploader.remote_news.load(Ordering::SeqCst);
            if news != seen_news {
                seen_news = news;
                if matches!(self.meta.pins(), Ok(p) if !p.is_empty()) {
                    self.spawn_pin_run();
                }
            }
        }
    }

    /// Drops what a merged listing of folder `dir` made stale: the kernel's lookups of
    /// the names that changed, its attributes and pages of changed files, and cached
    /// content of versions the server no longer has.
    pub(super) fn after_listing(&self, dir: u64, changes: &ListingChanges) {
        for name in &changes.names {
            self.inval.entry(dir, name);
        }
        for (folder, name) in &changes.names_below {
            self.inval.entry(*folder, name);
        }
        let held: Vec<u64> = {
            let works = lock(&self.works);
            changes
                .changed
                .iter()
                .copied()
                .filter(|i| works.contains_key(i))
                .collect()
        };
        if !held.is_empty() {
            // Their new version is not taken while they are open for writing: list the
            // folder again on the next access (or poll) after they close.
            let _ = self.meta.expire_listing(dir);
        }
        for &ino in &changes.changed {
            self.inval.inode(ino);
            let current = self.meta.get(ino).ok().flatten();
            if let Some(e) = current.filter(|e| !e.dirty && !e.is_dir()) {
                let keep = e.content_version();
                for v in self.cache.versions_of(ino) {
                    if v != keep {
                        let _ = self.cache.remove(&BlobKey {
                            entry: ino,
                            version: v,
                        });
                    }
                }
            }
        }
        for &ino in &changes.kept_local {
            if let Ok(p) = self.meta.path_of(ino) {
                let _ = self.meta.record_event("kept-local", &p.to_string(), "");
            }
        }
        for &ino in &changes.removed {
            self.inval.inode(ino);
            if let Err(e) = self.cache.remove_entry(ino) {
                warn!(ino, error = %e, "could not drop the cached content of a removed file");
            }
        }
        if changes.added > 0 || !changes.changed.is_empty() || changes.renamed > 0 {
            self.uploader.remote_news.fetch_add(1, Ordering::SeqCst);
        }
    }
}
