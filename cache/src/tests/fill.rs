//! Fills: writing, the readable prefix, commit and what a failed or dropped fill leaves.

use super::{content, key, names, read_all};
use crate::{Cache, CacheError};
use std::io::Read;

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
