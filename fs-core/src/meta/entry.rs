//! One known entry of the remote tree, as the store holds it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File or folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
}

/// A row of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Stable inode number.
    pub ino: u64,
    /// Parent folder's inode (0 for the root).
    pub parent: u64,
    /// Name within the parent (empty for the root).
    pub name: String,
    /// File or folder.
    pub kind: Kind,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// Modification time, if known.
    pub mtime: Option<SystemTime>,
    /// Server version tag value, if known.
    pub etag: Option<String>,
    /// Whether the tag is weak.
    pub etag_weak: bool,
    /// For folders: when the children were last listed (ms since the epoch).
    pub listed_at_ms: Option<i64>,
}

impl Entry {
    /// The content version the cache keys this file's blob by: the ETag when the server
    /// gave one, else one made of mtime and size (so a change still changes the key).
    pub fn content_version(&self) -> String {
        match &self.etag {
            Some(tag) if self.etag_weak => format!("W/{tag}"),
            Some(tag) => tag.clone(),
            None => {
                let m = self
                    .mtime
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                format!("m{m}-s{}", self.size)
            }
        }
    }

    /// Whether this is a folder.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

pub(super) const SELECT: &str =
    "SELECT ino, parent, name, is_dir, size, mtime_ns, etag, etag_weak, listed_at_ms FROM entries";

pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let mtime_ns: Option<i64> = r.get(5)?;
    Ok(Entry {
        ino: r.get::<_, i64>(0)? as u64,
        parent: r.get::<_, i64>(1)? as u64,
        name: r.get(2)?,
        kind: if r.get::<_, bool>(3)? {
            Kind::Dir
        } else {
            Kind::File
        },
        size: r.get::<_, i64>(4)?.max(0) as u64,
        mtime: mtime_ns.map(|n| UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)),
        etag: r.get(6)?,
        etag_weak: r.get(7)?,
        listed_at_ms: r.get(8)?,
    })
}
