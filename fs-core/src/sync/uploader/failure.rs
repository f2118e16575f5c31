//! Sorting a failed operation: the whole queue waits (server not reached), this change
//! is retried with backoff, or it is flagged with a typed problem.

use super::*;

impl Uploader {
    /// Records why `ino`'s change does not move. Should the store fail to take it, that
    /// is logged (the change stays pending either way, and is tried again).
    pub(super) fn mark(&self, ino: u64, problem: Problem) {
        if let Err(e) = self.meta.set_problem(ino, Some(&problem)) {
            warn!(ino, %problem, error = %e, "write-back: recording the problem failed");
        }
    }

    /// Sorts a failed operation: retry, pause, or flag the entry.
    pub(super) fn failed(&self, ino: u64, path: &RemotePath, e: RemoteError) -> Outcome {
        match e {
            // Locked by someone else: this entry waits (retried with backoff by `run`),
            // the rest of the queue goes on.
            RemoteError::Locked(owner) => {
                warn!(%path, owner = owner.as_deref().unwrap_or("?"), "locked on the server; the change stays pending and is retried");
                self.mark(ino, Problem::Locked { owner });
                self.locks_waiting.store(true, Ordering::SeqCst);
                Outcome::Done
            }
            // The server not reached, or asking everyone to slow down: the whole queue
            // waits (every other request would fail the same way).
            RemoteError::Unreachable(_)
            | RemoteError::Transfer(_)
            | RemoteError::ShortBody { .. }
            | RemoteError::Status(429 | 503) => Outcome::Transient(e),
            // A refusal of this one change that may pass: 409 (its folder is not, or no
            // longer, there on the server), another 5xx, a local read that failed. It is
            // retried with backoff, visibly, and never holds up the rest of the queue.
            e if e.is_transient()
                || matches!(e, RemoteError::Local(_) | RemoteError::Status(409)) =>
            {
                if matches!(e, RemoteError::Status(409)) {
                    // A folder on its way is not (or no longer) on the server: the folders
                    // above it are listed again at the next poll, and the three-way rules
                    // (kept and written back again, or gone) settle it.
                    self.relist_ancestors(ino);
                }
                warn!(%path, error = %e, "write-back: this change is retried later; the rest goes on");
                self.mark(ino, Problem::Retrying(e.to_string()));
                self.retries_waiting.store(true, Ordering::SeqCst);
                Outcome::Done
            }
            RemoteError::Auth(401) => Outcome::Auth(e),
            // 403 on one path: this entry is refused (a read-only share, a blocked name);
            // the rest of the queue goes on.
            RemoteError::Auth(status) => {
                warn!(%path, status, "the server forbids this change (a read-only space); the local copy is kept, shown as refused");
                self.mark(
                    ino,
                    Problem::Forbidden(format!(
                        "the server forbids this change ({status}): read-only for you"
                    )),
                );
                match super::super::attention::learn_refusal(&self.meta, ino) {
                    Ok(inos) => inos.into_iter().for_each(|i| self.inval.inode(i)),
                    Err(e) => warn!(error = %e, "could not record a read-only folder"),
                }
                Outcome::Done
            }
            RemoteError::InsufficientStorage => {
                warn!(%path, "the server is full (507); the file stays local and dirty, retried later");
                self.mark(ino, Problem::NoSpace);
                Outcome::Done
            }
            RemoteError::PreconditionFailed => {
                warn!(%path, "conflict: the server has another version; the local version is kept and not uploaded");
                self.mark(ino, Problem::Conflict);
                Outcome::Done
            }
            e => {
                warn!(%path, error = %e, "write-back refused by the server; the local copy is kept");
                self.mark(ino, Problem::Refused(e.to_string()));
                Outcome::Done
            }
        }
    }
}
