//! The background write-back: plans the next server operations from the metadata store,
//! runs them one at a time, and records each outcome before the next. Transient failures
//! (server down, 5xx) are retried with exponential backoff and jitter; a full server (507)
//! leaves the file dirty and flagged; a changed server version (412) keeps the local data
//! and flags a conflict; 401 pauses all network work. Nothing here ever deletes local data.
//!
//! Here: the uploader's state and progress. Its parts: `run` (the loop), `execute` (one
//! operation), `upload` (one file), `failure` (sorting a failed operation), `keep_both`,
//! `recovery` (what a crash cut short), `checked` (writes the server does not check).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edrive_cache::{BlobKey, Cache};
use futures_util::StreamExt;
use tokio::sync::RwLock;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::connectivity::Connectivity;
use crate::logged::OrLog;
use crate::meta::{Meta, Problem, ProblemKind};
use crate::notify::Invalidations;
use crate::remote::{again, ByteStream, Precondition, Remote, RemoteError, RemotePath};

use super::plan::{plan, still_current, Op};

mod checked;
mod execute;
mod failure;
mod keep_both;
mod recovery;
mod run;
mod upload;

use super::{conflict_name, host_name, Activity, ConflictPolicy, IgnoreList};
pub use checked::STAGING_PREFIX;
/// How the write-back is doing, for `edrive status` and `edrive sync`.
#[derive(Clone, Debug, Default)]
pub struct SyncProgress {
    /// Entries with something to write back (including stuck ones).
    pub pending: u64,
    /// Of those, entries that wait for a person (conflict, full server, error).
    pub stuck: u64,
    /// Bytes of dirty content waiting to be uploaded.
    pub pending_bytes: u64,
    /// The upload running now: path, bytes sent, bytes total.
    pub current: Option<(String, u64, u64)>,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// Whether a sync was asked for and is still going.
    pub syncing: bool,
    /// Upload rate of the running upload, bytes per second.
    pub rate: u64,
    /// Of the pending entries, those that wait for the user (held, refused, conflict).
    pub attention: super::Attention,
}

/// Runs the write-back for one drive.
pub struct Uploader {
    /// Whether requests may go out (offline, refused credentials, suspended offline).
    conn: Arc<Connectivity>,
    remote: Arc<dyn Remote>,
    meta: Arc<Meta>,
    cache: Arc<Cache>,
    activity: Arc<Activity>,
    ignore: IgnoreList,
    debounce: Duration,
    /// Held shared by folder listings and exclusively while a server operation's outcome
    /// is recorded, so a listing never sees the server half a step ahead of the store.
    /// Rank 3 in the lock order ([`crate::locks`]).
    pub(crate) tree_lock: Arc<RwLock<()>>,
    progress: Mutex<SyncProgress>,
    urgent: AtomicBool,
    /// Bumped by every sync request, so a plan made before one cannot end it.
    sync_gen: std::sync::atomic::AtomicU64,
    paused_until: Mutex<Option<Instant>>,
    /// When the running upload started.
    put_since: Mutex<Instant>,
    /// Bytes of the running upload sent so far.
    sent: Arc<Mutex<u64>>,
    /// Write-back suspended: nothing is sent until resumed (local changes still recorded).
    suspended: AtomicBool,
    /// When the last sync was asked for.
    sync_asked: Mutex<Option<Instant>>,
    /// How conflicts are settled.
    policy: ConflictPolicy,
    /// This machine's name, for conflict copies.
    host: String,
    /// Kernel caches to drop when a conflict renames a file.
    inval: Arc<Invalidations>,
    /// Bumped whenever the write-back put a server version in place of a local one (a
    /// conflict kept both), so pinned content is fetched again.
    pub(crate) remote_news: std::sync::atomic::AtomicU64,
    /// Some entry waits for a lock held by someone else on the server.
    locks_waiting: AtomicBool,
    /// Some entry waits for another try after a refusal that may pass ([`Problem::Retrying`]).
    retries_waiting: AtomicBool,
    /// Retries are still frequent (their backoff has not reached its longest wait): such
    /// entries count as moving, not stuck, so a sync waits for them.
    retries_early: AtomicBool,
    /// A sync asked for the retries to start over now.
    retries_reset: AtomicBool,
    /// Files being uploaded now.
    in_flight: Mutex<std::collections::HashSet<u64>>,
    /// What the server guarantees (learnt at the start of [`Uploader::run`]).
    caps: Mutex<crate::remote::Capabilities>,
    /// Whether the server's guarantees are probed, trusted or never relied on.
    write_checks: crate::remote::capabilities::WriteChecks,
}

/// Marks a file as being uploaded for as long as it lives.
struct InFlight<'a>(&'a Mutex<std::collections::HashSet<u64>>, u64);

impl<'a> InFlight<'a> {
    fn new(set: &'a Mutex<std::collections::HashSet<u64>>, ino: u64) -> InFlight<'a> {
        set.lock().unwrap_or_else(|p| p.into_inner()).insert(ino);
        InFlight(set, ino)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// Upload read size: bounded memory for any file size.
const CHUNK: usize = 256 * 1024;
/// Files up to this size are read into memory whole before their upload starts.
const INLINE_BODY: u64 = 64 * 1024;
/// How long a full server (507) is left alone before another try.
const NO_SPACE_RETRY: Duration = Duration::from_secs(60);
/// How long a 401/403 pauses network work.
const AUTH_PAUSE: Duration = Duration::from_secs(30);
/// How long a sync waits for writers the kernel has not reported closed yet.
const WRITER_GRACE: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// How long a burst of local changes is gathered before the next plan.
const PLAN_COALESCE: Duration = Duration::from_millis(200);
/// New files uploaded at once.
pub const PARALLEL_UPLOADS: usize = 4;
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// First wait before a change refused for a passing reason is tried again (it doubles
/// up to [`LOCK_RETRY_MAX`]).
const RETRY_MIN: Duration = Duration::from_secs(1);
/// While the retry wait is shorter than this (the first 15 s or so of failures), such a
/// change counts as moving and a sync waits for it; then it counts as stuck.
const RETRY_PATIENCE: Duration = Duration::from_secs(16);
/// How often work names left on the server by a failure are looked after again.
const CLEANUP_RETRY: Duration = Duration::from_secs(30);
/// How long after a probe of the server failed (not reached, 5xx) it is tried again.
const PROBE_RETRY: Duration = Duration::from_secs(60);
/// First and last wait before files locked on the server are tried again.
const LOCK_RETRY_MIN: Duration = Duration::from_secs(2);
const LOCK_RETRY_MAX: Duration = Duration::from_secs(60);

enum Outcome {
    Done,
    /// Retry after a backoff.
    Transient(RemoteError),
    /// Stop network work for a while.
    Auth(RemoteError),
}

impl Uploader {
    /// A write-back over these stores. `debounce` is how long a file stays untouched after
    /// its last close before it is uploaded.
    pub fn new(
        remote: Arc<dyn Remote>,
        meta: Arc<Meta>,
        cache: Arc<Cache>,
        activity: Arc<Activity>,
        ignore: IgnoreList,
        debounce: Duration,
        conn: Arc<Connectivity>,
    ) -> Uploader {
        Uploader {
            conn,
            remote,
            meta,
            cache,
            activity,
            ignore,
            debounce,
            tree_lock: Arc::new(RwLock::new(())),
            progress: Mutex::new(SyncProgress::default()),
            urgent: AtomicBool::new(false),
            sync_gen: std::sync::atomic::AtomicU64::new(0),
            paused_until: Mutex::new(None),
            sent: Arc::new(Mutex::new(0)),
            put_since: Mutex::new(Instant::now()),
            suspended: AtomicBool::new(false),
            sync_asked: Mutex::new(None),
            policy: ConflictPolicy::default(),
            host: host_name(),
            inval: Arc::new(Invalidations::default()),
            remote_news: std::sync::atomic::AtomicU64::new(0),
            // A lock problem may be left from the last run.
            locks_waiting: AtomicBool::new(true),
            retries_waiting: AtomicBool::new(true),
            retries_early: AtomicBool::new(true),
            retries_reset: AtomicBool::new(false),
            in_flight: Mutex::new(std::collections::HashSet::new()),
            caps: Mutex::new(crate::remote::Capabilities::default()),
            write_checks: Default::default(),
        }
    }

    /// Sets how conflicts are settled and where kernel invalidations go.
    pub fn with_conflicts(mut self, policy: ConflictPolicy, inval: Arc<Invalidations>) -> Self {
        self.policy = policy;
        self.inval = inval;
        self
    }

    /// Sets whether the server's guarantees are probed, trusted or never relied on.
    pub fn with_write_checks(mut self, checks: crate::remote::capabilities::WriteChecks) -> Self {
        self.write_checks = checks;
        self
    }

    /// A snapshot of the progress.
    pub fn progress(&self) -> SyncProgress {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Ok(rows) = self.meta.pending() {
            let counted = rows
                .iter()
                .filter(|e| e.deleted || e.remote.is_some() || !self.ignore.matches(&e.name));
            let (mut n, mut stuck, mut bytes) = (0, 0, 0);
            let mut attention = super::Attention::default();
            let early = self.retries_early.load(Ordering::SeqCst);
            for e in counted {
                n += 1;
                if let Some(p) = &e.problem {
                    attention.count(p);
                }
                match &e.problem {
                    // Tried again soon: still moving.
                    Some(Problem::Retrying(_)) if early => {}
                    Some(_) => stuck += 1,
                    None => {}
                }
                if !e.deleted && !e.is_dir() && (e.dirty || e.remote.is_none()) {
                    bytes += e.size;
                }
            }
            p.pending = n;
            p.stuck = stuck;
            p.attention = attention;
            // From the rows, not by listing the working copies: `edrive sync` asks five
            // times a second, and listing 10,000 of them cost 20 ms each time.
            p.pending_bytes = bytes;
        }
        let sent = *self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &mut p.current {
            c.1 = sent;
            let started = *self.put_since.lock().unwrap_or_else(|p| p.into_inner());
            let secs = started.elapsed().as_secs_f64();
            if secs > 0.0 {
                p.rate = (sent as f64 / secs) as u64;
            }
        }
        p
    }

    /// Whether file `ino` is being uploaded now (several may be: see
    /// [`PARALLEL_UPLOADS`]).
    pub fn is_uploading(&self, ino: u64) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ino)
    }

    /// How many uploads run now.
    pub fn uploads_running(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether uploads are suspended (local changes are recorded as always and nothing is
    /// sent).
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    /// Suspends (`true`) or resumes the write-back; an operation in flight finishes.
    pub fn set_suspended(&self, suspended: bool) {
        self.suspended.store(suspended, Ordering::SeqCst);
        self.activity.wake();
    }

    /// Ends the pause after refused credentials (new ones were accepted): the queue goes
    /// on now, with its usual debounce.
    pub fn unpause(&self) {
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.activity.wake();
    }

    /// Asks for everything to be written back now, skipping the debounce.
    pub fn request_sync(&self) {
        self.set(|p| p.syncing = true);
        *self.sync_asked.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.sync_gen.fetch_add(1, Ordering::SeqCst);
        self.urgent.store(true, Ordering::SeqCst);
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.meta
            .clear_problems(ProblemKind::NoSpace)
            .or_log("meta clear_problems");
        self.meta
            .clear_problems(ProblemKind::Retrying)
            .or_log("meta clear_problems");
        self.retries_reset.store(true, Ordering::SeqCst);
        self.retries_early.store(true, Ordering::SeqCst);
        self.activity.wake();
    }

    /// Whether every change that can be written back has been (stuck entries aside).
    pub fn is_idle(&self) -> bool {
        let p = self.progress();
        p.pending == p.stuck && p.current.is_none()
    }

    fn set(&self, f: impl FnOnce(&mut SyncProgress)) {
        f(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The server's copy changed again between two requests while it held a prefix of our
/// own content: it is still writing an upload of ours a crash cut off. Retried later.
fn still_arriving() -> RemoteError {
    RemoteError::Transfer("the server is still receiving an earlier upload of this file".into())
}
