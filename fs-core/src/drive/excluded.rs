//! Folders excluded on this device (`edrive exclude` / `include`). An excluded folder
//! stays visible as an empty, read-only placeholder (state `excluded`): its content is
//! neither listed, fetched nor polled, and its cached content is freed. A placeholder
//! rather than nothing: the user sees that the server has the folder and can include it
//! again by its path; its name cannot be taken by a new local folder that would then
//! collide with the server's; and removing it cannot delete the server's folder.

use tracing::{info, instrument};

use super::{lock, Drive};
use crate::error::FsError;
use crate::logged::OrLog;
use crate::meta::{ExcludeError, ROOT_INO};

impl Drive {
    /// Excludes folder `ino` on this device.
    #[instrument(level = "debug", skip(self))]
    pub fn exclude(&self, ino: u64) -> Result<(), FsError> {
        let e = self.entry(ino)?;
        if ino == ROOT_INO {
            return Err(FsError::Invalid("the top of the mount cannot be excluded"));
        }
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        if e.remote.is_none() {
            return Err(FsError::Invalid(
                "this folder is not on the server yet; run `edrive sync` first",
            ));
        }
        let (names, files) = self.meta.exclude(ino).map_err(|err| match err {
            ExcludeError::Pending => FsError::Invalid(
                "changes in this folder are not on the server yet; run `edrive sync` first",
            ),
            ExcludeError::Pinned => {
                FsError::Invalid("something in this folder is pinned; `edrive unpin` it first")
            }
            ExcludeError::Meta(m) => FsError::Meta(m),
        })?;
        for f in &files {
            self.cache.remove_entry(*f).or_log("cache remove_entry");
        }
        for name in &names {
            self.inval.entry(ino, name);
        }
        self.inval.inode(ino);
        lock(&self.recent).remove(&ino);
        info!(ino, files = files.len(), "folder excluded on this device");
        Ok(())
    }

    /// Includes folder `ino` again: its content is listed at the next access.
    #[instrument(level = "debug", skip(self))]
    pub fn include(&self, ino: u64) -> Result<(), FsError> {
        if !self.meta.include(ino)? {
            return Err(FsError::Invalid("this folder is not excluded"));
        }
        self.inval.inode(ino);
        info!(ino, "folder included again");
        Ok(())
    }

    /// Whether folder `ino` is excluded on this device.
    pub fn is_excluded(&self, ino: u64) -> Result<bool, FsError> {
        Ok(self.meta.is_excluded(ino)?)
    }

    /// The excluded folders, by path.
    pub fn excluded_paths(&self) -> Result<Vec<String>, FsError> {
        let mut out = Vec::new();
        for ino in self.meta.excluded()? {
            out.push(self.meta.path_of(ino)?.to_string());
        }
        Ok(out)
    }

    /// Refuses, with a clear message, a path in (or at) an excluded folder: nothing in
    /// it can be pinned.
    pub async fn refuse_if_excluded(&self, path: &[String]) -> Result<(), FsError> {
        let mut ino = ROOT_INO;
        for name in path {
            if self.meta.is_excluded(ino)? {
                break;
            }
            match self.lookup(ino, name).await {
                Ok(a) => ino = a.ino,
                Err(_) => return Ok(()),
            }
        }
        if self.meta.is_excluded(ino)? {
            return Err(FsError::Invalid(
                "this folder is excluded on this device; `edrive include` it first",
            ));
        }
        Ok(())
    }
}
