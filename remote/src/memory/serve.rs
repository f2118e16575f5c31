//! How [`MemRemote`] answers each [`Remote`] call, the way a WebDAV server would.

use super::*;

#[async_trait]
impl Remote for MemRemote {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        self.called(CallKind::List, path, None, &Precondition::None);
        let tree = lock(&self.tree);
        let key = path.parts();
        let node = tree.get(key).ok_or(RemoteError::NotFound)?;
        let dir = self.entry("", node);
        let children = if node.is_dir() {
            tree.subtree(key)
                .iter()
                .filter(|k| k.len() == key.len() + 1)
                .filter_map(|k| Some(self.entry(k.last()?, tree.get(k)?)))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Listing {
            dir,
            children,
            complete: true,
        })
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        self.called(CallKind::Stat, path, None, &Precondition::None);
        let tree = lock(&self.tree);
        let node = tree.get(path.parts()).ok_or(RemoteError::NotFound)?;
        Ok(self.entry(path.name().unwrap_or_default(), node))
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        self.called(CallKind::Read, path, None, &Precondition::None);
        let (data, tag) = {
            let tree = lock(&self.tree);
            let node = tree.get(path.parts()).ok_or(RemoteError::NotFound)?;
            match &node.content {
                Content::File(data) => (data.clone(), node.tag),
                Content::Dir => return Err(RemoteError::Status(405)),
            }
        };
        let size = data.len() as u64;
        let span = match range {
            None => 0..size,
            Some(r) if r.start >= r.end => 0..0,
            // 416 Range Not Satisfiable.
            Some(r) if r.start >= size => return Err(RemoteError::Status(416)),
            Some(r) => r.start..r.end.min(size),
        };
        let body = data.slice(span.start as usize..span.end as usize);
        let chunks: Vec<Result<Bytes, RemoteError>> = (0..body.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(body.slice(at..(at + READ_CHUNK).min(body.len()))))
            .collect();
        Ok(Download {
            made_up: None,
            len: Some(span.end - span.start),
            etag: self.etag(tag),
            skipped: 0,
            body: Box::pin(futures_util::stream::iter(chunks)),
        })
    }

    async fn put(
        &self,
        path: &RemotePath,
        mut body: ByteStream,
        len: u64,
        precondition: Precondition,
        _mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        self.called(CallKind::Put, path, None, &precondition);
        // The whole body first, then the checks and the write at once: nothing of a
        // refused or broken upload is stored.
        let mut data = Vec::new();
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
            if data.len() as u64 > len {
                return Err(RemoteError::Local(format!(
                    "upload source yields more than the announced {len} bytes"
                )));
            }
        }
        if (data.len() as u64) < len {
            return Err(RemoteError::Local(format!(
                "upload source ended after {} of {len} bytes",
                data.len()
            )));
        }
        let mut tree = lock(&self.tree);
        let key = path.parts();
        let node = tree.get(key);
        if node.is_some_and(Node::is_dir) {
            return Err(RemoteError::Status(405));
        }
        self.allowed(&precondition, node)?;
        if !tree.parent_is_dir(key) {
            return Err(RemoteError::Status(409));
        }
        let tag = tree.write_file(key, Bytes::from(data));
        Ok(self.etag(tag))
    }

    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError> {
        self.called(CallKind::Mkdir, path, None, &Precondition::None);
        let mut tree = lock(&self.tree);
        let key = path.parts();
        if tree.get(key).is_some() {
            return Err(RemoteError::Status(405));
        }
        if !tree.parent_is_dir(key) {
            return Err(RemoteError::Status(409));
        }
        tree.make_dir(key);
        Ok(())
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError> {
        self.called(CallKind::Rename, from, Some(to), &Precondition::None);
        let mut tree = lock(&self.tree);
        let (from, to) = (from.parts(), to.parts());
        if tree.get(from).is_none() {
            return Err(RemoteError::NotFound);
        }
        if from.is_empty() || to.starts_with(from) {
            return Err(RemoteError::Auth(403));
        }
        if !tree.parent_is_dir(to) {
            return Err(RemoteError::Status(409));
        }
        if tree.get(to).is_some() {
            if !overwrite {
                return Err(RemoteError::PreconditionFailed);
            }
            tree.remove(to);
        }
        tree.move_to(from, to);
        Ok(())
    }

    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError> {
        self.called(CallKind::Delete, path, None, &precondition);
        let mut tree = lock(&self.tree);
        let key = path.parts();
        let node = tree.get(key).ok_or(RemoteError::NotFound)?;
        if key.is_empty() {
            return Err(RemoteError::Auth(403));
        }
        self.allowed(&precondition, Some(node))?;
        tree.remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "mem://".into()
    }
}
