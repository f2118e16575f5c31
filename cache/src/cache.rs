//! The [`Cache`] itself: opening the directory, and the public operations, done on the
//! shared state ([`Shared`], [`State`]) and the working copies ([`WorkCopies`]).

use crate::blob::Blob;
use crate::budget::{CacheStats, FreeReport, Meta};
use crate::dir;
use crate::error::CacheError;
use crate::fill::Fill;
use crate::index::Index;
use crate::key::BlobKey;
use crate::partial::PresentRanges;
use crate::shared::Shared;
use crate::state::State;
use crate::work::WorkCopies;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A bounded on-disk cache of remote file content, keyed by [`BlobKey`].
///
/// Share it as `Arc<Cache>`. All bookkeeping sits behind one mutex that is never held while
/// blob data is read or written. The directory stays locked against other caches until the
/// `Cache` and every [`Blob`] and [`Fill`] it handed out are dropped.
pub struct Cache {
    shared: Arc<Shared>,
    work: WorkCopies,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.shared.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // A clean close keeps every committed download.
        self.shared.wait_synced();
    }
}

impl Cache {
    /// Opens (creating if needed) the cache in `dir` with a budget of `limit_bytes`.
    ///
    /// `dir` and its parents are created with mode 0700 (an existing `dir` is set to 0700).
    /// Recovery: `tmp/` is emptied (partial downloads are never served), index rows whose file
    /// is missing or has the wrong length are dropped, files in `blobs/` without a row are
    /// deleted, and the recency order is restored from the index. Working copies in `work/`
    /// are kept (only temp files of an interrupted [`Cache::checkout`] copy are deleted). Fails with
    /// [`CacheError::Busy`] if another cache has `dir` open.
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<Cache, CacheError> {
        dir::ensure_private_dir(dir)?;
        let lock = dir::lock_file(&dir.join("lock"), dir)?;
        let blobs_dir = dir.join("blobs");
        let tmp_dir = dir.join("tmp");
        let work_dir = dir.join("work");
        dir::ensure_private_dir(&blobs_dir)?;
        dir::ensure_private_dir(&tmp_dir)?;
        dir::ensure_private_dir(&work_dir)?;
        let wiped = dir::empty_dir(&tmp_dir)?;
        if wiped > 0 {
            tracing::info!(count = wiped, "cache: discarded partial downloads");
        }
        let work = WorkCopies::recover(work_dir)?;

        let db_path = dir.join("index.db");
        dir::ensure_private_file(&db_path)?;
        let index = Index::open(&db_path)?;
        let state = State::recover(index, limit_bytes, &blobs_dir)?;
        let shared = Shared::new(dir, blobs_dir, tmp_dir, state, lock);
        Ok(Cache {
            shared: Arc::new(shared),
            work,
        })
    }

    /// The complete blob for `key`, opened for reading; counts as a use.
    ///
    /// The blob cannot be evicted while the returned handle (or any other for the key) lives.
    pub fn get(&self, key: &BlobKey) -> Option<Blob> {
        Blob::open(&self.shared, key)
    }

    /// Whether a complete blob for `key` is cached (does not count as a use).
    pub fn contains(&self, key: &BlobKey) -> bool {
        self.shared.lock().ledger.peek(key).is_some()
    }

    /// Whether the complete blob for `key` is pinned, if cached (does not count as a use).
    pub fn cached_pinned(&self, key: &BlobKey) -> Option<bool> {
        self.shared.lock().ledger.peek(key).map(|m| m.pinned)
    }

    /// The length of the complete blob for `key`, if cached (does not count as a use).
    pub fn cached_len(&self, key: &BlobKey) -> Option<u64> {
        self.shared.lock().ledger.peek(key).map(|m| m.len)
    }

    /// The cached versions of `entry`, sorted.
    pub fn versions_of(&self, entry: u64) -> Vec<String> {
        self.shared.lock().ledger.versions(entry)
    }

    /// Starts writing the blob `key` of `expected_len` bytes into a new temp file.
    ///
    /// Nothing is visible to [`Cache::get`] until [`Fill::commit`]; dropping the fill discards it.
    pub fn begin_fill(&self, key: BlobKey, expected_len: u64) -> Result<Fill, CacheError> {
        Fill::create(self.shared.clone(), key, expected_len)
    }

    /// Takes `key`'s partial download, if there is one of `len` bytes, back into a fill
    /// (to be completed, or parked again); returns it with the ranges it holds.
    pub fn resume_fill(
        &self,
        key: &BlobKey,
        len: u64,
    ) -> Result<Option<(Fill, PresentRanges)>, CacheError> {
        Fill::resume(&self.shared, key, len)
    }

    /// Bytes present of `key`'s partial download, if there is one.
    pub fn partial_bytes(&self, key: &BlobKey) -> Option<u64> {
        self.shared.lock().partials.get(key).map(|p| p.covered)
    }

    /// Sets whether `key` is pinned (never evicted by the budget). Returns whether the blob
    /// exists. Unpinning re-checks the budget.
    pub fn set_pinned(&self, key: &BlobKey, pinned: bool) -> Result<bool, CacheError> {
        self.set_flag(key, pinned, |m| &mut m.pinned, Index::set_pinned)
    }

    /// Sets whether `key` is dirty (holds local changes not uploaded: never evicted or removed).
    /// Returns whether the blob exists. Clearing the flag re-checks the budget.
    pub fn set_dirty(&self, key: &BlobKey, dirty: bool) -> Result<bool, CacheError> {
        self.set_flag(key, dirty, |m| &mut m.dirty, Index::set_dirty)
    }

    fn set_flag(
        &self,
        key: &BlobKey,
        value: bool,
        field: fn(&mut Meta) -> &mut bool,
        persist: fn(&Index, &BlobKey, bool) -> Result<(), CacheError>,
    ) -> Result<bool, CacheError> {
        if value {
            // A flag that protects content is recorded only on an indexed blob.
            self.shared.wait_synced();
        }
        let mut st = self.shared.lock();
        let Some(changed) = st.set_flag(key, value, field, persist)? else {
            return Ok(false);
        };
        if changed && !value {
            let unlink = st.enforce_budget(self.shared.filling());
            drop(st);
            self.shared.unlink(unlink);
        }
        Ok(true)
    }

    /// Deletes the blob `key` regardless of recency or pin. Returns whether it existed.
    ///
    /// Refuses a dirty blob with [`CacheError::Dirty`]. Open handles keep reading the unlinked file.
    pub fn remove(&self, key: &BlobKey) -> Result<bool, CacheError> {
        let mut st = self.shared.lock();
        let Some(meta) = st.ledger.peek(key) else {
            return Ok(false);
        };
        if meta.dirty {
            return Err(CacheError::Dirty {
                entry: key.entry,
                version: key.version.clone(),
            });
        }
        let unlink = st.remove_blobs(std::slice::from_ref(key))?;
        drop(st);
        self.shared.unlink(unlink);
        Ok(true)
    }

    /// Deletes all versions of `entry` regardless of recency or pin; returns how many.
    ///
    /// If any version is dirty nothing is deleted and [`CacheError::Dirty`] is returned.
    pub fn remove_entry(&self, entry: u64) -> Result<usize, CacheError> {
        let mut st = self.shared.lock();
        let keys = st.clean_keys_of(entry)?;
        let partials = st.drop_partials_of(entry);
        self.shared.unlink(partials);
        let unlink = st.remove_blobs(&keys)?;
        drop(st);
        self.shared.unlink(unlink);
        Ok(keys.len())
    }

    /// Frees the cached content of `entries`: deletes their blobs unless dirty or open, and
    /// pinned ones only if `include_pinned`. Reports what was freed and what was kept.
    pub fn free(&self, entries: &[u64], include_pinned: bool) -> FreeReport {
        let (report, unlink) = self.shared.lock().free(entries, include_pinned);
        self.shared.unlink(unlink);
        report
    }

    /// Changes the byte limit and evicts down to it.
    pub fn set_limit(&self, limit_bytes: u64) {
        let mut st = self.shared.lock();
        st.ledger.set_limit(limit_bytes);
        let unlink = st.enforce_budget(self.shared.filling());
        drop(st);
        self.shared.unlink(unlink);
    }

    /// A snapshot of sizes and counts.
    pub fn stats(&self) -> CacheStats {
        let filling = self.shared.filling();
        self.shared.lock().stats(filling)
    }

    /// Syncs and indexes the downloads committed so far and writes recorded uses to the
    /// index now (otherwise done in the background, at most once a second, and when the
    /// cache is dropped).
    pub fn flush(&self) -> Result<(), CacheError> {
        self.shared.wait_synced();
        self.shared.lock().flush_uses()
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.shared.dir()
    }

    /// The path of `entry`'s working copy (whether or not it exists).
    pub fn work_path(&self, entry: u64) -> PathBuf {
        self.work.path(entry)
    }

    /// Opens `entry`'s existing working copy read+write (not following a symlink on Unix);
    /// `None` if it has none.
    pub fn work_open(&self, entry: u64) -> Result<Option<File>, CacheError> {
        self.work.open(entry)
    }

    /// Makes the working copies' directory entries durable (for an application's `fsync`:
    /// a working copy created since is then found after a power loss).
    pub fn work_sync_dir(&self) -> Result<(), CacheError> {
        self.work.sync_dir()
    }

    /// Creates `entry`'s working copy empty (truncating an existing one) and returns it open
    /// read+write. Nothing is synced: an empty file holds nothing to lose, a crash of the
    /// daemon keeps it anyway, and an application's `fsync` syncs it with its directory
    /// entry (see [`Cache::work_sync_dir`]); untarring thousands of files does not pay two
    /// disk flushes per file.
    pub fn work_create_empty(&self, entry: u64) -> Result<File, CacheError> {
        self.work.create_empty(entry)
    }

    /// Turns the complete blob `key` into the working copy of `key.entry` and returns it open
    /// read+write, positioned at the start.
    ///
    /// A blob that is not open, pinned or dirty is moved: it leaves the cache (no longer counts
    /// as used). Otherwise it is copied (through a synced temp file) and stays cached. Fails
    /// with [`CacheError::WorkExists`] if the entry already has a working copy (use
    /// [`Cache::work_open`]) and with [`CacheError::NotFound`] if the blob is not cached.
    pub fn checkout(&self, key: &BlobKey) -> Result<File, CacheError> {
        self.work.checkout(&self.shared, key)
    }

    /// Publishes `entry`'s uploaded working copy as the clean complete blob `(entry, version)`.
    ///
    /// Moves the file into the cache as the most recently used blob (keeping the
    /// pin of a same-key blob it replaces), drops other versions of the entry that are not open,
    /// pinned or dirty, and enforces the budget (so the new blob may be evicted at once if it
    /// does not fit). Afterwards the entry has no working copy. Handles already open on the
    /// working copy keep reading the same file, but must not write to it any more. Fails with
    /// [`CacheError::NoWorkingCopy`] if there is none and with [`CacheError::Dirty`] if a dirty
    /// blob with the same key exists (the working copy then stays).
    pub fn adopt(&self, entry: u64, version: &str) -> Result<(), CacheError> {
        self.work.adopt(&self.shared, entry, version)
    }

    /// Starts an upload of `entry`'s working copy: gives it a second name (its base) and
    /// returns the base opened for reading. A writer that comes during the upload calls
    /// [`Cache::work_fork`] and writes to a copy, so the upload's content never changes under
    /// it. A base left by an earlier, interrupted upload is replaced.
    pub fn work_link_base(&self, entry: u64) -> Result<File, CacheError> {
        self.work.link_base(entry)
    }

    /// The base an upload of `entry` left (running, or cut short by a crash), if any.
    pub fn work_base(&self, entry: u64) -> Result<Option<File>, CacheError> {
        self.work.base(entry)
    }

    /// Forgets `entry`'s upload base (the upload ended).
    pub fn work_remove_base(&self, entry: u64) -> Result<(), CacheError> {
        self.work.remove_base(entry)
    }

    /// If the working copy of `entry` is still the file an upload reads (its base), replaces
    /// it with a copy, so writes from now on leave the upload's content alone. Returns whether
    /// it copied.
    pub fn work_fork(&self, entry: u64) -> Result<bool, CacheError> {
        self.work.fork(entry)
    }

    /// Deletes `entry`'s working copy; returns whether it existed. Open handles keep working
    /// on the unlinked file (on Unix).
    pub fn work_remove(&self, entry: u64) -> Result<bool, CacheError> {
        self.work.remove(entry)
    }

    /// Deletes `entry`'s working copy but keeps an upload's base (what a crash-cut upload
    /// was sending, still needed to recognise it on the server).
    pub fn work_remove_keep_base(&self, entry: u64) -> Result<bool, CacheError> {
        self.work.remove_keep_base(entry)
    }

    /// Every working copy as `(entry, length in bytes)`, sorted by entry (for recovery at
    /// mount time). Names that are not working copies are skipped with a warning; temp files
    /// of a copy in progress are ignored.
    pub fn work_entries(&self) -> Result<Vec<(u64, u64)>, CacheError> {
        self.work.entries()
    }

    /// Total length of all working copies in bytes. Lists the directory, so it is meant for
    /// status output, not hot paths; a failure to list is logged and counts as 0.
    pub fn work_bytes(&self) -> u64 {
        self.work.bytes()
    }

    #[cfg(test)]
    pub(crate) fn index_row(&self, key: &BlobKey) -> Option<crate::index::Row> {
        self.shared.lock().index.row(key).ok().flatten()
    }

    #[cfg(test)]
    pub(crate) fn blob_file(&self, key: &BlobKey) -> Option<PathBuf> {
        let st = self.shared.lock();
        st.ledger
            .peek(key)
            .map(|m| self.shared.blobs_dir().join(&m.file))
    }
}
