//! Test support: a read-only in-memory server and a real fs-core [`Drive`] over it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use edrive_cache::Cache;
use edrive_fs_core::remote::{
    ByteStream, Download, ETag, Listing, Precondition, Remote, RemoteEntry, RemoteError, RemotePath,
};
use edrive_fs_core::{Drive, DriveOptions, Meta};

/// A tree of files and folders, keyed by `/`-joined path ("" is the root).
#[derive(Clone, Debug, Default)]
pub struct MemTree {
    nodes: BTreeMap<String, Option<Vec<u8>>>,
}

impl MemTree {
    pub fn new() -> MemTree {
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), None);
        MemTree { nodes }
    }

    fn parents(mut self, path: &str) -> MemTree {
        let mut at = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, h)| h.to_vec())
            .unwrap_or_default()
        {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.nodes.entry(at.clone()).or_insert(None);
        }
        self
    }

    pub fn file(self, path: &str, content: &[u8]) -> MemTree {
        let mut t = self.parents(path);
        t.nodes.insert(path.to_string(), Some(content.to_vec()));
        t
    }

    pub fn dir(self, path: &str) -> MemTree {
        let mut t = self.parents(path);
        t.nodes.insert(path.to_string(), None);
        t
    }
}

struct MemRemote {
    tree: MemTree,
}

fn key(path: &RemotePath) -> String {
    path.parts().join("/")
}

fn mtime() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

impl MemRemote {
    fn entry(&self, k: &str) -> Result<RemoteEntry, RemoteError> {
        let node = self.tree.nodes.get(k).ok_or(RemoteError::NotFound)?;
        Ok(RemoteEntry {
            access: None,
            name: k.rsplit('/').next().unwrap_or("").to_string(),
            is_dir: node.is_none(),
            size: node.as_ref().map_or(0, |c| c.len() as u64),
            size_known: true,
            mtime: Some(mtime()),
            etag: node.as_ref().map(|c| ETag {
                value: format!("len{}", c.len()),
                weak: false,
            }),
        })
    }
}

#[async_trait]
impl Remote for MemRemote {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        let k = key(path);
        let dir = self.entry(&k)?;
        let prefix = if k.is_empty() {
            String::new()
        } else {
            format!("{k}/")
        };
        let children = self
            .tree
            .nodes
            .keys()
            .filter(|c| !c.is_empty() && c.starts_with(&prefix) && !c[prefix.len()..].contains('/'))
            .map(|c| self.entry(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing {
            dir,
            children,
            complete: true,
        })
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        self.entry(&key(path))
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        let Some(Some(content)) = self.tree.nodes.get(&key(path)) else {
            return Err(RemoteError::NotFound);
        };
        let r = range.unwrap_or(0..content.len() as u64);
        let body = Bytes::copy_from_slice(&content[r.start as usize..r.end as usize]);
        let len = body.len() as u64;
        let etag = Some(ETag {
            value: format!("len{}", content.len()),
            weak: false,
        });
        let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(body)]));
        Ok(Download {
            made_up: None,
            len: Some(len),
            etag,
            skipped: 0,
            body,
        })
    }

    async fn put(
        &self,
        _: &RemotePath,
        _: ByteStream,
        _: u64,
        _: Precondition,
        _: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        Err(RemoteError::Status(405))
    }

    async fn mkdir(&self, _: &RemotePath) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }

    async fn rename(&self, _: &RemotePath, _: &RemotePath, _: bool) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }

    async fn delete(&self, _: &RemotePath, _: Precondition) -> Result<(), RemoteError> {
        Err(RemoteError::Status(405))
    }

    fn describe(&self) -> String {
        "mem://test".to_string()
    }
}

/// A drive over `tree`, with its cache in a temporary directory (kept alive by the guard).
pub fn drive_with(tree: MemTree) -> (tempfile::TempDir, Arc<Drive>) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let remote = MemRemote { tree };
    let root = remote.entry("").expect("root");
    let meta = Meta::in_memory().expect("meta");
    meta.update_root(&root).expect("root row");
    let cache = Cache::open(&tmp.path().join("cache"), 1 << 30).expect("cache");
    let drive = Drive::new(
        Arc::new(remote),
        Arc::new(meta),
        Arc::new(cache),
        DriveOptions {
            dir_cache_ttl: Duration::from_secs(60),
            uid: 0,
            gid: 0,
            ..DriveOptions::default()
        },
    );
    (tmp, Arc::new(drive))
}
