//! Helper requests: extra ranged GETs for wanted pieces further ahead while the main
//! request is slow.

use super::*;

impl Hydrator {
    /// Starts helper requests (up to `streams - 1` at once) for pieces [`Transfer::claim`]
    /// finds; each takes further pieces until none is left.
    pub(super) fn add_helpers(
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
    pub(super) async fn helper(
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
    pub(super) async fn fetch_piece(
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
}
