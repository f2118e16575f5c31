//! The metadata store: every known entry of the remote tree, in SQLite.
//!
//! Inode numbers are the rows' ids (`AUTOINCREMENT`, never reused), so they stay stable
//! across restarts and a cached blob keyed by inode is found again by the next mount.
//! Directory listings carry the time they were fetched, for the listing TTL.

mod conflict;
mod entry;
mod local;
mod pins;
mod schema;
mod writeback;

pub use conflict::Event;
pub use entry::{Entry, Kind};
pub use local::LocalAttrs;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;
use tracing::warn;

use crate::remote::{validate_name, ETag, Listing, RemoteEntry, RemotePath};

/// The root folder's inode number.
pub const ROOT_INO: u64 = 1;

/// A failure of the metadata store.
#[derive(Debug, Error)]
pub enum MetaError {
    /// SQLite failed.
    #[error("metadata store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store belongs to another server.
    #[error("this cache directory belongs to {found}, not {wanted}; use another --cache-dir")]
    OtherServer {
        /// URL recorded in the store.
        found: String,
        /// URL of this mount.
        wanted: String,
    },
    /// The store's own data is inconsistent (a row names a parent that does not exist).
    #[error("metadata store is inconsistent: {0}")]
    Corrupt(String),
}

/// How many prepared statements the store keeps (more than it has).
const STATEMENT_CACHE: usize = 128;

/// The SQLite-backed metadata store. Cheap calls only; each holds the connection briefly.
pub struct Meta {
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Meta {
    /// Opens (or creates) the store at `path` for the server `url`.
    pub fn open(path: &Path, url: &str) -> Result<Meta, MetaError> {
        let conn = Connection::open(path)?;
        // Every statement is prepared once and kept: there are about 70 of them, and
        // rusqlite keeps 16 by default, so the hot ones were compiled again on most calls.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // One daemon uses the store (its cache directory's lock keeps others out): keep
        // the database lock for good, so WAL needs no shared-memory index and no lock
        // calls per transaction (120 fcntl calls per file of an untar otherwise). Set
        // before the WAL is first touched, which decides where its index lives.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        schema::prepare(&conn)?;
        let found: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'server_url'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            Some(found) if found != url => {
                return Err(MetaError::OtherServer {
                    found,
                    wanted: url.to_string(),
                });
            }
            Some(_) => {}
            None => {
                conn.prepare_cached("INSERT INTO settings(key, value) VALUES ('server_url', ?1)")?
                    .execute(params![url])?;
            }
        }
        Ok(Meta {
            conn: Mutex::new(conn),
        })
    }

    /// Lets go of the store's file (its lock included) without checkpointing its log;
    /// every later call fails. For a restart inside one process, where the old
    /// instance's last tasks may still hold this store: a real crash releases the lock
    /// with the process.
    pub fn close(&self) {
        match Connection::open_in_memory() {
            Ok(empty) => {
                let mut conn = self.conn();
                // As a crash would: the write-ahead log stays for the next open to
                // recover, rather than being checkpointed into the database.
                if let Err(e) = conn.set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    true,
                ) {
                    warn!(error = %e, "meta: closing will checkpoint the log");
                }
                *conn = empty;
            }
            Err(e) => warn!(error = %e, "meta: cannot close the store"),
        }
    }

    /// Opens a private in-memory store (tests).
    pub fn in_memory() -> Result<Meta, MetaError> {
        let conn = Connection::open_in_memory()?;
        schema::prepare(&conn)?;
        Ok(Meta {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back),
        // so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A number that changes whenever a row is written (inserted, updated or deleted).
    pub fn change_count(&self) -> u64 {
        self.conn().total_changes()
    }

    /// The live entries among `inos` (one query), by inode.
    pub fn get_many(&self, inos: &[u64]) -> Result<HashMap<u64, Entry>, MetaError> {
        let mut out = HashMap::with_capacity(inos.len());
        let conn = self.conn();
        for chunk in inos.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = conn.prepare_cached(&format!(
                "{} WHERE ino IN ({marks}) AND parent IS NOT NULL",
                entry::SELECT
            ))?;
            let rows = stmt.query_map(
                rusqlite::params_from_iter(chunk.iter().map(|i| *i as i64)),
                entry::from_row,
            )?;
            for e in rows {
                let e = e?;
                out.insert(e.ino, e);
            }
        }
        Ok(out)
    }

    /// The live (not locally deleted) entry with inode `ino`.
    pub fn get(&self, ino: u64) -> Result<Option<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE ino = ?1 AND parent IS NOT NULL",
            entry::SELECT
        ))?;
        Ok(stmt
            .query_row(params![ino as i64], entry::from_row)
            .optional()?)
    }

    /// The child `name` of folder `parent`.
    pub fn child(&self, parent: u64, name: &str) -> Result<Option<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE parent = ?1 AND name = ?2",
            entry::SELECT
        ))?;
        Ok(stmt
            .query_row(params![parent as i64, name], entry::from_row)
            .optional()?)
    }

    /// Calls `f` with each child of folder `parent`, by name, one row at a time (`f` runs
    /// while the store is locked: it must not use the store).
    pub fn each_child(&self, parent: u64, mut f: impl FnMut(Entry)) -> Result<(), MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE parent = ?1 ORDER BY name",
            entry::SELECT
        ))?;
        let rows = stmt.query_map(params![parent as i64], entry::from_row)?;
        for row in rows {
            f(row?);
        }
        Ok(())
    }

    /// The children of `parent`, by name.
    pub fn children(&self, parent: u64) -> Result<Vec<Entry>, MetaError> {
        let mut out = Vec::new();
        self.each_child(parent, |e| out.push(e))?;
        Ok(out)
    }

    /// The remote path of `ino`, built from its ancestors.
    pub fn path_of(&self, ino: u64) -> Result<RemotePath, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT parent, name FROM entries WHERE ino = ?1")?;
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let (parent, name): (i64, String) = stmt
                .query_row(params![cur as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| MetaError::Corrupt(format!("inode {cur} has no row")))?;
            parts.push(name);
            cur = parent as u64;
            if parts.len() > 4096 {
                return Err(MetaError::Corrupt(format!(
                    "inode {ino} has a parent cycle"
                )));
            }
        }
        parts.reverse();
        RemotePath::from_parts(parts).map_err(|e| MetaError::Corrupt(e.to_string()))
    }

    /// When the children of folder `ino` were last listed, in milliseconds since the epoch.
    pub fn listed_at_ms(&self, ino: u64) -> Result<Option<i64>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT listed_at_ms FROM entries WHERE ino = ?1")?;
        Ok(stmt
            .query_row(params![ino as i64], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Updates the root's own attributes from a server description.
    pub fn update_root(&self, root: &RemoteEntry) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(root.etag.as_ref());
        conn.prepare_cached(
            "UPDATE entries SET mtime_ns = ?1, etag = ?2, etag_weak = ?3 WHERE ino = ?4",
        )?
        .execute(params![mtime_ns(root.mtime), etag, weak, ROOT_INO as i64])?;
        Ok(())
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
        self.apply_listing_holding(dir, listing, &std::collections::HashSet::new())
    }

    /// [`Meta::apply_listing`], where the entries in `held` (files open with a working
    /// copy, which may be written any moment) count as changed locally: their base
    /// version stays, and a server deletion detaches them instead of removing them.
    pub fn apply_listing_holding(
        &self,
        dir: u64,
        listing: &Listing,
        held: &std::collections::HashSet<u64>,
    ) -> Result<ListingChanges, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut changes = ListingChanges::default();
        let is_dir: Option<bool> = tx
            .query_row(
                "SELECT is_dir FROM entries WHERE ino = ?1",
                params![dir as i64],
                |r| r.get(0),
            )
            .optional()?;
        if is_dir != Some(true) {
            // Removed (or replaced by a file) while it was being listed.
            return Ok(changes);
        }
        {
            struct Known {
                ino: i64,
                is_dir: bool,
                etag: Option<String>,
                live: bool,
                dirty: bool,
                /// Being moved on the server right now: a listing may have been taken on
                /// either side of that MOVE.
                moving: bool,
                /// Shown where the server has it (not renamed or moved locally).
                at_home: bool,
                size: i64,
                mtime_ns: Option<i64>,
            }
            let mut existing: HashMap<String, Known> = HashMap::new();
            let mut sel = tx.prepare_cached(
                "SELECT remote_name, ino, is_dir, etag, parent IS NOT NULL, dirty,
                        moving_parent IS NOT NULL,
                        parent IS remote_parent AND name IS remote_name, size, mtime_ns
                 FROM entries WHERE remote_parent = ?1",
            )?;
            let rows = sel.query_map(params![dir as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Known {
                        ino: r.get(1)?,
                        is_dir: r.get(2)?,
                        etag: r.get(3)?,
                        live: r.get(4)?,
                        dirty: r.get(5)?,
                        moving: r.get(6)?,
                        at_home: r.get(7)?,
                        size: r.get(8)?,
                        mtime_ns: r.get(9)?,
                    },
                ))
            })?;
            for row in rows {
                let (name, v) = row?;
                existing.insert(name, v);
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO entries(parent, name, is_dir, size, mtime_ns, etag,
                     etag_weak, remote_parent, remote_name)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1, ?2)",
            )?;
            let mut update = tx.prepare_cached(
                "UPDATE entries SET size = ?2,
                     mtime_ns = CASE WHEN etag IS ?4 AND etag IS NOT NULL THEN mtime_ns
                                     ELSE ?3 END,
                     ctime_ns = CASE WHEN etag IS ?4 AND etag IS NOT NULL THEN ctime_ns
                                     END,
                     etag = ?4, etag_weak = ?5
                 WHERE ino = ?1",
            )?;
            let mut rename = tx.prepare_cached(
                "UPDATE OR IGNORE entries SET name = ?2, remote_name = ?2 WHERE ino = ?1",
            )?;
            let listed: std::collections::HashSet<&str> =
                listing.children.iter().map(|c| c.name.as_str()).collect();
            // How many children carry each version tag.
            let mut new_tags: HashMap<&str, usize> = HashMap::new();
            for c in &listing.children {
                if let Some(t) = &c.etag {
                    *new_tags.entry(t.value.as_str()).or_default() += 1;
                }
            }
            for child in &listing.children {
                if let Err(e) = validate_name(&child.name) {
                    warn!(name = ?child.name, error = %e, "skipping entry with invalid name");
                    continue;
                }
                let (etag, weak) = etag_cols(child.etag.as_ref());
                let size = if child.is_dir { 0 } else { child.size as i64 };
                match existing.remove(&child.name) {
                    Some(k) if !k.live || k.dirty || k.moving || held.contains(&(k.ino as u64)) => {
                        // Deleted or edited locally: the write-back decides; a remote
                        // change shows up there as a failed precondition.
                        if k.etag.as_deref() != etag {
                            changes.changed.push(k.ino as u64);
                        }
                    }
                    Some(k) if k.is_dir == child.is_dir => {
                        // Without ETags, a new size or time is a new version.
                        let changed = k.etag.as_deref() != etag
                            || (etag.is_none()
                                && !k.is_dir
                                && (k.size != size || k.mtime_ns != mtime_ns(child.mtime)));
                        if changed {
                            changes.changed.push(k.ino as u64);
                        }
                        update.execute(params![k.ino, size, mtime_ns(child.mtime), etag, weak])?;
                    }
                    Some(k) => {
                        // Kind changed (file became folder or back): a new identity.
                        if held.contains(&(k.ino as u64)) || subtree_has_local_changes(&tx, k.ino)?
                        {
                            warn!(name = %child.name, "changed kind on the server; keeping the local copy");
                            detach(&tx, k.ino)?;
                        } else {
                            delete_subtree(&tx, k.ino)?;
                            changes.removed.push(k.ino as u64);
                        }
                        changes.names.push(child.name.clone());
                        let n = insert.execute(params![
                            dir as i64,
                            child.name,
                            child.is_dir,
                            size,
                            mtime_ns(child.mtime),
                            etag,
                            weak
                        ])?;
                        changes.added += n;
                    }
                    None => {
                        // Renamed on the server within this folder? The same version under
                        // a name the listing no longer has: the row (its cached content,
                        // its pins) follows.
                        // Only when that version is unambiguous on both sides: servers
                        // that make ETags of size and time (Apache) give files written
                        // in the same clock tick the same one.
                        let renamed_from = etag
                            .filter(|tag| listing.complete && new_tags.get(tag) == Some(&1))
                            .and_then(|tag| {
                                let mut found = existing.iter().filter(|(name, k)| {
                                    k.etag.as_deref() == Some(tag)
                                        && !listed.contains(name.as_str())
                                });
                                let (name, k) = found.next()?;
                                let unique = found.next().is_none();
                                (unique
                                    && !held.contains(&(k.ino as u64))
                                    && !child.etag.as_ref().is_some_and(|t| t.weak)
                                    && (k.is_dir || k.mtime_ns == mtime_ns(child.mtime))
                                    && k.live
                                    && !k.dirty
                                    && !k.moving
                                    && k.at_home
                                    && k.is_dir == child.is_dir
                                    && (k.is_dir || k.size == size))
                                    .then(|| name.clone())
                            });
                        if let Some(old) = renamed_from {
                            if let Some(k) = existing.remove(&old) {
                                let n = rename.execute(params![k.ino, child.name])?;
                                if n > 0 {
                                    changes.names.push(old);
                                    changes.names.push(child.name.clone());
                                    changes.renamed += 1;
                                    continue;
                                }
                                existing.insert(old, k);
                            }
                        }
                        let n = insert.execute(params![
                            dir as i64,
                            child.name,
                            child.is_dir,
                            size,
                            mtime_ns(child.mtime),
                            etag,
                            weak
                        ])?;
                        if n == 0 {
                            warn!(name = %child.name, "a local entry holds this name; the server's is not shown");
                        }
                        // A new name needs no invalidation (see `ListingChanges::names`).
                        changes.added += n;
                    }
                }
            }
            if listing.complete {
                for (name, k) in existing {
                    if k.moving {
                        // Gone from here because the write-back just moved it.
                        continue;
                    }
                    if !k.live {
                        // Deleted here and there: nothing left to do.
                        delete_remote_subtree(&tx, k.ino)?;
                    } else if held.contains(&(k.ino as u64))
                        || subtree_has_local_changes(&tx, k.ino)?
                    {
                        warn!(
                            ino = k.ino,
                            "deleted on the server but changed here; keeping it"
                        );
                        detach(&tx, k.ino)?;
                        changes.kept_local.push(k.ino as u64);
                    } else {
                        delete_subtree(&tx, k.ino)?;
                        changes.removed.push(k.ino as u64);
                        changes.names.push(name);
                    }
                }
            } else if !existing.is_empty() {
                warn!(
                    dir,
                    kept = existing.len(),
                    "incomplete listing: keeping entries it lacks"
                );
            }
            let (etag, weak) = etag_cols(listing.dir.etag.as_ref());
            tx.prepare_cached(
                "UPDATE entries SET listed_at_ms = ?2, etag = COALESCE(?3, etag),
                 etag_weak = ?4, mtime_ns = COALESCE(?5, mtime_ns) WHERE ino = ?1",
            )?
            .execute(params![
                dir as i64,
                now_ms(),
                etag,
                weak,
                mtime_ns(listing.dir.mtime)
            ])?;
        }
        tx.commit()?;
        Ok(changes)
    }

    /// Records a file's size and version as a download found them (the server may have a
    /// newer version than the last listing said).
    pub fn set_version(&self, ino: u64, size: u64, etag: Option<&ETag>) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(etag);
        conn.prepare_cached(
            "UPDATE entries SET size = ?2, etag = COALESCE(?3, etag),
             etag_weak = CASE WHEN ?3 IS NULL THEN etag_weak ELSE ?4 END WHERE ino = ?1",
        )?
        .execute(params![ino as i64, size as i64, etag, weak])?;
        Ok(())
    }

    /// Marks folder `ino`'s listing as stale so the next access revalidates it.
    pub fn expire_listing(&self, ino: u64) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE entries SET listed_at_ms = NULL WHERE ino = ?1")?
            .execute(params![ino as i64])?;
        Ok(())
    }

    /// Number of known entries (files and folders, root included).
    pub fn count(&self) -> Result<u64, MetaError> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM entries WHERE parent IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Every file's inode and content version, for status and cache reconciliation.
    pub fn file_versions(&self) -> Result<Vec<(u64, String)>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE is_dir = 0 AND parent IS NOT NULL",
            entry::SELECT
        ))?;
        let rows = stmt.query_map([], entry::from_row)?;
        let mut out = Vec::new();
        for e in rows {
            let e = e?;
            out.push((e.ino, e.content_version()));
        }
        Ok(out)
    }
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
}

impl ListingChanges {
    /// Whether the listing changed anything the user can see.
    pub fn any(&self) -> bool {
        self.added > 0 || !self.changed.is_empty() || !self.removed.is_empty() || self.renamed > 0
    }
}

/// Whether anything in the local subtree of `ino` (itself included) waits to be written
/// back: edited, new, moved, or a tombstone below it on the server side.
fn subtree_has_local_changes(tx: &rusqlite::Transaction<'_>, ino: i64) -> Result<bool, MetaError> {
    let n: i64 = tx.query_row(
        "WITH RECURSIVE sub(ino) AS (
             SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)
         SELECT COUNT(*) FROM entries WHERE ino IN sub AND (dirty = 1
             OR remote_parent IS NULL OR remote_parent IS NOT parent OR remote_name IS NOT name)",
        params![ino],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Makes `ino` local-only (the server no longer has it): write-back recreates it.
fn detach(tx: &rusqlite::Transaction<'_>, ino: i64) -> Result<(), MetaError> {
    tx.prepare_cached(
        "UPDATE entries SET remote_parent = NULL, remote_name = NULL, etag = NULL,
             put_started = 0, problem = NULL WHERE ino = ?1",
    )?
    .execute(params![ino])?;
    Ok(())
}

/// Deletes tombstone `ino` and every row below it on the server side.
pub(crate) fn delete_remote_subtree(
    tx: &rusqlite::Transaction<'_>,
    ino: i64,
) -> Result<(), MetaError> {
    tx.prepare_cached(
        "WITH RECURSIVE sub(ino) AS (
             SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.remote_parent = sub.ino)
         DELETE FROM entries WHERE ino IN sub AND parent IS NULL",
    )?
    .execute(params![ino])?;
    // Live rows that were below it on the server are no longer there.
    tx.prepare_cached(
        "UPDATE entries SET remote_parent = NULL, remote_name = NULL, etag = NULL
         WHERE remote_parent = ?1",
    )?
    .execute(params![ino])?;
    Ok(())
}

fn delete_subtree(tx: &rusqlite::Transaction<'_>, ino: i64) -> Result<(), MetaError> {
    tx.prepare_cached(
        "WITH RECURSIVE sub(ino) AS (
             SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)
         DELETE FROM entries WHERE parent IS NULL AND remote_parent IN sub",
    )?
    .execute(params![ino])?;
    tx.prepare_cached(
        "WITH RECURSIVE sub(ino) AS (
             SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)
         DELETE FROM entries WHERE ino IN sub",
    )?
    .execute(params![ino])?;
    Ok(())
}

/// Runs `stmt` (selecting one inode column) with `params` and returns the inodes.
fn inos<P: rusqlite::Params>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: P,
) -> Result<Vec<u64>, MetaError> {
    let rows = stmt.query_map(params, |r| r.get::<_, i64>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r? as u64);
    }
    Ok(out)
}

fn etag_cols(etag: Option<&ETag>) -> (Option<&str>, bool) {
    match etag {
        Some(e) => (Some(e.value.as_str()), e.weak),
        None => (None, false),
    }
}

fn mtime_ns(t: Option<SystemTime>) -> Option<i64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests;
