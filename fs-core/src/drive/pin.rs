//! Pin, unpin and free: keeping chosen content local for offline use, and giving space
//! back. Pinned content is downloaded in the background and never evicted; the cache's
//! byte limit applies to the rest.

use std::collections::VecDeque;
use std::sync::Arc;

use edrive_cache::BlobKey;
use tracing::{info, warn};

use super::{lock, Drive};
use crate::error::FsError;
use crate::meta::Entry;

/// How far pinning has got: what the last or running hydration of pinned content did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinProgress {
    /// Whether a hydration of pinned content is running.
    pub running: bool,
    /// Files found under the pins so far.
    pub files: u64,
    /// Of those, files whose content is local now.
    pub done: u64,
    /// Bytes of the files found.
    pub bytes: u64,
    /// Bytes local now.
    pub done_bytes: u64,
    /// Files that could not be downloaded (see the log); retried at the next run.
    pub failed: u64,
}

/// What `free` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeOutcome {
    /// Bytes of clean cached content deleted.
    pub freed_bytes: u64,
    /// Bytes kept because they hold changes not uploaded yet.
    pub dirty_bytes: u64,
    /// Bytes kept because they are pinned.
    pub pinned_bytes: u64,
    /// Bytes kept because the files are open.
    pub open_bytes: u64,
}

impl Drive {
    /// Pins `ino` (a file, or a folder and everything below it, now and later). Returns
    /// whether it was not pinned before. Call [`Drive::hydrate_pins`] to fetch the content.
    pub fn pin(&self, ino: u64) -> Result<bool, FsError> {
        self.entry(ino)?;
        Ok(self.meta.add_pin(ino)?)
    }

    /// Removes the pin on `ino`; its content stays cached, now evictable. Fails if `ino` is
    /// only pinned through a folder above it (that pin is named in the error).
    pub fn unpin(&self, ino: u64) -> Result<(), FsError> {
        self.entry(ino)?;
        if !self.meta.remove_pin(ino)? {
            return match self.meta.pinned_by(ino)? {
                Some(by) => Err(FsError::Io(std::io::Error::other(format!(
                    "pinned through the folder /{}; unpin that one",
                    self.meta.path_of(by)?
                )))),
                None => Ok(()),
            };
        }
        for f in self.meta.files_below(ino)? {
            if self.meta.pinned_by(f.ino)?.is_none() {
                let key = BlobKey::new(f.ino, f.content_version());
                self.cache.set_pinned(&key, false)?;
            }
        }
        Ok(())
    }

    /// Sets `user.edrive.pin` (`1` pins, `0` unpins), the way file managers and scripts
    /// pin. Returns whether pinned content should now be fetched
    /// ([`Drive::request_pin_run`]).
    pub fn set_pin_xattr(&self, ino: u64, value: &[u8]) -> Result<bool, FsError> {
        match value.trim_ascii() {
            b"1" => {
                self.pin(ino)?;
                Ok(true)
            }
            b"0" => {
                self.unpin(ino)?;
                Ok(false)
            }
            _ => Err(FsError::Invalid("user.edrive.pin takes 1 or 0")),
        }
    }

    /// Whether `ino` is pinned (itself or through a folder above it).
    pub fn is_pinned(&self, ino: u64) -> Result<bool, FsError> {
        Ok(self.meta.pinned_by(ino)?.is_some())
    }

    /// Deletes the clean cached content below `ino` (or of file `ino`) now. Content that
    /// holds changes not uploaded yet, pinned content and open files are kept.
    pub fn free(&self, ino: u64) -> Result<FreeOutcome, FsError> {
        self.entry(ino)?;
        let files = self.meta.files_below(ino)?;
        let mut out = FreeOutcome::default();
        let mut clean = Vec::new();
        for f in &files {
            if f.dirty || f.remote.is_none() || self.cache.work_path(f.ino).exists() {
                out.dirty_bytes += f.size;
            } else {
                clean.push(f.ino);
            }
        }
        let report = self.cache.free(&clean, false);
        out.freed_bytes = report.freed_bytes;
        out.pinned_bytes = report.kept_pinned_bytes;
        out.open_bytes = report.kept_open_bytes;
        out.dirty_bytes += report.kept_dirty_bytes;
        Ok(out)
    }

    /// The progress of the hydration of pinned content.
    pub fn pin_progress(&self) -> PinProgress {
        lock(&self.pin_progress).clone()
    }

    /// Asks for a run of [`Drive::hydrate_pins`]: returns `true` if the caller should start
    /// one (the progress says `running` from now on), `false` if one runs already (it goes
    /// round once more, so it sees pins added meanwhile).
    pub fn request_pin_run(&self) -> bool {
        let mut p = lock(&self.pin_progress);
        if p.running {
            *lock(&self.pin_again) = true;
            return false;
        }
        *p = PinProgress {
            running: true,
            ..PinProgress::default()
        };
        true
    }

    /// Fetches pinned content in the background on the current tokio runtime (one run at a
    /// time: see [`Drive::request_pin_run`]).
    pub fn spawn_pin_run(self: &Arc<Self>) {
        if self.request_pin_run() {
            let d = self.clone();
            tokio::spawn(async move { d.hydrate_pins().await });
        }
    }

    /// Downloads everything pinned that is not local yet (listing pinned folders as it
    /// goes) and marks it pinned in the cache; call after [`Drive::request_pin_run`]
    /// returned `true`. Stops early while suspended. Failures are counted and logged, never
    /// fatal.
    pub async fn hydrate_pins(&self) {
        let p = loop {
            self.pin_walk().await;
            // Decided under the progress lock, which `request_pin_run` takes too: a pin
            // added now is either seen here or starts a run of its own.
            let mut p = lock(&self.pin_progress);
            let again = std::mem::take(&mut *lock(&self.pin_again));
            if !again || self.suspended().is_some() {
                p.running = false;
                break p.clone();
            }
            *p = PinProgress {
                running: true,
                ..PinProgress::default()
            };
        };
        info!(
            files = p.files,
            bytes = p.done_bytes,
            failed = p.failed,
            "pinned content is local"
        );
    }

    async fn pin_walk(&self) {
        let roots = match self.meta.pins() {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "pins: cannot read the pins");
                Vec::new()
            }
        };
        let mut queue: VecDeque<u64> = roots.into();
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = queue.pop_front() {
            if self.suspended().is_some() {
                info!("pins: suspended; the rest is fetched after resume");
                break;
            }
            if !seen.insert(ino) {
                continue;
            }
            let Ok(e) = self.entry(ino) else { continue };
            if e.is_dir() {
                if let Err(err) = self.ensure_listed(ino).await {
                    warn!(ino, error = %err, "pins: cannot list a pinned folder");
                    lock(&self.pin_progress).failed += 1;
                }
                if let Ok(children) = self.meta.children(ino) {
                    queue.extend(children.iter().map(|c| c.ino));
                }
            } else {
                self.hydrate_pinned(&e).await;
            }
        }
    }

    async fn hydrate_pinned(&self, e: &Entry) {
        let e = &match self.with_size(e.clone()).await {
            Ok(e) => e,
            Err(err) => {
                warn!(ino = e.ino, error = %err, "pins: cannot find the size of a file");
                let mut p = lock(&self.pin_progress);
                p.files += 1;
                p.failed += 1;
                return;
            }
        };
        {
            let mut p = lock(&self.pin_progress);
            p.files += 1;
            p.bytes += e.size;
        }
        let local = e.dirty || e.remote.is_none() || self.cache.work_path(e.ino).exists();
        let key = BlobKey::new(e.ino, e.content_version());
        let ok = if local {
            // Changes not uploaded yet live in a working copy, which is never evicted.
            true
        } else if self.cache.contains(&key) {
            self.cache.set_pinned(&key, true).unwrap_or(false)
        } else if e.size == 0 {
            // Nothing to download: an empty blob stands for it.
            self.cache
                .begin_fill(key.clone(), 0)
                .and_then(|fill| fill.commit())
                .and_then(|_| self.cache.set_pinned(&key, true))
                .unwrap_or(false)
        } else {
            match self.server_path(e.ino).and_then(|path| {
                self.hydrator
                    .start(key.clone(), path, e.size, e.etag.clone())
            }) {
                Ok(t) => {
                    let r = t.wait().await;
                    // Pinned while the transfer still holds the blob open, so the budget
                    // cannot evict it in between.
                    let pinned = r.is_ok() && self.cache.set_pinned(&key, true).unwrap_or(false);
                    self.hydrator.release(&t);
                    if let Err(err) = r {
                        warn!(ino = e.ino, error = %err, "pins: download failed");
                    }
                    pinned
                }
                Err(err) => {
                    warn!(ino = e.ino, error = %err, "pins: download failed");
                    false
                }
            }
        };
        let mut p = lock(&self.pin_progress);
        if ok {
            p.done += 1;
            p.done_bytes += e.size;
        } else {
            p.failed += 1;
        }
    }
}
