//! The byte budget: which complete blobs exist, their recency (an unbounded [`LruCache`]) and
//! flags, how many bytes they use, and which ones to evict when over the limit.

use crate::key::BlobKey;
use lru::LruCache;
use std::collections::{BTreeSet, HashMap};

/// In-memory bookkeeping of one complete blob.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub len: u64,
    /// File name inside `blobs/`.
    pub file: String,
    /// Identity of this incarnation of the key, so a handle of a replaced blob does not touch
    /// its successor.
    pub token: u64,
    pub pinned: bool,
    pub dirty: bool,
    /// Number of live [`crate::Blob`] handles.
    pub open: u32,
    pub last_used: u64,
}

impl Meta {
    /// Whether the budget may drop this blob: clean, unpinned and not open.
    pub fn evictable(&self) -> bool {
        !self.pinned && !self.dirty && self.open == 0
    }
}

/// What [`crate::Cache::free`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeReport {
    /// Bytes of blobs deleted.
    pub freed_bytes: u64,
    /// Bytes kept because the blobs hold local changes.
    pub kept_dirty_bytes: u64,
    /// Bytes kept because the blobs are open (clean ones only).
    pub kept_open_bytes: u64,
    /// Bytes kept because the blobs are pinned and pins were not included (clean, closed ones).
    pub kept_pinned_bytes: u64,
}

/// A snapshot of the cache's size and state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of complete blobs, fills in progress and partial downloads.
    pub used_bytes: u64,
    /// Bytes written so far by fills in progress (included in `used_bytes`).
    pub filling_bytes: u64,
    /// Bytes of partial downloads kept for later (included in `used_bytes`).
    pub partial_bytes: u64,
    /// The configured limit.
    pub limit_bytes: u64,
    /// Number of complete blobs.
    pub blobs: usize,
    /// Number of complete blobs with at least one open handle.
    pub open_blobs: usize,
    /// Bytes of pinned blobs.
    pub pinned_bytes: u64,
    /// Bytes of dirty blobs.
    pub dirty_bytes: u64,
    /// How far the bytes the limit applies to (all but pinned and dirty) exceed it,
    /// because the rest could not be evicted (open files).
    pub over_limit_bytes: u64,
}

/// Recency, flags and sizes of all complete blobs.
pub(crate) struct Ledger {
    lru: LruCache<BlobKey, Meta>,
    by_entry: HashMap<u64, BTreeSet<String>>,
    used: u64,
    limit: u64,
    /// Bytes of pinned or dirty blobs (the limit does not apply to them).
    exempt: u64,
}

impl Ledger {
    /// An empty ledger with a byte limit.
    pub fn new(limit: u64) -> Ledger {
        Ledger {
            lru: LruCache::unbounded(),
            by_entry: HashMap::new(),
            used: 0,
            limit,
            exempt: 0,
        }
    }

    /// Adds `key` as the most recently used blob, returning the meta it replaces.
    pub fn insert(&mut self, key: BlobKey, meta: Meta) -> Option<Meta> {
        let old = self.remove(&key);
        self.used += meta.len;
        if meta.pinned || meta.dirty {
            self.exempt += meta.len;
        }
        self.by_entry
            .entry(key.entry)
            .or_default()
            .insert(key.version.clone());
        self.lru.put(key, meta);
        old
    }

    /// Forgets `key`, returning its meta.
    pub fn remove(&mut self, key: &BlobKey) -> Option<Meta> {
        let meta = self.lru.pop(key)?;
        self.used -= meta.len;
        if meta.pinned || meta.dirty {
            self.exempt -= meta.len;
        }
        if let Some(versions) = self.by_entry.get_mut(&key.entry) {
            versions.remove(&key.version);
            if versions.is_empty() {
                self.by_entry.remove(&key.entry);
            }
        }
        Some(meta)
    }

    /// The meta of `key` without changing recency.
    pub fn peek(&self, key: &BlobKey) -> Option<&Meta> {
        self.lru.peek(key)
    }

    /// The meta of `key` for change, without changing recency. Not for the pinned and
    /// dirty flags: those go through [`Ledger::update`], which keeps the byte counts.
    pub fn peek_mut(&mut self, key: &BlobKey) -> Option<&mut Meta> {
        self.lru.peek_mut(key)
    }

    /// Changes the meta of `key` (flags included) without changing recency.
    pub fn update(&mut self, key: &BlobKey, change: impl FnOnce(&mut Meta)) {
        if let Some(meta) = self.lru.peek_mut(key) {
            let was = meta.pinned || meta.dirty;
            change(meta);
            let now = meta.pinned || meta.dirty;
            match (was, now) {
                (false, true) => self.exempt += meta.len,
                (true, false) => self.exempt -= meta.len,
                _ => {}
            }
        }
    }

    /// Sets whether `key` is pinned.
    pub fn set_pinned(&mut self, key: &BlobKey, pinned: bool) {
        self.update(key, |m| m.pinned = pinned);
    }

    /// Marks `key` most recently used and returns its meta.
    pub fn touch(&mut self, key: &BlobKey) -> Option<&mut Meta> {
        self.lru.get_mut(key)
    }

    /// Marks `key` least recently used.
    pub fn demote(&mut self, key: &BlobKey) {
        self.lru.demote(key);
    }

    /// Versions of `entry` that are cached, sorted.
    pub fn versions(&self, entry: u64) -> Vec<String> {
        self.by_entry
            .get(&entry)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Bytes of complete blobs the limit applies to (not pinned, not dirty).
    pub fn budgeted(&self) -> u64 {
        self.used - self.exempt
    }

    /// Bytes of complete blobs.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The byte limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Changes the byte limit (the caller then evicts).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Evictable keys, least recently used first, whose removal brings
    /// `used + extra_bytes` down to the limit (or as close as evictable blobs allow).
    /// Pinned and dirty blobs do not count: the limit applies to the rest, so pins that
    /// exceed it do not push everything else out.
    pub fn victims(&self, extra_bytes: u64) -> Vec<BlobKey> {
        let mut total = self.used.saturating_add(extra_bytes);
        let mut out = Vec::new();
        if total <= self.limit {
            return out;
        }
        total -= self.exempt.min(total);
        for (key, meta) in self.lru.iter().rev() {
            if total <= self.limit {
                break;
            }
            if meta.evictable() {
                total -= meta.len;
                out.push(key.clone());
            }
        }
        out
    }

    /// A snapshot, counting `filling_bytes` of fills in progress as used.
    pub fn stats(&self, filling_bytes: u64) -> CacheStats {
        let used_bytes = self.used.saturating_add(filling_bytes);
        let mut stats = CacheStats {
            used_bytes,
            filling_bytes,
            limit_bytes: self.limit,
            blobs: self.lru.len(),
            ..CacheStats::default()
        };
        let mut exempt = 0;
        for (_, meta) in self.lru.iter() {
            if meta.open > 0 {
                stats.open_blobs += 1;
            }
            if meta.pinned {
                stats.pinned_bytes += meta.len;
            }
            if meta.dirty {
                stats.dirty_bytes += meta.len;
            }
            if meta.pinned || meta.dirty {
                exempt += meta.len;
            }
        }
        stats.over_limit_bytes = used_bytes.saturating_sub(exempt).saturating_sub(self.limit);
        stats
    }
}
