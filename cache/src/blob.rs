//! [`Blob`]: an open, read-only handle on one complete cached blob. Opening one counts as a
//! use; while one is open the blob is never evicted.

use crate::key::BlobKey;
use crate::shared::Shared;
use std::fs::{File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{FileExt, OpenOptionsExt};
#[cfg(windows)]
use std::os::windows::fs::FileExt;
use std::sync::Arc;

/// An open handle on a complete blob.
///
/// While any handle for a key lives the blob is open and is never evicted; when the last one
/// drops, the cache re-checks its budget. A handle keeps working even if the blob is removed
/// meanwhile (the file is unlinked, the open descriptor stays valid).
pub struct Blob {
    shared: Arc<Shared>,
    key: BlobKey,
    token: u64,
    file: File,
    len: u64,
}

impl Blob {
    pub(crate) fn new(shared: Arc<Shared>, key: BlobKey, token: u64, file: File, len: u64) -> Blob {
        Blob {
            shared,
            key,
            token,
            file,
            len,
        }
    }

    /// The complete blob for `key`, opened for reading; counts as a use. A blob whose file
    /// is unreadable or has the wrong length is dropped from the cache.
    pub(crate) fn open(shared: &Arc<Shared>, key: &BlobKey) -> Option<Blob> {
        let mut st = shared.lock();
        let now = st.tick();
        let meta = st.ledger.touch(key)?;
        let path = shared.blobs_dir().join(&meta.file);
        let len = meta.len;
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        options.custom_flags(libc::O_NOFOLLOW);
        let opened = options
            .open(&path)
            .and_then(|f| f.metadata().map(|m| (f, m.len())));
        match opened {
            Ok((file, actual)) if actual == len => {
                meta.open += 1;
                meta.last_used = now;
                let token = meta.token;
                st.record_use(key);
                drop(st);
                Some(Blob::new(shared.clone(), key.clone(), token, file, len))
            }
            other => {
                match other {
                    Ok((_, actual)) => tracing::warn!(
                        path = %path.display(), expected = len, actual,
                        "cache: blob has the wrong length; dropping it"
                    ),
                    Err(err) => tracing::warn!(
                        path = %path.display(), %err, "cache: blob unreadable; dropping it"
                    ),
                }
                let unlink = st.drop_blobs(std::slice::from_ref(key));
                drop(st);
                shared.unlink(unlink);
                None
            }
        }
    }

    /// The key of this blob.
    pub fn key(&self) -> &BlobKey {
        &self.key
    }

    /// Length of the content in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The underlying read-only file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads at `offset` until `buf` is full or the end of the content; returns the bytes read
    /// (0 at or past the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.file, buf, offset)
    }
}

/// `pread` in a loop until `buf` is full or end of file.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(at) = offset.checked_add(done as u64) else {
            break;
        };
        #[cfg(unix)]
        let got = file.read_at(&mut buf[done..], at);
        #[cfg(windows)]
        let got = file.seek_read(&mut buf[done..], at);
        match got {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("key", &self.key)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Drop for Blob {
    /// One fewer open handle on the blob; after the last one, the budget is re-checked.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let Some(meta) = st.ledger.peek_mut(&self.key) else {
            return;
        };
        if meta.token != self.token {
            return;
        }
        meta.open = meta.open.saturating_sub(1);
        if meta.open > 0 {
            return;
        }
        let files = st.enforce_budget(self.shared.filling());
        drop(st);
        self.shared.unlink(files);
    }
}
