//! The write-back end to end: a real [`Drive`] (metadata store, cache, uploader) over a
//! [`MemRemote`], driven through the calls the FUSE adapter makes.
//!
//! Time is real, not tokio's paused clock: the debounce and the write-back's timers are
//! measured with `std::time::Instant`, which a paused clock does not move. A sync skips
//! the debounce, so each test still takes well under a second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edrive_cache::Cache;
use edrive_fs_core::remote::memory::{CallFilter, CallKind, Fault, FaultyRemote, MemRemote};
use edrive_fs_core::remote::{Remote, RemoteError, RemotePath};
use edrive_fs_core::{Drive, DriveOptions, Meta, ROOT_INO};

/// A drive over a [`MemRemote`], with the write-back running.
struct Harness {
    server: Arc<MemRemote>,
    drive: Arc<Drive>,
    _tmp: tempfile::TempDir,
}

/// How long a sync may take before a test gives up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

impl Harness {
    /// A drive over `server` whose files are uploaded `upload_delay` after their last
    /// close (or at once by [`Harness::sync`]), set up as the daemon does.
    async fn new(server: Arc<MemRemote>, upload_delay: Duration) -> Harness {
        Harness::over(server.clone(), server, upload_delay).await
    }

    /// A drive over `remote`, which leads to `server` (through a [`FaultyRemote`]).
    async fn over(
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
    async fn ino(&self, path: &str) -> u64 {
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
    async fn parent<'a>(&self, path: &'a str) -> (u64, &'a str) {
        match path.rsplit_once('/') {
            Some((dir, name)) => (self.ino(dir).await, name),
            None => (ROOT_INO, path),
        }
    }

    /// Writes `data` as the whole content of file `path`, creating it if needed, the way
    /// the FUSE adapter does for `open(O_WRONLY|O_CREAT|O_TRUNC)`, `write`, `close`.
    async fn write(&self, path: &str, data: &[u8]) {
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
    async fn read(&self, path: &str) -> Vec<u8> {
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

    async fn mkdir(&self, path: &str) {
        let (dir, name) = self.parent(path).await;
        self.drive.mkdir(dir, name, 0o755).await.unwrap();
    }

    async fn rename(&self, from: &str, to: &str) {
        let (a, an) = self.parent(from).await;
        let (b, bn) = self.parent(to).await;
        self.drive.rename(a, an, b, bn, false).await.unwrap();
    }

    async fn unlink(&self, path: &str) {
        let (dir, name) = self.parent(path).await;
        self.drive.unlink(dir, name).await.unwrap();
    }

    /// Asks for a sync (as `edrive sync` does) and waits until the write-back is idle.
    async fn sync(&self) {
        self.drive.request_sync();
        self.wait_idle(|| {
            let p = self.drive.sync_progress();
            !p.syncing && p.current.is_none()
        })
        .await;
    }

    /// Waits until nothing is left to upload, without asking for a sync.
    async fn settle(&self) {
        self.wait_idle(|| self.drive.is_synced()).await;
    }

    async fn wait_idle(&self, done: impl Fn() -> bool) {
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

    fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        self.server.server_tree()
    }
}

fn tree_of(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(p, d)| (p.to_string(), d.to_vec()))
        .collect()
}

/// The tree with contents shown as text, for failure messages.
fn show(tree: &BTreeMap<String, Vec<u8>>) -> String {
    tree.iter()
        .map(|(p, d)| format!("{p:?} = {:?}", String::from_utf8_lossy(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `name` is a conflict copy of `doc.txt`.
fn is_conflict_copy(name: &str) -> bool {
    name.starts_with("doc (conflict ") && name.ends_with(").txt")
}

#[tokio::test]
async fn new_edit_rename_delete_and_mkdir_reach_the_server() {
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    server.server_put("old.txt", &b"old"[..]).unwrap();
    server.server_put("gone.txt", &b"gone"[..]).unwrap();
    server.server_put("d/keep.txt", &b"keep"[..]).unwrap();
    let h = Harness::new(server, Duration::from_millis(50)).await;

    // A new file goes up by itself once the upload delay has passed.
    h.write("new.txt", b"new file").await;
    h.settle().await;
    assert_eq!(
        h.server.server_read("new.txt").as_deref(),
        Some(&b"new file"[..])
    );

    assert_eq!(h.read("doc.txt").await, b"base");
    h.write("doc.txt", b"edited here").await;
    h.rename("old.txt", "d/moved.txt").await;
    h.unlink("gone.txt").await;
    h.mkdir("folder").await;
    h.mkdir("folder/sub").await;
    h.write("folder/sub/inner.txt", b"inner").await;
    h.rename("d", "e").await;
    h.sync().await;

    assert_eq!(
        h.tree(),
        tree_of(&[
            ("doc.txt", b"edited here"),
            ("e/keep.txt", b"keep"),
            ("e/moved.txt", b"old"),
            ("folder/sub/inner.txt", b"inner"),
            ("new.txt", b"new file"),
        ]),
        "calls: {:#?}",
        h.server.log_lines()
    );
    let folders: Vec<String> = h.server.server_folders().into_iter().collect();
    assert_eq!(folders, ["e", "folder", "folder/sub"]);
    assert!(h.drive.problems(10).unwrap().is_empty());
    // The edit was sent as a conditional write over the version it was based on.
    assert!(
        h.server
            .log_lines()
            .iter()
            .any(|l| l.starts_with("PUT /doc.txt If-Match ")),
        "{:#?}",
        h.server.log_lines()
    );
}

#[tokio::test]
async fn a_file_changed_on_both_sides_keeps_both_on_an_enforcing_server() {
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    let h = Harness::new(server, Duration::from_secs(3600)).await;
    assert_eq!(h.read("doc.txt").await, b"base");

    h.write("doc.txt", b"local edit").await;
    h.server
        .server_put("doc.txt", &b"server edit, longer"[..])
        .unwrap();
    h.sync().await;

    let tree = h.tree();
    assert_eq!(tree.len(), 2, "{}", show(&tree));
    assert_eq!(tree["doc.txt"], b"server edit, longer", "{}", show(&tree));
    let copy = tree
        .keys()
        .find(|n| is_conflict_copy(n))
        .unwrap_or_else(|| panic!("no conflict copy: {}", show(&tree)));
    assert_eq!(tree[copy], b"local edit");
    // The drive shows the same.
    assert_eq!(h.read("doc.txt").await, b"server edit, longer");
    assert_eq!(h.read(copy).await, b"local edit");
    assert!(h.drive.problems(10).unwrap().is_empty());
}

#[tokio::test]
async fn an_upload_whose_reply_was_lost_is_not_taken_for_a_conflict() {
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    let faulty = Arc::new(FaultyRemote::new(server.clone()));
    let h = Harness::over(server, faulty.clone(), Duration::from_secs(3600)).await;
    assert_eq!(h.read("doc.txt").await, b"base");
    h.write("doc.txt", b"local edit").await;
    // The server stores the edit, but the reply never arrives.
    faulty.inject(
        CallFilter::kind(CallKind::Put),
        Fault::FailAfter(RemoteError::Transfer("connection reset".into())),
        1,
    );
    h.sync().await;
    assert_eq!(
        h.tree(),
        tree_of(&[("doc.txt", b"local edit")]),
        "calls: {:#?}",
        h.server.log_lines()
    );
    assert!(h.drive.problems(10).unwrap().is_empty());
}
