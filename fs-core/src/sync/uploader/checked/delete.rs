//! Checked deletes: a file goes only in the version seen here, a folder only as far as
//! the server still has what was deleted here (see [`Uploader::delete_checked`]).

use std::time::{SystemTime, UNIX_EPOCH};

use super::super::Uploader;
use super::{journal, unjournal, STAGING_KEY, STAGING_PREFIX};
use crate::logged::OrLog;
use crate::remote::{again, Precondition, RemoteError, RemotePath};

impl Uploader {
    /// Deletes what is at `path` if the server's version there is what `pre` says. Where
    /// the server cannot be trusted to check that itself (or the tag is weak, which
    /// `If-Match` never matches), the client checks: the file is moved aside to a hidden
    /// name (`Overwrite: F`), compared there, and deleted only if it is that version, else
    /// put back. Without `Overwrite: F` on the server, it is compared and then deleted
    /// (unguarded for one round trip).
    pub(in crate::sync::uploader) async fn delete_checked(
        &self,
        path: &RemotePath,
        pre: Precondition,
    ) -> Result<(), RemoteError> {
        let base = match &pre {
            Precondition::IfMatch(t) if self.must_check(&pre, true) => t.clone(),
            _ => return self.remote.delete(path, pre).await,
        };
        let no_overwrite = self.set_aside_works();
        let (Some(dir), Some(name)) = (path.parent(), path.name()) else {
            return Err(RemoteError::Local("cannot delete the root".into()));
        };
        if !no_overwrite {
            match self.check_version(path, &pre).await {
                Err(RemoteError::PreconditionFailed)
                    if matches!(
                        again(|| self.remote.stat(path)).await,
                        Err(RemoteError::NotFound)
                    ) =>
                {
                    return Err(RemoteError::NotFound)
                }
                r => r?,
            }
            return self.remote.delete(path, Precondition::None).await;
        }
        // An earlier attempt whose MOVE went through unanswered left the file under its
        // work name (journaled): the check goes on there. Without this, the MOVE below
        // finds nothing at `path` and the delete would count as done, with the version
        // set aside still waiting to be put back.
        if let Some((key, aside)) = self.earlier_delete(path).await? {
            let result = self.delete_aside(&aside, path, name, &base).await;
            if self.gone(&aside).await {
                self.meta.set_setting(&key, None).or_log("meta set_setting");
            }
            return result;
        }
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let aside = dir
            .join(&format!("{STAGING_PREFIX}del-{nonce:x}.old"))
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let key = format!("{STAGING_KEY}del-{nonce:x}");
        // The same journal as a staged upload's (no staging file of its own: the aside
        // name stands in for it), so a crash puts the file back.
        self.meta
            .set_setting(&key, Some(&journal(&[&aside, &aside, path])))
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let result = async {
            if let Err(e) = self.remote.rename(path, &aside, false).await {
                // No answer, but the server may have moved it: then it is checked there.
                if again(|| self.remote.stat(&aside)).await.is_err() {
                    return Err(e);
                }
            }
            self.delete_aside(&aside, path, name, &base).await
        }
        .await;
        if self.gone(&aside).await {
            self.meta.set_setting(&key, None).or_log("meta set_setting");
        }
        result
    }

    /// The journal key and work name of an earlier checked delete of `path` whose file
    /// is still under that work name.
    async fn earlier_delete(
        &self,
        path: &RemotePath,
    ) -> Result<Option<(String, RemotePath)>, RemoteError> {
        let prefix = format!("{STAGING_KEY}del-");
        let left = self
            .meta
            .settings_with_prefix(&prefix)
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        for (key, value) in left {
            let Some([_, aside, target]) = unjournal(&value) else {
                continue;
            };
            if &target != path {
                continue;
            }
            match again(|| self.remote.stat(&aside)).await {
                Ok(_) => return Ok(Some((key, aside))),
                Err(RemoteError::NotFound) => {
                    self.meta.set_setting(&key, None).or_log("meta set_setting");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The second half of a checked delete: the file set aside at `aside` goes if it is
    /// version `base`, else back to `path` (named `name`).
    async fn delete_aside(
        &self,
        aside: &RemotePath,
        path: &RemotePath,
        name: &str,
        base: &crate::remote::ETag,
    ) -> Result<(), RemoteError> {
        let frozen = again(|| self.remote.stat(aside)).await;
        if matches!(&frozen, Ok(e) if e.etag.as_ref().is_some_and(|t| t.value == base.value)) {
            again(|| self.remote.delete(aside, Precondition::None)).await
        } else {
            let _ = self.put_back(aside, path, name).await;
            frozen.and(Err(RemoteError::PreconditionFailed))
        }
    }

    /// Deletes folder `ino` (a tombstone) at `path` only as far as the server still has
    /// what was deleted here: each file in it goes with a checked delete of the version
    /// seen here, each folder the same way, and the folder itself only once nothing else
    /// is left in it. A file changed or added there meanwhile stays (and so does the
    /// folder): `Err(PreconditionFailed)`, and the server's entries come back here. A
    /// recursive DELETE would take such a file with it unseen.
    pub(in crate::sync::uploader) async fn delete_folder(
        &self,
        ino: u64,
        path: &RemotePath,
    ) -> Result<(), RemoteError> {
        let listing = match again(|| self.remote.list(path)).await {
            Ok(l) => l,
            Err(RemoteError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let local = |e: crate::meta::MetaError| RemoteError::Local(e.to_string());
        let mut kept = !listing.complete;
        for child in &listing.children {
            let Ok(child_path) = path.join(&child.name) else {
                kept = true;
                continue;
            };
            let known = self.meta.occupant(ino, &child.name).map_err(local)?;
            match known {
                Some(k) if k.deleted && k.is_dir() == child.is_dir => {
                    let done = if child.is_dir {
                        Box::pin(self.delete_folder(k.ino, &child_path)).await
                    } else {
                        match k.base_etag() {
                            Some(tag) => {
                                self.delete_checked(&child_path, Precondition::IfMatch(tag))
                                    .await
                            }
                            None => Err(RemoteError::PreconditionFailed),
                        }
                    };
                    match done {
                        Ok(()) | Err(RemoteError::NotFound) => {}
                        Err(RemoteError::PreconditionFailed) => kept = true,
                        Err(e) => return Err(e),
                    }
                }
                // New there, or someone else's work in progress: not deleted here.
                _ => kept = true,
            }
        }
        if kept {
            return Err(RemoteError::PreconditionFailed);
        }
        // Empty now, as far as it was listed: looked at once more right before its DELETE
        // (what arrives in between is the one round trip left unguarded).
        match again(|| self.remote.list(path)).await {
            Ok(l) if l.children.is_empty() && l.complete => {}
            Ok(_) => return Err(RemoteError::PreconditionFailed),
            Err(RemoteError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.remote.delete(path, Precondition::None).await
    }
}
