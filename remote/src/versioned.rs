//! [`Versioned`]: gives every file a version, also on a backend that sends no ETags.
//!
//! The sync engine tells versions apart by their tag: a change on the server is seen when
//! the tag changes, and an upload is checked against the tag it was based on. A server
//! without ETags (nginx) would leave both blind, so a file listed without one gets a tag
//! made up from its modification time and size ([`ETag::synthetic`]). Such a tag is never
//! sent to the server: a precondition on one is dropped here, and the write-back checks it
//! itself (see `crate::sync`).

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    ByteStream, ChildSink, Download, ETag, Listing, ListingHead, Precondition, Quota, Remote,
    RemoteEntry, RemoteError, RemotePath,
};

/// A [`Remote`] whose files always carry a version tag when their time and size are known.
pub struct Versioned(pub Arc<dyn Remote>);

/// `e` with a made-up tag if it is a file without one.
pub fn versioned(mut e: RemoteEntry) -> RemoteEntry {
    if e.etag.is_none() && !e.is_dir && e.size_known {
        e.etag = e.mtime.map(|m| ETag::synthetic(m, e.size));
    }
    e
}

/// `p` without a condition on a made-up tag, which the server would not know.
fn real(p: Precondition) -> Precondition {
    match p {
        Precondition::IfMatch(t) if t.is_synthetic() => Precondition::None,
        p => p,
    }
}

#[async_trait]
impl Remote for Versioned {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        let mut l = self.0.list(path).await?;
        l.children = l.children.into_iter().map(versioned).collect();
        Ok(l)
    }

    async fn list_each(
        &self,
        path: &RemotePath,
        mut sink: ChildSink,
    ) -> Result<ListingHead, RemoteError> {
        self.0
            .list_each(path, Box::new(move |child| sink(versioned(child))))
            .await
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        self.0.stat(path).await.map(versioned)
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        self.0.read(path, range).await
    }

    async fn put(
        &self,
        path: &RemotePath,
        body: ByteStream,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        self.0.put(path, body, len, real(precondition), mtime).await
    }

    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError> {
        self.0.mkdir(path).await
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError> {
        self.0.rename(from, to, overwrite).await
    }

    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError> {
        self.0.delete(path, real(precondition)).await
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn quota(&self) -> Result<Option<Quota>, RemoteError> {
        self.0.quota().await
    }
}
