//! After a crash: the working copies the last run left become pending uploads, or go.

use super::*;
use crate::meta::{LocalAttrs, ProblemKind};

impl Drive {
    /// After a crash: working copies of dirty or new files are kept (their size is the
    /// working copy's), all others dropped (the server has that content).
    pub(super) fn recover(&self) -> Result<(), FsError> {
        let mut kept = 0;
        for (ino, len) in self.cache.work_entries()? {
            match self.meta.get(ino)? {
                Some(e) if !e.is_dir() && (e.dirty || e.remote.is_none()) => {
                    kept += 1;
                    if e.size != len || !e.dirty {
                        self.meta.set_local(
                            ino,
                            &LocalAttrs {
                                size: Some(len),
                                dirty: Some(true),
                                ..Default::default()
                            },
                        )?;
                    }
                }
                // A tombstone whose upload a crash cut short keeps that upload's base
                // (see `drop_content`).
                Some(_) => {
                    self.cache.work_remove(ino)?;
                }
                None => {
                    let keep_base = matches!(self.meta.get_any(ino)?, Some(e) if e.put_started);
                    if keep_base {
                        self.cache.work_remove_keep_base(ino)?;
                    } else {
                        self.cache.work_remove(ino)?;
                    }
                }
            }
        }
        // Refusals and a full server are worth another try with this run; conflicts wait
        // for a person.
        self.meta.clear_problems(ProblemKind::Refused)?;
        self.meta.clear_problems(ProblemKind::NoSpace)?;
        self.meta.clear_problems(ProblemKind::Retrying)?;
        let (pending, stuck) = self.meta.pending_count()?;
        if pending > 0 {
            tracing::info!(
                pending,
                stuck,
                working_copies = kept,
                "resuming write-back of local changes"
            );
        }
        Ok(())
    }
}
