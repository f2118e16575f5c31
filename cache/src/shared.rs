//! [`Shared`]: what the cache and its [`crate::Blob`] and [`crate::Fill`] handles share. The
//! directories, the [`State`] behind its mutex, the bytes of fills in progress, the sync
//! thread and the directory's lock; and moving files into `blobs/` and out of it.

use crate::budget::Meta;
use crate::dir;
use crate::error::CacheError;
use crate::key::{blob_file_name, BlobKey};
use crate::state::State;
use crate::sync::{SyncJob, SyncTarget, Syncer};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// State shared by the cache and its handles.
pub(crate) struct Shared {
    dir: PathBuf,
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
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

impl Shared {
    /// The shared state of the cache in `dir` (locked by `lock`) with its subdirectories and
    /// the recovered `state`; enforces the budget right away.
    pub(crate) fn new(
        dir: &Path,
        blobs_dir: PathBuf,
        tmp_dir: PathBuf,
        mut state: State,
        lock: File,
    ) -> Shared {
        let evict = state.enforce_budget(0);
        let syncer = Syncer::new(blobs_dir.clone());
        let shared = Shared {
            dir: dir.to_path_buf(),
            blobs_dir,
            tmp_dir,
            state: Mutex::new(state),
            filling: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
            syncer,
            _lock: lock,
        };
        shared.unlink(evict);
        shared
    }

    /// Locks the bookkeeping; a poisoned lock is taken over (the state stays consistent
    /// between statements that could panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cache directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.blobs_dir
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
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

    /// Bytes written so far by fills in progress.
    pub(crate) fn filling(&self) -> u64 {
        self.filling.load(Ordering::Relaxed)
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

    /// Moves a fully written file at `tmp_path` into `blobs/` as `key`, with `handles` open
    /// handles counted, usable at once. Its index row is left for
    /// [`Shared::index_when_synced`]: the blob survives a restart only once synced. Removes
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
    /// Runs under the lock, so no [`crate::Cache::get`] can open the blob meanwhile.
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

/// What [`Shared::move_out`] did.
pub(crate) enum MoveOut {
    /// The blob file now is the working copy; here it is, open read+write.
    Moved(File),
    /// The blob is open, pinned or dirty: it stays cached (copy it instead).
    InUse,
    /// No such blob (or its file was broken and has been dropped).
    Missing,
}

impl SyncTarget for Shared {
    fn record_synced(&self, jobs: &[SyncJob]) {
        self.lock().index_synced(jobs);
    }
}

impl Drop for Shared {
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
