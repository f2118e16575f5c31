//! Carrying local changes into fs-core's write path: each [`CoreOp`] becomes the calls a
//! FUSE mount makes for the same change, so a Windows mount shares the write-back journal,
//! conflict rules and cache limits of the Linux one.
//!
//! ProjFS has already made the change on the local disk when it notifies. Here it is
//! recorded in fs-core (its store and a working copy in the cache, both synced), and
//! fs-core's write-back uploads it.
//!
//! * An `Upload` copies the local file into a *staging* file next to it, named so that it
//!   never leaves the machine (`~$edrive-…tmp`, on the ignore list), and then renames the
//!   staging file over the target: the save-by-rename that editors do, which fs-core
//!   uploads as one conditional `PUT` over the old file. A copy that fails or is cut short
//!   (a crash, a locked file) leaves the target as it was; only whole copies replace it.
//! * An `Upload` that finds its local file gone (renamed or deleted since) is remembered: a
//!   later `Rename` of that file, or of a folder above it, uploads it from its new place.
//! * `CreateDir` imports what the local folder holds (a folder moved in from outside the
//!   root arrives as one notification). Save temporaries are left out.
//! * A deleted folder is removed only when the drive has nothing left in it: Windows
//!   deletes what it shows first, so what remains is what it never showed (names it
//!   cannot display, files added on the server since) and is not deleted.
//! * Paths resolve case-insensitively ([`Projection::resolve`]): a save as `REPORT.docx`
//!   replaces the server's `report.docx` under the server's name, and a rename onto a name
//!   that exists in another case replaces that file.
//!
//! Missing parent folders are created first (a folder made locally whose own operation
//! failed).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edrive_fs_core::{Drive, FsError, Kind, SetAttr};
use tracing::{debug, warn};

use crate::name_order::SortKey;
use crate::notification::{is_transient, CoreOp};
use crate::path::VirtPath;
use crate::projection::{Projection, Resolved};
use crate::staging::STAGING_PREFIX;

/// How much of a local file is copied per write into its working copy.
const COPY_CHUNK: usize = 1 << 20;

/// Mode bits of what is created from Windows (which has none to give).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Most uploads remembered as waiting for their file's new name.
const MAX_VANISHED: usize = 4096;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Applies local changes made under `root` to the drive.
pub struct Mirror {
    projection: Projection,
    root: PathBuf,
    /// Uploads that found their local file gone, by path: its rename follows.
    vanished: Mutex<HashMap<Vec<SortKey>, VirtPath>>,
    /// Numbers the staging files.
    staged: AtomicU64,
}

/// A writable fs-core handle, released when dropped (also when the task is aborted).
struct Handle<'a> {
    drive: &'a Drive,
    fh: u64,
    released: bool,
}

impl Handle<'_> {
    /// Releases the handle; its error matters (the store's record of the new content).
    fn release(mut self) -> Result<(), FsError> {
        self.released = true;
        self.drive.release(self.fh)
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.drive.release(self.fh) {
                debug!(error = %e, "release after a failed copy");
            }
        }
    }
}

impl Mirror {
    /// Changes under the virtualization root `root` go to `projection`'s drive.
    pub fn new(projection: Projection, root: PathBuf) -> Mirror {
        Mirror {
            projection,
            root,
            vanished: Mutex::new(HashMap::new()),
            staged: AtomicU64::new(0),
        }
    }

    fn drive(&self) -> &Arc<Drive> {
        self.projection.drive()
    }

    fn vanished(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<SortKey>, VirtPath>> {
        self.vanished.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local file of `path`.
    fn local(&self, path: &VirtPath) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(path.parts());
        p
    }

    /// Records `op` in the drive.
    pub async fn apply(&self, op: &CoreOp) -> Result<(), FsError> {
        match op {
            CoreOp::CreateDir { path } => self.import(path).await,
            CoreOp::CreateFile { path } => self.create_file(path).await,
            CoreOp::Upload { path } => self.upload(path).await,
            CoreOp::Rename { from, to } => self.rename(from, to).await,
            CoreOp::Delete { path, is_dir } => self.delete(path, *is_dir).await,
        }
    }

    /// `path` resolved, or `None` when the drive has no such entry.
    async fn existing(&self, path: &VirtPath) -> Result<Option<Resolved>, FsError> {
        match self.projection.resolve(path).await {
            Ok(r) => Ok(Some(r)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The folder `path` lies in (created if missing) and `path`'s name.
    async fn parent_of<'p>(&self, path: &'p VirtPath) -> Result<(u64, &'p str), FsError> {
        let (Some(parent), Some(name)) = (path.parent(), path.name()) else {
            return Err(FsError::Invalid("the root cannot change"));
        };
        Ok((self.ensure_dir(&parent).await?, name))
    }

    /// The folder at `path`, created (with its parents) if the drive has none; its inode.
    fn ensure_dir<'a>(&'a self, path: &'a VirtPath) -> BoxFuture<'a, Result<u64, FsError>> {
        Box::pin(async move {
            if let Some(r) = self.existing(path).await? {
                return match r.attr.kind {
                    Kind::Dir => Ok(r.ino),
                    _ => Err(FsError::NotDir),
                };
            }
            let (parent, name) = self.parent_of(path).await?;
            Ok(self.drive().mkdir(parent, name, DIR_MODE).await?.ino)
        })
    }

    /// An empty file at `path`, unless something is there already.
    async fn create_file(&self, path: &VirtPath) -> Result<(), FsError> {
        if self.existing(path).await?.is_some() {
            return Ok(());
        }
        let (parent, name) = self.parent_of(path).await?;
        let (_, fh) = self.drive().create(parent, name, FILE_MODE).await?;
        self.drive().release(fh)
    }

    /// The local file at `path` becomes the drive's content of `path` (created if new).
    async fn upload(&self, path: &VirtPath) -> Result<(), FsError> {
        let local = self.local(path);
        let md = match tokio::fs::metadata(&local).await {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Renamed or deleted since: the notification of that follows.
                debug!(%path, "gone before its content was taken; waiting for its new name");
                let mut vanished = self.vanished();
                if vanished.len() < MAX_VANISHED {
                    vanished.insert(path.key(), path.clone());
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if md.is_dir() {
            return Ok(());
        }
        // Opened before anything changes in the drive: a file another program holds
        // without sharing fails here, with nothing to undo.
        let mut src = tokio::fs::File::open(&local).await?;
        let (parent, name) = self.parent_of(path).await?;
        let target = self.existing(path).await?;
        // The name the server knows it by, if it has it in another case.
        let name = match &target {
            Some(r) if r.attr.kind == Kind::Dir => return Err(FsError::IsDir),
            Some(r) => r.path.name().unwrap_or(name).to_string(),
            None => name.to_string(),
        };
        let drive = self.drive();
        let staging = format!(
            "{STAGING_PREFIX}{}-{}.tmp",
            std::process::id(),
            self.staged.fetch_add(1, Ordering::Relaxed)
        );
        let direct = !drive.ignores(&staging);
        let (ino, fh) = if direct {
            // An ignore list without `~$*` / `*.tmp` (--no-default-ignore): no staging name
            // would stay local, so the content goes into the target's working copy.
            match target {
                Some(r) => (r.ino, drive.open(r.ino, true, true).await?),
                None => {
                    let (attr, fh) = drive.create(parent, &name, FILE_MODE).await?;
                    (attr.ino, fh)
                }
            }
        } else {
            let (attr, fh) = drive.create(parent, &staging, FILE_MODE).await?;
            (attr.ino, fh)
        };
        let handle = Handle {
            drive,
            fh,
            released: false,
        };
        let copied = self.copy(&mut src, fh).await;
        let copied = match copied {
            Ok(n) => {
                let d = drive.clone();
                // On disk before it counts as recorded.
                match tokio::task::spawn_blocking(move || d.fsync(fh)).await {
                    Ok(Ok(())) => Ok(n),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(FsError::Io(std::io::Error::other(e.to_string()))),
                }
            }
            Err(e) => Err(e),
        };
        if let (Ok(_), Ok(mtime)) = (&copied, md.modified()) {
            let set = SetAttr {
                mtime: Some(mtime),
                ..SetAttr::default()
            };
            if let Err(e) = drive.setattr(ino, set).await {
                debug!(%path, error = %e, "modification time not kept");
            }
        }
        let released = handle.release();
        let bytes = match (copied, released) {
            (Ok(n), Ok(())) => n,
            (Err(e), _) | (Ok(_), Err(e)) => {
                if !direct {
                    if let Err(e2) = drive.unlink(parent, &staging).await {
                        debug!(error = %e2, "staging file left behind");
                    }
                }
                return Err(e);
            }
        };
        if !direct {
            if let Err(e) = drive.rename(parent, &staging, parent, &name, false).await {
                if let Err(e2) = drive.unlink(parent, &staging).await {
                    debug!(error = %e2, "staging file left behind");
                }
                return Err(e);
            }
        }
        debug!(%path, bytes, "local content recorded");
        Ok(())
    }

    /// Copies `src` into handle `fh` from the start; the bytes copied.
    async fn copy(&self, src: &mut tokio::fs::File, fh: u64) -> Result<u64, FsError> {
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut offset = 0u64;
        loop {
            let n = tokio::io::AsyncReadExt::read(src, &mut buf).await?;
            if n == 0 {
                return Ok(offset);
            }
            self.drive().write(fh, offset, &buf[..n])?;
            offset += n as u64;
        }
    }

    /// `from` moved to `to` (replacing a file there).
    async fn rename(&self, from: &VirtPath, to: &VirtPath) -> Result<(), FsError> {
        let Some(src) = self.existing(from).await? else {
            // Not on the drive (created locally and not recorded yet): new at `to`.
            self.forget_vanished(from);
            return self.import(to).await;
        };
        let (Some(src_parent), Some(src_name)) = (src.path.parent(), src.path.name()) else {
            return Err(FsError::Invalid("the root cannot move"));
        };
        let src_parent = self.ensure_dir(&src_parent).await?;
        let (parent, name) = self.parent_of(to).await?;
        // Onto a file the server has under another case of the name: that file is the
        // one Windows replaced.
        let name = match self.existing(to).await? {
            Some(t) if t.ino != src.ino => t.path.name().unwrap_or(name).to_string(),
            _ => name.to_string(),
        };
        self.drive()
            .rename(src_parent, src_name, parent, &name, false)
            .await?;
        // Uploads that found nothing at the old place: their content is at the new one.
        let moved: Vec<VirtPath> = {
            let mut vanished = self.vanished();
            let keys: Vec<_> = vanished
                .iter()
                .filter(|(_, p)| p.starts_with(from))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| vanished.remove(&k))
                .filter_map(|p| p.rebase(from, to))
                .collect()
        };
        for p in moved {
            self.upload(&p).await?;
        }
        Ok(())
    }

    /// Forgets the uploads waiting below `path` (gone for good).
    fn forget_vanished(&self, path: &VirtPath) {
        self.vanished().retain(|_, p| !p.starts_with(path));
    }

    /// `path` deleted locally. A folder goes only when the drive has nothing left in it.
    async fn delete(&self, path: &VirtPath, is_dir: bool) -> Result<(), FsError> {
        self.forget_vanished(path);
        let Some(r) = self.existing(path).await? else {
            return Ok(());
        };
        if (r.attr.kind == Kind::Dir) != is_dir {
            // Something else has the name on the drive now: not what was deleted.
            warn!(%path, is_dir, "deleted locally, but the drive has another kind of entry there; kept");
            return Ok(());
        }
        let (Some(parent), Some(name)) = (r.path.parent(), r.path.name()) else {
            return Err(FsError::Invalid("the root cannot be deleted"));
        };
        let parent = self.ensure_dir(&parent).await?;
        if !is_dir {
            return self.drive().unlink(parent, name).await;
        }
        match self.drive().rmdir(parent, name).await {
            Err(FsError::NotEmpty) => {
                warn!(%path, "folder deleted locally still has entries Windows did not show (names it cannot display, or new on the server); kept on the server");
                Ok(())
            }
            r => r,
        }
    }

    /// What is at `path` on the local disk, new to the drive: a file's content, or a
    /// folder and everything in it (names of save temporaries left out).
    fn import<'a>(&'a self, path: &'a VirtPath) -> BoxFuture<'a, Result<(), FsError>> {
        Box::pin(async move {
            let local = self.local(path);
            let md = match tokio::fs::metadata(&local).await {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Gone again: remembered like an upload that found nothing, so a
                    // rename of it imports it at its new place.
                    return self.upload(path).await;
                }
                Err(e) => return Err(e.into()),
            };
            if !md.is_dir() {
                return self.upload(path).await;
            }
            self.ensure_dir(path).await?;
            let mut names = Vec::new();
            let mut rd = tokio::fs::read_dir(&local).await?;
            while let Some(e) = rd.next_entry().await? {
                match e.file_name().into_string() {
                    Ok(name) if !is_transient(&name) => names.push(name),
                    Ok(_) => {}
                    Err(name) => debug!(?name, "not a Unicode name: not imported"),
                }
            }
            for name in names {
                self.import(&path.join(&name)).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
