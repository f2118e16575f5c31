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
use crate::readers::Opener;
use crate::remote::{validate_name, ListingHead, Remote, RemoteError, RemotePath};
use crate::state::EntryState;
use crate::sync::{Activity, ConflictPolicy, IgnoreList, SyncProgress, Uploader};

mod access;
mod background;
mod excluded;
mod held;
mod info;
mod kernel_reads;
mod listing;
mod pin;
mod poll;
mod reads;
mod recovery;
mod resolve;
mod space;
mod status;
#[cfg(test)]
mod tests;
mod working;
mod write;
mod xattr;

pub use held::HeldDeletion;
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
    /// Permission bits entries without a mode of their own do not get (from 0o777 for
    /// folders, 0o666 for files); 0o022 gives 0o755 and 0o644.
    pub umask: u16,
    /// Above which a burst of local deletions is held for the user to confirm.
    pub hold_limits: crate::sync::HoldLimits,
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
            umask: 0o022,
            hold_limits: Default::default(),
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
    /// Opens refused to background readers: in all, and per program.
    pub background_refused: (u64, Vec<(String, u64)>),
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
    /// Opens refused to background readers.
    refusals: crate::readers::Refusals,
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
        activity.set_hold_limits(options.hold_limits);
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
            refusals: Default::default(),
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

    /// Where the server has `ino`'s content: after a local rename that is not written back
    /// yet, still the old place.
    fn server_path(&self, ino: u64) -> Result<RemotePath, FsError> {
        self.meta.remote_path_of(ino)?.ok_or_else(|| {
            FsError::Io(std::io::Error::other(
                "no local content, and the server does not have this file",
            ))
        })
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
                None if dir => 0o777 & !self.options.umask,
                None => 0o666 & !self.options.umask,
            } & if e.denied & (crate::meta::DENY_CHANGE | crate::meta::DENY_EXCLUDED) != 0 {
                // The server refuses changes, or an excluded placeholder: no write
                // permission (see `access`).
                !0o222
            } else {
                !0
            },
            nlink: if dir { 2 } else { 1 },
            uid: self.options.uid,
            gid: self.options.gid,
        }
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
}
