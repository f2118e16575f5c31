//! Telling the kernel that what it cached is stale.
//!
//! A kernel adapter installs a [`KernelCache`] (FUSE: the session's `Notifier`); fs-core
//! queues invalidations here whenever a remote change or a conflict changes a name or a
//! file's content behind the kernel's back. They are sent from a thread of their own: a
//! FUSE notification can wait on a folder lock that a request handler holds, so sending it
//! from a task that holds a lock a handler needs could deadlock.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::debug;

/// What a kernel adapter can drop from the kernel's caches.
pub trait KernelCache: Send + Sync {
    /// Forget the name `name` in folder `parent` (a lookup asks again).
    fn inval_entry(&self, parent: u64, name: &str);
    /// Forget the attributes and cached pages of `ino`.
    fn inval_inode(&self, ino: u64);
    /// Forget the attributes of `ino` and its cached pages in `[offset, offset + len)`:
    /// memory, not correctness (the pages are not stale). By default, nothing.
    fn inval_data(&self, _ino: u64, _offset: u64, _len: u64) {}
}

enum Notice {
    Entry(u64, String),
    Inode(u64),
    Data(u64, u64, u64),
}

/// The queue of invalidations, drained by a thread once a kernel adapter is installed.
#[derive(Default)]
pub struct Invalidations {
    tx: OnceLock<Mutex<Sender<Notice>>>,
}

impl Invalidations {
    /// Starts sending queued invalidations to `sink` (once; later calls are ignored).
    pub fn install(&self, sink: Arc<dyn KernelCache>) {
        let (tx, rx) = channel::<Notice>();
        if self.tx.set(Mutex::new(tx)).is_err() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("edrive-inval".into())
            .spawn(move || {
                for n in rx {
                    match n {
                        Notice::Entry(parent, name) => sink.inval_entry(parent, &name),
                        Notice::Inode(ino) => sink.inval_inode(ino),
                        Notice::Data(ino, offset, len) => sink.inval_data(ino, offset, len),
                    }
                }
            });
        if let Err(e) = spawned {
            debug!(error = %e, "cannot start the invalidation thread; the kernel relies on its TTLs");
        }
    }

    fn send(&self, n: Notice) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(n);
        }
    }

    /// Queues: the name `name` in `parent` changed (appeared, vanished, or now means
    /// another entry).
    pub fn entry(&self, parent: u64, name: &str) {
        self.send(Notice::Entry(parent, name.to_string()));
    }

    /// Queues: `ino`'s content or attributes changed.
    pub fn inode(&self, ino: u64) {
        self.send(Notice::Inode(ino));
    }

    /// Queues: the kernel need not keep `ino`'s pages in `[offset, offset + len)`.
    pub fn data(&self, ino: u64, offset: u64, len: u64) {
        self.send(Notice::Data(ino, offset, len));
    }
}
