//! Changes the server is known to refuse fail at once, with `EACCES`, before any request
//! and before anything is recorded: a file in a read-only space cannot be edited,
//! nothing can be created in such a folder, and nothing in it deleted or moved. What is
//! refused is learnt from the server (see `crate::meta::permissions`).

use super::Drive;
use crate::error::FsError;
use crate::meta::{Entry, DENY_CHANGE, DENY_REMOVE};
use crate::remote::RemoteError;

/// The error a refused change gets: `EACCES`, as the server's 403 would.
fn refused() -> FsError {
    FsError::Remote(RemoteError::Auth(403))
}

impl Drive {
    /// Whether something may be created in folder `parent`.
    pub(super) fn may_add_in(&self, parent: u64) -> Result<(), FsError> {
        if self.meta.denied(parent)? & DENY_CHANGE != 0 || self.meta.is_excluded(parent)? {
            return Err(refused());
        }
        Ok(())
    }

    /// Whether the content of file `e` may change.
    pub(super) fn may_change(&self, e: &Entry) -> Result<(), FsError> {
        if self.meta.denied(e.ino)? & DENY_CHANGE != 0 {
            return Err(refused());
        }
        Ok(())
    }

    /// Whether `e` may be deleted or moved out of its folder.
    pub(super) fn may_remove(&self, e: &Entry) -> Result<(), FsError> {
        // An excluded placeholder looks empty: removing it would delete the server's
        // folder with everything in it.
        if self.meta.denied(e.ino)? & DENY_REMOVE != 0
            || self.meta.denied(e.parent)? & DENY_CHANGE != 0
            || (e.is_dir() && self.meta.is_excluded(e.ino)?)
        {
            return Err(refused());
        }
        Ok(())
    }

    /// Copies the local content of `ino` (a change not uploaded) to `dest`, a new file
    /// outside the mount (`edrive resolve --save-as`). Returns the bytes copied.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn save_local_copy(&self, ino: u64, dest: &std::path::Path) -> Result<u64, FsError> {
        use std::io::Write;
        let src = self.cache.work_path(ino);
        let mut from = match std::fs::File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FsError::Invalid("no local content to save here"))
            }
            Err(e) => return Err(e.into()),
        };
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)?;
        let n = std::io::copy(&mut from, &mut to)?;
        to.flush()?;
        to.sync_all()?;
        Ok(n)
    }

    /// Forgets what the refusal of a change of `e` taught (see
    /// `crate::sync::attention::learn_refusal`): its folder's mark, or its own at the top.
    pub(super) fn lift_refusal(&self, e: &Entry) -> Result<(), FsError> {
        let folder = if e.deleted {
            e.remote
                .as_ref()
                .map(|(p, _)| *p)
                .unwrap_or(crate::meta::ROOT_INO)
        } else {
            e.parent
        };
        let target = if folder == crate::meta::ROOT_INO {
            e.ino
        } else {
            folder
        };
        self.meta.allow_subtree(target)?;
        self.inval.inode(target);
        Ok(())
    }

    /// Whether `ino` is known to be read-only (for its state and mode bits).
    pub fn is_read_only(&self, ino: u64) -> Result<bool, FsError> {
        Ok(self.meta.denied(ino)? & DENY_CHANGE != 0)
    }
}
