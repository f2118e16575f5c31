//! Blob identity and the on-disk names derived from it.

use sha2::{Digest, Sha256};
use std::fmt;

/// Identifies one blob: a remote file's stable entry id and the version (ETag) of its content.
///
/// A new version is a different key, so content of a changed remote file is never answered from
/// the stale blob.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct BlobKey {
    /// The file's stable entry (inode) number in the metadata store.
    pub entry: u64,
    /// The server's ETag value, or a synthesized tag.
    pub version: String,
}

impl BlobKey {
    /// Builds a key from an entry id and a version.
    pub fn new(entry: u64, version: impl Into<String>) -> Self {
        BlobKey {
            entry,
            version: version.into(),
        }
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:?}", self.entry, self.version)
    }
}

/// The file name in `blobs/` for `key`, made unique by `generation`.
///
/// Versions come from remote servers and may hold any characters, so only a hash of the version
/// goes into the name: `<entry hex>-<version hash hex>-<generation hex>`.
pub(crate) fn blob_file_name(key: &BlobKey, generation: u64) -> String {
    let digest = Sha256::digest(key.version.as_bytes());
    let mut name = format!("{:016x}-", key.entry);
    for byte in &digest[..8] {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str(&format!("-{generation:x}"));
    name
}

/// The generation of a name made by [`blob_file_name`], or `None` if `name` is not such a name.
pub(crate) fn blob_file_generation(name: &str) -> Option<u64> {
    let mut parts = name.split('-');
    let entry = parts.next()?;
    let hash = parts.next()?;
    let generation = parts.next()?;
    let hex = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if parts.next().is_some() || entry.len() != 16 || hash.len() != 16 {
        return None;
    }
    if !hex(entry, 16) || !hex(hash, 16) || !hex(generation, 16) {
        return None;
    }
    u64::from_str_radix(generation, 16).ok()
}
