//! Crash recovery: moves a crash may have cut short are settled, and an upload a crash
//! cut short is recognised on the server before anything takes its place.

use super::*;

impl Uploader {
    /// Finds out where the server has each entry whose MOVE was sent but not confirmed
    /// (a crash or a lost reply): still at its old place, or at the new one. Until this
    /// succeeds nothing else is planned, so no DELETE or PUT acts on a stale location.
    pub(super) async fn settle_moves(&self) -> Result<(), RemoteError> {
        let moves = self
            .meta
            .moves_in_flight()
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        for (ino, parent, name) in moves {
            let local = |e: crate::meta::MetaError| RemoteError::Local(e.to_string());
            let from = self.meta.remote_path_of(ino).map_err(local)?;
            let to = match self.meta.remote_path_of(parent).map_err(local)? {
                Some(dir) => dir.join(&name).ok(),
                None => None,
            };
            let is_dir = self
                .meta
                .get_any(ino)
                .map_err(local)?
                .is_some_and(|e| e.is_dir());
            let still_there = match &from {
                Some(from) => match self.remote.stat(from).await {
                    Ok(e) => e.is_dir == is_dir,
                    Err(RemoteError::NotFound) => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
            let moved = match (&to, still_there) {
                (Some(to), false) => match self.remote.stat(to).await {
                    Ok(e) => e.is_dir == is_dir,
                    Err(RemoteError::NotFound) => false,
                    Err(e) => return Err(e),
                },
                _ => false,
            };
            let _g = self.tree_lock.write().await;
            if moved {
                info!(ino, to = ?to.as_ref().map(|t| t.to_string()), "an interrupted move had reached the server");
                // Whatever the store had there was replaced by it.
                if let Ok(Some(o)) = self.meta.occupant(parent, &name) {
                    if o.ino != ino {
                        self.forget_replaced(o.ino);
                    }
                }
                self.meta.set_remote(ino, parent, &name).map_err(local)?;
            } else {
                self.meta.end_move(ino).map_err(local)?;
            }
        }
        Ok(())
    }

    /// Whether the server's file at `path` is what an earlier, cut-short upload of `e`
    /// left (a prefix of `sent`, the base that upload read) rather than the version `e` is
    /// based on; if so, that version is recorded as `e`'s base, since replacing it loses
    /// nobody's work.
    pub(super) async fn recognise_cut_upload(
        &self,
        e: &crate::meta::Entry,
        path: &RemotePath,
        sent: &std::fs::File,
    ) -> Result<bool, RemoteError> {
        let info = match self.remote.stat(path).await {
            Ok(i) => i,
            Err(RemoteError::NotFound) => return Ok(false),
            Err(err) => return Err(err),
        };
        if info.etag.as_ref().map(|t| &t.value) == e.etag.as_ref() {
            return Ok(false);
        }
        let len = sent.metadata().map(|m| m.len()).unwrap_or(0);
        match self.server_has_prefix_of(path, sent, len).await? {
            Some(tag) => {
                info!(%path, "the server has what an interrupted upload of ours sent");
                self.meta
                    .set_base_version(e.ino, &tag)
                    .map_err(|err| RemoteError::Local(err.to_string()))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// If the server's file at `path` is a prefix of (or equal to) the local content,
    /// its version tag.
    pub(super) async fn server_has_prefix_of(
        &self,
        path: &RemotePath,
        file: &std::fs::File,
        len: u64,
    ) -> Result<Option<crate::remote::ETag>, RemoteError> {
        let info = match self.remote.stat(path).await {
            Ok(i) => i,
            Err(RemoteError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        debug!(%path, server_size = info.size, server_etag = ?info.etag, local_len = len, "comparing the server's file with what we sent");
        // An empty file proves nothing (somebody's new file may be empty too), but it also
        // holds nothing: replacing or deleting it loses no data.
        if info.is_dir || info.size > len {
            return Ok(None);
        }
        let dl = self.remote.read(path, None).await?;
        let got = info.etag.as_ref().and_then(|a| dl.version_for(&a.value));
        if let (Some(a), Some(b)) = (&info.etag, got) {
            if a.value != b.value {
                // Changed between the two requests: compare again next time.
                return Err(still_arriving());
            }
        }
        let mut body = dl.body;
        let mut offset = 0u64;
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            buf.resize(chunk.len(), 0);
            let n = crate::positional::read_full_at(file, &mut buf, offset)
                .map_err(|e| RemoteError::Local(e.to_string()))?;
            if n != chunk.len() || buf[..n] != chunk[..] {
                let at = buf[..n].iter().zip(chunk.iter()).position(|(a, b)| a != b);
                debug!(%path, offset, n, chunk = chunk.len(), ?at, local = ?at.map(|i| &buf[i..(i + 8).min(n)]), server = ?at.map(|i| &chunk[i..(i + 8).min(chunk.len())]), "the server's file differs from what we sent");
                return Ok(None);
            }
            offset += n as u64;
        }
        Ok(info.etag.or(dl.etag))
    }
}
