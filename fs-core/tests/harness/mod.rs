//! A real [`Drive`] (metadata store, cache, uploader) over a [`MemRemote`], driven
//! through the calls the FUSE adapter makes; shared by the write-back tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edrive_cache::Cache;
use edrive_fs_core::remote::memory::MemRemote;
use edrive_fs_core::remote::{Remote, RemotePath};
use edrive_fs_core::{Drive, DriveOptions, Meta, ROOT_INO};

/// A drive over a [`MemRemote`], with the write-back running.
pub struct Harness {
    pub server: Arc<MemRemote>,
    pub drive: Arc<Drive>,
    _tmp: tempfile::TempDir,
}

/// How long a sync may take before a test gives up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

impl Harness {
    /// A drive over `server` whose files are uploaded `upload_delay` after their last
    /// close (or at once by [`Harness::sync`]), set up as the daemon does.
    pub async fn new(server: Arc<MemRemote>, upload_delay: Duration) -> Harness {
        Harness::over(server.clone(), server, upload_delay).await
    }

    /// A drive over `remote`, which leads to `server` (through a [`FaultyRemote`]).
    pub async fn over(
        server: Arc<MemRemote>,
        remote: Arc<dyn Remote>,
        upload_delay: Duration,
    ) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let meta = Meta::open(&tmp.path().join("meta.db"), "mem://").unwrap();
        meta.update_root(&server.stat(&RemotePath::root()).await.unwrap())
            .unwrap();
        let cache = Cache::open(&tmp.path().join("content"), 1 << 30).unwrap();
        let drive = Arc::new(Drive::new(
            remote,
            Arc::new(meta),
            Arc::new(cache),
            DriveOptions {
                upload_debounce: upload_delay,
                recovery_dir: Some(tmp.path().join("recovered")),
                ..DriveOptions::default()
            },
        ));
        drive.start_writeback().unwrap();
        Harness {
            server,
            drive,
            _tmp: tmp,
        }
    }

    /// The inode of `path` (`a/b`), looked up as the kernel does.
    pub async fn ino(&self, path: &str) -> u64 {
        let mut ino = ROOT_INO;
        for name in path.split('/') {
            ino = self
                .drive
                .lookup(ino, name)
                .await
                .unwrap_or_else(|e| panic!("lookup {path}: {e}"))
                .ino;
        }
        ino
    }

    /// The folder holding `path`, and the last name.
    pub async fn parent<'a>(&self, path: &'a str) -> (u64, &'a str) {
        match path.rsplit_once('/') {
            Some((dir, name)) => (self.ino(dir).await, name),
            None => (ROOT_INO, path),
        }
    }

    /// Writes `data` as the whole content of file `path`, creating it if needed, the way
    /// the FUSE adapter does for `open(O_WRONLY|O_CREAT|O_TRUNC)`, `write`, `close`.
    pub async fn write(&self, path: &str, data: &[u8]) {
        let (dir, name) = self.parent(path).await;
        let fh = match self.drive.lookup(dir, name).await {
            Ok(a) => self.drive.open(a.ino, true, true).await.unwrap(),
            Err(_) => self.drive.create(dir, name, 0o644).await.unwrap().1,
        };
        let n = self.drive.write(fh, 0, data).unwrap();
        assert_eq!(n as usize, data.len());
        self.drive.flush(fh).unwrap();
        self.drive.release(fh).unwrap();
    }

    /// The content of file `path` as the drive shows it (downloaded if need be).
    pub async fn read(&self, path: &str) -> Vec<u8> {
        let ino = self.ino(path).await;
        let fh = self.drive.open(ino, false, false).await.unwrap();
        let mut out = Vec::new();
        loop {
            let chunk = self
                .drive
                .read(fh, out.len() as u64, 1 << 16)
                .await
                .unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        self.drive.release(fh).unwrap();
        out
    }

    pub async fn mkdir(&self, path: &str) {
        let (dir, name) = self.parent(path).await;
        self.drive.mkdir(dir, name, 0o755).await.unwrap();
    }

    pub async fn rename(&self, from: &str, to: &str) {
        let (a, an) = self.parent(from).await;
        let (b, bn) = self.parent(to).await;
        self.drive.rename(a, an, b, bn, false).await.unwrap();
    }

    pub async fn unlink(&self, path: &str) {
        let (dir, name) = self.parent(path).await;
        self.drive.unlink(dir, name).await.unwrap();
    }

    /// Asks for a sync (as `edrive sync` does) and waits until the write-back is idle.
    pub async fn sync(&self) {
        self.drive.request_sync();
        self.wait_idle(|| {
            let p = self.drive.sync_progress();
            !p.syncing && p.current.is_none()
        })
        .await;
    }

    /// Waits until nothing is left to upload, without asking for a sync.
    pub async fn settle(&self) {
        self.wait_idle(|| self.drive.is_synced()).await;
    }

    pub async fn wait_idle(&self, done: impl Fn() -> bool) {
        let start = Instant::now();
        // Give the write-back a moment to take the request or the change up.
        tokio::time::sleep(Duration::from_millis(5)).await;
        while !done() {
            if start.elapsed() > SYNC_TIMEOUT {
                panic!(
                    "the write-back did not settle within {SYNC_TIMEOUT:?}: {:?}\nproblems: {:?}\ncalls: {:#?}",
                    self.drive.sync_progress(),
                    self.drive.problems(10),
                    self.server.log_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        self.server.server_tree()
    }
}

pub fn tree_of(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(p, d)| (p.to_string(), d.to_vec()))
        .collect()
}

/// The tree with contents shown as text, for failure messages.
pub fn show(tree: &BTreeMap<String, Vec<u8>>) -> String {
    tree.iter()
        .map(|(p, d)| format!("{p:?} = {:?}", String::from_utf8_lossy(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `name` is a conflict copy of `doc.txt`.
pub fn is_conflict_copy(name: &str) -> bool {
    name.starts_with("doc (conflict ") && name.ends_with(").txt")
}
