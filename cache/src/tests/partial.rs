//! Partial downloads: parked, resumed after a restart, evicted first.

use super::{content, key, names, put_closed, read_all};
use crate::Cache;

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
