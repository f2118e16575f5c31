//! Running one planned operation (folder, move, delete, upload) against the server and
//! recording its outcome in the store.

use super::*;

impl Uploader {
    pub(super) async fn execute(&self, op: Op) -> Outcome {
        debug!(?op, "write-back");
        match op {
            Op::Delete { ino, path, etag } => {
                let etag = match self.meta.get_any(ino) {
                    Ok(Some(t)) if t.deleted && !t.is_dir() => t.base_etag().or(etag),
                    _ => etag,
                };
                let is_dir = matches!(self.meta.get_any(ino), Ok(Some(t)) if t.is_dir());
                let result = match etag {
                    _ if is_dir => self.delete_folder(ino, &path).await,
                    Some(tag) => self.delete_seen(ino, &path, Some(tag)).await,
                    None => self.delete_checked(&path, Precondition::None).await,
                };
                let _g = self.tree_lock.write().await;
                match result {
                    Ok(()) | Err(RemoteError::NotFound) => {
                        info!(%path, "deleted on the server");
                        self.cache
                            .work_remove_base(ino)
                            .or_log("cache work_remove_base");
                        self.record(self.meta.drop_tombstone(ino))
                    }
                    Err(RemoteError::PreconditionFailed) => {
                        // Changed on the server after it was deleted here: the newer
                        // version wins and comes back on the next listing.
                        warn!(%path, "changed on the server since it was deleted here; keeping the server's version");
                        self.meta
                            .record_event("restored", &path.to_string(), "")
                            .or_log("meta record_event");
                        let parent = self.meta.get_any(ino).ok().flatten().and_then(|e| e.remote);
                        self.cache
                            .work_remove_base(ino)
                            .or_log("cache work_remove_base");
                        let r = self.meta.drop_tombstone(ino);
                        if let Some((p, _)) = parent {
                            self.meta.expire_listing(p).or_log("meta expire_listing");
                        }
                        self.record(r)
                    }
                    Err(e) => self.failed(ino, &path, e),
                }
            }
            Op::Mkdir {
                ino,
                path,
                parent,
                name,
            } => {
                // Recorded on the server side first: a crash after the MKCOL must not leave
                // a folder nobody knows about (a local rmdir then leaves a tombstone).
                match self.meta.start_put(ino, parent, &name) {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Done, // removed meanwhile
                    Err(e) => {
                        warn!(error = %e, "write-back: recording a folder's creation failed");
                        return Outcome::Transient(RemoteError::Local(e.to_string()));
                    }
                }
                let result = self.remote.mkdir(&path).await;
                let created_here = result.is_ok();
                let result = match result {
                    // 405: something exists there already; fine if it is a folder (an
                    // earlier attempt that was cut short, or someone else's).
                    Err(RemoteError::Status(405)) => match self.remote.stat(&path).await {
                        Ok(e) if e.is_dir => {
                            self.meta.expire_listing(ino).or_log("meta expire_listing");
                            Ok(())
                        }
                        Ok(_) => Err(RemoteError::Status(405)),
                        Err(e) => Err(e),
                    },
                    other => other,
                };
                let _g = self.tree_lock.write().await;
                match result {
                    Ok(()) => {
                        info!(%path, "folder created on the server");
                        if self.meta.get(ino).ok().flatten().is_none() {
                            // Deleted locally while it was created: take it back, if it is
                            // ours and still empty (a folder that was there already, or that
                            // someone filled meanwhile, stays).
                            if created_here {
                                match self.delete_folder(ino, &path).await {
                                    Ok(()) | Err(RemoteError::PreconditionFailed) => {}
                                    Err(e) => {
                                        warn!(%path, error = %e, "could not remove a folder deleted while it was created")
                                    }
                                }
                            }
                            return Outcome::Done;
                        }
                        self.record(self.meta.uploaded(ino, parent, &name, None, 0, true))
                    }
                    Err(e) => self.failed(ino, &path, e),
                }
            }
            Op::Move {
                ino,
                from,
                to,
                parent,
                name,
                replaces,
            } => {
                // A file this one replaces (renamed over it here) goes only in the version
                // it was seen in: deleted first, checked, and the MOVE then may not
                // overwrite. Changed there meanwhile: it stays (and comes back here), and
                // the MOVE is refused (this entry then takes a conflict name).
                // Never over what the server has there unless it is the version seen
                // (deleted just below): a name taken meanwhile refuses the MOVE.
                if let Some(r) = replaces {
                    let seen = self
                        .meta
                        .get_any(r)
                        .ok()
                        .flatten()
                        .and_then(|o| o.base_etag());
                    match self.delete_seen(r, &to, seen).await {
                        Ok(()) | Err(RemoteError::NotFound) => {}
                        Err(RemoteError::PreconditionFailed) => {
                            warn!(%to, "the file renamed over here changed on the server; keeping it");
                            self.meta
                                .record_event("restored", &to.to_string(), "")
                                .or_log("meta record_event");
                            let _g = self.tree_lock.write().await;
                            self.meta.drop_tombstone(r).or_log("meta drop_tombstone");
                            self.meta
                                .expire_listing(parent)
                                .or_log("meta expire_listing");
                        }
                        Err(e) => return self.failed(ino, &to, e),
                    }
                }
                if let Err(e) = self.meta.start_move(ino, parent, &name) {
                    warn!(error = %e, "write-back: recording a move failed");
                    return Outcome::Transient(RemoteError::Local(e.to_string()));
                }
                let no_overwrite = crate::lock(&self.caps).move_no_overwrite == Some(true);
                let taken = !no_overwrite
                    && !name.starts_with(crate::sync::plan::MOVE_ASIDE_PREFIX)
                    && !matches!(
                        again(|| self.remote.stat(&to)).await,
                        Err(RemoteError::NotFound)
                    );
                let mut result = if taken {
                    // A server that may not refuse Overwrite: F: looked at first.
                    Err(RemoteError::PreconditionFailed)
                } else {
                    self.remote.rename(&from, &to, false).await
                };
                if let Err(RemoteError::NotFound) = result {
                    // Cut short by a crash after the server moved it?
                    if let Ok(e) = self.remote.stat(&to).await {
                        let was_dir = self
                            .meta
                            .get(ino)
                            .ok()
                            .flatten()
                            .is_some_and(|x| x.is_dir());
                        if e.is_dir == was_dir {
                            result = Ok(());
                        }
                    }
                }
                let _g = self.tree_lock.write().await;
                match result {
                    Ok(()) => {
                        info!(%from, %to, "moved on the server");
                        if let Some(r) = replaces {
                            self.forget_replaced(r);
                        }
                        self.record(self.meta.set_remote(ino, parent, &name))
                    }
                    Err(RemoteError::NotFound) => {
                        warn!(%from, "gone from the server before its move; writing it back as new");
                        self.record(self.meta.detach(ino))
                    }
                    // The name is taken on the server (someone else's new file): with
                    // keep-both, this entry takes a conflict name there instead.
                    Err(RemoteError::PreconditionFailed)
                        if self.policy == ConflictPolicy::KeepBoth
                            && !name.starts_with(crate::sync::plan::MOVE_ASIDE_PREFIX) =>
                    {
                        self.meta.end_move(ino).or_log("meta end_move");
                        self.rename_to_conflict_copy(ino, parent, &name, &to)
                    }
                    // No answer: the server may or may not have moved it; the next round
                    // checks (see `settle_moves`).
                    Err(e) if e.is_transient() => self.failed(ino, &to, e),
                    Err(e) => {
                        self.meta.end_move(ino).or_log("meta end_move");
                        self.failed(ino, &to, e)
                    }
                }
            }
            Op::Upload {
                ino,
                path,
                parent,
                name,
                base,
                create,
                replaces,
            } => {
                self.upload(ino, path, parent, name, base, create, replaces)
                    .await
            }
        }
    }

    /// Drops the snapshot an upload that is not going to be sent took, unless an earlier,
    /// cut-short upload's base is still needed to recognise what the server holds.
    pub(super) fn drop_unsent_base(&self, ino: u64) {
        let _work = self.activity.lock_work();
        if !matches!(self.meta.get_any(ino), Ok(Some(e)) if e.put_started) {
            self.cache
                .work_remove_base(ino)
                .or_log("cache work_remove_base");
        }
    }

    pub(super) fn forget_replaced(&self, r: u64) {
        match self.meta.get_any(r) {
            Ok(Some(e)) if e.deleted => {
                self.meta.drop_tombstone(r).or_log("meta drop_tombstone");
            }
            Ok(Some(_)) => {
                self.meta.detach(r).or_log("meta detach");
            }
            _ => {}
        }
    }

    pub(super) fn record<E: std::fmt::Display>(&self, r: Result<(), E>) -> Outcome {
        if let Err(e) = r {
            warn!(error = %e, "write-back: recording the outcome failed");
        }
        Outcome::Done
    }

    /// Deletes file `ino` (a tombstone, or a file being replaced) at `path` if the server
    /// has the version `seen` this client saw there, or the version an upload of its own
    /// left that a crash kept from being recorded (recognised by its content); else
    /// [`RemoteError::PreconditionFailed`]: someone else's change, which stays.
    pub(super) async fn delete_seen(
        &self,
        ino: u64,
        path: &RemotePath,
        seen: Option<crate::remote::ETag>,
    ) -> Result<(), RemoteError> {
        let result = match seen {
            Some(seen) => self.delete_checked(path, Precondition::IfMatch(seen)).await,
            // No version was ever seen here: only our own interrupted upload may go.
            None => match again(|| self.remote.stat(path)).await {
                Err(RemoteError::NotFound) => return Ok(()),
                Ok(_) => Err(RemoteError::PreconditionFailed),
                Err(e) => return Err(e),
            },
        };
        if !matches!(result, Err(RemoteError::PreconditionFailed)) {
            return result;
        }
        let started = matches!(self.meta.get_any(ino), Ok(Some(e)) if e.put_started);
        debug!(%path, started, "the server has another version than the one deleted here");
        if let (true, Ok(Some(base))) = (started, self.cache.work_base(ino)) {
            let len = base.metadata().map(|m| m.len()).unwrap_or(0);
            if let Ok(Some(tag)) = self.server_has_prefix_of(path, &base, len).await {
                info!(%path, "the server's version is our own interrupted upload; deleting it");
                return match self.delete_checked(path, Precondition::IfMatch(tag)).await {
                    // Still changing: the server is finishing that upload.
                    Err(RemoteError::PreconditionFailed) => Err(still_arriving()),
                    other => other,
                };
            }
        }
        result
    }

    /// Asks for the folders above `ino` to be listed again at the next poll, outermost
    /// first.
    pub(super) fn relist_ancestors(&self, ino: u64) {
        let mut chain = Vec::new();
        let mut at = self.meta.get_any(ino).ok().flatten().map(|e| e.parent);
        while let Some(p) = at.filter(|p| *p != 0 && !chain.contains(p)) {
            self.meta.expire_listing(p).or_log("meta expire_listing");
            chain.push(p);
            at = self.meta.get(p).ok().flatten().map(|e| e.parent);
        }
        chain.reverse();
        self.activity.want_listed(chain);
    }
}
