//! A file's local working copy while handles use it: the open file in the cache's `work/`
//! directory plus its size, modification time and whether it differs from the server.

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::locks::{ranked, Rank, Ranked};
use crate::positional::{read_full_at, write_all_at};

/// One file's working copy, shared by every handle that uses it.
pub(crate) struct Working {
    pub(crate) ino: u64,
    file: File,
    state: Mutex<State>,
    /// Held while size and times go to the store, so that two handles closing at once
    /// cannot note a record as current after an older one overwrote it.
    recording: Mutex<()>,
}

#[derive(Clone, Copy)]
struct State {
    len: u64,
    mtime: SystemTime,
    /// When content or times last changed through this working copy, if they did.
    ctime: Option<SystemTime>,
    /// The store already records this file as dirty.
    dirty_recorded: bool,
    /// Counts every change of content, size or times through this working copy.
    changes: u64,
    /// The value of `changes` when size and times were last written to the store.
    recorded: Option<u64>,
}

/// Size, modification and change time, and the change count they are as of.
pub(crate) struct ToRecord {
    pub(crate) len: u64,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: Option<SystemTime>,
    changes: u64,
}

impl Working {
    pub(crate) fn new(ino: u64, file: File, len: u64, mtime: SystemTime, dirty: bool) -> Working {
        Working {
            ino,
            file,
            recording: Mutex::new(()),
            state: Mutex::new(State {
                len,
                mtime,
                ctime: None,
                dirty_recorded: dirty,
                changes: 0,
                recorded: None,
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

    /// Size, modification time and change time, read together.
    pub(crate) fn attrs(&self) -> super::WorkingAttrs {
        let s = self.state();
        (s.len, s.mtime, s.ctime)
    }

    /// When content or times last changed through this working copy, if they did.
    pub(crate) fn ctime(&self) -> Option<SystemTime> {
        self.state().ctime
    }

    /// Carries over the change time of the working copy this one replaces.
    pub(crate) fn set_ctime(&self, ctime: Option<SystemTime>) {
        let mut s = self.state();
        s.ctime = ctime;
        s.changes += 1;
    }

    /// Whether the store records this file as dirty yet.
    pub(crate) fn dirty_recorded(&self) -> bool {
        self.state().dirty_recorded
    }

    /// Notes that the store records it as dirty now.
    pub(crate) fn set_dirty_recorded(&self) {
        self.state().dirty_recorded = true;
    }

    /// Serialises writing size and times to the store: hold it from
    /// [`Working::to_record`] until after [`Working::set_recorded`].
    /// Rank 6 in the lock order ([`crate::locks`]).
    pub(crate) fn recording(&self) -> Ranked<std::sync::MutexGuard<'_, ()>> {
        ranked(Rank::Recording, || {
            self.recording.lock().unwrap_or_else(|p| p.into_inner())
        })
    }

    /// Size and times now, and whether the store has them already: nothing changed
    /// since they were last noted with [`Working::set_recorded`].
    pub(crate) fn to_record(&self) -> (ToRecord, bool) {
        let s = self.state();
        let now = ToRecord {
            len: s.len,
            mtime: s.mtime,
            ctime: s.ctime,
            changes: s.changes,
        };
        (now, s.recorded == Some(s.changes))
    }

    /// Notes that the store holds `r` (from [`Working::to_record`]).
    pub(crate) fn set_recorded(&self, r: &ToRecord) {
        self.state().recorded = Some(r.changes);
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
        s.changes += 1;
        Ok(())
    }

    /// Truncates or extends to `len` bytes.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        let mut s = self.state();
        s.len = len;
        s.mtime = SystemTime::now();
        s.ctime = Some(s.mtime);
        s.changes += 1;
        Ok(())
    }

    /// Sets the modification time shown (and uploaded); the change time becomes now.
    pub(crate) fn set_mtime(&self, mtime: SystemTime) {
        let mut s = self.state();
        s.mtime = mtime;
        s.ctime = Some(SystemTime::now());
        s.changes += 1;
    }

    /// Flushes the content to disk (`fsync`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_times_count_as_recorded_until_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("w"))
            .unwrap();
        let w = Working::new(7, file, 0, SystemTime::UNIX_EPOCH, true);
        let (first, recorded) = w.to_record();
        assert!(!recorded, "nothing written to the store yet");
        w.set_recorded(&first);
        assert!(w.to_record().1);
        let changes: [&dyn Fn(&Working); 4] = [
            &|w| w.write(0, b"abc").unwrap(),
            &|w| w.set_len(1).unwrap(),
            &|w| w.set_mtime(SystemTime::UNIX_EPOCH),
            &|w| w.set_ctime(None),
        ];
        for change in changes {
            change(&w);
            let (now, recorded) = w.to_record();
            assert!(!recorded, "a change makes the store's record stale");
            w.set_recorded(&now);
            assert!(w.to_record().1);
        }
        // What was noted before a change does not cover it.
        let (stale, _) = w.to_record();
        w.write(1, b"z").unwrap();
        w.set_recorded(&stale);
        assert!(!w.to_record().1);
    }
}
