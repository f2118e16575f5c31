//! The drive's state as status shows it: the link, suspension, the write-back's progress
//! and problems, and each entry's state.

use super::*;

impl Drive {
    /// The link to the server: online, offline or waiting for credentials.
    pub fn net_state(&self) -> NetState {
        self.conn.state()
    }

    /// Suspends background network work (`suspended`; with `offline` every request,
    /// on-demand reads included) or resumes it. The in-flight transfer finishes. Kept
    /// across restarts.
    pub fn set_suspended(&self, suspended: bool, offline: bool) -> Result<(), FsError> {
        let value = match (suspended, offline) {
            (false, _) => None,
            (true, false) => Some("on"),
            (true, true) => Some(SUSPENDED_OFFLINE),
        };
        self.meta.set_setting(SUSPENDED, value)?;
        self.apply_suspension(suspended, offline && suspended);
        Ok(())
    }

    pub(super) fn apply_suspension(&self, suspended: bool, offline: bool) {
        self.uploader.set_suspended(suspended);
        self.conn.set_forced_offline(offline);
        self.activity.wake();
    }

    /// Whether the drive is suspended, and whether offline too.
    pub fn suspended(&self) -> Option<bool> {
        if self.conn.forced_offline() {
            Some(true)
        } else if self.uploader.is_suspended() {
            Some(false)
        } else {
            None
        }
    }

    /// How many uploads run now.
    pub fn uploads_running(&self) -> usize {
        self.uploader.uploads_running()
    }

    /// The write-back's progress.
    pub fn sync_progress(&self) -> SyncProgress {
        self.uploader.progress()
    }

    /// Suspends (`true`) or resumes sending local changes to the server.
    pub fn set_writeback_suspended(&self, suspended: bool) {
        self.uploader.set_suspended(suspended);
    }

    /// Asks the write-back to upload everything now, skipping the debounce.
    pub fn request_sync(&self) {
        self.uploader.request_sync();
    }

    /// Entries whose write-back is stuck, as (local path, why), at most `limit`.
    pub fn problems(&self, limit: usize) -> Result<Vec<(String, crate::meta::Problem)>, FsError> {
        let mut out = Vec::new();
        for e in self.meta.pending()? {
            if out.len() >= limit {
                break;
            }
            if let Some(p) = e.problem {
                // Held deletions are listed by `edrive deletions` (one line per burst,
                // not one per file); status counts them.
                if p == crate::meta::Problem::Held {
                    continue;
                }
                let path = if e.deleted {
                    self.meta
                        .remote_path_of(e.ino)?
                        .map(|p| format!("{p} (deleted here)"))
                        .unwrap_or_default()
                } else {
                    self.meta.path_of(e.ino)?.to_string()
                };
                out.push((path, p));
            }
        }
        Ok(out)
    }

    /// What is known of the server's guarantees (learnt when the write-back starts).
    pub fn capabilities(&self) -> crate::remote::Capabilities {
        self.uploader.capabilities()
    }

    /// Whether everything that can be written back has been (stuck entries aside).
    pub fn is_synced(&self) -> bool {
        self.uploader.is_idle()
    }

    /// The state of `ino` as `user.edrive.state` shows it.
    pub fn state(&self, ino: u64) -> Result<EntryState, FsError> {
        let e = self.entry(ino)?;
        if let Some(p) = &e.problem {
            return Ok(EntryState::from_problem(p));
        }
        if !e.is_dir() {
            // Not `progress()`: that counts pending rows and scans the working copies.
            if self.uploader.is_uploading(ino) {
                return Ok(EntryState::Uploading);
            }
            if e.remote.is_none() && self.options.ignore.matches(&e.name) {
                return Ok(EntryState::LocalOnly);
            }
            if e.dirty || e.remote.is_none() || self.activity.is_open_for_writing(ino) {
                return Ok(EntryState::Dirty);
            }
        }
        if e.is_dir() && self.meta.is_excluded(ino)? {
            return Ok(EntryState::Excluded);
        }
        if self.is_read_only(ino)? {
            return Ok(EntryState::ReadOnly);
        }
        if e.is_dir() {
            return Ok(if e.listed_at_ms.is_some() {
                EntryState::Hydrated
            } else {
                EntryState::OnlineOnly
            });
        }
        let key = BlobKey {
            entry: ino,
            version: e.content_version(),
        };
        Ok(if let Some(flagged) = self.cache.cached_pinned(&key) {
            // Pinned once the blob is exempt from eviction: a download finishes (and is
            // readable) a moment before the pin worker flags it.
            if flagged && self.meta.pinned_by(ino)?.is_some() {
                EntryState::Pinned
            } else {
                EntryState::Hydrated
            }
        } else if self.hydrator.is_running(&key) || self.cache.partial_bytes(&key).is_some() {
            EntryState::Partial
        } else {
            EntryState::OnlineOnly
        })
    }

    /// Numbers for `edrive status`.
    pub fn status(&self) -> Result<DriveStatus, FsError> {
        let cache = self.cache.stats();
        Ok(DriveStatus {
            server: self.remote.describe(),
            hydrated_files: cache.blobs as u64,
            cache,
            downloads: self.hydrator.running() as u64,
            known_entries: self.meta.count()?,
            background_refused: self.refusals.counts(),
            sync: self.uploader.progress(),
        })
    }
}
