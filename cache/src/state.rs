//! [`State`]: the cache's bookkeeping behind its one mutex. The persisted index, the ledger
//! of complete blobs and the partial downloads are kept in step here; rebuilding them when
//! the cache opens is the recovery. Apart from the recovery, which deletes orphan files, it
//! deletes no files: operations return the ones to delete, for the caller to unlink once the
//! lock is released.

use crate::budget::{CacheStats, FreeReport, Ledger, Meta};
use crate::dir;
use crate::error::CacheError;
use crate::index::{Index, Row};
use crate::key::{blob_file_generation, BlobKey};
use crate::partial::{Partial, Partials};
use crate::sync::SyncJob;
use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often recorded uses are written to the index at most (besides on drop and `flush`).
const USE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Bookkeeping behind the mutex.
pub(crate) struct State {
    pub(crate) index: Index,
    pub(crate) ledger: Ledger,
    /// Partial downloads kept for later (see [`crate::partial`]).
    pub(crate) partials: Partials,
    /// The use counter: every use and commit takes the next value.
    clock: u64,
    /// Source of blob file generations and handle tokens.
    next_id: u64,
    /// Keys whose `last_used` changed since the last write to the index.
    pending_uses: HashSet<BlobKey>,
    last_flush: Instant,
}

impl State {
    /// Rebuilds the bookkeeping from `index` and the files in `blobs_dir`: rows whose file is
    /// missing or has the wrong length are dropped, files without a row are deleted, and the
    /// recency order is restored. The budget is not enforced yet.
    pub(crate) fn recover(
        mut index: Index,
        limit_bytes: u64,
        blobs_dir: &Path,
    ) -> Result<State, CacheError> {
        let mut ledger = Ledger::new(limit_bytes);
        let mut bad = Vec::new();
        let mut files = HashSet::new();
        let mut rows = Vec::new();
        for row in index.load()? {
            match row {
                Ok(row) if row_is_valid(blobs_dir, &row, &files) => {
                    files.insert(row.file.clone());
                    rows.push(row);
                }
                Ok(row) => bad.push(row.key),
                Err(key) => bad.push(key),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                count = bad.len(),
                "cache: dropping index rows without a valid blob"
            );
            index.delete_many(&bad)?;
        }
        // Rows come least recently used first, so inserting in order restores the recency.
        let clock = rows.iter().map(|r| r.last_used).max().unwrap_or(0);
        let mut next_id = rows
            .iter()
            .filter_map(|r| blob_file_generation(&r.file))
            .max()
            .unwrap_or(0);
        for row in rows {
            next_id += 1;
            ledger.insert(
                row.key,
                Meta {
                    len: row.len,
                    file: row.file,
                    token: next_id,
                    pinned: row.pinned,
                    dirty: row.dirty,
                    open: 0,
                    last_used: row.last_used,
                },
            );
        }

        let partials = Partials::load(&mut index, blobs_dir, &mut files)?;

        let mut orphans = 0;
        for entry in fs::read_dir(blobs_dir).map_err(|e| CacheError::io("list", blobs_dir, e))? {
            let entry = entry.map_err(|e| CacheError::io("list", blobs_dir, e))?;
            let known = entry
                .file_name()
                .to_str()
                .is_some_and(|name| files.contains(name));
            if !known {
                dir::remove_any(&entry.path())?;
                orphans += 1;
            }
        }
        if orphans > 0 {
            tracing::warn!(
                count = orphans,
                "cache: deleted blob files without an index row"
            );
        }

        Ok(State {
            index,
            ledger,
            partials,
            clock,
            next_id,
            pending_uses: HashSet::new(),
            last_flush: Instant::now(),
        })
    }

    /// The next value of the use counter.
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// A new blob file generation or handle token.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Notes that `key` was used (its `last_used` changed); writes the pending uses to the
    /// index if the last write is [`USE_FLUSH_INTERVAL`] ago.
    pub(crate) fn record_use(&mut self, key: &BlobKey) {
        self.pending_uses.insert(key.clone());
        if self.last_flush.elapsed() >= USE_FLUSH_INTERVAL {
            if let Err(err) = self.flush_uses() {
                tracing::warn!(%err, "cache: saving recency failed");
            }
        }
    }

    /// Writes pending `last_used` values to the index.
    pub(crate) fn flush_uses(&mut self) -> Result<(), CacheError> {
        self.last_flush = Instant::now();
        if self.pending_uses.is_empty() {
            return Ok(());
        }
        let uses: Vec<(BlobKey, u64)> = self
            .pending_uses
            .drain()
            .filter_map(|key| {
                let last_used = self.ledger.peek(&key)?.last_used;
                Some((key, last_used))
            })
            .collect();
        self.index.touch_many(&uses)
    }

    /// Drops the rows and bookkeeping of `keys`; returns their file names to unlink once the
    /// lock is released. Index failures are logged: a row whose file is gone is dropped at the
    /// next open anyway.
    pub(crate) fn drop_blobs(&mut self, keys: &[BlobKey]) -> Vec<String> {
        if keys.is_empty() {
            return Vec::new();
        }
        if let Err(err) = self.index.delete_many(keys) {
            tracing::warn!(%err, count = keys.len(), "cache: deleting index rows failed");
        }
        keys.iter()
            .filter_map(|key| {
                self.pending_uses.remove(key);
                self.ledger.remove(key).map(|meta| meta.file)
            })
            .collect()
    }

    /// Deletes `keys` (index first, so a failure changes nothing); returns their files.
    pub(crate) fn remove_blobs(&mut self, keys: &[BlobKey]) -> Result<Vec<String>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.index.delete_many(keys)?;
        Ok(keys
            .iter()
            .filter_map(|key| {
                self.pending_uses.remove(key);
                self.ledger.remove(key).map(|m| m.file)
            })
            .collect())
    }

    /// The cached keys of `entry`; fails with [`CacheError::Dirty`] if one of them is dirty.
    pub(crate) fn clean_keys_of(&self, entry: u64) -> Result<Vec<BlobKey>, CacheError> {
        let keys: Vec<BlobKey> = self
            .ledger
            .versions(entry)
            .into_iter()
            .map(|version| BlobKey::new(entry, version))
            .collect();
        if let Some(dirty) = keys
            .iter()
            .find(|k| self.ledger.peek(k).is_some_and(|m| m.dirty))
        {
            return Err(CacheError::Dirty {
                entry,
                version: dirty.version.clone(),
            });
        }
        Ok(keys)
    }

    /// Whether a blob to be installed as `key` keeps a pin: that of the blob it replaces.
    /// Fails with [`CacheError::Dirty`] if that blob is dirty.
    pub(crate) fn pin_to_keep(&self, key: &BlobKey) -> Result<bool, CacheError> {
        match self.ledger.peek(key) {
            Some(old) if old.dirty => Err(CacheError::Dirty {
                entry: key.entry,
                version: key.version.clone(),
            }),
            Some(old) => Ok(old.pinned),
            None => Ok(false),
        }
    }

    /// Records the complete blob `key` as the most recently used; returns the files it makes
    /// useless (the blob it replaces, the entry's partial downloads).
    pub(crate) fn insert_blob(&mut self, key: &BlobKey, meta: Meta) -> Vec<String> {
        // A complete version makes every partial download of the entry useless.
        let mut unlink = self.drop_partials_of(key.entry);
        self.pending_uses.remove(key);
        if let Some(old) = self.ledger.insert(key.clone(), meta) {
            unlink.push(old.file);
        }
        unlink
    }

    /// After `key` was inserted: moves the entry's pin to it and drops its other versions
    /// that nothing needs; returns their files.
    pub(crate) fn settle_versions(&mut self, key: &BlobKey) -> Result<Vec<String>, CacheError> {
        // A pin belongs to the file, not to one version: the new version takes it over
        // from the ones it replaces, which become ordinary stale versions.
        let mut pinned_before = Vec::new();
        for version in self.ledger.versions(key.entry) {
            let other = BlobKey::new(key.entry, version);
            if other != *key && self.ledger.peek(&other).is_some_and(|m| m.pinned) {
                pinned_before.push(other);
            }
        }
        if !pinned_before.is_empty() {
            self.index.set_pinned(key, true)?;
            self.ledger.set_pinned(key, true);
            for other in &pinned_before {
                self.index.set_pinned(other, false)?;
                self.ledger.set_pinned(other, false);
            }
        }

        // Other versions of the entry are stale: drop the ones nothing needs, and make the
        // open-but-clean ones the first to go once closed.
        let mut stale = Vec::new();
        for version in self.ledger.versions(key.entry) {
            if version == key.version {
                continue;
            }
            let other = BlobKey::new(key.entry, version);
            let Some(meta) = self.ledger.peek(&other) else {
                continue;
            };
            if meta.evictable() {
                stale.push(other);
            } else if !meta.pinned && !meta.dirty {
                self.ledger.demote(&other);
            }
        }
        Ok(self.drop_blobs(&stale))
    }

    /// Sets a flag of `key` (`field` of its meta, persisted by `persist`). `None` if there is
    /// no such blob, else whether the flag changed.
    pub(crate) fn set_flag(
        &mut self,
        key: &BlobKey,
        value: bool,
        field: fn(&mut Meta) -> &mut bool,
        persist: fn(&Index, &BlobKey, bool) -> Result<(), CacheError>,
    ) -> Result<Option<bool>, CacheError> {
        let Some(meta) = self.ledger.peek_mut(key) else {
            return Ok(None);
        };
        if *field(meta) == value {
            return Ok(Some(false));
        }
        persist(&self.index, key, value)?;
        self.ledger.update(key, |meta| *field(meta) = value);
        Ok(Some(true))
    }

    /// Writes the index rows of the synced `jobs` with the flags and recency they have now,
    /// if they are still cached under the same file.
    pub(crate) fn index_synced(&mut self, jobs: &[SyncJob]) {
        let rows: Vec<Row> = jobs
            .iter()
            .filter_map(|job| {
                let meta = self
                    .ledger
                    .peek(&job.key)
                    .filter(|m| m.file == job.file_name)?;
                Some(Row {
                    key: job.key.clone(),
                    file: meta.file.clone(),
                    len: meta.len,
                    last_used: meta.last_used,
                    pinned: meta.pinned,
                    dirty: meta.dirty,
                })
            })
            .collect();
        if let Err(err) = self.index.upsert_many(&rows) {
            tracing::warn!(%err, blobs = rows.len(), "cache: indexing synced blobs failed");
        }
    }

    /// Drops the blobs of `entries` unless dirty or open, pinned ones only if
    /// `include_pinned`, and their partial downloads; reports what was freed and what was
    /// kept, with the files to unlink.
    pub(crate) fn free(
        &mut self,
        entries: &[u64],
        include_pinned: bool,
    ) -> (FreeReport, Vec<String>) {
        let mut report = FreeReport::default();
        let mut victims = Vec::new();
        let mut seen = HashSet::new();
        for &entry in entries {
            if !seen.insert(entry) {
                continue;
            }
            for version in self.ledger.versions(entry) {
                let key = BlobKey::new(entry, version);
                let Some(meta) = self.ledger.peek(&key) else {
                    continue;
                };
                if meta.dirty {
                    report.kept_dirty_bytes += meta.len;
                } else if meta.open > 0 {
                    report.kept_open_bytes += meta.len;
                } else if meta.pinned && !include_pinned {
                    report.kept_pinned_bytes += meta.len;
                } else {
                    report.freed_bytes += meta.len;
                    victims.push(key);
                }
            }
        }
        let mut unlink = self.drop_blobs(&victims);
        for &entry in &seen {
            unlink.extend(self.drop_partials_of(entry));
        }
        (report, unlink)
    }

    /// Evicts partial downloads, then least recently used evictable blobs, until the
    /// budget holds (counting `filling_bytes` of fills in progress); returns file names to
    /// unlink.
    pub(crate) fn enforce_budget(&mut self, filling_bytes: u64) -> Vec<String> {
        let budgeted = self.ledger.budgeted().saturating_add(filling_bytes);
        let partial_victims = self.partials.victims(budgeted, self.ledger.limit());
        let mut files = self.drop_partials(&partial_victims);
        let filling_bytes = filling_bytes.saturating_add(self.partials.bytes());
        let victims = self.ledger.victims(filling_bytes);
        files.extend(self.drop_blobs(&victims));
        if !victims.is_empty() {
            tracing::debug!(
                count = victims.len(),
                "cache: evicted least recently used blobs"
            );
        }
        let used = self.ledger.used().saturating_add(filling_bytes);
        if used > self.ledger.limit() {
            tracing::debug!(
                used,
                limit = self.ledger.limit(),
                "cache: over limit; the remaining blobs are open, pinned or dirty"
            );
        }
        files
    }

    /// A snapshot of sizes and counts, with `filling` bytes of fills in progress.
    pub(crate) fn stats(&self, filling: u64) -> CacheStats {
        let partial_bytes = self.partials.bytes();
        let mut stats = self.ledger.stats(filling.saturating_add(partial_bytes));
        stats.filling_bytes = filling;
        stats.partial_bytes = partial_bytes;
        stats
    }

    /// Records `partial` as `key`'s partial download (row first); returns the file of the one
    /// it replaced.
    pub(crate) fn keep_partial(
        &mut self,
        key: BlobKey,
        partial: Partial,
    ) -> Result<Option<String>, CacheError> {
        self.index.upsert_partial(&partial.row(&key))?;
        Ok(self.partials.insert(key, partial))
    }

    /// Takes `key`'s partial download out of the bookkeeping (its file stays in `blobs/`,
    /// for the caller to move or delete).
    pub(crate) fn take_partial(&mut self, key: &BlobKey) -> Option<Partial> {
        let partial = self.partials.get(key).cloned()?;
        self.drop_partials(std::slice::from_ref(key));
        Some(partial)
    }

    /// Forgets the partial downloads `keys` (rows first); returns their files to unlink.
    fn drop_partials(&mut self, keys: &[BlobKey]) -> Vec<String> {
        if keys.is_empty() {
            return Vec::new();
        }
        if let Err(err) = self.index.delete_partials(keys) {
            tracing::warn!(%err, "cache: deleting partial download rows failed");
        }
        self.partials.remove(keys)
    }

    /// Forgets every partial download of `entry`; returns their files to unlink.
    pub(crate) fn drop_partials_of(&mut self, entry: u64) -> Vec<String> {
        let keys = self.partials.keys_of(entry);
        self.drop_partials(&keys)
    }
}

/// Whether `row` names a plain file in `blobs/` of the recorded length, not already claimed.
fn row_is_valid(blobs_dir: &Path, row: &Row, claimed: &HashSet<String>) -> bool {
    if blob_file_generation(&row.file).is_none() || claimed.contains(&row.file) {
        return false;
    }
    match fs::symlink_metadata(blobs_dir.join(&row.file)) {
        Ok(meta) => meta.is_file() && meta.len() == row.len,
        Err(_) => false,
    }
}
