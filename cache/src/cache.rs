//! The [`Cache`] itself: opening and recovering the directory, lookups, flags, removal and the
//! shared state that [`Blob`] and [`Fill`] handles report back to. Working copies are in
//! [`crate::work`].

use crate::blob::Blob;
use crate::budget::{CacheStats, FreeReport, Ledger, Meta};
use crate::dir;
use crate::error::CacheError;
use crate::fill::Fill;
use crate::index::{Index, Row};
use crate::key::{blob_file_generation, blob_file_name, BlobKey};
use crate::partial::{self, Partial};
use crate::sync::{SyncJob, SyncTarget, Syncer};
use crate::work;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often recorded uses are written to the index at most (besides on drop and `flush`).
const USE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

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

/// Bookkeeping behind the mutex.
pub(crate) struct State {
    pub(crate) index: Index,
    ledger: Ledger,
    /// Partial downloads kept for later (see [`crate::partial`]).
    pub(crate) partials: HashMap<BlobKey, Partial>,
    /// Bytes present in `partials`.
    pub(crate) partial_bytes: u64,
    /// The use counter: every use and commit takes the next value.
    clock: u64,
    /// Source of blob file generations and handle tokens.
    next_id: u64,
    /// Keys whose `last_used` changed since the last write to the index.
    pending_uses: HashSet<BlobKey>,
    last_flush: Instant,
}

impl State {
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Drops the rows and bookkeeping of `keys`; returns their file names to unlink once the
    /// lock is released. Index failures are logged: a row whose file is gone is dropped at the
    /// next open anyway.
    fn drop_blobs(&mut self, keys: &[BlobKey]) -> Vec<String> {
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

    /// Evicts partial downloads, then least recently used evictable blobs, until the
    /// budget holds (counting `filling_bytes` of fills in progress); returns file names to
    /// unlink.
    pub(crate) fn enforce_budget(&mut self, filling_bytes: u64) -> Vec<String> {
        let budgeted = self.ledger.budgeted().saturating_add(filling_bytes);
        let mut files = self.evict_partials(budgeted, self.ledger.limit());
        let filling_bytes = filling_bytes.saturating_add(self.partial_bytes);
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

    /// Writes pending `last_used` values to the index.
    fn flush_uses(&mut self) -> Result<(), CacheError> {
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
        let pinned = match st.ledger.peek(key) {
            Some(old) if old.dirty => {
                return Err(CacheError::Dirty {
                    entry: key.entry,
                    version: key.version.clone(),
                })
            }
            Some(old) => old.pinned,
            None => false,
        };
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
        // A complete version makes every partial download of the entry useless.
        let mut unlink = st.drop_partials_of(key.entry);
        st.pending_uses.remove(key);
        if let Some(old) = st.ledger.insert(key.clone(), meta) {
            unlink.push(old.file);
        }
        self.sub_filling(fill_bytes);

        // A pin belongs to the file, not to one version: the new version takes it over
        // from the ones it replaces, which become ordinary stale versions.
        let mut pinned_before = Vec::new();
        for version in st.ledger.versions(key.entry) {
            let other = BlobKey::new(key.entry, version);
            if other != *key && st.ledger.peek(&other).is_some_and(|m| m.pinned) {
                pinned_before.push(other);
            }
        }
        if !pinned_before.is_empty() {
            st.index.set_pinned(key, true)?;
            st.ledger.set_pinned(key, true);
            for other in &pinned_before {
                st.index.set_pinned(other, false)?;
                st.ledger.set_pinned(other, false);
            }
        }

        // Other versions of the entry are stale: drop the ones nothing needs, and make the
        // open-but-clean ones the first to go once closed.
        let mut stale = Vec::new();
        for version in st.ledger.versions(key.entry) {
            if version == key.version {
                continue;
            }
            let other = BlobKey::new(key.entry, version);
            let Some(meta) = st.ledger.peek(&other) else {
                continue;
            };
            if meta.evictable() {
                stale.push(other);
            } else if !meta.pinned && !meta.dirty {
                st.ledger.demote(&other);
            }
        }
        unlink.extend(st.drop_blobs(&stale));
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
    /// Writes the index rows of the synced `jobs` with the flags and recency they have now,
    /// if they are still cached under the same file.
    fn record_synced(&self, jobs: &[SyncJob]) {
        let mut st = self.lock();
        let rows: Vec<Row> = jobs
            .iter()
            .filter_map(|job| {
                let meta = st
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
        if let Err(err) = st.index.upsert_many(&rows) {
            tracing::warn!(%err, blobs = rows.len(), "cache: indexing synced blobs failed");
        }
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
        let mut index = Index::open(&db_path)?;

        let mut ledger = Ledger::new(limit_bytes);
        let mut bad = Vec::new();
        let mut files = HashSet::new();
        let mut rows = Vec::new();
        for row in index.load()? {
            match row {
                Ok(row) if Self::row_is_valid(&blobs_dir, &row, &files) => {
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

        let mut partials = HashMap::new();
        let mut partial_bytes = 0;
        let mut bad = Vec::new();
        for row in index.load_partials()? {
            match row {
                Ok(row)
                    if !files.contains(&row.file)
                        && partial::partial_row_is_valid(&blobs_dir, &row) =>
                {
                    files.insert(row.file.clone());
                    let covered = partial::covered(&row.ranges);
                    partial_bytes += covered;
                    partials.insert(
                        row.key,
                        Partial {
                            file: row.file,
                            len: row.len,
                            ranges: row.ranges,
                            covered,
                            last_used: row.last_used,
                        },
                    );
                }
                Ok(row) => bad.push(row.key),
                Err(key) => bad.push(key),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                count = bad.len(),
                "cache: dropping partial download rows without a valid file"
            );
            index.delete_partials(&bad)?;
        }

        let mut orphans = 0;
        for entry in fs::read_dir(&blobs_dir).map_err(|e| CacheError::io("list", &blobs_dir, e))? {
            let entry = entry.map_err(|e| CacheError::io("list", &blobs_dir, e))?;
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

        let mut state = State {
            index,
            ledger,
            partials,
            partial_bytes,
            clock,
            next_id,
            pending_uses: HashSet::new(),
            last_flush: Instant::now(),
        };
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
                st.pending_uses.insert(key.clone());
                if st.last_flush.elapsed() >= USE_FLUSH_INTERVAL {
                    if let Err(err) = st.flush_uses() {
                        tracing::warn!(%err, "cache: saving recency failed");
                    }
                }
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
        let Some(meta) = st.ledger.peek_mut(key) else {
            return Ok(false);
        };
        if *field(meta) == value {
            return Ok(true);
        }
        persist(&st.index, key, value)?;
        st.ledger.update(key, |meta| *field(meta) = value);
        if value {
            return Ok(true);
        }
        let unlink = st.enforce_budget(self.inner.filling());
        drop(st);
        self.inner.unlink(unlink);
        Ok(true)
    }

    /// Deletes the blob `key` regardless of recency or pin. Returns whether it existed.
    ///
    /// Refuses a dirty blob with [`CacheError::Dirty`]. Open handles keep reading the unlinked file.
    pub fn remove(&self, key: &BlobKey) -> Result<bool, CacheError> {
        let st = self.inner.lock();
        let Some(meta) = st.ledger.peek(key) else {
            return Ok(false);
        };
        if meta.dirty {
            return Err(CacheError::Dirty {
                entry: key.entry,
                version: key.version.clone(),
            });
        }
        self.remove_locked(st, std::slice::from_ref(key))?;
        Ok(true)
    }

    /// Deletes all versions of `entry` regardless of recency or pin; returns how many.
    ///
    /// If any version is dirty nothing is deleted and [`CacheError::Dirty`] is returned.
    pub fn remove_entry(&self, entry: u64) -> Result<usize, CacheError> {
        let st = self.inner.lock();
        let keys: Vec<BlobKey> = st
            .ledger
            .versions(entry)
            .into_iter()
            .map(|version| BlobKey::new(entry, version))
            .collect();
        if let Some(dirty) = keys
            .iter()
            .find(|k| st.ledger.peek(k).is_some_and(|m| m.dirty))
        {
            return Err(CacheError::Dirty {
                entry,
                version: dirty.version.clone(),
            });
        }
        let mut st = st;
        let partials = st.drop_partials_of(entry);
        self.inner.unlink(partials);
        self.remove_locked(st, &keys)?;
        Ok(keys.len())
    }

    /// Deletes `keys` (index first, so a failure changes nothing), then unlinks their files.
    fn remove_locked(
        &self,
        mut st: MutexGuard<'_, State>,
        keys: &[BlobKey],
    ) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        st.index.delete_many(keys)?;
        let unlink: Vec<String> = keys
            .iter()
            .filter_map(|key| {
                st.pending_uses.remove(key);
                st.ledger.remove(key).map(|m| m.file)
            })
            .collect();
        drop(st);
        self.inner.unlink(unlink);
        Ok(())
    }

    /// Frees the cached content of `entries`: deletes their blobs unless dirty or open, and
    /// pinned ones only if `include_pinned`. Reports what was freed and what was kept.
    pub fn free(&self, entries: &[u64], include_pinned: bool) -> FreeReport {
        let mut st = self.inner.lock();
        let mut report = FreeReport::default();
        let mut victims = Vec::new();
        let mut seen = HashSet::new();
        for &entry in entries {
            if !seen.insert(entry) {
                continue;
            }
            for version in st.ledger.versions(entry) {
                let key = BlobKey::new(entry, version);
                let Some(meta) = st.ledger.peek(&key) else {
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
        let mut unlink = st.drop_blobs(&victims);
        for &entry in &seen {
            unlink.extend(st.drop_partials_of(entry));
        }
        drop(st);
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
        let st = self.inner.lock();
        let mut stats = st.ledger.stats(filling.saturating_add(st.partial_bytes));
        stats.filling_bytes = filling;
        stats.partial_bytes = st.partial_bytes;
        stats
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
    pub(crate) fn index_row(&self, key: &BlobKey) -> Option<Row> {
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
