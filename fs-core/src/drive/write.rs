//! The drive's write operations. Each records its change in the metadata store (and its
//! content in the cache's working copy) before it returns, so what the kernel is told
//! succeeded survives a crash of the daemon; the write-back uploads it later.

use std::sync::Arc;
use std::time::SystemTime;

use edrive_cache::BlobKey;
use tracing::{debug, instrument, warn};

use super::{lock, Attr, Content, Drive, OpenFile, Working};
use crate::error::FsError;
use crate::meta::{Entry, LocalAttrs};
use crate::remote::validate_name;

/// What `setattr` changes; `None` leaves it.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    /// Truncate or extend to this size.
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
    /// New access time.
    pub atime: Option<SystemTime>,
    /// New permission bits.
    pub mode: Option<u32>,
}

impl Drive {
    /// Whether `ino` has a local working copy (dirty, or in use by a writer).
    pub(super) fn has_working_copy(&self, ino: u64) -> bool {
        lock(&self.works).contains_key(&ino) || self.cache.work_path(ino).exists()
    }

    /// Opens a handle on the working copy of `e`, creating it first: from nothing when
    /// truncating or empty, else from the complete content (hydrated fully if needed).
    pub(super) async fn open_working(
        &self,
        e: &Entry,
        write: bool,
        truncate: bool,
    ) -> Result<u64, FsError> {
        let _intent = self.intend_writing(e.ino).await?;
        let w = self.attach_working(e, truncate, write).await?;
        if truncate && w.size_and_mtime().0 != 0 {
            w.set_len(0)?;
            self.mark_dirty(&w)?;
        } else if truncate {
            self.mark_dirty(&w)?;
        }
        Ok(self.new_handle(e, w, write))
    }

    fn new_handle(&self, e: &Entry, w: Arc<Working>, writable: bool) -> u64 {
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = OpenFile {
            ino: e.ino,
            key: BlobKey::new(e.ino, e.content_version()),
            content: std::sync::Mutex::new(Content::Work(w)),
            writable,
            same_as_last_open: false,
            kernel_reads: false.into(),
            read_run: std::sync::Mutex::default(),
        };
        // Whatever the kernel caches from here on is the working copy's.
        self.note_open_version(e.ino, "");
        lock(&self.files).insert(fh, Arc::new(file));
        fh
    }

    /// The working copy of `e` in use, or a new one; counts one more user (and one more
    /// writer if `write`). A writer never writes into a file an upload is reading: the
    /// working copy is forked first.
    async fn attach_working(
        &self,
        e: &Entry,
        truncate: bool,
        write: bool,
    ) -> Result<Arc<Working>, FsError> {
        let _gate = self.work_gate.lock().await;
        {
            let _work = self.activity.lock_work();
            let forked = write && self.cache.work_fork(e.ino)?;
            if let Some((w, n)) = lock(&self.works).get_mut(&e.ino) {
                if forked {
                    // Handles open before keep reading the snapshot; this one and later
                    // ones use the copy.
                    let f = self.cache.work_open(e.ino)?.ok_or_else(|| {
                        FsError::Io(std::io::Error::other("working copy vanished"))
                    })?;
                    let (len, mtime) = w.size_and_mtime();
                    let fork = Working::new(e.ino, f, len, mtime, w.dirty_recorded());
                    fork.set_ctime(w.ctime());
                    *w = Arc::new(fork);
                }
                *n += 1;
                self.activity.working_handle(e.ino, true);
                if write {
                    self.activity.writer_opened(e.ino);
                }
                return Ok(w.clone());
            }
        }
        for _attempt in 0..3 {
            // Read again each time: an upload may have just published a new version.
            let mut e = self.entry(e.ino)?;
            if !truncate {
                // Its content is kept: never taken to be empty for want of a size.
                let parent = e.parent;
                e = match self.with_size(e).await {
                    Err(FsError::Stale) => {
                        self.ensure_listed(parent).await?;
                        continue;
                    }
                    r => r?,
                };
            }
            let e = &e;
            let mtime = e.mtime.unwrap_or(SystemTime::UNIX_EPOCH);
            let needs_content = !truncate
                && e.size > 0
                && !self.cache.work_path(e.ino).exists()
                && !self
                    .cache
                    .contains(&BlobKey::new(e.ino, e.content_version()));
            if needs_content {
                match self.hydrate_fully(e).await {
                    Ok(()) => {}
                    Err(FsError::Stale) => {
                        // The server has a newer version than we knew: learn it, retry.
                        self.ensure_listed(e.parent).await?;
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
            let _work = self.activity.lock_work();
            if write {
                self.cache.work_fork(e.ino)?;
            }
            let opened = if let Some(f) = self.cache.work_open(e.ino)? {
                let len = f.metadata()?.len();
                // Whether the store says dirty is checked again at the first write.
                Some(Working::new(e.ino, f, len, mtime, false))
            } else if truncate || e.size == 0 {
                let f = self.cache.work_create_empty(e.ino)?;
                Some(Working::new(e.ino, f, 0, mtime, false))
            } else {
                match self
                    .cache
                    .checkout(&BlobKey::new(e.ino, e.content_version()))
                {
                    Ok(f) => {
                        let len = f.metadata()?.len();
                        Some(Working::new(e.ino, f, len, mtime, false))
                    }
                    // Evicted between download and checkout: fetch again.
                    Err(edrive_cache::CacheError::NotFound { .. }) => None,
                    Err(err) => return Err(err.into()),
                }
            };
            if let Some(w) = opened {
                let w = Arc::new(w);
                lock(&self.works).insert(e.ino, (w.clone(), 1));
                self.activity.working_handle(e.ino, true);
                if write {
                    self.activity.writer_opened(e.ino);
                }
                return Ok(w);
            }
        }
        Err(FsError::Io(std::io::Error::other(
            "the file's content could not be kept in the cache (cache too small?)",
        )))
    }

    /// Downloads the whole current version of `e` into the cache.
    async fn hydrate_fully(&self, e: &Entry) -> Result<(), FsError> {
        let key = BlobKey::new(e.ino, e.content_version());
        let path = self.server_path(e.ino)?;
        let t = self.hydrator.start(key, path, e.size, e.etag.clone())?;
        let r = t.wait().await;
        self.hydrator.release(&t);
        r
    }

    /// One user fewer of `ino`'s working copy; the last one drops it from memory.
    fn detach_working(&self, ino: u64) {
        let mut works = lock(&self.works);
        if let Some((_, n)) = works.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                works.remove(&ino);
            }
        }
        drop(works);
        self.activity.working_handle(ino, false);
    }

    /// Records `w` as dirty in the store (once) and tells the write-back.
    fn mark_dirty(&self, w: &Working) -> Result<(), FsError> {
        if !w.dirty_recorded() {
            self.record_dirty(w)?;
            w.set_dirty_recorded();
        }
        self.activity.changed(w.ino);
        Ok(())
    }

    /// Records `w`'s size and time in the store, if it is recorded as dirty.
    fn persist(&self, w: &Working) -> Result<(), FsError> {
        if w.dirty_recorded() {
            self.record_dirty(w)?;
        }
        Ok(())
    }

    /// Writes `w`'s size, times and dirty flag to the store, unless it wrote the same
    /// ones last time (a close records them at the flush, then again at the release).
    fn record_dirty(&self, w: &Working) -> Result<(), FsError> {
        let _one_at_a_time = w.recording();
        let (now, recorded) = w.to_record();
        if recorded && w.dirty_recorded() {
            return Ok(());
        }
        self.meta.set_local(
            w.ino,
            &LocalAttrs {
                size: Some(now.len),
                mtime: Some(now.mtime),
                ctime: now.ctime,
                dirty: Some(true),
                ..Default::default()
            },
        )?;
        w.set_recorded(&now);
        Ok(())
    }

    pub(super) fn release_working(&self, file: &OpenFile, w: Arc<Working>) -> Result<(), FsError> {
        let r = self.persist(&w);
        if file.writable {
            self.activity.writer_closed(file.ino);
        }
        self.detach_working(file.ino);
        if !lock(&self.works).contains_key(&file.ino) {
            match self.meta.get(file.ino)? {
                // Deleted while open: its content goes with the last handle.
                None => self.drop_content(file.ino),
                // Opened for writing, never written: the copy goes back to the cache as
                // the clean version it is, so a later version from the server is not
                // hidden behind it.
                Some(e) if !w.dirty_recorded() && !e.dirty && e.remote.is_some() => {
                    let _work = self.activity.lock_work();
                    if !lock(&self.works).contains_key(&file.ino) {
                        if let Err(err) = self.cache.adopt(file.ino, &e.content_version()) {
                            debug!(ino = file.ino, error = %err, "unwritten working copy not kept");
                            let _ = self.cache.work_remove(file.ino);
                        }
                    }
                }
                Some(_) => {}
            }
        }
        r
    }

    fn handle(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
        lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    fn handle_working(&self, fh: u64) -> Result<(Arc<OpenFile>, Arc<Working>), FsError> {
        let file = self.handle(fh)?;
        let w = match &*lock(&file.content) {
            Content::Work(w) => w.clone(),
            _ => return Err(FsError::NotWritable),
        };
        Ok((file, w))
    }

    /// Writes `data` at `offset` through handle `fh`.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let (file, w) = self.handle_working(fh)?;
        if !file.writable {
            return Err(FsError::NotWritable);
        }
        w.write(offset, data)?;
        self.mark_dirty(&w)?;
        Ok(data.len() as u32)
    }

    /// `close()` of one descriptor: records size and time so a crash after it loses
    /// nothing (the data itself is in the working copy already).
    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        match self.handle_working(fh) {
            Ok((_, w)) => self.persist(&w),
            Err(FsError::NotWritable) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `fsync`: the content and the store's record of it are on disk when this returns.
    pub fn fsync(&self, fh: u64) -> Result<(), FsError> {
        match self.handle_working(fh) {
            Ok((_, w)) => {
                w.sync()?;
                self.cache.work_sync_dir()?;
                self.persist(&w)?;
                self.meta.sync_to_disk()?;
                Ok(())
            }
            Err(FsError::NotWritable) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Changes size, times or mode of `ino`; its change time becomes now. Times before
    /// 1970 are kept as they are; times beyond what the store holds (before 1677, after
    /// 2262) are clamped to its range.
    #[instrument(level = "debug", skip(self))]
    pub async fn setattr(&self, ino: u64, mut set: SetAttr) -> Result<Attr, FsError> {
        set.mtime = set.mtime.map(crate::meta::storable_time);
        set.atime = set.atime.map(crate::meta::storable_time);
        let e = self.entry(ino)?;
        if let Some(size) = set.size {
            if e.is_dir() {
                return Err(FsError::IsDir);
            }
            self.may_change(&e)?;
            let intent = self.intend_writing(ino).await?;
            let w = self.attach_working(&e, size == 0, true).await?;
            drop(intent);
            let r = (|| {
                w.set_len(size)?;
                self.mark_dirty(&w)?;
                self.persist(&w)
            })();
            self.activity.writer_closed(ino);
            self.detach_working(ino);
            r?;
        }
        if set.mtime.is_some() || set.atime.is_some() || set.mode.is_some() {
            if let (Some(t), Some((w, _))) = (set.mtime, lock(&self.works).get(&ino)) {
                w.set_mtime(t);
            }
            self.meta.set_local(
                ino,
                &LocalAttrs {
                    mtime: set.mtime,
                    atime: set.atime,
                    ctime: Some(SystemTime::now()),
                    mode: set.mode,
                    ..Default::default()
                },
            )?;
        }
        self.getattr(ino)
    }

    async fn absent(&self, parent: u64, name: &str) -> Result<(), FsError> {
        validate_name(name)?;
        let p = self.entry(parent)?;
        if !p.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(parent).await?;
        if self.meta.child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        Ok(())
    }

    /// Creates and opens file `name` in `parent`.
    #[instrument(level = "debug", skip(self))]
    pub async fn create(&self, parent: u64, name: &str, mode: u32) -> Result<(Attr, u64), FsError> {
        self.may_add_in(parent)?;
        self.absent(parent, name).await?;
        let now = SystemTime::now();
        let e = {
            let _plan = self.activity.lock_plan();
            let e = self
                .meta
                .create(parent, name, false, Some(mode & 0o7777), now)?;
            self.activity.writer_opened(e.ino);
            e
        };
        self.touch_folders(&[parent], now);
        let w = {
            let _gate = self.work_gate.lock().await;
            let _work = self.activity.lock_work();
            let f = self.cache.work_create_empty(e.ino)?;
            let w = Arc::new(Working::new(
                e.ino,
                f,
                0,
                e.mtime.unwrap_or(SystemTime::UNIX_EPOCH),
                true,
            ));
            lock(&self.works).insert(e.ino, (w.clone(), 1));
            self.activity.working_handle(e.ino, true);
            w
        };
        self.activity.changed(e.ino);
        let fh = self.new_handle(&e, w, true);
        Ok((self.attr(&e), fh))
    }

    /// Creates folder `name` in `parent`.
    #[instrument(level = "debug", skip(self))]
    pub async fn mkdir(&self, parent: u64, name: &str, mode: u32) -> Result<Attr, FsError> {
        self.may_add_in(parent)?;
        self.absent(parent, name).await?;
        let now = SystemTime::now();
        let e = self
            .meta
            .create(parent, name, true, Some(mode & 0o7777), now)?;
        self.touch_folders(&[parent], now);
        self.activity.changed(e.ino);
        Ok(self.attr(&e))
    }

    /// Shows a change among the children of folders `parents`: their modification and
    /// change times become `now`. Local attributes only; the change itself is already
    /// recorded, so a failure here is logged, not returned.
    fn touch_folders(&self, parents: &[u64], now: SystemTime) {
        if let Err(e) = self.meta.touch_folders(parents, now) {
            warn!(error = %e, "could not record a folder's new times");
        }
    }

    async fn existing(&self, parent: u64, name: &str) -> Result<Entry, FsError> {
        validate_name(name)?;
        let p = self.entry(parent)?;
        if !p.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(parent).await?;
        self.meta.child(parent, name)?.ok_or(FsError::NotFound)
    }

    /// Forgets the content of a removed entry, unless a handle still uses it.
    fn drop_content(&self, ino: u64) {
        if !lock(&self.works).contains_key(&ino) {
            // A tombstone whose last upload a crash may have cut short keeps that upload's
            // base: its DELETE needs it to tell our own version from someone else's.
            let keep_base =
                matches!(self.meta.get_any(ino), Ok(Some(e)) if e.deleted && e.put_started);
            let r = if keep_base {
                self.cache.work_remove_keep_base(ino)
            } else {
                self.cache.work_remove(ino)
            };
            if let Err(e) = r {
                warn!(ino, error = %e, "could not delete a removed file's working copy");
            }
        }
        let _ = self.cache.remove_entry(ino);
    }

    /// Deletes file `name` in `parent`.
    #[instrument(level = "debug", skip(self))]
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let e = self.existing(parent, name).await?;
        if e.is_dir() {
            return Err(FsError::IsDir);
        }
        self.may_remove(&e)?;
        let attr = self.attr(&e);
        // Not while the write-back records an operation on the server (it would miss
        // that this entry is gone).
        let _tree = self.uploader.tree_lock.read().await;
        self.meta.remove_local(e.ino)?;
        self.orphan_if_open(attr);
        self.touch_folders(&[parent], SystemTime::now());
        self.drop_content(e.ino);
        self.activity.changed(e.ino);
        Ok(())
    }

    /// Deletes empty folder `name` in `parent`.
    #[instrument(level = "debug", skip(self))]
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let e = self.existing(parent, name).await?;
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        self.may_remove(&e)?;
        self.ensure_listed(e.ino).await?;
        if !self.meta.children(e.ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        let attr = self.attr(&e);
        let _tree = self.uploader.tree_lock.read().await;
        self.meta.remove_local(e.ino)?;
        self.orphan_if_open(attr);
        self.touch_folders(&[parent], SystemTime::now());
        self.activity.changed(e.ino);
        Ok(())
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing a compatible
    /// target unless `no_replace`.
    #[instrument(level = "debug", skip(self))]
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let e = self.existing(parent, name).await?;
        validate_name(new_name)?;
        self.may_remove(&e)?;
        self.may_add_in(new_parent)?;
        let np = self.entry(new_parent)?;
        if !np.is_dir() {
            return Err(FsError::NotDir);
        }
        if e.is_dir() && self.meta.is_within(new_parent, e.ino)? {
            return Err(FsError::Invalid("a folder cannot move into itself"));
        }
        self.ensure_listed(new_parent).await?;
        let target = self.meta.child(new_parent, new_name)?;
        let replaced = match target {
            Some(t) if t.ino == e.ino => return Ok(()),
            Some(_) if no_replace => return Err(FsError::Exists),
            Some(t) if t.is_dir() && !e.is_dir() => return Err(FsError::IsDir),
            Some(t) if !t.is_dir() && e.is_dir() => return Err(FsError::NotDir),
            Some(t) if t.is_dir() => {
                self.ensure_listed(t.ino).await?;
                if !self.meta.children(t.ino)?.is_empty() {
                    return Err(FsError::NotEmpty);
                }
                Some(t)
            }
            Some(t) => Some(t),
            None => None,
        };
        if let Some(t) = &replaced {
            self.may_remove(t)?;
        }
        let replaced_attr = replaced.as_ref().map(|t| self.attr(t));
        let replaced = replaced.map(|t| t.ino);
        let _tree = self.uploader.tree_lock.read().await;
        self.meta
            .rename_local(e.ino, new_parent, new_name, replaced)?;
        let now = SystemTime::now();
        self.touch_folders(&[parent, new_parent], now);
        if let Err(err) = self.meta.set_local(
            e.ino,
            &LocalAttrs {
                ctime: Some(now),
                ..Default::default()
            },
        ) {
            warn!(error = %err, "could not record a moved entry's change time");
        }
        if let Some(a) = replaced_attr {
            self.orphan_if_open(a);
        }
        if let Some(r) = replaced {
            self.drop_content(r);
            self.activity.changed(r);
        }
        self.activity.changed(e.ino);
        Ok(())
    }
}
