//! The reference model, in process (issue 21; after mountpoint-s3's `tests/reftests`): a
//! real [`Drive`] (metadata store, cache, write-back) over a [`MemRemote`], no kernel, no
//! network. Each case runs a random sequence of
//! - local operations: create, whole writes, writes in parts through handles held open
//!   across other operations (fsync, close in any order, several files at once),
//!   truncate, rename (files and folders), unlink, mkdir, rmdir;
//! - server-side operations, as another client would make them: a new version of a file,
//!   a deletion, a rename, a new file;
//! - sync (upload everything, then relist what is in use), and crash-and-restart (the
//!   instance's runtime dropped with its work; a new `Drive` over the same store and cache)
//!
//! against a plain model of three trees: what the drive shows, what the server holds,
//! and what both last agreed on. After every step the drive's whole tree (listed and read
//! through the drive) must equal the model's; after every sync the server's tree must too,
//! with the conflict rules applied:
//!
//! | server, since the last sync | here: unchanged | here: written | here: deleted |
//! |---|---|---|---|
//! | new version X | X | X, and ours as a conflict copy | X comes back |
//! | deleted | gone | ours stays (uploaded again) | gone |
//! | renamed p → q | q | ours stays at p, q too | q |
//!
//! Servers: enforcing preconditions with strong ETags, ignoring preconditions (nginx,
//! rclone), without ETags at all (versions from time and size), and with weak ETags
//! (Apache). Each version of a file a server-side operation writes has a size of its own,
//! since without ETags a version is told by time (whole seconds) and size.
//!
//! A sync now and then meets a failed request (through [`FaultyRemote`]): not reached, or
//! its reply lost. The outcome must be the table's, except that a client that cannot tell
//! its own earlier version from another's may keep one more conflict copy (nothing lost);
//! those are counted and printed (`--nocapture`), and work names (`.edrive-…`) a failure
//! leaves on the server for a while are not compared.
//!
//! The write-back is suspended between syncs, so each case is deterministic and
//! reproducible from its seed. Time is paused (tokio's test clock), so retries and
//! back-offs cost nothing. Not modelled: a crash while a handle is open (handles are
//! closed first), server-side changes in the middle of a request, and two server-side
//! changes of one path between syncs.
//!
//! `EDRIVE_MODEL_CASES=N` scales the run (default 2,000); `EDRIVE_MODEL_SEED=S` runs the
//! one case with seed S (a failure names it); `EDRIVE_MODEL_LOG=edrive_fs_core=debug`
//! logs the drive's work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edrive_cache::Cache;
use edrive_fs_core::remote::memory::{CallFilter, CallKind, Fault, FaultyRemote, MemRemote};
use edrive_fs_core::remote::{Remote, RemoteError, RemotePath};
use edrive_fs_core::{Drive, DriveOptions, FsError, Kind, Meta, SetAttr, ROOT_INO};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len())].clone())
        }
    }
}

const NAMES: [&str; 4] = ["a", "b", "c.txt", "d"];

/// A node of a tree: a folder or a file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

type Tree = BTreeMap<String, Node>;

fn parent(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

fn name_of(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `p` and the folders above it (the root excluded).
fn with_ancestors(p: &str) -> Vec<String> {
    let mut out = vec![p.to_string()];
    let mut cur = parent(p);
    while !cur.is_empty() {
        out.push(cur.to_string());
        cur = parent(cur);
    }
    out
}

fn under(p: &str, dir: &str) -> bool {
    p == dir || p.starts_with(&format!("{dir}/"))
}

/// A change another client made on the server since the last sync.
#[derive(Clone, Debug)]
enum ServerChange {
    Edit(String, Vec<u8>),
    Delete(String),
    Rename(String, String, Vec<u8>),
    Create(String, Vec<u8>),
}

/// The reference.
#[derive(Default)]
struct Model {
    /// What the drive shows.
    local: Tree,
    /// What the server holds.
    server: Tree,
    /// Paths changed here since the last sync other than by writing a file in place
    /// (created, renamed from or to, removed folders), with everything below them.
    moved: BTreeSet<String>,
    /// Files written in place since the last sync (they were there at the last sync).
    edited: BTreeSet<String>,
    /// Files there at the last sync and unlinked here since.
    unlinked: BTreeSet<String>,
    /// Paths a server-side change touched since the last sync, with their folders.
    server_dirty: BTreeSet<String>,
    /// The server-side changes since the last sync, in order.
    changes: Vec<ServerChange>,
    /// Conflict copies the next sync makes: folder, stem, extension, content.
    copies: Vec<(String, String, String, Vec<u8>)>,
    /// How many versions the server side wrote (each a size of its own).
    server_versions: usize,
}

impl Model {
    fn dirs(&self) -> Vec<String> {
        let mut v = vec![String::new()];
        v.extend(
            self.local
                .iter()
                .filter(|(_, n)| **n == Node::Dir)
                .map(|(p, _)| p.clone()),
        );
        v
    }

    fn files(&self) -> Vec<String> {
        self.local
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn children_of(&self, dir: &str) -> usize {
        self.local.keys().filter(|p| parent(p) == dir).count()
    }

    /// Marks `p` and everything below it, here, as changed structurally.
    fn touch(&mut self, p: &str) {
        let below: Vec<String> = self.local.keys().filter(|k| under(k, p)).cloned().collect();
        for k in below {
            self.edited.remove(&k);
            self.moved.insert(k);
        }
        self.edited.remove(p);
        self.moved.insert(p.to_string());
    }

    /// Whether a local change may touch `p` (and everything below it) structurally: not
    /// where the server changed since the last sync (that is the table's business only
    /// for writes and unlinks in place).
    fn local_may_touch(&self, p: &str) -> bool {
        !self.server_dirty.iter().any(|s| under(s, p))
    }

    /// Whether a server-side change may touch `p`: there at the last sync on both sides
    /// (as far as its folders go), nothing here moved over or under it.
    fn server_may_touch(&self, p: &str) -> bool {
        with_ancestors(p).iter().all(|a| {
            !self.moved.contains(a) && !self.server_dirty.contains(a) && {
                let is_p = a == p;
                is_p || (self.local.get(a.as_str()) == Some(&Node::Dir)
                    && self.server.get(a.as_str()) == Some(&Node::Dir))
            }
        })
    }

    /// A fresh file content for the server side, of a size no other version has.
    fn server_content(&mut self, seed: u64) -> Vec<u8> {
        self.server_versions += 1;
        let len = 5000 + 7 * self.server_versions;
        bytes(seed, len)
    }

    /// What both sides hold after a sync, with the conflict copies still to be named.
    fn expected_after_sync(&self) -> Tree {
        let mut new = self.local.clone();
        for c in &self.changes {
            match c {
                ServerChange::Edit(p, x) => {
                    new.insert(p.clone(), Node::File(x.clone()));
                }
                ServerChange::Delete(p) => {
                    if !self.edited.contains(p) {
                        new.remove(p);
                    }
                }
                ServerChange::Rename(p, q, x) => {
                    if !self.edited.contains(p) && !self.unlinked.contains(p) {
                        new.remove(p);
                    }
                    new.insert(q.clone(), Node::File(x.clone()));
                }
                ServerChange::Create(q, x) => {
                    new.insert(q.clone(), Node::File(x.clone()));
                }
            }
        }
        new
    }
}

/// `len` bytes from `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| (r.next() >> 32) as u8).collect()
}

/// How a case's server behaves.
#[derive(Clone, Copy, Debug)]
enum ServerKind {
    /// Honours `If-Match` / `If-None-Match`, strong ETags.
    Enforcing,
    /// Ignores preconditions (nginx, rclone), ETags sent.
    IgnoresPreconditions,
    /// Ignores preconditions and sends no ETags: versions are time and size.
    NoETags,
    /// Weak ETags, so no `If-Match` ever matches (Apache).
    WeakETags,
}

impl ServerKind {
    fn of(seed: u64) -> ServerKind {
        match seed % 4 {
            0 => ServerKind::Enforcing,
            1 => ServerKind::IgnoresPreconditions,
            2 => ServerKind::NoETags,
            _ => ServerKind::WeakETags,
        }
    }

    fn server(self) -> Arc<MemRemote> {
        let s = MemRemote::new();
        match self {
            ServerKind::Enforcing => {}
            ServerKind::IgnoresPreconditions => s.set_enforce_preconditions(false),
            ServerKind::NoETags => {
                s.set_enforce_preconditions(false);
                s.set_send_etags(false);
            }
            ServerKind::WeakETags => s.set_weak_etags(true),
        }
        Arc::new(s)
    }
}

/// One running drive: its own runtime (dropping it is the crash), store and cache.
struct Instance {
    rt: tokio::runtime::Runtime,
    drive: Arc<Drive>,
    meta: Arc<Meta>,
    /// Open handles: file path at open time, handle.
    handles: Vec<(String, u64)>,
    /// Whether this instance synced already (so the server's capabilities are probed).
    synced: bool,
}

fn start(
    server: &Arc<MemRemote>,
    faulty: &Arc<FaultyRemote>,
    state: &Path,
    first: bool,
) -> Instance {
    // Paused time: the write-back's timers (retry backoff, wake-ups while suspended)
    // pass at once when nothing else is left to run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let meta = Meta::open(&state.join("meta.db"), "mem://").expect("meta");
    if first {
        let root = rt.block_on(server.stat(&RemotePath::root())).expect("root");
        meta.update_root(&root).expect("root row");
    }
    // The previous instance's cache lock goes with its last handle; wait for it.
    let mut cache = None;
    for _ in 0..200 {
        match Cache::open(&state.join("content"), 1 << 30) {
            Ok(c) => {
                cache = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let cache = cache.expect("cache lock released by the crashed instance");
    let options = DriveOptions {
        dir_cache_ttl: Duration::from_secs(3600),
        upload_debounce: Duration::ZERO,
        ..DriveOptions::default()
    };
    let meta = Arc::new(meta);
    let remote: Arc<dyn Remote> = faulty.clone();
    let drive = Arc::new(Drive::new(remote, meta.clone(), Arc::new(cache), options));
    // Suspended until the next sync: the planner sees the whole backlog, and the case is
    // deterministic.
    drive.set_writeback_suspended(true);
    let d = drive.clone();
    rt.block_on(async move { d.start_writeback() })
        .expect("start write-back");
    Instance {
        rt,
        drive,
        meta,
        handles: Vec::new(),
        synced: false,
    }
}

impl Instance {
    fn ino_of(&self, path: &str) -> Result<u64, FsError> {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self.rt.block_on(self.drive.lookup(ino, part))?.ino;
        }
        Ok(ino)
    }

    /// The drive's whole tree, listed (in pages of two, as the kernel pages) and read.
    fn tree(&self) -> Tree {
        let mut out = BTreeMap::new();
        let mut stack = vec![(ROOT_INO, String::new())];
        while let Some((ino, path)) = stack.pop() {
            let fh = self.rt.block_on(self.drive.opendir(ino)).expect("opendir");
            let mut rows = Vec::new();
            loop {
                let after = rows
                    .last()
                    .map_or(0, |r: &edrive_fs_core::DirEntry| r.attr.ino);
                let page = self.drive.readdir_page(fh, after, 2).expect("readdir");
                if page.is_empty() {
                    break;
                }
                rows.extend(page);
            }
            self.drive.releasedir(fh);
            for row in rows {
                let p = join(&path, &row.name);
                match row.attr.kind {
                    Kind::Dir => {
                        out.insert(p.clone(), Node::Dir);
                        stack.push((row.attr.ino, p));
                    }
                    Kind::File => {
                        let fh = self
                            .rt
                            .block_on(self.drive.open(row.attr.ino, false, false))
                            .unwrap_or_else(|e| panic!("open {p}: {e}"));
                        let size = self.drive.getattr(row.attr.ino).expect("getattr").size;
                        let data = self
                            .rt
                            .block_on(self.drive.read(fh, 0, size as u32 + 1))
                            .unwrap_or_else(|e| panic!("read {p}: {e}"));
                        self.drive.release(fh).expect("release");
                        out.insert(p, Node::File(data));
                    }
                }
            }
        }
        out
    }

    /// Uploads everything, then relists what is in use; `Err` if something stayed.
    fn sync(&self) -> Result<(), String> {
        let drive = &self.drive;
        // Not suspended while it relists: a suspended drive does not poll.
        drive.set_writeback_suspended(false);
        let settle = || -> Result<(), String> {
            drive.request_sync();
            let start = Instant::now();
            loop {
                self.rt
                    .block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
                let p = drive.sync_progress();
                // Done when the sync says so, or when nothing is left (the sync itself
                // may wait a grace period, by the wall clock, for writers to close).
                if (!p.syncing || p.pending == 0) && p.current.is_none() {
                    if p.pending != 0 {
                        return Err(format!(
                            "not everything uploaded: {p:?} {:?}\npending rows: {:#?}",
                            drive.problems(10),
                            self.meta.pending()
                        ));
                    }
                    return Ok(());
                }
                if start.elapsed() > Duration::from_secs(20) {
                    return Err(format!("sync did not finish: {:?}", drive.sync_progress()));
                }
            }
        };
        let res = settle().and_then(|()| {
            self.rt.block_on(drive.poll_once(Duration::ZERO));
            // What the relisting found (a conflict copy, a file to upload again) goes up
            // too.
            settle()
        });
        self.rt.block_on(drive.poll_once(Duration::ZERO));
        drive.set_writeback_suspended(true);
        res
    }

    fn close(&mut self, i: usize) {
        let (_, fh) = self.handles.remove(i);
        self.drive.flush(fh).expect("flush");
        self.drive.release(fh).expect("release");
    }

    fn close_all(&mut self) {
        while !self.handles.is_empty() {
            self.close(0);
        }
    }
}

/// One case's world: the server, the instance, the model.
struct Case {
    server: Arc<MemRemote>,
    /// The drive's way to the server, where a sync may meet a failure.
    faulty: Arc<FaultyRemote>,
    state: tempfile::TempDir,
    inst: Option<Instance>,
    model: Model,
    rng: Rng,
    done: Vec<String>,
    /// Whether a request failed on purpose in this case.
    faulted: bool,
    /// Conflict copies beyond the table's, made after a failed request.
    extra_copies: usize,
}

impl Case {
    fn inst(&mut self) -> &mut Instance {
        self.inst.as_mut().expect("instance")
    }

    /// A random step: applies it to the drive (or the server) and to the model, and
    /// returns what it did, or `None` if it was not possible.
    fn step(&mut self) -> Option<String> {
        let m = &mut self.model;
        let r = &mut self.rng;
        match r.below(22) {
            0 | 1 => {
                let d = r.pick(&m.dirs())?;
                let name = r.pick(&NAMES)?;
                let p = join(&d, name);
                if m.local.contains_key(&p) || !m.local_may_touch(&p) {
                    return None;
                }
                let i = self.inst.as_ref().expect("instance");
                let dir = i.ino_of(&d).expect("parent");
                let (_, fh) =
                    i.rt.block_on(i.drive.create(dir, name, 0o644))
                        .expect("create");
                i.drive.flush(fh).expect("flush");
                i.drive.release(fh).expect("release");
                m.unlinked.remove(&p);
                m.local.insert(p.clone(), Node::File(Vec::new()));
                m.touch(&p);
                Some(format!("create {p}"))
            }
            2 | 3 | 21 => {
                // A whole write through its own handle.
                let p = r.pick(&m.files())?;
                let (off, len, seed) = (r.below(3000), 1 + r.below(3000), r.next());
                let i = self.inst.as_ref().expect("instance");
                let ino = i.ino_of(&p).expect("file");
                let fh =
                    i.rt.block_on(i.drive.open(ino, true, false))
                        .expect("open rw");
                let data = bytes(seed, len);
                i.drive.write(fh, off as u64, &data).expect("write");
                i.drive.flush(fh).expect("flush");
                i.drive.release(fh).expect("release");
                write_model(m, &p, off, &data);
                Some(format!("write {p} @{off}+{len}"))
            }
            4 => {
                // Open a handle kept across other steps.
                let p = r.pick(&m.files())?;
                let i = self.inst.as_mut().expect("instance");
                if i.handles.len() >= 3 {
                    return None;
                }
                let ino = i.ino_of(&p).expect("file");
                let fh =
                    i.rt.block_on(i.drive.open(ino, true, false))
                        .expect("open rw");
                i.handles.push((p.clone(), fh));
                Some(format!("open {p} as #{fh}"))
            }
            5 | 6 => {
                // A part written through an open handle.
                let i = self.inst.as_mut().expect("instance");
                let h = r.below(i.handles.len());
                let (p, fh) = i.handles.get(h)?.clone();
                // The handle's file may have been renamed or unlinked since: the model
                // follows only handles whose name still stands for their file.
                if !m.local.contains_key(&p) {
                    return None;
                }
                let (off, len, seed) = (r.below(4000), 1 + r.below(2000), r.next());
                let data = bytes(seed, len);
                i.drive.write(fh, off as u64, &data).expect("write");
                write_model(m, &p, off, &data);
                Some(format!("write #{fh} ({p}) @{off}+{len}"))
            }
            7 => {
                let i = self.inst.as_mut().expect("instance");
                let h = r.below(i.handles.len());
                let (p, fh) = i.handles.get(h)?.clone();
                i.drive.fsync(fh).expect("fsync");
                Some(format!("fsync #{fh} ({p})"))
            }
            8 => {
                let i = self.inst.as_mut().expect("instance");
                if i.handles.is_empty() {
                    return None;
                }
                let h = r.below(i.handles.len());
                let what = format!("close #{} ({})", i.handles[h].1, i.handles[h].0);
                i.close(h);
                Some(what)
            }
            9 => {
                let p = r.pick(&m.files())?;
                let size = r.below(6000);
                let i = self.inst.as_ref().expect("instance");
                let ino = i.ino_of(&p).expect("file");
                i.rt.block_on(i.drive.setattr(
                    ino,
                    SetAttr {
                        size: Some(size as u64),
                        ..Default::default()
                    },
                ))
                .expect("truncate");
                if let Some(Node::File(c)) = m.local.get_mut(&p) {
                    c.resize(size, 0);
                }
                if !m.moved.contains(&p) {
                    m.edited.insert(p.clone());
                }
                Some(format!("truncate {p} {size}"))
            }
            10 | 11 => {
                let all: Vec<String> = m.local.keys().cloned().collect();
                let src = r.pick(&all)?;
                let d = r.pick(&m.dirs())?;
                let name = r.pick(&NAMES)?;
                let dst = join(&d, name);
                let is_dir = m.local[&src] == Node::Dir;
                if dst == src || under(&d, &src) {
                    return None;
                }
                if let Some(t) = m.local.get(&dst) {
                    if (*t == Node::Dir) != is_dir || (is_dir && m.children_of(&dst) > 0) {
                        return None;
                    }
                }
                if !m.local_may_touch(&src) || !m.local_may_touch(&dst) {
                    return None;
                }
                // Open handles follow their file; the model keeps them by name.
                let i = self.inst.as_mut().expect("instance");
                if i.handles
                    .iter()
                    .any(|(h, _)| under(h, &src) || under(h, &dst))
                {
                    return None;
                }
                let sp = i.ino_of(parent(&src)).expect("src parent");
                let dp = i.ino_of(&d).expect("dst parent");
                i.rt.block_on(i.drive.rename(sp, name_of(&src), dp, name, false))
                    .expect("rename");
                m.touch(&src);
                m.touch(&dst);
                m.local.remove(&dst);
                let moved: Vec<(String, Node)> = m
                    .local
                    .iter()
                    .filter(|(k, _)| under(k, &src))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in moved {
                    m.local.remove(&k);
                    let to = format!("{dst}{}", &k[src.len()..]);
                    m.moved.insert(to.clone());
                    m.local.insert(to, v);
                }
                Some(format!("rename {src} -> {dst}"))
            }
            12 => {
                let p = r.pick(&m.files())?;
                let i = self.inst.as_mut().expect("instance");
                if i.handles.iter().any(|(h, _)| *h == p) {
                    return None;
                }
                let pi = i.ino_of(parent(&p)).expect("parent");
                i.rt.block_on(i.drive.unlink(pi, name_of(&p)))
                    .expect("unlink");
                m.local.remove(&p);
                if !m.moved.contains(&p) {
                    m.edited.remove(&p);
                    m.unlinked.insert(p.clone());
                }
                Some(format!("unlink {p}"))
            }
            13 => {
                let d = r.pick(&m.dirs())?;
                let name = r.pick(&NAMES)?;
                let p = join(&d, name);
                if m.local.contains_key(&p) || p.matches('/').count() >= 2 || !m.local_may_touch(&p)
                {
                    return None;
                }
                let i = self.inst.as_ref().expect("instance");
                let pi = i.ino_of(&d).expect("parent");
                i.rt.block_on(i.drive.mkdir(pi, name, 0o755))
                    .expect("mkdir");
                m.unlinked.remove(&p);
                m.local.insert(p.clone(), Node::Dir);
                m.touch(&p);
                Some(format!("mkdir {p}"))
            }
            14 => {
                let dirs: Vec<String> = m.dirs().into_iter().filter(|d| !d.is_empty()).collect();
                let d = r.pick(&dirs)?;
                if m.children_of(&d) > 0 || !m.local_may_touch(&d) {
                    return None;
                }
                let i = self.inst.as_ref().expect("instance");
                let pi = i.ino_of(parent(&d)).expect("parent");
                i.rt.block_on(i.drive.rmdir(pi, name_of(&d)))
                    .expect("rmdir");
                m.touch(&d);
                m.local.remove(&d);
                Some(format!("rmdir {d}"))
            }
            15..=18 => self.server_step(),
            19 => {
                // Now and then a request of the sync fails: not reached (the server saw
                // nothing), or its reply lost (the server did it). Either way it is tried
                // again and the outcome is the same. Not in an instance's first sync,
                // where the capability probe runs: a probe folder whose MKCOL reply is
                // lost stays on the server (seen with seed 156; outside this model).
                let first = !self.inst.as_ref().is_some_and(|i| i.synced);
                let fault = match if first { 9 } else { r.below(6) } {
                    0 => Some(Fault::Fail(RemoteError::Unreachable("injected".into()))),
                    1 => Some(Fault::FailAfter(RemoteError::Transfer("reply lost".into()))),
                    _ => None,
                };
                let kind = [
                    CallKind::Put,
                    CallKind::Rename,
                    CallKind::Delete,
                    CallKind::Mkdir,
                ][r.below(4)];
                let what = match &fault {
                    Some(f) => format!("sync, the first {} failing: {f:?}", kind.method()),
                    None => "sync".to_string(),
                };
                if let Some(f) = fault {
                    self.faulty.inject(CallFilter::kind(kind), f, 1);
                    self.faulted = true;
                }
                let i = self.inst.as_mut().expect("instance");
                i.close_all();
                let res = i.sync();
                i.synced = true;
                self.faulty.clear();
                self.after_sync(res, what)
            }
            20 => {
                // Crash and restart. Open handles are closed first: what a write through
                // a handle the crash cut leaves is not modelled.
                let mut old = self.inst.take().expect("instance");
                old.close_all();
                let Instance {
                    rt, drive, meta, ..
                } = old;
                rt.shutdown_background();
                drop(drive);
                meta.close();
                self.inst = Some(start(&self.server, &self.faulty, self.state.path(), false));
                Some("crash and restart".into())
            }
            _ => unreachable!("below(22)"),
        }
    }

    /// A change another client makes on the server.
    fn server_step(&mut self) -> Option<String> {
        let m = &mut self.model;
        let r = &mut self.rng;
        let files: Vec<String> = m
            .server
            .iter()
            .filter(|(p, n)| matches!(n, Node::File(_)) && m.server_may_touch(p))
            .map(|(p, _)| p.clone())
            .collect();
        // The handles' files stay out of it (they are closed at the sync anyway).
        let open: BTreeSet<String> = self
            .inst
            .as_ref()
            .map(|i| i.handles.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default();
        let files: Vec<String> = files.into_iter().filter(|p| !open.contains(p)).collect();
        let seed = r.next();
        let what = match r.below(4) {
            0 | 1 => {
                let p = r.pick(&files)?;
                let x = m.server_content(seed);
                self.server.server_put(&p, x.clone()).expect("server put");
                m.server.insert(p.clone(), Node::File(x.clone()));
                m.server_dirty.extend(with_ancestors(&p));
                m.changes.push(ServerChange::Edit(p.clone(), x));
                format!("server: new version of {p}")
            }
            2 => {
                let p = r.pick(&files)?;
                self.server.server_delete(&p).expect("server delete");
                m.server.remove(&p);
                m.server_dirty.extend(with_ancestors(&p));
                m.changes.push(ServerChange::Delete(p.clone()));
                format!("server: delete {p}")
            }
            _ => {
                // A rename to, or a new file at, a name nobody has used since the sync.
                let dirs: Vec<String> = m
                    .server
                    .iter()
                    .filter(|(p, n)| **n == Node::Dir && m.server_may_touch(p))
                    .map(|(p, _)| p.clone())
                    .chain([String::new()])
                    .collect();
                let d = r.pick(&dirs)?;
                let q = join(&d, r.pick(&NAMES)?);
                if m.local.contains_key(&q)
                    || m.server.contains_key(&q)
                    || m.moved.contains(&q)
                    || m.unlinked.contains(&q)
                    || m.server_dirty.contains(&q)
                {
                    return None;
                }
                match r.pick(&files) {
                    Some(p) if r.below(2) == 0 && parent(&p) == d => {
                        let Some(Node::File(x)) = m.server.remove(&p) else {
                            return None;
                        };
                        self.server.server_rename(&p, &q).expect("server rename");
                        m.server.insert(q.clone(), Node::File(x.clone()));
                        m.server_dirty.extend(with_ancestors(&p));
                        m.server_dirty.extend(with_ancestors(&q));
                        m.changes
                            .push(ServerChange::Rename(p.clone(), q.clone(), x));
                        format!("server: rename {p} -> {q}")
                    }
                    _ => {
                        let x = m.server_content(seed);
                        self.server.server_put(&q, x.clone()).expect("server put");
                        m.server.insert(q.clone(), Node::File(x.clone()));
                        m.server_dirty.extend(with_ancestors(&q));
                        m.changes.push(ServerChange::Create(q.clone(), x));
                        format!("server: new file {q}")
                    }
                }
            }
        };
        Some(what)
    }

    /// The model's side of a sync: the table's outcomes, then conflict copies named as
    /// the drive named them (the name holds the time).
    fn after_sync(&mut self, res: Result<(), String>, what: String) -> Option<String> {
        if let Err(e) = res {
            self.done.push(what);
            panic!("sync failed: {e}\n{}", self.report());
        }
        let m = &mut self.model;
        for c in &m.changes {
            if let ServerChange::Edit(p, _) = c {
                if m.edited.contains(p) {
                    if let Some(Node::File(ours)) = m.local.get(p) {
                        let name = name_of(p);
                        let (stem, ext) = match name.rfind('.') {
                            Some(i) if i > 0 => name.split_at(i),
                            _ => (name, ""),
                        };
                        m.copies.push((
                            parent(p).to_string(),
                            stem.to_string(),
                            ext.to_string(),
                            ours.clone(),
                        ));
                    }
                }
            }
        }
        let mut expected = m.expected_after_sync();
        let got = self.inst.as_ref().expect("instance").tree();
        for (dir, stem, ext, content) in std::mem::take(&mut m.copies) {
            let prefix = format!("{stem} (conflict ");
            let found = got.iter().find(|(p, n)| {
                parent(p) == dir
                    && name_of(p).starts_with(&prefix)
                    && name_of(p).ends_with(&format!("){ext}"))
                    && !expected.contains_key(p.as_str())
                    && **n == Node::File(content.clone())
            });
            // Not found: the copy goes into the model under a name no drive makes, so
            // the comparison below fails and shows it.
            let name = found.map_or_else(
                || join(&dir, &format!("{stem} (conflict MISSING){ext}")),
                |(p, _)| p.clone(),
            );
            expected.insert(name, Node::File(content));
        }
        if self.faulted {
            // After a failed request a client may not tell its own earlier version from
            // another's (no ETags, weak ones, preconditions ignored, a reply lost) and
            // keeps a version it is unsure of as one more conflict copy: nothing is lost,
            // but it is not the table's outcome. Such copies, shown by the drive and held
            // by the server alike, are counted and taken into the model (seeds 691 and
            // 1261 were the first).
            let server = server_tree(&self.server);
            for (p, n) in &got {
                if name_of(p).contains(" (conflict ")
                    && !expected.contains_key(p)
                    && server.get(p) == Some(n)
                {
                    self.extra_copies += 1;
                    expected.insert(p.clone(), n.clone());
                }
            }
        }
        let m = &mut self.model;
        m.local = expected.clone();
        m.server = expected;
        m.moved.clear();
        m.edited.clear();
        m.unlinked.clear();
        m.server_dirty.clear();
        m.changes.clear();
        let server = server_tree(&self.server);
        if server != m.server {
            self.done.push(what);
            panic!(
                "server and model differ\nserver: {}\nmodel:  {}\n{}",
                show(&server),
                show(&self.model.server),
                self.report()
            );
        }
        Some(what)
    }

    fn report(&self) -> String {
        format!(
            "steps:\n  {}\nserver calls (last 40):\n  {}",
            self.done.join("\n  "),
            self.server
                .log_lines()
                .iter()
                .rev()
                .take(40)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    }
}

fn write_model(m: &mut Model, p: &str, off: usize, data: &[u8]) {
    if let Some(Node::File(c)) = m.local.get_mut(p) {
        let end = off + data.len();
        if c.len() < end {
            c.resize(end, 0);
        }
        c[off..end].copy_from_slice(data);
    }
    if !m.moved.contains(p) {
        m.edited.insert(p.to_string());
    }
}

/// The server's tree, without the work names (`.edrive-…`) a failed request can leave
/// for a while: no edrive client shows them, and the write-back removes them on a later
/// round (after a lost reply, seen with seed 10: the set-aside `.old` copy of a staged
/// upload stays until the cleanup retries, 30 s later).
fn server_tree(s: &MemRemote) -> Tree {
    let work = |p: &str| p.split('/').any(|n| n.starts_with(".edrive-"));
    let mut t: Tree = s
        .server_tree()
        .into_iter()
        .filter(|(p, _)| !work(p))
        .map(|(p, d)| (p, Node::File(d)))
        .collect();
    t.extend(
        s.server_folders()
            .into_iter()
            .filter(|p| !work(p))
            .map(|p| (p, Node::Dir)),
    );
    t
}

fn show(t: &Tree) -> String {
    t.iter()
        .map(|(p, n)| match n {
            Node::Dir => format!("{p}/"),
            Node::File(c) => format!("{p}={}:{:08x}", c.len(), checksum(c)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn checksum(c: &[u8]) -> u32 {
    c.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Runs the case of `seed`: `steps` random steps, a check after each, a final sync.
fn run_case(seed: u64, steps: usize) -> usize {
    let kind = ServerKind::of(seed);
    let server = kind.server();
    let state = tempdir();
    let faulty = Arc::new(FaultyRemote::new(server.clone()));
    let inst = start(&server, &faulty, state.path(), true);
    let mut case = Case {
        server,
        faulty,
        state,
        inst: Some(inst),
        model: Model::default(),
        rng: Rng::new(seed),
        faulted: false,
        extra_copies: 0,
        done: vec![format!("seed {seed}, server {kind:?}")],
    };
    // Everything listed once, as after the mount's first look.
    assert_eq!(case.inst().tree(), Tree::new());
    let mut n = 0;
    let mut tries = 0;
    while n < steps && tries < steps * 20 {
        tries += 1;
        let Some(what) = case.step() else { continue };
        n += 1;
        case.done.push(what);
        let got = case.inst().tree();
        if got != case.model.local {
            panic!(
                "drive and model differ\ndrive: {}\nmodel: {}\n{}",
                show(&got),
                show(&case.model.local),
                case.report()
            );
        }
    }
    let i = case.inst();
    i.close_all();
    let res = i.sync();
    if let Some(what) = case.after_sync(res, "final sync".into()) {
        case.done.push(what);
    }
    let got = case.inst().tree();
    assert!(
        got == case.model.local,
        "drive and model differ after the final sync\ndrive: {}\nmodel: {}\n{}",
        show(&got),
        show(&case.model.local),
        case.report()
    );
    if let Some(i) = case.inst.take() {
        i.rt.shutdown_background();
    }
    case.extra_copies
}

/// A private folder for a case's store and cache: in memory where there is a tmpfs
/// (`/dev/shm`), since every step commits with fsync.
fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::Builder::new()
            .prefix("edrive-model")
            .tempdir_in(shm)
        {
            return t;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// Steps per case.
const STEPS: usize = 12;

/// Cases that find a known bug, skipped until it is fixed (run one with
/// `EDRIVE_MODEL_SEED`). None now; 1230 found a stall, see `sync::plan`'s `Aside`.
const KNOWN_BUGS: [u64; 0] = [];

/// Runs the cases of seeds `range` (or only `EDRIVE_MODEL_SEED`); a failure names its seed.
fn run_cases(range: std::ops::Range<u64>) {
    if let Ok(level) = std::env::var("EDRIVE_MODEL_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(level)
            .with_test_writer()
            .try_init();
    }
    // EDRIVE_MODEL_CASES scales the run (the default is 2,000 cases in all).
    let total: u64 = std::env::var("EDRIVE_MODEL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    let range = range.start * total / 2000..range.end * total / 2000;
    if let Ok(seed) = std::env::var("EDRIVE_MODEL_SEED") {
        let seed: u64 = seed.parse().expect("EDRIVE_MODEL_SEED: a number");
        // Each quarter takes the seeds of its share; a seed beyond the run's cases
        // goes to the last quarter.
        if range.contains(&seed) || (range.end == total && seed >= total) {
            let extra = run_case(seed, STEPS);
            eprintln!("case {seed}: {extra} conflict copies beyond the table's");
        }
        return;
    }
    let (mut extra, mut cases_with_extra) = (0, 0);
    for seed in range.clone() {
        if KNOWN_BUGS.contains(&seed) {
            eprintln!("case {seed}: skipped, it finds a known bug (see KNOWN_BUGS)");
            continue;
        }
        let outcome = std::panic::catch_unwind(|| run_case(seed, STEPS));
        if let Ok(n) = outcome {
            extra += n;
            cases_with_extra += usize::from(n > 0);
        }
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("case {seed} failed (EDRIVE_MODEL_SEED={seed}):\n{msg}");
        }
    }
    eprintln!(
        "cases {range:?}: {extra} conflict copies beyond the table's, in {cases_with_extra} cases (after injected failures)"
    );
}

// Four quarters of the 2,000 cases, so that the test threads share them out.

#[test]
fn reference_model_cases_0_to_499() {
    run_cases(0..500);
}

#[test]
fn reference_model_cases_500_to_999() {
    run_cases(500..1000);
}

#[test]
fn reference_model_cases_1000_to_1499() {
    run_cases(1000..1500);
}

#[test]
fn reference_model_cases_1500_to_1999() {
    run_cases(1500..2000);
}

/// Seeds past the default 2,000 that found defects (with `EDRIVE_MODEL_CASES=20000`), run
/// on every `cargo test`: 2254 and 15526 (a replaced version put back by the cleanup),
/// 6442 (a checked delete whose MOVE aside lost its reply), 11367 (the same in a staged
/// upload's swap).
#[test]
fn reference_model_regressions() {
    for seed in [2254, 6442, 11367, 15526] {
        if let Err(e) = std::panic::catch_unwind(|| run_case(seed, STEPS)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "case {seed} failed (EDRIVE_MODEL_SEED={seed} EDRIVE_MODEL_CASES=20000):\n{msg}"
            );
        }
    }
}
