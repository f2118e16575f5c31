//! Hydration: fetching a file's content from the server into the cache, once, while any
//! number of readers are served from the bytes that have already arrived.
//!
//! A transfer writes into a cache fill (a temp file); it becomes a cached blob only when
//! every promised byte arrived, so a short or broken body is never cached as complete.
//! When the last reader closes early, or the download fails, what arrived is kept as a
//! partial download with its map of present ranges (synced first), and the next download
//! of that version starts from it, also after a restart: a half-read 10 GiB video costs
//! what was read, once.
//!
//! One main request runs at a time. It starts at the beginning of the file; a read that
//! needs bytes far ahead of it (more than [`SEEK_AHEAD`]), or in a gap behind it, sends it
//! there with a ranged GET: a seek in a cold video waits for its own bytes, not for
//! everything before them.
//!
//! When readers want more than the main request brings and it is slow (under
//! [`PARALLEL_BELOW`]: a server or link that caps each connection, or a long way to the
//! server), up to `streams - 1` helper requests fetch wanted pieces of [`HELPER_CHUNK`]
//! further ahead, each with its own ranged GET. The main request ends where a helper's
//! piece begins and goes on after it. A fast single request (a server next door) gets no
//! helpers: more connections would only share the same CPU or disk.
//!
//! Only what readers are about to need is fetched: each read wants its bytes plus a
//! read-ahead window of twice what was read sequentially so far (from [`MIN_WINDOW`] to
//! [`MAX_WINDOW`]), which falls back when reads jump. When the download has everything
//! wanted it pauses (the server waits on the connection) until a read wants more, and
//! ends its request after [`PAUSE_LIMIT`], so a video watched halfway costs about half
//! its size. Pins and opens for writing want the whole
//! file ([`Transfer::wait`]).
//!
//! Here: the settings, the types and the [`Hydrator`] (starting and releasing
//! transfers). Its parts: `demand` (what readers want; pure bookkeeping), `transfer`
//! (reading and writing one transfer), `download` (the main request's loop), `helpers`
//! (the extra ranged requests).

mod demand;
mod download;
mod helpers;
mod transfer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use edrive_cache::{Blob, BlobKey, Cache};
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info_span, warn, Instrument};

use crate::error::FsError;
use crate::meta::Meta;
use crate::ranges::Ranges;
use crate::remote::{Remote, RemoteError, RemotePath};

/// Bytes of a download written to the cache at once when they arrive back to back.
const COALESCE: usize = 1 << 20;

/// How far ahead of the running request a read may be and still wait for it rather than
/// send it there (the kernel's read-ahead stays well within this).
const SEEK_AHEAD: u64 = 8 << 20;

/// A request sent to serve a read starts at that read's offset rounded down to this.
const SEEK_ALIGN: u64 = 1 << 20;

/// Bytes a request delivers before a read may send the download elsewhere, so that
/// readers at two places share it instead of restarting it at every read.
const MIN_RUN: u64 = 1 << 20;

/// Read-ahead after a read that does not follow the previous one (and at open).
const MIN_WINDOW: u64 = 4 << 20;

/// Most read-ahead (it is twice what was read sequentially, at least [`MIN_WINDOW`]).
const MAX_WINDOW: u64 = 128 << 20;

/// How long a request waits, paused, for readers to want more before it is ended
/// (shorter than servers' idle timeouts, so the server never cuts it first).
const PAUSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A stopped download starts again only for at least this many wanted bytes (or for a
/// reader waiting), so that a slow reader does not cause a request per read.
const RESUME_MIN: u64 = 2 << 20;

/// Bytes one helper request fetches (see the module doc).
const HELPER_CHUNK: u64 = 4 << 20;

/// Helpers take pieces at least this far ahead of the main request, which would soon get
/// to nearer bytes anyway.
const HELPER_LEAD: u64 = 4 << 20;

/// Helpers are added while the main request brings less than this many bytes a second.
const PARALLEL_BELOW: f64 = (96 << 20) as f64;

/// How long the main request must have run (unpaused) before its speed is judged.
const RATE_SAMPLE: std::time::Duration = std::time::Duration::from_millis(500);

/// A read starting at most this far after the previous read's end still counts as
/// sequential (the kernel's read-ahead requests arrive slightly out of order).
const SEQUENTIAL_SLACK: u64 = 2 << 20;

/// What readers want fetched.
#[derive(Debug, Default)]
struct Demand {
    /// Bytes wanted (read, or within the read-ahead window of a read).
    wanted: Ranges,
    /// Start of the run of sequential reads that ended at `last_end`.
    run_start: u64,
    /// End of the last read.
    last_end: u64,
    /// Readers waiting now for bytes that are not here.
    starving: usize,
}

/// How far a transfer got.
#[derive(Clone, Debug)]
struct Progress {
    /// Bytes in the fill, readable.
    covered: Ranges,
    /// Where the running request writes next.
    at: u64,
    outcome: Option<Result<(), Arc<FsError>>>,
}

/// One download in flight (or just finished), shared by every reader of that version.
pub struct Transfer {
    key: BlobKey,
    len: u64,
    /// The server version (ETag value) the listing promised, checked against the reply.
    expected_etag: Option<String>,
    /// Open handles reading through this transfer; the download is cancelled when the
    /// last one closes before it completes.
    openers: std::sync::atomic::AtomicUsize,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    progress: watch::Receiver<Progress>,
    /// The fill being written; taken by the commit, or parked as a partial download.
    fill: Arc<Mutex<Option<edrive_cache::Fill>>>,
    reader: std::fs::File,
    blob: Mutex<Option<Arc<Blob>>>,
    /// An offset a reader needs that the running request is not about to reach.
    seek: Mutex<Option<u64>>,
    /// What readers want fetched.
    demand: Mutex<Demand>,
    /// Wakes the download when `seek` or `demand` changed, or a helper ended a piece.
    seek_wake: tokio::sync::Notify,
    /// Every byte written to the fill so far, by any request. Readers learn of them
    /// through `progress` (all but the file's last bytes: see [`Transfer::record`]).
    written: Mutex<Ranges>,
    /// Pieces helper requests are fetching now.
    claimed: Mutex<Ranges>,
    /// Where the main request writes next.
    main_at: std::sync::atomic::AtomicU64,
    /// A helper's error that ends the transfer (the server has another version now).
    fatal: Mutex<Option<FsError>>,
    /// Set when a helper request failed otherwise: no more helpers for this transfer.
    helpers_off: std::sync::atomic::AtomicBool,
}

impl Transfer {}

/// A piece a helper fetches, given back when dropped (fetched, or failed: the main request
/// or another helper fetches what is missing). The download and its readers are woken: a
/// reader may now need to send the download there.
struct Claim<'a> {
    transfer: &'a Transfer,
    tx: &'a watch::Sender<Progress>,
    start: u64,
    end: u64,
}

/// Whether the main request, measured from `since` (when, and at which offset) to `pos`
/// now, is slow enough for helpers to be worth it (see [`PARALLEL_BELOW`]).
fn slow(since: (tokio::time::Instant, u64), pos: u64) -> bool {
    let t = since.0.elapsed();
    t >= RATE_SAMPLE && (pos.saturating_sub(since.1) as f64) < PARALLEL_BELOW * t.as_secs_f64()
}

/// A reader waiting for bytes that are not here, counted in [`Demand::starving`] until
/// it stops waiting.
struct Starving<'a>(&'a Transfer);

impl Drop for Starving<'_> {
    fn drop(&mut self) {
        let mut d = self.0.demand();
        d.starving = d.starving.saturating_sub(1);
    }
}

/// Errors are shared between readers; each gets its own equivalent copy.
fn clone_error(e: &FsError) -> FsError {
    match e {
        FsError::Remote(r) => FsError::Remote(r.clone()),
        FsError::Stale => FsError::Stale,
        other => FsError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Starts downloads and lets concurrent openers of the same version share one.
pub struct Hydrator {
    remote: Arc<dyn Remote>,
    cache: Arc<Cache>,
    meta: Arc<Meta>,
    inflight: Mutex<HashMap<BlobKey, Arc<Transfer>>>,
    /// Keys whose partial download is being parked (synced) after the last close; a new
    /// download of one waits for it, so that it resumes what was fetched.
    parking: Mutex<std::collections::HashSet<BlobKey>>,
    parked: std::sync::Condvar,
    /// Most requests one download runs at once (the main one and its helpers).
    streams: usize,
}

impl Hydrator {
    /// A hydrator over these stores; one download runs at most `streams` requests at once.
    pub fn new(
        remote: Arc<dyn Remote>,
        cache: Arc<Cache>,
        meta: Arc<Meta>,
        streams: usize,
    ) -> Hydrator {
        Hydrator {
            streams: streams.max(1),
            remote,
            cache,
            meta,
            inflight: Mutex::new(HashMap::new()),
            parking: Mutex::new(std::collections::HashSet::new()),
            parked: std::sync::Condvar::new(),
        }
    }

    /// How many downloads are running now.
    pub fn running(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether a download of `key` is running now.
    pub fn is_running(&self, key: &BlobKey) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Bytes of `key` downloaded so far, if a download of it is running.
    pub fn downloaded(&self, key: &BlobKey) -> Option<u64> {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|t| t.progress.borrow().covered.total())
    }

    /// The running transfer for `key`, or a new one fetching `path` (`len` bytes).
    /// Each call counts as one opener until [`Hydrator::release`].
    pub fn start(
        self: &Arc<Self>,
        key: BlobKey,
        path: RemotePath,
        len: u64,
        expected_etag: Option<String>,
    ) -> Result<Arc<Transfer>, FsError> {
        use std::sync::atomic::Ordering;
        let mut inflight = loop {
            self.wait_parked(&key);
            let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if !self.is_parking(&key) {
                break inflight;
            }
        };
        if let Some(t) = inflight.get(&key) {
            t.openers.fetch_add(1, Ordering::SeqCst);
            return Ok(t.clone());
        }
        let mut present = Ranges::default();
        let resumed = self.cache.resume_fill(&key, len).unwrap_or_else(|e| {
            warn!(ino = key.entry, error = %e, "partial download unusable; starting over");
            None
        });
        let fill = match resumed {
            Some((fill, ranges)) => {
                for (s, e) in ranges {
                    present.add(s, e);
                }
                debug!(
                    ino = key.entry,
                    bytes = present.total(),
                    "resuming a partial download"
                );
                fill
            }
            None => self.cache.begin_fill(key.clone(), len)?,
        };
        let reader = fill.reader()?;
        let written = present.clone();
        let (tx, rx) = watch::channel(Progress {
            covered: present,
            at: 0,
            outcome: None,
        });
        let tx = Arc::new(tx);
        let transfer = Arc::new(Transfer {
            key: key.clone(),
            len,
            expected_etag,
            openers: std::sync::atomic::AtomicUsize::new(1),
            task: Mutex::new(None),
            progress: rx,
            fill: Arc::new(Mutex::new(Some(fill))),
            reader,
            blob: Mutex::new(None),
            seek: Mutex::new(None),
            demand: Mutex::new(Demand {
                wanted: {
                    let mut r = Ranges::default();
                    r.add(0, len.min(MIN_WINDOW));
                    r
                },
                run_start: 0,
                last_end: 0,
                starving: 0,
            }),
            seek_wake: tokio::sync::Notify::new(),
            written: Mutex::new(written),
            claimed: Mutex::new(Ranges::default()),
            main_at: std::sync::atomic::AtomicU64::new(0),
            fatal: Mutex::new(None),
            helpers_off: std::sync::atomic::AtomicBool::new(false),
        });
        inflight.insert(key.clone(), transfer.clone());

        let this = self.clone();
        let t = transfer.clone();
        let span = info_span!("hydrate", ino = key.entry, path = %path, len);
        let handle = tokio::spawn(
            async move {
                let result = this.download(&path, &tx, &t).await;
                if let Err(e) = &result {
                    warn!(error = %e, "download failed");
                    if matches!(
                        e,
                        FsError::Stale | FsError::Remote(RemoteError::Malformed(_))
                    ) {
                        // The server's file is not the one listed: nothing to keep.
                        t.discard();
                    } else {
                        // Keep what arrived for the next attempt.
                        this.park_if_current(&t);
                    }
                    if let FsError::Remote(RemoteError::Malformed(_)) = e {
                        // The file changed under us: relist before the next attempt.
                        if let Ok(Some(entry)) = this.meta.get(key.entry) {
                            let _ = this.meta.expire_listing(entry.parent);
                        }
                    }
                }
                {
                    // Only this transfer: after a cancel, a new one may have the key.
                    let mut inflight = this.inflight.lock().unwrap_or_else(|p| p.into_inner());
                    if inflight.get(&t.key).is_some_and(|x| Arc::ptr_eq(x, &t)) {
                        inflight.remove(&t.key);
                    }
                }
                let len = t.len;
                tx.send_modify(|p| {
                    if result.is_ok() {
                        p.covered.add(0, len);
                    }
                    p.outcome = Some(result.map_err(Arc::new));
                });
            }
            .instrument(span),
        );
        *transfer.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.abort_handle());
        drop(inflight);
        Ok(transfer)
    }

    /// One opener of `transfer` is done with it. When it was the last and the download has
    /// not finished, the download is cancelled (its partial data is discarded), so that
    /// opening and closing many files never leaves downloads running for nobody.
    pub fn release(self: &Arc<Self>, transfer: &Arc<Transfer>) {
        use std::sync::atomic::Ordering;
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if transfer.openers.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        if !transfer.running() {
            // Failed (parked already) or complete: nothing runs.
            self.park_if_current(transfer);
            return;
        }
        if inflight
            .get(&transfer.key)
            .is_some_and(|t| Arc::ptr_eq(t, transfer))
        {
            inflight.remove(&transfer.key);
        }
        if let Some(task) = transfer
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            debug!(
                ino = transfer.key.entry,
                "last reader closed; download stopped, what arrived is kept"
            );
            task.abort();
        }
        // Syncing can take a while: not on the thread of the closing call. Marked while
        // the in-flight map is locked, so no new download of the key misses it.
        self.parking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(transfer.key.clone());
        drop(inflight);
        let (this, t) = (self.clone(), transfer.clone());
        let park = move || {
            this.park_if_current(&t);
            this.parking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&t.key);
            this.parked.notify_all();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("edrive-park".into())
            .spawn(park)
        {
            warn!(error = %e, "no thread to keep a partial download");
            self.parking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&transfer.key);
            self.park_if_current(transfer);
        }
    }

    /// Keeps what `transfer` fetched as a partial download, unless its entry is gone or
    /// has another version by now (removed or changed on the server while it was read):
    /// nothing would ever resume it, so it is dropped rather than left to eviction.
    fn park_if_current(&self, transfer: &Transfer) {
        let gone = match self.meta.get(transfer.key.entry) {
            Ok(Some(e)) => e.content_version() != transfer.key.version,
            Ok(None) => true,
            Err(_) => false,
        };
        if gone {
            debug!(
                ino = transfer.key.entry,
                "partial download of a version gone: dropped"
            );
            transfer.discard();
        } else {
            transfer.park();
        }
    }

    fn is_parking(&self, key: &BlobKey) -> bool {
        self.parking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    /// Waits (at most 30 s) while `key`'s partial download is being parked.
    fn wait_parked(&self, key: &BlobKey) {
        let parking = self.parking.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .parked
            .wait_timeout_while(parking, std::time::Duration::from_secs(30), |p| {
                p.contains(key)
            });
    }
}

/// Whether a request now at `pos` will not bring byte `x` soon: `x` is missing and
/// behind `pos`, or more than [`SEEK_AHEAD`] after it.
fn needs_seek(x: u64, pos: u64, covered: &Ranges) -> bool {
    !covered.contains(x) && (x < pos || x > pos.saturating_add(SEEK_AHEAD))
}
