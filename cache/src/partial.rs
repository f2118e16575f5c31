//! Partial downloads: the bytes of a file fetched so far, kept with the map of which
//! ranges are present when the last reader closes before the file was complete, and
//! resumed by the next download of the same version, also after a restart. They count
//! toward the budget and are the first to be evicted.
//!
//! [`Partials`] is the in-memory set; the caller keeps its index rows in step.

use crate::error::CacheError;
use crate::index::{Index, PartialRow};
use crate::key::{blob_file_name, BlobKey};
use std::collections::{HashMap, HashSet};
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

impl Partial {
    /// Its index row as `key`'s partial download.
    pub(crate) fn row(&self, key: &BlobKey) -> PartialRow {
        PartialRow {
            key: key.clone(),
            file: self.file.clone(),
            len: self.len,
            ranges: self.ranges.clone(),
            last_used: self.last_used,
        }
    }
}

/// Bytes in `ranges`.
pub(crate) fn covered(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|&(s, e)| e - s).sum()
}

/// The file name in `blobs/` of a partial download of `key`, made unique by `generation`.
pub(crate) fn file_name(key: &BlobKey, generation: u64) -> String {
    format!("{}{PARTIAL_SUFFIX}", blob_file_name(key, generation))
}

/// Whether `name` is a partial download's file name.
fn is_partial_file(name: &str) -> bool {
    name.ends_with(PARTIAL_SUFFIX)
}

/// The partial downloads kept, by key, and the bytes they hold.
#[derive(Default)]
pub(crate) struct Partials {
    by_key: HashMap<BlobKey, Partial>,
    /// Bytes present in all of them.
    bytes: u64,
}

impl Partials {
    /// Loads the partial downloads recorded in `index` whose file in `blobs_dir` is valid and
    /// not in `files` (the complete blobs' files), adding their files to `files`; drops the
    /// rows of the others.
    pub(crate) fn load(
        index: &mut Index,
        blobs_dir: &Path,
        files: &mut HashSet<String>,
    ) -> Result<Partials, CacheError> {
        let mut partials = Partials::default();
        let mut bad = Vec::new();
        for row in index.load_partials()? {
            match row {
                Ok(row) if !files.contains(&row.file) && row_is_valid(blobs_dir, &row) => {
                    files.insert(row.file.clone());
                    let covered = covered(&row.ranges);
                    partials.insert(
                        row.key,
                        Partial {
                            file: row.file,
                            len: row.len,
                            ranges: row.ranges,
                            covered,
                            last_used: row.last_used,
                        },
                    );
                }
                Ok(row) => bad.push(row.key),
                Err(key) => bad.push(key),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                count = bad.len(),
                "cache: dropping partial download rows without a valid file"
            );
            index.delete_partials(&bad)?;
        }
        Ok(partials)
    }

    /// Bytes present in all partial downloads.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `key`'s partial download, if there is one.
    pub(crate) fn get(&self, key: &BlobKey) -> Option<&Partial> {
        self.by_key.get(key)
    }

    /// Adds `partial` as `key`'s partial download (replacing one); returns the file of the
    /// one it replaced.
    pub(crate) fn insert(&mut self, key: BlobKey, partial: Partial) -> Option<String> {
        self.bytes += partial.covered;
        let old = self.by_key.insert(key, partial)?;
        self.bytes -= old.covered;
        Some(old.file)
    }

    /// Forgets the partial downloads `keys`; returns their files.
    pub(crate) fn remove(&mut self, keys: &[BlobKey]) -> Vec<String> {
        keys.iter()
            .filter_map(|key| {
                let p = self.by_key.remove(key)?;
                self.bytes -= p.covered;
                Some(p.file)
            })
            .collect()
    }

    /// The keys of `entry`'s partial downloads.
    pub(crate) fn keys_of(&self, entry: u64) -> Vec<BlobKey> {
        self.by_key
            .keys()
            .filter(|k| k.entry == entry)
            .cloned()
            .collect()
    }

    /// The partial downloads to drop, least recently used first, while the budgeted bytes
    /// (`budgeted` plus the partials) exceed `limit`.
    pub(crate) fn victims(&self, budgeted: u64, limit: u64) -> Vec<BlobKey> {
        if budgeted.saturating_add(self.bytes) <= limit {
            return Vec::new();
        }
        let mut order: Vec<(u64, BlobKey, u64)> = self
            .by_key
            .iter()
            .map(|(k, p)| (p.last_used, k.clone(), p.covered))
            .collect();
        order.sort_by_key(|(used, _, _)| *used);
        let mut total = budgeted.saturating_add(self.bytes);
        let mut victims = Vec::new();
        for (_, key, bytes) in order {
            if total <= limit {
                break;
            }
            total -= bytes;
            victims.push(key);
        }
        victims
    }
}

/// Whether `row` names a plain file in `blobs/` of the recorded length.
fn row_is_valid(blobs_dir: &Path, row: &PartialRow) -> bool {
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
