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
