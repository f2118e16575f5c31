//! Carrying local changes into fs-core's write path: each [`CoreOp`] becomes the calls a
//! FUSE mount makes for the same change, so a Windows mount shares the write-back journal,
//! conflict rules and cache limits of the Linux one.
//!
//! ProjFS has already made the change on the local disk when it notifies. Here it is
//! recorded in fs-core (its store and a working copy in the cache, both synced), and
//! fs-core's write-back uploads it. An `Upload` copies the local file's content into the
//! working copy; its modification time goes with it.
//!
//! Paths are resolved as ProjFS names them, case-insensitively ([`Projection::resolve`]):
//! a local `REPORT.docx` saved over the server's `report.docx` replaces it, under the
//! server's name. Missing parent folders are created first (a folder made locally whose
//! own operation failed). Whatever is not on the server yet when it is renamed or moved
//! in (a folder moved in from outside the root) is imported whole from the local disk.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use edrive_fs_core::{Drive, FsError, Kind, SetAttr};
use tracing::debug;

use crate::notification::{is_transient, CoreOp};
use crate::path::VirtPath;
use crate::projection::{Projection, Resolved};

/// How much of a local file is copied per write into its working copy.
const COPY_CHUNK: usize = 1 << 20;

/// Mode bits of what is created from Windows (which has none to give).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Applies local changes made under `root` to the drive.
pub struct Mirror {
    projection: Projection,
    root: PathBuf,
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
        Mirror { projection, root }
    }

    fn drive(&self) -> &Arc<Drive> {
        self.projection.drive()
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
            CoreOp::CreateDir { path } => self.ensure_dir(path).await.map(|_| ()),
            CoreOp::CreateFile { path } => self.create_file(path).await,
            CoreOp::Upload { path } => self.upload(path).await,
            CoreOp::Rename { from, to } => self.rename(from, to).await,
            CoreOp::Delete { path, .. } => self.delete(path).await,
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
                // Deleted or renamed since: the notification of that follows.
                debug!(%path, "gone before its content was taken");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if md.is_dir() {
            return Ok(());
        }
        let mut src = tokio::fs::File::open(&local).await?;
        let drive = self.drive();
        let (ino, fh) = match self.existing(path).await? {
            Some(r) if r.attr.kind == Kind::Dir => return Err(FsError::IsDir),
            // Truncated: the old content is never downloaded to be overwritten.
            Some(r) => (r.ino, drive.open(r.ino, true, true).await?),
            None => {
                let (parent, name) = self.parent_of(path).await?;
                let (attr, fh) = drive.create(parent, name, FILE_MODE).await?;
                (attr.ino, fh)
            }
        };
        let handle = Handle {
            drive,
            fh,
            released: false,
        };
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut offset = 0u64;
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut src, &mut buf).await?;
            if n == 0 {
                break;
            }
            drive.write(fh, offset, &buf[..n])?;
            offset += n as u64;
        }
        // On disk before the change counts as recorded: the local file may be changed
        // again, and a crash must not lose what was taken.
        let d = drive.clone();
        tokio::task::spawn_blocking(move || d.fsync(fh))
            .await
            .map_err(|e| FsError::Io(std::io::Error::other(e.to_string())))??;
        handle.release()?;
        if let Ok(mtime) = md.modified() {
            drive
                .setattr(
                    ino,
                    SetAttr {
                        mtime: Some(mtime),
                        ..SetAttr::default()
                    },
                )
                .await?;
        }
        debug!(%path, bytes = offset, "local content recorded");
        Ok(())
    }

    /// `from` moved to `to` (replacing a file there).
    async fn rename(&self, from: &VirtPath, to: &VirtPath) -> Result<(), FsError> {
        let Some(src) = self.existing(from).await? else {
            // Not on the drive (created locally and not recorded yet): new at `to`.
            return self.import(to).await;
        };
        let (Some(src_parent), Some(src_name)) = (src.path.parent(), src.path.name()) else {
            return Err(FsError::Invalid("the root cannot move"));
        };
        let src_parent = self.ensure_dir(&src_parent).await?;
        let (parent, name) = self.parent_of(to).await?;
        self.drive()
            .rename(src_parent, src_name, parent, name, false)
            .await
    }

    /// `path` deleted: a folder with everything in it.
    async fn delete(&self, path: &VirtPath) -> Result<(), FsError> {
        let Some(r) = self.existing(path).await? else {
            return Ok(());
        };
        let (Some(parent), Some(name)) = (r.path.parent(), r.path.name()) else {
            return Err(FsError::Invalid("the root cannot be deleted"));
        };
        let parent = self.ensure_dir(&parent).await?;
        match r.attr.kind {
            Kind::Dir => self.remove_tree(parent, name.to_string(), r.ino).await,
            _ => self.drive().unlink(parent, name).await,
        }
    }

    /// Deletes folder `name` (inode `ino`) in `parent`, its content first.
    fn remove_tree(
        &self,
        parent: u64,
        name: String,
        ino: u64,
    ) -> BoxFuture<'_, Result<(), FsError>> {
        Box::pin(async move {
            for child in self.projection.children(ino).await?.iter() {
                match child.attr.kind {
                    Kind::Dir => {
                        self.remove_tree(ino, child.name.clone(), child.attr.ino)
                            .await?
                    }
                    _ => self.drive().unlink(ino, &child.name).await?,
                }
            }
            self.drive().rmdir(parent, &name).await
        })
    }

    /// What is at `path` on the local disk, new to the drive: a file's content, or a
    /// folder and everything in it (names of save temporaries left out).
    fn import<'a>(&'a self, path: &'a VirtPath) -> BoxFuture<'a, Result<(), FsError>> {
        Box::pin(async move {
            let local = self.local(path);
            let md = match tokio::fs::metadata(&local).await {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
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
    async fn renames_move_and_a_deleted_folder_goes_with_its_content() {
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
        f.apply(CoreOp::Delete {
            path: vp("A"),
            is_dir: true,
        })
        .await;
        assert!(f.find("a").await.is_none(), "folder not deleted");
        // Deleting what is gone already is not an error.
        f.apply(CoreOp::Delete {
            path: vp("a\\sub\\y.txt"),
            is_dir: false,
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_folder_moved_in_is_imported_whole_without_save_temporaries() {
        let f = fixture(MemTree::new());
        f.local("in/one.txt", b"1");
        f.local("in/deep/two.txt", b"22");
        f.local("in/~$lock.docx", b"lock");
        // Its old name was never on the drive.
        f.apply(CoreOp::Rename {
            from: vp("elsewhere"),
            to: vp("in"),
        })
        .await;
        assert_eq!(f.content("in/one.txt").await, b"1");
        assert_eq!(f.content("in/deep/two.txt").await, b"22");
        assert!(f.find("in/~$lock.docx").await.is_none());
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
