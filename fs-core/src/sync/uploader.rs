//! The background write-back: plans the next server operations from the metadata store,
//! runs them one at a time, and records each outcome before the next. Transient failures
//! (server down, 5xx) are retried with exponential backoff and jitter; a full server (507)
//! leaves the file dirty and flagged; a changed server version (412) keeps the local data
//! and flags a conflict; 401 pauses all network work. Nothing here ever deletes local data.

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
            let early = self.retries_early.load(Ordering::SeqCst);
            for e in counted {
                n += 1;
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

    /// Runs forever (spawn it); wakes on local changes, debounce deadlines and retries.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut last_no_space_retry = Instant::now();
        let mut lock_wait = LOCK_RETRY_MIN;
        let mut lock_retry_at = Instant::now() + lock_wait;
        let mut retry_wait = RETRY_MIN;
        let mut retry_at = Instant::now() + retry_wait;
        let mut learnt = false;
        let mut last_probe: Option<Instant> = None;
        let mut last_cleanup = Instant::now();
        loop {
            let gen = self.sync_gen.load(Ordering::SeqCst);
            if self.suspended.load(Ordering::SeqCst) {
                // A sync asked for since the check above is not over.
                if self.sync_gen.load(Ordering::SeqCst) == gen {
                    self.set(|p| p.syncing = false);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), self.activity.woken()).await;
                continue;
            }
            if !self.conn.usable() {
                // Offline or refused credentials: nothing is sent (and a sync asked for
                // ends, saying what is left) until the link is back.
                if self.sync_gen.load(Ordering::SeqCst) == gen {
                    self.set(|p| p.syncing = false);
                }
                self.conn.changed(Duration::from_secs(5)).await;
                backoff = BACKOFF_MIN;
                continue;
            }
            let paused = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = paused {
                if until > Instant::now() {
                    let _ = tokio::time::timeout_at(until.into(), self.activity.woken()).await;
                    continue;
                }
            }
            if !learnt && last_probe.is_none_or(|t| t.elapsed() >= PROBE_RETRY) {
                // Before the first write: what the server guarantees, and staging files a
                // crash left. Neither holds up the queue if the server fails it: until the
                // probe succeeds every write is checked by the client.
                last_probe = Some(Instant::now());
                learnt = self.learn_server().await;
                let _ = self.remove_stale_staging().await;
                last_cleanup = Instant::now();
            } else if last_cleanup.elapsed() >= CLEANUP_RETRY && self.staging_left() {
                // Work names a failure left (a version that could not be put back yet):
                // tried again until nothing is left under them.
                last_cleanup = Instant::now();
                let _ = self.remove_stale_staging().await;
            }
            if last_no_space_retry.elapsed() >= NO_SPACE_RETRY {
                last_no_space_retry = Instant::now();
                self.meta
                    .clear_problems(ProblemKind::NoSpace)
                    .or_log("meta clear_problems");
            }
            if !self.locks_waiting.load(Ordering::SeqCst) {
                lock_wait = LOCK_RETRY_MIN;
                lock_retry_at = Instant::now() + lock_wait;
            } else if Instant::now() >= lock_retry_at {
                // Files locked by someone else: tried again, less often the longer the
                // locks stay.
                lock_wait = match self.meta.clear_problems(ProblemKind::Locked) {
                    Ok(0) | Err(_) => {
                        self.locks_waiting.store(false, Ordering::SeqCst);
                        LOCK_RETRY_MIN
                    }
                    Ok(_) => (lock_wait * 2).min(LOCK_RETRY_MAX),
                };
                lock_retry_at = Instant::now() + lock_wait;
            }
            if self.retries_reset.swap(false, Ordering::SeqCst)
                || !self.retries_waiting.load(Ordering::SeqCst)
            {
                retry_wait = RETRY_MIN;
                retry_at = Instant::now() + retry_wait;
            } else if Instant::now() >= retry_at {
                // Changes refused for a reason that may pass: tried again, less often the
                // longer they keep failing; the rest of the queue never waits for them.
                retry_wait = match self.meta.clear_problems(ProblemKind::Retrying) {
                    Ok(0) | Err(_) => {
                        self.retries_waiting.store(false, Ordering::SeqCst);
                        RETRY_MIN
                    }
                    Ok(_) => (retry_wait * 2).min(LOCK_RETRY_MAX),
                };
                retry_at = Instant::now() + retry_wait;
            }
            self.retries_early
                .store(retry_wait < RETRY_PATIENCE, Ordering::SeqCst);
            if let Err(e) = self.settle_moves().await {
                let wait = jitter(backoff);
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "write-back: checking an interrupted move failed; will retry");
                self.set(|p| p.last_error = Some(e.to_string()));
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            let urgent = self.urgent.load(Ordering::SeqCst);
            let debounce = if urgent {
                Duration::ZERO
            } else {
                self.debounce
            };
            let planned = {
                let _gate = self.activity.lock_plan();
                plan(&self.meta, &self.activity, &self.ignore, debounce)
            };
            let planned = match planned {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "write-back: planning failed");
                    tokio::time::sleep(BACKOFF_MAX).await;
                    continue;
                }
            };
            if planned.ops.is_empty() {
                // Nothing can run now: what is left waits for a writer to close, a
                // person (conflict), or a later retry. A sync ends here — after a short
                // grace for writers: the kernel reports a close (RELEASE) asynchronously,
                // so `cp x mnt/ && edrive sync mnt` can see the file still open.
                if urgent && self.writer_grace() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                // Changes tried again soon are still moving: a sync waits for them (until
                // their retries slow down; then they count as stuck and are listed).
                let retrying = self.retries_waiting.load(Ordering::SeqCst)
                    && self.retries_early.load(Ordering::SeqCst);
                if self.sync_gen.load(Ordering::SeqCst) == gen && !retrying {
                    self.urgent.store(false, Ordering::SeqCst);
                    self.set(|p| p.syncing = false);
                }
                let mut wait = planned
                    .wake_at
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(NO_SPACE_RETRY)
                    .min(NO_SPACE_RETRY);
                if self.locks_waiting.load(Ordering::SeqCst) {
                    wait = wait.min(lock_retry_at.saturating_duration_since(Instant::now()));
                }
                if self.retries_waiting.load(Ordering::SeqCst) {
                    wait = wait.min(retry_at.saturating_duration_since(Instant::now()));
                }
                let _ = tokio::time::timeout(wait, self.activity.woken()).await;
                if !self.urgent.load(Ordering::SeqCst) {
                    // A burst of changes (an untar, a copy of a tree) wakes this loop once
                    // per file: plan once per burst, not once per file (every plan reads
                    // all pending rows, and creating a file waits for the plan gate).
                    tokio::time::sleep(self.debounce.min(PLAN_COALESCE)).await;
                }
                continue;
            }
            let mut ops = planned.ops.into_iter().peekable();
            let mut first = true;
            'batch: while let Some(op) = ops.next() {
                // New files next to each other in the plan are independent of each other
                // (their folders come earlier): up to PARALLEL_UPLOADS go at once.
                let mut group = vec![op];
                while group.len() < PARALLEL_UPLOADS
                    && group.iter().all(is_new_file_upload)
                    && ops.peek().is_some_and(is_new_file_upload)
                {
                    group.extend(ops.next());
                }
                if self.suspended.load(Ordering::SeqCst) {
                    break;
                }
                // The user, or an earlier operation of this batch, may have moved what this
                // one is about.
                for op in &group {
                    if !matches!(still_current(&self.meta, op), Ok(true)) {
                        debug!(
                            ?op,
                            "write-back: replanning, the tree changed under this plan"
                        );
                        if first {
                            // Not a busy loop should a plan ever be wrong from the start.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        break 'batch;
                    }
                }
                first = false;
                let outcomes = futures_util::future::join_all(group.into_iter().map(|op| {
                    let span = info_span!("writeback", ino = op.ino());
                    self.execute(op).instrument(span)
                }))
                .await;
                let mut worst = Outcome::Done;
                for o in outcomes {
                    match (&worst, o) {
                        (_, Outcome::Done) => {}
                        (Outcome::Auth(_), _) => {}
                        (_, o) => worst = o,
                    }
                }
                match worst {
                    Outcome::Done => {
                        backoff = BACKOFF_MIN;
                        self.set(|p| p.last_error = None);
                    }
                    Outcome::Transient(e) => {
                        let wait = jitter(backoff);
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "write-back: will retry");
                        self.set(|p| p.last_error = Some(e.to_string()));
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        break;
                    }
                    Outcome::Auth(e) => {
                        warn!(error = %e, "write-back: the server refused the credentials; pausing network work");
                        self.set(|p| p.last_error = Some(e.to_string()));
                        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now() + AUTH_PAUSE);
                        break;
                    }
                }
            }
        }
    }

    /// Whether a sync asked for less than [`WRITER_GRACE`] ago still sees a pending file
    /// held open for writing.
    fn writer_grace(&self) -> bool {
        let asked = *self.sync_asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.is_none_or(|t| t.elapsed() >= WRITER_GRACE) {
            return false;
        }
        match self.meta.pending() {
            Ok(rows) => rows
                .iter()
                .any(|e| !e.deleted && self.activity.is_open_for_writing(e.ino)),
            Err(_) => false,
        }
    }

    async fn execute(&self, op: Op) -> Outcome {
        debug!(?op, "write-back");
        match op {
            Op::Delete { ino, path, etag } => {
                let etag = match self.meta.get_any(ino) {
                    Ok(Some(t)) if t.deleted && !t.is_dir() => t.base_etag().or(etag),
                    _ => etag,
                };
                let is_dir = matches!(self.meta.get_any(ino), Ok(Some(t)) if t.is_dir());
                let result = match etag {
                    _ if is_dir => self.delete_folder(ino, &path).await,
                    Some(tag) => self.delete_seen(ino, &path, Some(tag)).await,
                    None => self.delete_checked(&path, Precondition::None).await,
                };
                let _g = self.tree_lock.write().await;
                match result {
                    Ok(()) | Err(RemoteError::NotFound) => {
                        info!(%path, "deleted on the server");
                        self.cache
                            .work_remove_base(ino)
                            .or_log("cache work_remove_base");
                        self.record(self.meta.drop_tombstone(ino))
                    }
                    Err(RemoteError::PreconditionFailed) => {
                        // Changed on the server after it was deleted here: the newer
                        // version wins and comes back on the next listing.
                        warn!(%path, "changed on the server since it was deleted here; keeping the server's version");
                        self.meta
                            .record_event("restored", &path.to_string(), "")
                            .or_log("meta record_event");
                        let parent = self.meta.get_any(ino).ok().flatten().and_then(|e| e.remote);
                        self.cache
                            .work_remove_base(ino)
                            .or_log("cache work_remove_base");
                        let r = self.meta.drop_tombstone(ino);
                        if let Some((p, _)) = parent {
                            self.meta.expire_listing(p).or_log("meta expire_listing");
                        }
                        self.record(r)
                    }
                    Err(e) => self.failed(ino, &path, e),
                }
            }
            Op::Mkdir {
                ino,
                path,
                parent,
                name,
            } => {
                // Recorded on the server side first: a crash after the MKCOL must not leave
                // a folder nobody knows about (a local rmdir then leaves a tombstone).
                match self.meta.start_put(ino, parent, &name) {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Done, // removed meanwhile
                    Err(e) => {
                        warn!(error = %e, "write-back: recording a folder's creation failed");
                        return Outcome::Transient(RemoteError::Local(e.to_string()));
                    }
                }
                let result = self.remote.mkdir(&path).await;
                let created_here = result.is_ok();
                let result = match result {
                    // 405: something exists there already; fine if it is a folder (an
                    // earlier attempt that was cut short, or someone else's).
                    Err(RemoteError::Status(405)) => match self.remote.stat(&path).await {
                        Ok(e) if e.is_dir => {
                            self.meta.expire_listing(ino).or_log("meta expire_listing");
                            Ok(())
                        }
                        Ok(_) => Err(RemoteError::Status(405)),
                        Err(e) => Err(e),
                    },
                    other => other,
                };
                let _g = self.tree_lock.write().await;
                match result {
                    Ok(()) => {
                        info!(%path, "folder created on the server");
                        if self.meta.get(ino).ok().flatten().is_none() {
                            // Deleted locally while it was created: take it back, if it is
                            // ours and still empty (a folder that was there already, or that
                            // someone filled meanwhile, stays).
                            if created_here {
                                match self.delete_folder(ino, &path).await {
                                    Ok(()) | Err(RemoteError::PreconditionFailed) => {}
                                    Err(e) => {
                                        warn!(%path, error = %e, "could not remove a folder deleted while it was created")
                                    }
                                }
                            }
                            return Outcome::Done;
                        }
                        self.record(self.meta.uploaded(ino, parent, &name, None, 0, true))
                    }
                    Err(e) => self.failed(ino, &path, e),
                }
            }
            Op::Move {
                ino,
                from,
                to,
                parent,
                name,
                replaces,
            } => {
                // A file this one replaces (renamed over it here) goes only in the version
                // it was seen in: deleted first, checked, and the MOVE then may not
                // overwrite. Changed there meanwhile: it stays (and comes back here), and
                // the MOVE is refused (this entry then takes a conflict name).
                // Never over what the server has there unless it is the version seen
                // (deleted just below): a name taken meanwhile refuses the MOVE.
                if let Some(r) = replaces {
                    let seen = self
                        .meta
                        .get_any(r)
                        .ok()
                        .flatten()
                        .and_then(|o| o.base_etag());
                    match self.delete_seen(r, &to, seen).await {
                        Ok(()) | Err(RemoteError::NotFound) => {}
                        Err(RemoteError::PreconditionFailed) => {
                            warn!(%to, "the file renamed over here changed on the server; keeping it");
                            self.meta
                                .record_event("restored", &to.to_string(), "")
                                .or_log("meta record_event");
                            let _g = self.tree_lock.write().await;
                            self.meta.drop_tombstone(r).or_log("meta drop_tombstone");
                            self.meta
                                .expire_listing(parent)
                                .or_log("meta expire_listing");
                        }
                        Err(e) => return self.failed(ino, &to, e),
                    }
                }
                if let Err(e) = self.meta.start_move(ino, parent, &name) {
                    warn!(error = %e, "write-back: recording a move failed");
                    return Outcome::Transient(RemoteError::Local(e.to_string()));
                }
                let no_overwrite = crate::lock(&self.caps).move_no_overwrite == Some(true);
                let taken = !no_overwrite
                    && !name.starts_with(super::plan::MOVE_ASIDE_PREFIX)
                    && !matches!(
                        again(|| self.remote.stat(&to)).await,
                        Err(RemoteError::NotFound)
                    );
                let mut result = if taken {
                    // A server that may not refuse Overwrite: F: looked at first.
                    Err(RemoteError::PreconditionFailed)
                } else {
                    self.remote.rename(&from, &to, false).await
                };
                if let Err(RemoteError::NotFound) = result {
                    // Cut short by a crash after the server moved it?
                    if let Ok(e) = self.remote.stat(&to).await {
                        let was_dir = self
                            .meta
                            .get(ino)
                            .ok()
                            .flatten()
                            .is_some_and(|x| x.is_dir());
                        if e.is_dir == was_dir {
                            result = Ok(());
                        }
                    }
                }
                let _g = self.tree_lock.write().await;
                match result {
                    Ok(()) => {
                        info!(%from, %to, "moved on the server");
                        if let Some(r) = replaces {
                            self.forget_replaced(r);
                        }
                        self.record(self.meta.set_remote(ino, parent, &name))
                    }
                    Err(RemoteError::NotFound) => {
                        warn!(%from, "gone from the server before its move; writing it back as new");
                        self.record(self.meta.detach(ino))
                    }
                    // The name is taken on the server (someone else's new file): with
                    // keep-both, this entry takes a conflict name there instead.
                    Err(RemoteError::PreconditionFailed)
                        if self.policy == ConflictPolicy::KeepBoth
                            && !name.starts_with(super::plan::MOVE_ASIDE_PREFIX) =>
                    {
                        self.meta.end_move(ino).or_log("meta end_move");
                        self.rename_to_conflict_copy(ino, parent, &name, &to)
                    }
                    // No answer: the server may or may not have moved it; the next round
                    // checks (see `settle_moves`).
                    Err(e) if e.is_transient() => self.failed(ino, &to, e),
                    Err(e) => {
                        self.meta.end_move(ino).or_log("meta end_move");
                        self.failed(ino, &to, e)
                    }
                }
            }
            Op::Upload {
                ino,
                path,
                parent,
                name,
                base,
                create,
                replaces,
            } => {
                self.upload(ino, path, parent, name, base, create, replaces)
                    .await
            }
        }
    }

    /// Finds out where the server has each entry whose MOVE was sent but not confirmed
    /// (a crash or a lost reply): still at its old place, or at the new one. Until this
    /// succeeds nothing else is planned, so no DELETE or PUT acts on a stale location.
    async fn settle_moves(&self) -> Result<(), RemoteError> {
        let moves = self
            .meta
            .moves_in_flight()
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        for (ino, parent, name) in moves {
            let local = |e: crate::meta::MetaError| RemoteError::Local(e.to_string());
            let from = self.meta.remote_path_of(ino).map_err(local)?;
            let to = match self.meta.remote_path_of(parent).map_err(local)? {
                Some(dir) => dir.join(&name).ok(),
                None => None,
            };
            let is_dir = self
                .meta
                .get_any(ino)
                .map_err(local)?
                .is_some_and(|e| e.is_dir());
            let still_there = match &from {
                Some(from) => match self.remote.stat(from).await {
                    Ok(e) => e.is_dir == is_dir,
                    Err(RemoteError::NotFound) => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
            let moved = match (&to, still_there) {
                (Some(to), false) => match self.remote.stat(to).await {
                    Ok(e) => e.is_dir == is_dir,
                    Err(RemoteError::NotFound) => false,
                    Err(e) => return Err(e),
                },
                _ => false,
            };
            let _g = self.tree_lock.write().await;
            if moved {
                info!(ino, to = ?to.as_ref().map(|t| t.to_string()), "an interrupted move had reached the server");
                // Whatever the store had there was replaced by it.
                if let Ok(Some(o)) = self.meta.occupant(parent, &name) {
                    if o.ino != ino {
                        self.forget_replaced(o.ino);
                    }
                }
                self.meta.set_remote(ino, parent, &name).map_err(local)?;
            } else {
                self.meta.end_move(ino).map_err(local)?;
            }
        }
        Ok(())
    }

    /// Drops the snapshot an upload that is not going to be sent took, unless an earlier,
    /// cut-short upload's base is still needed to recognise what the server holds.
    fn drop_unsent_base(&self, ino: u64) {
        let _work = self.activity.lock_work();
        if !matches!(self.meta.get_any(ino), Ok(Some(e)) if e.put_started) {
            self.cache
                .work_remove_base(ino)
                .or_log("cache work_remove_base");
        }
    }

    fn forget_replaced(&self, r: u64) {
        match self.meta.get_any(r) {
            Ok(Some(e)) if e.deleted => {
                self.meta.drop_tombstone(r).or_log("meta drop_tombstone");
            }
            Ok(Some(_)) => {
                self.meta.detach(r).or_log("meta detach");
            }
            _ => {}
        }
    }

    fn record<E: std::fmt::Display>(&self, r: Result<(), E>) -> Outcome {
        if let Err(e) = r {
            warn!(error = %e, "write-back: recording the outcome failed");
        }
        Outcome::Done
    }

    /// Records why `ino`'s change does not move. Should the store fail to take it, that
    /// is logged (the change stays pending either way, and is tried again).
    fn mark(&self, ino: u64, problem: Problem) {
        if let Err(e) = self.meta.set_problem(ino, Some(&problem)) {
            warn!(ino, %problem, error = %e, "write-back: recording the problem failed");
        }
    }

    /// Sorts a failed operation: retry, pause, or flag the entry.
    fn failed(&self, ino: u64, path: &RemotePath, e: RemoteError) -> Outcome {
        match e {
            // Locked by someone else: this entry waits (retried with backoff by `run`),
            // the rest of the queue goes on.
            RemoteError::Locked(owner) => {
                warn!(%path, owner = owner.as_deref().unwrap_or("?"), "locked on the server; the change stays pending and is retried");
                self.mark(ino, Problem::Locked { owner });
                self.locks_waiting.store(true, Ordering::SeqCst);
                Outcome::Done
            }
            // The server not reached, or asking everyone to slow down: the whole queue
            // waits (every other request would fail the same way).
            RemoteError::Unreachable(_)
            | RemoteError::Transfer(_)
            | RemoteError::ShortBody { .. }
            | RemoteError::Status(429 | 503) => Outcome::Transient(e),
            // A refusal of this one change that may pass: 409 (its folder is not, or no
            // longer, there on the server), another 5xx, a local read that failed. It is
            // retried with backoff, visibly, and never holds up the rest of the queue.
            e if e.is_transient()
                || matches!(e, RemoteError::Local(_) | RemoteError::Status(409)) =>
            {
                if matches!(e, RemoteError::Status(409)) {
                    // A folder on its way is not (or no longer) on the server: the folders
                    // above it are listed again at the next poll, and the three-way rules
                    // (kept and written back again, or gone) settle it.
                    self.relist_ancestors(ino);
                }
                warn!(%path, error = %e, "write-back: this change is retried later; the rest goes on");
                self.mark(ino, Problem::Retrying(e.to_string()));
                self.retries_waiting.store(true, Ordering::SeqCst);
                Outcome::Done
            }
            RemoteError::Auth(401) => Outcome::Auth(e),
            // 403 on one path: this entry is refused (a read-only share, a blocked name);
            // the rest of the queue goes on.
            RemoteError::Auth(status) => {
                warn!(%path, status, "the server forbids this change; the local copy is kept");
                self.mark(ino, Problem::Refused(format!("forbidden ({status})")));
                Outcome::Done
            }
            RemoteError::InsufficientStorage => {
                warn!(%path, "the server is full (507); the file stays local and dirty, retried later");
                self.mark(ino, Problem::NoSpace);
                Outcome::Done
            }
            RemoteError::PreconditionFailed => {
                warn!(%path, "conflict: the server has another version; the local version is kept and not uploaded");
                self.mark(ino, Problem::Conflict);
                Outcome::Done
            }
            e => {
                warn!(%path, error = %e, "write-back refused by the server; the local copy is kept");
                self.mark(ino, Problem::Refused(e.to_string()));
                Outcome::Done
            }
        }
    }

    /// Entry `ino`, renamed here to `name` in folder `parent` where the server already has
    /// something else (`to`): it takes a conflict name next to it instead (moved there by
    /// the next round), and the server's entry shows up at the next listing. Nothing waits
    /// for a person.
    fn rename_to_conflict_copy(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        to: &RemotePath,
    ) -> Outcome {
        let now = SystemTime::now();
        let copy = (1..1000)
            .map(|n| conflict_name(name, &self.host, now, n))
            .find(|c| {
                matches!(self.meta.child(parent, c), Ok(None))
                    && matches!(self.meta.occupant(parent, c), Ok(None))
            });
        let Some(copy) = copy else {
            return self.failed(ino, to, RemoteError::PreconditionFailed);
        };
        if let Err(e) = self.meta.rename_local(ino, parent, &copy, None) {
            warn!(error = %e, "write-back: renaming to a conflict copy failed");
            return Outcome::Transient(RemoteError::Local(e.to_string()));
        }
        warn!(%to, copy = %copy, "the name is taken on the server by someone else's file; this one is kept as a conflict copy next to it");
        self.meta
            .record_event("kept-both", &to.to_string(), &copy)
            .or_log("meta record_event");
        self.meta
            .expire_listing(parent)
            .or_log("meta expire_listing");
        self.inval.entry(parent, name);
        self.inval.entry(parent, &copy);
        self.inval.inode(ino);
        self.activity.wake();
        Outcome::Done
    }

    /// Deletes file `ino` (a tombstone, or a file being replaced) at `path` if the server
    /// has the version `seen` this client saw there, or the version an upload of its own
    /// left that a crash kept from being recorded (recognised by its content); else
    /// [`RemoteError::PreconditionFailed`]: someone else's change, which stays.
    async fn delete_seen(
        &self,
        ino: u64,
        path: &RemotePath,
        seen: Option<crate::remote::ETag>,
    ) -> Result<(), RemoteError> {
        let result = match seen {
            Some(seen) => self.delete_checked(path, Precondition::IfMatch(seen)).await,
            // No version was ever seen here: only our own interrupted upload may go.
            None => match again(|| self.remote.stat(path)).await {
                Err(RemoteError::NotFound) => return Ok(()),
                Ok(_) => Err(RemoteError::PreconditionFailed),
                Err(e) => return Err(e),
            },
        };
        if !matches!(result, Err(RemoteError::PreconditionFailed)) {
            return result;
        }
        let started = matches!(self.meta.get_any(ino), Ok(Some(e)) if e.put_started);
        debug!(%path, started, "the server has another version than the one deleted here");
        if let (true, Ok(Some(base))) = (started, self.cache.work_base(ino)) {
            let len = base.metadata().map(|m| m.len()).unwrap_or(0);
            if let Ok(Some(tag)) = self.server_has_prefix_of(path, &base, len).await {
                info!(%path, "the server's version is our own interrupted upload; deleting it");
                return match self.delete_checked(path, Precondition::IfMatch(tag)).await {
                    // Still changing: the server is finishing that upload.
                    Err(RemoteError::PreconditionFailed) => Err(still_arriving()),
                    other => other,
                };
            }
        }
        result
    }

    /// Asks for the folders above `ino` to be listed again at the next poll, outermost
    /// first.
    fn relist_ancestors(&self, ino: u64) {
        let mut chain = Vec::new();
        let mut at = self.meta.get_any(ino).ok().flatten().map(|e| e.parent);
        while let Some(p) = at.filter(|p| *p != 0 && !chain.contains(p)) {
            self.meta.expire_listing(p).or_log("meta expire_listing");
            chain.push(p);
            at = self.meta.get(p).ok().flatten().map(|e| e.parent);
        }
        chain.reverse();
        self.activity.want_listed(chain);
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        ino: u64,
        path: RemotePath,
        parent: u64,
        name: String,
        base: Option<crate::remote::ETag>,
        create: bool,
        replaces: Option<u64>,
    ) -> Outcome {
        let _flight = InFlight::new(&self.in_flight, ino);
        let Ok(Some(mut entry)) = self.meta.get(ino) else {
            return Outcome::Done;
        };
        let changes = self.activity.changes(ino);
        // What an upload cut short by a crash was sending, for recognising it below.
        let previous = if entry.put_started {
            self.cache.work_base(ino).ok().flatten()
        } else {
            None
        };
        if let Some(prev) = &previous {
            // Settled before this attempt's snapshot replaces that base: however many
            // attempts are cut short in a row, the server's state stays recognisable.
            match self.recognise_cut_upload(&entry, &path, prev).await {
                Ok(true) => match self.meta.get(ino) {
                    Ok(Some(e)) => entry = e,
                    _ => return Outcome::Done,
                },
                Ok(false) => {}
                Err(e) => return self.failed(ino, &path, e),
            }
        }
        let source = match self.source(&entry) {
            Ok(Some(s)) => s,
            Ok(None) if self.activity.is_open_for_writing(ino) => return Outcome::Done,
            Ok(None) if entry.remote.is_some() => {
                warn!(%path, "dirty but no local content to upload; keeping the server's version");
                self.meta
                    .set_local(
                        ino,
                        &crate::meta::LocalAttrs {
                            dirty: Some(false),
                            ..Default::default()
                        },
                    )
                    .or_log("meta set_local");
                return Outcome::Done;
            }
            Ok(None) => {
                warn!(%path, "no local content to upload (deleted on the server before it was hydrated); forgetting it");
                self.meta.remove_local(ino).or_log("meta remove_local");
                self.inval.entry(entry.parent, &entry.name);
                return Outcome::Done;
            }
            // Removed (deleted or uploaded by a racing step) since it was looked at.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Done,
            Err(e) => {
                warn!(%path, error = %e, "cannot read the local copy");
                self.mark(ino, Problem::Refused(format!("local copy unreadable: {e}")));
                return Outcome::Done;
            }
        };
        let (file, len) = source;
        // A replaced file whose own upload a crash cut short: the server may hold part of
        // that upload; recognise it before taking the file's place.
        if let Some(r) = replaces {
            if let (Ok(Some(old)), Ok(Some(sent))) = (self.meta.get_any(r), self.cache.work_base(r))
            {
                if old.put_started {
                    if let Err(e) = self.recognise_cut_upload(&old, &path, &sent).await {
                        return self.failed(ino, &path, e);
                    }
                }
            }
        }
        // The plan may be a few operations old: take the version to replace from the
        // store as it is now (an upload just before may have advanced it).
        let base = match replaces {
            Some(r) => match self.meta.get_any(r) {
                Ok(Some(o)) => o.base_etag(),
                _ => base,
            },
            None => entry.base_etag().or(base),
        };
        let precondition = match (&base, create) {
            (Some(tag), _) => Precondition::IfMatch(tag.clone()),
            (None, true) => Precondition::IfNoneExists,
            // No version known of a file that should be there: nothing may be replaced
            // unseen, so only where there is nothing.
            (None, false) => Precondition::IfNoneExists,
        };
        let had_started = entry.put_started;
        if let Some(r) = replaces {
            match self.meta.take_place(ino, r) {
                Ok(true) => {
                    let _work = self.activity.lock_work();
                    self.cache
                        .work_remove_base(r)
                        .or_log("cache work_remove_base");
                }
                Ok(false) => {
                    // Deleted, or the place changed hands meanwhile: plan again.
                    self.drop_unsent_base(ino);
                    return Outcome::Done;
                }
                Err(e) => return Outcome::Transient(RemoteError::Local(e.to_string())),
            }
        } else {
            let started = if create {
                self.meta.start_put(ino, parent, &name)
            } else {
                self.meta.start_overwrite(ino)
            };
            match started {
                Ok(true) => {}
                Ok(false) => {
                    // Deleted meanwhile: nothing to send.
                    self.drop_unsent_base(ino);
                    return Outcome::Done;
                }
                Err(e) => return Outcome::Transient(RemoteError::Local(e.to_string())),
            }
        }
        let mut result = match &precondition {
            // If-Match compares strongly: a weak tag (Apache's for a second after a
            // change) would only cost a 412. Checked by the client instead.
            Precondition::IfMatch(t) if t.weak => {
                self.write_staged(ino, &path, &file, len, precondition, entry.mtime)
                    .await
            }
            _ => {
                self.write(ino, &path, &file, len, precondition, entry.mtime)
                    .await
            }
        };
        if matches!(result, Err(RemoteError::PreconditionFailed)) && had_started {
            // A crash may have cut our own earlier upload short, which changed the
            // server's version. If the server has a prefix of exactly this content, it
            // is ours: finish it.
            let (sent_file, sent_len) = match &previous {
                Some(f) => (f, f.metadata().map(|m| m.len()).unwrap_or(0)),
                None => (&file, len),
            };
            match self.server_has_prefix_of(&path, sent_file, sent_len).await {
                Ok(Some(tag)) => {
                    info!(%path, "finishing an upload a crash interrupted");
                    // Should this PUT be cut short too, the next attempt expects the
                    // server's version to be this one (or what this PUT sends).
                    if let Err(e) = self.meta.set_base_version(ino, &tag) {
                        return Outcome::Transient(RemoteError::Local(e.to_string()));
                    }
                    result = self
                        .write(
                            ino,
                            &path,
                            &file,
                            len,
                            Precondition::IfMatch(tag),
                            entry.mtime,
                        )
                        .await;
                    if matches!(result, Err(RemoteError::PreconditionFailed)) {
                        result = Err(still_arriving());
                    }
                }
                Ok(None) => {}
                Err(e) => result = Err(e),
            }
        }
        if matches!(result, Err(RemoteError::PreconditionFailed)) && base.is_some() {
            // Nothing there any more (deleted on the server, or a replaced file whose
            // DELETE a crash kept us from recording): nobody's version is lost by
            // writing ours as new.
            if let Err(RemoteError::NotFound) = self.remote.stat(&path).await {
                info!(%path, "gone from the server; uploading the local version as new");
                result = self
                    .write(
                        ino,
                        &path,
                        &file,
                        len,
                        Precondition::IfNoneExists,
                        entry.mtime,
                    )
                    .await;
            }
        }
        let etag = match result {
            Ok(tag) => tag,
            Err(e) => {
                self.set(|p| p.current = None);
                if matches!(
                    e,
                    RemoteError::Status(_)
                        | RemoteError::PreconditionFailed
                        | RemoteError::InsufficientStorage
                        | RemoteError::Auth(_)
                        | RemoteError::Locked(_)
                ) {
                    // The server answered: it refused the PUT as a whole, so it holds no
                    // part of it; a later mismatch is somebody else's version.
                    self.meta
                        .clear_put_started(ino)
                        .or_log("meta clear_put_started");
                }
                if self.activity.changes(ino) != changes {
                    // Written locally meanwhile: it stays dirty and goes up again.
                    debug!(%path, error = %e, "changed while uploading; will upload again");
                    return Outcome::Done;
                }
                if matches!(e, RemoteError::PreconditionFailed)
                    && self.policy == ConflictPolicy::KeepBoth
                {
                    return self.keep_both(ino, &path).await;
                }
                return self.failed(ino, &path, e);
            }
        };
        self.set(|p| p.current = None);
        // The base (what was sent) goes only once the outcome is recorded: until then a
        // crash leaves it for recognising what the server holds.
        let _g = self.tree_lock.write().await;
        let row = self.meta.get_any(ino).ok().flatten();
        if row.as_ref().is_some_and(|e| e.deleted) {
            // Deleted (or replaced) locally while it uploaded: the tombstone's DELETE or
            // replacement must apply to the version the server has now.
            if self
                .meta
                .uploaded(ino, parent, &name, etag.as_ref(), len, true)
                .is_ok()
            {
                let _work = self.activity.lock_work();
                self.cache.work_remove(ino).or_log("cache work_remove");
            }
            return Outcome::Done;
        }
        if row.is_none() {
            // Deleted locally while it uploaded: take it back off the server.
            let pre = etag
                .clone()
                .map_or(Precondition::None, Precondition::IfMatch);
            if let Err(e) = self.delete_checked(&path, pre).await {
                warn!(%path, error = %e, "could not remove a file deleted while it uploaded");
            }
            let _work = self.activity.lock_work();
            self.cache
                .work_remove_base(ino)
                .or_log("cache work_remove_base");
            return Outcome::Done;
        }
        // Decided and recorded under the working-copy lock, so no writer can attach
        // between the decision and the publishing of the working copy as a clean blob.
        let _work = self.activity.lock_work();
        let clean = self.activity.changes(ino) == changes
            && !self.activity.is_open_for_writing(ino)
            && !self.activity.has_handles(ino);
        if let Some(r) = replaces {
            self.forget_replaced(r);
        }
        if let Err(e) = self
            .meta
            .uploaded(ino, parent, &name, etag.as_ref(), len, clean)
        {
            warn!(error = %e, "write-back: recording the upload failed");
            return Outcome::Done;
        }
        self.cache
            .work_remove_base(ino)
            .or_log("cache work_remove_base");
        info!(%path, bytes = len, "uploaded");
        if clean && self.cache.work_path(ino).exists() {
            let version = match &etag {
                Some(t) => t.value.clone(),
                None => match self.meta.get(ino) {
                    Ok(Some(e)) => e.content_version(),
                    _ => return Outcome::Done,
                },
            };
            if let Err(e) = self.cache.adopt(ino, &version) {
                warn!(error = %e, "could not keep the uploaded copy in the cache");
                self.cache.work_remove(ino).or_log("cache work_remove");
            }
        }
        Outcome::Done
    }

    /// Settles a conflict of the write-back by keeping both versions (see
    /// [`Uploader::keep_both_now`]).
    async fn keep_both(&self, ino: u64, path: &RemotePath) -> Outcome {
        match self.keep_both_now(ino, path).await {
            // Split, or gone meanwhile (the next round uploads it as new).
            Ok(_) => Outcome::Done,
            // A 412 here: no copy could be made; the file waits as a conflict.
            Err(e) => self.failed(ino, path, e),
        }
    }

    /// Keeps both versions of file `ino`, whose server version at `path` is not the one
    /// its local content is based on: the server's takes the name, the local one becomes
    /// `NAME (conflict HOST DATE TIME).EXT` next to it and is uploaded as new. Returns the
    /// copy's name, or `None` if the server has no file there any more.
    pub(crate) async fn keep_both_now(
        &self,
        ino: u64,
        path: &RemotePath,
    ) -> Result<Option<String>, RemoteError> {
        let server = match self.remote.stat(path).await {
            Ok(e) if !e.is_dir => e,
            // A folder took its place: the local file waits for a person.
            Ok(_) => return Err(RemoteError::PreconditionFailed),
            Err(RemoteError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let local_err = |e: crate::meta::MetaError| RemoteError::Local(e.to_string());
        let _g = self.tree_lock.write().await;
        let Some(local) = self.meta.get(ino).map_err(local_err)? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let mut copy = None;
        for n in 1..1000 {
            let candidate = conflict_name(&local.name, &self.host, now, n);
            if matches!(self.meta.child(local.parent, &candidate), Ok(None))
                && matches!(self.meta.occupant(local.parent, &candidate), Ok(None))
            {
                copy = Some(candidate);
                break;
            }
        }
        let Some(copy) = copy else {
            return Err(RemoteError::PreconditionFailed);
        };
        let local_path = self
            .meta
            .path_of(ino)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| path.to_string());
        let remote_place = local.remote.clone();
        let fresh = self
            .meta
            .split_conflict(ino, &copy, &server)
            .map_err(local_err)?;
        warn!(%path, copy = %copy, "conflict: changed here and on the server; the server's version keeps the name, the local one is kept as a copy");
        self.meta
            .record_event("kept-both", &local_path, &copy)
            .or_log("meta record_event");
        self.inval.entry(local.parent, &local.name);
        self.inval.entry(local.parent, &copy);
        self.inval.inode(ino);
        if let Some((p, n)) = remote_place {
            self.inval.entry(p, &n);
        }
        if fresh.is_some() {
            self.remote_news.fetch_add(1, Ordering::SeqCst);
        }
        self.activity.wake();
        Ok(Some(copy))
    }

    /// The local content of `e` to upload: its working copy (through its base, so a writer
    /// forks instead of changing it under the upload), or for a clean file a cached blob.
    /// `None` while a writer has it open, or if there is no local content.
    fn source(&self, e: &crate::meta::Entry) -> std::io::Result<Option<(std::fs::File, u64)>> {
        let other = |e: edrive_cache::CacheError| match e {
            edrive_cache::CacheError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                source
            }
            e => std::io::Error::other(e.to_string()),
        };
        {
            let _work = self.activity.lock_work();
            if self.activity.is_open_for_writing(e.ino) {
                return Ok(None);
            }
            if self.cache.work_path(e.ino).exists() {
                let f = self.cache.work_link_base(e.ino).map_err(other)?;
                let len = f.metadata()?.len();
                return Ok(Some((f, len)));
            }
        }
        if e.size == 0 {
            let f = self.cache.work_create_empty(e.ino).map_err(other)?;
            return Ok(Some((f, 0)));
        }
        for v in self.cache.versions_of(e.ino) {
            if let Some(blob) = self.cache.get(&BlobKey::new(e.ino, v)) {
                let f = blob.file().try_clone()?;
                let len = blob.len();
                return Ok(Some((f, len)));
            }
        }
        Ok(None)
    }

    async fn put(
        &self,
        path: &RemotePath,
        file: &std::fs::File,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<crate::remote::ETag>, RemoteError> {
        *self.sent.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        *self.put_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.set(|p| p.current = Some((path.to_string(), 0, len)));
        let body = file_stream(file, len, self)?;
        self.remote
            .put(
                path,
                body,
                len,
                precondition,
                mtime.filter(|t| *t > UNIX_EPOCH),
            )
            .await
    }

    /// Whether the server's file at `path` is what an earlier, cut-short upload of `e`
    /// left (a prefix of `sent`, the base that upload read) rather than the version `e` is
    /// based on; if so, that version is recorded as `e`'s base, since replacing it loses
    /// nobody's work.
    async fn recognise_cut_upload(
        &self,
        e: &crate::meta::Entry,
        path: &RemotePath,
        sent: &std::fs::File,
    ) -> Result<bool, RemoteError> {
        let info = match self.remote.stat(path).await {
            Ok(i) => i,
            Err(RemoteError::NotFound) => return Ok(false),
            Err(err) => return Err(err),
        };
        if info.etag.as_ref().map(|t| &t.value) == e.etag.as_ref() {
            return Ok(false);
        }
        let len = sent.metadata().map(|m| m.len()).unwrap_or(0);
        match self.server_has_prefix_of(path, sent, len).await? {
            Some(tag) => {
                info!(%path, "the server has what an interrupted upload of ours sent");
                self.meta
                    .set_base_version(e.ino, &tag)
                    .map_err(|err| RemoteError::Local(err.to_string()))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// If the server's file at `path` is a prefix of (or equal to) the local content,
    /// its version tag.
    async fn server_has_prefix_of(
        &self,
        path: &RemotePath,
        file: &std::fs::File,
        len: u64,
    ) -> Result<Option<crate::remote::ETag>, RemoteError> {
        let info = match self.remote.stat(path).await {
            Ok(i) => i,
            Err(RemoteError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        debug!(%path, server_size = info.size, server_etag = ?info.etag, local_len = len, "comparing the server's file with what we sent");
        // An empty file proves nothing (somebody's new file may be empty too), but it also
        // holds nothing: replacing or deleting it loses no data.
        if info.is_dir || info.size > len {
            return Ok(None);
        }
        let dl = self.remote.read(path, None).await?;
        let got = info.etag.as_ref().and_then(|a| dl.version_for(&a.value));
        if let (Some(a), Some(b)) = (&info.etag, got) {
            if a.value != b.value {
                // Changed between the two requests: compare again next time.
                return Err(still_arriving());
            }
        }
        let mut body = dl.body;
        let mut offset = 0u64;
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            buf.resize(chunk.len(), 0);
            let n = crate::positional::read_full_at(file, &mut buf, offset)
                .map_err(|e| RemoteError::Local(e.to_string()))?;
            if n != chunk.len() || buf[..n] != chunk[..] {
                let at = buf[..n].iter().zip(chunk.iter()).position(|(a, b)| a != b);
                debug!(%path, offset, n, chunk = chunk.len(), ?at, local = ?at.map(|i| &buf[i..(i + 8).min(n)]), server = ?at.map(|i| &chunk[i..(i + 8).min(chunk.len())]), "the server's file differs from what we sent");
                return Ok(None);
            }
            offset += n as u64;
        }
        Ok(info.etag.or(dl.etag))
    }
}

/// Streams `len` bytes of `file` in [`CHUNK`]s, reporting progress; memory stays flat.
fn file_stream(file: &std::fs::File, len: u64, up: &Uploader) -> Result<ByteStream, RemoteError> {
    let progress = up.progress_handle();
    if len <= INLINE_BODY {
        // A small file is read at once, here: its pages were just written, and a read on
        // the blocking pool would cost two thread switches per file of an untar.
        let mut buf = vec![0u8; len as usize];
        let n = crate::positional::read_full_at(file, &mut buf, 0)
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        if n as u64 != len {
            return Err(RemoteError::Local(
                "the local copy got shorter during upload".into(),
            ));
        }
        progress.sent(len);
        let item: Result<Bytes, RemoteError> = Ok(Bytes::from(buf));
        return Ok(Box::pin(futures_util::stream::iter(
            (len > 0).then_some(item),
        )));
    }
    let file = Arc::new(
        file.try_clone()
            .map_err(|e| RemoteError::Local(e.to_string()))?,
    );
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let file = file.clone();
        let progress = progress.clone();
        async move {
            if offset >= len {
                return None;
            }
            let want = (len - offset).min(CHUNK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let n = crate::positional::read_full_at(&file, &mut buf, offset)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            })
            .await;
            let item = match read {
                Ok(Ok(buf)) if !buf.is_empty() => {
                    let n = buf.len() as u64;
                    progress.sent(offset + n);
                    Ok(Bytes::from(buf))
                }
                Ok(Ok(_)) => Err(RemoteError::Local(
                    "the local copy got shorter during upload".into(),
                )),
                Ok(Err(e)) => Err(RemoteError::Local(e.to_string())),
                Err(e) => Err(RemoteError::Local(e.to_string())),
            };
            let next = match &item {
                Ok(b) => offset + b.len() as u64,
                Err(_) => len,
            };
            Some((item, next))
        }
    });
    Ok(Box::pin(stream))
}

/// Lets the body stream report bytes sent.
#[derive(Clone)]
struct ProgressHandle(Arc<Mutex<u64>>);

impl ProgressHandle {
    fn sent(&self, n: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }
}

impl Uploader {
    fn progress_handle(&self) -> ProgressHandle {
        ProgressHandle(self.sent.clone())
    }
}

/// `d` ± up to 25 %, from the clock's low bits (no RNG dependency for this).
/// The server's copy changed again between two requests while it held a prefix of our
/// own content: it is still writing an upload of ours a crash cut off. Retried later.
fn still_arriving() -> RemoteError {
    RemoteError::Transfer("the server is still receiving an earlier upload of this file".into())
}

/// Whether `op` uploads a file the server does not have yet (nothing else depends on it).
fn is_new_file_upload(op: &Op) -> bool {
    matches!(
        op,
        Op::Upload {
            create: true,
            replaces: None,
            ..
        }
    )
}

fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.75 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(f)
}
