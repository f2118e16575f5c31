//! One entry's state for `edrive status PATH`, and what the drive does when new
//! credentials are accepted.

use edrive_cache::BlobKey;

use super::{lock, Drive};
use crate::error::FsError;
use crate::meta::{Entry, Kind};
use crate::state::EntryState;

/// What `edrive status PATH` shows about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// File or folder.
    pub kind: Kind,
    /// The state `user.edrive.state` shows.
    pub state: EntryState,
    /// Pinned, itself or through a folder above it.
    pub pinned: bool,
    /// Size in bytes (a folder: of the files below it that are known).
    pub size: u64,
    /// Bytes of content that are local (a folder: of the files below it).
    pub cached_bytes: u64,
    /// Why the write-back of this entry is stuck, if it is.
    pub problem: Option<String>,
}

impl Drive {
    /// The state, pin, size and local bytes of `ino`.
    pub fn entry_info(&self, ino: u64) -> Result<EntryInfo, FsError> {
        let e = self.entry(ino)?;
        let (size, cached_bytes) = if e.is_dir() {
            let mut size = 0u64;
            let mut cached = 0u64;
            for f in self.meta.files_below(ino)? {
                let (s, c) = self.file_bytes(&f);
                size = size.saturating_add(s);
                cached = cached.saturating_add(c);
            }
            (size, cached)
        } else {
            self.file_bytes(&e)
        };
        Ok(EntryInfo {
            kind: e.kind,
            state: self.state(ino)?,
            pinned: self.meta.pinned_by(ino)?.is_some(),
            size,
            cached_bytes,
            problem: e.problem.as_ref().map(ToString::to_string),
        })
    }

    /// A file's size and how many of its bytes are local: all of a working copy, a cached
    /// blob, or what a running download has fetched so far.
    fn file_bytes(&self, e: &Entry) -> (u64, u64) {
        if let Some((w, _)) = lock(&self.works).get(&e.ino) {
            let (size, _) = w.size_and_mtime();
            return (size, size);
        }
        if let Ok(md) = std::fs::metadata(self.cache.work_path(e.ino)) {
            return (md.len(), md.len());
        }
        let key = BlobKey::new(e.ino, e.content_version());
        let cached = self
            .cache
            .cached_len(&key)
            .or_else(|| self.hydrator.downloaded(&key))
            .or_else(|| self.cache.partial_bytes(&key))
            .unwrap_or(0);
        (e.size, cached)
    }

    /// New credentials were checked against the server and swapped in: the drive is
    /// online again at once and the queued changes go on uploading.
    pub fn credentials_accepted(&self) {
        self.conn.credentials_accepted();
        self.uploader.unpause();
        lock(&self.listing_failures).clear();
    }
}
