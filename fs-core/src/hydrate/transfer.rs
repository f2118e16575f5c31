//! One file's transfer as readers see it: waiting for bytes, reading what arrived,
//! writing into the cache fill and recording progress.

use super::*;

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
    pub(super) fn park(&self) {
        let Some(fill) = self.fill.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let ranges = self.progress.borrow().covered.list();
        if let Err(e) = fill.park(&ranges) {
            warn!(ino = self.key.entry, error = %e, "could not keep a partial download");
        }
    }

    /// Drops the fill and what it holds.
    pub(super) fn discard(&self) {
        drop(self.fill.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Writes the bytes held back in `pending` at `pos` and tells readers; with
    /// `aligned`, only up to the last [`COALESCE`] boundary (the rest stays held back).
    /// The last bytes of the file become visible only with the commit, so whoever has
    /// read the whole file finds it cached as complete.
    pub(super) fn write_held(
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
    pub(super) fn write_fill(&self, data: &[u8], offset: u64) -> Result<(), FsError> {
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
    pub(super) fn record(
        &self,
        start: u64,
        end: u64,
        tx: &watch::Sender<Progress>,
        at: Option<u64>,
    ) {
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
    pub(super) fn written(&self) -> Ranges {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a helper's error ends the transfer.
    pub(super) fn failed(&self) -> bool {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A helper's error that ends the transfer, if one happened.
    pub(super) fn take_fatal(&self) -> Option<FsError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
