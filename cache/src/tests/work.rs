//! Working copies: create, checkout, adopt, upload bases, and what they survive.

use super::{content, key, put, read_all};
use crate::{Cache, CacheError};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};

fn read_file(file: &mut File) -> Vec<u8> {
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut out = Vec::new();
    file.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn create_empty_write_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    assert!(cache.work_entries().unwrap().is_empty());
    assert!(cache.work_open(7).unwrap().is_none());
    assert_eq!(
        cache.work_path(7),
        dir.path().join("work").join("0000000000000007")
    );
    let work = dir.path().join("work");
    assert_eq!(
        fs::metadata(&work).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let mut file = cache.work_create_empty(7).unwrap();
    assert_eq!(cache.work_entries().unwrap(), vec![(7, 0)]);
    file.write_all(b"hello world").unwrap();
    let big = u64::MAX - 1;
    cache
        .work_create_empty(big)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    assert_eq!(cache.work_entries().unwrap(), vec![(7, 11), (big, 1)]);
    assert_eq!(cache.work_bytes(), 12);
    assert_eq!(
        fs::metadata(cache.work_path(7))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let mut again = cache.work_open(7).unwrap().unwrap();
    assert_eq!(read_file(&mut again), b"hello world");
    // Creating again truncates.
    drop(cache.work_create_empty(7).unwrap());
    assert_eq!(cache.work_entries().unwrap(), vec![(7, 0), (big, 1)]);

    // Foreign names are skipped; working copies do not count as cache use.
    fs::write(work.join("not-a-working-copy"), b"zz").unwrap();
    fs::write(work.join("000000000000000A"), b"zz").unwrap();
    assert_eq!(cache.work_entries().unwrap(), vec![(7, 0), (big, 1)]);
    assert_eq!(cache.stats().used_bytes, 0);
}

#[test]
fn work_open_does_not_follow_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"secret").unwrap();
    std::os::unix::fs::symlink(&target, cache.work_path(3)).unwrap();
    assert!(matches!(cache.work_open(3), Err(CacheError::Io { .. })));
    assert!(cache.work_create_empty(3).is_err());
    assert_eq!(fs::read(&target).unwrap(), b"secret");
}

#[test]
fn checkout_moves_a_closed_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(5, "v1");
    let data = content(5, 5000);
    drop(put(&cache, &k, &data));
    let blob_file = cache.blob_file(&k).unwrap();
    assert_eq!(cache.stats().used_bytes, 5000);

    let mut file = cache.checkout(&k).unwrap();
    assert_eq!(read_file(&mut file), data);
    assert!(cache.get(&k).is_none());
    assert!(!cache.contains(&k));
    assert!(cache.index_row(&k).is_none());
    assert!(!blob_file.exists());
    assert_eq!(cache.stats().used_bytes, 0);
    assert_eq!(cache.stats().blobs, 0);
    assert_eq!(cache.work_entries().unwrap(), vec![(5, 5000)]);

    // The working copy is writable and is the entry's one working copy.
    file.write_all_at(b"EDIT", 0).unwrap();
    let mut reopened = cache.work_open(5).unwrap().unwrap();
    assert_eq!(&read_file(&mut reopened)[..4], b"EDIT");
    assert!(matches!(
        cache.checkout(&k),
        Err(CacheError::WorkExists { entry: 5 })
    ));
}

#[test]
fn checkout_copies_an_open_or_pinned_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(6, "v1");
    let data = content(6, 3000);
    let blob = put(&cache, &k, &data);

    let mut file = cache.checkout(&k).unwrap();
    assert_eq!(file.stream_position().unwrap(), 0);
    assert_eq!(read_file(&mut file), data);
    // Editing the working copy leaves the cached blob alone.
    file.write_all_at(b"EDIT", 0).unwrap();
    assert_eq!(read_all(&blob), data);
    drop(blob);
    assert_eq!(read_all(&cache.get(&k).unwrap()), data);
    assert_eq!(cache.stats().used_bytes, 3000);
    assert_eq!(cache.work_entries().unwrap(), vec![(6, 3000)]);
    assert_eq!(fs::read_dir(dir.path().join("work")).unwrap().count(), 1);

    // Pinned (and closed): copied too.
    let p = key(8, "v1");
    drop(put(&cache, &p, &content(8, 100)));
    assert!(cache.set_pinned(&p, true).unwrap());
    let mut file = cache.checkout(&p).unwrap();
    assert_eq!(read_file(&mut file), content(8, 100));
    assert!(cache.contains(&p));
    assert_eq!(cache.stats().used_bytes, 3100);
}

#[test]
fn checkout_of_a_missing_blob_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    assert!(matches!(
        cache.checkout(&key(9, "v")),
        Err(CacheError::NotFound { entry: 9, .. })
    ));
    assert!(cache.work_entries().unwrap().is_empty());
}

#[test]
fn adopt_publishes_a_clean_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let old = key(11, "v1");
    drop(put(&cache, &old, &content(11, 400)));
    let mut file = cache.work_create_empty(11).unwrap();
    let data = content(99, 2500);
    file.write_all(&data).unwrap();
    let early = cache.work_open(11).unwrap().unwrap();

    cache.adopt(11, "v2").unwrap();
    let new = key(11, "v2");
    assert!(cache.work_open(11).unwrap().is_none());
    assert!(cache.work_entries().unwrap().is_empty());
    assert_eq!(cache.work_bytes(), 0);
    assert!(!cache.contains(&old), "the stale version is dropped");
    assert_eq!(cache.versions_of(11), vec!["v2".to_string()]);
    assert_eq!(read_all(&cache.get(&new).unwrap()), data);
    // Indexed once synced, in the background.
    cache.flush().unwrap();
    let row = cache.index_row(&new).unwrap();
    assert!(!row.pinned && !row.dirty);
    assert_eq!(row.len, 2500);
    let stats = cache.stats();
    assert_eq!(
        (stats.used_bytes, stats.open_blobs, stats.dirty_bytes),
        (2500, 0, 0)
    );
    // Handles opened before keep reading the content.
    let mut buf = vec![0; data.len()];
    early.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data);
    assert_eq!(read_file(&mut file), data);

    // It is an ordinary evictable blob.
    cache.set_limit(0);
    assert!(!cache.contains(&new));
    assert_eq!(cache.stats().used_bytes, 0);

    assert!(matches!(
        cache.adopt(11, "v3"),
        Err(CacheError::NoWorkingCopy { entry: 11 })
    ));
}

#[test]
fn adopt_after_checkout_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(12, "v1");
    drop(put(&cache, &k, &content(12, 1000)));
    let file = cache.checkout(&k).unwrap();
    file.write_all_at(b"changed", 0).unwrap();
    file.set_len(500).unwrap();
    cache.adopt(12, "v2").unwrap();
    let blob = cache.get(&key(12, "v2")).unwrap();
    let mut expected = content(12, 500);
    expected[..7].copy_from_slice(b"changed");
    assert_eq!(read_all(&blob), expected);
    assert_eq!(cache.stats().used_bytes, 500);
}

#[test]
fn adopt_refuses_to_replace_a_dirty_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(13, "v1");
    drop(put(&cache, &k, &content(13, 10)));
    assert!(cache.set_dirty(&k, true).unwrap());
    cache
        .work_create_empty(13)
        .unwrap()
        .write_all(b"abc")
        .unwrap();
    assert!(matches!(
        cache.adopt(13, "v1"),
        Err(CacheError::Dirty { entry: 13, .. })
    ));
    assert_eq!(cache.work_entries().unwrap(), vec![(13, 3)]);
    assert_eq!(read_all(&cache.get(&k).unwrap()), content(13, 10));
}

#[test]
fn working_copies_survive_reopen_and_temps_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(21, 777);
    {
        let cache = Cache::open(dir.path(), 1 << 20).unwrap();
        cache
            .work_create_empty(21)
            .unwrap()
            .write_all(&data)
            .unwrap();
        fs::write(dir.path().join("work").join(".tmp-1-2"), b"partial copy").unwrap();
        assert_eq!(cache.work_entries().unwrap(), vec![(21, 777)]);
        assert_eq!(cache.work_bytes(), 777);
    }
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(cache.work_entries().unwrap(), vec![(21, 777)]);
    let mut file = cache.work_open(21).unwrap().unwrap();
    assert_eq!(read_file(&mut file), data);
    let mut names: Vec<String> = fs::read_dir(dir.path().join("work"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["0000000000000015".to_string()]);
}

#[test]
fn eviction_free_and_remove_entry_never_touch_working_copies() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    let k = key(31, "v1");
    drop(put(&cache, &k, &content(31, 200)));
    cache
        .work_create_empty(31)
        .unwrap()
        .write_all(b"mine")
        .unwrap();
    cache
        .work_create_empty(32)
        .unwrap()
        .write_all(b"ours")
        .unwrap();

    let report = cache.free(&[31, 32], true);
    assert_eq!(report.freed_bytes, 200);
    assert!(!cache.contains(&k));
    drop(put(&cache, &k, &content(31, 200)));
    assert_eq!(cache.remove_entry(31).unwrap(), 1);
    drop(put(&cache, &k, &content(31, 200)));
    cache.set_limit(0);
    assert!(!cache.contains(&k));
    assert_eq!(cache.stats().used_bytes, 0);
    assert_eq!(cache.work_entries().unwrap(), vec![(31, 4), (32, 4)]);
    let mut file = cache.work_open(31).unwrap().unwrap();
    assert_eq!(read_file(&mut file), b"mine");
    drop(cache);

    // Nor does reopening with a zero budget.
    let cache = Cache::open(dir.path(), 0).unwrap();
    assert_eq!(cache.work_entries().unwrap(), vec![(31, 4), (32, 4)]);
}

#[test]
fn work_remove_deletes_the_working_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    assert!(!cache.work_remove(41).unwrap());
    let mut file = cache.work_create_empty(41).unwrap();
    file.write_all(b"bye").unwrap();
    assert!(cache.work_remove(41).unwrap());
    assert!(!cache.work_path(41).exists());
    assert!(cache.work_open(41).unwrap().is_none());
    assert!(cache.work_entries().unwrap().is_empty());
    assert!(!cache.work_remove(41).unwrap());
    // An open handle still reads the unlinked file.
    assert_eq!(read_file(&mut file), b"bye");
}

#[test]
fn adopted_blobs_are_synced_in_batches_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<(u64, Vec<u8>)> = (1..=20)
        .map(|e| (e, content(e, 100 * e as usize)))
        .collect();
    {
        let cache = Cache::open(dir.path(), 1 << 20).unwrap();
        for (entry, data) in &expected {
            cache
                .work_create_empty(*entry)
                .unwrap()
                .write_all(data)
                .unwrap();
            cache.adopt(*entry, "v1").unwrap();
        }
        // Dropping the cache waits for the sync thread.
    }
    let cache = Cache::open(dir.path(), 1 << 20).unwrap();
    for (entry, data) in &expected {
        let k = key(*entry, "v1");
        let blob = cache
            .get(&k)
            .unwrap_or_else(|| panic!("entry {entry} lost"));
        assert_eq!(read_all(&blob), *data);
        assert_eq!(cache.index_row(&k).unwrap().len, data.len() as u64);
    }
    assert!(cache.work_entries().unwrap().is_empty());
}
