//! The drive's gates and their one order.
//!
//! Besides short-lived data mutexes, the drive and the write-back coordinate through six
//! gates. Whoever holds several takes them in this order, never the other way round:
//!
//! | rank | gate | kind | where | what it keeps apart |
//! |---|---|---|---|---|
//! | 1 | listing gate, per folder | async mutex | `Drive::listing_locks` | two listings of one folder (the second waits, then uses the first's result) |
//! | 2 | working-copy gate | async mutex | `Drive::work_gate` | creating or forking working copies; `resolve --use-remote` replacing one |
//! | 3 | tree lock | async rwlock | `Uploader::tree_lock` | read: local namespace changes (unlink, rmdir, rename) and merging a listing; write: the write-back recording what the server now holds, `resolve` |
//! | 4 | plan gate | mutex | [`crate::sync::Activity::lock_plan`] | the write-back's plan and a new file's row before its writer is known |
//! | 5 | work lock | mutex | [`crate::sync::Activity::lock_work`] | attaching a handle to a working copy and publishing that copy as a clean blob |
//! | 6 | recording | mutex, per working copy | `Working::recording` | two closes writing size and times to the store |
//!
//! Then the data mutexes (open files, folders, working copies in use, orphans, …): each
//! held only to read or change its map, never across an `await`, never while taking a
//! gate. The metadata store and the cache have their own internal locks, below all of
//! these: they never call back into the drive.
//!
//! Why this order: a writer holds the working-copy gate while it may list a folder (which
//! takes the tree lock to merge); the write-back holds the tree lock while it decides,
//! under the work lock, whether a working copy becomes a clean blob.
//!
//! The synchronous gates (4–6) are taken through [`ranked`], which checks the order in
//! debug builds (tests): taking a gate while this thread holds one of the same or a later
//! rank panics, naming both. They never cross an `await`, so the thread is the holder.
//! The async gates (1–3) are held across `await`s and move between threads, so they are
//! not tracked; their order is the table's, and every place that takes two of them says
//! so where it does.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// A gate's place in the order (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// [`crate::sync::Activity::lock_plan`].
    Plan = 4,
    /// [`crate::sync::Activity::lock_work`].
    Work = 5,
    /// `Working::recording`.
    Recording = 6,
}

thread_local! {
    /// The ranked gates this thread holds, in the order taken.
    static HELD: RefCell<Vec<Rank>> = const { RefCell::new(Vec::new()) };
}

/// A gate's guard that remembers, in debug builds, that this thread holds it.
pub struct Ranked<G> {
    guard: G,
    rank: Rank,
}

/// Takes a gate of `rank` with `take`; in debug builds, first checks that this thread
/// holds no gate of the same or a later rank.
pub(crate) fn ranked<G>(rank: Rank, take: impl FnOnce() -> G) -> Ranked<G> {
    if cfg!(debug_assertions) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(later) = held.iter().find(|h| **h >= rank) {
                panic!("lock order: taking {rank:?} while holding {later:?} (see fs-core/src/locks.rs)");
            }
            held.push(rank);
        });
    }
    Ranked {
        guard: take(),
        rank,
    }
}

impl<G> Drop for Ranked<G> {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            let rank = self.rank;
            HELD.with(|held| {
                let mut held = held.borrow_mut();
                if let Some(i) = held.iter().rposition(|h| *h == rank) {
                    held.remove(i);
                }
            });
        }
    }
}

impl<G> Deref for Ranked<G> {
    type Target = G;
    fn deref(&self) -> &G {
        &self.guard
    }
}

impl<G> DerefMut for Ranked<G> {
    fn deref_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_in_order_are_fine_and_released_ones_forgotten() {
        {
            let _plan = ranked(Rank::Plan, || ());
            let _work = ranked(Rank::Work, || ());
            let _rec = ranked(Rank::Recording, || ());
        }
        let _work = ranked(Rank::Work, || ());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order: taking Plan while holding Work")]
    fn a_gate_out_of_order_panics_in_debug_builds() {
        let _work = ranked(Rank::Work, || ());
        let _plan = ranked(Rank::Plan, || ());
    }
}
