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

impl Transfer {
    /// The blob this transfer produced, once it completed.
    pub fn blob(&self) -> Option<Arc<Blob>> {
        self.blob.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the transfer is still running.
    pub fn running(&self) -> bool {
        self.progress.borrow().outcome.is_none()
    }

    /// Fetches the whole file and waits until the transfer ended; `Ok` when the whole
    /// file is cached.
    pub async fn wait(&self) -> Result<(), FsError> {
        self.want_all();
        let mut rx = self.progress.clone();
        let p = rx
            .wait_for(|p| p.outcome.is_some())
            .await
            .map_err(|_| FsError::Remote(RemoteError::Transfer("download task ended".into())))?
            .clone();
        match p.outcome {
            Some(Err(e)) => Err(clone_error(&e)),
            _ => Ok(()),
        }
    }

    /// Reads `size` bytes at `offset`, waiting only until those bytes have arrived; sends
    /// the download to them if it is not about to get there.
    pub async fn read(&self, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let end = offset.saturating_add(size as u64).min(self.len);
        if offset >= end {
            return Ok(Vec::new());
        }
        self.want(offset, end);
        let mut rx = self.progress.clone();
        let mut starving: Option<Starving<'_>> = None;
        loop {
            // Read out of the channel first: no other lock is taken while it is borrowed
            // (a writer holds `written` while it waits for the channel).
            let (here, outcome, seek_to) = {
                let p = rx.borrow_and_update();
                let missing = p.covered.gap_from(offset, end).map_or(offset, |g| g.0);
                (
                    p.covered.covers(offset, end),
                    p.outcome.clone(),
                    needs_seek(missing, p.at, &p.covered).then_some(missing),
                )
            };
            if here {
                break;
            }
            if starving.is_none() {
                self.demand().starving += 1;
                starving = Some(Starving(self));
                self.seek_wake.notify_one();
            }
            match outcome {
                Some(Err(e)) => return Err(clone_error(&e)),
                Some(Ok(())) => break,
                None => {}
            }
            if let Some(missing) = seek_to.filter(|&x| !self.is_claimed(x)) {
                let mut seek = self.seek.lock().unwrap_or_else(|p| p.into_inner());
                if *seek != Some(missing) {
                    *seek = Some(missing);
                    self.seek_wake.notify_one();
                }
            }
            rx.changed().await.map_err(|_| {
                FsError::Remote(RemoteError::Transfer("download task ended".into()))
            })?;
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let n = crate::positional::read_full_at(&self.reader, &mut buf, offset)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Keeps what arrived as a partial download (once; the fill is gone afterwards).
    /// Only ranges already announced to readers are recorded: they were written.
    fn park(&self) {
        let Some(fill) = self.fill.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let ranges = self.progress.borrow().covered.list();
        if let Err(e) = fill.park(&ranges) {
            warn!(ino = self.key.entry, error = %e, "could not keep a partial download");
        }
    }

    /// Drops the fill and what it holds.
    fn discard(&self) {
        drop(self.fill.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    fn demand(&self) -> std::sync::MutexGuard<'_, Demand> {
        self.demand.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a read of `[offset, end)`: it wants those bytes and a read-ahead window
    /// after them of twice what was read sequentially so far (within the bounds).
    fn want(&self, offset: u64, end: u64) {
        let mut d = self.demand();
        let sequential = offset <= d.last_end.saturating_add(SEQUENTIAL_SLACK)
            && end.saturating_add(SEQUENTIAL_SLACK) > d.last_end;
        if sequential {
            d.run_start = d.run_start.min(offset);
            d.last_end = d.last_end.max(end);
        } else {
            d.run_start = offset;
            d.last_end = end;
        }
        let window = ((d.last_end - d.run_start) * 2).clamp(MIN_WINDOW, MAX_WINDOW);
        let until = end.saturating_add(window).min(self.len);
        if !d.wanted.covers(offset, until) {
            d.wanted.add(offset, until);
            drop(d);
            self.seek_wake.notify_one();
        }
    }

    /// Wants every byte of the file (pins, opens for writing).
    fn want_all(&self) {
        self.demand().wanted.add(0, self.len);
        self.seek_wake.notify_one();
    }

    /// Where to fetch next, at or after `from` (else from the start): the first wanted
    /// byte that is missing of a piece worth a request now (a reader waits, it is at
    /// least [`RESUME_MIN`], or it is all that is missing up to bytes already here).
    /// `None` when nothing wanted is missing, or nothing is worth a request yet.
    fn next_wanted(&self, from: u64, covered: &Ranges) -> Option<u64> {
        let d = self.demand();
        for start in [from, 0] {
            let mut at = start;
            while let Some((gs, ge)) = covered.gap_from(at, self.len) {
                // The wanted pieces of this gap.
                let mut w = gs;
                while let Some((ws, we)) = d.wanted.overlap(w, ge) {
                    if d.starving > 0 || we - ws >= RESUME_MIN || we == ge {
                        return Some(ws);
                    }
                    w = we;
                }
                at = ge;
            }
        }
        None
    }

    /// Whether bytes that are wanted and missing lie within [`SEEK_AHEAD`] after `pos`
    /// (a request at `pos` goes on through them rather than pause).
    fn wanted_near(&self, pos: u64, covered: &Ranges) -> bool {
        let d = self.demand();
        let limit = pos.saturating_add(SEEK_AHEAD).min(self.len);
        let mut w = pos;
        while let Some((ws, we)) = d.wanted.overlap(w, limit) {
            if !covered.covers(ws, we) {
                return true;
            }
            w = we;
        }
        false
    }

    /// Writes the bytes held back in `pending` at `pos` and tells readers; with
    /// `aligned`, only up to the last [`COALESCE`] boundary (the rest stays held back).
    /// The last bytes of the file become visible only with the commit, so whoever has
    /// read the whole file finds it cached as complete.
    fn write_held(
        &self,
        pending: &mut bytes::BytesMut,
        pos: &mut u64,
        covered: &mut Ranges,
        tx: &watch::Sender<Progress>,
        aligned: bool,
    ) -> Result<(), FsError> {
        let mut n = pending.len();
        if aligned {
            let boundary = (*pos + n as u64) / COALESCE as u64 * COALESCE as u64;
            if boundary > *pos {
                n = (boundary - *pos) as usize;
            }
        }
        if n == 0 {
            return Ok(());
        }
        let data = pending.split_to(n);
        self.write_fill(&data, *pos)?;
        let end = *pos + n as u64;
        self.main_at
            .store(end, std::sync::atomic::Ordering::Relaxed);
        self.record(*pos, end, tx, Some(end));
        *pos = end;
        *covered = self.planned();
        Ok(())
    }

    /// Writes `data` at `offset` into the fill.
    fn write_fill(&self, data: &[u8], offset: u64) -> Result<(), FsError> {
        let mut slot = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        let fill = slot
            .as_mut()
            .ok_or_else(|| FsError::Io(std::io::Error::other("download cancelled")))?;
        fill.write_at(data, offset)?;
        Ok(())
    }

    /// Records `[start, end)` as written and tells readers (with where the main request
    /// is now, if it wrote them). The file's last bytes are told only by the commit, so
    /// whoever has read the whole file finds it cached as complete.
    fn record(&self, start: u64, end: u64, tx: &watch::Sender<Progress>, at: Option<u64>) {
        let announce = {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            written.add(start, end);
            written.total() < self.len
        };
        // Not under `written`: a reader may hold the channel while it takes a lock.
        if announce {
            tx.send_modify(|p| {
                p.covered.add(start, end);
                if let Some(at) = at {
                    p.at = at;
                }
            });
        }
    }

    /// Every byte written so far.
    fn written(&self) -> Ranges {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, Ranges> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a helper request is fetching byte `x`.
    fn is_claimed(&self, x: u64) -> bool {
        self.claimed().contains(x)
    }

    /// Whether a helper fetches or wrote any of `[start, end)`.
    fn taken(&self, start: u64, end: u64) -> bool {
        self.claimed().overlap(start, end).is_some()
            || self
                .written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .overlap(start, end)
                .is_some()
    }

    /// Bytes written or being fetched by helpers: what the main request leaves alone.
    fn planned(&self) -> Ranges {
        let written = self.written();
        written.union(&self.claimed())
    }

    /// A piece for a helper request, claimed: wanted bytes that nobody has or fetches,
    /// at least [`HELPER_LEAD`] ahead of the main request, at most [`HELPER_CHUNK`] long.
    /// Pieces shorter than a [`COALESCE`] are left to the main request unless bytes
    /// already here (or the end of the file) follow them.
    fn claim(&self) -> Option<(u64, u64)> {
        let from = self
            .main_at
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_add(HELPER_LEAD);
        let written = self.written();
        let d = self.demand();
        let mut claimed = self.claimed();
        let planned = written.union(&claimed);
        let mut at = from;
        while let Some((gs, ge)) = planned.gap_from(at, self.len) {
            let mut w = gs;
            while let Some((ws, we)) = d.wanted.overlap(w, ge) {
                let end = we.min(ws + HELPER_CHUNK);
                if end - ws >= COALESCE as u64 || end == ge {
                    claimed.add(ws, end);
                    return Some((ws, end));
                }
                w = we;
            }
            at = ge;
        }
        None
    }

    /// Whether a helper's error ends the transfer.
    fn failed(&self) -> bool {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A helper's error that ends the transfer, if one happened.
    fn take_fatal(&self) -> Option<FsError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Whether a reader waits now for bytes that are not here.
    fn starving(&self) -> bool {
        self.demand().starving > 0
    }

    /// Whether the byte at `pos` is wanted (a request stops where the wanted bytes end).
    fn wanted_at(&self, pos: u64) -> bool {
        pos < self.len && self.demand().wanted.contains(pos)
    }

    /// The offset a reader is waiting for, if the request now at `pos` should go there
    /// (consumed); a wish the request is about to satisfy anyway is dropped.
    fn take_seek(&self, pos: u64, covered: &Ranges) -> Option<u64> {
        let mut seek = self.seek.lock().unwrap_or_else(|p| p.into_inner());
        let x = (*seek)?;
        *seek = None;
        (needs_seek(x, pos, covered) && !self.is_claimed(x)).then_some(x)
    }
}

/// Whether a request now at `pos` will not bring byte `x` soon: `x` is missing and
/// behind `pos`, or more than [`SEEK_AHEAD`] after it.
fn needs_seek(x: u64, pos: u64, covered: &Ranges) -> bool {
    !covered.contains(x) && (x < pos || x > pos.saturating_add(SEEK_AHEAD))
}

/// A piece a helper fetches, given back when dropped (fetched, or failed: the main request
/// or another helper fetches what is missing). The download and its readers are woken: a
/// reader may now need to send the download there.
struct Claim<'a> {
    transfer: &'a Transfer,
    tx: &'a watch::Sender<Progress>,
    start: u64,
    end: u64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.transfer.claimed().remove(self.start, self.end);
        self.transfer.seek_wake.notify_one();
        self.tx.send_modify(|_| {});
    }
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

    /// The main request's loop (see the module doc). `covered` is what it leaves alone:
    /// bytes written, or being fetched by a helper. Helpers run in a set that ends with
    /// this future, so a cancelled download stops them too.
    async fn download(
        self: &Arc<Self>,
        path: &RemotePath,
        tx: &Arc<watch::Sender<Progress>>,
        transfer: &Arc<Transfer>,
    ) -> Result<(), FsError> {
        let len = transfer.len;
        let mut path = path.clone();
        let fill = &transfer.fill;
        let mut helpers = tokio::task::JoinSet::new();
        // Whether helpers ever ran: the main request then checks what it is about to
        // write against what they fetch.
        let mut helped = false;
        // Where the last request stopped: the next one continues from there.
        let mut next = 0;
        loop {
            while helpers.try_join_next().is_some() {}
            if let Some(e) = transfer.take_fatal() {
                return Err(e);
            }
            if transfer.written().gap_from(0, len).is_none() {
                break;
            }
            let mut covered = transfer.planned();
            let from = match transfer.take_seek(next, &covered) {
                Some(x) => x - x % SEEK_ALIGN,
                None => next,
            };
            let start = match transfer.next_wanted(from, &covered) {
                Some(start) => start,
                // Nothing (worth a request) is wanted, or helpers fetch it: wait for
                // readers or helpers. The timeout only re-checks; every change of
                // demand, and every piece a helper ends, wakes us.
                _ => {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(1),
                        transfer.seek_wake.notified(),
                    )
                    .await;
                    continue;
                }
            };
            // Up to the next bytes already here: the request stops earlier if readers
            // stop wanting more.
            let Some((start, end)) = covered.gap_from(start, len) else {
                continue;
            };
            let range = (start > 0 || end < len).then_some(start..end);
            if range.is_some() {
                debug!(start, end, "ranged request");
            }
            // Before the request goes out: helpers stay clear of where it starts.
            transfer
                .main_at
                .store(start, std::sync::atomic::Ordering::Relaxed);
            let dl = self.open_stream(&mut path, range, transfer).await?;
            tx.send_modify(|p| p.at = start);
            let mut body = dl.body;
            let mut pos = start;
            // Since when (and from where) this request's speed is measured.
            let mut since = (tokio::time::Instant::now(), pos);
            // Arriving bytes are held back and written in COALESCE-aligned pieces: one
            // write and one wake-up instead of dozens, and the page cache then holds the
            // blob in large folios, which later reads copy several times faster than
            // pages written a network chunk at a time. What is held back is written at
            // once when a reader waits for bytes, or before the request pauses.
            let mut pending = bytes::BytesMut::new();
            let sent_elsewhere = loop {
                let item = match futures_util::FutureExt::now_or_never(body.next()) {
                    Some(item) => item,
                    None => {
                        let here = pos + pending.len() as u64;
                        let pausing = here > start && here < end && !transfer.wanted_at(here);
                        if pausing || transfer.starving() {
                            transfer.write_held(&mut pending, &mut pos, &mut covered, tx, false)?;
                        }
                        if pausing {
                            if self.paused(transfer, pos).await {
                                break true;
                            }
                            since = (tokio::time::Instant::now(), pos);
                        }
                        // Wait for bytes, or for a reader (that needs them elsewhere, or
                        // waits for bytes held back).
                        tokio::select! {
                            item = body.next() => item,
                            _ = transfer.seek_wake.notified() => {
                                // (Bytes held back lie between `pos` and 1 MiB and a
                                // chunk after it, within SEEK_AHEAD: never elsewhere.)
                                if pos + (pending.len() as u64) - start >= MIN_RUN
                                    && self.wanted_elsewhere(transfer, pos, &covered)
                                {
                                    transfer.write_held(&mut pending, &mut pos, &mut covered, tx, false)?;
                                    if self.wanted_elsewhere(transfer, pos, &covered) {
                                        break true;
                                    }
                                }
                                continue;
                            }
                        }
                    }
                };
                let Some(chunk) = item else {
                    break false;
                };
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        // What arrived before the error is kept (for the next attempt).
                        let _ =
                            transfer.write_held(&mut pending, &mut pos, &mut covered, tx, false);
                        return Err(e.into());
                    }
                };
                if pos + (pending.len() + chunk.len()) as u64 > end {
                    return Err(FsError::Remote(RemoteError::Malformed(
                        "body longer than its length".into(),
                    )));
                }
                pending.extend_from_slice(&chunk);
                let here = pos + pending.len() as u64;
                if helped && transfer.taken(pos, here) {
                    // A helper fetches (or fetched) what follows: go on after it.
                    transfer.write_held(&mut pending, &mut pos, &mut covered, tx, false)?;
                    break true;
                }
                if self.streams > 1 && slow(since, here) {
                    self.add_helpers(&mut helpers, transfer, &path, tx);
                    helped |= !helpers.is_empty();
                }
                if pending.len() >= COALESCE {
                    transfer.write_held(&mut pending, &mut pos, &mut covered, tx, true)?;
                    if let Some(e) = transfer.take_fatal() {
                        return Err(e);
                    }
                    if pos - start >= MIN_RUN && self.wanted_elsewhere(transfer, pos, &covered) {
                        break true;
                    }
                    let here = pos + pending.len() as u64;
                    if here < end && !transfer.wanted_at(here) {
                        // Nothing held back while paused: the pause may end the request.
                        transfer.write_held(&mut pending, &mut pos, &mut covered, tx, false)?;
                        if self.paused(transfer, pos).await {
                            break true;
                        }
                        since = (tokio::time::Instant::now(), pos);
                    }
                }
            };
            transfer.write_held(&mut pending, &mut pos, &mut covered, tx, false)?;
            if !sent_elsewhere && pos != end {
                return Err(FsError::Remote(RemoteError::ShortBody {
                    expected: len,
                    got: transfer.written().total(),
                }));
            }
            next = pos;
        }
        // Everything is written: helpers have nothing left to do.
        helpers.abort_all();
        let fill = fill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| FsError::Io(std::io::Error::other("download cancelled")))?;
        let blob = tokio::task::spawn_blocking(move || fill.commit())
            .await
            .map_err(|e| FsError::Io(std::io::Error::other(e.to_string())))??;
        debug!(bytes = len, "hydrated");
        *transfer.blob.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(blob));
        Ok(())
    }

    /// Starts helper requests (up to `streams - 1` at once) for pieces [`Transfer::claim`]
    /// finds; each takes further pieces until none is left.
    fn add_helpers(
        self: &Arc<Self>,
        set: &mut tokio::task::JoinSet<()>,
        transfer: &Arc<Transfer>,
        path: &RemotePath,
        tx: &Arc<watch::Sender<Progress>>,
    ) {
        use std::sync::atomic::Ordering;
        while set.try_join_next().is_some() {}
        if transfer.expected_etag.is_none() {
            // Pieces could not be checked to be of one version.
            return;
        }
        while set.len() + 1 < self.streams && !transfer.helpers_off.load(Ordering::Relaxed) {
            let Some(piece) = transfer.claim() else {
                return;
            };
            let (this, t, path, tx) = (self.clone(), transfer.clone(), path.clone(), tx.clone());
            let span = info_span!("helper", start = piece.0);
            set.spawn(async move { this.helper(&t, path, &tx, piece).await }.instrument(span));
        }
    }

    /// A helper request's life: fetches `piece`, then more pieces while there are any.
    /// A failure only ends the helpers (the main request fetches what is missing),
    /// unless the server has another version now: that ends the transfer.
    async fn helper(
        &self,
        transfer: &Transfer,
        mut path: RemotePath,
        tx: &watch::Sender<Progress>,
        mut piece: (u64, u64),
    ) {
        use std::sync::atomic::Ordering;
        loop {
            let (start, end) = piece;
            // Given back however this ends (done, failed, or aborted with the download).
            let _claim = Claim {
                transfer,
                tx,
                start,
                end,
            };
            debug!(start, end, "helper request");
            let result = self.fetch_piece(&mut path, start, end, transfer, tx).await;
            if let Err(e) = result {
                transfer.helpers_off.store(true, Ordering::Relaxed);
                if matches!(e, FsError::Stale) {
                    *transfer.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                } else {
                    debug!(error = %e, "helper request failed; no more helpers");
                }
                return;
            }
            drop(_claim);
            if transfer.helpers_off.load(Ordering::Relaxed) || transfer.failed() {
                return;
            }
            match transfer.claim() {
                Some(p) => piece = p,
                None => return,
            }
        }
    }

    /// Fetches `[start, end)` with a ranged GET into the fill, in [`COALESCE`] pieces (or
    /// at once while a reader waits).
    async fn fetch_piece(
        &self,
        path: &mut RemotePath,
        start: u64,
        end: u64,
        transfer: &Transfer,
        tx: &watch::Sender<Progress>,
    ) -> Result<(), FsError> {
        let dl = self.open_stream(path, Some(start..end), transfer).await?;
        let want = transfer.expected_etag.as_deref().unwrap_or_default();
        if dl.version_for(want).is_none() {
            // Without a version on every piece, pieces of two versions could be mixed.
            return Err(FsError::Remote(RemoteError::Transfer(
                "no ETag on a ranged reply".into(),
            )));
        }
        if dl.skipped > 0 {
            // The server ignores Range: each piece would cost everything before it.
            return Err(FsError::Remote(RemoteError::Transfer(
                "the server does not serve ranges".into(),
            )));
        }
        let mut body = dl.body;
        let mut pos = start;
        let mut pending = bytes::BytesMut::new();
        let flush = |pending: &mut bytes::BytesMut, pos: &mut u64| -> Result<(), FsError> {
            if pending.is_empty() {
                return Ok(());
            }
            let data = pending.split();
            transfer.write_fill(&data, *pos)?;
            let next = *pos + data.len() as u64;
            transfer.record(*pos, next, tx, None);
            *pos = next;
            Ok(())
        };
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = flush(&mut pending, &mut pos);
                    return Err(e.into());
                }
            };
            if pos + (pending.len() + chunk.len()) as u64 > end {
                return Err(FsError::Remote(RemoteError::Malformed(
                    "body longer than its length".into(),
                )));
            }
            pending.extend_from_slice(&chunk);
            if pending.len() >= COALESCE || transfer.starving() {
                flush(&mut pending, &mut pos)?;
            }
        }
        flush(&mut pending, &mut pos)?;
        if pos != end {
            return Err(FsError::Remote(RemoteError::ShortBody {
                expected: end - start,
                got: pos - start,
            }));
        }
        Ok(())
    }

    /// Waits while nothing at `pos` is wanted, keeping the request (the server waits on
    /// its connection too, so what is fetched stays bounded and a sequential reader costs
    /// one request). `true` when the request should end instead: a reader wants bytes
    /// elsewhere, a helper failed for good, or nobody wanted more for [`PAUSE_LIMIT`].
    /// What the request leaves alone is taken again at every wake-up, as helpers end or
    /// give up pieces meanwhile.
    async fn paused(&self, transfer: &Transfer, pos: u64) -> bool {
        let deadline = tokio::time::Instant::now() + PAUSE_LIMIT;
        loop {
            let covered = transfer.planned();
            if transfer.wanted_at(pos) || transfer.wanted_near(pos, &covered) {
                return false;
            }
            if self.wanted_elsewhere(transfer, pos, &covered) || transfer.failed() {
                return true;
            }
            if tokio::time::timeout_at(deadline, transfer.seek_wake.notified())
                .await
                .is_err()
            {
                debug!(pos, "no reader wants more; request ended");
                return true;
            }
        }
    }

    /// Whether a reader needs the download somewhere the request now at `pos` is not
    /// about to reach; the wish stays for the next request to act on.
    fn wanted_elsewhere(&self, transfer: &Transfer, pos: u64, covered: &Ranges) -> bool {
        let seek = *transfer.seek.lock().unwrap_or_else(|p| p.into_inner());
        seek.is_some_and(|x| needs_seek(x, pos, covered) && !transfer.is_claimed(x))
    }

    /// Starts a GET of `range` (all of it if `None`) and checks it is the version and
    /// length the listing promised. Follows a file the write-back is moving right now.
    async fn open_stream(
        &self,
        path: &mut RemotePath,
        range: Option<std::ops::Range<u64>>,
        transfer: &Transfer,
    ) -> Result<crate::remote::Download, FsError> {
        let mut tries = 0;
        let dl = loop {
            match self.remote.read(path, range.clone()).await {
                // The write-back may be moving this file on the server right now (a local
                // rename): follow it rather than fail the read.
                Err(RemoteError::NotFound) if tries < 40 => {
                    tries += 1;
                    let entry = transfer.key.entry;
                    match self.meta.remote_path_of(entry)? {
                        Some(now) if now != *path => *path = now,
                        // It, or a folder above it, is being moved.
                        Some(_) if self.meta.any_move_in_flight()? => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        _ => return Err(FsError::Remote(RemoteError::NotFound)),
                    }
                }
                r => break r?,
            }
        };
        if let (Some(want), Some(got)) = (
            &transfer.expected_etag,
            transfer
                .expected_etag
                .as_deref()
                .and_then(|w| dl.version_for(w)),
        ) {
            if *want != got.value {
                if let Ok(Some(entry)) = self.meta.get(transfer.key.entry) {
                    let _ = self.meta.expire_listing(entry.parent);
                }
                return Err(FsError::Stale);
            }
        }
        let want = range.map_or(transfer.len, |r| r.end - r.start);
        if let Some(n) = dl.len {
            if n != want {
                return Err(FsError::Remote(RemoteError::Malformed(format!(
                    "server sends {n} bytes but listed {want} (changed on server?)"
                ))));
            }
        }
        Ok(dl)
    }
}
