//! Keep-both: when the server has another version, the local one takes a conflict name
//! next to it and is uploaded there.

use super::*;

impl Uploader {
    /// Entry `ino`, renamed here to `name` in folder `parent` where the server already has
    /// something else (`to`): it takes a conflict name next to it instead (moved there by
    /// the next round), and the server's entry shows up at the next listing. Nothing waits
    /// for a person.
    pub(super) fn rename_to_conflict_copy(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        to: &RemotePath,
    ) -> Outcome {
        let now = SystemTime::now();
        let copy = (1..1000)
            .map(|n| conflict_name(name, &self.host, now, n))
            .find(|c| {
                matches!(self.meta.child(parent, c), Ok(None))
                    && matches!(self.meta.occupant(parent, c), Ok(None))
            });
        let Some(copy) = copy else {
            return self.failed(ino, to, RemoteError::PreconditionFailed);
        };
        if let Err(e) = self.meta.rename_local(ino, parent, &copy, None) {
            warn!(error = %e, "write-back: renaming to a conflict copy failed");
            return Outcome::Transient(RemoteError::Local(e.to_string()));
        }
        warn!(%to, copy = %copy, "the name is taken on the server by someone else's file; this one is kept as a conflict copy next to it");
        self.meta
            .record_event("kept-both", &to.to_string(), &copy)
            .or_log("meta record_event");
        self.meta
            .expire_listing(parent)
            .or_log("meta expire_listing");
        self.inval.entry(parent, name);
        self.inval.entry(parent, &copy);
        self.inval.inode(ino);
        self.activity.wake();
        Outcome::Done
    }

    /// Settles a conflict of the write-back by keeping both versions (see
    /// [`Uploader::keep_both_now`]).
    pub(super) async fn keep_both(&self, ino: u64, path: &RemotePath) -> Outcome {
        match self.keep_both_now(ino, path).await {
            // Split, or gone meanwhile (the next round uploads it as new).
            Ok(_) => Outcome::Done,
            // A 412 here: no copy could be made; the file waits as a conflict.
            Err(e) => self.failed(ino, path, e),
        }
    }

    /// Keeps both versions of file `ino`, whose server version at `path` is not the one
    /// its local content is based on: the server's takes the name, the local one becomes
    /// `NAME (conflict HOST DATE TIME).EXT` next to it and is uploaded as new. Returns the
    /// copy's name, or `None` if the server has no file there any more.
    pub(crate) async fn keep_both_now(
        &self,
        ino: u64,
        path: &RemotePath,
    ) -> Result<Option<String>, RemoteError> {
        let server = match self.remote.stat(path).await {
            Ok(e) if !e.is_dir => e,
            // A folder took its place: the local file waits for a person.
            Ok(_) => return Err(RemoteError::PreconditionFailed),
            Err(RemoteError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let local_err = |e: crate::meta::MetaError| RemoteError::Local(e.to_string());
        let _g = self.tree_lock.write().await;
        let Some(local) = self.meta.get(ino).map_err(local_err)? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let mut copy = None;
        for n in 1..1000 {
            let candidate = conflict_name(&local.name, &self.host, now, n);
            if matches!(self.meta.child(local.parent, &candidate), Ok(None))
                && matches!(self.meta.occupant(local.parent, &candidate), Ok(None))
            {
                copy = Some(candidate);
                break;
            }
        }
        let Some(copy) = copy else {
            return Err(RemoteError::PreconditionFailed);
        };
        let local_path = self
            .meta
            .path_of(ino)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| path.to_string());
        let remote_place = local.remote.clone();
        let fresh = self
            .meta
            .split_conflict(ino, &copy, &server)
            .map_err(local_err)?;
        warn!(%path, copy = %copy, "conflict: changed here and on the server; the server's version keeps the name, the local one is kept as a copy");
        self.meta
            .record_event("kept-both", &local_path, &copy)
            .or_log("meta record_event");
        self.inval.entry(local.parent, &local.name);
        self.inval.entry(local.parent, &copy);
        self.inval.inode(ino);
        if let Some((p, n)) = remote_place {
            self.inval.entry(p, &n);
        }
        if fresh.is_some() {
            self.remote_news.fetch_add(1, Ordering::SeqCst);
        }
        self.activity.wake();
        Ok(Some(copy))
    }
}
