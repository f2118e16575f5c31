//! Opening and reading files: the handle, its content (cached, downloading or a working
//! copy), reads, and the release of a handle.

use super::*;

impl Drive {
    /// Opens file `ino` for reading. Returns at once: content is fetched in the background
    /// and reads wait only for the bytes they need.
    pub async fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64, FsError> {
        self.open_as(ino, write, truncate, &Opener::Person).await
    }

    /// Opens file `ino` for `opener`: as [`Drive::open`], but a background reader gets
    /// [`FsError::NotLocal`] instead of a download.
    #[instrument(level = "debug", skip(self))]
    pub async fn open_as(
        &self,
        ino: u64,
        write: bool,
        truncate: bool,
        opener: &Opener,
    ) -> Result<u64, FsError> {
        let e = self.entry(ino)?;
        if e.is_dir() {
            return Err(FsError::IsDir);
        }
        if write {
            self.may_change(&e)?;
        }
        self.check_opener(&e, opener, write, truncate)?;
        if write || self.has_working_copy(ino) {
            return self.open_working(&e, write, truncate && write).await;
        }
        let e = self.with_size(e).await?;
        let key = BlobKey::new(ino, e.content_version());
        let content = match self.cache.get(&key) {
            Some(blob) => Content::Cached(Arc::new(blob)),
            // An empty version needs no download.
            None if e.size == 0 => {
                Content::Cached(Arc::new(self.cache.begin_fill(key.clone(), 0)?.commit()?))
            }
            None => {
                let path = self.server_path(ino)?;
                let t = self
                    .hydrator
                    .start(key.clone(), path, e.size, e.etag.clone())?;
                Content::Hydrating(t)
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // Pages other handles bring in are shared: keep none if another handle reads
        // another version (or a working copy).
        let others_differ = lock(&self.files)
            .values()
            .any(|f| f.ino == ino && (f.writable || f.key.version != key.version));
        let same_as_last_open = self.note_open_version(ino, &key.version) && !others_differ;
        let file = OpenFile {
            ino,
            key,
            content: Mutex::new(content),
            writable: false,
            same_as_last_open,
            kernel_reads: false.into(),
            read_run: Mutex::default(),
        };
        lock(&self.files).insert(fh, Arc::new(file));
        Ok(fh)
    }

    /// Whether the kernel may keep the pages it cached of this file from earlier opens:
    /// `fh` reads a complete, clean cached version. Every change of a file's version
    /// drops those pages (the poller's and listings' invalidations; the kernel's own check
    /// of size and time), so they are never stale.
    pub fn keeps_cache(&self, fh: u64) -> bool {
        lock(&self.files).get(&fh).is_some_and(|f| f.keeps_cache())
    }

    /// Records that `ino` is opened on `version` now; whether its last open was on the
    /// same version (so what the kernel cached then is this version's content).
    pub(super) fn note_open_version(&self, ino: u64, version: &str) -> bool {
        let mut last = lock(&self.last_open_version);
        if last.len() >= 8192 && !last.contains_key(&ino) {
            // Bounded: forgetting costs only a re-read through FUSE.
            last.clear();
        }
        last.insert(ino, version.to_string()).as_deref() == Some(version)
    }

    /// Reads up to `size` bytes at `offset` from open file `fh`.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let file = lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        let data = self.read_file(&file, offset, size).await?;
        self.drop_behind(&file, offset, offset + data.len() as u64);
        Ok(data)
    }

    pub(super) async fn read_file(
        &self,
        file: &OpenFile,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        loop {
            let transfer = {
                let mut content = lock(&file.content);
                match &*content {
                    Content::Cached(blob) => return read_blob(blob, offset, size),
                    Content::Work(w) => return Ok(w.read(offset, size)?),
                    Content::Hydrating(t) => {
                        if let Some(blob) = t.blob() {
                            self.hydrator.release(t);
                            *content = Content::Cached(blob);
                            continue;
                        }
                        t.clone()
                    }
                }
            };
            match transfer.read(offset, size).await {
                Ok(data) => return Ok(data),
                Err(FsError::Stale) => {
                    // The server has a newer version: learn it now (the kernel may not
                    // ask for the name again before its TTL ends).
                    if let Ok(e) = self.entry(file.ino) {
                        let _ = self.list_if_older(e.parent, Duration::ZERO, false).await;
                    }
                    return Err(FsError::Stale);
                }
                Err(e) if !transfer.running() => {
                    // The download failed: this read fails; the next read tries again.
                    if transfer.blob().is_none() {
                        let e2 = self.restart_transfer(file);
                        if let Err(e2) = e2 {
                            warn!(error = %e2, "could not restart download");
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts another download of the version this handle was opened on. A handle never
    /// switches versions: if the server has another one now, it fails with `Stale`.
    pub(super) fn restart_transfer(&self, file: &OpenFile) -> Result<(), FsError> {
        let e = self.entry(file.ino)?;
        if e.content_version() != file.key.version {
            return Err(FsError::Stale);
        }
        let content = match self.cache.get(&file.key) {
            Some(blob) => Content::Cached(Arc::new(blob)),
            None => {
                let path = self.server_path(file.ino)?;
                let t = self
                    .hydrator
                    .start(file.key.clone(), path, e.size, e.etag.clone())?;
                Content::Hydrating(t)
            }
        };
        let old = std::mem::replace(&mut *lock(&file.content), content);
        if let Content::Hydrating(t) = old {
            self.hydrator.release(&t);
        }
        Ok(())
    }

    /// Closes file handle `fh`; its content becomes evictable once no handle holds it.
    /// A written file's size and time are recorded and its upload is scheduled.
    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let (file, alone) = {
            let mut files = lock(&self.files);
            let Some(file) = files.remove(&fh) else {
                return Ok(());
            };
            let alone = !files.values().any(|f| f.ino == file.ino);
            (file, alone)
        };
        {
            // A handle on another version than the file's last open may have put its
            // pages in the kernel's cache: nobody may keep them.
            let mut last = lock(&self.last_open_version);
            if last.get(&file.ino) != Some(&file.key.version) {
                last.remove(&file.ino);
                self.inval.inode(file.ino);
            } else if alone && self.next_open_by_kernel(&file) && file.read_through_daemon() {
                // The kernel drops an inode's pages when it opens it in passthrough mode,
                // and for a large file that takes a while (0.15 s a GiB): drop the pages
                // this reader brought in now, in the background, not in the next open.
                self.inval.inode(file.ino);
            }
        }
        self.forget_orphan(file.ino);
        let work = {
            let content = lock(&file.content);
            match &*content {
                Content::Hydrating(t) => {
                    self.hydrator.release(t);
                    None
                }
                Content::Work(w) => Some(w.clone()),
                Content::Cached(_) => None,
            }
        };
        match work {
            Some(w) => self.release_working(&file, w),
            None => Ok(()),
        }
    }

    /// Whether the next read-only open of the file `file` (its last handle, just closed)
    /// is likely served by the kernel: it read through the daemon a version now cached
    /// whole, and the kernel serves reads on this mount.
    pub(super) fn next_open_by_kernel(&self, file: &OpenFile) -> bool {
        if file.writable
            || file.kernel_reads.load(Ordering::SeqCst)
            || !self.kernel_reads_on.load(Ordering::SeqCst)
        {
            return false;
        }
        match &*lock(&file.content) {
            Content::Cached(_) => true,
            Content::Hydrating(t) => t.blob().is_some(),
            Content::Work(_) => false,
        }
    }
}

pub(super) fn read_blob(blob: &Blob, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
    let len = blob.len();
    if offset >= len {
        return Ok(Vec::new());
    }
    let n = (size as u64).min(len - offset) as usize;
    let mut buf = vec![0u8; n];
    let got = blob.read_at(&mut buf, offset)?;
    buf.truncate(got);
    Ok(buf)
}
