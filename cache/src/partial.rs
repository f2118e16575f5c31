//! Partial downloads: the bytes of a file fetched so far, kept with the map of which
//! ranges are present when the last reader closes before the file was complete, and
//! resumed by the next download of the same version, also after a restart. They count
//! toward the budget and are the first to be evicted.

use crate::cache::{Cache, State};
use crate::error::CacheError;
use crate::fill::Fill;
use crate::index::PartialRow;
use crate::key::{blob_file_name, BlobKey};
use std::fs;
use std::io;
use std::path::Path;

/// Suffix of a partial download's file name in `blobs/`.
const PARTIAL_SUFFIX: &str = ".part";

/// Byte ranges present in a partial download: sorted, disjoint, half-open.
pub type PresentRanges = Vec<(u64, u64)>;

/// In-memory bookkeeping of one partial download.
#[derive(Clone, Debug)]
pub(crate) struct Partial {
    /// File name inside `blobs/`.
    pub file: String,
    /// The whole file's length.
    pub len: u64,
    /// The byte ranges present (sorted, disjoint).
    pub ranges: Vec<(u64, u64)>,
    /// Bytes in `ranges`.
    pub covered: u64,
    pub last_used: u64,
}

/// Bytes in `ranges`.
pub(crate) fn covered(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|&(s, e)| e - s).sum()
}

/// Whether `name` is a partial download's file name.
pub(crate) fn is_partial_file(name: &str) -> bool {
    name.ends_with(PARTIAL_SUFFIX)
}

impl State {
    /// Adds `partial` as `key`'s partial download (replacing one); returns the file of the
    /// one it replaced.
    pub(crate) fn add_partial(&mut self, key: BlobKey, partial: Partial) -> Option<String> {
        self.partial_bytes += partial.covered;
        let old = self.partials.insert(key, partial)?;
        self.partial_bytes -= old.covered;
        Some(old.file)
    }

    /// Forgets the partial downloads `keys` (rows first); returns their files to unlink.
    pub(crate) fn drop_partials(&mut self, keys: &[BlobKey]) -> Vec<String> {
        if keys.is_empty() {
            return Vec::new();
        }
        if let Err(err) = self.index.delete_partials(keys) {
            tracing::warn!(%err, "cache: deleting partial download rows failed");
        }
        keys.iter()
            .filter_map(|key| {
                let p = self.partials.remove(key)?;
                self.partial_bytes -= p.covered;
                Some(p.file)
            })
            .collect()
    }

    /// Forgets every partial download of `entry`; returns their files to unlink.
    pub(crate) fn drop_partials_of(&mut self, entry: u64) -> Vec<String> {
        let keys: Vec<BlobKey> = self
            .partials
            .keys()
            .filter(|k| k.entry == entry)
            .cloned()
            .collect();
        self.drop_partials(&keys)
    }

    /// Drops partial downloads, least recently used first, while the budgeted bytes
    /// (`budgeted` plus the partials) exceed `limit`; returns files to unlink.
    pub(crate) fn evict_partials(&mut self, budgeted: u64, limit: u64) -> Vec<String> {
        if budgeted.saturating_add(self.partial_bytes) <= limit {
            return Vec::new();
        }
        let mut order: Vec<(u64, BlobKey, u64)> = self
            .partials
            .iter()
            .map(|(k, p)| (p.last_used, k.clone(), p.covered))
            .collect();
        order.sort_by_key(|(used, _, _)| *used);
        let mut total = budgeted.saturating_add(self.partial_bytes);
        let mut victims = Vec::new();
        for (_, key, bytes) in order {
            if total <= limit {
                break;
            }
            total -= bytes;
            victims.push(key);
        }
        self.drop_partials(&victims)
    }
}

impl Fill {
    /// Keeps what this fill holds as a partial download of its key: `ranges` (sorted,
    /// disjoint, within the expected length) are the bytes known to be written. The file is
    /// synced first, so a crash never leaves ranges recorded whose bytes are not on disk.
    /// Nothing is kept for empty `ranges`.
    pub fn park(mut self, ranges: &[(u64, u64)]) -> Result<(), CacheError> {
        let len = self.expected_len();
        let ranges: Vec<(u64, u64)> = ranges
            .iter()
            .map(|&(s, e)| (s, e.min(len)))
            .filter(|&(s, e)| s < e)
            .collect();
        let bytes = covered(&ranges);
        if bytes == 0 || bytes >= len {
            return Ok(());
        }
        let (file, path) = self.parts();
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(|e| CacheError::io("fsync", &path, e))?;
        let inner = self.inner().clone();
        let key = self.key().clone();
        let mut st = inner.lock();
        let name = format!("{}{PARTIAL_SUFFIX}", blob_file_name(&key, st.next_id()));
        let dest = inner.blobs_dir().join(&name);
        fs::rename(&path, &dest).map_err(|e| CacheError::io("rename", &path, e))?;
        self.mark_kept();
        let last_used = st.tick();
        let row = PartialRow {
            key: key.clone(),
            file: name.clone(),
            len,
            ranges: ranges.clone(),
            last_used,
        };
        if let Err(err) = st.index.upsert_partial(&row) {
            drop(st);
            let _ = fs::remove_file(&dest);
            return Err(err);
        }
        let mut unlink: Vec<String> = st
            .add_partial(
                key,
                Partial {
                    file: name,
                    len,
                    ranges,
                    covered: bytes,
                    last_used,
                },
            )
            .into_iter()
            .collect();
        unlink.extend(st.enforce_budget(inner.filling()));
        drop(st);
        inner.unlink(unlink);
        Ok(())
    }
}

impl Cache {
    /// Takes `key`'s partial download, if there is one of `len` bytes, back into a fill
    /// (to be completed, or parked again); returns it with the ranges it holds.
    pub fn resume_fill(
        &self,
        key: &BlobKey,
        len: u64,
    ) -> Result<Option<(Fill, PresentRanges)>, CacheError> {
        let mut st = self.inner.lock();
        let Some(p) = st.partials.get(key).cloned() else {
            return Ok(None);
        };
        let unlink = st.drop_partials(std::slice::from_ref(key));
        if p.len != len {
            drop(st);
            self.inner.unlink(unlink);
            return Ok(None);
        }
        let tmp = Fill::tmp_path(&self.inner);
        let src = self.inner.blobs_dir().join(&p.file);
        if let Err(e) = fs::rename(&src, &tmp) {
            tracing::warn!(path = %src.display(), err = %e, "cache: partial download unusable");
            drop(st);
            self.inner.unlink(unlink);
            return Ok(None);
        }
        drop(st);
        let fill = Fill::resume(self.inner.clone(), key.clone(), len, tmp, &p.ranges)?;
        Ok(Some((fill, p.ranges)))
    }

    /// Bytes present of `key`'s partial download, if there is one.
    pub fn partial_bytes(&self, key: &BlobKey) -> Option<u64> {
        self.inner.lock().partials.get(key).map(|p| p.covered)
    }
}

/// Whether `row` names a plain file in `blobs/` of the recorded length.
pub(crate) fn partial_row_is_valid(blobs_dir: &Path, row: &PartialRow) -> bool {
    if !is_partial_file(&row.file) || row.ranges.is_empty() {
        return false;
    }
    match fs::symlink_metadata(blobs_dir.join(&row.file)) {
        Ok(meta) => meta.is_file() && meta.len() == row.len,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(file = %row.file, err = %e, "cache: partial download unreadable");
            }
            false
        }
    }
}
