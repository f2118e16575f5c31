//! Listing folders: revalidating a folder's listing against the server (one listing at a
//! time per folder), looking names up, and reading folders page by page.

use super::*;

impl Drive {
    /// Makes sure folder `ino`'s children are known and no older than the listing TTL.
    /// A failed listing never removes anything: with an older listing at hand it is served
    /// (and the failure logged); without one the error is returned.
    pub(super) async fn ensure_listed(&self, ino: u64) -> Result<(), FsError> {
        self.list_if_older(ino, self.options.dir_cache_ttl, true)
            .await
            .map(|_| ())
    }

    /// Lists folder `ino` unless its listing is younger than `max_age` (or its last
    /// failure is recent); returns what the listing changed, `None` if none was taken.
    /// `in_use` records the folder as one the user works in (polled from then on).
    pub(super) async fn list_if_older(
        &self,
        ino: u64,
        max_age: Duration,
        in_use: bool,
    ) -> Result<Option<crate::meta::ListingChanges>, FsError> {
        if self.meta.is_excluded(ino)? {
            // Excluded on this device: never listed (see `excluded`).
            return Ok(None);
        }
        if in_use {
            self.note_recent(ino);
        }
        let fresh =
            |listed: Option<i64>| listed.is_some_and(|t| now_ms() - t < max_age.as_millis() as i64);
        let backing_off = |listed: Option<i64>| {
            listed.is_some()
                && lock(&self.listing_failures)
                    .get(&ino)
                    .is_some_and(|t| t.elapsed() < LISTING_RETRY)
        };
        let listed = self.meta.listed_at_ms(ino)?;
        if fresh(listed) || backing_off(listed) {
            return Ok(None);
        }
        let gate = lock(&self.listing_locks).entry(ino).or_default().clone();
        let _guard = gate.lock().await;
        let listed = self.meta.listed_at_ms(ino)?;
        if fresh(listed) || backing_off(listed) {
            return Ok(None);
        }
        let mut _tree = Some(self.uploader.tree_lock.read().await);
        let Some(path) = self.meta.remote_path_of(ino)? else {
            // Only local so far: nothing on the server to list.
            self.meta.mark_listed(ino)?;
            lock(&self.listing_locks).remove(&ino);
            return Ok(None);
        };
        let mut path = path;
        let mut result = self.list_staged(ino, &path).await;
        for _ in 0..40 {
            // The write-back may be moving this folder (or one above it) on the server
            // right now: follow it rather than fail.
            if !matches!(result, Err(RemoteError::NotFound)) {
                break;
            }
            match self.meta.remote_path_of(ino)? {
                Some(now) if now != path => path = now,
                Some(_) if self.meta.any_move_in_flight()? => {
                    // Without the tree lock, which the write-back needs to record it.
                    _tree = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    _tree = Some(self.uploader.tree_lock.read().await);
                }
                _ => break,
            }
            result = self.list_staged(ino, &path).await;
        }
        {
            let mut failures = lock(&self.listing_failures);
            if result.is_ok() {
                failures.remove(&ino);
            } else {
                failures.insert(ino, std::time::Instant::now());
            }
        }
        lock(&self.listing_locks).remove(&ino);
        match result {
            Ok((head, stage)) => {
                if !head.dir.is_dir {
                    self.meta.drop_stage(stage);
                    return Err(FsError::NotDir);
                }
                // Files open with a working copy may be written any moment: their base
                // version stays until they are closed.
                let held: std::collections::HashSet<u64> =
                    lock(&self.works).keys().copied().collect();
                let changes =
                    self.meta
                        .merge_staged(ino, stage, &head.dir, head.complete, &held)?;
                debug!(ino, %path, children = head.children, ?changes, "listed");
                drop(_tree);
                if let Some(give_back) = self.options.give_back_memory {
                    if head.children >= LARGE_FOLDER {
                        // Not on a runtime worker: trimming holds the allocator a moment.
                        tokio::task::spawn_blocking(give_back);
                    }
                }
                self.after_listing(ino, &changes);
                Ok(Some(changes))
            }
            Err(e) if listed.is_some() && !matches!(e, RemoteError::NotFound) => {
                warn!(%path, error = %e, "listing failed; serving the last known listing");
                Ok(None)
            }
            Err(e) => {
                warn!(%path, error = %e, "listing failed");
                Err(e.into())
            }
        }
    }

    /// Lists server folder `path` into a stage of the store, its children stored in
    /// batches as the reply is parsed (see [`crate::meta::Receiver`]).
    pub(super) async fn list_staged(
        &self,
        dir: u64,
        path: &RemotePath,
    ) -> Result<(ListingHead, crate::meta::Stage), RemoteError> {
        let receiver = crate::meta::Receiver::new(self.meta.clone());
        let sink = receiver.clone();
        let meta = self.meta.clone();
        let head = self
            .remote
            .list_each(
                path,
                Box::new(move |child| {
                    if is_work_name(&child.name) {
                        // An upload being staged, or a probe, by some edrive client.
                        return Ok(());
                    }
                    if child.name.starts_with(crate::sync::plan::MOVE_ASIDE_PREFIX)
                        && matches!(meta.occupant(dir, &child.name), Ok(None))
                    {
                        // Some edrive client's entry moved aside for a moment (a rename
                        // cycle): not shown; its maker knows it by this name.
                        return Ok(());
                    }
                    sink.push(child)
                        .map_err(|e| RemoteError::Local(e.to_string()))
                }),
            )
            .await?;
        let stage = receiver
            .finish()
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        Ok((head, stage))
    }

    /// Finds `name` in folder `parent`.
    #[instrument(level = "debug", skip(self))]
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        validate_name(name)?;
        let p = self.entry(parent)?;
        if !p.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(parent).await?;
        let e = self.meta.child(parent, name)?.ok_or(FsError::NotFound)?;
        // The kernel takes a file's size from here (an append writes at its end): find
        // a size the listing did not give before it is shown.
        let e = if e.size_known {
            e
        } else {
            match self.with_size(e.clone()).await {
                Ok(known) => known,
                Err(err) => {
                    debug!(ino = e.ino, error = %err, "size still unknown");
                    e
                }
            }
        };
        Ok(self.attr(&e))
    }

    /// `e` with its size known. A file the server listed without a usable size (see
    /// [`crate::remote::RemoteEntry::size_known`]) is never taken to be empty: its size
    /// is that of a cached copy of the same version, else what a GET finds (its
    /// `Content-Length`, or where its body really ends), recorded in the store. Folders,
    /// files with a known size and files with local changes come back as they are. Fails
    /// if the size cannot be found, and with [`FsError::Stale`] if the server has another
    /// version than the store (which then lists the folder again).
    pub(super) async fn with_size(&self, e: Entry) -> Result<Entry, FsError> {
        use futures_util::StreamExt;
        if e.size_known || e.is_dir() || e.dirty || self.has_working_copy(e.ino) {
            return Ok(e);
        }
        let cached = self
            .cache
            .cached_len(&BlobKey::new(e.ino, e.content_version()));
        let size = match cached {
            Some(n) => n,
            None => {
                let path = self.server_path(e.ino)?;
                let dl = self.remote.read(&path, None).await?;
                if let (Some(want), Some(got)) =
                    (&e.etag, e.etag.as_deref().and_then(|w| dl.version_for(w)))
                {
                    if *want != got.value {
                        let _ = self.meta.expire_listing(e.parent);
                        return Err(FsError::Stale);
                    }
                }
                match dl.len {
                    Some(n) => n,
                    None => {
                        let mut body = dl.body;
                        let mut n = 0u64;
                        while let Some(chunk) = body.next().await {
                            n += chunk?.len() as u64;
                        }
                        n
                    }
                }
            }
        };
        if self.meta.learn_size(e.ino, size, &e)? {
            debug!(ino = e.ino, size, "size found");
            // Whatever the kernel holds of it said 0.
            self.inval.inode(e.ino);
        }
        let now = self.entry(e.ino)?;
        if !now.size_known && !now.dirty {
            // Another version arrived meanwhile.
            return Err(FsError::Stale);
        }
        Ok(now)
    }

    /// Opens folder `ino` for listing, fetching its children if needed; page through it
    /// with [`Drive::readdir_page`].
    #[instrument(level = "debug", skip(self))]
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let e = self.entry(ino)?;
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(ino).await?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, ino);
        Ok(fh)
    }

    /// Up to `limit` children of the folder open as `fh` whose inode numbers are above
    /// `after` (0: from the start), in inode order, read from the store at each call so
    /// the attributes are current (the kernel keeps what a listing says for its TTL).
    /// Nothing is held between calls, so a folder of any size costs one page: an entry
    /// present from `opendir` to the last page is returned exactly once, whatever else
    /// changes (a rename within the folder keeps its inode); one added or removed on the
    /// way may or may not be, as POSIX allows.
    pub fn readdir_page(
        &self,
        fh: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DirEntry>, FsError> {
        let dir = *lock(&self.dirs).get(&fh).ok_or(FsError::BadHandle)?;
        let rows = self.meta.children_after(dir, after, limit)?;
        Ok(rows
            .into_iter()
            .map(|c| DirEntry {
                attr: self.attr(&c),
                name: c.name,
            })
            .collect())
    }

    /// Every child of folder `ino`, by name, fetched if needed (for callers that must
    /// sort or search the whole folder: a ProjFS enumeration, tests).
    pub async fn list_dir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let e = self.entry(ino)?;
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(ino).await?;
        // What working copies say is read first: the store is locked while the rows are
        // read.
        let working: HashMap<u64, WorkingAttrs> = lock(&self.works)
            .iter()
            .map(|(ino, (w, _))| (*ino, w.attrs()))
            .collect();
        let mut rows = Vec::new();
        self.meta.each_child(ino, |c| {
            let attr = self.attr_with(&c, working.get(&c.ino).copied());
            rows.push(DirEntry { name: c.name, attr });
        })?;
        Ok(rows)
    }

    /// Makes what was written in the tree durable (a folder's `fsync`): the metadata store
    /// and the working copies' folder.
    pub fn fsyncdir(&self) -> Result<(), FsError> {
        self.meta.sync_to_disk()?;
        self.cache.work_sync_dir()?;
        Ok(())
    }

    /// Forgets a folder handle.
    pub fn releasedir(&self, fh: u64) {
        let dir = lock(&self.dirs).remove(&fh);
        if let Some(ino) = dir {
            self.forget_orphan(ino);
        }
    }
}
