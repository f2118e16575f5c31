//! Uploading one file: its local source, the streamed body with progress, the conditional
//! PUT and its retries, and recording what the server now holds.

use super::*;

impl Uploader {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload(
        &self,
        ino: u64,
        path: RemotePath,
        parent: u64,
        name: String,
        base: Option<crate::remote::ETag>,
        create: bool,
        replaces: Option<u64>,
    ) -> Outcome {
        let _flight = InFlight::new(&self.in_flight, ino);
        let Ok(Some(mut entry)) = self.meta.get(ino) else {
            return Outcome::Done;
        };
        let changes = self.activity.changes(ino);
        // What an upload cut short by a crash was sending, for recognising it below.
        let previous = if entry.put_started {
            self.cache.work_base(ino).ok().flatten()
        } else {
            None
        };
        if let Some(prev) = &previous {
            // Settled before this attempt's snapshot replaces that base: however many
            // attempts are cut short in a row, the server's state stays recognisable.
            match self.recognise_cut_upload(&entry, &path, prev).await {
                Ok(true) => match self.meta.get(ino) {
                    Ok(Some(e)) => entry = e,
                    _ => return Outcome::Done,
                },
                Ok(false) => {}
                Err(e) => return self.failed(ino, &path, e),
            }
        }
        let source = match self.source(&entry) {
            Ok(Some(s)) => s,
            Ok(None) if self.activity.is_open_for_writing(ino) => return Outcome::Done,
            Ok(None) if entry.remote.is_some() => {
                warn!(%path, "dirty but no local content to upload; keeping the server's version");
                self.meta
                    .set_local(
                        ino,
                        &crate::meta::LocalAttrs {
                            dirty: Some(false),
                            ..Default::default()
                        },
                    )
                    .or_log("meta set_local");
                return Outcome::Done;
            }
            Ok(None) => {
                warn!(%path, "no local content to upload (deleted on the server before it was hydrated); forgetting it");
                self.meta.remove_local(ino).or_log("meta remove_local");
                self.inval.entry(entry.parent, &entry.name);
                return Outcome::Done;
            }
            // Removed (deleted or uploaded by a racing step) since it was looked at.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Done,
            Err(e) => {
                warn!(%path, error = %e, "cannot read the local copy");
                self.mark(ino, Problem::Refused(format!("local copy unreadable: {e}")));
                return Outcome::Done;
            }
        };
        let (file, len) = source;
        // A replaced file whose own upload a crash cut short: the server may hold part of
        // that upload; recognise it before taking the file's place.
        if let Some(r) = replaces {
            if let (Ok(Some(old)), Ok(Some(sent))) = (self.meta.get_any(r), self.cache.work_base(r))
            {
                if old.put_started {
                    if let Err(e) = self.recognise_cut_upload(&old, &path, &sent).await {
                        return self.failed(ino, &path, e);
                    }
                }
            }
        }
        // The plan may be a few operations old: take the version to replace from the
        // store as it is now (an upload just before may have advanced it).
        let base = match replaces {
            Some(r) => match self.meta.get_any(r) {
                Ok(Some(o)) => o.base_etag(),
                _ => base,
            },
            None => entry.base_etag().or(base),
        };
        let precondition = match (&base, create) {
            (Some(tag), _) => Precondition::IfMatch(tag.clone()),
            (None, true) => Precondition::IfNoneExists,
            // No version known of a file that should be there: nothing may be replaced
            // unseen, so only where there is nothing.
            (None, false) => Precondition::IfNoneExists,
        };
        let had_started = entry.put_started;
        if let Some(r) = replaces {
            match self.meta.take_place(ino, r) {
                Ok(true) => {
                    let _work = self.activity.lock_work();
                    self.cache
                        .work_remove_base(r)
                        .or_log("cache work_remove_base");
                }
                Ok(false) => {
                    // Deleted, or the place changed hands meanwhile: plan again.
                    self.drop_unsent_base(ino);
                    return Outcome::Done;
                }
                Err(e) => return Outcome::Transient(RemoteError::Local(e.to_string())),
            }
        } else {
            let started = if create {
                self.meta.start_put(ino, parent, &name)
            } else {
                self.meta.start_overwrite(ino)
            };
            match started {
                Ok(true) => {}
                Ok(false) => {
                    // Deleted meanwhile: nothing to send.
                    self.drop_unsent_base(ino);
                    return Outcome::Done;
                }
                Err(e) => return Outcome::Transient(RemoteError::Local(e.to_string())),
            }
        }
        let mut result = match &precondition {
            // If-Match compares strongly: a weak tag (Apache's for a second after a
            // change) would only cost a 412. Checked by the client instead.
            Precondition::IfMatch(t) if t.weak => {
                self.write_staged(ino, &path, &file, len, precondition, entry.mtime)
                    .await
            }
            _ => {
                self.write(ino, &path, &file, len, precondition, entry.mtime)
                    .await
            }
        };
        if matches!(result, Err(RemoteError::PreconditionFailed)) && had_started {
            // A crash may have cut our own earlier upload short, which changed the
            // server's version. If the server has a prefix of exactly this content, it
            // is ours: finish it.
            let (sent_file, sent_len) = match &previous {
                Some(f) => (f, f.metadata().map(|m| m.len()).unwrap_or(0)),
                None => (&file, len),
            };
            match self.server_has_prefix_of(&path, sent_file, sent_len).await {
                Ok(Some(tag)) => {
                    info!(%path, "finishing an upload a crash interrupted");
                    // Should this PUT be cut short too, the next attempt expects the
                    // server's version to be this one (or what this PUT sends).
                    if let Err(e) = self.meta.set_base_version(ino, &tag) {
                        return Outcome::Transient(RemoteError::Local(e.to_string()));
                    }
                    result = self
                        .write(
                            ino,
                            &path,
                            &file,
                            len,
                            Precondition::IfMatch(tag),
                            entry.mtime,
                        )
                        .await;
                    if matches!(result, Err(RemoteError::PreconditionFailed)) {
                        result = Err(still_arriving());
                    }
                }
                Ok(None) => {}
                Err(e) => result = Err(e),
            }
        }
        if matches!(result, Err(RemoteError::PreconditionFailed)) && base.is_some() {
            // Nothing there any more (deleted on the server, or a replaced file whose
            // DELETE a crash kept us from recording): nobody's version is lost by
            // writing ours as new.
            if let Err(RemoteError::NotFound) = self.remote.stat(&path).await {
                info!(%path, "gone from the server; uploading the local version as new");
                result = self
                    .write(
                        ino,
                        &path,
                        &file,
                        len,
                        Precondition::IfNoneExists,
                        entry.mtime,
                    )
                    .await;
            }
        }
        let etag = match result {
            Ok(tag) => tag,
            Err(e) => {
                self.set(|p| p.current = None);
                if matches!(
                    e,
                    RemoteError::Status(_)
                        | RemoteError::PreconditionFailed
                        | RemoteError::InsufficientStorage
                        | RemoteError::Auth(_)
                        | RemoteError::Locked(_)
                ) {
                    // The server answered: it refused the PUT as a whole, so it holds no
                    // part of it; a later mismatch is somebody else's version.
                    self.meta
                        .clear_put_started(ino)
                        .or_log("meta clear_put_started");
                }
                if self.activity.changes(ino) != changes {
                    // Written locally meanwhile: it stays dirty and goes up again.
                    debug!(%path, error = %e, "changed while uploading; will upload again");
                    return Outcome::Done;
                }
                if matches!(e, RemoteError::PreconditionFailed)
                    && self.policy == ConflictPolicy::KeepBoth
                {
                    return self.keep_both(ino, &path).await;
                }
                return self.failed(ino, &path, e);
            }
        };
        self.set(|p| p.current = None);
        // The base (what was sent) goes only once the outcome is recorded: until then a
        // crash leaves it for recognising what the server holds.
        let _g = self.tree_lock.write().await;
        let row = self.meta.get_any(ino).ok().flatten();
        if row.as_ref().is_some_and(|e| e.deleted) {
            // Deleted (or replaced) locally while it uploaded: the tombstone's DELETE or
            // replacement must apply to the version the server has now.
            if self
                .meta
                .uploaded(ino, parent, &name, etag.as_ref(), len, true)
                .is_ok()
            {
                let _work = self.activity.lock_work();
                self.cache.work_remove(ino).or_log("cache work_remove");
            }
            return Outcome::Done;
        }
        if row.is_none() {
            // Deleted locally while it uploaded: take it back off the server.
            let pre = etag
                .clone()
                .map_or(Precondition::None, Precondition::IfMatch);
            if let Err(e) = self.delete_checked(&path, pre).await {
                warn!(%path, error = %e, "could not remove a file deleted while it uploaded");
            }
            let _work = self.activity.lock_work();
            self.cache
                .work_remove_base(ino)
                .or_log("cache work_remove_base");
            return Outcome::Done;
        }
        // Decided and recorded under the working-copy lock, so no writer can attach
        // between the decision and the publishing of the working copy as a clean blob.
        let _work = self.activity.lock_work();
        let clean = self.activity.changes(ino) == changes
            && !self.activity.is_open_for_writing(ino)
            && !self.activity.has_handles(ino);
        if let Some(r) = replaces {
            self.forget_replaced(r);
        }
        if let Err(e) = self
            .meta
            .uploaded(ino, parent, &name, etag.as_ref(), len, clean)
        {
            warn!(error = %e, "write-back: recording the upload failed");
            return Outcome::Done;
        }
        self.cache
            .work_remove_base(ino)
            .or_log("cache work_remove_base");
        info!(%path, bytes = len, "uploaded");
        if clean && self.cache.work_path(ino).exists() {
            let version = match &etag {
                Some(t) => t.value.clone(),
                None => match self.meta.get(ino) {
                    Ok(Some(e)) => e.content_version(),
                    _ => return Outcome::Done,
                },
            };
            if let Err(e) = self.cache.adopt(ino, &version) {
                warn!(error = %e, "could not keep the uploaded copy in the cache");
                self.cache.work_remove(ino).or_log("cache work_remove");
            }
        }
        Outcome::Done
    }

    /// The local content of `e` to upload: its working copy (through its base, so a writer
    /// forks instead of changing it under the upload), or for a clean file a cached blob.
    /// `None` while a writer has it open, or if there is no local content.
    pub(super) fn source(
        &self,
        e: &crate::meta::Entry,
    ) -> std::io::Result<Option<(std::fs::File, u64)>> {
        let other = |e: edrive_cache::CacheError| match e {
            edrive_cache::CacheError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                source
            }
            e => std::io::Error::other(e.to_string()),
        };
        {
            let _work = self.activity.lock_work();
            if self.activity.is_open_for_writing(e.ino) {
                return Ok(None);
            }
            if self.cache.work_path(e.ino).exists() {
                let f = self.cache.work_link_base(e.ino).map_err(other)?;
                let len = f.metadata()?.len();
                return Ok(Some((f, len)));
            }
        }
        if e.size == 0 {
            let f = self.cache.work_create_empty(e.ino).map_err(other)?;
            return Ok(Some((f, 0)));
        }
        for v in self.cache.versions_of(e.ino) {
            if let Some(blob) = self.cache.get(&BlobKey::new(e.ino, v)) {
                let f = blob.file().try_clone()?;
                let len = blob.len();
                return Ok(Some((f, len)));
            }
        }
        Ok(None)
    }

    pub(super) async fn put(
        &self,
        path: &RemotePath,
        file: &std::fs::File,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<crate::remote::ETag>, RemoteError> {
        *self.sent.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        *self.put_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.set(|p| p.current = Some((path.to_string(), 0, len)));
        let body = file_stream(file, len, self)?;
        self.remote
            .put(
                path,
                body,
                len,
                precondition,
                mtime.filter(|t| *t > UNIX_EPOCH),
            )
            .await
    }

    pub(super) fn progress_handle(&self) -> ProgressHandle {
        ProgressHandle(self.sent.clone())
    }
}

/// Streams `len` bytes of `file` in [`CHUNK`]s, reporting progress; memory stays flat.
pub(super) fn file_stream(
    file: &std::fs::File,
    len: u64,
    up: &Uploader,
) -> Result<ByteStream, RemoteError> {
    let progress = up.progress_handle();
    if len <= INLINE_BODY {
        // A small file is read at once, here: its pages were just written, and a read on
        // the blocking pool would cost two thread switches per file of an untar.
        let mut buf = vec![0u8; len as usize];
        let n = crate::positional::read_full_at(file, &mut buf, 0)
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        if n as u64 != len {
            return Err(RemoteError::Local(
                "the local copy got shorter during upload".into(),
            ));
        }
        progress.sent(len);
        let item: Result<Bytes, RemoteError> = Ok(Bytes::from(buf));
        return Ok(Box::pin(futures_util::stream::iter(
            (len > 0).then_some(item),
        )));
    }
    let file = Arc::new(
        file.try_clone()
            .map_err(|e| RemoteError::Local(e.to_string()))?,
    );
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let file = file.clone();
        let progress = progress.clone();
        async move {
            if offset >= len {
                return None;
            }
            let want = (len - offset).min(CHUNK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let n = crate::positional::read_full_at(&file, &mut buf, offset)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            })
            .await;
            let item = match read {
                Ok(Ok(buf)) if !buf.is_empty() => {
                    let n = buf.len() as u64;
                    progress.sent(offset + n);
                    Ok(Bytes::from(buf))
                }
                Ok(Ok(_)) => Err(RemoteError::Local(
                    "the local copy got shorter during upload".into(),
                )),
                Ok(Err(e)) => Err(RemoteError::Local(e.to_string())),
                Err(e) => Err(RemoteError::Local(e.to_string())),
            };
            let next = match &item {
                Ok(b) => offset + b.len() as u64,
                Err(_) => len,
            };
            Some((item, next))
        }
    });
    Ok(Box::pin(stream))
}

/// Lets the body stream report bytes sent.
#[derive(Clone)]
pub(super) struct ProgressHandle(Arc<Mutex<u64>>);

impl ProgressHandle {
    fn sent(&self, n: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }
}
