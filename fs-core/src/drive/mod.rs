//! The drive as the user sees it: the operations a kernel adapter calls.
//!
//! Every method takes inode numbers and plain values and returns [`FsError`] on failure,
//! so the FUSE and ProjFS adapters stay thin and the whole drive is testable without a
//! kernel in the loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edrive_cache::{Blob, BlobKey, Cache, CacheStats};
use tracing::{debug, instrument, warn};

use crate::connectivity::{Connectivity, NetState, Watched};
use crate::error::FsError;
use crate::hydrate::{Hydrator, Transfer};
use crate::lock;
use crate::meta::{Entry, Kind, Meta, ROOT_INO};
use crate::notify::Invalidations;
use crate::remote::{validate_name, ListingHead, Remote, RemoteError, RemotePath};
use crate::state::EntryState;
use crate::sync::{Activity, ConflictPolicy, IgnoreList, SyncProgress, Uploader};

mod info;
mod kernel_reads;
mod pin;
mod poll;
mod resolve;
mod space;
#[cfg(test)]
mod tests;
mod working;
mod write;
mod xattr;

pub use info::EntryInfo;
pub use kernel_reads::{KernelReads, ReadPath};
pub use pin::{FreeOutcome, PinProgress};
pub use poll::PollReport;
pub use resolve::{Choice, ConflictInfo};
pub use space::Space;
use working::Working;
pub use write::SetAttr;
pub use xattr::{XATTR_MAX_NAME, XATTR_MAX_TOTAL, XATTR_MAX_VALUE};

/// Settings of one mounted drive.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// How long a folder listing is trusted before it is revalidated on access.
    pub dir_cache_ttl: Duration,
    /// Owner shown for every entry.
    pub uid: u32,
    /// Group shown for every entry.
    pub gid: u32,
    /// How long a file stays untouched after its last close before it is uploaded.
    pub upload_debounce: Duration,
    /// Names kept local, never uploaded.
    pub ignore: IgnoreList,
    /// How a file changed on both sides is settled.
    pub on_conflict: ConflictPolicy,
    /// Where local versions discarded by `resolve --use-remote` are kept (30 days); `None`:
    /// beside the cache's content folder, in `recovered/`.
    pub recovery_dir: Option<std::path::PathBuf>,
    /// Most requests one file's download runs at once (see [`crate::hydrate`]).
    pub download_streams: usize,
    /// Whether the server's guarantees for conditional writes are probed, trusted or
    /// never relied on (see [`crate::remote::capabilities`]).
    pub write_checks: crate::remote::capabilities::WriteChecks,
    /// Called (on a blocking thread) after a folder of [`LARGE_FOLDER`] entries or more
    /// was listed, to return the allocator's free memory to the system: the process's
    /// business, so the binary passes it (glibc's `malloc_trim`).
    pub give_back_memory: Option<fn()>,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            dir_cache_ttl: Duration::from_secs(30),
            uid: 0,
            gid: 0,
            upload_debounce: Duration::from_secs(2),
            ignore: IgnoreList::defaults(),
            on_conflict: ConflictPolicy::default(),
            recovery_dir: None,
            download_streams: 4,
            write_checks: Default::default(),
            give_back_memory: None,
        }
    }
}

/// What `stat` shows for an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// File or folder.
    pub kind: Kind,
    /// Size in bytes (0 while not known).
    pub size: u64,
    /// Whether `size` is known. False for a file the server listed without a usable size
    /// whose size no download has found yet: a kernel adapter must not keep such
    /// attributes (the next access looks again, and finds the size).
    pub size_known: bool,
    /// Modification time.
    pub mtime: SystemTime,
    /// Access time (the modification time unless set; reads do not change it).
    pub atime: SystemTime,
    /// Change time: of the last local change of content or attributes, else the
    /// modification time.
    pub ctime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A folder with this many entries takes enough memory to list that it is given back
/// to the system afterwards (see [`DriveOptions::give_back_memory`]).
pub const LARGE_FOLDER: usize = 10_000;

/// What a working copy says of its file: size, modification time, change time.
pub(crate) type WorkingAttrs = (u64, SystemTime, Option<SystemTime>);

/// One row of a folder listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// The child's name.
    pub name: String,
    /// Its attributes.
    pub attr: Attr,
}

/// The whole mount's numbers, for `edrive status`.
#[derive(Clone, Debug)]
pub struct DriveStatus {
    /// The server, without credentials.
    pub server: String,
    /// Cache occupancy.
    pub cache: CacheStats,
    /// Files whose complete content is cached.
    pub hydrated_files: u64,
    /// Downloads running now.
    pub downloads: u64,
    /// Entries known to the metadata store.
    pub known_entries: u64,
    /// The write-back's progress.
    pub sync: SyncProgress,
}

/// The extended attribute that tells an entry's state.
pub const XATTR_STATE: &str = "user.edrive.state";
/// The extended attribute that pins (`1`) or unpins (`0`) an entry when set.
pub const XATTR_PIN: &str = "user.edrive.pin";
/// The extended attribute that tells whether an entry is pinned (`1`, itself or through a
/// folder above it) or not (`0`).
pub const XATTR_PINNED: &str = "user.edrive.pinned";

enum Content {
    Cached(Arc<Blob>),
    Hydrating(Arc<Transfer>),
    /// The local working copy (dirty, or opened for writing).
    Work(Arc<Working>),
}

struct OpenFile {
    ino: u64,
    key: BlobKey,
    content: Mutex<Content>,
    /// Opened for writing.
    writable: bool,
    /// The file's previous open was on the same version (see [`Drive::keeps_cache`]).
    same_as_last_open: bool,
    /// The kernel serves this handle's reads from the cached file (see [`ReadPath`]).
    kernel_reads: std::sync::atomic::AtomicBool,
    /// This handle's reads through the daemon (see [`Drive::drop_behind`]).
    read_run: Mutex<kernel_reads::ReadRun>,
}

impl OpenFile {
    /// Whether the kernel may keep the pages it cached from earlier opens (see
    /// [`Drive::keeps_cache`]).
    fn keeps_cache(&self) -> bool {
        !self.writable
            && self.same_as_last_open
            && matches!(*lock(&self.content), Content::Cached(_))
    }
}

/// A mounted drive. Its gates (and the write-back's) are taken in the one order that
/// [`crate::locks`] states and checks.
pub struct Drive {
    /// The server, through [`Watched`]: held back while offline.
    remote: Arc<dyn Remote>,
    /// The server itself, for probing while offline.
    raw_remote: Arc<dyn Remote>,
    conn: Arc<Connectivity>,
    meta: Arc<Meta>,
    cache: Arc<Cache>,
    hydrator: Arc<Hydrator>,
    options: DriveOptions,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// Open folders: the folder of each handle.
    dirs: Mutex<HashMap<u64, u64>>,
    next_fh: AtomicU64,
    /// One listing at a time per folder: rank 1 in the lock order ([`crate::locks`]).
    listing_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Folders whose last revalidation failed, and when: their known listing is served
    /// without asking the server again until [`LISTING_RETRY`] has passed, so a silent
    /// server cannot tie up every kernel thread.
    listing_failures: Mutex<HashMap<u64, std::time::Instant>>,
    activity: Arc<Activity>,
    uploader: Arc<Uploader>,
    /// Working copies in use, by inode, with the number of handles using each.
    works: Mutex<HashMap<u64, (Arc<Working>, usize)>>,
    /// Serializes creating working copies: rank 2 in the lock order ([`crate::locks`]).
    work_gate: tokio::sync::Mutex<()>,
    /// The hydration of pinned content.
    pin_progress: Mutex<PinProgress>,
    /// Pins were added while a hydration ran: it goes round once more.
    pin_again: Mutex<bool>,
    /// Files and folders deleted while handles still had them open, with their last
    /// attributes (`nlink` 0), until the last of those handles is released.
    orphans: Mutex<HashMap<u64, Attr>>,
    /// Kernel caches to drop when the server changes something.
    inval: Arc<Invalidations>,
    /// The version each file was last opened on (bounded), for [`Drive::keeps_cache`].
    last_open_version: Mutex<HashMap<u64, String>>,
    /// Folders in use, with when they were last listed or looked into (polled).
    recent: Mutex<HashMap<u64, std::time::Instant>>,
    /// Whether reads may be served by the kernel (see [`ReadPath`]).
    kernel_reads_on: std::sync::atomic::AtomicBool,
    /// Handles whose reads the kernel served since the mount.
    kernel_read_opens: AtomicU64,
    /// The server's quota as last learnt (see [`Drive::statfs`]).
    quota: Arc<Mutex<space::QuotaCache>>,
    /// Writers on their way to a working copy, by inode (see [`ReadPath`]).
    writers_pending: Mutex<HashMap<u64, usize>>,
}

/// The setting that keeps a suspension across restarts ("on" or [`SUSPENDED_OFFLINE`]).
const SUSPENDED: &str = "suspended";
/// Suspended with every request held back.
const SUSPENDED_OFFLINE: &str = "offline";

/// How long a folder whose revalidation failed is served from what is known.
const LISTING_RETRY: Duration = Duration::from_secs(15);

/// Whether `name` is one edrive gives a file only while it works on it (an upload's
/// staging file, a probe of the server): never shown, whichever client made it.
fn is_work_name(name: &str) -> bool {
    name.starts_with(crate::sync::STAGING_PREFIX)
        || name.starts_with(crate::remote::capabilities::PROBE_PREFIX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Drive {
    /// A drive over this server, metadata store and cache.
    pub fn new(
        remote: Arc<dyn Remote>,
        meta: Arc<Meta>,
        cache: Arc<Cache>,
        options: DriveOptions,
    ) -> Drive {
        let conn = Arc::new(Connectivity::default());
        let raw_remote = remote;
        let versioned: Arc<dyn Remote> =
            Arc::new(crate::remote::versioned::Versioned(raw_remote.clone()));
        let remote: Arc<dyn Remote> = Arc::new(Watched::new(versioned, conn.clone()));
        let hydrator = Arc::new(Hydrator::new(
            remote.clone(),
            cache.clone(),
            meta.clone(),
            options.download_streams,
        ));
        let activity = Arc::new(Activity::default());
        let inval = Arc::new(Invalidations::default());
        let uploader = Arc::new(
            Uploader::new(
                remote.clone(),
                meta.clone(),
                cache.clone(),
                activity.clone(),
                options.ignore.clone(),
                options.upload_debounce,
                conn.clone(),
            )
            .with_conflicts(options.on_conflict, inval.clone())
            .with_write_checks(options.write_checks),
        );
        Drive {
            remote,
            raw_remote,
            conn,
            meta,
            cache,
            hydrator,
            options,
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            listing_locks: Mutex::new(HashMap::new()),
            listing_failures: Mutex::new(HashMap::new()),
            activity,
            uploader,
            works: Mutex::new(HashMap::new()),
            work_gate: tokio::sync::Mutex::new(()),
            pin_progress: Mutex::new(PinProgress::default()),
            pin_again: Mutex::new(false),
            orphans: Mutex::new(HashMap::new()),
            inval,
            recent: Mutex::new(HashMap::new()),
            kernel_reads_on: false.into(),
            kernel_read_opens: AtomicU64::new(0),
            quota: Arc::default(),
            writers_pending: Mutex::new(HashMap::new()),
            last_open_version: Mutex::new(HashMap::new()),
        }
    }

    /// Recovers from a crash (working copies left by the last run become pending uploads
    /// again; stale ones are dropped) and starts the background write-back on the current
    /// tokio runtime.
    pub fn start_writeback(&self) -> Result<(), FsError> {
        self.recover()?;
        self.prune_recovered();
        match self.meta.setting(SUSPENDED)?.as_deref() {
            Some(SUSPENDED_OFFLINE) => self.apply_suspension(true, true),
            Some(_) => self.apply_suspension(true, false),
            None => {}
        }
        tokio::spawn(self.uploader.clone().run());
        tokio::spawn(self.conn.clone().run_prober(self.raw_remote.clone()));
        Ok(())
    }

    /// The link to the server: online, offline or waiting for credentials.
    pub fn net_state(&self) -> NetState {
        self.conn.state()
    }

    /// Suspends background network work (`suspended`; with `offline` every request,
    /// on-demand reads included) or resumes it. The in-flight transfer finishes. Kept
    /// across restarts.
    pub fn set_suspended(&self, suspended: bool, offline: bool) -> Result<(), FsError> {
        let value = match (suspended, offline) {
            (false, _) => None,
            (true, false) => Some("on"),
            (true, true) => Some(SUSPENDED_OFFLINE),
        };
        self.meta.set_setting(SUSPENDED, value)?;
        self.apply_suspension(suspended, offline && suspended);
        Ok(())
    }

    fn apply_suspension(&self, suspended: bool, offline: bool) {
        self.uploader.set_suspended(suspended);
        self.conn.set_forced_offline(offline);
        self.activity.wake();
    }

    /// Whether the drive is suspended, and whether offline too.
    pub fn suspended(&self) -> Option<bool> {
        if self.conn.forced_offline() {
            Some(true)
        } else if self.uploader.is_suspended() {
            Some(false)
        } else {
            None
        }
    }

    /// How many uploads run now.
    pub fn uploads_running(&self) -> usize {
        self.uploader.uploads_running()
    }

    /// The write-back's progress.
    pub fn sync_progress(&self) -> SyncProgress {
        self.uploader.progress()
    }

    /// Suspends (`true`) or resumes sending local changes to the server.
    pub fn set_writeback_suspended(&self, suspended: bool) {
        self.uploader.set_suspended(suspended);
    }

    /// Where the server has `ino`'s content: after a local rename that is not written back
    /// yet, still the old place.
    fn server_path(&self, ino: u64) -> Result<RemotePath, FsError> {
        self.meta.remote_path_of(ino)?.ok_or_else(|| {
            FsError::Io(std::io::Error::other(
                "no local content, and the server does not have this file",
            ))
        })
    }

    /// Asks the write-back to upload everything now, skipping the debounce.
    pub fn request_sync(&self) {
        self.uploader.request_sync();
    }

    /// Entries whose write-back is stuck, as (local path, why), at most `limit`.
    pub fn problems(&self, limit: usize) -> Result<Vec<(String, crate::meta::Problem)>, FsError> {
        let mut out = Vec::new();
        for e in self.meta.pending()? {
            if out.len() >= limit {
                break;
            }
            if let Some(p) = e.problem {
                let path = if e.deleted {
                    self.meta
                        .remote_path_of(e.ino)?
                        .map(|p| format!("{p} (deleted here)"))
                        .unwrap_or_default()
                } else {
                    self.meta.path_of(e.ino)?.to_string()
                };
                out.push((path, p));
            }
        }
        Ok(out)
    }

    /// What is known of the server's guarantees (learnt when the write-back starts).
    pub fn capabilities(&self) -> crate::remote::Capabilities {
        self.uploader.capabilities()
    }

    /// Whether everything that can be written back has been (stuck entries aside).
    pub fn is_synced(&self) -> bool {
        self.uploader.is_idle()
    }

    /// The server this drive mirrors.
    pub fn remote(&self) -> &Arc<dyn Remote> {
        &self.remote
    }

    fn entry(&self, ino: u64) -> Result<Entry, FsError> {
        self.meta.get(ino)?.ok_or(FsError::NotFound)
    }

    fn attr(&self, e: &Entry) -> Attr {
        let working = lock(&self.works).get(&e.ino).map(|(w, _)| w.attrs());
        self.attr_with(e, working)
    }

    /// The attributes of `e`, given what its working copy says, if it has one.
    fn attr_with(&self, e: &Entry, working: Option<WorkingAttrs>) -> Attr {
        let dir = e.is_dir();
        let (size, size_known, mtime, work_ctime) = match working {
            Some((size, mtime, ctime)) => (size, true, mtime, ctime),
            None => (e.size, e.size_known, e.mtime.unwrap_or(UNIX_EPOCH), None),
        };
        Attr {
            ino: e.ino,
            kind: e.kind,
            size,
            size_known,
            mtime,
            atime: e.atime.unwrap_or(mtime),
            ctime: e.ctime.max(work_ctime).unwrap_or(mtime),
            perm: match e.mode {
                Some(m) => (m & 0o7777) as u16,
                None if dir => 0o755,
                None => 0o644,
            },
            nlink: if dir { 2 } else { 1 },
            uid: self.options.uid,
            gid: self.options.gid,
        }
    }

    /// Makes sure folder `ino`'s children are known and no older than the listing TTL.
    /// A failed listing never removes anything: with an older listing at hand it is served
    /// (and the failure logged); without one the error is returned.
    async fn ensure_listed(&self, ino: u64) -> Result<(), FsError> {
        self.list_if_older(ino, self.options.dir_cache_ttl, true)
            .await
            .map(|_| ())
    }

    /// Lists folder `ino` unless its listing is younger than `max_age` (or its last
    /// failure is recent); returns what the listing changed, `None` if none was taken.
    /// `in_use` records the folder as one the user works in (polled from then on).
    async fn list_if_older(
        &self,
        ino: u64,
        max_age: Duration,
        in_use: bool,
    ) -> Result<Option<crate::meta::ListingChanges>, FsError> {
        if in_use {
            self.note_recent(ino);
        }
        let fresh =
            |listed: Option<i64>| listed.is_some_and(|t| now_ms() - t < max_age.as_millis() as i64);
        let backing_off = |listed: Option<i64>| {
            listed.is_some()
                && lock(&self.listing_failures)
                    .get(&ino)
                    .is_some_and(|t| t.elapsed() < LISTING_RETRY)
        };
        let listed = self.meta.listed_at_ms(ino)?;
        if fresh(listed) || backing_off(listed) {
            return Ok(None);
        }
        let gate = lock(&self.listing_locks).entry(ino).or_default().clone();
        let _guard = gate.lock().await;
        let listed = self.meta.listed_at_ms(ino)?;
        if fresh(listed) || backing_off(listed) {
            return Ok(None);
        }
        let mut _tree = Some(self.uploader.tree_lock.read().await);
        let Some(path) = self.meta.remote_path_of(ino)? else {
            // Only local so far: nothing on the server to list.
            self.meta.mark_listed(ino)?;
            lock(&self.listing_locks).remove(&ino);
            return Ok(None);
        };
        let mut path = path;
        let mut result = self.list_staged(ino, &path).await;
        for _ in 0..40 {
            // The write-back may be moving this folder (or one above it) on the server
            // right now: follow it rather than fail.
            if !matches!(result, Err(RemoteError::NotFound)) {
                break;
            }
            match self.meta.remote_path_of(ino)? {
                Some(now) if now != path => path = now,
                Some(_) if self.meta.any_move_in_flight()? => {
                    // Without the tree lock, which the write-back needs to record it.
                    _tree = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    _tree = Some(self.uploader.tree_lock.read().await);
                }
                _ => break,
            }
            result = self.list_staged(ino, &path).await;
        }
        {
            let mut failures = lock(&self.listing_failures);
            if result.is_ok() {
                failures.remove(&ino);
            } else {
                failures.insert(ino, std::time::Instant::now());
            }
        }
        lock(&self.listing_locks).remove(&ino);
        match result {
            Ok((head, stage)) => {
                if !head.dir.is_dir {
                    self.meta.drop_stage(stage);
                    return Err(FsError::NotDir);
                }
                // Files open with a working copy may be written any moment: their base
                // version stays until they are closed.
                let held: std::collections::HashSet<u64> =
                    lock(&self.works).keys().copied().collect();
                let changes =
                    self.meta
                        .merge_staged(ino, stage, &head.dir, head.complete, &held)?;
                debug!(ino, %path, children = head.children, ?changes, "listed");
                drop(_tree);
                if let Some(give_back) = self.options.give_back_memory {
                    if head.children >= LARGE_FOLDER {
                        // Not on a runtime worker: trimming holds the allocator a moment.
                        tokio::task::spawn_blocking(give_back);
                    }
                }
                self.after_listing(ino, &changes);
                Ok(Some(changes))
            }
            Err(e) if listed.is_some() && !matches!(e, RemoteError::NotFound) => {
                warn!(%path, error = %e, "listing failed; serving the last known listing");
                Ok(None)
            }
            Err(e) => {
                warn!(%path, error = %e, "listing failed");
                Err(e.into())
            }
        }
    }

    /// Lists server folder `path` into a stage of the store, its children stored in
    /// batches as the reply is parsed (see [`crate::meta::Receiver`]).
    async fn list_staged(
        &self,
        dir: u64,
        path: &RemotePath,
    ) -> Result<(ListingHead, crate::meta::Stage), RemoteError> {
        let receiver = crate::meta::Receiver::new(self.meta.clone());
        let sink = receiver.clone();
        let meta = self.meta.clone();
        let head = self
            .remote
            .list_each(
                path,
                Box::new(move |child| {
                    if is_work_name(&child.name) {
                        // An upload being staged, or a probe, by some edrive client.
                        return Ok(());
                    }
                    if child.name.starts_with(crate::sync::plan::MOVE_ASIDE_PREFIX)
                        && matches!(meta.occupant(dir, &child.name), Ok(None))
                    {
                        // Some edrive client's entry moved aside for a moment (a rename
                        // cycle): not shown; its maker knows it by this name.
                        return Ok(());
                    }
                    sink.push(child)
                        .map_err(|e| RemoteError::Local(e.to_string()))
                }),
            )
            .await?;
        let stage = receiver
            .finish()
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        Ok((head, stage))
    }

    /// Finds `name` in folder `parent`.
    #[instrument(level = "debug", skip(self))]
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        validate_name(name)?;
        let p = self.entry(parent)?;
        if !p.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(parent).await?;
        let e = self.meta.child(parent, name)?.ok_or(FsError::NotFound)?;
        // The kernel takes a file's size from here (an append writes at its end): find
        // a size the listing did not give before it is shown.
        let e = if e.size_known {
            e
        } else {
            match self.with_size(e.clone()).await {
                Ok(known) => known,
                Err(err) => {
                    debug!(ino = e.ino, error = %err, "size still unknown");
                    e
                }
            }
        };
        Ok(self.attr(&e))
    }

    /// `e` with its size known. A file the server listed without a usable size (see
    /// [`crate::remote::RemoteEntry::size_known`]) is never taken to be empty: its size
    /// is that of a cached copy of the same version, else what a GET finds (its
    /// `Content-Length`, or where its body really ends), recorded in the store. Folders,
    /// files with a known size and files with local changes come back as they are. Fails
    /// if the size cannot be found, and with [`FsError::Stale`] if the server has another
    /// version than the store (which then lists the folder again).
    async fn with_size(&self, e: Entry) -> Result<Entry, FsError> {
        use futures_util::StreamExt;
        if e.size_known || e.is_dir() || e.dirty || self.has_working_copy(e.ino) {
            return Ok(e);
        }
        let cached = self
            .cache
            .cached_len(&BlobKey::new(e.ino, e.content_version()));
        let size = match cached {
            Some(n) => n,
            None => {
                let path = self.server_path(e.ino)?;
                let dl = self.remote.read(&path, None).await?;
                if let (Some(want), Some(got)) =
                    (&e.etag, e.etag.as_deref().and_then(|w| dl.version_for(w)))
                {
                    if *want != got.value {
                        let _ = self.meta.expire_listing(e.parent);
                        return Err(FsError::Stale);
                    }
                }
                match dl.len {
                    Some(n) => n,
                    None => {
                        let mut body = dl.body;
                        let mut n = 0u64;
                        while let Some(chunk) = body.next().await {
                            n += chunk?.len() as u64;
                        }
                        n
                    }
                }
            }
        };
        if self.meta.learn_size(e.ino, size, &e)? {
            debug!(ino = e.ino, size, "size found");
            // Whatever the kernel holds of it said 0.
            self.inval.inode(e.ino);
        }
        let now = self.entry(e.ino)?;
        if !now.size_known && !now.dirty {
            // Another version arrived meanwhile.
            return Err(FsError::Stale);
        }
        Ok(now)
    }

    /// The attributes of `ino`. A file or folder deleted (or replaced by a rename) while
    /// still open keeps its attributes, with `nlink` 0, until its last handle is released
    /// (`fstat` after `unlink`, `rmdir`, or a rename over it).
    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        match self.meta.get(ino)? {
            Some(e) => Ok(self.attr(&e)),
            None => self.orphan_attr(ino).ok_or(FsError::NotFound),
        }
    }

    /// The attributes of `ino` if it was deleted while open: the last known ones, with the
    /// working copy's size and time if it has one.
    fn orphan_attr(&self, ino: u64) -> Option<Attr> {
        let mut a = lock(&self.orphans).get(&ino).cloned()?;
        if let Some((w, _)) = lock(&self.works).get(&ino) {
            (a.size, a.mtime) = w.size_and_mtime();
            a.ctime = a.ctime.max(w.ctime().unwrap_or(a.ctime));
        }
        Some(a)
    }

    /// Keeps `attr` (of a file or folder just deleted, or replaced by a rename) for
    /// `getattr` while a handle has it open: `fstat` then answers with `nlink` 0.
    fn orphan_if_open(&self, mut attr: Attr) {
        let mut orphans = lock(&self.orphans);
        if self.is_open(attr.ino) {
            attr.nlink = 0;
            attr.ctime = SystemTime::now();
            orphans.insert(attr.ino, attr);
        }
    }

    /// Whether a file or folder handle has `ino` open.
    fn is_open(&self, ino: u64) -> bool {
        let file = lock(&self.files).values().any(|f| f.ino == ino);
        file || lock(&self.dirs).values().any(|d| *d == ino)
    }

    /// Forgets the kept attributes of deleted `ino` once no handle has it open.
    fn forget_orphan(&self, ino: u64) {
        let mut orphans = lock(&self.orphans);
        if orphans.contains_key(&ino) && !self.is_open(ino) {
            orphans.remove(&ino);
        }
    }

    /// Opens folder `ino` for listing, fetching its children if needed; page through it
    /// with [`Drive::readdir_page`].
    #[instrument(level = "debug", skip(self))]
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let e = self.entry(ino)?;
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(ino).await?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, ino);
        Ok(fh)
    }

    /// Up to `limit` children of the folder open as `fh` whose inode numbers are above
    /// `after` (0: from the start), in inode order, read from the store at each call so
    /// the attributes are current (the kernel keeps what a listing says for its TTL).
    /// Nothing is held between calls, so a folder of any size costs one page: an entry
    /// present from `opendir` to the last page is returned exactly once, whatever else
    /// changes (a rename within the folder keeps its inode); one added or removed on the
    /// way may or may not be, as POSIX allows.
    pub fn readdir_page(
        &self,
        fh: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DirEntry>, FsError> {
        let dir = *lock(&self.dirs).get(&fh).ok_or(FsError::BadHandle)?;
        let rows = self.meta.children_after(dir, after, limit)?;
        Ok(rows
            .into_iter()
            .map(|c| DirEntry {
                attr: self.attr(&c),
                name: c.name,
            })
            .collect())
    }

    /// Every child of folder `ino`, by name, fetched if needed (for callers that must
    /// sort or search the whole folder: a ProjFS enumeration, tests).
    pub async fn list_dir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let e = self.entry(ino)?;
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        self.ensure_listed(ino).await?;
        // What working copies say is read first: the store is locked while the rows are
        // read.
        let working: HashMap<u64, WorkingAttrs> = lock(&self.works)
            .iter()
            .map(|(ino, (w, _))| (*ino, w.attrs()))
            .collect();
        let mut rows = Vec::new();
        self.meta.each_child(ino, |c| {
            let attr = self.attr_with(&c, working.get(&c.ino).copied());
            rows.push(DirEntry { name: c.name, attr });
        })?;
        Ok(rows)
    }

    /// Makes what was written in the tree durable (a folder's `fsync`): the metadata store
    /// and the working copies' folder.
    pub fn fsyncdir(&self) -> Result<(), FsError> {
        self.meta.sync_to_disk()?;
        self.cache.work_sync_dir()?;
        Ok(())
    }

    /// Forgets a folder handle.
    pub fn releasedir(&self, fh: u64) {
        let dir = lock(&self.dirs).remove(&fh);
        if let Some(ino) = dir {
            self.forget_orphan(ino);
        }
    }

    /// Whether files named `name` stay local (the ignore list): kept and shown, never
    /// uploaded.
    pub fn ignores(&self, name: &str) -> bool {
        self.options.ignore.matches(name)
    }

    /// The path of `ino` below the mount's root, as the mount shows it (names as they
    /// are locally).
    pub fn path_of(&self, ino: u64) -> Result<Vec<String>, FsError> {
        Ok(self.meta.path_of(ino)?.parts().to_vec())
    }

    /// The parent folder of `ino` (the root is its own parent).
    pub fn parent_of(&self, ino: u64) -> Result<u64, FsError> {
        if ino == ROOT_INO {
            return Ok(ROOT_INO);
        }
        Ok(self.entry(ino)?.parent)
    }

    /// Opens file `ino` for reading. Returns at once: content is fetched in the background
    /// and reads wait only for the bytes they need.
    #[instrument(level = "debug", skip(self))]
    pub async fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64, FsError> {
        let e = self.entry(ino)?;
        if e.is_dir() {
            return Err(FsError::IsDir);
        }
        if write || self.has_working_copy(ino) {
            return self.open_working(&e, write, truncate && write).await;
        }
        let e = self.with_size(e).await?;
        let key = BlobKey::new(ino, e.content_version());
        let content = match self.cache.get(&key) {
            Some(blob) => Content::Cached(Arc::new(blob)),
            // An empty version needs no download.
            None if e.size == 0 => {
                Content::Cached(Arc::new(self.cache.begin_fill(key.clone(), 0)?.commit()?))
            }
            None => {
                let path = self.server_path(ino)?;
                let t = self
                    .hydrator
                    .start(key.clone(), path, e.size, e.etag.clone())?;
                Content::Hydrating(t)
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // Pages other handles bring in are shared: keep none if another handle reads
        // another version (or a working copy).
        let others_differ = lock(&self.files)
            .values()
            .any(|f| f.ino == ino && (f.writable || f.key.version != key.version));
        let same_as_last_open = self.note_open_version(ino, &key.version) && !others_differ;
        let file = OpenFile {
            ino,
            key,
            content: Mutex::new(content),
            writable: false,
            same_as_last_open,
            kernel_reads: false.into(),
            read_run: Mutex::default(),
        };
        lock(&self.files).insert(fh, Arc::new(file));
        Ok(fh)
    }

    /// Whether the kernel may keep the pages it cached of this file from earlier opens:
    /// `fh` reads a complete, clean cached version. Every change of a file's version
    /// drops those pages (the poller's and listings' invalidations; the kernel's own check
    /// of size and time), so they are never stale.
    pub fn keeps_cache(&self, fh: u64) -> bool {
        lock(&self.files).get(&fh).is_some_and(|f| f.keeps_cache())
    }

    /// Records that `ino` is opened on `version` now; whether its last open was on the
    /// same version (so what the kernel cached then is this version's content).
    fn note_open_version(&self, ino: u64, version: &str) -> bool {
        let mut last = lock(&self.last_open_version);
        if last.len() >= 8192 && !last.contains_key(&ino) {
            // Bounded: forgetting costs only a re-read through FUSE.
            last.clear();
        }
        last.insert(ino, version.to_string()).as_deref() == Some(version)
    }

    /// Reads up to `size` bytes at `offset` from open file `fh`.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let file = lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        let data = self.read_file(&file, offset, size).await?;
        self.drop_behind(&file, offset, offset + data.len() as u64);
        Ok(data)
    }

    async fn read_file(&self, file: &OpenFile, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        loop {
            let transfer = {
                let mut content = lock(&file.content);
                match &*content {
                    Content::Cached(blob) => return read_blob(blob, offset, size),
                    Content::Work(w) => return Ok(w.read(offset, size)?),
                    Content::Hydrating(t) => {
                        if let Some(blob) = t.blob() {
                            self.hydrator.release(t);
                            *content = Content::Cached(blob);
                            continue;
                        }
                        t.clone()
                    }
                }
            };
            match transfer.read(offset, size).await {
                Ok(data) => return Ok(data),
                Err(FsError::Stale) => {
                    // The server has a newer version: learn it now (the kernel may not
                    // ask for the name again before its TTL ends).
                    if let Ok(e) = self.entry(file.ino) {
                        let _ = self.list_if_older(e.parent, Duration::ZERO, false).await;
                    }
                    return Err(FsError::Stale);
                }
                Err(e) if !transfer.running() => {
                    // The download failed: this read fails; the next read tries again.
                    if transfer.blob().is_none() {
                        let e2 = self.restart_transfer(file);
                        if let Err(e2) = e2 {
                            warn!(error = %e2, "could not restart download");
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts another download of the version this handle was opened on. A handle never
    /// switches versions: if the server has another one now, it fails with `Stale`.
    fn restart_transfer(&self, file: &OpenFile) -> Result<(), FsError> {
        let e = self.entry(file.ino)?;
        if e.content_version() != file.key.version {
            return Err(FsError::Stale);
        }
        let content = match self.cache.get(&file.key) {
            Some(blob) => Content::Cached(Arc::new(blob)),
            None => {
                let path = self.server_path(file.ino)?;
                let t = self
                    .hydrator
                    .start(file.key.clone(), path, e.size, e.etag.clone())?;
                Content::Hydrating(t)
            }
        };
        let old = std::mem::replace(&mut *lock(&file.content), content);
        if let Content::Hydrating(t) = old {
            self.hydrator.release(&t);
        }
        Ok(())
    }

    /// Closes file handle `fh`; its content becomes evictable once no handle holds it.
    /// A written file's size and time are recorded and its upload is scheduled.
    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let (file, alone) = {
            let mut files = lock(&self.files);
            let Some(file) = files.remove(&fh) else {
                return Ok(());
            };
            let alone = !files.values().any(|f| f.ino == file.ino);
            (file, alone)
        };
        {
            // A handle on another version than the file's last open may have put its
            // pages in the kernel's cache: nobody may keep them.
            let mut last = lock(&self.last_open_version);
            if last.get(&file.ino) != Some(&file.key.version) {
                last.remove(&file.ino);
                self.inval.inode(file.ino);
            } else if alone && self.next_open_by_kernel(&file) && file.read_through_daemon() {
                // The kernel drops an inode's pages when it opens it in passthrough mode,
                // and for a large file that takes a while (0.15 s a GiB): drop the pages
                // this reader brought in now, in the background, not in the next open.
                self.inval.inode(file.ino);
            }
        }
        self.forget_orphan(file.ino);
        let work = {
            let content = lock(&file.content);
            match &*content {
                Content::Hydrating(t) => {
                    self.hydrator.release(t);
                    None
                }
                Content::Work(w) => Some(w.clone()),
                Content::Cached(_) => None,
            }
        };
        match work {
            Some(w) => self.release_working(&file, w),
            None => Ok(()),
        }
    }

    /// Whether the next read-only open of the file `file` (its last handle, just closed)
    /// is likely served by the kernel: it read through the daemon a version now cached
    /// whole, and the kernel serves reads on this mount.
    fn next_open_by_kernel(&self, file: &OpenFile) -> bool {
        if file.writable
            || file.kernel_reads.load(Ordering::SeqCst)
            || !self.kernel_reads_on.load(Ordering::SeqCst)
        {
            return false;
        }
        match &*lock(&file.content) {
            Content::Cached(_) => true,
            Content::Hydrating(t) => t.blob().is_some(),
            Content::Work(_) => false,
        }
    }

    /// The state of `ino` as `user.edrive.state` shows it.
    pub fn state(&self, ino: u64) -> Result<EntryState, FsError> {
        let e = self.entry(ino)?;
        if let Some(p) = &e.problem {
            return Ok(EntryState::from_problem(p));
        }
        if !e.is_dir() {
            // Not `progress()`: that counts pending rows and scans the working copies.
            if self.uploader.is_uploading(ino) {
                return Ok(EntryState::Uploading);
            }
            if e.remote.is_none() && self.options.ignore.matches(&e.name) {
                return Ok(EntryState::LocalOnly);
            }
            if e.dirty || e.remote.is_none() || self.activity.is_open_for_writing(ino) {
                return Ok(EntryState::Dirty);
            }
        }
        if e.is_dir() {
            return Ok(if e.listed_at_ms.is_some() {
                EntryState::Hydrated
            } else {
                EntryState::OnlineOnly
            });
        }
        let key = BlobKey {
            entry: ino,
            version: e.content_version(),
        };
        Ok(if let Some(flagged) = self.cache.cached_pinned(&key) {
            // Pinned once the blob is exempt from eviction: a download finishes (and is
            // readable) a moment before the pin worker flags it.
            if flagged && self.meta.pinned_by(ino)?.is_some() {
                EntryState::Pinned
            } else {
                EntryState::Hydrated
            }
        } else if self.hydrator.is_running(&key) || self.cache.partial_bytes(&key).is_some() {
            EntryState::Partial
        } else {
            EntryState::OnlineOnly
        })
    }

    /// Numbers for `edrive status`.
    pub fn status(&self) -> Result<DriveStatus, FsError> {
        let cache = self.cache.stats();
        Ok(DriveStatus {
            server: self.remote.describe(),
            hydrated_files: cache.blobs as u64,
            cache,
            downloads: self.hydrator.running() as u64,
            known_entries: self.meta.count()?,
            sync: self.uploader.progress(),
        })
    }
}

fn read_blob(blob: &Blob, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
    let len = blob.len();
    if offset >= len {
        return Ok(Vec::new());
    }
    let n = (size as u64).min(len - offset) as usize;
    let mut buf = vec![0u8; n];
    let got = blob.read_at(&mut buf, offset)?;
    buf.truncate(got);
    Ok(buf)
}
