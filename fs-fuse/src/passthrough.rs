//! The kernel's backing files for passthrough reads: one per inode, shared by every
//! handle the kernel serves from it, closed with the last of them (the kernel refuses a
//! second backing file for an inode that has one).

use std::collections::HashMap;

use fuser::BackingId;

/// Backing files registered with the kernel, by inode, and the handles using them.
#[derive(Default)]
pub struct Backings {
    by_ino: HashMap<u64, Backing>,
    by_fh: HashMap<u64, u64>,
}

struct Backing {
    id: BackingId,
    version: String,
    handles: usize,
}

impl Backings {
    /// The backing file of `ino` if it holds `version`; counts `fh` as one more user.
    pub fn share(&mut self, ino: u64, version: &str, fh: u64) -> Option<&BackingId> {
        let b = self.by_ino.get_mut(&ino)?;
        if b.version != version {
            return None;
        }
        b.handles += 1;
        self.by_fh.insert(fh, ino);
        Some(&b.id)
    }

    /// Whether `ino` has a backing file (of any version).
    pub fn has(&self, ino: u64) -> bool {
        self.by_ino.contains_key(&ino)
    }

    /// Records the new backing file `id` of `ino`, used by `fh`.
    pub fn insert(&mut self, ino: u64, version: String, fh: u64, id: BackingId) -> &BackingId {
        self.by_fh.insert(fh, ino);
        let b = self.by_ino.entry(ino).or_insert(Backing {
            id,
            version,
            handles: 0,
        });
        b.handles += 1;
        &b.id
    }

    /// Handle `fh` closed; the backing file is closed with its last handle.
    pub fn release(&mut self, fh: u64) {
        let Some(ino) = self.by_fh.remove(&fh) else {
            return;
        };
        if let Some(b) = self.by_ino.get_mut(&ino) {
            b.handles -= 1;
            if b.handles == 0 {
                self.by_ino.remove(&ino);
            }
        }
    }
}
