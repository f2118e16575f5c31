//! Merging a folder's listing into the store.
//!
//! The children arrive in batches into a temporary table (a [`Stage`]), as the reply is
//! parsed, so a folder of any size is never held in memory; one transaction then merges
//! them three-way with what the store knows, reading both sides a batch at a time.

mod merge;
mod receiver;

use merge::merge;
pub use receiver::Receiver;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row, Transaction};
use tracing::warn;

use super::{
    delete_remote_subtree, delete_subtree, detach, etag_cols, mtime_ns, now_ms, size_col,
    subtree_has_local_changes, Meta, MetaError,
};
use crate::lock;
use crate::remote::{validate_name, Listing, RemoteEntry};

/// Rows read per step of a merge, and children staged per transaction.
const BATCH: usize = 1000;

/// Sets up the connection's temporary storage. Temporary tables are private to the
/// connection and gone with it; SQLite spills them to a temporary file beyond its page
/// cache, not to memory. Their rollback journal is kept in memory: it only ever holds the
/// few pages a batch changes (a stage is appended to, then dropped whole).
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA temp_store = FILE;
         PRAGMA temp.journal_mode = MEMORY;
         CREATE TEMP TABLE IF NOT EXISTS listing_gone(ino INTEGER PRIMARY KEY, etag TEXT);
         CREATE INDEX IF NOT EXISTS temp.listing_gone_etag ON listing_gone(etag);",
    )
}

/// A listing on its way into the store (see [`Meta::stage`]): a temporary table of its
/// children. Merged by [`Meta::merge_staged`] or forgotten by [`Meta::drop_stage`].
///
/// A small listing (one batch) uses one of a pool of indexed tables, created once and
/// emptied by a whole-table `DELETE`: any schema change expires every prepared statement
/// of the connection, so a table per listing would recompile the store's statements after
/// each of the many small listings a tree walk makes. A large listing gets a table of its
/// own, appended to in arrival order and indexed once when merged (one sort, instead of
/// two indexes kept up at every insert, which made a 100,000-entry listing take twice as
/// long), then dropped.
#[derive(Debug)]
pub struct Stage {
    /// The table's name.
    table: String,
    /// One of the pool of indexed tables.
    pooled: bool,
}

/// What applying a listing changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListingChanges {
    /// New names.
    pub added: usize,
    /// Known entries whose version changed.
    pub changed: Vec<u64>,
    /// Entries removed (with their subtrees), by inode.
    pub removed: Vec<u64>,
    /// Entries deleted on the server but changed here: kept, and written back as new.
    pub kept_local: Vec<u64>,
    /// Entries renamed on the server within the folder (same version, new name).
    pub renamed: usize,
    /// Names in the folder that now mean something else (vanished, renamed from or to,
    /// another kind), for dropping the kernel's cached lookups. Names that merely
    /// appeared are left out: the kernel keeps no failed lookup (a FUSE `ENOENT` reply is
    /// revalidated at the next access), so it holds nothing of them, and a first listing
    /// of a large folder would otherwise send one notification per entry.
    pub names: Vec<String>,
    /// Names removed below the listed folder (folder inode, name): what a folder deleted
    /// on the server held that was unchanged here, when the folder is kept for what did
    /// change.
    pub names_below: Vec<(u64, String)>,
}

impl ListingChanges {
    /// Whether the listing changed anything the user can see.
    pub fn any(&self) -> bool {
        self.added > 0 || !self.changed.is_empty() || !self.removed.is_empty() || self.renamed > 0
    }
}

/// A server child as staged.
struct Staged {
    id: i64,
    name: String,
    is_dir: bool,
    /// -1: unknown.
    size: i64,
    mtime_ns: Option<i64>,
    etag: Option<String>,
    weak: bool,
}

/// What the store knows of a row the listing may speak of.
struct Known {
    ino: i64,
    is_dir: bool,
    etag: Option<String>,
    live: bool,
    dirty: bool,
    /// Being moved on the server right now: a listing may have been taken on either side
    /// of that MOVE.
    moving: bool,
    /// Shown where the server has it (not renamed or moved locally).
    at_home: bool,
    size: i64,
    mtime_ns: Option<i64>,
    /// Its name on the server.
    remote_name: String,
    /// Whether its tag is weak.
    weak: bool,
}

/// The columns [`known_at`] reads, for a table aliased `e`.
const KNOWN_COLS: &str = "e.ino, e.is_dir, e.etag, e.parent IS NOT NULL, e.dirty,
     e.moving_parent IS NOT NULL, e.parent IS e.remote_parent AND e.name IS e.remote_name,
     e.size, e.mtime_ns, e.remote_name, e.etag_weak";

/// The [`KNOWN_COLS`] starting at column `at`; `None` if the row is missing (an outer
/// join found none).
fn known_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<Known>> {
    let Some(ino) = r.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    Ok(Some(Known {
        ino,
        is_dir: r.get(at + 1)?,
        etag: r.get(at + 2)?,
        live: r.get(at + 3)?,
        dirty: r.get(at + 4)?,
        moving: r.get(at + 5)?,
        at_home: r.get(at + 6)?,
        size: r.get(at + 7)?,
        mtime_ns: r.get(at + 8)?,
        remote_name: r.get::<_, Option<String>>(at + 9)?.unwrap_or_default(),
        weak: r.get(at + 10)?,
    }))
}

impl Meta {
    /// Starts receiving a listing: children go in with [`Meta::stage_children`]. `large`:
    /// more than one batch of them (see [`Stage`]).
    pub fn stage(&self, large: bool) -> Result<Stage, MetaError> {
        if !large {
            let free = lock(&self.free_stages).pop();
            if let Some(table) = free {
                return Ok(Stage {
                    table,
                    pooled: true,
                });
            }
        }
        let table = format!("stage_{}", self.next_stage.fetch_add(1, Ordering::Relaxed));
        let mut sql = format!(
            "CREATE TEMP TABLE {table}(name TEXT NOT NULL, is_dir INTEGER NOT NULL,
                 size INTEGER NOT NULL, mtime_ns INTEGER, etag TEXT, etag_weak INTEGER NOT NULL,
                 denied INTEGER);"
        );
        if !large {
            sql.push_str(&stage_indexes(&table));
        }
        self.conn().execute_batch(&sql)?;
        Ok(Stage {
            table,
            pooled: !large,
        })
    }

    /// Adds children to a staged listing. Invalid names are skipped with a warning.
    pub fn stage_children(&self, stage: &Stage, children: &[RemoteEntry]) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            // Not cached: every stage has its own table.
            let mut insert = tx.prepare(&format!(
                "INSERT INTO {}(name, is_dir, size, mtime_ns, etag, etag_weak, denied)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                stage.table
            ))?;
            for c in children {
                if let Err(e) = validate_name(&c.name) {
                    warn!(name = ?c.name, error = %e, "skipping entry with invalid name");
                    continue;
                }
                let (etag, weak) = etag_cols(c.etag.as_ref());
                insert.execute(params![
                    c.name,
                    c.is_dir,
                    size_col(c),
                    mtime_ns(c.mtime),
                    etag,
                    weak,
                    c.access.map(super::permissions::denied_bits)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets a staged listing (one that failed: nothing of it is merged).
    pub fn drop_stage(&self, stage: Stage) {
        if stage.pooled {
            let cleared = self
                .conn()
                .execute_batch(&format!("DELETE FROM temp.{}", stage.table));
            match cleared {
                Ok(()) => {
                    lock(&self.free_stages).push(stage.table);
                    return;
                }
                Err(e) => warn!(error = %e, "meta: cannot empty a staged listing; dropping it"),
            }
        }
        let dropped = self
            .conn()
            .execute_batch(&format!("DROP TABLE IF EXISTS temp.{}", stage.table));
        if let Err(e) = dropped {
            warn!(error = %e, "meta: cannot forget a staged listing");
        }
    }

    /// Merges a successful listing of the server folder that row `dir` stands for.
    ///
    /// Server children are matched to rows by their *server* location, so entries moved
    /// or edited locally and not yet written back keep their local state: a dirty file's
    /// base version is never advanced (its upload then detects the conflict), a tombstone
    /// stays until its DELETE is done, and a new server name whose local slot is taken is
    /// skipped. A new server version of an entry replaces its modification time and drops
    /// its local change time. Names a complete listing lacks are removed with their
    /// subtrees, unless something below holds local changes, which become local-only and
    /// are written back.
    /// Only ever called with a listing the server actually returned — an error is never a
    /// deletion.
    pub fn apply_listing(&self, dir: u64, listing: &Listing) -> Result<ListingChanges, MetaError> {
        self.apply_listing_holding(dir, listing, &HashSet::new())
    }

    /// [`Meta::apply_listing`], where the entries in `held` (files open with a working
    /// copy, which may be written any moment) count as changed locally: their base
    /// version stays, and a server deletion detaches them instead of removing them.
    pub fn apply_listing_holding(
        &self,
        dir: u64,
        listing: &Listing,
        held: &HashSet<u64>,
    ) -> Result<ListingChanges, MetaError> {
        let stage = self.stage(listing.children.len() > BATCH)?;
        if let Err(e) = self.stage_children(&stage, &listing.children) {
            self.drop_stage(stage);
            return Err(e);
        }
        self.merge_staged(dir, stage, &listing.dir, listing.complete, held)
    }

    /// [`Meta::apply_listing_holding`] of a staged listing: `dir_entry` describes the
    /// folder itself; `complete` says whether the reply vouched for every child (only
    /// then does a missing name mean a deletion). The stage is used up either way.
    ///
    /// A file's time is the server's for each version it lists. A folder's time is the
    /// server's when none is known, and when its own listing finds names added, removed or
    /// renamed on the server; otherwise the known one stays (see `folder_time`).
    pub fn merge_staged(
        &self,
        dir: u64,
        stage: Stage,
        dir_entry: &RemoteEntry,
        complete: bool,
        held: &HashSet<u64>,
    ) -> Result<ListingChanges, MetaError> {
        // Given back also if the merge panics.
        let stage = StageGuard {
            meta: self,
            stage: Some(stage),
        };
        let (table, indexed) = stage
            .stage
            .as_ref()
            .map(|s| (s.table.clone(), s.pooled))
            .unwrap_or_default();
        let mut conn = self.conn();
        let merged = merge(
            &mut conn, dir as i64, &table, indexed, dir_entry, complete, held,
        );
        // The store is unlocked before the guard gives the stage back.
        drop(conn);
        drop(stage);
        merged
    }
}

/// Gives a stage back to the pool when dropped.
struct StageGuard<'a> {
    meta: &'a Meta,
    stage: Option<Stage>,
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        if let Some(stage) = self.stage.take() {
            self.meta.drop_stage(stage);
        }
    }
}

/// The indexes a merge reads a stage by.
fn stage_indexes(table: &str) -> String {
    format!(
        "CREATE INDEX temp.{table}_name ON {table}(name);
         CREATE INDEX temp.{table}_etag ON {table}(etag);"
    )
}
