//! The Windows-only part: starting and stopping a ProjFS virtualization instance over a
//! [`Drive`], and the callbacks ([`callbacks`]) that hand each request to the
//! platform-neutral modules. Built only with `cfg(windows)`; `cargo check --target
//! x86_64-pc-windows-gnu` compiles it on every CI run, nothing here runs on Linux.
//!
//! Concurrency: ProjFS calls back on its own thread pool. Callbacks that need the server
//! (start enumeration, placeholder info, file data, query file name) register the command,
//! spawn the work on the tokio runtime and return `ERROR_IO_PENDING`; the task completes the
//! command with `PrjCompleteCommand`. The locks (`sessions`, `commands`, `tracker`) are held
//! only for in-memory bookkeeping, never across I/O; `ctx` is a read lock around each
//! ProjFS call from a task, so that stopping waits for those calls and none happens after.

mod callbacks;
mod ffi;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use edrive_fs_core::notify::KernelCache;
use edrive_fs_core::{Drive, FsError};
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, info, warn};
use windows::core::PCWSTR;
use windows::Win32::Storage::ProjectedFileSystem::{
    PrjMarkDirectoryAsPlaceholder, PrjStartVirtualizing, PrjStopVirtualizing, PRJ_FLAG_NONE,
    PRJ_NOTIFICATION_MAPPING, PRJ_NOTIFY_FILE_HANDLE_CLOSED_FILE_DELETED,
    PRJ_NOTIFY_FILE_HANDLE_CLOSED_FILE_MODIFIED, PRJ_NOTIFY_FILE_HANDLE_CLOSED_NO_MODIFICATION,
    PRJ_NOTIFY_FILE_OVERWRITTEN, PRJ_NOTIFY_FILE_PRE_CONVERT_TO_FULL, PRJ_NOTIFY_FILE_RENAMED,
    PRJ_NOTIFY_NEW_FILE_CREATED, PRJ_NOTIFY_PRE_DELETE, PRJ_NOTIFY_PRE_RENAME,
    PRJ_STARTVIRTUALIZING_OPTIONS,
};

use crate::command::Commands;
use crate::enumeration::Sessions;
use crate::hresult::Hresult;
use crate::mirror::Mirror;
use crate::notification::{CoreOp, Deferred, Tracker, WriteMode};
use crate::path::VirtPath;
use crate::projection::{Projection, ReadShape};
use crate::refresh::{self, Outcome, Plan, RemoteChange};

use ffi::Ctx;

/// How to start the instance.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// The virtualization instance id: stable for a given root (derive it from the mount's
    /// cache directory), since ProjFS records it in the root when marking it.
    pub instance_id: [u8; 16],
    /// Whether local changes reach the server (the default) or are refused.
    pub mode: WriteMode,
    /// ProjFS callback threads (0: ProjFS' default, twice the processors).
    pub pool_threads: u32,
    /// Callbacks running at once (0: ProjFS' default, the processors).
    pub concurrent_threads: u32,
    /// Largest single `PrjWriteFileData` (rounded to the write alignment).
    pub max_chunk: u32,
}

impl MountConfig {
    /// Defaults for instance `instance_id`: read-write, ProjFS' thread counts, 1 MiB writes.
    pub fn new(instance_id: [u8; 16]) -> MountConfig {
        MountConfig {
            instance_id,
            mode: WriteMode::ReadWrite,
            pool_threads: 0,
            concurrent_threads: 0,
            max_chunk: 1 << 20,
        }
    }
}

/// Why the instance could not start.
#[derive(Debug)]
pub enum StartError {
    /// The root is not an existing folder.
    Root(std::io::Error),
    /// `PrjStartVirtualizing` failed (with `PrjMarkDirectoryAsPlaceholder`'s result, which
    /// fails harmlessly when the root was marked by an earlier mount).
    Start {
        /// Result of marking the root.
        mark: Hresult,
        /// Result of starting.
        start: Hresult,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Root(e) => write!(f, "the mount folder cannot be used: {e}"),
            StartError::Start { mark, start } => write!(
                f,
                "ProjFS did not start ({start}; marking the folder: {mark}); is the Client-ProjFS \
                 optional feature enabled?"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// What every callback and task shares.
pub(crate) struct Shared {
    projection: Projection,
    rt: Handle,
    /// The started instance; `None` once stopping.
    ctx: RwLock<Option<Ctx>>,
    alignment: OnceLock<u32>,
    max_chunk: u32,
    mode: WriteMode,
    sessions: Mutex<Sessions>,
    commands: Mutex<Commands<AbortHandle>>,
    tracker: Mutex<Tracker>,
    /// Local changes on their way to the [`Mirror`], in order; `None` once stopping.
    changes: Mutex<Option<UnboundedSender<CoreOp>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Runs `f` with the instance context unless the instance is stopping.
    fn with_ctx<R>(&self, f: impl FnOnce(Ctx) -> R) -> Option<R> {
        let guard = self.ctx.read().unwrap_or_else(|p| p.into_inner());
        guard.map(f)
    }

    fn shape(&self, ctx: Ctx) -> ReadShape {
        let alignment = *self.alignment.get_or_init(|| ffi::write_alignment(ctx));
        ReadShape {
            alignment,
            max_chunk: self.max_chunk,
        }
    }

    /// The seam to fs-core's write path: operations go, in order, to the task that
    /// records them with the [`Mirror`] (never from the callback's thread).
    fn carry_out(&self, ops: Vec<CoreOp>) {
        let changes = lock(&self.changes);
        for op in ops {
            match (self.mode, changes.as_ref()) {
                (WriteMode::ReadOnly, _) => {
                    info!(?op, "local change not sent: the drive is read-only")
                }
                (WriteMode::ReadWrite, Some(tx)) => {
                    if tx.send(op).is_err() {
                        warn!("local change not recorded: the recorder has stopped");
                    }
                }
                (WriteMode::ReadWrite, None) => {
                    warn!(?op, "local change not recorded: the drive is stopping")
                }
            }
        }
    }

    /// Brings the placeholder of `path` in line with a server change, unless the tracker
    /// says it has local changes.
    async fn remote_changed(&self, path: &VirtPath, change: RemoteChange) -> Outcome {
        let dirty = lock(&self.tracker).is_dirty(path);
        self.apply(path, refresh::plan_remote_change(change, dirty))
            .await
    }

    /// Updates or deletes the placeholder of `path` per `plan`.
    async fn apply(&self, path: &VirtPath, plan: Plan) -> Outcome {
        match plan {
            Plan::SkipDirty => Outcome::SkippedDirty,
            Plan::Delete => {
                let r = self.with_ctx(|ctx| ffi::delete_file(ctx, path));
                r.map(|(hr, cause)| refresh::outcome(hr, cause))
                    .unwrap_or(Outcome::Failed(Hresult::CANCELLED))
            }
            Plan::Update => match self.projection.placeholder(path).await {
                Ok(ph) => {
                    let r =
                        self.with_ctx(|ctx| ffi::update_file(ctx, &ph.path, &ph.info, ph.content));
                    r.map(|(hr, cause)| refresh::outcome(hr, cause))
                        .unwrap_or(Outcome::Failed(Hresult::CANCELLED))
                }
                // Gone from the server meanwhile: remove it locally instead.
                Err(edrive_fs_core::FsError::NotFound) => {
                    Box::pin(self.apply(path, Plan::Delete)).await
                }
                Err(e) => Outcome::Failed(Hresult::from(&e)),
            },
        }
    }
}

/// fs-core's news of server changes (the poller's, a listing's), turned into placeholder
/// updates: a changed or vanished name or file is brought in line with the server
/// (`PrjUpdateFileIfNeeded`, or `PrjDeleteFile` when it is gone), never when it has local
/// changes. New names need nothing: ProjFS asks for every folder's listing anew.
struct PlaceholderRefresh(std::sync::Weak<Shared>);

impl PlaceholderRefresh {
    fn refresh(&self, path: VirtPath) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let rt = shared.rt.clone();
        rt.spawn(async move {
            let outcome = shared.remote_changed(&path, RemoteChange::Modified).await;
            debug!(%path, ?outcome, "placeholder brought in line with the server");
        });
    }

    fn path_of(&self, ino: u64) -> Option<VirtPath> {
        let shared = self.0.upgrade()?;
        match shared.projection.drive().path_of(ino) {
            Ok(parts) => Some(VirtPath::from_parts(parts)),
            Err(e) => {
                debug!(ino, error = %e, "changed entry has no path; its name's news covers it");
                None
            }
        }
    }
}

impl KernelCache for PlaceholderRefresh {
    fn inval_entry(&self, parent: u64, name: &str) {
        if let Some(dir) = self.path_of(parent) {
            self.refresh(dir.join(name));
        }
    }

    fn inval_inode(&self, ino: u64) {
        if let Some(path) = self.path_of(ino).filter(|p| !p.is_root()) {
            self.refresh(path);
        }
    }
}

/// Waits before a local change whose file could not be read is tried again.
const RECORD_RETRIES: [std::time::Duration; 3] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(5),
    std::time::Duration::from_secs(20),
];

/// Starts the task that records local changes with a [`Mirror`] of `root`, one at a time
/// in the order they were noticed.
fn start_recorder(
    runtime: &Handle,
    projection: Projection,
    root: std::path::PathBuf,
) -> (UnboundedSender<CoreOp>, JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<CoreOp>();
    let mirror = Mirror::new(projection, root);
    let task = runtime.spawn(async move {
        while let Some(op) = rx.recv().await {
            let mut attempt = 0;
            loop {
                match mirror.apply(&op).await {
                    Ok(()) => debug!(?op, "local change recorded"),
                    // A file held by another program (an indexer, an antivirus scan, the
                    // application itself) is tried again a little later; later changes
                    // wait, so that they keep their order.
                    Err(FsError::Io(e)) if attempt < RECORD_RETRIES.len() => {
                        debug!(?op, error = %e, "local change not readable yet; trying again");
                        tokio::time::sleep(RECORD_RETRIES[attempt]).await;
                        attempt += 1;
                        continue;
                    }
                    Err(e) => warn!(?op, error = %e, "local change not recorded"),
                }
                break;
            }
        }
    });
    (tx, task)
}

/// A running virtualization instance. Stops when dropped.
pub struct Session {
    shared: Arc<Shared>,
    /// The strong reference handed to ProjFS as instance context.
    instance: *const Shared,
    root: std::path::PathBuf,
    stopped: bool,
    /// The task recording local changes (see [`Session::stop`]).
    recorder: Option<JoinHandle<()>>,
}

// SAFETY: `instance` is an `Arc<Shared>` reference count owned by this value, and Shared is
// Send + Sync.
unsafe impl Send for Session {}
// SAFETY: `instance` is only used by `stop_now`, which takes `&mut self`.
unsafe impl Sync for Session {}

/// Marks `root` as a virtualization root (once) and starts projecting `drive` into it.
/// `runtime` runs every task that talks to the server.
pub fn start(
    drive: Arc<Drive>,
    runtime: Handle,
    root: &Path,
    config: &MountConfig,
) -> Result<Session, StartError> {
    let meta = std::fs::metadata(root).map_err(StartError::Root)?;
    if !meta.is_dir() {
        return Err(StartError::Root(std::io::Error::other("not a folder")));
    }
    let root_w = ffi::wide(&root.to_string_lossy());
    let id = ffi::guid(config.instance_id);
    // SAFETY: NUL-terminated root path; no target path (marking a root), no version info.
    let mark = unsafe {
        PrjMarkDirectoryAsPlaceholder(PCWSTR(root_w.as_ptr()), PCWSTR::null(), None, &id)
    };
    let mark = mark
        .err()
        .map(|e| Hresult(e.code().0))
        .unwrap_or(Hresult::OK);
    if !mark.is_ok() {
        debug!(%mark, "root not marked (already a virtualization root?)");
    }

    let projection = Projection::new(drive);
    let (changes, recorder) = start_recorder(&runtime, projection.clone(), root.to_path_buf());
    let shared = Arc::new(Shared {
        projection,
        rt: runtime,
        ctx: RwLock::new(None),
        alignment: OnceLock::new(),
        max_chunk: config.max_chunk,
        mode: config.mode,
        sessions: Mutex::new(Sessions::new()),
        commands: Mutex::new(Commands::new()),
        tracker: Mutex::new(Tracker::new()),
        changes: Mutex::new(Some(changes)),
    });
    let callbacks = callbacks::table();
    let empty = ffi::wide("");
    let mut mappings = [PRJ_NOTIFICATION_MAPPING {
        NotificationBitMask: PRJ_NOTIFY_NEW_FILE_CREATED
            | PRJ_NOTIFY_FILE_OVERWRITTEN
            | PRJ_NOTIFY_PRE_DELETE
            | PRJ_NOTIFY_PRE_RENAME
            | PRJ_NOTIFY_FILE_RENAMED
            | PRJ_NOTIFY_FILE_HANDLE_CLOSED_FILE_MODIFIED
            // A file truncated and closed without a write is changed too.
            | PRJ_NOTIFY_FILE_HANDLE_CLOSED_NO_MODIFICATION
            | PRJ_NOTIFY_FILE_HANDLE_CLOSED_FILE_DELETED
            | PRJ_NOTIFY_FILE_PRE_CONVERT_TO_FULL,
        NotificationRoot: PCWSTR(empty.as_ptr()),
    }];
    let options = PRJ_STARTVIRTUALIZING_OPTIONS {
        // No negative path cache: a name that did not exist may appear on the server.
        Flags: PRJ_FLAG_NONE,
        PoolThreadCount: config.pool_threads,
        ConcurrentThreadCount: config.concurrent_threads,
        NotificationMappings: mappings.as_mut_ptr(),
        NotificationMappingsCount: mappings.len() as u32,
    };
    shared
        .projection
        .drive()
        .install_kernel_cache(Arc::new(PlaceholderRefresh(Arc::downgrade(&shared))));
    let instance = Arc::into_raw(shared.clone());
    // SAFETY: every pointer is valid for the call (ProjFS copies the callbacks, options and
    // mappings); `instance` stays a live strong reference until after PrjStopVirtualizing.
    let started = unsafe {
        PrjStartVirtualizing(
            PCWSTR(root_w.as_ptr()),
            &callbacks,
            Some(instance.cast()),
            Some(&options),
        )
    };
    match started {
        Ok(ctx) => {
            *shared.ctx.write().unwrap_or_else(|p| p.into_inner()) = Some(Ctx(ctx));
            info!(root = %root.display(), "ProjFS virtualization started");
            Ok(Session {
                shared,
                instance,
                root: root.to_path_buf(),
                stopped: false,
                recorder: Some(recorder),
            })
        }
        Err(e) => {
            // SAFETY: ProjFS did not start, so it holds no copy of `instance`.
            drop(unsafe { Arc::from_raw(instance) });
            Err(StartError::Start {
                mark,
                start: Hresult(e.code().0),
            })
        }
    }
}

impl Session {
    /// The virtualization root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Brings the placeholder of `path` in line with a change on the server: updated
    /// (`PrjUpdateFileIfNeeded`) or removed (`PrjDeleteFile`), never when it has local
    /// changes.
    pub async fn remote_changed(&self, path: &VirtPath, change: RemoteChange) -> Outcome {
        self.shared.remote_changed(path, change).await
    }

    /// Frees the local space of `path`: the file becomes virtual again (re-projected from
    /// the listing on next access). Never for a file with local changes.
    pub async fn free_up(&self, path: &VirtPath) -> Outcome {
        let dirty = lock(&self.shared.tracker).is_dirty(path);
        self.shared.apply(path, refresh::plan_free_up(dirty)).await
    }

    /// Local saves that did not complete (see [`Tracker::deferred`]).
    pub fn deferred(&self) -> Vec<(VirtPath, Deferred)> {
        lock(&self.shared.tracker).deferred()
    }

    /// Stops the instance: pending commands are abandoned, no callback runs afterwards.
    /// Returns the task still recording the local changes noticed before: it ends once
    /// they are recorded, and the caller should wait for it before the runtime stops.
    pub fn stop(mut self) -> Option<JoinHandle<()>> {
        self.stop_now();
        self.recorder.take()
    }

    fn stop_now(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for task in lock(&self.shared.commands).drain() {
            task.abort();
        }
        let ctx = self
            .shared
            .ctx
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(ctx) = ctx {
            // SAFETY: a started context, stopped once; returns after the last callback.
            unsafe { PrjStopVirtualizing(ctx.0) };
        }
        // No callback sends any more: the recorder ends after what is queued.
        lock(&self.shared.changes).take();
        // SAFETY: the reference given to ProjFS at start; no callback can use it any more.
        drop(unsafe { Arc::from_raw(self.instance) });
        info!(root = %self.root.display(), "ProjFS virtualization stopped");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_now();
    }
}
