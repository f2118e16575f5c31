//! The [`Cache`] itself: opening and recovering the directory, lookups, flags, removal and the
//! shared state that [`Blob`] and [`Fill`] handles report back to. Working copies are in
//! [`crate::work`].

use crate::blob::Blob;
use crate::budget::{CacheStats, FreeReport, Meta};
use crate::dir;
use crate::error::CacheError;
use crate::fill::Fill;
use crate::index::Index;
use crate::key::{blob_file_name, BlobKey};
use crate::partial::PresentRanges;
use crate::state::State;
use crate::sync::{SyncJob, SyncTarget, Syncer};
use crate::work;
use std::fs::{self, File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A bounded on-disk cache of remote file content, keyed by [`BlobKey`].
///
/// Share it as `Arc<Cache>`. All bookkeeping sits behind one mutex that is never held while
/// blob data is read or written. The directory stays locked against other caches until the
/// `Cache` and every [`Blob`] and [`Fill`] it handed out are dropped.
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// State shared by the cache and its handles.
pub(crate) struct Inner {
    dir: PathBuf,
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
    /// Working copies of entries being edited (outside the budget, never evicted).
    work_dir: PathBuf,
    state: Mutex<State>,
    /// Bytes written so far by fills in progress.
    filling: AtomicU64,
    /// Source of unique temp file names.
    tmp_seq: AtomicU64,
    /// Syncs committed blobs to disk, then records them in the index.
    syncer: Syncer,
    /// Holds the directory's `flock` for the cache's lifetime.
    _lock: File,
}

impl Inner {
    /// Locks the bookkeeping; a poisoned lock is taken over (the state stays consistent
    /// between statements that could panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    pub(crate) fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub(crate) fn next_tmp_seq(&self) -> u64 {
        self.tmp_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add_filling(&self, bytes: u64) {
        self.filling.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn sub_filling(&self, bytes: u64) {
        // Saturating: never wrap even if accounting were off.
        let _ = self
            .filling
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }

    pub(crate) fn filling(&self) -> u64 {
        self.filling.load(Ordering::Relaxed)
    }

    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.blobs_dir
    }

    /// Deletes blob files (after the lock is released).
    pub(crate) fn unlink(&self, files: Vec<String>) {
        for name in files {
            let path = self.blobs_dir.join(&name);
            if let Err(err) = fs::remove_file(&path) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %err, "cache: deleting blob failed");
                }
            }
        }
    }

    /// Called when a [`Blob`] handle drops: one fewer open handle, then re-check the budget.
    pub(crate) fn release(&self, key: &BlobKey, token: u64) {
        let mut st = self.lock();
        let Some(meta) = st.ledger.peek_mut(key) else {
            return;
        };
        if meta.token != token {
            return;
        }
        meta.open = meta.open.saturating_sub(1);
        if meta.open > 0 {
            return;
        }
        let files = st.enforce_budget(self.filling());
        drop(st);
        self.unlink(files);
    }

    /// Moves a fully written file at `tmp_path` into `blobs/` as `key`, with `handles` open
    /// handles counted, usable at once. Its index row is left for
    /// [`Inner::index_when_synced`]: the blob survives a restart only once synced. Removes
    /// stale versions of the entry, enforces the budget and returns the handle token and the
    /// blob's file name. `fill_bytes` is what a fill counted in `filling` so far (0 for a
    /// working copy). If the index cannot drop an older row of `key`, the file is moved back
    /// to `tmp_path`.
    pub(crate) fn install(
        &self,
        key: &BlobKey,
        tmp_path: &Path,
        len: u64,
        fill_bytes: u64,
        handles: u32,
    ) -> Result<(u64, String), CacheError> {
        let mut st = self.lock();
        let pinned = st.pin_to_keep(key)?;
        let (file, path) = loop {
            let generation = st.next_id();
            let file = blob_file_name(key, generation);
            let path = self.blobs_dir.join(&file);
            match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => break (file, path),
                Err(e) => return Err(CacheError::io("stat", &path, e)),
                Ok(_) => continue,
            }
        };
        fs::rename(tmp_path, &path).map_err(|e| CacheError::io("rename", tmp_path, e))?;
        let last_used = st.tick();
        // A row of an older incarnation must not outlive this file's name.
        if let Err(err) = st.index.delete_many(std::slice::from_ref(key)) {
            if let Err(back) = fs::rename(&path, tmp_path) {
                tracing::warn!(path = %path.display(), err = %back, "cache: moving unindexed blob back failed");
                if let Err(rm) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), err = %rm, "cache: removing unindexed blob failed");
                }
            }
            return Err(err);
        }
        let token = st.next_id();
        let meta = Meta {
            len,
            file: file.clone(),
            token,
            pinned,
            dirty: false,
            open: handles,
            last_used,
        };
        let mut unlink = st.insert_blob(key, meta);
        self.sub_filling(fill_bytes);
        unlink.extend(st.settle_versions(key)?);
        unlink.extend(st.enforce_budget(self.filling()));
        drop(st);
        self.unlink(unlink);
        Ok((token, file))
    }

    /// Waits until every blob committed so far is synced and indexed.
    pub(crate) fn wait_synced(&self) {
        self.syncer.wait();
    }

    /// Has the committed blob `key` (in `blobs/` as `file_name`: a download, or an uploaded
    /// working copy) synced to disk on the sync thread, then recorded in the index with its
    /// flags and recency as they are then, if it is still cached under the same file.
    pub(crate) fn index_when_synced(self: &Arc<Self>, key: BlobKey, file_name: String) {
        self.syncer.submit(self, SyncJob { key, file_name });
    }

    /// Moves the blob `key` out of the cache to `dest` (a working copy) if nothing needs it in
    /// the cache: it is not open, pinned or dirty. Its row and bookkeeping are dropped, so it
    /// no longer counts as used. Fails with [`CacheError::WorkExists`] if `dest` exists.
    ///
    /// Runs under the lock, so no [`Cache::get`] can open the blob meanwhile.
    pub(crate) fn move_out(&self, key: &BlobKey, dest: &Path) -> Result<MoveOut, CacheError> {
        let mut st = self.lock();
        let Some(meta) = st.ledger.peek(key) else {
            return Ok(MoveOut::Missing);
        };
        if !meta.evictable() {
            return Ok(MoveOut::InUse);
        }
        let src = self.blobs_dir.join(&meta.file);
        let len = meta.len;
        match fs::symlink_metadata(dest) {
            Ok(_) => return Err(CacheError::WorkExists { entry: key.entry }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("stat", dest, e)),
        }
        let opened = dir::open_read_write(&src).and_then(|f| f.metadata().map(|m| (f, m.len())));
        let file = match opened {
            Ok((file, actual)) if actual == len => file,
            other => {
                match other {
                    Ok((_, actual)) => tracing::warn!(
                        path = %src.display(), expected = len, actual,
                        "cache: blob has the wrong length; dropping it"
                    ),
                    Err(err) => tracing::warn!(
                        path = %src.display(), %err, "cache: blob unreadable; dropping it"
                    ),
                }
                let unlink = st.drop_blobs(std::slice::from_ref(key));
                drop(st);
                self.unlink(unlink);
                return Ok(MoveOut::Missing);
            }
        };
        fs::rename(&src, dest).map_err(|e| CacheError::io("rename", &src, e))?;
        // The file is gone from `blobs/`: nothing to unlink. A row that failed to go is
        // dropped at the next open (its file is missing).
        let _moved = st.drop_blobs(std::slice::from_ref(key));
        drop(st);
        dir::sync_dir(&self.blobs_dir)?;
        Ok(MoveOut::Moved(file))
    }
}

/// What [`Inner::move_out`] did.
pub(crate) enum MoveOut {
    /// The blob file now is the working copy; here it is, open read+write.
    Moved(File),
    /// The blob is open, pinned or dirty: it stays cached (copy it instead).
    InUse,
    /// No such blob (or its file was broken and has been dropped).
    Missing,
}

impl SyncTarget for Inner {
    fn record_synced(&self, jobs: &[SyncJob]) {
        self.lock().index_synced(jobs);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(err) = st.flush_uses() {
            tracing::warn!(%err, "cache: saving recency failed");
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // A clean close keeps every committed download.
        self.inner.wait_synced();
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
        let wiped = work::remove_temps(&work_dir)?;
        if wiped > 0 {
            tracing::info!(
                count = wiped,
                "cache: discarded interrupted working copy copies"
            );
        }

        let db_path = dir.join("index.db");
        dir::ensure_private_file(&db_path)?;
        let index = Index::open(&db_path)?;
        let mut state = State::recover(index, limit_bytes, &blobs_dir)?;
        let evict = state.enforce_budget(0);
        let syncer = Syncer::new(blobs_dir.clone());
        let inner = Inner {
            dir: dir.to_path_buf(),
            blobs_dir,
            tmp_dir,
            work_dir,
            state: Mutex::new(state),
            filling: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
            syncer,
            _lock: lock,
        };
        inner.unlink(evict);
        Ok(Cache {
            inner: Arc::new(inner),
        })
    }

    /// The complete blob for `key`, opened for reading; counts as a use.
    ///
    /// The blob cannot be evicted while the returned handle (or any other for the key) lives.
    pub fn get(&self, key: &BlobKey) -> Option<Blob> {
        let mut st = self.inner.lock();
        let now = st.tick();
        let meta = st.ledger.touch(key)?;
        let path = self.inner.blobs_dir.join(&meta.file);
        let len = meta.len;
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        options.custom_flags(libc::O_NOFOLLOW);
        let opened = options
            .open(&path)
            .and_then(|f| f.metadata().map(|m| (f, m.len())));
        match opened {
            Ok((file, actual)) if actual == len => {
                meta.open += 1;
                meta.last_used = now;
                let token = meta.token;
                st.record_use(key);
                drop(st);
                Some(Blob::new(self.inner.clone(), key.clone(), token, file, len))
            }
            other => {
                match other {
                    Ok((_, actual)) => tracing::warn!(
                        path = %path.display(), expected = len, actual,
                        "cache: blob has the wrong length; dropping it"
                    ),
                    Err(err) => tracing::warn!(
                        path = %path.display(), %err, "cache: blob unreadable; dropping it"
                    ),
                }
                let unlink = st.drop_blobs(std::slice::from_ref(key));
                drop(st);
                self.inner.unlink(unlink);
                None
            }
        }
    }

    /// Whether a complete blob for `key` is cached (does not count as a use).
    pub fn contains(&self, key: &BlobKey) -> bool {
        self.inner.lock().ledger.peek(key).is_some()
    }

    /// Whether the complete blob for `key` is pinned, if cached (does not count as a use).
    pub fn cached_pinned(&self, key: &BlobKey) -> Option<bool> {
        self.inner.lock().ledger.peek(key).map(|m| m.pinned)
    }

    /// The length of the complete blob for `key`, if cached (does not count as a use).
    pub fn cached_len(&self, key: &BlobKey) -> Option<u64> {
        self.inner.lock().ledger.peek(key).map(|m| m.len)
    }

    /// The cached versions of `entry`, sorted.
    pub fn versions_of(&self, entry: u64) -> Vec<String> {
        self.inner.lock().ledger.versions(entry)
    }

    /// Starts writing the blob `key` of `expected_len` bytes into a new temp file.
    ///
    /// Nothing is visible to [`Cache::get`] until [`Fill::commit`]; dropping the fill discards it.
    pub fn begin_fill(&self, key: BlobKey, expected_len: u64) -> Result<Fill, CacheError> {
        Fill::create(self.inner.clone(), key, expected_len)
    }

    /// Takes `key`'s partial download, if there is one of `len` bytes, back into a fill
    /// (to be completed, or parked again); returns it with the ranges it holds.
    pub fn resume_fill(
        &self,
        key: &BlobKey,
        len: u64,
    ) -> Result<Option<(Fill, PresentRanges)>, CacheError> {
        Fill::resume(&self.inner, key, len)
    }

    /// Bytes present of `key`'s partial download, if there is one.
    pub fn partial_bytes(&self, key: &BlobKey) -> Option<u64> {
        self.inner.lock().partials.get(key).map(|p| p.covered)
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
            self.inner.wait_synced();
        }
        let mut st = self.inner.lock();
        let Some(changed) = st.set_flag(key, value, field, persist)? else {
            return Ok(false);
        };
        if changed && !value {
            let unlink = st.enforce_budget(self.inner.filling());
            drop(st);
            self.inner.unlink(unlink);
        }
        Ok(true)
    }

    /// Deletes the blob `key` regardless of recency or pin. Returns whether it existed.
    ///
    /// Refuses a dirty blob with [`CacheError::Dirty`]. Open handles keep reading the unlinked file.
    pub fn remove(&self, key: &BlobKey) -> Result<bool, CacheError> {
        let mut st = self.inner.lock();
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
        self.inner.unlink(unlink);
        Ok(true)
    }

    /// Deletes all versions of `entry` regardless of recency or pin; returns how many.
    ///
    /// If any version is dirty nothing is deleted and [`CacheError::Dirty`] is returned.
    pub fn remove_entry(&self, entry: u64) -> Result<usize, CacheError> {
        let mut st = self.inner.lock();
        let keys = st.clean_keys_of(entry)?;
        let partials = st.drop_partials_of(entry);
        self.inner.unlink(partials);
        let unlink = st.remove_blobs(&keys)?;
        drop(st);
        self.inner.unlink(unlink);
        Ok(keys.len())
    }

    /// Frees the cached content of `entries`: deletes their blobs unless dirty or open, and
    /// pinned ones only if `include_pinned`. Reports what was freed and what was kept.
    pub fn free(&self, entries: &[u64], include_pinned: bool) -> FreeReport {
        let (report, unlink) = self.inner.lock().free(entries, include_pinned);
        self.inner.unlink(unlink);
        report
    }

    /// Changes the byte limit and evicts down to it.
    pub fn set_limit(&self, limit_bytes: u64) {
        let mut st = self.inner.lock();
        st.ledger.set_limit(limit_bytes);
        let unlink = st.enforce_budget(self.inner.filling());
        drop(st);
        self.inner.unlink(unlink);
    }

    /// A snapshot of sizes and counts.
    pub fn stats(&self) -> CacheStats {
        let filling = self.inner.filling();
        self.inner.lock().stats(filling)
    }

    /// Syncs and indexes the downloads committed so far and writes recorded uses to the
    /// index now (otherwise done in the background, at most once a second, and when the
    /// cache is dropped).
    pub fn flush(&self) -> Result<(), CacheError> {
        self.inner.wait_synced();
        self.inner.lock().flush_uses()
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    #[cfg(test)]
    pub(crate) fn index_row(&self, key: &BlobKey) -> Option<crate::index::Row> {
        self.inner.lock().index.row(key).ok().flatten()
    }

    #[cfg(test)]
    pub(crate) fn blob_file(&self, key: &BlobKey) -> Option<PathBuf> {
        let st = self.inner.lock();
        st.ledger
            .peek(key)
            .map(|m| self.inner.blobs_dir.join(&m.file))
    }
}
