//! [`Blob`]: an open, read-only handle on one complete cached blob.

use crate::cache::Inner;
use crate::key::BlobKey;
use std::fs::File;
use std::io;
#[cfg(unix)]
use std::os::unix::fs::FileExt;
#[cfg(windows)]
use std::os::windows::fs::FileExt;
use std::sync::Arc;

/// An open handle on a complete blob.
///
/// While any handle for a key lives the blob is open and is never evicted; when the last one
/// drops, the cache re-checks its budget. A handle keeps working even if the blob is removed
/// meanwhile (the file is unlinked, the open descriptor stays valid).
pub struct Blob {
    inner: Arc<Inner>,
    key: BlobKey,
    token: u64,
    file: File,
    len: u64,
}

impl Blob {
    pub(crate) fn new(inner: Arc<Inner>, key: BlobKey, token: u64, file: File, len: u64) -> Blob {
        Blob {
            inner,
            key,
            token,
            file,
            len,
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
    fn drop(&mut self) {
        self.inner.release(&self.key, self.token);
    }
}
