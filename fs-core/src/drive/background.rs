//! Background readers (see [`crate::readers`]): what they are refused, and the thumbnails
//! to try again once content is local.

use edrive_cache::BlobKey;
use tracing::debug;

use super::Drive;
use crate::error::FsError;
use crate::meta::Entry;
use crate::readers::Opener;

impl Drive {
    /// Whether `e`'s content can be read without a download: a working copy, a complete
    /// cached version, or nothing to read.
    pub(super) fn content_is_local(&self, e: &Entry) -> bool {
        if e.size == 0 && e.size_known || self.has_working_copy(e.ino) {
            return true;
        }
        let key = BlobKey::new(e.ino, e.content_version());
        self.cache.cached_len(&key).is_some()
    }

    /// Refuses `opener` an open of `e` that would download content: background readers
    /// get only local content. Counted, and remembered for [`Drive::thumbnails_to_retry`].
    pub(super) fn check_opener(
        &self,
        e: &Entry,
        opener: &Opener,
        write: bool,
        truncate: bool,
    ) -> Result<(), FsError> {
        let Opener::Background(program) = opener else {
            return Ok(());
        };
        if (write && truncate) || self.content_is_local(e) {
            return Ok(());
        }
        debug!(
            ino = e.ino,
            program, "background read of online-only content refused"
        );
        self.refusals.note(program, e.ino);
        Err(FsError::NotLocal)
    }

    /// Files a background reader was refused whose content is local now (read by a person,
    /// or pinned), as paths below the mount; each is returned once. A thumbnailer that
    /// failed on one recorded the failure in its fail cache: the caller clears it.
    pub fn thumbnails_to_retry(&self) -> Vec<String> {
        let local = self.refusals.take_local(|ino| {
            self.entry(ino)
                .map(|e| self.content_is_local(&e))
                // Gone: nothing to retry, forget it.
                .unwrap_or(true)
        });
        local
            .into_iter()
            .filter_map(|ino| self.path_of(ino).ok())
            .map(|parts| parts.join("/"))
            .collect()
    }
}
