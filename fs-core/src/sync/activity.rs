//! What the write-back must know about files in use: who has a file open for writing,
//! when it last changed (for the debounce), and a change counter that tells an upload
//! whether the file was written while it was being sent.

use crate::locks::{ranked, Rank, Ranked};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug)]
struct FileActivity {
    writers: u32,
    /// Handles reading or writing through the working copy.
    handles: u32,
    last_change: Instant,
    changes: u64,
}

/// Shared by the drive (which reports) and the uploader (which waits for quiet files).
#[derive(Debug, Default)]
pub struct Activity {
    files: Mutex<HashMap<u64, FileActivity>>,
    /// Folders whose listing the write-back found stale (a 409: a folder is gone on the
    /// server), to be listed again at the next poll, outermost first.
    relist: Mutex<Vec<u64>>,
    wake: Notify,
    work: Mutex<()>,
    plan: Mutex<()>,
    /// Above which a burst of deletions is held (see [`super::held`]).
    hold_limits: Mutex<super::HoldLimits>,
}

impl Activity {
    /// Sets above which a burst of deletions is held.
    pub fn set_hold_limits(&self, limits: super::HoldLimits) {
        *self.hold_limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// Above which a burst of deletions is held.
    pub fn hold_limits(&self) -> super::HoldLimits {
        *self.hold_limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for folders to be listed again at the next poll (outermost first).
    pub fn want_listed(&self, dirs: impl IntoIterator<Item = u64>) {
        let mut relist = self.relist.lock().unwrap_or_else(|p| p.into_inner());
        for d in dirs {
            if !relist.contains(&d) {
                relist.push(d);
            }
        }
    }

    /// The folders asked for by [`Activity::want_listed`] since the last call.
    pub fn take_want_listed(&self) -> Vec<u64> {
        std::mem::take(&mut *self.relist.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn with<R>(&self, ino: u64, f: impl FnOnce(&mut FileActivity) -> R) -> R {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let a = files.entry(ino).or_insert(FileActivity {
            writers: 0,
            handles: 0,
            last_change: Instant::now(),
            changes: 0,
        });
        f(a)
    }

    /// A handle that may write `ino` was opened.
    pub fn writer_opened(&self, ino: u64) {
        self.with(ino, |a| a.writers += 1);
    }

    /// A writing handle of `ino` was closed; the debounce starts now.
    pub fn writer_closed(&self, ino: u64) {
        self.with(ino, |a| {
            a.writers = a.writers.saturating_sub(1);
            a.last_change = Instant::now();
        });
        self.wake();
    }

    /// `ino` changed locally (content, size, name or existence).
    pub fn changed(&self, ino: u64) {
        self.with(ino, |a| {
            a.changes += 1;
            a.last_change = Instant::now();
        });
        self.wake();
    }

    /// The change counter of `ino`.
    pub fn changes(&self, ino: u64) -> u64 {
        self.with(ino, |a| a.changes)
    }

    /// Whether `ino` has a handle open for writing.
    pub fn is_open_for_writing(&self, ino: u64) -> bool {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get(&ino).is_some_and(|a| a.writers > 0)
    }

    /// `Ok` when `ino` may be uploaded now (no writer, quiet for `debounce`); otherwise
    /// when to look again (`None`: when a writer closes).
    pub fn quiet(&self, ino: u64, debounce: Duration) -> Result<(), Option<Instant>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        match files.get(&ino) {
            None => Ok(()),
            Some(a) if a.writers > 0 => Err(None),
            Some(a) if a.last_change.elapsed() >= debounce => Ok(()),
            Some(a) => Err(Some(a.last_change + debounce)),
        }
    }

    /// A handle started (`true`) or stopped using the working copy of `ino`.
    pub fn working_handle(&self, ino: u64, open: bool) {
        self.with(ino, |a| {
            if open {
                a.handles += 1
            } else {
                a.handles = a.handles.saturating_sub(1)
            }
        });
    }

    /// Whether any handle uses the working copy of `ino`.
    pub fn has_handles(&self, ino: u64) -> bool {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get(&ino).is_some_and(|a| a.handles > 0)
    }

    /// Serializes attaching handles to working copies with turning working copies into
    /// clean blobs, so no handle ever writes into a published blob.
    /// Rank 5 in the lock order ([`crate::locks`]).
    pub fn lock_work(&self) -> Ranked<std::sync::MutexGuard<'_, ()>> {
        ranked(Rank::Work, || {
            self.work.lock().unwrap_or_else(|p| p.into_inner())
        })
    }

    /// Held while the write-back plans, and by the drive while it creates a file and
    /// registers its writer, so no plan sees a new file before its writer is known.
    /// Rank 4 in the lock order ([`crate::locks`]).
    pub fn lock_plan(&self) -> Ranked<std::sync::MutexGuard<'_, ()>> {
        ranked(Rank::Plan, || {
            self.plan.lock().unwrap_or_else(|p| p.into_inner())
        })
    }

    /// Wakes the uploader.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for [`Activity::wake`] (or returns at once if one is pending).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
