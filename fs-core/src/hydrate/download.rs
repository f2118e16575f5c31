//! The download loop of a transfer: the main request, its seeks and pauses, and the
//! streams it reads.

use super::*;

impl Hydrator {
    /// The main request's loop (see the module doc). `covered` is what it leaves alone:
    /// bytes written, or being fetched by a helper. Helpers run in a set that ends with
    /// this future, so a cancelled download stops them too.
    pub(super) async fn download(
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

    /// Waits while nothing at `pos` is wanted, keeping the request (the server waits on
    /// its connection too, so what is fetched stays bounded and a sequential reader costs
    /// one request). `true` when the request should end instead: a reader wants bytes
    /// elsewhere, a helper failed for good, or nobody wanted more for [`PAUSE_LIMIT`].
    /// What the request leaves alone is taken again at every wake-up, as helpers end or
    /// give up pieces meanwhile.
    pub(super) async fn paused(&self, transfer: &Transfer, pos: u64) -> bool {
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
    pub(super) fn wanted_elsewhere(&self, transfer: &Transfer, pos: u64, covered: &Ranges) -> bool {
        let seek = *transfer.seek.lock().unwrap_or_else(|p| p.into_inner());
        seek.is_some_and(|x| needs_seek(x, pos, covered) && !transfer.is_claimed(x))
    }

    /// Starts a GET of `range` (all of it if `None`) and checks it is the version and
    /// length the listing promised. Follows a file the write-back is moving right now.
    pub(super) async fn open_stream(
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
