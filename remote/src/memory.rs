//! An in-memory server for tests: [`MemRemote`] implements [`Remote`] the way a WebDAV
//! server answers (status codes included), with switches for the ways real servers fall
//! short (preconditions ignored, no or weak ETags), server-side changes that act as another
//! user, a request log and a hook that runs at the start of every call. [`FaultyRemote`]
//! wraps any [`Remote`] and fails, delays or cuts short chosen calls.

mod faulty;
mod serve;

pub use faulty::{CallFilter, Fault, FaultyRemote};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    ByteStream, ChildSink, Download, ETag, Listing, ListingHead, Precondition, Remote, RemoteEntry,
    RemoteError, RemotePath,
};

/// What a [`Remote`] call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// [`Remote::list`] or [`Remote::list_each`].
    List,
    /// [`Remote::stat`].
    Stat,
    /// [`Remote::read`].
    Read,
    /// [`Remote::put`].
    Put,
    /// [`Remote::mkdir`].
    Mkdir,
    /// [`Remote::rename`].
    Rename,
    /// [`Remote::delete`].
    Delete,
}

impl CallKind {
    /// The WebDAV request the call is (`PROPFIND1` lists, `PROPFIND0` stats).
    pub fn method(self) -> &'static str {
        match self {
            CallKind::List => "PROPFIND1",
            CallKind::Stat => "PROPFIND0",
            CallKind::Read => "GET",
            CallKind::Put => "PUT",
            CallKind::Mkdir => "MKCOL",
            CallKind::Rename => "MOVE",
            CallKind::Delete => "DELETE",
        }
    }
}

/// One call made to a [`MemRemote`] or a [`FaultyRemote`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCall {
    /// Calls before this one on the same remote.
    pub seq: u64,
    /// What the call is.
    pub kind: CallKind,
    /// The path it is about (a move's source).
    pub path: RemotePath,
    /// A move's destination.
    pub to: Option<RemotePath>,
    /// A write's or delete's precondition ([`Precondition::None`] for other calls).
    pub precondition: Precondition,
}

impl fmt::Display for RemoteCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.method(), self.path)?;
        if let Some(to) = &self.to {
            write!(f, " -> {to}")?;
        }
        match &self.precondition {
            Precondition::None => Ok(()),
            Precondition::IfMatch(t) => write!(f, " If-Match {}", t.to_header()),
            Precondition::IfNoneExists => f.write_str(" If-None-Match *"),
        }
    }
}

/// A function run at the start of every call of a [`MemRemote`].
pub type Hook = Box<dyn Fn(&RemoteCall) + Send + Sync>;

/// A [`Hook`] once set: shared, so it runs without the lock held.
type SharedHook = Arc<dyn Fn(&RemoteCall) + Send + Sync>;

#[derive(Clone, Debug)]
enum Content {
    Dir,
    File(Bytes),
}

#[derive(Clone, Debug)]
struct Node {
    content: Content,
    mtime: SystemTime,
    /// Unique across the tree and the server's life; kept by a move.
    tag: u64,
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir)
    }
}

type Key = Vec<String>;

/// The tree: every folder and file by its path components (the root is the empty key).
/// Descendants of a key sort right after it, so a subtree is one range.
struct Tree {
    nodes: BTreeMap<Key, Node>,
    next_tag: u64,
}

/// What servers report: whole seconds (`getlastmodified` is an HTTP date).
fn now_secs() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Tree {
    fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            Vec::new(),
            Node {
                content: Content::Dir,
                mtime: now_secs(),
                tag: 1,
            },
        );
        Tree { nodes, next_tag: 2 }
    }

    fn tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    fn get(&self, key: &[String]) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Whether `key`'s parent exists and is a folder.
    fn parent_is_dir(&self, key: &[String]) -> bool {
        match key.split_last() {
            Some((_, parent)) => self.get(parent).is_some_and(Node::is_dir),
            None => false,
        }
    }

    /// A folder's content changed: new time and version, as servers do.
    fn touch_parent(&mut self, key: &[String]) {
        if let Some((_, parent)) = key.split_last() {
            let tag = self.tag();
            if let Some(p) = self.nodes.get_mut(parent) {
                p.mtime = now_secs();
                p.tag = tag;
            }
        }
    }

    /// `key` and everything below it.
    fn subtree(&self, key: &[String]) -> Vec<Key> {
        self.nodes
            .range(key.to_vec()..)
            .take_while(|(k, _)| k.starts_with(key))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn write_file(&mut self, key: &[String], data: Bytes) -> u64 {
        let tag = self.tag();
        let fresh = !self.nodes.contains_key(key);
        self.nodes.insert(
            key.to_vec(),
            Node {
                content: Content::File(data),
                mtime: now_secs(),
                tag,
            },
        );
        if fresh {
            self.touch_parent(key);
        }
        tag
    }

    fn make_dir(&mut self, key: &[String]) {
        let tag = self.tag();
        self.nodes.insert(
            key.to_vec(),
            Node {
                content: Content::Dir,
                mtime: now_secs(),
                tag,
            },
        );
        self.touch_parent(key);
    }

    fn remove(&mut self, key: &[String]) {
        for k in self.subtree(key) {
            self.nodes.remove(&k);
        }
        self.touch_parent(key);
    }

    /// Moves `from` with everything below it to `to` (which must be free).
    fn move_to(&mut self, from: &[String], to: &[String]) {
        for k in self.subtree(from) {
            if let Some(node) = self.nodes.remove(&k) {
                let mut dest = to.to_vec();
                dest.extend_from_slice(&k[from.len()..]);
                self.nodes.insert(dest, node);
            }
        }
        self.touch_parent(from);
        self.touch_parent(to);
    }

    /// Creates the missing folders above `key`; fails if a file is in the way.
    fn make_parents(&mut self, key: &[String]) -> Result<(), RemoteError> {
        for i in 0..key.len() {
            match self.get(&key[..i]) {
                Some(n) if n.is_dir() => {}
                Some(_) => return Err(RemoteError::Status(409)),
                None => self.make_dir(&key[..i]),
            }
        }
        Ok(())
    }
}

/// Bytes per chunk of a download body.
const READ_CHUNK: usize = 64 * 1024;

/// An in-memory WebDAV-like server. Folders and files by path; every write gives a file a
/// new ETag (unique for the server's life, kept by a move); times are whole seconds, and
/// the time a client passes with a write is ignored (as Apache and nginx do).
/// Errors are those the WebDAV client maps the server's status codes to: 404
/// [`RemoteError::NotFound`], 412 [`RemoteError::PreconditionFailed`], 409 (a missing
/// parent) and 405 (a folder where a file is expected, or an existing MKCOL target) as
/// [`RemoteError::Status`], 403 ([`RemoteError::Auth`]) for a move onto itself or into
/// itself.
///
/// Switches, settable any time: [`MemRemote::set_enforce_preconditions`],
/// [`MemRemote::set_send_etags`], [`MemRemote::set_weak_etags`]. The `server_*` methods
/// change the tree as another user would, without going through the log or the hook.
pub struct MemRemote {
    tree: Mutex<Tree>,
    enforce: AtomicBool,
    send_etags: AtomicBool,
    weak: AtomicBool,
    calls: AtomicU64,
    log: Mutex<Vec<RemoteCall>>,
    hook: Mutex<Option<SharedHook>>,
}

impl Default for MemRemote {
    fn default() -> Self {
        MemRemote::new()
    }
}

impl fmt::Debug for MemRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemRemote")
            .field("files", &self.server_tree().len())
            .field("calls", &self.calls())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `a/b/c` (leading, trailing and doubled slashes ignored) as path components.
fn key_of(path: &str) -> Result<Key, RemoteError> {
    RemotePath::from_parts(path.split('/').filter(|p| !p.is_empty()))
        .map(|p| p.parts().to_vec())
        .map_err(|e| RemoteError::Local(format!("bad path {path:?}: {e}")))
}

impl MemRemote {
    /// An empty server (just the root folder) that enforces preconditions and sends
    /// strong ETags.
    pub fn new() -> MemRemote {
        MemRemote {
            tree: Mutex::new(Tree::new()),
            enforce: AtomicBool::new(true),
            send_etags: AtomicBool::new(true),
            weak: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
        }
    }

    /// Whether `If-Match` / `If-None-Match` are honoured (`true`, the default) or ignored
    /// as nginx and `rclone serve webdav` do: the write just happens.
    pub fn set_enforce_preconditions(&self, on: bool) {
        self.enforce.store(on, Ordering::SeqCst);
    }

    /// Whether listings, stats, reads and writes report ETags (`true`, the default); nginx
    /// sends none.
    pub fn set_send_etags(&self, on: bool) {
        self.send_etags.store(on, Ordering::SeqCst);
    }

    /// Whether ETags are weak (`W/"…"`). `If-Match` compares strongly, so while this is
    /// on (and preconditions are enforced) no `If-Match` ever matches, as with Apache.
    pub fn set_weak_etags(&self, on: bool) {
        self.weak.store(on, Ordering::SeqCst);
    }

    /// Runs `hook` at the start of every [`Remote`] call from now on (after it is logged,
    /// before it looks at the tree); it may change the tree through the `server_*` methods.
    pub fn set_hook(&self, hook: Hook) {
        *lock(&self.hook) = Some(Arc::from(hook));
    }

    /// Removes the hook.
    pub fn clear_hook(&self) {
        *lock(&self.hook) = None;
    }

    /// How many [`Remote`] calls were made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The calls made so far (since the last [`MemRemote::clear_log`]).
    pub fn log(&self) -> Vec<RemoteCall> {
        lock(&self.log).clone()
    }

    /// The calls made so far as lines like `PUT /a/b If-Match "m7"`.
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.log).iter().map(ToString::to_string).collect()
    }

    /// Empties the log (the call count goes on).
    pub fn clear_log(&self) {
        lock(&self.log).clear();
    }

    /// Writes file `path` (`a/b/c`) as another user would, creating missing folders above
    /// it; it gets a new ETag.
    pub fn server_put(&self, path: &str, data: impl Into<Bytes>) -> Result<(), RemoteError> {
        let key = key_of(path)?;
        let mut tree = lock(&self.tree);
        if key.is_empty() || tree.get(&key).is_some_and(Node::is_dir) {
            return Err(RemoteError::Status(405));
        }
        tree.make_parents(&key)?;
        tree.write_file(&key, data.into());
        Ok(())
    }

    /// Creates folder `path` and any missing folders above it; fine if it exists.
    pub fn server_mkdir(&self, path: &str) -> Result<(), RemoteError> {
        let key = key_of(path)?;
        let mut tree = lock(&self.tree);
        match tree.get(&key) {
            Some(n) if n.is_dir() => Ok(()),
            Some(_) => Err(RemoteError::Status(405)),
            None => {
                tree.make_parents(&key)?;
                tree.make_dir(&key);
                Ok(())
            }
        }
    }

    /// Deletes file or folder `path` (a folder with everything in it).
    pub fn server_delete(&self, path: &str) -> Result<(), RemoteError> {
        let key = key_of(path)?;
        let mut tree = lock(&self.tree);
        if key.is_empty() {
            return Err(RemoteError::Auth(403));
        }
        if tree.get(&key).is_none() {
            return Err(RemoteError::NotFound);
        }
        tree.remove(&key);
        Ok(())
    }

    /// Moves `from` to `to`, replacing what is there; missing folders above `to` are made.
    pub fn server_rename(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        let (from, to) = (key_of(from)?, key_of(to)?);
        let mut tree = lock(&self.tree);
        if tree.get(&from).is_none() {
            return Err(RemoteError::NotFound);
        }
        if from.is_empty() || to.starts_with(&from) {
            return Err(RemoteError::Auth(403));
        }
        tree.make_parents(&to)?;
        if tree.get(&to).is_some() {
            tree.remove(&to);
        }
        tree.move_to(&from, &to);
        Ok(())
    }

    /// The content of file `path`, or `None` if there is no file there.
    pub fn server_read(&self, path: &str) -> Option<Vec<u8>> {
        let key = key_of(path).ok()?;
        match &lock(&self.tree).get(&key)?.content {
            Content::File(data) => Some(data.to_vec()),
            Content::Dir => None,
        }
    }

    /// Every file with its content, by path (`a/b/c`).
    pub fn server_tree(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.tree)
            .nodes
            .iter()
            .filter_map(|(k, n)| match &n.content {
                Content::File(data) => Some((k.join("/"), data.to_vec())),
                Content::Dir => None,
            })
            .collect()
    }

    /// Every folder but the root, by path (`a/b`).
    pub fn server_folders(&self) -> BTreeSet<String> {
        lock(&self.tree)
            .nodes
            .iter()
            .filter(|(k, n)| n.is_dir() && !k.is_empty())
            .map(|(k, _)| k.join("/"))
            .collect()
    }

    /// Logs a call and runs the hook (with no lock held).
    fn called(
        &self,
        kind: CallKind,
        path: &RemotePath,
        to: Option<&RemotePath>,
        precondition: &Precondition,
    ) {
        let call = RemoteCall {
            seq: self.calls.fetch_add(1, Ordering::SeqCst),
            kind,
            path: path.clone(),
            to: to.cloned(),
            precondition: precondition.clone(),
        };
        lock(&self.log).push(call.clone());
        let hook = lock(&self.hook).clone();
        if let Some(hook) = hook {
            hook(&call);
        }
    }

    fn etag(&self, tag: u64) -> Option<ETag> {
        self.send_etags.load(Ordering::SeqCst).then(|| ETag {
            value: format!("m{tag}"),
            weak: self.weak.load(Ordering::SeqCst),
        })
    }

    fn entry(&self, name: &str, node: &Node) -> RemoteEntry {
        RemoteEntry {
            access: None,
            name: name.to_string(),
            is_dir: node.is_dir(),
            size: match &node.content {
                Content::File(data) => data.len() as u64,
                Content::Dir => 0,
            },
            size_known: true,
            mtime: Some(node.mtime),
            etag: self.etag(node.tag),
        }
    }

    /// Whether a write with `pre` may go ahead on `node` (what the path holds now).
    fn allowed(&self, pre: &Precondition, node: Option<&Node>) -> Result<(), RemoteError> {
        if !self.enforce.load(Ordering::SeqCst) {
            return Ok(());
        }
        let ok = match (pre, node) {
            (Precondition::None, _) => true,
            // Strong comparison: a weak tag on either side never matches.
            (Precondition::IfMatch(t), Some(n)) => {
                !t.weak && !self.weak.load(Ordering::SeqCst) && t.value == format!("m{}", n.tag)
            }
            (Precondition::IfMatch(_), None) => false,
            (Precondition::IfNoneExists, n) => n.is_none(),
        };
        if ok {
            Ok(())
        } else {
            Err(RemoteError::PreconditionFailed)
        }
    }
}

#[cfg(test)]
mod tests;
