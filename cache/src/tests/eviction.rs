//! What leaves the cache and what stays: the budget and recency, open, pinned and dirty
//! blobs, stale versions, removal and `free`.

use super::{content, key, names, put, put_closed, read_all};
use crate::{Cache, CacheError, FreeReport};

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
