//! One known entry of the remote tree, as the store holds it.

use std::time::SystemTime;

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
    /// Size in bytes (0 for folders, and 0 while `size_known` is false).
    pub size: u64,
    /// Whether `size` is known. False for a server file whose listing gave no usable
    /// length, until a download finds it (see [`super::Meta::learn_size`]); such a file
    /// is never taken to be empty.
    pub size_known: bool,
    /// Modification time, if known.
    pub mtime: Option<SystemTime>,
    /// Access time, if set locally (else shown as `mtime`).
    pub atime: Option<SystemTime>,
    /// Time of the last local change of content or attributes, if any (else shown as
    /// `mtime`).
    pub ctime: Option<SystemTime>,
    /// Server version tag value, if known.
    pub etag: Option<String>,
    /// Whether the tag is weak.
    pub etag_weak: bool,
    /// For folders: when the children were last listed (ms since the epoch).
    pub listed_at_ms: Option<i64>,
    /// Where the server has this entry: (server-side parent inode, name); `None` while it
    /// exists only locally.
    pub remote: Option<(u64, String)>,
    /// The local content differs from the server version `etag` names.
    pub dirty: bool,
    /// Permission bits set locally (the server has no place for them).
    pub mode: Option<u32>,
    /// Why write-back of this entry is stuck (a conflict, no room, a refusal), if it is.
    pub problem: Option<super::Problem>,
    /// An upload was started and has not been confirmed (a crash may have cut it short).
    pub put_started: bool,
    /// Deleted locally, still to be deleted on the server (a tombstone).
    pub deleted: bool,
    /// What the server does not let this user do with it (bits of
    /// [`super::permissions`]; 0: nothing known to be refused).
    pub denied: u8,
}

impl Entry {
    /// The content version the cache keys this file's blob by: the ETag when the server
    /// gave one, else one made of mtime and size (so a change still changes the key).
    pub fn content_version(&self) -> String {
        match &self.etag {
            // By value alone: Apache marks a file's tag weak for a second after a change
            // and strong later, with the same value; the content is the same.
            Some(tag) => tag.clone(),
            None => {
                let m = self.mtime.and_then(super::time_to_ns).unwrap_or(0);
                if self.size_known {
                    format!("m{m}-s{}", self.size)
                } else {
                    format!("m{m}-s?")
                }
            }
        }
    }

    /// Whether this is a folder.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// Whether the server has this entry where the user sees it (its parent aside).
    pub fn at_home(&self) -> bool {
        !self.deleted
            && self
                .remote
                .as_ref()
                .is_some_and(|(p, n)| *p == self.parent && *n == self.name)
    }

    /// The ETag the local copy was based on, as a precondition value.
    pub fn base_etag(&self) -> Option<crate::remote::ETag> {
        self.etag.as_ref().map(|v| crate::remote::ETag {
            value: v.clone(),
            weak: self.etag_weak,
        })
    }
}

pub(super) const SELECT: &str = "SELECT ino, parent, name, is_dir, size, mtime_ns, etag, \
     etag_weak, listed_at_ms, remote_parent, remote_name, dirty, mode, problem, put_started, \
     atime_ns, ctime_ns, denied FROM entries";

fn time(ns: Option<i64>) -> Option<SystemTime> {
    ns.map(super::ns_to_time)
}

pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let parent: Option<i64> = r.get(1)?;
    let remote_parent: Option<i64> = r.get(9)?;
    let remote_name: Option<String> = r.get(10)?;
    // -1: unknown (see `size_col`).
    let size: i64 = r.get(4)?;
    Ok(Entry {
        ino: r.get::<_, i64>(0)? as u64,
        parent: parent.unwrap_or(0) as u64,
        name: r.get(2)?,
        kind: if r.get::<_, bool>(3)? {
            Kind::Dir
        } else {
            Kind::File
        },
        size: size.max(0) as u64,
        size_known: size >= 0,
        mtime: time(r.get(5)?),
        atime: time(r.get(15)?),
        ctime: time(r.get(16)?),
        etag: r.get(6)?,
        etag_weak: r.get(7)?,
        listed_at_ms: r.get(8)?,
        remote: remote_parent
            .zip(remote_name)
            .map(|(p, n)| (p.max(0) as u64, n)),
        dirty: r.get(11)?,
        mode: r.get::<_, Option<i64>>(12)?.map(|m| m as u32),
        problem: r.get(13)?,
        put_started: r.get(14)?,
        deleted: parent.is_none(),
        denied: r.get::<_, i64>(17)?.clamp(0, 255) as u8,
    })
}
