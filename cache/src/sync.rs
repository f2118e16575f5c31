//! The sync thread: makes committed blobs (downloads, uploaded working copies) durable in the
//! background, in batches, and then has them recorded in the index. So a reader or an upload
//! never waits for the disk (behind whatever else the system is writing), and a crash before
//! the sync only loses the blob: an unindexed file is deleted at the next open, never served.

use crate::dir;
use crate::key::BlobKey;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SendError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the sync thread collects committed blobs before syncing them together.
const SYNC_BATCH_WINDOW: Duration = Duration::from_millis(50);

/// A committed blob to sync to disk, then record in the index. It holds no open file:
/// blobs can queue up by the thousand while a sync is slow.
pub(crate) struct SyncJob {
    pub(crate) key: BlobKey,
    /// The blob's file name in `blobs/` when committed.
    pub(crate) file_name: String,
}

/// What the sync thread is asked.
enum SyncMsg {
    /// Sync and index a committed blob.
    Job(SyncJob),
    /// Say when everything sent before is done.
    Barrier(Sender<()>),
}

/// What records synced blobs in the index: the cache's shared state. The thread holds it
/// weakly and ends once it is gone.
pub(crate) trait SyncTarget: Send + Sync + 'static {
    /// Records the blobs of `jobs`, whose files are on disk now, in the index.
    fn record_synced(&self, jobs: &[SyncJob]);
}

/// The way to the sync thread, which starts with the first blob to sync.
pub(crate) struct Syncer {
    blobs_dir: PathBuf,
    tx: Mutex<Option<Sender<SyncMsg>>>,
}

impl Syncer {
    /// A syncer for blobs in `blobs_dir`; no thread runs yet.
    pub(crate) fn new(blobs_dir: PathBuf) -> Syncer {
        Syncer {
            blobs_dir,
            tx: Mutex::new(None),
        }
    }

    /// Waits until every blob submitted so far is synced and recorded.
    pub(crate) fn wait(&self) {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return;
        };
        let (done_tx, done_rx) = mpsc::channel();
        if tx.send(SyncMsg::Barrier(done_tx)).is_ok() {
            drop(guard);
            let _ = done_rx.recv();
        }
    }

    /// Syncs `job`'s file on the sync thread (started now if it is not running), then has
    /// `target` record it. Blobs submitted while the thread syncs are synced together next.
    /// Without a thread (it cannot be started) the job is done here and now.
    pub(crate) fn submit<T: SyncTarget>(&self, target: &Arc<T>, job: SyncJob) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let job = match tx.as_ref() {
            Some(sender) => match sender.send(SyncMsg::Job(job)) {
                Ok(()) => return,
                Err(SendError(SyncMsg::Job(job))) => job,
                Err(_) => return,
            },
            None => job,
        };
        let (sender, rx) = mpsc::channel::<SyncMsg>();
        let weak = Arc::downgrade(target);
        let blobs_dir = self.blobs_dir.clone();
        let spawned = std::thread::Builder::new()
            .name("edrive-cache-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // What comes within SYNC_BATCH_WINDOW goes in the same batch: one
                    // flush of the disk and one index transaction for all of it (an untar
                    // uploads hundreds of files a second). Somebody waiting ends the
                    // window.
                    let mut jobs = Vec::new();
                    let mut barriers = Vec::new();
                    let window_end = Instant::now() + SYNC_BATCH_WINDOW;
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            SyncMsg::Job(job) => jobs.push(job),
                            SyncMsg::Barrier(done) => barriers.push(done),
                        }
                        next = match rx.try_recv() {
                            Ok(msg) => Some(msg),
                            Err(_) if !barriers.is_empty() => None,
                            Err(_) => rx
                                .recv_timeout(window_end.saturating_duration_since(Instant::now()))
                                .ok(),
                        };
                    }
                    if !jobs.is_empty() {
                        let Some(target) = weak.upgrade() else {
                            return;
                        };
                        sync_and_record(&blobs_dir, &*target, jobs);
                    }
                    for done in barriers {
                        let _ = done.send(());
                    }
                }
            });
        match spawned {
            Ok(_) => {
                let _ = sender.send(SyncMsg::Job(job));
                *tx = Some(sender);
            }
            Err(err) => {
                tracing::warn!(%err, "cache: no sync thread; syncing inline");
                drop(tx);
                sync_and_record(&self.blobs_dir, &**target, vec![job]);
            }
        }
    }
}

/// Syncs the files of `jobs`, then has `target` record the synced ones.
fn sync_and_record<T: SyncTarget>(blobs_dir: &Path, target: &T, jobs: Vec<SyncJob>) {
    let synced = sync_files(blobs_dir, &jobs);
    let synced: Vec<SyncJob> = jobs
        .into_iter()
        .zip(synced)
        .filter_map(|(job, ok)| ok.then_some(job))
        .collect();
    target.record_synced(&synced);
}

/// Makes the files of `jobs` (in `blobs_dir`) durable; says which are. A batch of several
/// is synced with one `syncfs` on Linux (one flush of the disk instead of one per file;
/// they all live on the cache's file system), each file with `fsync` otherwise or if that
/// fails. A file gone meanwhile (evicted, or moved out to be edited) counts as not synced.
fn sync_files(blobs_dir: &Path, jobs: &[SyncJob]) -> Vec<bool> {
    #[cfg(target_os = "linux")]
    if jobs.len() > 1 {
        use std::os::unix::io::AsRawFd;
        match std::fs::File::open(blobs_dir) {
            // SAFETY: `syncfs` only reads the descriptor, which `dir` keeps open.
            Ok(dir) if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 => {
                return vec![true; jobs.len()];
            }
            Ok(_) => {
                let err = io::Error::last_os_error();
                tracing::debug!(%err, "cache: syncfs failed; syncing file by file");
            }
            Err(err) => tracing::debug!(%err, "cache: opening blobs/ failed; syncing file by file"),
        }
    }
    jobs.iter()
        .map(|job| {
            let path = blobs_dir.join(&job.file_name);
            match dir::open_read_write(&path).and_then(|f| f.sync_all()) {
                Ok(()) => true,
                Err(err) if err.kind() == io::ErrorKind::NotFound => false,
                Err(err) => {
                    tracing::warn!(%err, key = %job.key, "cache: syncing a blob failed; it is not kept across restarts");
                    false
                }
            }
        })
        .collect()
}
