//! Drive operations over a small in-memory server (reads only; the write-back is not
//! started, so local changes stay local).

use std::ops::Range;

use async_trait::async_trait;

use super::*;
use crate::remote::{ByteStream, Download, ETag, Listing, Precondition, RemoteEntry};

/// A server with one empty folder `d` and nothing else; its quota answer is `quota`
/// (`Err`: it cannot be reached), and it counts how often it was asked.
#[derive(Default)]
struct OneFolder {
    quota: Option<Result<Option<crate::remote::Quota>, ()>>,
    quota_asked: std::sync::atomic::AtomicUsize,
}

fn old_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn folder(name: &str) -> RemoteEntry {
    RemoteEntry {
        access: None,
        name: name.into(),
        is_dir: true,
        size: 0,
        size_known: true,
        mtime: Some(old_time()),
        etag: Some(ETag {
            value: format!("dir-{name}"),
            weak: false,
        }),
    }
}

#[async_trait]
impl Remote for OneFolder {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        let children = match path.parts().len() {
            0 => vec![folder("d")],
            _ => Vec::new(),
        };
        Ok(Listing {
            dir: folder(path.parts().last().map_or("", |s| s.as_str())),
            children,
            complete: true,
        })
    }
    async fn stat(&self, _: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        Err(RemoteError::NotFound)
    }
    async fn read(&self, _: &RemotePath, _: Option<Range<u64>>) -> Result<Download, RemoteError> {
        Err(RemoteError::NotFound)
    }
    async fn put(
        &self,
        _: &RemotePath,
        _: ByteStream,
        _: u64,
        _: Precondition,
        _: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        Err(RemoteError::Status(405))
    }
    async fn mkdir(&self, _: &RemotePath) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }
    async fn rename(&self, _: &RemotePath, _: &RemotePath, _: bool) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }
    async fn delete(&self, _: &RemotePath, _: Precondition) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }
    fn describe(&self) -> String {
        "mem://one-folder".into()
    }
    async fn quota(&self) -> Result<Option<crate::remote::Quota>, RemoteError> {
        self.quota_asked.fetch_add(1, Ordering::SeqCst);
        match self.quota {
            None => Ok(None),
            Some(Ok(q)) => Ok(q),
            Some(Err(())) => Err(RemoteError::Unreachable("connection failed: test".into())),
        }
    }
}

fn drive() -> (tempfile::TempDir, Drive) {
    drive_over(Arc::new(OneFolder::default()))
}

fn drive_over(server: Arc<OneFolder>) -> (tempfile::TempDir, Drive) {
    let tmp = tempfile::tempdir().unwrap();
    let meta = Meta::in_memory().unwrap();
    let cache = Cache::open(&tmp.path().join("cache"), 1 << 30).unwrap();
    let drive = Drive::new(
        server,
        Arc::new(meta),
        Arc::new(cache),
        DriveOptions::default(),
    );
    (tmp, drive)
}

#[tokio::test]
async fn changing_a_folders_children_bumps_its_time_and_leaves_it_clean() {
    let (_tmp, drive) = drive();
    let d = drive.lookup(ROOT_INO, "d").await.unwrap().ino;
    assert_eq!(drive.getattr(d).unwrap().mtime, old_time());
    let bumped = |ino| drive.getattr(ino).unwrap().mtime > old_time();

    let (_, fh) = drive.create(d, "f", 0o644).await.unwrap();
    drive.release(fh).unwrap();
    assert!(bumped(d), "create");

    drive.meta.touch_folders(&[d], old_time()).unwrap();
    drive.mkdir(d, "sub", 0o755).await.unwrap();
    assert!(bumped(d), "mkdir");

    drive
        .meta
        .touch_folders(&[d, ROOT_INO], old_time())
        .unwrap();
    drive.rename(d, "f", ROOT_INO, "g", false).await.unwrap();
    assert!(bumped(d) && bumped(ROOT_INO), "rename bumps both parents");

    drive
        .meta
        .touch_folders(&[d, ROOT_INO], old_time())
        .unwrap();
    drive.unlink(ROOT_INO, "g").await.unwrap();
    drive.rmdir(d, "sub").await.unwrap();
    assert!(bumped(d) && bumped(ROOT_INO), "unlink, rmdir");

    // Nothing is left to write back: the new entries are gone, and `d` itself was never
    // changed on the server's side.
    assert!(drive.meta.pending().unwrap().is_empty());
}

#[tokio::test]
async fn access_and_change_times_are_kept_apart_from_the_modification_time() {
    let (_tmp, drive) = drive();
    let (a, fh) = drive.create(ROOT_INO, "f", 0o644).await.unwrap();
    drive.release(fh).unwrap();
    assert_eq!((a.atime, a.ctime), (a.mtime, a.mtime));

    let (t1, t2) = (old_time(), old_time() + Duration::from_secs(1));
    let set = SetAttr {
        atime: Some(t1),
        mtime: Some(t2),
        ..Default::default()
    };
    let before = SystemTime::now();
    let b = drive.setattr(a.ino, set).await.unwrap();
    assert_eq!((b.atime, b.mtime), (t1, t2));
    assert!(b.ctime >= before, "utimens changes ctime");

    let c = drive
        .setattr(
            a.ino,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        c.ctime >= b.ctime && (c.atime, c.mtime) == (t1, t2),
        "chmod"
    );

    let fh = drive.open(a.ino, true, false).await.unwrap();
    drive.write(fh, 0, b"x").unwrap();
    drive.release(fh).unwrap();
    let d = drive.getattr(a.ino).unwrap();
    assert!(d.mtime > t2 && d.ctime >= d.mtime && d.atime == t1, "write");

    drive
        .rename(ROOT_INO, "f", ROOT_INO, "g", false)
        .await
        .unwrap();
    assert!(drive.getattr(a.ino).unwrap().ctime >= d.ctime, "rename");
}

#[tokio::test]
async fn an_unlinked_file_keeps_its_attributes_while_open() {
    let (_tmp, drive) = drive();
    let (a, fh) = drive.create(ROOT_INO, "f", 0o640).await.unwrap();
    drive.write(fh, 0, b"hello").unwrap();
    drive.unlink(ROOT_INO, "f").await.unwrap();
    assert!(drive.lookup(ROOT_INO, "f").await.is_err());

    let open = drive.getattr(a.ino).unwrap();
    assert_eq!((open.nlink, open.size, open.perm), (0, 5, 0o640));
    drive.write(fh, 5, b"!").unwrap();
    assert_eq!(drive.getattr(a.ino).unwrap().size, 6);
    assert_eq!(drive.read(fh, 0, 100).await.unwrap(), b"hello!");

    drive.release(fh).unwrap();
    assert!(matches!(drive.getattr(a.ino), Err(FsError::NotFound)));
}

#[tokio::test]
async fn a_file_replaced_by_rename_keeps_its_attributes_while_open() {
    let (_tmp, drive) = drive();
    let (a, fh) = drive.create(ROOT_INO, "a", 0o600).await.unwrap();
    let (_, fh2) = drive.create(ROOT_INO, "b", 0o644).await.unwrap();
    drive.release(fh2).unwrap();
    drive
        .rename(ROOT_INO, "b", ROOT_INO, "a", false)
        .await
        .unwrap();
    assert_eq!(drive.getattr(a.ino).unwrap().nlink, 0);
    drive.release(fh).unwrap();
    assert!(matches!(drive.getattr(a.ino), Err(FsError::NotFound)));
}

#[tokio::test]
async fn an_open_folder_removed_or_renamed_over_keeps_its_attributes_with_nlink_0() {
    let (_tmp, drive) = drive();
    let a = drive.mkdir(ROOT_INO, "a", 0o750).await.unwrap();
    drive.mkdir(ROOT_INO, "b", 0o755).await.unwrap();
    let fh = drive.opendir(a.ino).await.unwrap();
    drive
        .rename(ROOT_INO, "b", ROOT_INO, "a", false)
        .await
        .unwrap();
    let open = drive.getattr(a.ino).unwrap();
    assert_eq!((open.nlink, open.kind, open.perm), (0, Kind::Dir, 0o750));
    drive.releasedir(fh);
    assert!(matches!(drive.getattr(a.ino), Err(FsError::NotFound)));

    let d = drive.lookup(ROOT_INO, "d").await.unwrap();
    let fh = drive.opendir(d.ino).await.unwrap();
    let fh2 = drive.opendir(d.ino).await.unwrap();
    drive.rmdir(ROOT_INO, "d").await.unwrap();
    assert_eq!(drive.getattr(d.ino).unwrap().nlink, 0);
    drive.releasedir(fh);
    assert_eq!(drive.getattr(d.ino).unwrap().nlink, 0, "one handle left");
    drive.releasedir(fh2);
    assert!(matches!(drive.getattr(d.ino), Err(FsError::NotFound)));
}

#[tokio::test]
async fn user_attributes_are_kept_edrives_own_are_read_only() {
    use crate::error::XattrError;
    use crate::meta::XattrMode;
    let (_tmp, drive) = drive();
    let (a, fh) = drive.create(ROOT_INO, "f", 0o644).await.unwrap();
    drive.release(fh).unwrap();
    let any = XattrMode::default();
    let create = XattrMode {
        create: true,
        replace: false,
    };
    let replace = XattrMode {
        create: false,
        replace: true,
    };

    assert!(matches!(
        drive.getxattr(a.ino, b"user.xdg.tags"),
        Err(FsError::NoAttr)
    ));
    assert!(matches!(
        drive.setxattr(a.ino, b"user.xdg.tags", b"x", replace),
        Err(FsError::NoAttr)
    ));
    drive
        .setxattr(a.ino, b"user.xdg.tags", b"red", create)
        .unwrap();
    assert!(matches!(
        drive.setxattr(a.ino, b"user.xdg.tags", b"x", create),
        Err(FsError::Exists)
    ));
    let before = drive.getattr(a.ino).unwrap().ctime;
    drive
        .setxattr(a.ino, b"user.xdg.tags", b"blue", replace)
        .unwrap();
    assert!(
        drive.getattr(a.ino).unwrap().ctime >= before,
        "setxattr changes ctime"
    );
    assert_eq!(drive.getxattr(a.ino, b"user.xdg.tags").unwrap(), b"blue");
    let listed = drive.listxattr(a.ino).unwrap();
    assert_eq!(
        listed,
        [
            &b"user.edrive.state"[..],
            b"user.edrive.pinned",
            b"user.xdg.tags"
        ]
    );

    // Limits.
    let name = |n: usize| format!("user.{}", "n".repeat(n - 5)).into_bytes();
    drive
        .setxattr(a.ino, &name(XATTR_MAX_NAME), b"", any)
        .unwrap();
    assert!(matches!(
        drive.setxattr(a.ino, &name(XATTR_MAX_NAME + 1), b"", any),
        Err(FsError::Xattr(XattrError::NameTooLong))
    ));
    assert!(matches!(
        drive.setxattr(a.ino, b"user.v", &vec![0; XATTR_MAX_VALUE + 1], any),
        Err(FsError::Xattr(XattrError::ValueTooLarge))
    ));
    let value = vec![7u8; XATTR_MAX_VALUE];
    for i in 0..3 {
        drive
            .setxattr(a.ino, format!("user.v{i}").as_bytes(), &value, any)
            .unwrap();
    }
    assert!(matches!(
        drive.setxattr(a.ino, b"user.v3", &value, any),
        Err(FsError::Xattr(XattrError::NoRoom))
    ));
    assert!(matches!(
        drive.setxattr(a.ino, b"user.", b"", any),
        Err(FsError::Invalid(_))
    ));

    // Namespaces and edrive's own.
    for name in [
        &b"security.selinux"[..],
        b"trusted.x",
        b"system.posix_acl_access",
    ] {
        assert!(matches!(
            drive.getxattr(a.ino, name),
            Err(FsError::XattrNamespace)
        ));
        assert!(matches!(
            drive.setxattr(a.ino, name, b"", any),
            Err(FsError::XattrNamespace)
        ));
    }
    assert!(matches!(
        drive.setxattr(a.ino, b"user.edrive.state", b"pinned", any),
        Err(FsError::Xattr(XattrError::ReadOnly))
    ));
    assert!(matches!(
        drive.removexattr(a.ino, b"user.edrive.pinned"),
        Err(FsError::Xattr(XattrError::ReadOnly))
    ));
    assert_eq!(
        drive.getxattr(a.ino, b"user.edrive.state").unwrap(),
        b"dirty"
    );
    assert!(matches!(
        drive.getxattr(a.ino, b"user.edrive.pin"),
        Err(FsError::NoAttr)
    ));

    drive.removexattr(a.ino, b"user.xdg.tags").unwrap();
    assert!(matches!(
        drive.removexattr(a.ino, b"user.xdg.tags"),
        Err(FsError::NoAttr)
    ));
    drive.unlink(ROOT_INO, "f").await.unwrap();
    assert!(matches!(
        drive.getxattr(a.ino, b"user.v0"),
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        drive.setxattr(a.ino, b"user.v0", b"", any),
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn statfs_gives_the_servers_quota_else_the_caches_room() {
    // No quota: the cache's budget, and its room.
    let (_tmp, drive) = drive();
    let space = drive.statfs().await;
    assert!(!space.from_server);
    assert_eq!(space.total, 1 << 30);
    assert!(space.free <= space.total && space.free > 0);

    // A quota: the server's numbers, asked once a minute at most.
    let server = Arc::new(OneFolder {
        quota: Some(Ok(Some(crate::remote::Quota {
            available: 3 << 40,
            used: Some(1 << 40),
        }))),
        ..Default::default()
    });
    let (_tmp, drive) = drive_over(server.clone());
    for _ in 0..3 {
        let space = drive.statfs().await;
        assert_eq!(
            (space.total, space.free, space.from_server),
            (4 << 40, 3 << 40, true)
        );
    }
    assert_eq!(server.quota_asked.load(Ordering::SeqCst), 1);

    // Unreachable: the cache's room, never an error.
    let server = Arc::new(OneFolder {
        quota: Some(Err(())),
        ..Default::default()
    });
    let (_tmp, drive) = drive_over(server);
    let space = drive.statfs().await;
    assert_eq!((space.total, space.from_server), (1 << 30, false));
}

#[tokio::test]
async fn paging_a_folder_that_changes_lists_each_lasting_entry_once() {
    let (_tmp, drive) = drive();
    let d = drive.lookup(ROOT_INO, "d").await.unwrap().ino;
    let mut inos = Vec::new();
    for i in 0..10 {
        let (a, fh) = drive.create(d, &format!("f{i}"), 0o644).await.unwrap();
        drive.release(fh).unwrap();
        inos.push(a.ino);
    }
    let fh = drive.opendir(d).await.unwrap();
    let mut seen = drive.readdir_page(fh, 0, 3).unwrap();
    assert_eq!(seen.len(), 3);

    // Renames within the folder, on both sides of the position; a deletion ahead; a new
    // file; a file replaced by a rename.
    drive.rename(d, "f1", d, "renamed-1", false).await.unwrap();
    drive.rename(d, "f8", d, "renamed-8", false).await.unwrap();
    drive.unlink(d, "f5").await.unwrap();
    let (added, h) = drive.create(d, "new", 0o644).await.unwrap();
    drive.release(h).unwrap();
    drive.rename(d, "f9", d, "f6", false).await.unwrap();

    loop {
        let after = seen.last().map_or(0, |e| e.attr.ino);
        let page = drive.readdir_page(fh, after, 3).unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page);
    }
    drive.releasedir(fh);
    let listed: Vec<u64> = seen.iter().map(|e| e.attr.ino).collect();
    let mut unique = listed.clone();
    unique.dedup();
    assert_eq!(unique, listed, "in inode order, no entry twice");
    // Every file present throughout: once each.
    for (i, ino) in inos.iter().enumerate() {
        let want = usize::from(![5, 6].contains(&i));
        assert_eq!(
            listed.iter().filter(|l| *l == ino).count(),
            want,
            "f{i} (ino {ino})"
        );
    }
    assert!(listed.contains(&added.ino));
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert!(
        names.contains(&"renamed-8") && names.contains(&"f6"),
        "{names:?}"
    );
    assert!(matches!(
        drive.readdir_page(fh, 0, 3),
        Err(FsError::BadHandle)
    ));
}

/// A server whose listing gives no usable size for its files (as if it sent `-5` or
/// `1e30`); its GETs tell the size (`a`), or only the body's end does (`b`, as with a
/// chunked reply). `gone` cannot be read.
struct UnknownSizes {
    gets: std::sync::atomic::AtomicUsize,
}

const CONTENT: &[u8] = b"0123456789 the server's whole file";

fn unknown(name: &str, etag: Option<&str>) -> RemoteEntry {
    RemoteEntry {
        access: None,
        name: name.into(),
        is_dir: false,
        size: 0,
        size_known: false,
        mtime: Some(old_time()),
        etag: etag.map(|v| ETag {
            value: v.into(),
            weak: false,
        }),
    }
}

#[async_trait]
impl Remote for UnknownSizes {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        Ok(Listing {
            dir: folder(path.parts().last().map_or("", |s| s.as_str())),
            children: vec![
                unknown("a", Some("a1")),
                unknown("b", None),
                unknown("c", Some("c1")),
                unknown("gone", Some("g1")),
            ],
            complete: true,
        })
    }
    async fn stat(&self, _: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        Err(RemoteError::NotFound)
    }
    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = path.name().unwrap_or_default();
        if name == "gone" {
            return Err(RemoteError::Status(503));
        }
        let r = range.unwrap_or(0..CONTENT.len() as u64);
        let data = bytes::Bytes::copy_from_slice(&CONTENT[r.start as usize..r.end as usize]);
        Ok(Download {
            made_up: None,
            len: (name != "b").then_some(data.len() as u64),
            etag: ETag::parse(&format!("\"{name}1\"")).filter(|_| name != "b"),
            skipped: 0,
            body: Box::pin(futures_util::stream::iter([Ok(data)])),
        })
    }
    async fn put(
        &self,
        _: &RemotePath,
        _: ByteStream,
        _: u64,
        _: Precondition,
        _: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        Err(RemoteError::Status(405))
    }
    async fn mkdir(&self, _: &RemotePath) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }
    async fn rename(&self, _: &RemotePath, _: &RemotePath, _: bool) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }
    async fn delete(&self, _: &RemotePath, _: Precondition) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }
    fn describe(&self) -> String {
        "mem://unknown-sizes".into()
    }
}

#[tokio::test]
async fn a_size_the_listing_does_not_give_is_found_never_taken_as_zero() {
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().unwrap();
    let remote = Arc::new(UnknownSizes { gets: 0.into() });
    let drive = Drive::new(
        remote.clone(),
        Arc::new(Meta::in_memory().unwrap()),
        Arc::new(Cache::open(&tmp.path().join("cache"), 1 << 30).unwrap()),
        DriveOptions::default(),
    );
    let len = CONTENT.len() as u64;
    let fh = drive.opendir(ROOT_INO).await.unwrap();
    let rows = drive.readdir_page(fh, 0, 10).unwrap();
    drive.releasedir(fh);
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| !r.attr.size_known && r.attr.size == 0),
        "listed: unknown, for the kernel not to keep"
    );
    assert_eq!(
        remote.gets.load(Ordering::SeqCst),
        0,
        "listing reads no content"
    );

    // A lookup finds the size (the kernel appends at the size it is told).
    let a = drive.lookup(ROOT_INO, "a").await.unwrap();
    assert_eq!((a.size, a.size_known), (len, true));
    assert_eq!(drive.getattr(a.ino).unwrap().size, len);
    // Reading reads it all.
    let fh = drive.open(a.ino, false, false).await.unwrap();
    assert_eq!(drive.read(fh, 0, 4096).await.unwrap(), CONTENT);
    drive.release(fh).unwrap();

    // Without a Content-Length, the body's end decides.
    let b = drive.meta.child(ROOT_INO, "b").unwrap().unwrap();
    let fh = drive.open(b.ino, false, false).await.unwrap();
    assert_eq!(drive.read(fh, 0, 4096).await.unwrap(), CONTENT);
    drive.release(fh).unwrap();
    assert_eq!(drive.getattr(b.ino).unwrap().size, len);

    // Opened for writing without a lookup first: the working copy holds the whole file.
    let c = drive.meta.child(ROOT_INO, "c").unwrap().unwrap();
    let fh = drive.open(c.ino, true, false).await.unwrap();
    drive.write(fh, len, b"+more").unwrap();
    drive.release(fh).unwrap();
    let mut want = CONTENT.to_vec();
    want.extend_from_slice(b"+more");
    let fh = drive.open(c.ino, false, false).await.unwrap();
    assert_eq!(drive.read(fh, 0, 4096).await.unwrap(), want);
    drive.release(fh).unwrap();

    // A size that cannot be found fails the open; it is never an empty file.
    let gone = drive.meta.child(ROOT_INO, "gone").unwrap().unwrap();
    assert!(drive.open(gone.ino, false, false).await.is_err());
    assert!(drive.open(gone.ino, true, false).await.is_err());
    let g = drive.lookup(ROOT_INO, "gone").await.unwrap();
    assert!(
        !g.size_known,
        "a failed lookup of the size leaves it unknown"
    );

    // Relisting (sizes still unknown there) keeps what was found for the same version.
    drive.meta.expire_listing(ROOT_INO).unwrap();
    let fh = drive.opendir(ROOT_INO).await.unwrap();
    drive.releasedir(fh);
    assert_eq!(drive.getattr(a.ino).unwrap().size, len);
    assert_eq!(drive.getattr(b.ino).unwrap().size, len);
}
