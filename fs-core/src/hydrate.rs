//! Hydration: fetching a file's content from the server into the cache, once, while any
//! number of readers are served from the bytes that have already arrived.
//!
//! A transfer writes into a cache fill (a temp file); it becomes a cached blob only when
//! every promised byte arrived, so a short or broken body is never cached as complete.
//!
//! One request runs at a time. It starts at the beginning of the file; a read that needs
//! bytes far ahead of it (more than [`SEEK_AHEAD`]), or in a gap behind it, sends it
//! there with a ranged GET: a seek in a cold video waits for its own bytes, not for
//! everything before them. Whatever is missing is fetched after that, gap by gap, so a
//! file that stays open is cached whole.

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
    reader: std::fs::File,
    blob: Mutex<Option<Arc<Blob>>>,
    /// An offset a reader needs that the running request is not about to reach.
    seek: Mutex<Option<u64>>,
    /// Wakes the download when `seek` is set.
    seek_wake: tokio::sync::Notify,
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

    /// Waits until the transfer ended; `Ok` when the whole file is cached.
    pub async fn wait(&self) -> Result<(), FsError> {
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
        let mut rx = self.progress.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                if p.covered.covers(offset, end) {
                    break;
                }
                match &p.outcome {
                    Some(Err(e)) => return Err(clone_error(e)),
                    Some(Ok(())) => break,
                    None => {}
                }
                let missing = p.covered.gap_from(offset, end).map_or(offset, |g| g.0);
                if missing < p.at || missing > p.at.saturating_add(SEEK_AHEAD) {
                    let mut seek = self.seek.lock().unwrap_or_else(|p| p.into_inner());
                    if *seek != Some(missing) {
                        *seek = Some(missing);
                        self.seek_wake.notify_one();
                    }
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

    /// The offset a reader is waiting for, if the request now at `pos` should go there
    /// (consumed); a wish the request is about to satisfy anyway is dropped.
    fn take_seek(&self, pos: u64, covered: &Ranges) -> Option<u64> {
        let mut seek = self.seek.lock().unwrap_or_else(|p| p.into_inner());
        let x = (*seek)?;
        *seek = None;
        (!covered.contains(x) && (x < pos || x > pos.saturating_add(SEEK_AHEAD))).then_some(x)
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
}

impl Hydrator {
    /// A hydrator over these stores.
    pub fn new(remote: Arc<dyn Remote>, cache: Arc<Cache>, meta: Arc<Meta>) -> Hydrator {
        Hydrator {
            remote,
            cache,
            meta,
            inflight: Mutex::new(HashMap::new()),
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
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = inflight.get(&key) {
            t.openers.fetch_add(1, Ordering::SeqCst);
            return Ok(t.clone());
        }
        let fill = self.cache.begin_fill(key.clone(), len)?;
        let reader = fill.reader()?;
        let (tx, rx) = watch::channel(Progress {
            covered: Ranges::default(),
            at: 0,
            outcome: None,
        });
        let transfer = Arc::new(Transfer {
            key: key.clone(),
            len,
            expected_etag,
            openers: std::sync::atomic::AtomicUsize::new(1),
            task: Mutex::new(None),
            progress: rx,
            reader,
            blob: Mutex::new(None),
            seek: Mutex::new(None),
            seek_wake: tokio::sync::Notify::new(),
        });
        inflight.insert(key.clone(), transfer.clone());

        let this = self.clone();
        let t = transfer.clone();
        let span = info_span!("hydrate", ino = key.entry, path = %path, len);
        let handle = tokio::spawn(
            async move {
                let result = this.download(&path, fill, &tx, &t).await;
                if let Err(e) = &result {
                    warn!(error = %e, "download failed");
                    if let FsError::Remote(RemoteError::Malformed(_)) = e {
                        // The file changed under us: relist before the next attempt.
                        if let Ok(Some(entry)) = this.meta.get(key.entry) {
                            let _ = this.meta.expire_listing(entry.parent);
                        }
                    }
                }
                this.inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&t.key);
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
    pub fn release(&self, transfer: &Arc<Transfer>) {
        use std::sync::atomic::Ordering;
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if transfer.openers.fetch_sub(1, Ordering::SeqCst) != 1 || !transfer.running() {
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
                "last reader closed; download cancelled"
            );
            task.abort();
        }
    }

    async fn download(
        &self,
        path: &RemotePath,
        mut fill: edrive_cache::Fill,
        tx: &watch::Sender<Progress>,
        transfer: &Transfer,
    ) -> Result<(), FsError> {
        let len = transfer.len;
        let mut path = path.clone();
        let mut covered = Ranges::default();
        // Where the last request stopped: the next one continues from there.
        let mut next = 0;
        loop {
            let from = match transfer.take_seek(next, &covered) {
                Some(x) => x - x % SEEK_ALIGN,
                None => next,
            };
            let Some((start, end)) = covered
                .gap_from(from, len)
                .or_else(|| covered.gap_from(0, len))
            else {
                break;
            };
            let range = (start > 0 || end < len).then_some(start..end);
            if range.is_some() {
                debug!(start, end, "ranged request");
            }
            let dl = self.open_stream(&mut path, range, transfer).await?;
            tx.send_modify(|p| p.at = start);
            let mut body = dl.body;
            let mut pos = start;
            // Chunks that arrive back to back are written (and announced to readers)
            // together, up to COALESCE bytes: one write and one wake-up instead of dozens.
            // Whatever has arrived is written as soon as the network makes us wait, so a
            // reader never waits for bytes that are already here.
            let mut pending = bytes::BytesMut::new();
            let sent_elsewhere = loop {
                let item = match futures_util::FutureExt::now_or_never(body.next()) {
                    Some(item) => item,
                    None => {
                        self.flush(&mut fill, &mut pending, &mut pos, &mut covered, len, tx)?;
                        // Wait for bytes, or for a reader that needs them elsewhere.
                        let may_move = pos - start >= MIN_RUN;
                        tokio::select! {
                            item = body.next() => item,
                            _ = transfer.seek_wake.notified(), if may_move => {
                                if self.wanted_elsewhere(transfer, pos, &covered) {
                                    break true;
                                }
                                continue;
                            }
                        }
                    }
                };
                let Some(chunk) = item else {
                    break false;
                };
                let chunk = chunk?;
                if pos + (pending.len() + chunk.len()) as u64 > end {
                    return Err(FsError::Remote(RemoteError::Malformed(
                        "body longer than its length".into(),
                    )));
                }
                pending.extend_from_slice(&chunk);
                if pending.len() >= COALESCE {
                    self.flush(&mut fill, &mut pending, &mut pos, &mut covered, len, tx)?;
                    if pos - start >= MIN_RUN && self.wanted_elsewhere(transfer, pos, &covered) {
                        break true;
                    }
                }
            };
            self.flush(&mut fill, &mut pending, &mut pos, &mut covered, len, tx)?;
            if !sent_elsewhere && pos != end {
                return Err(FsError::Remote(RemoteError::ShortBody {
                    expected: len,
                    got: covered.total(),
                }));
            }
            next = pos;
        }
        let blob = tokio::task::spawn_blocking(move || fill.commit())
            .await
            .map_err(|e| FsError::Io(std::io::Error::other(e.to_string())))??;
        debug!(bytes = len, "hydrated");
        *transfer.blob.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(blob));
        Ok(())
    }

    /// Whether a reader needs the download somewhere the request now at `pos` is not
    /// about to reach; the wish stays for the next request to act on.
    fn wanted_elsewhere(&self, transfer: &Transfer, pos: u64, covered: &Ranges) -> bool {
        let seek = *transfer.seek.lock().unwrap_or_else(|p| p.into_inner());
        seek.is_some_and(|x| {
            !covered.contains(x) && (x < pos || x > pos.saturating_add(SEEK_AHEAD))
        })
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
        if let (Some(want), Some(got)) = (&transfer.expected_etag, &dl.etag) {
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

    /// Writes the bytes held back in `pending` at `pos` and tells readers. The last
    /// bytes of the file become visible only with the commit, so whoever has read the
    /// whole file finds it cached as complete.
    fn flush(
        &self,
        fill: &mut edrive_cache::Fill,
        pending: &mut bytes::BytesMut,
        pos: &mut u64,
        covered: &mut Ranges,
        len: u64,
        tx: &watch::Sender<Progress>,
    ) -> Result<(), FsError> {
        if pending.is_empty() {
            return Ok(());
        }
        fill.write_at(pending, *pos)?;
        covered.add(*pos, *pos + pending.len() as u64);
        *pos += pending.len() as u64;
        pending.clear();
        if covered.total() < len {
            let (c, at) = (covered.clone(), *pos);
            tx.send_modify(|p| {
                p.covered = c;
                p.at = at;
            });
        }
        Ok(())
    }
}
