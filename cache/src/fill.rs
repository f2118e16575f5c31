//! [`Fill`]: a blob being written (downloaded) into `tmp/`, readable while in progress and
//! published into the cache only when complete; or parked as a partial download, and resumed
//! from one.

use crate::blob::Blob;
use crate::dir;
use crate::error::CacheError;
use crate::key::BlobKey;
use crate::partial::{self, Partial, PresentRanges};
use crate::shared::Shared;
use std::fs::{self, File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// A blob being written. Commit it with [`Fill::commit`]; dropping it discards the temp file.
///
/// It counts toward the cache's used bytes with what it has written so far, and is never evicted.
pub struct Fill {
    shared: Arc<Shared>,
    key: BlobKey,
    expected_len: u64,
    file: File,
    path: PathBuf,
    coverage: Mutex<Coverage>,
    /// Set once the temp file has become a blob (so `Drop` leaves it alone).
    committed: bool,
}

/// Which byte ranges have been written.
#[derive(Debug, Default)]
struct Coverage {
    /// Disjoint, non-adjacent, sorted half-open ranges.
    ranges: Vec<(u64, u64)>,
    /// Total bytes in `ranges`.
    covered: u64,
    /// Largest end offset written.
    end: u64,
    /// End of the furthest write refused for going past the expected length.
    overflow: Option<u64>,
}

impl Coverage {
    /// Adds `[start, end)`; returns how many bytes were not covered before.
    fn add(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        self.end = self.end.max(end);
        let (mut s, mut e) = (start, end);
        let first = self.ranges.partition_point(|&(_, re)| re < s);
        let mut last = first;
        let mut removed = 0;
        while let Some(&(rs, re)) = self.ranges.get(last) {
            if rs > e {
                break;
            }
            s = s.min(rs);
            e = e.max(re);
            removed += re - rs;
            last += 1;
        }
        self.ranges.splice(first..last, [(s, e)]);
        let before = self.covered;
        self.covered = self.covered - removed + (e - s);
        self.covered - before
    }

    /// Length of the written prefix starting at offset 0.
    fn prefix(&self) -> u64 {
        match self.ranges.first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }
}

impl Fill {
    /// Creates a unique temp file under `tmp/`.
    pub(crate) fn create(
        shared: Arc<Shared>,
        key: BlobKey,
        expected_len: u64,
    ) -> Result<Fill, CacheError> {
        let (file, path) = loop {
            let path = Self::tmp_path(&shared);
            let mut options = OpenOptions::new();
            options.read(true).write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            match options.open(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CacheError::io("create", &path, e)),
            }
        };
        Ok(Fill {
            shared,
            key,
            expected_len,
            file,
            path,
            coverage: Mutex::new(Coverage::default()),
            committed: false,
        })
    }

    fn coverage(&self) -> MutexGuard<'_, Coverage> {
        self.coverage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key being filled.
    pub fn key(&self) -> &BlobKey {
        &self.key
    }

    /// The length announced to `begin_fill`.
    pub fn expected_len(&self) -> u64 {
        self.expected_len
    }

    /// Writes `data` at `offset` (`pwrite`). Writing past the expected length is refused with
    /// [`io::ErrorKind::InvalidInput`] and makes the fill uncommittable.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflow"))?;
        if end > self.expected_len {
            let mut cov = self.coverage();
            cov.overflow = Some(cov.overflow.unwrap_or(0).max(end));
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write ends at {end}, past the expected length {}",
                    self.expected_len
                ),
            ));
        }
        #[cfg(unix)]
        self.file.write_all_at(data, offset)?;
        #[cfg(windows)]
        write_all_at(&self.file, data, offset)?;
        let added = self.coverage().add(offset, end);
        self.shared.add_filling(added);
        Ok(())
    }

    /// Writes `data` right after the furthest byte written so far.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let offset = self.coverage().end;
        self.write_at(data, offset)
    }

    /// The temp file has been moved elsewhere: dropping the fill leaves it alone.
    fn mark_kept(&mut self) {
        let covered = self.coverage().covered;
        self.shared.sub_filling(covered);
        self.committed = true;
    }

    /// Takes `key`'s partial download, if there is one of `len` bytes, back into a fill
    /// (to be completed, or parked again); returns it with the ranges it holds.
    pub(crate) fn resume(
        shared: &Arc<Shared>,
        key: &BlobKey,
        len: u64,
    ) -> Result<Option<(Fill, PresentRanges)>, CacheError> {
        let mut st = shared.lock();
        let Some(p) = st.take_partial(key) else {
            return Ok(None);
        };
        if p.len != len {
            drop(st);
            shared.unlink(vec![p.file]);
            return Ok(None);
        }
        let tmp = Self::tmp_path(shared);
        let src = shared.blobs_dir().join(&p.file);
        if let Err(e) = fs::rename(&src, &tmp) {
            tracing::warn!(path = %src.display(), err = %e, "cache: partial download unusable");
            drop(st);
            shared.unlink(vec![p.file]);
            return Ok(None);
        }
        drop(st);
        let fill = Fill::over_partial(shared.clone(), key.clone(), len, tmp, &p.ranges)?;
        Ok(Some((fill, p.ranges)))
    }

    /// A fill over an existing file at `path` in `tmp/` (a partial download moved back),
    /// with `ranges` already written.
    fn over_partial(
        shared: Arc<Shared>,
        key: BlobKey,
        expected_len: u64,
        path: PathBuf,
        ranges: &[(u64, u64)],
    ) -> Result<Fill, CacheError> {
        let file = dir::open_read_write(&path).map_err(|e| CacheError::io("open", &path, e))?;
        let mut coverage = Coverage::default();
        let mut added = 0;
        for &(s, e) in ranges {
            added += coverage.add(s, e);
        }
        shared.add_filling(added);
        Ok(Fill {
            shared,
            key,
            expected_len,
            file,
            path,
            coverage: Mutex::new(coverage),
            committed: false,
        })
    }

    /// A new name in `tmp/` (unique: process id and a sequence number).
    fn tmp_path(shared: &Shared) -> PathBuf {
        shared.tmp_dir().join(format!(
            "fill-{}-{:x}",
            std::process::id(),
            shared.next_tmp_seq()
        ))
    }

    /// A separate read-only handle on the temp file, to serve the written prefix while the
    /// fill continues. It stays valid after commit or drop.
    pub fn reader(&self) -> io::Result<File> {
        File::open(&self.path)
    }

    /// Bytes written contiguously from offset 0 (what readers may serve).
    pub fn written(&self) -> u64 {
        self.coverage().prefix()
    }

    /// Publishes the blob: checks that exactly `expected_len` bytes were written from offset 0,
    /// moves the file into `blobs/` (indexed once a background sync has it on disk), drops stale versions of the entry that
    /// are not open, pinned or dirty, enforces the budget and returns an open handle.
    ///
    /// Fails with [`CacheError::LengthMismatch`] for a short or overlong fill and with
    /// [`CacheError::Dirty`] if a dirty blob with the same key exists; the temp file is then
    /// deleted and nothing is cached.
    pub fn commit(mut self) -> Result<Blob, CacheError> {
        let expected = self.expected_len;
        let covered = {
            let cov = self.coverage();
            if let Some(end) = cov.overflow {
                return Err(CacheError::LengthMismatch { expected, got: end });
            }
            if cov.prefix() != expected {
                return Err(CacheError::LengthMismatch {
                    expected,
                    got: cov.covered,
                });
            }
            cov.covered
        };
        let read = File::open(&self.path).map_err(|e| CacheError::io("open", &self.path, e))?;
        let actual = read
            .metadata()
            .map_err(|e| CacheError::io("stat", &self.path, e))?
            .len();
        if actual != expected {
            return Err(CacheError::LengthMismatch {
                expected,
                got: actual,
            });
        }
        let (token, file_name) = self
            .shared
            .install(&self.key, &self.path, expected, covered, 1)?;
        self.committed = true;
        self.shared.index_when_synced(self.key.clone(), file_name);
        Ok(Blob::new(
            self.shared.clone(),
            self.key.clone(),
            token,
            read,
            expected,
        ))
    }

    /// Keeps what this fill holds as a partial download of its key: `ranges` (sorted,
    /// disjoint, within the expected length) are the bytes known to be written. The file is
    /// synced first, so a crash never leaves ranges recorded whose bytes are not on disk.
    /// Nothing is kept for empty `ranges`.
    pub fn park(mut self, ranges: &[(u64, u64)]) -> Result<(), CacheError> {
        let len = self.expected_len;
        let ranges: Vec<(u64, u64)> = ranges
            .iter()
            .map(|&(s, e)| (s, e.min(len)))
            .filter(|&(s, e)| s < e)
            .collect();
        let bytes = partial::covered(&ranges);
        if bytes == 0 || bytes >= len {
            return Ok(());
        }
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| CacheError::io("fsync", &self.path, e))?;
        let shared = self.shared.clone();
        let mut st = shared.lock();
        let name = partial::file_name(&self.key, st.next_id());
        let dest = shared.blobs_dir().join(&name);
        fs::rename(&self.path, &dest).map_err(|e| CacheError::io("rename", &self.path, e))?;
        self.mark_kept();
        let last_used = st.tick();
        let partial = Partial {
            file: name,
            len,
            ranges,
            covered: bytes,
            last_used,
        };
        let replaced = match st.keep_partial(self.key.clone(), partial) {
            Ok(replaced) => replaced,
            Err(err) => {
                drop(st);
                let _ = fs::remove_file(&dest);
                return Err(err);
            }
        };
        let mut unlink: Vec<String> = replaced.into_iter().collect();
        unlink.extend(st.enforce_budget(shared.filling()));
        drop(st);
        shared.unlink(unlink);
        Ok(())
    }
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill")
            .field("key", &self.key)
            .field("expected_len", &self.expected_len)
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let covered = self.coverage().covered;
        self.shared.sub_filling(covered);
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), %err, "cache: deleting partial fill failed");
            }
        }
    }
}

/// `write_all_at` for Windows: positional writes (`seek_write`) until all of `data` is written.
#[cfg(windows)]
fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !data.is_empty() {
        match file.seek_write(data, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
