//! Behaviour tests of the cache against real temp directories, by topic; the helpers they
//! share are here.

mod concurrency;
mod eviction;
mod fill;
mod partial;
mod recovery;
mod work;

use crate::{Blob, BlobKey, Cache};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
fn put(cache: &Cache, key: &BlobKey, data: &[u8]) -> Blob {
    let mut fill = cache.begin_fill(key.clone(), data.len() as u64).unwrap();
    fill.append(data).unwrap();
    fill.commit().unwrap()
}

/// Fills and commits `key` with `len` bytes and closes the handle.
fn put_closed(cache: &Cache, key: &BlobKey, len: usize) {
    drop(put(cache, key, &content(key.entry, len)));
}

fn read_all(blob: &Blob) -> Vec<u8> {
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
