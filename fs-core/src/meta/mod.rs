//! The metadata store: every known entry of the remote tree, in SQLite.
//!
//! Inode numbers are the rows' ids (`AUTOINCREMENT`, never reused), so they stay stable
//! across restarts and a cached blob keyed by inode is found again by the next mount.
//! Directory listings carry the time they were fetched, for the listing TTL.

mod conflict;
mod entry;
mod excluded;
mod held;
mod listing;
mod local;
mod permissions;
mod pins;
mod problem;
mod schema;
mod writeback;
mod xattrs;

pub use conflict::Event;
pub use entry::{Entry, Kind};
pub use excluded::ExcludeError;
pub use listing::{ListingChanges, Receiver, Stage};
pub use local::LocalAttrs;
pub use permissions::{DENY_CHANGE, DENY_EXCLUDED, DENY_INHERITED, DENY_REMOVE};
pub use problem::{Problem, ProblemKind};
pub use xattrs::{XattrMode, XattrSet};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;
use tracing::warn;

use crate::remote::{ETag, RemoteEntry, RemotePath};

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
    /// The next [`Stage`]'s number.
    next_stage: std::sync::atomic::AtomicI64,
    /// Staging tables not in use (see [`Stage`]).
    free_stages: Mutex<Vec<String>>,
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
        listing::prepare(&conn)?;
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
            next_stage: Default::default(),
            free_stages: Default::default(),
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
        listing::prepare(&conn)?;
        Ok(Meta {
            conn: Mutex::new(conn),
            next_stage: Default::default(),
            free_stages: Default::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back),
        // so a poisoned lock is still usable.
        crate::lock(&self.conn)
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

    /// Up to `limit` children of folder `parent` with inode numbers above `after`, in
    /// inode order: a position in a folder that stays valid however it changes.
    pub fn children_after(
        &self,
        parent: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE parent = ?1 AND ino > ?2 ORDER BY ino LIMIT ?3",
            entry::SELECT
        ))?;
        let rows = stmt.query_map(
            params![
                parent as i64,
                after.min(i64::MAX as u64) as i64,
                limit as i64
            ],
            entry::from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
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

    /// Updates the root's own attributes from a server description (at each mount). Its
    /// time is taken only if none is known: after that, listings of the root move it (see
    /// [`Meta::merge_staged`]), so a remount shows the time the last mount showed.
    pub fn update_root(&self, root: &RemoteEntry) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(root.etag.as_ref());
        conn.prepare_cached(
            "UPDATE entries SET mtime_ns = COALESCE(mtime_ns, ?1), etag = ?2, etag_weak = ?3
             WHERE ino = ?4",
        )?
        .execute(params![mtime_ns(root.mtime), etag, weak, ROOT_INO as i64])?;
        Ok(())
    }

    /// Records the size a download found for file `ino` whose size was unknown, if it still
    /// is and the row still has the version `seen` had (its tag and time) and no local
    /// change. Returns whether it was recorded.
    pub fn learn_size(&self, ino: u64, size: u64, seen: &Entry) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn
            .prepare_cached(
                "UPDATE entries SET size = ?2 WHERE ino = ?1 AND size < 0 AND dirty = 0
                 AND etag IS ?3 AND etag_weak = ?4 AND mtime_ns IS ?5",
            )?
            .execute(params![
                ino as i64,
                i64::try_from(size).unwrap_or(i64::MAX),
                seen.etag,
                seen.etag_weak,
                mtime_ns(seen.mtime)
            ])?;
        Ok(n > 0)
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

/// Makes `ino` local-only (the server no longer has it): write-back recreates it (a
/// folder is marked dirty, as a new one is, until its MKCOL is confirmed).
fn detach(tx: &rusqlite::Transaction<'_>, ino: i64) -> Result<(), MetaError> {
    tx.prepare_cached(
        "UPDATE entries SET remote_parent = NULL, remote_name = NULL, etag = NULL,
             put_started = 0, problem = NULL, dirty = CASE WHEN is_dir THEN 1 ELSE dirty END
         WHERE ino = ?1",
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

/// A time as the store keeps it: signed nanoseconds since the epoch; `None` (unknown) for
/// none, or for one the column cannot hold (before 1677-09-21 or after 2262-04-11, see
/// [`storable_time`]).
fn mtime_ns(t: Option<SystemTime>) -> Option<i64> {
    t.and_then(time_to_ns)
}

/// `t` as signed nanoseconds since the epoch (negative before 1970), if an `i64` holds it.
pub(crate) fn time_to_ns(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos()).ok().map(|n| -n),
    }
}

/// The time `ns` nanoseconds after the epoch (before it if negative).
pub(crate) fn ns_to_time(ns: i64) -> SystemTime {
    let d = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// `t` clamped to the times the store holds exactly, 1677-09-21 to 2262-04-11 (signed
/// nanoseconds in 64 bits), as a file system clamps a time set beyond its range. Times a
/// user sets are stored so; a server's time beyond the range is unknown instead.
pub fn storable_time(t: SystemTime) -> SystemTime {
    match time_to_ns(t) {
        Some(_) => t,
        None if t > UNIX_EPOCH => ns_to_time(i64::MAX),
        None => ns_to_time(i64::MIN),
    }
}

/// A size as the store keeps it: -1 for a file whose size is unknown (see
/// [`Entry::size_known`]), 0 for a folder.
fn size_col(e: &RemoteEntry) -> i64 {
    if e.is_dir {
        0
    } else if e.size_known {
        i64::try_from(e.size).unwrap_or(i64::MAX)
    } else {
        -1
    }
}

#[cfg(test)]
mod tests;
