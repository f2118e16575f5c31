//! The write-back's loop: waits for work and for quiet files, plans, runs each operation,
//! backs off after failures, and ends a sync when nothing more can move.

use super::*;

impl Uploader {
    /// Runs forever (spawn it); wakes on local changes, debounce deadlines and retries.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut last_no_space_retry = Instant::now();
        let mut lock_wait = LOCK_RETRY_MIN;
        let mut lock_retry_at = Instant::now() + lock_wait;
        let mut retry_wait = RETRY_MIN;
        let mut retry_at = Instant::now() + retry_wait;
        let mut learnt = false;
        let mut last_probe: Option<Instant> = None;
        let mut last_cleanup = Instant::now();
        loop {
            let gen = self.sync_gen.load(Ordering::SeqCst);
            if self.suspended.load(Ordering::SeqCst) {
                // A sync asked for since the check above is not over.
                if self.sync_gen.load(Ordering::SeqCst) == gen {
                    self.set(|p| p.syncing = false);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), self.activity.woken()).await;
                continue;
            }
            if !self.conn.usable() {
                // Offline or refused credentials: nothing is sent (and a sync asked for
                // ends, saying what is left) until the link is back.
                if self.sync_gen.load(Ordering::SeqCst) == gen {
                    self.set(|p| p.syncing = false);
                }
                self.conn.changed(Duration::from_secs(5)).await;
                backoff = BACKOFF_MIN;
                continue;
            }
            let paused = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = paused {
                if until > Instant::now() {
                    let _ = tokio::time::timeout_at(until.into(), self.activity.woken()).await;
                    continue;
                }
            }
            if !learnt && last_probe.is_none_or(|t| t.elapsed() >= PROBE_RETRY) {
                // Before the first write: what the server guarantees, and staging files a
                // crash left. Neither holds up the queue if the server fails it: until the
                // probe succeeds every write is checked by the client.
                last_probe = Some(Instant::now());
                learnt = self.learn_server().await;
                let _ = self.remove_stale_staging().await;
                last_cleanup = Instant::now();
            } else if last_cleanup.elapsed() >= CLEANUP_RETRY && self.staging_left() {
                // Work names a failure left (a version that could not be put back yet):
                // tried again until nothing is left under them.
                last_cleanup = Instant::now();
                let _ = self.remove_stale_staging().await;
            }
            if last_no_space_retry.elapsed() >= NO_SPACE_RETRY {
                last_no_space_retry = Instant::now();
                self.meta
                    .clear_problems(ProblemKind::NoSpace)
                    .or_log("meta clear_problems");
            }
            if !self.locks_waiting.load(Ordering::SeqCst) {
                lock_wait = LOCK_RETRY_MIN;
                lock_retry_at = Instant::now() + lock_wait;
            } else if Instant::now() >= lock_retry_at {
                // Files locked by someone else: tried again, less often the longer the
                // locks stay.
                lock_wait = match self.meta.clear_problems(ProblemKind::Locked) {
                    Ok(0) | Err(_) => {
                        self.locks_waiting.store(false, Ordering::SeqCst);
                        LOCK_RETRY_MIN
                    }
                    Ok(_) => (lock_wait * 2).min(LOCK_RETRY_MAX),
                };
                lock_retry_at = Instant::now() + lock_wait;
            }
            if self.retries_reset.swap(false, Ordering::SeqCst)
                || !self.retries_waiting.load(Ordering::SeqCst)
            {
                retry_wait = RETRY_MIN;
                retry_at = Instant::now() + retry_wait;
            } else if Instant::now() >= retry_at {
                // Changes refused for a reason that may pass: tried again, less often the
                // longer they keep failing; the rest of the queue never waits for them.
                retry_wait = match self.meta.clear_problems(ProblemKind::Retrying) {
                    Ok(0) | Err(_) => {
                        self.retries_waiting.store(false, Ordering::SeqCst);
                        RETRY_MIN
                    }
                    Ok(_) => (retry_wait * 2).min(LOCK_RETRY_MAX),
                };
                retry_at = Instant::now() + retry_wait;
            }
            self.retries_early
                .store(retry_wait < RETRY_PATIENCE, Ordering::SeqCst);
            if let Err(e) = self.settle_moves().await {
                let wait = jitter(backoff);
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "write-back: checking an interrupted move failed; will retry");
                self.set(|p| p.last_error = Some(e.to_string()));
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            let urgent = self.urgent.load(Ordering::SeqCst);
            let debounce = if urgent {
                Duration::ZERO
            } else {
                self.debounce
            };
            let planned = {
                let _gate = self.activity.lock_plan();
                plan(&self.meta, &self.activity, &self.ignore, debounce)
            };
            let planned = match planned {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "write-back: planning failed");
                    tokio::time::sleep(BACKOFF_MAX).await;
                    continue;
                }
            };
            if planned.ops.is_empty() {
                // Nothing can run now: what is left waits for a writer to close, a
                // person (conflict), or a later retry. A sync ends here — after a short
                // grace for writers: the kernel reports a close (RELEASE) asynchronously,
                // so `cp x mnt/ && edrive sync mnt` can see the file still open.
                if urgent && self.writer_grace() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                // Changes tried again soon are still moving: a sync waits for them (until
                // their retries slow down; then they count as stuck and are listed).
                let retrying = self.retries_waiting.load(Ordering::SeqCst)
                    && self.retries_early.load(Ordering::SeqCst);
                if self.sync_gen.load(Ordering::SeqCst) == gen && !retrying {
                    self.urgent.store(false, Ordering::SeqCst);
                    self.set(|p| p.syncing = false);
                }
                let mut wait = planned
                    .wake_at
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(NO_SPACE_RETRY)
                    .min(NO_SPACE_RETRY);
                if self.locks_waiting.load(Ordering::SeqCst) {
                    wait = wait.min(lock_retry_at.saturating_duration_since(Instant::now()));
                }
                if self.retries_waiting.load(Ordering::SeqCst) {
                    wait = wait.min(retry_at.saturating_duration_since(Instant::now()));
                }
                let _ = tokio::time::timeout(wait, self.activity.woken()).await;
                if !self.urgent.load(Ordering::SeqCst) {
                    // A burst of changes (an untar, a copy of a tree) wakes this loop once
                    // per file: plan once per burst, not once per file (every plan reads
                    // all pending rows, and creating a file waits for the plan gate).
                    tokio::time::sleep(self.debounce.min(PLAN_COALESCE)).await;
                }
                continue;
            }
            let mut ops = planned.ops.into_iter().peekable();
            let mut first = true;
            'batch: while let Some(op) = ops.next() {
                // New files next to each other in the plan are independent of each other
                // (their folders come earlier): up to PARALLEL_UPLOADS go at once.
                let mut group = vec![op];
                while group.len() < PARALLEL_UPLOADS
                    && group.iter().all(is_new_file_upload)
                    && ops.peek().is_some_and(is_new_file_upload)
                {
                    group.extend(ops.next());
                }
                if self.suspended.load(Ordering::SeqCst) {
                    break;
                }
                // The user, or an earlier operation of this batch, may have moved what this
                // one is about.
                for op in &group {
                    if !matches!(still_current(&self.meta, op), Ok(true)) {
                        debug!(
                            ?op,
                            "write-back: replanning, the tree changed under this plan"
                        );
                        if first {
                            // Not a busy loop should a plan ever be wrong from the start.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        break 'batch;
                    }
                }
                first = false;
                let outcomes = futures_util::future::join_all(group.into_iter().map(|op| {
                    let span = info_span!("writeback", ino = op.ino());
                    self.execute(op).instrument(span)
                }))
                .await;
                let mut worst = Outcome::Done;
                for o in outcomes {
                    match (&worst, o) {
                        (_, Outcome::Done) => {}
                        (Outcome::Auth(_), _) => {}
                        (_, o) => worst = o,
                    }
                }
                match worst {
                    Outcome::Done => {
                        backoff = BACKOFF_MIN;
                        self.set(|p| p.last_error = None);
                    }
                    Outcome::Transient(e) => {
                        let wait = jitter(backoff);
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "write-back: will retry");
                        self.set(|p| p.last_error = Some(e.to_string()));
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        break;
                    }
                    Outcome::Auth(e) => {
                        warn!(error = %e, "write-back: the server refused the credentials; pausing network work");
                        self.set(|p| p.last_error = Some(e.to_string()));
                        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now() + AUTH_PAUSE);
                        break;
                    }
                }
            }
        }
    }

    /// Whether a sync asked for less than [`WRITER_GRACE`] ago still sees a pending file
    /// held open for writing.
    pub(super) fn writer_grace(&self) -> bool {
        let asked = *self.sync_asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.is_none_or(|t| t.elapsed() >= WRITER_GRACE) {
            return false;
        }
        match self.meta.pending() {
            Ok(rows) => rows
                .iter()
                .any(|e| !e.deleted && self.activity.is_open_for_writing(e.ino)),
            Err(_) => false,
        }
    }
}

/// `d` ± up to 25 %, from the clock's low bits (no RNG dependency for this).
pub(super) fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.75 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(f)
}

/// Whether `op` uploads a file the server does not have yet (nothing else depends on it).
pub(super) fn is_new_file_upload(op: &Op) -> bool {
    matches!(
        op,
        Op::Upload {
            create: true,
            replaces: None,
            ..
        }
    )
}
