//! Metadata that desktop applications write is kept (issue 20): `user.*` extended
//! attributes (a file manager's tags, ratings and comments, a browser's download origin),
//! times before 1970 and after 2038, a folder's times across remounts, `fstat` of a folder
//! something was renamed over, and what `statfs` reports. Each test mounts for real.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("a path without NUL")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `setxattr(2)` with `flags`; the errno on failure.
fn set_xattr(path: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let (p, n) = (cpath(path), CString::new(name).expect("a name without NUL"));
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// `getxattr(2)` into a buffer of `size` bytes; the value, or the errno.
fn get_xattr_sized(path: &Path, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let (p, n) = (cpath(path), CString::new(name).expect("a name without NUL"));
    let mut buf = vec![0u8; size];
    // SAFETY: valid NUL-terminated strings and a buffer of `size` bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// `getxattr(2)` with a buffer large enough for any value.
fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    get_xattr_sized(path, name, 1 << 16)
}

/// `removexattr(2)`; the errno on failure.
fn remove_xattr(path: &Path, name: &str) -> Result<(), i32> {
    let (p, n) = (cpath(path), CString::new(name).expect("a name without NUL"));
    // SAFETY: valid NUL-terminated strings.
    if unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// The names `listxattr(2)` gives.
fn list_xattr(path: &Path) -> Vec<String> {
    let p = cpath(path);
    let mut buf = vec![0u8; 1 << 16];
    // SAFETY: a valid NUL-terminated path and a buffer of its length.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr {}: errno {}", path.display(), errno());
    buf.truncate(r as usize);
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

/// Runs a command, asserting it succeeds; its stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `getfattr -n name --only-values`, as a user reads a tag; `None` if it fails.
fn getfattr(path: &Path, name: &str) -> Option<String> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (package attr) is needed");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A 4 KiB value with every byte value in it.
fn binary_value() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn user_attributes_survive_a_rename_and_a_remount() {
    let data = tempdir();
    std::fs::create_dir_all(data.path().join("Photos")).unwrap();
    std::fs::write(data.path().join("Photos/cat.jpg"), b"meow").unwrap();
    let cache = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    let opts = MountOpts::default()
        .cache_dir(cache.path())
        .arg("--upload-delay")
        .arg("100ms");
    let m = Mount::new(&server.url(), opts.clone());

    // Dolphin's tags, rating and comment; a browser's origin on a new file.
    let cat = m.join("Photos/cat.jpg");
    run(
        "setfattr",
        &["-n", "user.xdg.tags", "-v", "pets,cute", s(&cat)],
    );
    run("setfattr", &["-n", "user.baloo.rating", "-v", "8", s(&cat)]);
    set_xattr(&cat, "user.xdg.comment", &binary_value(), 0).unwrap();
    std::fs::write(m.join("setup.exe"), b"MZ").unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "user.xdg.origin.url",
            "-v",
            "https://example.com/setup.exe",
            s(&m.join("setup.exe")),
        ],
    );
    let photos = m.join("Photos");
    run(
        "setfattr",
        &["-n", "user.xdg.tags", "-v", "album", s(&photos)],
    );
    assert_eq!(
        getfattr(&cat, "user.xdg.tags").as_deref(),
        Some("pets,cute")
    );
    let names = list_xattr(&cat);
    for n in [
        "user.edrive.state",
        "user.edrive.pinned",
        "user.baloo.rating",
        "user.xdg.comment",
        "user.xdg.tags",
    ] {
        assert!(names.contains(&n.to_string()), "{n} not listed: {names:?}");
    }

    // A rename keeps them (the inode stays), into another folder too.
    std::fs::create_dir(m.join("Best")).unwrap();
    let moved = m.join("Best/kitty.jpg");
    std::fs::rename(&cat, &moved).unwrap();
    assert_eq!(
        getfattr(&moved, "user.xdg.tags").as_deref(),
        Some("pets,cute")
    );
    assert_eq!(
        get_xattr(&moved, "user.xdg.comment").unwrap(),
        binary_value()
    );
    assert_eq!(get_xattr(&cat, "user.xdg.tags"), Err(libc::ENOENT));
    let out = m.edrive(&["sync"]);
    assert!(out.0.success(), "edrive sync: {}", out.2);
    m.unmount();

    // A remount with the same cache keeps them.
    let m = Mount::new(&server.url(), opts.clone());
    let moved = m.join("Best/kitty.jpg");
    assert_eq!(
        getfattr(&moved, "user.xdg.tags").as_deref(),
        Some("pets,cute")
    );
    assert_eq!(getfattr(&moved, "user.baloo.rating").as_deref(), Some("8"));
    assert_eq!(
        get_xattr(&moved, "user.xdg.comment").unwrap(),
        binary_value()
    );
    assert_eq!(
        getfattr(&m.join("setup.exe"), "user.xdg.origin.url").as_deref(),
        Some("https://example.com/setup.exe")
    );
    assert_eq!(
        getfattr(&m.join("Photos"), "user.xdg.tags").as_deref(),
        Some("album")
    );

    // Removed one by one, and with the entry: a new file of the same name has none.
    remove_xattr(&moved, "user.baloo.rating").unwrap();
    assert_eq!(get_xattr(&moved, "user.baloo.rating"), Err(libc::ENODATA));
    assert_eq!(
        remove_xattr(&moved, "user.baloo.rating"),
        Err(libc::ENODATA)
    );
    std::fs::remove_file(&moved).unwrap();
    std::fs::write(&moved, b"another cat").unwrap();
    assert_eq!(get_xattr(&moved, "user.xdg.tags"), Err(libc::ENODATA));
    assert_eq!(
        list_xattr(&moved),
        ["user.edrive.state", "user.edrive.pinned"]
    );
    m.unmount();
}

#[test]
fn user_attributes_follow_setxattr_semantics_and_limits() {
    let data = tempdir();
    std::fs::write(data.path().join("f.txt"), b"f").unwrap();
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default());
    let f = m.join("f.txt");

    assert_eq!(get_xattr(&f, "user.xdg.tags"), Err(libc::ENODATA));
    assert_eq!(
        set_xattr(&f, "user.xdg.tags", b"a", libc::XATTR_REPLACE),
        Err(libc::ENODATA),
        "XATTR_REPLACE of a missing attribute"
    );
    set_xattr(&f, "user.xdg.tags", b"a", libc::XATTR_CREATE).unwrap();
    assert_eq!(
        set_xattr(&f, "user.xdg.tags", b"b", libc::XATTR_CREATE),
        Err(libc::EEXIST),
        "XATTR_CREATE of an existing attribute"
    );
    set_xattr(&f, "user.xdg.tags", b"red", libc::XATTR_REPLACE).unwrap();
    assert_eq!(get_xattr(&f, "user.xdg.tags").unwrap(), b"red");
    // An empty value is a value.
    set_xattr(&f, "user.empty", b"", 0).unwrap();
    assert_eq!(get_xattr(&f, "user.empty").unwrap(), b"");

    // Size queries and a buffer too small.
    assert_eq!(get_xattr_sized(&f, "user.xdg.tags", 2), Err(libc::ERANGE));
    let p = cpath(&f);
    let n = CString::new("user.xdg.tags").unwrap();
    // SAFETY: a size query (no buffer) with valid strings.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(len, 3);

    // Limits: a value of 64 KiB is fine, a name of 255 bytes too; beyond, E2BIG and
    // ERANGE; all of one entry's attributes take at most 256 KiB (ENOSPC).
    let big = vec![b'x'; 64 << 10];
    set_xattr(&f, "user.big0", &big, 0).unwrap();
    assert_eq!(get_xattr(&f, "user.big0").unwrap().len(), 64 << 10);
    assert_eq!(
        set_xattr(&f, "user.toobig", &vec![0u8; (64 << 10) + 1], 0),
        Err(libc::E2BIG)
    );
    let long = format!("user.{}", "n".repeat(250));
    set_xattr(&f, &long, b"1", 0).unwrap();
    assert_eq!(
        set_xattr(&f, &format!("{long}x"), b"1", 0),
        Err(libc::ERANGE)
    );
    set_xattr(&f, "user.big1", &big, 0).unwrap();
    set_xattr(&f, "user.big2", &big, 0).unwrap();
    assert_eq!(set_xattr(&f, "user.big3", &big, 0), Err(libc::ENOSPC));
    // Replacing one with a smaller value frees room.
    set_xattr(&f, "user.big2", b"small", 0).unwrap();
    set_xattr(&f, "user.big3", &big[..1000], 0).unwrap();

    // Other namespaces are not supported; edrive's own attributes are read-only but for
    // the pin.
    for name in ["trusted.x", "security.x"] {
        assert_eq!(
            set_xattr(&f, name, b"1", 0),
            Err(libc::EOPNOTSUPP),
            "{name}"
        );
    }
    assert_eq!(get_xattr(&f, "security.selinux"), Err(libc::EOPNOTSUPP));
    assert_eq!(
        set_xattr(&f, "user.edrive.state", b"x", 0),
        Err(libc::EPERM)
    );
    assert_eq!(remove_xattr(&f, "user.edrive.state"), Err(libc::EPERM));
    assert_eq!(get_xattr(&f, "user.edrive.state").unwrap(), b"online-only");
    m.unmount();
}

/// (mtime seconds, nanoseconds), as `stat` gives them.
fn mtime(path: &Path) -> (i64, i64) {
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (md.mtime(), md.mtime_nsec())
}

#[test]
fn times_before_1970_and_after_2038_stick() {
    let data = tempdir();
    for name in ["old.txt", "minus5.txt", "frac.txt", "future.txt"] {
        std::fs::write(data.path().join(name), name).unwrap();
    }
    std::fs::create_dir(data.path().join("olddir")).unwrap();
    let cache = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    let opts = MountOpts::default()
        .cache_dir(cache.path())
        .arg("--upload-delay")
        .arg("100ms");
    let m = Mount::new(&server.url(), opts.clone());
    let env = [("TZ", "UTC")];
    let touch = |args: &[&str]| {
        let out = Command::new("touch").args(args).envs(env).output().unwrap();
        assert!(
            out.status.success(),
            "touch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    touch(&["-t", "196001010101", s(&m.join("old.txt"))]);
    touch(&["-d", "@-5", s(&m.join("minus5.txt"))]);
    touch(&["-d", "@-5.5", s(&m.join("frac.txt"))]);
    touch(&["-d", "2100-01-01 00:00:00", s(&m.join("future.txt"))]);
    touch(&["-t", "196001010101", s(&m.join("olddir"))]);
    // A new file, uploaded, keeps its time too.
    std::fs::write(m.join("new.txt"), b"new").unwrap();
    touch(&["-d", "@-86400", s(&m.join("new.txt"))]);
    let want = [
        ("old.txt", (-315_615_540, 0)),
        ("minus5.txt", (-5, 0)),
        ("frac.txt", (-6, 500_000_000)),
        ("future.txt", (4_102_444_800, 0)),
        ("olddir", (-315_615_540, 0)),
        ("new.txt", (-86_400, 0)),
    ];
    let check = |m: &Mount, when: &str| {
        for (name, t) in want {
            assert_eq!(mtime(&m.join(name)), t, "{name} {when}");
        }
    };
    check(&m, "right after touch");
    let out = m.edrive(&["sync"]);
    assert!(out.0.success(), "edrive sync: {}", out.2);
    m.unmount();

    let m = Mount::new(&server.url(), opts);
    check(&m, "after a remount");
    m.unmount();
}

/// (mtime, atime, ctime) in nanoseconds.
fn times(path: &Path) -> (i128, i128, i128) {
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    (
        ns(md.mtime(), md.mtime_nsec()),
        ns(md.atime(), md.atime_nsec()),
        ns(md.ctime(), md.ctime_nsec()),
    )
}

#[test]
fn a_folders_times_are_unchanged_by_a_remount() {
    let data = tempdir();
    std::fs::create_dir_all(data.path().join("d1/sub")).unwrap();
    std::fs::write(data.path().join("d1/f.txt"), b"f").unwrap();
    let cache = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    // Listings are trusted for 100 ms: the remount lists every folder again.
    let opts = MountOpts::default()
        .cache_dir(cache.path())
        .dir_cache_ttl("100ms")
        .arg("--upload-delay")
        .arg("100ms");
    let m = Mount::new(&server.url(), opts.clone());
    // A folder made here, with a file in it, uploaded.
    std::fs::create_dir(m.join("new")).unwrap();
    std::fs::write(m.join("new/g.txt"), b"g").unwrap();
    let out = m.edrive(&["sync"]);
    assert!(out.0.success(), "edrive sync: {}", out.2);
    let folders = ["", "d1", "d1/sub", "new"];
    let walk_all = |m: &Mount| {
        std::thread::sleep(Duration::from_millis(200));
        run("ls", &["-lR", s(m.path())]);
    };
    walk_all(&m);
    let before: Vec<_> = folders.iter().map(|f| times(&m.join(f))).collect();
    m.unmount();

    // Past the next whole second: a server's time in seconds would differ.
    std::thread::sleep(Duration::from_millis(1100));
    let m = Mount::new(&server.url(), opts);
    walk_all(&m);
    walk_all(&m);
    let after: Vec<_> = folders.iter().map(|f| times(&m.join(f))).collect();
    for (i, f) in folders.iter().enumerate() {
        assert_eq!(after[i], before[i], "(mtime, atime, ctime) of /{f}");
    }
    m.unmount();
}

#[test]
fn fstat_of_a_removed_open_folder_or_file_gives_nlink_0() {
    let data = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default());
    let open_dir =
        |p: &Path| std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));

    // A folder another was renamed over.
    std::fs::create_dir(m.join("a")).unwrap();
    std::fs::create_dir(m.join("b")).unwrap();
    let a = open_dir(&m.join("a"));
    let a_ino = a.metadata().unwrap().ino();
    std::fs::rename(m.join("b"), m.join("a")).unwrap();
    let md = a.metadata().expect("fstat of a folder renamed over");
    assert_eq!((md.nlink(), md.ino(), md.is_dir()), (0, a_ino, true));
    drop(a);

    // A folder removed while open.
    std::fs::create_dir(m.join("c")).unwrap();
    let c = open_dir(&m.join("c"));
    std::fs::remove_dir(m.join("c")).unwrap();
    let md = c.metadata().expect("fstat of a removed folder");
    assert_eq!((md.nlink(), md.is_dir()), (0, true));
    drop(c);

    // A file another was renamed over.
    std::fs::write(m.join("f"), b"old").unwrap();
    std::fs::write(m.join("g"), b"new").unwrap();
    let f = std::fs::File::open(m.join("f")).unwrap();
    std::fs::rename(m.join("g"), m.join("f")).unwrap();
    let md = f.metadata().expect("fstat of a file renamed over");
    assert_eq!((md.nlink(), md.len()), (0, 3));
    drop(f);
    m.unmount();
}

/// `statvfs(2)` of `path`: (size, available) in bytes.
fn statvfs(path: &Path) -> (u64, u64) {
    let p = cpath(path);
    // SAFETY: a valid path; `st` is read only after statvfs filled it.
    let st = unsafe {
        let mut st = std::mem::zeroed::<libc::statvfs>();
        assert_eq!(
            libc::statvfs(p.as_ptr(), &mut st),
            0,
            "statvfs {}",
            path.display()
        );
        st
    };
    #[allow(clippy::unnecessary_cast)]
    let frsize = st.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

#[test]
fn statfs_reports_the_caches_room_without_a_quota() {
    let data = tempdir();
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default().cache_size("64M"));
    let (size, avail) = statvfs(m.path());
    assert_eq!(
        size,
        64 << 20,
        "the size is the cache's budget, not 1024 TiB"
    );
    assert!(avail <= size && avail > 0, "available {avail} of {size}");
    // `df` agrees.
    let df = run("df", &["-B1", "--output=size", s(m.path())]);
    assert!(df.contains(&(64u64 << 20).to_string()), "df: {df}");
    m.unmount();
}

#[test]
fn statfs_reports_the_servers_quota_wsgidav() {
    let data = tempdir();
    let server = wsgidav::start(data.path());
    let m = Mount::new(&server.url(), MountOpts::default().cache_size("64M"));
    // WsgiDAV gives the free and used space of the disk it serves from.
    let (size, avail) = statvfs(m.path());
    let (disk_size, disk_avail) = statvfs(data.path());
    let near = |a: u64, b: u64| a.abs_diff(b) < (1 << 30);
    assert!(
        near(avail, disk_avail),
        "available {avail}, the server's disk {disk_avail}"
    );
    assert!(
        size > 64 << 20 && size <= disk_size,
        "size {size}, the server's disk {disk_size}"
    );
    m.unmount();
}
