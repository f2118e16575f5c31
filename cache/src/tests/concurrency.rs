//! Fills and reads from several threads, and the handles' `Send` and `Sync`.

use super::{content, key, names, put, read_all};
use crate::{Cache, CacheError};
use std::sync::Arc;

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
