//! Behaviour tests of the cache against real temp directories.

use crate::{BlobKey, Cache, CacheError, FreeReport};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

fn key(entry: u64, version: &str) -> BlobKey {
    BlobKey::new(entry, version)
}

/// Deterministic content for a key.
fn content(entry: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + entry * 7) as u8)
        .collect()
}

/// Fills and commits `key` with `data`, returning the open handle.
fn put(cache: &Cache, key: &BlobKey, data: &[u8]) -> crate::Blob {
    let mut fill = cache.begin_fill(key.clone(), data.len() as u64).unwrap();
    fill.append(data).unwrap();
    fill.commit().unwrap()
}

/// Fills and commits `key` with `len` bytes and closes the handle.
fn put_closed(cache: &Cache, key: &BlobKey, len: usize) {
    drop(put(cache, key, &content(key.entry, len)));
}

fn read_all(blob: &crate::Blob) -> Vec<u8> {
    let mut buf = vec![0; blob.len() as usize];
    let n = blob.read_at(&mut buf, 0).unwrap();
    assert_eq!(n as u64, blob.len());
    buf
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn fill_commit_get_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(42, "\"etag/with:odd chars\"");
    let data = content(42, 10_000);

    let mut fill = cache.begin_fill(k.clone(), data.len() as u64).unwrap();
    for chunk in data.chunks(777) {
        fill.append(chunk).unwrap();
    }
    assert_eq!(fill.written(), 10_000);
    assert!(!cache.contains(&k), "not visible before commit");
    let blob = fill.commit().unwrap();
    assert_eq!(blob.len(), 10_000);
    assert_eq!(read_all(&blob), data);
    drop(blob);

    assert!(cache.contains(&k));
    assert_eq!(cache.versions_of(42), vec![k.version.clone()]);
    assert!(cache.versions_of(43).is_empty());
    let blob = cache.get(&k).unwrap();
    assert_eq!(blob.key(), &k);
    assert_eq!(read_all(&blob), data);
    // Partial reads at an offset and past the end.
    let mut buf = [0u8; 100];
    assert_eq!(blob.read_at(&mut buf, 9_950).unwrap(), 50);
    assert_eq!(&buf[..50], &data[9_950..]);
    assert_eq!(blob.read_at(&mut buf, 20_000).unwrap(), 0);
    assert!(cache.get(&key(42, "other")).is_none());

    let stats = cache.stats();
    assert_eq!(stats.used_bytes, 10_000);
    assert_eq!(stats.blobs, 1);
    assert_eq!(stats.open_blobs, 1);
    drop(blob);
    assert_eq!(cache.stats().open_blobs, 0);
    assert_eq!(names(&dir.path().join("tmp")), Vec::<String>::new());
    assert_eq!(names(&dir.path().join("blobs")).len(), 1);

    // Empty blobs are blobs too.
    let empty = key(7, "e");
    let blob = cache
        .begin_fill(empty.clone(), 0)
        .unwrap()
        .commit()
        .unwrap();
    assert!(blob.is_empty());
    drop(blob);
    assert_eq!(cache.get(&empty).unwrap().len(), 0);
}

#[test]
fn short_fill_fails_commit_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(1, "v1");
    let mut fill = cache.begin_fill(k.clone(), 10).unwrap();
    fill.append(b"hello").unwrap();
    assert_eq!(cache.stats().used_bytes, 5, "fill counts what it wrote");
    match fill.commit() {
        Err(CacheError::LengthMismatch { expected, got }) => {
            assert_eq!((expected, got), (10, 5));
        }
        other => panic!("expected LengthMismatch, got {other:?}"),
    }
    assert!(!cache.contains(&k));
    assert!(cache.get(&k).is_none());
    assert!(names(&dir.path().join("blobs")).is_empty());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(cache.stats().used_bytes, 0);

    // A hole is as short as a truncation, even when the end is written.
    let fill = cache.begin_fill(k.clone(), 10).unwrap();
    fill.write_at(b"abc", 7).unwrap();
    assert_eq!(fill.written(), 0);
    assert!(matches!(
        fill.commit(),
        Err(CacheError::LengthMismatch {
            expected: 10,
            got: 3
        })
    ));

    // Writing past the expected length is refused and poisons the fill.
    let mut fill = cache.begin_fill(k.clone(), 4).unwrap();
    fill.append(b"abcd").unwrap();
    let err = fill.append(b"e").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(matches!(
        fill.commit(),
        Err(CacheError::LengthMismatch {
            expected: 4,
            got: 5
        })
    ));
    assert!(!cache.contains(&k));
    assert!(names(&dir.path().join("blobs")).is_empty());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(cache.stats().used_bytes, 0);
}

#[test]
fn dropping_a_fill_removes_the_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let mut fill = cache.begin_fill(key(1, "v"), 100).unwrap();
    fill.append(&[1; 60]).unwrap();
    assert_eq!(names(&dir.path().join("tmp")).len(), 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.used_bytes, stats.filling_bytes, stats.blobs),
        (60, 60, 0)
    );
    drop(fill);
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert!(names(&dir.path().join("blobs")).is_empty());
    assert_eq!(cache.stats().used_bytes, 0);
    assert!(!cache.contains(&key(1, "v")));
}

#[test]
fn readers_see_the_prefix_while_filling() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(5, "v");
    let mut fill = cache.begin_fill(k.clone(), 11).unwrap();
    let mut reader = fill.reader().unwrap();
    fill.append(b"hello").unwrap();
    assert_eq!(fill.written(), 5);
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");

    fill.append(b" world").unwrap();
    assert_eq!(fill.written(), 11);
    let mut buf = [0u8; 6];
    let n = crate::blob::read_full_at(&fill.reader().unwrap(), &mut buf, 5).unwrap();
    assert_eq!(&buf[..n], b" world");
    assert!(!cache.contains(&k));

    let blob = fill.commit().unwrap();
    // The reader opened before the commit still works on the same (renamed) file.
    let mut all = Vec::new();
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0)).unwrap();
    reader.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"hello world");
    assert_eq!(read_all(&blob), b"hello world");
}

#[test]
fn out_of_order_writes_complete_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let fill = cache.begin_fill(key(1, "v"), 10).unwrap();
    fill.write_at(b"56789", 5).unwrap();
    assert_eq!(fill.written(), 0);
    fill.write_at(b"012", 0).unwrap();
    assert_eq!(fill.written(), 3);
    fill.write_at(b"2345", 2).unwrap(); // overlaps both neighbours
    assert_eq!(fill.written(), 10);
    assert_eq!(cache.stats().filling_bytes, 10, "overlaps are counted once");
    let blob = fill.commit().unwrap();
    assert_eq!(read_all(&blob), b"0123456789");
    assert_eq!(cache.stats().filling_bytes, 0);
    assert_eq!(cache.stats().used_bytes, 10);
}

#[test]
fn lru_eviction_order_and_touch_saves_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 30).unwrap();
    let (a, b, c, d, e) = (
        key(1, "a"),
        key(2, "b"),
        key(3, "c"),
        key(4, "d"),
        key(5, "e"),
    );
    put_closed(&cache, &a, 10);
    put_closed(&cache, &b, 10);
    put_closed(&cache, &c, 10);
    assert_eq!(cache.stats().used_bytes, 30);

    // Touch the oldest: it becomes the most recent.
    drop(cache.get(&a).unwrap());
    put_closed(&cache, &d, 10);
    assert!(cache.contains(&a), "touched blob survives");
    assert!(!cache.contains(&b), "least recently used goes first");
    assert!(cache.contains(&c));
    assert!(cache.contains(&d));

    // contains() is not a use: c is now the oldest and goes next.
    assert!(cache.contains(&c));
    put_closed(&cache, &e, 10);
    assert!(!cache.contains(&c));
    assert!(cache.contains(&a) && cache.contains(&d) && cache.contains(&e));
    assert_eq!(cache.stats().used_bytes, 30);
    assert_eq!(names(&dir.path().join("blobs")).len(), 3);

    // Lowering the limit evicts oldest first: a (touched before d), then d.
    cache.set_limit(10);
    assert!(!cache.contains(&a) && !cache.contains(&d));
    assert!(cache.contains(&e));
    let stats = cache.stats();
    assert_eq!(
        (stats.used_bytes, stats.limit_bytes, stats.over_limit_bytes),
        (10, 10, 0)
    );
    assert_eq!(names(&dir.path().join("blobs")).len(), 1);
}

#[test]
fn open_blobs_are_not_evicted_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 15).unwrap();
    let (a, b) = (key(1, "a"), key(2, "b"));
    let data_a = content(1, 10);
    let blob_a = put(&cache, &a, &data_a);
    let blob_b = put(&cache, &b, &content(2, 10));

    let stats = cache.stats();
    assert_eq!(stats.used_bytes, 20);
    assert_eq!(stats.open_blobs, 2);
    assert_eq!(stats.over_limit_bytes, 5, "over the limit is reported");
    assert!(cache.contains(&a) && cache.contains(&b));

    // A second handle on a keeps it open after the first drops.
    let blob_a2 = cache.get(&a).unwrap();
    drop(blob_a);
    assert!(cache.contains(&a));
    assert_eq!(read_all(&blob_a2), data_a);

    // Last handle of a (now the LRU) drops: it is evicted.
    drop(blob_a2);
    assert!(!cache.contains(&a));
    assert!(cache.contains(&b));
    let stats = cache.stats();
    assert_eq!(
        (stats.used_bytes, stats.over_limit_bytes, stats.open_blobs),
        (10, 0, 1)
    );

    drop(blob_b);
    assert!(cache.contains(&b), "within the limit nothing more goes");
}

#[test]
fn pinned_and_dirty_blobs_are_not_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 10).unwrap();
    let (a, b, c) = (key(1, "a"), key(2, "b"), key(3, "c"));
    let blob_a = put(&cache, &a, &content(1, 10));
    assert!(cache.set_pinned(&a, true).unwrap());
    drop(blob_a);
    let blob_b = put(&cache, &b, &content(2, 10));
    assert!(cache.set_dirty(&b, true).unwrap());
    drop(blob_b);
    put_closed(&cache, &c, 10);
    // The limit applies to what is neither pinned nor dirty: c fits.
    assert!(cache.contains(&c), "pinned and dirty bytes do not count");
    let d = key(4, "d");
    put_closed(&cache, &d, 5);

    assert!(cache.contains(&a), "pinned kept");
    assert!(cache.contains(&b), "dirty kept");
    assert!(!cache.contains(&c), "the oldest evictable blob goes");
    assert!(cache.contains(&d));
    let stats = cache.stats();
    assert_eq!(stats.pinned_bytes, 10);
    assert_eq!(stats.dirty_bytes, 10);
    assert_eq!(stats.used_bytes, 25);
    assert_eq!(stats.over_limit_bytes, 0);
    assert!(
        !cache.set_pinned(&c, true).unwrap(),
        "absent key reports false"
    );
    assert!(cache.remove(&d).unwrap());

    // A dirty blob can't be removed or replaced.
    assert!(matches!(
        cache.remove(&b),
        Err(CacheError::Dirty { entry: 2, .. })
    ));
    assert!(matches!(
        cache.remove_entry(2),
        Err(CacheError::Dirty { entry: 2, .. })
    ));
    let mut fill = cache.begin_fill(b.clone(), 3).unwrap();
    fill.append(b"new").unwrap();
    assert!(matches!(
        fill.commit(),
        Err(CacheError::Dirty { entry: 2, .. })
    ));
    assert_eq!(read_all(&cache.get(&b).unwrap()), content(2, 10));
    assert!(names(&dir.path().join("tmp")).is_empty());

    // Unpinning makes a evictable and the budget is re-checked: alone, it fits.
    assert!(cache.set_pinned(&a, false).unwrap());
    assert!(cache.contains(&a));
    assert_eq!(cache.stats().used_bytes, 20);
    // Cleaning b: now a and b count, over the limit; the older one (a) goes.
    assert!(cache.set_dirty(&b, false).unwrap());
    assert!(cache.contains(&b));
    assert!(!cache.contains(&a));
    assert_eq!(cache.stats().over_limit_bytes, 0);
    // Pinned blobs can still be removed explicitly.
    assert!(cache.set_pinned(&b, true).unwrap());
    assert!(cache.remove(&b).unwrap());
    assert!(!cache.remove(&b).unwrap());
    assert!(names(&dir.path().join("blobs")).is_empty());
}

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

#[test]
fn committing_a_new_version_removes_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1000).unwrap();
    let (v1, v2, v3, v4) = (key(1, "v1"), key(1, "v2"), key(1, "v3"), key(1, "v4"));
    let other = key(2, "v1");
    put_closed(&cache, &v1, 10);
    put_closed(&cache, &other, 10);
    put_closed(&cache, &v2, 20);
    assert_eq!(cache.versions_of(1), vec!["v2".to_string()]);
    assert!(cache.contains(&other), "other entries untouched");
    assert_eq!(cache.stats().used_bytes, 30);
    assert_eq!(names(&dir.path().join("blobs")).len(), 2);

    // An open stale version stays (readers keep it) until it is evicted or removed.
    let open_v2 = cache.get(&v2).unwrap();
    put_closed(&cache, &v3, 5);
    assert_eq!(
        cache.versions_of(1),
        vec!["v2".to_string(), "v3".to_string()]
    );
    assert_eq!(read_all(&open_v2), content(1, 20));
    // A pin belongs to the file: the new version takes it over, the old one goes.
    assert!(cache.set_pinned(&v3, true).unwrap());
    put_closed(&cache, &v4, 7);
    assert_eq!(
        cache.versions_of(1),
        vec!["v2".to_string(), "v4".to_string()]
    );
    cache.flush().unwrap(); // indexed once synced
    assert!(cache.index_row(&v4).unwrap().pinned);
    assert_eq!(cache.stats().pinned_bytes, 7);
    // The closed stale version went to the LRU end: it is the first to go.
    drop(open_v2);
    let st = cache.stats();
    cache.set_limit(st.used_bytes - st.pinned_bytes - 1);
    assert!(!cache.contains(&v2));
    assert!(cache.contains(&other));

    // Re-committing the same key replaces the content.
    put_closed(&cache, &other, 3);
    assert_eq!(cache.get(&other).unwrap().len(), 3);
    cache.flush().unwrap();
    assert_eq!(cache.index_row(&other).unwrap().len, 3);

    // remove_entry takes all versions, pinned included.
    assert_eq!(cache.remove_entry(1).unwrap(), 1);
    assert!(cache.versions_of(1).is_empty());
    assert_eq!(cache.remove_entry(1).unwrap(), 0);
    assert_eq!(names(&dir.path().join("blobs")).len(), 1);
    assert_eq!(cache.stats().used_bytes, 3);
}

#[test]
fn removing_an_open_blob_keeps_its_handle_working() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1000).unwrap();
    let a = key(1, "a");
    let data = content(1, 50);
    let blob = put(&cache, &a, &data);
    assert!(cache.remove(&a).unwrap());
    assert!(!cache.contains(&a));
    assert!(names(&dir.path().join("blobs")).is_empty());
    assert_eq!(read_all(&blob), data);
    // A new incarnation of the key is not disturbed by the old handle dropping.
    let blob2 = put(&cache, &a, &content(1, 20));
    drop(blob);
    assert_eq!(cache.stats().open_blobs, 1);
    drop(blob2);
    assert_eq!(cache.stats().open_blobs, 0);
    assert_eq!(cache.stats().used_bytes, 20);
}

#[test]
fn free_reports_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1000).unwrap();
    let (clean, dirty, open, pinned) = (key(1, "a"), key(2, "b"), key(3, "c"), key(4, "d"));
    put_closed(&cache, &clean, 10);
    put_closed(&cache, &dirty, 20);
    let _open = put(&cache, &open, &content(3, 30));
    put_closed(&cache, &pinned, 40);
    assert!(cache.set_dirty(&dirty, true).unwrap());
    assert!(cache.set_pinned(&pinned, true).unwrap());

    let report = cache.free(&[1, 2, 3, 4, 99], false);
    assert_eq!(
        report,
        FreeReport {
            freed_bytes: 10,
            kept_dirty_bytes: 20,
            kept_open_bytes: 30,
            kept_pinned_bytes: 40,
        }
    );
    assert!(!cache.contains(&clean));
    assert!(cache.contains(&dirty) && cache.contains(&open) && cache.contains(&pinned));

    let report = cache.free(&[2, 3, 4], true);
    assert_eq!(report.freed_bytes, 40);
    assert_eq!(report.kept_dirty_bytes, 20);
    assert_eq!(report.kept_open_bytes, 30);
    assert_eq!(report.kept_pinned_bytes, 0);
    assert!(!cache.contains(&pinned));
    assert_eq!(cache.stats().used_bytes, 50);
    assert_eq!(names(&dir.path().join("blobs")).len(), 2);
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
fn concurrent_fills_and_gets() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(Cache::open(dir.path(), 1 << 30).unwrap());
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    let entry = t * 1000 + i;
                    let k = key(entry, "v");
                    let data = content(entry, 100 + (i as usize * 37) % 900);
                    let blob = put(&cache, &k, &data);
                    assert_eq!(read_all(&blob), data);
                    drop(blob);
                    let got = cache.get(&k).unwrap();
                    assert_eq!(read_all(&got), data);
                    // Peek at another thread's keys; they may or may not be there yet.
                    let other = key(((t + 1) % 6) * 1000 + i, "v");
                    if let Some(blob) = cache.get(&other) {
                        assert_eq!(read_all(&blob), content(other.entry, blob.len() as usize));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = cache.stats();
    assert_eq!(stats.blobs, 150);
    assert_eq!(stats.open_blobs, 0);
    assert_eq!(stats.filling_bytes, 0);
    let expected: u64 = (0..25u64).map(|i| 100 + (i * 37) % 900).sum::<u64>() * 6;
    assert_eq!(stats.used_bytes, expected);
    assert_eq!(names(&dir.path().join("blobs")).len(), 150);
    assert!(names(&dir.path().join("tmp")).is_empty());
}

#[test]
fn concurrent_fills_under_eviction_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(Cache::open(dir.path(), 5_000).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let entry = t * 1000 + i;
                    let k = key(entry, "v");
                    let data = content(entry, 1000);
                    let blob = put(&cache, &k, &data);
                    assert_eq!(read_all(&blob), data, "open blob never evicted under us");
                    drop(blob);
                    if let Some(blob) = cache.get(&key(entry.saturating_sub(1), "v")) {
                        assert_eq!(read_all(&blob).len(), 1000);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = cache.stats();
    assert!(stats.used_bytes <= 5_000, "{stats:?}");
    assert_eq!(stats.used_bytes, stats.blobs as u64 * 1000);
    assert_eq!(names(&dir.path().join("blobs")).len(), stats.blobs);
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cache>();
    assert_send_sync::<crate::Blob>();
    assert_send_sync::<crate::Fill>();
    assert_send_sync::<CacheError>();
}

/// Reads `[start, end)` of a fill's file.
fn read_fill(fill: &crate::Fill, start: u64, end: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; (end - start) as usize];
    fill.reader()
        .unwrap()
        .read_exact_at(&mut buf, start)
        .unwrap();
    buf
}

#[test]
fn a_parked_partial_download_resumes_after_reopen_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(5, "v1");
    let data = content(5, 100_000);
    {
        let cache = Cache::open(dir.path(), 1 << 20).unwrap();
        let fill = cache.begin_fill(k.clone(), data.len() as u64).unwrap();
        fill.write_at(&data[..10_000], 0).unwrap();
        fill.write_at(&data[60_000..70_000], 60_000).unwrap();
        fill.park(&[(0, 10_000), (60_000, 70_000)]).unwrap();
        assert_eq!(cache.partial_bytes(&k), Some(20_000));
        assert!(
            !cache.contains(&k),
            "a partial download is not a cached blob"
        );
        assert!(cache.get(&k).is_none());
        assert_eq!(cache.stats().used_bytes, 20_000);
    }
    // After a restart it is still there, and resumes with its ranges and bytes.
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(cache.partial_bytes(&k), Some(20_000));
    // Another length (the listing changed) does not resume it.
    assert!(cache
        .resume_fill(&key(6, "v1"), data.len() as u64)
        .unwrap()
        .is_none());
    let (fill, ranges) = cache
        .resume_fill(&k, data.len() as u64)
        .unwrap()
        .expect("partial download resumed");
    assert_eq!(ranges, vec![(0, 10_000), (60_000, 70_000)]);
    assert_eq!(cache.partial_bytes(&k), None, "taken out while filling");
    assert_eq!(read_fill(&fill, 0, 10_000), data[..10_000]);
    assert_eq!(read_fill(&fill, 60_000, 70_000), data[60_000..70_000]);
    fill.write_at(&data[10_000..60_000], 10_000).unwrap();
    fill.write_at(&data[70_000..], 70_000).unwrap();
    let blob = fill.commit().unwrap();
    assert_eq!(read_all(&blob), data);
    assert!(cache.contains(&k));
    assert_eq!(cache.stats().partial_bytes, 0);
}

#[test]
fn partial_downloads_are_evicted_first_and_by_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 100_000).unwrap();
    put_closed(&cache, &key(1, "a"), 40_000);
    let fill = cache.begin_fill(key(2, "a"), 80_000).unwrap();
    fill.write_at(&content(2, 30_000), 0).unwrap();
    fill.park(&[(0, 30_000)]).unwrap();
    assert_eq!(cache.partial_bytes(&key(2, "a")), Some(30_000));
    // 40,000 + 30,000 + 50,000 > 100,000: the partial download goes, the blob stays.
    put_closed(&cache, &key(3, "a"), 50_000);
    assert_eq!(cache.partial_bytes(&key(2, "a")), None);
    assert!(cache.contains(&key(1, "a")) && cache.contains(&key(3, "a")));
    // A complete version of an entry drops its partial downloads.
    let fill = cache.begin_fill(key(4, "old"), 10_000).unwrap();
    fill.write_at(&content(4, 1_000), 0).unwrap();
    fill.park(&[(0, 1_000)]).unwrap();
    assert_eq!(cache.partial_bytes(&key(4, "old")), Some(1_000));
    put_closed(&cache, &key(4, "new"), 1_000);
    assert_eq!(cache.partial_bytes(&key(4, "old")), None);
    let blobs: Vec<String> = names(&dir.path().join("blobs"))
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(blobs.is_empty(), "partial files left behind: {blobs:?}");
}
