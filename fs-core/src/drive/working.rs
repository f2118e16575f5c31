//! A file's local working copy while handles use it: the open file in the cache's `work/`
//! directory plus its size, modification time and whether it differs from the server.

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::positional::{read_full_at, write_all_at};

/// One file's working copy, shared by every handle that uses it.
pub(crate) struct Working {
    pub(crate) ino: u64,
    file: File,
    state: Mutex<State>,
}

#[derive(Clone, Copy)]
struct State {
    len: u64,
    mtime: SystemTime,
    /// When content or times last changed through this working copy, if they did.
    ctime: Option<SystemTime>,
    /// The store already records this file as dirty.
    dirty_recorded: bool,
}

impl Working {
    pub(crate) fn new(ino: u64, file: File, len: u64, mtime: SystemTime, dirty: bool) -> Working {
        Working {
            ino,
            file,
            state: Mutex::new(State {
                len,
                mtime,
                ctime: None,
                dirty_recorded: dirty,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Size and modification time as `stat` shows them.
    pub(crate) fn size_and_mtime(&self) -> (u64, SystemTime) {
        let s = self.state();
        (s.len, s.mtime)
    }

    /// When content or times last changed through this working copy, if they did.
    pub(crate) fn ctime(&self) -> Option<SystemTime> {
        self.state().ctime
    }

    /// Carries over the change time of the working copy this one replaces.
    pub(crate) fn set_ctime(&self, ctime: Option<SystemTime>) {
        self.state().ctime = ctime;
    }

    /// Whether the store records this file as dirty yet.
    pub(crate) fn dirty_recorded(&self) -> bool {
        self.state().dirty_recorded
    }

    /// Notes that the store records it as dirty now.
    pub(crate) fn set_dirty_recorded(&self) {
        self.state().dirty_recorded = true;
    }

    /// Reads up to `size` bytes at `offset`.
    pub(crate) fn read(&self, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let len = self.state().len;
        if offset >= len {
            return Ok(Vec::new());
        }
        let n = (size as u64).min(len - offset) as usize;
        let mut buf = vec![0u8; n];
        let done = read_full_at(&self.file, &mut buf, offset)?;
        buf.truncate(done);
        Ok(buf)
    }

    /// Writes `data` at `offset`; extends the size as needed.
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all_at(&self.file, data, offset)?;
        let mut s = self.state();
        s.len = s.len.max(offset + data.len() as u64);
        s.mtime = SystemTime::now();
        s.ctime = Some(s.mtime);
        Ok(())
    }

    /// Truncates or extends to `len` bytes.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        let mut s = self.state();
        s.len = len;
        s.mtime = SystemTime::now();
        s.ctime = Some(s.mtime);
        Ok(())
    }

    /// Sets the modification time shown (and uploaded); the change time becomes now.
    pub(crate) fn set_mtime(&self, mtime: SystemTime) {
        let mut s = self.state();
        s.mtime = mtime;
        s.ctime = Some(SystemTime::now());
    }

    /// Flushes the content to disk (`fsync`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}
