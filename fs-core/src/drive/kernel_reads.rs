//! Reads the kernel serves itself, straight from a cached file (FUSE passthrough), and
//! the rules that keep them apart from reads and writes through the daemon.
//!
//! The kernel puts a file open in passthrough mode in a mode of its own: while any such
//! open exists, every other open of that inode must be in passthrough mode too, on the
//! same backing file (else the open fails with EIO), and passthrough is refused while the
//! inode is open through the page cache. So the drive decides per open, under its table
//! of open files:
//! - a read of a complete cached version, with no other handle on the inode, is served
//!   by the kernel;
//! - a read while the kernel serves others is served by the kernel too, from the version
//!   they read (even if the server has a newer one by now: the same as if the poller had
//!   not seen it yet; the next open after they close gets the new one);
//! - anything that would need a working copy (an open for writing, a truncate) while the
//!   kernel serves reads fails with [`FsError::Busy`] (ETXTBSY), as Windows refuses to
//!   write a file another program reads;
//! - everything else goes through the daemon, as without passthrough.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, Content, Drive, OpenFile};
use crate::error::FsError;

/// How the kernel serves an open file's reads.
#[derive(Debug)]
pub enum ReadPath {
    /// Through the daemon's `read`; `keep_cache` as [`Drive::keeps_cache`] says.
    Daemon {
        /// Whether the kernel may keep the pages cached by earlier opens.
        keep_cache: bool,
    },
    /// From `file` (a duplicate descriptor of the cached version), by the kernel. Every
    /// handle on the inode that is served this way reads the same `version`.
    Kernel {
        /// The cached content, read-only.
        file: std::fs::File,
        /// The version `file` holds (the inode's backing file is shared per version).
        version: String,
    },
}

/// Numbers about kernel-served reads, for `edrive status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelReads {
    /// Whether the kernel and the daemon's privileges allow them on this mount.
    pub available: bool,
    /// Handles served by the kernel now.
    pub open: u64,
    /// Handles served by the kernel since the mount.
    pub opened: u64,
}

/// A writer or truncate on its way to a working copy: counted, so that no read starts
/// being served by the kernel meanwhile. Dropped when the handle exists (or failed).
pub(super) struct WriterIntent<'a> {
    drive: &'a Drive,
    ino: u64,
}

impl Drop for WriterIntent<'_> {
    fn drop(&mut self) {
        let _files = lock(&self.drive.files);
        let mut pending = lock(&self.drive.writers_pending);
        if let Some(n) = pending.get_mut(&self.ino) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.ino);
            }
        }
    }
}

impl Drive {
    /// Turns kernel-served reads on or off for this mount (the adapter knows whether the
    /// kernel offers them).
    pub fn set_kernel_reads(&self, available: bool) {
        self.kernel_reads_on.store(available, Ordering::SeqCst);
    }

    /// How many handles are and were served by the kernel.
    pub fn kernel_reads(&self) -> KernelReads {
        let files = lock(&self.files);
        KernelReads {
            available: self.kernel_reads_on.load(Ordering::SeqCst),
            open: files
                .values()
                .filter(|f| f.kernel_reads.load(Ordering::SeqCst))
                .count() as u64,
            opened: self.kernel_read_opens.load(Ordering::Relaxed),
        }
    }

    /// Decides how the reads of a handle just opened are served (see the module docs).
    /// Call it once, right after `open`.
    pub fn read_path(&self, fh: u64) -> Result<ReadPath, FsError> {
        let mut files = lock(&self.files);
        let me = files.get(&fh).cloned().ok_or(FsError::BadHandle)?;
        let daemon = Ok(ReadPath::Daemon {
            keep_cache: me.keeps_cache(),
        });
        let mut peer: Option<Arc<OpenFile>> = None;
        let mut others = false;
        for (&other_fh, f) in files.iter() {
            if other_fh == fh || f.ino != me.ino {
                continue;
            }
            if f.kernel_reads.load(Ordering::SeqCst) {
                peer = Some(f.clone());
            } else {
                others = true;
            }
        }
        if let Some(peer) = peer {
            // The kernel serves this inode from the peer's file: so must this handle.
            if me.writable || matches!(*lock(&me.content), Content::Work(_)) {
                return Err(FsError::Busy("read by another program (passthrough)"));
            }
            let Content::Cached(blob) = &*lock(&peer.content) else {
                return Err(FsError::Busy("read by another program (passthrough)"));
            };
            let file = blob.file().try_clone()?;
            let version = peer.key.version.clone();
            if let Content::Hydrating(t) = &*lock(&me.content) {
                self.hydrator.release(t);
            }
            let mine = OpenFile {
                ino: me.ino,
                key: peer.key.clone(),
                content: std::sync::Mutex::new(Content::Cached(blob.clone())),
                writable: false,
                same_as_last_open: false,
                kernel_reads: true.into(),
                read_run: std::sync::Mutex::default(),
            };
            files.insert(fh, Arc::new(mine));
            self.kernel_read_opens.fetch_add(1, Ordering::Relaxed);
            return Ok(ReadPath::Kernel { file, version });
        }
        // Passthrough off only stops new backing files: handles sharing one go on above.
        if !self.kernel_reads_on.load(Ordering::SeqCst)
            || others
            || me.writable
            || lock(&self.writers_pending).contains_key(&me.ino)
            // A writer came and went since this handle's open: its version may be old.
            || self.has_working_copy(me.ino)
            || self.entry(me.ino).map_or(true, |e| e.content_version() != me.key.version)
        {
            return daemon;
        }
        let file = match &*lock(&me.content) {
            Content::Cached(blob) => blob.file().try_clone()?,
            _ => return daemon,
        };
        me.kernel_reads.store(true, Ordering::SeqCst);
        self.kernel_read_opens.fetch_add(1, Ordering::Relaxed);
        Ok(ReadPath::Kernel {
            file,
            version: me.key.version.clone(),
        })
    }

    /// The kernel would not take handle `fh`'s file after all: its reads come to the
    /// daemon. Returns whether the kernel may keep cached pages.
    pub fn kernel_read_refused(&self, fh: u64) -> bool {
        let files = lock(&self.files);
        let Some(f) = files.get(&fh) else {
            return false;
        };
        if f.kernel_reads.swap(false, Ordering::SeqCst) {
            self.kernel_read_opens.fetch_sub(1, Ordering::Relaxed);
        }
        f.keeps_cache()
    }

    /// Announces a writer (or truncate) of `ino`; fails with [`FsError::Busy`] while the
    /// kernel serves reads of it. The kernel tells of a closed file only after the close
    /// returned, so a writer right after the last reader (`cat f; echo x >> f`) waits a
    /// moment for that news before it is refused.
    pub(super) async fn intend_writing(&self, ino: u64) -> Result<WriterIntent<'_>, FsError> {
        let deadline = std::time::Instant::now() + RELEASE_GRACE;
        loop {
            {
                let files = lock(&self.files);
                if !files
                    .values()
                    .any(|f| f.ino == ino && f.kernel_reads.load(Ordering::SeqCst))
                {
                    *lock(&self.writers_pending).entry(ino).or_insert(0) += 1;
                    return Ok(WriterIntent { drive: self, ino });
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(FsError::Busy("read by another program (passthrough)"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// How far behind a long sequential read through the daemon its pages are dropped.
const DROP_LAG: u64 = 16 << 20;
/// Pages are dropped this many bytes at a time.
const DROP_STEP: u64 = 64 << 20;
/// A read starting at most this far from where the last one ended continues its run
/// (the kernel's read-ahead sends several requests at once, not always in order).
const RUN_SLACK: u64 = 8 << 20;
/// A handle that read at least this far through the daemon has its pages dropped when it
/// closes, if the next open is likely served by the kernel.
const DROP_ON_CLOSE: u64 = 4 << 20;

/// A handle's reads through the daemon: the sequential run going on, and how much of it
/// the kernel was told it need not keep.
#[derive(Debug, Default)]
pub(super) struct ReadRun {
    start: u64,
    end: u64,
    dropped: u64,
    /// The furthest byte read.
    max_end: u64,
}

impl OpenFile {
    /// Whether this handle read enough through the daemon that its pages are worth
    /// dropping (see [`Drive::drop_behind`]).
    pub(super) fn read_through_daemon(&self) -> bool {
        lock(&self.read_run).max_end >= DROP_ON_CLOSE
    }
}

impl Drive {
    /// After a read of `[offset, end)` through the daemon, on a mount where the kernel
    /// serves reads of cached files: the pages a long sequential read left behind are
    /// dropped, in the background. The kernel drops all of an inode's pages when it
    /// next opens it in passthrough mode, and for a large file that makes the open wait
    /// (0.15 s a GiB); the pages also hold a second copy of the cached file in memory.
    pub(super) fn drop_behind(&self, file: &OpenFile, offset: u64, end: u64) {
        if file.writable || !self.kernel_reads_on.load(Ordering::Relaxed) {
            return;
        }
        if let Some((from, to)) = lock(&file.read_run).advance(offset, end) {
            self.inval.data(file.ino, from, to - from);
        }
    }
}

impl ReadRun {
    /// Records a read of `[offset, end)`; returns the pages to drop, if the sequential
    /// run now leaves [`DROP_STEP`] more of them [`DROP_LAG`] behind it.
    fn advance(&mut self, offset: u64, end: u64) -> Option<(u64, u64)> {
        if end <= offset {
            return None;
        }
        self.max_end = self.max_end.max(end);
        if offset <= self.end.saturating_add(RUN_SLACK) && end.saturating_add(RUN_SLACK) > self.end
        {
            self.end = self.end.max(end);
        } else {
            // A new run: what the old one dropped stays dropped.
            self.start = offset;
            self.end = end;
            self.dropped = offset;
        }
        let upto = self.end.saturating_sub(DROP_LAG) & !4095;
        let from = self.dropped.max(self.start);
        if upto < from.saturating_add(DROP_STEP) {
            return None;
        }
        self.dropped = upto;
        Some((from, upto))
    }
}

/// How long a writer waits for kernel-served readers to be reported closed.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Reads `[from, to)` in `step`-sized pieces; returns what was dropped.
    fn read_seq(run: &mut ReadRun, from: u64, to: u64, step: u64) -> Vec<(u64, u64)> {
        (from..to)
            .step_by(step as usize)
            .filter_map(|o| run.advance(o, (o + step).min(to)))
            .collect()
    }

    #[test]
    fn a_sequential_read_drops_what_it_left_behind_in_steps() {
        let mut run = ReadRun::default();
        let dropped = read_seq(&mut run, 0, 1024 * MIB, MIB);
        assert_eq!(dropped.first(), Some(&(0, DROP_STEP)));
        // Contiguous, never closer than DROP_LAG to the reader, never past it.
        for w in dropped.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        let last = dropped.last().copied().unwrap_or_default();
        assert!(last.1 <= 1024 * MIB - DROP_LAG);
        assert!(last.1 > 1024 * MIB - DROP_LAG - DROP_STEP);
        assert!(run.max_end >= DROP_ON_CLOSE);
    }

    #[test]
    fn short_reads_and_random_reads_drop_nothing() {
        let mut run = ReadRun::default();
        assert!(read_seq(&mut run, 0, DROP_LAG + DROP_STEP - MIB, MIB).is_empty());
        let mut run = ReadRun::default();
        for i in 0..2000u64 {
            // Far apart: every read starts a run of its own.
            let o = (i * 7919 % 1000) * 64 * MIB;
            assert_eq!(run.advance(o, o + 128 * 1024), None);
        }
    }

    #[test]
    fn reads_slightly_out_of_order_continue_the_run() {
        let mut run = ReadRun::default();
        let mut dropped = Vec::new();
        for i in (0..512u64).step_by(2) {
            // The kernel's read-ahead: pairs of requests, the second one first.
            dropped.extend(run.advance((i + 1) * MIB, (i + 2) * MIB));
            dropped.extend(run.advance(i * MIB, (i + 1) * MIB));
        }
        assert_eq!(dropped.first().map(|d| d.0), Some(0));
        assert!(dropped.last().map_or(0, |d| d.1) >= 512 * MIB - DROP_LAG - DROP_STEP);
    }
}
