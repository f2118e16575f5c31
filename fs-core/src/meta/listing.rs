//! Merging a folder's listing into the store.
//!
//! The children arrive in batches into a temporary table (a [`Stage`]), as the reply is
//! parsed, so a folder of any size is never held in memory; one transaction then merges
//! them three-way with what the store knows, reading both sides a batch at a time.

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

/// The merge of [`Meta::merge_staged`], in one transaction.
fn merge(
    conn: &mut Connection,
    dir: i64,
    stage: &str,
    indexed: bool,
    dir_entry: &RemoteEntry,
    complete: bool,
    held: &HashSet<u64>,
) -> Result<ListingChanges, MetaError> {
    let tx = conn.transaction()?;
    let is_dir: Option<bool> = tx
        .query_row(
            "SELECT is_dir FROM entries WHERE ino = ?1",
            params![dir],
            |r| r.get(0),
        )
        .optional()?;
    if is_dir != Some(true) {
        // Removed (or replaced by a file) while it was being listed.
        return Ok(ListingChanges::default());
    }
    if !indexed {
        tx.execute_batch(&stage_indexes(stage))?;
    }
    tx.execute("DELETE FROM listing_gone", [])?;
    let gone = if complete {
        // Known here, missing there: deleted on the server, or renamed within the folder.
        tx.prepare(&format!(
            "INSERT INTO listing_gone(ino, etag)
             SELECT e.ino, e.etag FROM entries e WHERE e.remote_parent = ?1
                 AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.name = e.remote_name)"
        ))?
        .execute(params![dir])?
    } else {
        0
    };
    let mut m = Merge {
        tx: &tx,
        dir,
        count_tag: tx.prepare(&format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT name FROM {stage} WHERE etag = ?1 LIMIT 2)"
        ))?,
        complete,
        held,
        gone,
        insert: tx.prepare_cached(
            // A new entry in a folder refused as a whole (a read-only space) is refused too.
            "INSERT OR IGNORE INTO entries(parent, name, is_dir, size, mtime_ns, etag,
                 etag_weak, remote_parent, remote_name, denied)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1, ?2, COALESCE((SELECT denied FROM entries
                 WHERE ino = ?1 AND denied & 4 != 0) & 7, 0))",
        )?,
        // A file's time is the server's for each new version. A folder's known time
        // stays: its own listing moves it (see `folder_time`).
        update: tx.prepare_cached(
            "UPDATE entries SET size = ?2,
                 mtime_ns = CASE WHEN etag IS ?4 AND etag IS NOT NULL THEN mtime_ns
                                 WHEN is_dir AND mtime_ns IS NOT NULL THEN mtime_ns
                                 ELSE ?3 END,
                 ctime_ns = CASE WHEN etag IS ?4 AND etag IS NOT NULL THEN ctime_ns
                                 WHEN is_dir THEN ctime_ns END,
                 etag = ?4, etag_weak = ?5
             WHERE ino = ?1",
        )?,
        changes: ListingChanges::default(),
    };
    // By name, so that a name listed twice comes twice in a row: the first is kept.
    let mut next_batch = tx.prepare(&format!(
        "SELECT s.rowid, s.name, s.is_dir, s.size, s.mtime_ns, s.etag, s.etag_weak, {KNOWN_COLS}
         FROM {stage} s
         LEFT JOIN entries e ON e.remote_parent = ?1 AND e.remote_name = s.name
         WHERE (s.name, s.rowid) > (?2, ?3) ORDER BY s.name, s.rowid LIMIT ?4"
    ))?;
    let mut after = (String::new(), 0i64);
    loop {
        let batch = staged_batch(&mut next_batch, dir, &after)?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        let last = (last.name.clone(), last.id);
        for (child, known) in batch {
            if child.name == after.0 {
                warn!(name = ?child.name, "listing: skipping duplicate name (the first is kept)");
                continue;
            }
            after.0.clone_from(&child.name);
            m.child(child, known)?;
        }
        after = last;
    }
    drop(next_batch);
    if complete {
        m.remove_gone()?;
    } else {
        let kept: i64 = tx
            .prepare(&format!(
                "SELECT COUNT(*) FROM entries e WHERE e.remote_parent = ?1
                     AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.name = e.remote_name)"
            ))?
            .query_row(params![dir], |r| r.get(0))?;
        if kept > 0 {
            warn!(dir, kept, "incomplete listing: keeping entries it lacks");
        }
    }
    let changes = std::mem::take(&mut m.changes);
    drop(m);
    let (etag, weak) = etag_cols(dir_entry.etag.as_ref());
    // See `folder_time`: ?6 says whether the server's time is taken.
    tx.prepare_cached(
        "UPDATE entries SET listed_at_ms = ?2, etag = COALESCE(?3, etag), etag_weak = ?4,
             mtime_ns = CASE WHEN ?6 OR mtime_ns IS NULL THEN COALESCE(?5, mtime_ns)
                             ELSE mtime_ns END,
             ctime_ns = CASE WHEN ?6 AND ?5 IS NOT NULL THEN NULL ELSE ctime_ns END
         WHERE ino = ?1",
    )?
    .execute(params![
        dir,
        now_ms(),
        etag,
        weak,
        mtime_ns(dir_entry.mtime),
        folder_time(&changes)
    ])?;
    super::permissions::take_access(&tx, dir, stage, dir_entry.access)?;
    tx.execute("DELETE FROM listing_gone", [])?;
    tx.commit()?;
    Ok(changes)
}

/// Whether a folder's listing that made `changes` moves the folder's time to the
/// server's: only when the listing found names added, removed or renamed there (what
/// changes a folder's time), or the time is not known yet. Otherwise the known time stays,
/// whether the server's or a local change's: the server's time of a folder also moves with
/// edrive's own uploads of changes made here (later than they were made, in whole
/// seconds) and with its probe of the server (a folder made and removed at each mount),
/// and some servers give folders no time at all.
fn folder_time(changes: &ListingChanges) -> bool {
    changes.added > 0
        || !changes.removed.is_empty()
        || changes.renamed > 0
        || !changes.kept_local.is_empty()
}

/// The next staged children after `after` (a name and row id), by name, each with the
/// row that has its name on the server, if any.
fn staged_batch(
    stmt: &mut rusqlite::Statement<'_>,
    dir: i64,
    after: &(String, i64),
) -> Result<Vec<(Staged, Option<Known>)>, MetaError> {
    let rows = stmt.query_map(params![dir, after.0, after.1, BATCH as i64], |r| {
        Ok((
            Staged {
                id: r.get(0)?,
                name: r.get(1)?,
                is_dir: r.get(2)?,
                size: r.get(3)?,
                mtime_ns: r.get(4)?,
                etag: r.get(5)?,
                weak: r.get(6)?,
            },
            known_at(r, 7)?,
        ))
    })?;
    let mut out: Vec<(Staged, Option<Known>)> = Vec::with_capacity(BATCH);
    for row in rows {
        let row = row?;
        // Two rows with one server name (should not be): the first speaks for it.
        if out.last().is_some_and(|(s, _)| s.id == row.0.id) {
            continue;
        }
        out.push(row);
    }
    Ok(out)
}

/// One merge in progress: its transaction, what it knows and what it changed so far.
struct Merge<'a, 'c> {
    tx: &'a Transaction<'c>,
    dir: i64,
    /// Counts (up to 2) the staged names with a tag (a name listed twice counts once).
    count_tag: rusqlite::Statement<'a>,
    complete: bool,
    held: &'a HashSet<u64>,
    /// How many rows the listing lacks. 0 on a first listing: then no new name is looked
    /// up as a possible rename.
    gone: usize,
    /// The statements run for most children, prepared once.
    insert: CachedStatement<'a>,
    update: CachedStatement<'a>,
    changes: ListingChanges,
}

impl Merge<'_, '_> {
    /// Merges one server child into the store.
    fn child(&mut self, child: Staged, known: Option<Known>) -> Result<(), MetaError> {
        if let Err(e) = validate_name(&child.name) {
            warn!(name = ?child.name, error = %e, "skipping entry with invalid name");
            return Ok(());
        }
        let etag = child.etag.as_deref();
        let dir = self.dir;
        let insert_params = params![
            dir,
            child.name,
            child.is_dir,
            child.size,
            child.mtime_ns,
            etag,
            child.weak
        ];
        match known {
            Some(k) if !k.live || k.dirty || k.moving || self.held.contains(&(k.ino as u64)) => {
                // Deleted or edited locally: the write-back decides; a remote change shows
                // up there as a failed precondition.
                if k.etag.as_deref() != etag {
                    self.changes.changed.push(k.ino as u64);
                }
            }
            Some(k) if k.is_dir == child.is_dir => {
                // A size the listing does not know stays the one a download found for
                // this version (the same tag, or without tags the same time).
                let same_version = k.etag.as_deref() == etag
                    && k.weak == child.weak
                    && (etag.is_some() || k.mtime_ns == child.mtime_ns);
                let size = if child.size < 0 && same_version {
                    k.size
                } else {
                    child.size
                };
                // Without ETags, a new size or time is a new version.
                let changed = k.etag.as_deref() != etag
                    || (etag.is_none()
                        && !k.is_dir
                        && (k.size != size || k.mtime_ns != child.mtime_ns));
                if changed {
                    self.changes.changed.push(k.ino as u64);
                }
                // The same tag and size: nothing to write (most of a relisting).
                let same = etag.is_some() && !changed && k.size == size && k.weak == child.weak;
                if !same {
                    self.update
                        .execute(params![k.ino, size, child.mtime_ns, etag, child.weak])?;
                }
            }
            Some(k) => {
                // Kind changed (file became folder or back): a new identity.
                if self.held.contains(&(k.ino as u64)) || subtree_has_local_changes(self.tx, k.ino)?
                {
                    warn!(name = %child.name, "changed kind on the server; keeping the local copy");
                    detach(self.tx, k.ino)?;
                } else {
                    delete_subtree(self.tx, k.ino)?;
                    self.changes.removed.push(k.ino as u64);
                }
                self.changes.names.push(child.name.clone());
                self.changes.added += self.insert.execute(insert_params)?;
            }
            None => {
                // Renamed on the server within this folder? The row (its cached content,
                // its pins) follows.
                if let Some(k) = self.renamed_from(&child)? {
                    let n = self
                        .tx
                        .prepare_cached(
                            "UPDATE OR IGNORE entries SET name = ?2, remote_name = ?2
                             WHERE ino = ?1",
                        )?
                        .execute(params![k.ino, child.name])?;
                    if n > 0 {
                        self.tx
                            .prepare_cached("DELETE FROM listing_gone WHERE ino = ?1")?
                            .execute(params![k.ino])?;
                        self.changes.names.push(k.remote_name);
                        self.changes.names.push(child.name);
                        self.changes.renamed += 1;
                        return Ok(());
                    }
                }
                let n = self.insert.execute(insert_params)?;
                if n == 0 {
                    warn!(name = %child.name, "a local entry holds this name; the server's is not shown");
                }
                // A new name needs no invalidation (see `ListingChanges::names`).
                self.changes.added += n;
            }
        }
        Ok(())
    }

    /// The row new server name `child` is the old name of, if it was renamed within the
    /// folder: the same version under a name the listing no longer has. Only when that
    /// version is unambiguous on both sides: servers that make ETags of size and time
    /// (Apache) give files written in the same clock tick the same one.
    fn renamed_from(&mut self, child: &Staged) -> Result<Option<Known>, MetaError> {
        let Some(tag) = child
            .etag
            .as_deref()
            .filter(|_| self.complete && self.gone > 0 && !child.weak)
        else {
            return Ok(None);
        };
        let staged_with_tag: i64 = self.count_tag.query_row(params![tag], |r| r.get(0))?;
        if staged_with_tag != 1 {
            return Ok(None);
        }
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {KNOWN_COLS} FROM listing_gone g JOIN entries e ON e.ino = g.ino
             WHERE g.etag = ?1 LIMIT 2"
        ))?;
        let mut found = stmt.query_map(params![tag], |r| known_at(r, 0))?;
        let k = found.next().transpose()?.flatten();
        if found.next().is_some() {
            return Ok(None);
        }
        Ok(k.filter(|k| {
            !self.held.contains(&(k.ino as u64))
                && (k.is_dir || k.mtime_ns == child.mtime_ns)
                && k.live
                && !k.dirty
                && !k.moving
                && k.at_home
                && k.is_dir == child.is_dir
                && (k.is_dir || k.size == child.size)
        }))
    }

    /// Removes the rows a complete listing lacks (see [`Meta::merge_staged`]).
    fn remove_gone(&mut self) -> Result<(), MetaError> {
        let tx = self.tx;
        let mut after = 0i64;
        loop {
            let batch: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT ino FROM listing_gone WHERE ino > ?1 ORDER BY ino LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, BATCH as i64], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let Some(&last) = batch.last() else {
                return Ok(());
            };
            after = last;
            for ino in batch {
                let k = tx
                    .prepare_cached(&format!(
                        "SELECT {KNOWN_COLS} FROM entries e WHERE e.ino = ?1"
                    ))?
                    .query_row(params![ino], |r| known_at(r, 0))
                    .optional()?
                    .flatten();
                // Gone with a subtree removed earlier in this pass.
                let Some(k) = k else { continue };
                if k.moving {
                    // Gone from here because the write-back just moved it.
                    continue;
                }
                if !k.live {
                    // Deleted here and there: nothing left to do.
                    delete_remote_subtree(tx, k.ino)?;
                } else if self.held.contains(&(k.ino as u64))
                    || subtree_has_local_changes(tx, k.ino)?
                {
                    if !k.is_dir && k.etag.is_none() {
                        // A file the server never had (its upload refused, 507 or 423): not
                        // deleted there, nothing to report, and its problem stays.
                        continue;
                    }
                    warn!(
                        ino = k.ino,
                        "deleted on the server but changed here; keeping it"
                    );
                    self.keep_changed(k.ino)?;
                    self.changes.kept_local.push(k.ino as u64);
                } else {
                    delete_subtree(tx, k.ino)?;
                    self.changes.removed.push(k.ino as u64);
                    self.changes.names.push(k.remote_name);
                }
            }
        }
    }
}

impl Merge<'_, '_> {
    /// Entry `ino`, deleted on the server while it (or something below it) changed here:
    /// kept and detached, to be written back as new. Below a folder, what the server had
    /// there goes the same way if it changed here and is removed if it did not (deleted
    /// there, unchanged here); what was moved in locally from elsewhere keeps its place on
    /// the server (the write-back moves it).
    fn keep_changed(&mut self, ino: i64) -> Result<(), MetaError> {
        let tx = self.tx;
        let kids: Vec<(i64, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT ino, name FROM entries WHERE parent = ?1 AND remote_parent = ?1",
            )?;
            let rows = stmt.query_map(params![ino], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        // Deleted here too (tombstones below it): nothing left to do for them.
        tx.prepare_cached(
            "WITH RECURSIVE sub(ino) AS (
                 SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.remote_parent = sub.ino)
             DELETE FROM entries WHERE ino IN sub AND parent IS NULL",
        )?
        .execute(params![ino])?;
        detach(tx, ino)?;
        for (kid, name) in kids {
            if self.held.contains(&(kid as u64)) || subtree_has_local_changes(tx, kid)? {
                self.keep_changed(kid)?;
            } else {
                delete_subtree(tx, kid)?;
                self.changes.removed.push(kid as u64);
                self.changes.names_below.push((ino as u64, name));
            }
        }
        Ok(())
    }
}

/// Receives a listing into the store a batch at a time: shared between the drive and the
/// thread that parses the reply. The stage is forgotten when the last holder drops it
/// unless [`Receiver::finish`] took it.
#[derive(Clone)]
pub struct Receiver(Arc<Mutex<Receiving>>);

struct Receiving {
    meta: Arc<Meta>,
    /// Made at the first batch, when the listing's size is known to be small (all of it
    /// in one batch) or not.
    stage: Option<Stage>,
    finished: bool,
    batch: Vec<RemoteEntry>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(stage) = self.stage.take() {
            self.meta.drop_stage(stage);
        }
    }
}

impl Receiver {
    /// Starts receiving a listing into `meta`.
    pub fn new(meta: Arc<Meta>) -> Receiver {
        Receiver(Arc::new(Mutex::new(Receiving {
            meta,
            stage: None,
            finished: false,
            batch: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Receiving> {
        lock(&self.0)
    }

    /// Takes one child; every [`BATCH`] of them go to the store.
    pub fn push(&self, child: RemoteEntry) -> Result<(), MetaError> {
        let mut r = self.lock();
        r.batch.push(child);
        if r.batch.len() >= BATCH {
            r.flush(true)?;
        }
        Ok(())
    }

    /// Stores what is left and hands over the stage, for [`Meta::merge_staged`].
    pub fn finish(&self) -> Result<Stage, MetaError> {
        let mut r = self.lock();
        r.flush(false)?;
        r.finished = true;
        r.stage
            .take()
            .ok_or_else(|| MetaError::Corrupt("a staged listing was finished twice".into()))
    }
}

impl Receiving {
    /// Stores the batch; `more` says whether more may follow (a large listing).
    fn flush(&mut self, more: bool) -> Result<(), MetaError> {
        if self.finished {
            return Err(MetaError::Corrupt(
                "a staged listing is already finished".into(),
            ));
        }
        if self.stage.is_none() {
            self.stage = Some(self.meta.stage(more)?);
        }
        if let Some(stage) = &self.stage {
            self.meta.stage_children(stage, &self.batch)?;
        }
        self.batch.clear();
        Ok(())
    }
}
