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

/// How much of a local file is copied per write into its working copy.
const COPY_CHUNK: usize = 1 << 20;

/// Mode bits of what is created from Windows (which has none to give).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Names of staging files start with this (and end with `.tmp`): they match the default
/// ignore list, and listings leave them out.
pub const STAGING_PREFIX: &str = "~$edrive-staging-";

/// Most uploads remembered as waiting for their file's new name.
const MAX_VANISHED: usize = 4096;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether `name` is one of the mirror's staging files.
pub fn is_staging(name: &str) -> bool {
    name.starts_with(STAGING_PREFIX)
}

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
mod tests {
    use super::*;
    use crate::testing::{drive_with, MemTree};
    use edrive_fs_core::EntryState;

    struct Fixture {
        _cache: tempfile::TempDir,
        root: tempfile::TempDir,
        mirror: Mirror,
    }

    fn fixture(tree: MemTree) -> Fixture {
        let (cache, drive) = drive_with(tree);
        let root = tempfile::tempdir().expect("root");
        let mirror = Mirror::new(Projection::new(drive), root.path().to_path_buf());
        Fixture {
            _cache: cache,
            root,
            mirror,
        }
    }

    impl Fixture {
        /// Writes a local file under the root, as an application would.
        fn local(&self, path: &str, content: &[u8]) {
            let p = self.root.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }

        async fn apply(&self, op: CoreOp) {
            self.mirror.apply(&op).await.expect("applied");
        }

        /// The drive's entry at `path`, looked up by exact names.
        async fn find(&self, path: &str) -> Option<u64> {
            let drive = self.mirror.drive();
            let mut ino = edrive_fs_core::ROOT_INO;
            for part in VirtPath::parse(path).parts() {
                match drive.lookup(ino, part).await {
                    Ok(a) => ino = a.ino,
                    Err(FsError::NotFound) => return None,
                    Err(e) => panic!("lookup {path}: {e}"),
                }
            }
            Some(ino)
        }

        /// What the drive reads for `path`.
        async fn content(&self, path: &str) -> Vec<u8> {
            let drive = self.mirror.drive();
            let ino = self.find(path).await.expect("exists");
            let fh = drive.open(ino, false, false).await.expect("open");
            let data = drive.read(fh, 0, 1 << 20).await.expect("read");
            drive.release(fh).expect("release");
            data
        }
    }

    fn vp(s: &str) -> VirtPath {
        VirtPath::parse(s)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_file_is_recorded_with_its_content_and_waits_for_upload() {
        let f = fixture(MemTree::new().dir("docs"));
        f.local("docs/new.txt", b"hello");
        f.apply(CoreOp::CreateFile {
            path: vp("docs\\new.txt"),
        })
        .await;
        f.apply(CoreOp::Upload {
            path: vp("docs\\new.txt"),
        })
        .await;
        assert_eq!(f.content("docs/new.txt").await, b"hello");
        let ino = f.find("docs/new.txt").await.expect("created");
        assert_eq!(
            f.mirror.drive().state(ino).expect("state"),
            EntryState::Dirty
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_save_over_a_server_file_replaces_it_under_the_servers_name() {
        let f = fixture(MemTree::new().file("Report.docx", b"old version"));
        f.local("REPORT.DOCX", b"new");
        f.apply(CoreOp::Upload {
            path: vp("REPORT.DOCX"),
        })
        .await;
        assert_eq!(f.content("Report.docx").await, b"new");
        assert_eq!(f.find("REPORT.DOCX").await, None, "a second file was made");
        let ino = f.find("Report.docx").await.expect("kept");
        let drive = f.mirror.drive();
        assert_eq!(drive.state(ino).expect("state"), EntryState::Dirty);
        assert_eq!(drive.getattr(ino).expect("attr").size, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renames_move_and_a_folder_goes_only_once_nothing_unseen_is_left() {
        let f = fixture(
            MemTree::new()
                .file("a/x.txt", b"x")
                .file("a/sub/y.txt", b"y")
                .dir("b"),
        );
        f.apply(CoreOp::Rename {
            from: vp("a\\x.txt"),
            to: vp("b\\z.txt"),
        })
        .await;
        assert!(f.find("a/x.txt").await.is_none());
        assert_eq!(f.content("b/z.txt").await, b"x");
        // Windows deletes a folder's content first; what is left was never shown there.
        f.apply(CoreOp::Delete {
            path: vp("A"),
            is_dir: true,
        })
        .await;
        assert!(
            f.find("a/sub/y.txt").await.is_some(),
            "unseen content deleted"
        );
        for (path, is_dir) in [("a\\sub\\y.txt", false), ("a\\sub", true), ("a", true)] {
            f.apply(CoreOp::Delete {
                path: vp(path),
                is_dir,
            })
            .await;
        }
        assert!(f.find("a").await.is_none(), "empty folder not deleted");
        // Deleting what is gone already is not an error.
        f.apply(CoreOp::Delete {
            path: vp("a\\sub\\y.txt"),
            is_dir: false,
        })
        .await;
        // A file deleted locally while the drive has a folder of that name: kept.
        f.apply(CoreOp::Delete {
            path: vp("b"),
            is_dir: false,
        })
        .await;
        assert!(
            f.find("b/z.txt").await.is_some(),
            "a folder went for a file"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_renamed_before_its_content_was_taken_arrives_whole() {
        let f = fixture(MemTree::new().file("d/old.txt", b"old"));
        // A download written as x.crdownload, closed, renamed to x.zip, all before the
        // recorder ran: the local disk only has x.zip.
        f.local("x.zip", b"the zip");
        for op in [
            CoreOp::CreateFile {
                path: vp("x.crdownload"),
            },
            CoreOp::Upload {
                path: vp("x.crdownload"),
            },
            CoreOp::Rename {
                from: vp("x.crdownload"),
                to: vp("x.zip"),
            },
        ] {
            f.apply(op).await;
        }
        assert_eq!(f.content("x.zip").await, b"the zip");
        assert!(f.find("x.crdownload").await.is_none());
        // A saved server file whose folder is renamed before the upload runs.
        f.local("e/old.txt", b"new content");
        f.apply(CoreOp::Upload {
            path: vp("d\\old.txt"),
        })
        .await;
        f.apply(CoreOp::Rename {
            from: vp("d"),
            to: vp("e"),
        })
        .await;
        assert_eq!(f.content("e/old.txt").await, b"new content");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rename_onto_another_case_of_a_name_replaces_that_file() {
        let f = fixture(MemTree::new().file("a.txt", b"a").file("b.txt", b"b"));
        f.apply(CoreOp::Rename {
            from: vp("a.txt"),
            to: vp("B.txt"),
        })
        .await;
        assert_eq!(f.content("b.txt").await, b"a");
        assert!(f.find("B.txt").await.is_none(), "a second file was made");
        assert!(f.find("a.txt").await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_folder_created_or_moved_in_is_imported_whole() {
        let f = fixture(MemTree::new());
        f.local("in/one.txt", b"1");
        f.local("in/deep/two.txt", b"22");
        f.local("in/~$lock.docx", b"lock");
        // A folder moved in from outside the root is one notification.
        f.apply(CoreOp::CreateDir { path: vp("in") }).await;
        assert_eq!(f.content("in/one.txt").await, b"1");
        assert_eq!(f.content("in/deep/two.txt").await, b"22");
        assert!(f.find("in/~$lock.docx").await.is_none());
        // A rename whose source the drive never had imports the new place.
        f.local("out/three.txt", b"333");
        f.apply(CoreOp::Rename {
            from: vp("elsewhere"),
            to: vp("out"),
        })
        .await;
        assert_eq!(f.content("out/three.txt").await, b"333");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staging_files_never_stay_and_are_never_listed() {
        let f = fixture(MemTree::new().file("doc.txt", b"v1"));
        f.local("doc.txt", b"v2");
        f.apply(CoreOp::Upload {
            path: vp("doc.txt"),
        })
        .await;
        assert_eq!(f.content("doc.txt").await, b"v2");
        let drive = f.mirror.drive();
        let names: Vec<String> = f
            .mirror
            .projection
            .children(edrive_fs_core::ROOT_INO)
            .await
            .expect("children")
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["doc.txt"], "staging file left behind");
        // One that was left (a crash mid-copy) stays local and out of listings.
        let left = format!("{STAGING_PREFIX}1-0.tmp");
        let (_, fh) = drive
            .create(edrive_fs_core::ROOT_INO, &left, 0o644)
            .await
            .expect("create");
        drive.release(fh).expect("release");
        let listed = f
            .mirror
            .projection
            .listing(&VirtPath::root())
            .await
            .expect("listing");
        assert_eq!(
            listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["doc.txt"]
        );
        let ino = f.find(&left).await.expect("there");
        assert_eq!(drive.state(ino).expect("state"), EntryState::LocalOnly);
    }

    /// Notifications through the tracker and the mirror, the local disk in its final
    /// state (the recorder runs after the application is done).
    async fn replay(f: &Fixture, seq: &[crate::notification::Notification]) {
        let mut t = crate::notification::Tracker::new();
        let ops: Vec<CoreOp> = seq.iter().flat_map(|n| t.observe(n)).collect();
        for op in ops {
            f.apply(op).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_word_save_and_an_explorer_new_file_end_up_right_on_the_drive() {
        use crate::notification::Notification as N;
        let closed = |s: &str, modified: bool, deleted: bool| N::HandleClosed {
            path: vp(s),
            is_dir: false,
            modified,
            deleted,
        };
        let created = |s: &str| N::NewFileCreated {
            path: vp(s),
            is_dir: false,
        };
        let renamed = |a: &str, b: &str| N::FileRenamed {
            from: Some(vp(a)),
            to: Some(vp(b)),
            is_dir: false,
        };
        let f = fixture(MemTree::new().file("Docs/Report.docx", b"version 1"));
        f.local("Docs/Report.docx", b"version 2");
        replay(
            &f,
            &[
                created("Docs\\~$Report.docx"),
                closed("Docs\\~$Report.docx", true, false),
                created("Docs\\~WRD0001.tmp"),
                closed("Docs\\~WRD0001.tmp", true, false),
                renamed("Docs\\Report.docx", "Docs\\~WRL0002.tmp"),
                renamed("Docs\\~WRD0001.tmp", "Docs\\Report.docx"),
                closed("Docs\\~WRL0002.tmp", false, true),
                closed("Docs\\~$Report.docx", false, true),
            ],
        )
        .await;
        assert_eq!(f.content("Docs/Report.docx").await, b"version 2");
        let names: Vec<String> = f
            .mirror
            .projection
            .listing(&vp("Docs"))
            .await
            .expect("listing")
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["Report.docx"]);

        // Explorer: New > Text Document, typed into, renamed.
        f.local("notes.txt", b"hello");
        replay(
            &f,
            &[
                created("New Text Document.txt"),
                closed("New Text Document.txt", true, false),
                renamed("New Text Document.txt", "notes.txt"),
            ],
        )
        .await;
        assert_eq!(f.content("notes.txt").await, b"hello");
        assert!(f.find("New Text Document.txt").await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_parents_are_created_and_vanished_files_are_skipped() {
        let f = fixture(MemTree::new());
        f.local("new/dir/f.txt", b"f");
        f.apply(CoreOp::Upload {
            path: vp("new\\dir\\f.txt"),
        })
        .await;
        assert_eq!(f.content("new/dir/f.txt").await, b"f");
        // Deleted locally before its content was taken: nothing to record.
        f.apply(CoreOp::Upload {
            path: vp("gone.txt"),
        })
        .await;
        assert!(f.find("gone.txt").await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_file_is_copied_whole() {
        let f = fixture(MemTree::new());
        let data: Vec<u8> = (0..(3 * COPY_CHUNK + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        f.local("big.bin", &data);
        f.apply(CoreOp::Upload {
            path: vp("big.bin"),
        })
        .await;
        let drive = f.mirror.drive();
        let ino = f.find("big.bin").await.expect("created");
        assert_eq!(drive.getattr(ino).expect("attr").size, data.len() as u64);
        let fh = drive.open(ino, false, false).await.expect("open");
        let mut back = Vec::new();
        while back.len() < data.len() {
            let part = drive
                .read(fh, back.len() as u64, 1 << 20)
                .await
                .expect("read");
            assert!(!part.is_empty(), "short");
            back.extend_from_slice(&part);
        }
        drive.release(fh).expect("release");
        assert!(back == data, "content differs");
    }
}
