//! The crate's error type.

use std::io;
use std::path::{Path, PathBuf};

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system operation failed; `op` names it and `path` is what it was applied to.
    #[error("cache {op} {}: {source}", path.display())]
    Io {
        /// The operation that failed (for example `"rename"`).
        op: &'static str,
        /// The path the operation was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The persisted SQLite index failed.
    #[error("cache index: {0}")]
    Index(#[from] rusqlite::Error),
    /// A fill was committed with a different number of bytes than announced.
    #[error("cache fill has {got} bytes, expected {expected}")]
    LengthMismatch {
        /// The length given to `begin_fill`.
        expected: u64,
        /// The bytes actually written (or the end of a write past `expected`).
        got: u64,
    },
    /// The blob holds local changes that are not uploaded yet, so it may not be dropped or replaced.
    #[error("cached blob {entry}/{version:?} is dirty")]
    Dirty {
        /// The entry id of the dirty blob.
        entry: u64,
        /// The version of the dirty blob.
        version: String,
    },
    /// The requested blob is not cached.
    #[error("cached blob {entry}/{version:?} not found")]
    NotFound {
        /// The entry id asked for.
        entry: u64,
        /// The version asked for.
        version: String,
    },
    /// The entry already has a working copy (open it with `Cache::work_open`).
    #[error("entry {entry} already has a working copy")]
    WorkExists {
        /// The entry id.
        entry: u64,
    },
    /// The entry has no working copy.
    #[error("entry {entry} has no working copy")]
    NoWorkingCopy {
        /// The entry id.
        entry: u64,
    },
    /// Another process (or another `Cache` in this process) has the cache directory open.
    #[error("cache directory {} is in use by another cache", dir.display())]
    Busy {
        /// The cache directory.
        dir: PathBuf,
    },
}

impl CacheError {
    /// Wraps an I/O error with the operation and path it came from.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        CacheError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
