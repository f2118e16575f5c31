//! Reopening the cache directory: what persists (blobs, recency, flags), recovery after a
//! crash, dropped orphans and bad rows, and the directories' permissions.

use super::{content, key, mode, names, put_closed, read_all};
use crate::{Cache, CacheError};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn reopen_keeps_blobs_recency_and_flags_and_wipes_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (key(1, "a"), key(2, "b"), key(3, "c"), key(4, "d"));
    {
        let cache = Cache::open(dir.path(), 100).unwrap();
        put_closed(&cache, &a, 10);
        put_closed(&cache, &b, 10);
        put_closed(&cache, &c, 10);
        put_closed(&cache, &d, 10);
        drop(cache.get(&a).unwrap()); // order now (oldest first): b c d a
        assert!(cache.set_dirty(&c, true).unwrap());
        assert!(cache.set_pinned(&d, true).unwrap());
        // Busy: a second cache on the same directory is refused.
        assert!(matches!(
            Cache::open(dir.path(), 100),
            Err(CacheError::Busy { .. })
        ));
    }
    // Partial downloads left behind by a crash.
    fs::write(dir.path().join("tmp").join("fill-1-0"), b"partial").unwrap();
    fs::create_dir(dir.path().join("tmp").join("stray")).unwrap();

    let cache = Cache::open(dir.path(), 100).unwrap();
    assert!(names(&dir.path().join("tmp")).is_empty(), "tmp/ wiped");
    for k in [&a, &b, &c, &d] {
        assert!(cache.contains(k), "{k} kept");
    }
    assert_eq!(read_all(&cache.get(&c).unwrap()), content(3, 10));
    let stats = cache.stats();
    assert_eq!((stats.blobs, stats.used_bytes), (4, 40));
    assert_eq!(stats.dirty_bytes, 10);
    assert_eq!(stats.pinned_bytes, 10);
    assert!(matches!(cache.remove(&c), Err(CacheError::Dirty { .. })));

    // Recency survived: b is the oldest evictable, then a (c dirty, d pinned; the limit
    // applies to a and b only).
    cache.set_limit(10);
    assert!(!cache.contains(&b));
    assert!(cache.contains(&a));
    cache.set_limit(0);
    assert!(!cache.contains(&a));
    assert!(cache.contains(&c) && cache.contains(&d));
    assert_eq!(
        cache.stats().over_limit_bytes,
        0,
        "dirty and pinned bytes do not count"
    );
    assert_eq!(names(&dir.path().join("blobs")).len(), 2);
}

#[test]
fn crash_keeps_committed_blobs_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (key(1, "a"), key(2, "b"), key(3, "c"), key(4, "d"));
    let cache = Cache::open(dir.path(), 100).unwrap();
    put_closed(&cache, &a, 10);
    put_closed(&cache, &b, 10);
    put_closed(&cache, &c, 10);
    put_closed(&cache, &d, 10);
    // A use not flushed yet: may be lost in a crash.
    drop(cache.get(&a).unwrap());
    // Setting a flag waits until the blobs committed so far are synced and indexed.
    assert!(cache.set_dirty(&c, true).unwrap());
    assert!(cache.set_pinned(&d, true).unwrap());
    let mut fill = cache.begin_fill(key(9, "x"), 10).unwrap();
    fill.append(b"part").unwrap();
    // "Crash": copy the directory as it is on disk while the cache is still running.
    let copy = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), copy.path());
    drop(fill);
    drop(cache);
    assert_eq!(names(&copy.path().join("tmp")).len(), 1);

    let cache = Cache::open(copy.path(), 100).unwrap();
    assert!(
        names(&copy.path().join("tmp")).is_empty(),
        "partial fill discarded"
    );
    assert!(!cache.contains(&key(9, "x")));
    for k in [&a, &b, &c, &d] {
        assert!(cache.contains(k), "{k} kept");
    }
    let stats = cache.stats();
    assert_eq!((stats.dirty_bytes, stats.pinned_bytes), (10, 10));
    // Recency is at least the commit order: one of the two oldest goes first.
    cache.set_limit(10);
    assert!(cache.contains(&a) != cache.contains(&b));
    assert!(cache.contains(&c) && cache.contains(&d));
}

/// Copies a directory tree of plain files (the cache directory of a "crashed" process).
fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn reopen_after_clean_close_restores_recency() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (key(1, "a"), key(2, "b"), key(3, "c"));
    {
        let cache = Cache::open(dir.path(), 100).unwrap();
        put_closed(&cache, &a, 10);
        put_closed(&cache, &b, 10);
        put_closed(&cache, &c, 10);
        drop(cache.get(&a).unwrap());
        drop(cache.get(&b).unwrap()); // order: c a b
        assert!(cache.set_pinned(&a, true).unwrap());
    }
    // Reopening with a smaller limit evicts right away, oldest first, skipping the pin.
    let cache = Cache::open(dir.path(), 10).unwrap();
    assert!(!cache.contains(&c));
    assert!(cache.contains(&a) && cache.contains(&b));
    assert!(cache.index_row(&a).unwrap().pinned);
    assert!(cache.index_row(&c).is_none());
    assert_eq!(names(&dir.path().join("blobs")).len(), 2);
    // New commits after reopen are newer than everything loaded.
    put_closed(&cache, &key(4, "d"), 10);
    assert!(!cache.contains(&b) && cache.contains(&key(4, "d")));
}

#[test]
fn open_drops_orphans_and_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (key(1, "a"), key(2, "b"), key(3, "c"));
    let (file_a, file_c) = {
        let cache = Cache::open(dir.path(), 100).unwrap();
        put_closed(&cache, &a, 10);
        put_closed(&cache, &b, 10);
        put_closed(&cache, &c, 10);
        (cache.blob_file(&a).unwrap(), cache.blob_file(&c).unwrap())
    };
    // Corrupt a (wrong length), lose c's file, add orphans.
    fs::write(&file_a, b"short").unwrap();
    fs::remove_file(&file_c).unwrap();
    let blobs = dir.path().join("blobs");
    fs::write(blobs.join("orphan"), b"junk").unwrap();
    fs::write(blobs.join("0000000000000002-0011223344556677-ff"), b"junk").unwrap();
    fs::create_dir(blobs.join("subdir")).unwrap();

    let cache = Cache::open(dir.path(), 100).unwrap();
    assert!(!cache.contains(&a), "wrong length dropped");
    assert!(!cache.contains(&c), "missing file dropped");
    assert!(cache.contains(&b));
    assert!(cache.index_row(&a).is_none());
    assert!(cache.index_row(&c).is_none());
    assert_eq!(cache.index_row(&b).unwrap().len, 10);
    let b_file = cache.blob_file(&b).unwrap();
    assert_eq!(
        names(&blobs),
        vec![b_file.file_name().unwrap().to_string_lossy().into_owned()]
    );
    assert_eq!(cache.stats().used_bytes, 10);
    assert_eq!(read_all(&cache.get(&b).unwrap()), content(2, 10));
}

#[test]
fn get_drops_a_blob_whose_file_changed_behind_our_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 100).unwrap();
    let a = key(1, "a");
    put_closed(&cache, &a, 10);
    fs::write(cache.blob_file(&a).unwrap(), b"xx").unwrap();
    assert!(cache.get(&a).is_none());
    assert!(!cache.contains(&a));
    assert_eq!(cache.stats().used_bytes, 0);
}

#[test]
fn recency_is_persisted_by_flush_without_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 100).unwrap();
    let (a, b) = (key(1, "a"), key(2, "b"));
    put_closed(&cache, &a, 10);
    put_closed(&cache, &b, 10);
    cache.flush().unwrap(); // indexed once synced
    let before = cache.index_row(&a).unwrap().last_used;
    assert!(before < cache.index_row(&b).unwrap().last_used);
    drop(cache.get(&a).unwrap());
    cache.flush().unwrap();
    assert!(cache.index_row(&a).unwrap().last_used > cache.index_row(&b).unwrap().last_used);
}

#[test]
fn directories_are_private() {
    let base = tempfile::tempdir().unwrap();
    // Existing directory with a loose mode is tightened.
    let existing = base.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
    drop(Cache::open(&existing, 10).unwrap());
    assert_eq!(mode(&existing), 0o700);
    assert_eq!(mode(&existing.join("blobs")), 0o700);
    assert_eq!(mode(&existing.join("tmp")), 0o700);
    assert_eq!(mode(&existing.join("index.db")), 0o600);

    // New nested directories, parents included.
    let nested = base.path().join("p1").join("p2").join("cache");
    let cache = Cache::open(&nested, 10).unwrap();
    assert_eq!(cache.dir(), nested.as_path());
    assert_eq!(mode(&nested), 0o700);
    assert_eq!(mode(&base.path().join("p1")) & 0o077, 0);
    assert_eq!(mode(&base.path().join("p1").join("p2")) & 0o077, 0);
    let fill = cache.begin_fill(key(1, "v"), 1).unwrap();
    assert_eq!(
        mode(&nested.join("tmp").join(&names(&nested.join("tmp"))[0])),
        0o600
    );
    drop(fill);
}
