//! Demand bookkeeping of a transfer: what readers want (with read-ahead), which ranges
//! are claimed by a request, where the main request should seek. No I/O.

use super::*;

impl Transfer {
    pub(super) fn demand(&self) -> std::sync::MutexGuard<'_, Demand> {
        self.demand.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a read of `[offset, end)`: it wants those bytes and a read-ahead window
    /// after them of twice what was read sequentially so far (within the bounds).
    pub(super) fn want(&self, offset: u64, end: u64) {
        let mut d = self.demand();
        let sequential = offset <= d.last_end.saturating_add(SEQUENTIAL_SLACK)
            && end.saturating_add(SEQUENTIAL_SLACK) > d.last_end;
        if sequential {
            d.run_start = d.run_start.min(offset);
            d.last_end = d.last_end.max(end);
        } else {
            d.run_start = offset;
            d.last_end = end;
        }
        let window = ((d.last_end - d.run_start) * 2).clamp(MIN_WINDOW, MAX_WINDOW);
        let until = end.saturating_add(window).min(self.len);
        if !d.wanted.covers(offset, until) {
            d.wanted.add(offset, until);
            drop(d);
            self.seek_wake.notify_one();
        }
    }

    /// Wants every byte of the file (pins, opens for writing).
    pub(super) fn want_all(&self) {
        self.demand().wanted.add(0, self.len);
        self.seek_wake.notify_one();
    }

    /// Where to fetch next, at or after `from` (else from the start): the first wanted
    /// byte that is missing of a piece worth a request now (a reader waits, it is at
    /// least [`RESUME_MIN`], or it is all that is missing up to bytes already here).
    /// `None` when nothing wanted is missing, or nothing is worth a request yet.
    pub(super) fn next_wanted(&self, from: u64, covered: &Ranges) -> Option<u64> {
        let d = self.demand();
        for start in [from, 0] {
            let mut at = start;
            while let Some((gs, ge)) = covered.gap_from(at, self.len) {
                // The wanted pieces of this gap.
                let mut w = gs;
                while let Some((ws, we)) = d.wanted.overlap(w, ge) {
                    if d.starving > 0 || we - ws >= RESUME_MIN || we == ge {
                        return Some(ws);
                    }
                    w = we;
                }
                at = ge;
            }
        }
        None
    }

    /// Whether bytes that are wanted and missing lie within [`SEEK_AHEAD`] after `pos`
    /// (a request at `pos` goes on through them rather than pause).
    pub(super) fn wanted_near(&self, pos: u64, covered: &Ranges) -> bool {
        let d = self.demand();
        let limit = pos.saturating_add(SEEK_AHEAD).min(self.len);
        let mut w = pos;
        while let Some((ws, we)) = d.wanted.overlap(w, limit) {
            if !covered.covers(ws, we) {
                return true;
            }
            w = we;
        }
        false
    }

    pub(super) fn claimed(&self) -> std::sync::MutexGuard<'_, Ranges> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a helper request is fetching byte `x`.
    pub(super) fn is_claimed(&self, x: u64) -> bool {
        self.claimed().contains(x)
    }

    /// Whether a helper fetches or wrote any of `[start, end)`.
    pub(super) fn taken(&self, start: u64, end: u64) -> bool {
        self.claimed().overlap(start, end).is_some()
            || self
                .written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .overlap(start, end)
                .is_some()
    }

    /// Bytes written or being fetched by helpers: what the main request leaves alone.
    pub(super) fn planned(&self) -> Ranges {
        let written = self.written();
        written.union(&self.claimed())
    }

    /// A piece for a helper request, claimed: wanted bytes that nobody has or fetches,
    /// at least [`HELPER_LEAD`] ahead of the main request, at most [`HELPER_CHUNK`] long.
    /// Pieces shorter than a [`COALESCE`] are left to the main request unless bytes
    /// already here (or the end of the file) follow them.
    pub(super) fn claim(&self) -> Option<(u64, u64)> {
        let from = self
            .main_at
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_add(HELPER_LEAD);
        let written = self.written();
        let d = self.demand();
        let mut claimed = self.claimed();
        let planned = written.union(&claimed);
        let mut at = from;
        while let Some((gs, ge)) = planned.gap_from(at, self.len) {
            let mut w = gs;
            while let Some((ws, we)) = d.wanted.overlap(w, ge) {
                let end = we.min(ws + HELPER_CHUNK);
                if end - ws >= COALESCE as u64 || end == ge {
                    claimed.add(ws, end);
                    return Some((ws, end));
                }
                w = we;
            }
            at = ge;
        }
        None
    }

    /// Whether the byte at `pos` is wanted (a request stops where the wanted bytes end).
    pub(super) fn wanted_at(&self, pos: u64) -> bool {
        pos < self.len && self.demand().wanted.contains(pos)
    }

    /// The offset a reader is waiting for, if the request now at `pos` should go there
    /// (consumed); a wish the request is about to satisfy anyway is dropped.
    pub(super) fn take_seek(&self, pos: u64, covered: &Ranges) -> Option<u64> {
        let mut seek = self.seek.lock().unwrap_or_else(|p| p.into_inner());
        let x = (*seek)?;
        *seek = None;
        (needs_seek(x, pos, covered) && !self.is_claimed(x)).then_some(x)
    }

    /// Whether a reader waits now for bytes that are not here.
    pub(super) fn starving(&self) -> bool {
        self.demand().starving > 0
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.transfer.claimed().remove(self.start, self.end);
        self.transfer.seek_wake.notify_one();
        self.tx.send_modify(|_| {});
    }
}
