//! What the write-back reads and records: rows whose local state differs from the
//! server's, server-side paths, and the outcome of each server operation.

use rusqlite::{params, OptionalExtension};

use super::{
    delete_remote_subtree, entry, etag_cols, Entry, Meta, MetaError, Problem, ProblemKind, ROOT_INO,
};
use crate::remote::{ETag, RemotePath};

/// The condition that makes a row pending write-back.
const PENDING: &str = "(parent IS NULL OR remote_parent IS NULL OR dirty = 1
     OR remote_parent IS NOT parent OR remote_name IS NOT name)";

impl Meta {
    /// Every row with something to write back (tombstones included), oldest first.
    pub fn pending(&self) -> Result<Vec<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE ino != 1 AND {PENDING} ORDER BY ino",
            entry::SELECT
        ))?;
        let rows = stmt.query_map([], entry::from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many rows have something to write back, and how many of those are stuck.
    pub fn pending_count(&self) -> Result<(u64, u64), MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT COUNT(*), COUNT(problem) FROM entries WHERE ino != 1 AND {PENDING}"
        ))?;
        let (n, stuck): (i64, i64) = stmt.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((n as u64, stuck as u64))
    }

    /// The row `ino`, live or tombstone.
    pub fn get_any(&self, ino: u64) -> Result<Option<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{} WHERE ino = ?1", entry::SELECT))?;
        Ok(stmt
            .query_row(params![ino as i64], entry::from_row)
            .optional()?)
    }

    /// Where the server has `ino` now, or `None` if it (or a folder above it) exists only
    /// locally.
    pub fn remote_path_of(&self, ino: u64) -> Result<Option<RemotePath>, MetaError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT remote_parent, remote_name FROM entries WHERE ino = ?1")?;
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let row: Option<(Option<i64>, Option<String>)> = stmt
                .query_row(params![cur as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((Some(parent), Some(name))) = row else {
                return Ok(None);
            };
            parts.push(name);
            cur = parent as u64;
            if parts.len() > 4096 {
                return Err(MetaError::Corrupt(format!(
                    "inode {ino} has a server-side cycle"
                )));
            }
        }
        parts.reverse();
        RemotePath::from_parts(parts)
            .map(Some)
            .map_err(|e| MetaError::Corrupt(e.to_string()))
    }

    /// The row (live or tombstone) the server has at `name` in server folder `parent`.
    pub fn occupant(&self, parent: u64, name: &str) -> Result<Option<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE remote_parent = ?1 AND remote_name = ?2",
            entry::SELECT
        ))?;
        Ok(stmt
            .query_row(params![parent as i64, name], entry::from_row)
            .optional()?)
    }

    /// Whether a live entry still lies below tombstone `ino` on the server side (it must
    /// be moved out before the folder may be deleted).
    pub fn has_live_below(&self, ino: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "WITH RECURSIVE sub(ino) AS (
                 SELECT ino FROM entries WHERE remote_parent = ?1
                 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.remote_parent = sub.ino)
             SELECT COUNT(*) FROM entries WHERE ino IN sub AND parent IS NOT NULL",
            params![ino as i64],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Records that the server now has `ino` at `name` in server folder `parent` (which
    /// confirms a move in flight).
    pub fn set_remote(&self, ino: u64, parent: u64, name: &str) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE entries SET remote_parent = ?2, remote_name = ?3,
                 moving_parent = NULL, moving_name = NULL WHERE ino = ?1",
        )?
        .execute(params![ino as i64, parent as i64, name])?;
        Ok(())
    }

    /// Makes `ino` local-only: the server does not have it (any more). A tombstone has
    /// nothing left to do then and is forgotten.
    pub fn detach(&self, ino: u64) -> Result<(), MetaError> {
        if self.get_any(ino)?.is_some_and(|e| e.deleted) {
            return self.drop_tombstone(ino);
        }
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE entries SET remote_parent = NULL, remote_name = NULL, etag = NULL,
                 put_started = 0, moving_parent = NULL, moving_name = NULL, problem = NULL
             WHERE ino = ?1",
        )?
        .execute(params![ino as i64])?;
        Ok(())
    }

    /// Records that a MOVE of `ino` to `name` in server folder `parent` is being sent.
    /// Until [`Meta::set_remote`] or [`Meta::end_move`], where the server has it is not
    /// known (see [`Meta::moves_in_flight`]).
    pub fn start_move(&self, ino: u64, parent: u64, name: &str) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE entries SET moving_parent = ?2, moving_name = ?3 WHERE ino = ?1",
        )?
        .execute(params![ino as i64, parent as i64, name])?;
        Ok(())
    }

    /// Records that the MOVE of `ino` did not happen: the server has it where it was.
    pub fn end_move(&self, ino: u64) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE entries SET moving_parent = NULL, moving_name = NULL WHERE ino = ?1",
        )?
        .execute(params![ino as i64])?;
        Ok(())
    }

    /// Whether any MOVE was sent and not confirmed (cheap: for reads that follow one).
    pub fn any_move_in_flight(&self) -> Result<bool, MetaError> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM entries WHERE moving_parent IS NOT NULL)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Entries (live or tombstone) whose MOVE was sent and not confirmed, as (inode,
    /// server folder and name it was moving to).
    pub fn moves_in_flight(&self) -> Result<Vec<(u64, u64, String)>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT ino, moving_parent, moving_name FROM entries
             WHERE moving_parent IS NOT NULL AND moving_name IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records a finished upload of `ino` to `name` in server folder `parent`: the server
    /// version is now `etag` with `size` bytes. `clean` clears the dirty flag (nothing was
    /// written locally while it uploaded).
    pub fn uploaded(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        etag: Option<&ETag>,
        size: u64,
        clean: bool,
    ) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(etag);
        conn.prepare_cached(
            "UPDATE entries SET remote_parent = ?2, remote_name = ?3, etag = ?4, etag_weak = ?5,
                 size = CASE WHEN ?7 THEN ?6 ELSE size END,
                 dirty = CASE WHEN ?7 THEN 0 ELSE dirty END, put_started = 0, problem = NULL
             WHERE ino = ?1",
        )?
        .execute(params![
            ino as i64,
            parent as i64,
            name,
            etag,
            weak,
            size as i64,
            clean
        ])?;
        Ok(())
    }

    /// Forgets tombstone `ino` and what lay below it: the server deleted it.
    pub fn drop_tombstone(&self, ino: u64) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        delete_remote_subtree(&tx, ino as i64)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets or clears why write-back of `ino` is stuck.
    pub fn set_problem(&self, ino: u64, problem: Option<&Problem>) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE entries SET problem = ?2 WHERE ino = ?1")?
            .execute(params![ino as i64, problem])?;
        Ok(())
    }

    /// Clears every problem of `kind` (so those entries are tried again).
    pub fn clear_problems(&self, kind: ProblemKind) -> Result<usize, MetaError> {
        let prefix = kind.prefix();
        let conn = self.conn();
        let n = conn
            .prepare_cached(
                "UPDATE entries SET problem = NULL WHERE substr(problem, 1, length(?1)) = ?1",
            )?
            .execute(params![prefix])?;
        Ok(n)
    }

    /// Records that an upload of `ino` to `name` in server folder `parent` starts. A file
    /// the server does not have yet is recorded there already, so that after a crash the
    /// write-back finds (and moves or finishes) whatever the cut-short upload left.
    /// Returns `false` (and records nothing) if `ino` was deleted locally meanwhile: a
    /// deletion either comes before this (nothing to upload) or after it (a tombstone).
    pub fn start_put(&self, ino: u64, parent: u64, name: &str) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn
            .prepare_cached(
                "UPDATE entries SET put_started = 1,
                 remote_parent = COALESCE(remote_parent, ?2),
                 remote_name = CASE WHEN remote_parent IS NULL THEN ?3 ELSE remote_name END
             WHERE ino = ?1 AND parent IS NOT NULL",
            )?
            .execute(params![ino as i64, parent as i64, name])?;
        Ok(n > 0)
    }

    /// Before `ino`'s content is written over the server file of entry `replaced` (a
    /// tombstone, or a file renamed to an ignored name), `ino` takes over that file's
    /// server identity: its location and version. From then on the upload is an ordinary
    /// conditional overwrite of `ino`'s own file, which a crash can cut short and a
    /// restart finish, and a later local deletion of `ino` deletes. Returns `false` (and
    /// changes nothing) if `ino` was deleted or `replaced` no longer holds a server place.
    pub fn take_place(&self, ino: u64, replaced: u64) -> Result<bool, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let live: Option<bool> = tx
            .query_row(
                "SELECT parent IS NOT NULL FROM entries WHERE ino = ?1",
                params![ino as i64],
                |r| r.get(0),
            )
            .optional()?;
        /// (server folder, server name, version, weak, tombstone)
        type Place = (Option<i64>, Option<String>, Option<String>, bool, bool);
        let place: Option<Place> = tx
            .query_row(
                "SELECT remote_parent, remote_name, etag, etag_weak, parent IS NULL
                 FROM entries WHERE ino = ?1",
                params![replaced as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let (Some(true), Some((Some(rparent), Some(rname), etag, weak, deleted))) = (live, place)
        else {
            return Ok(false);
        };
        if deleted {
            delete_remote_subtree(&tx, replaced as i64)?;
        } else {
            tx.prepare_cached(
                "UPDATE entries SET remote_parent = NULL, remote_name = NULL, etag = NULL,
                     put_started = 0 WHERE ino = ?1",
            )?
            .execute(params![replaced as i64])?;
        }
        tx.prepare_cached(
            "UPDATE entries SET remote_parent = ?2, remote_name = ?3, etag = ?4, etag_weak = ?5,
                 put_started = 1 WHERE ino = ?1",
        )?
        .execute(params![ino as i64, rparent, rname, etag, weak])?;
        tx.commit()?;
        Ok(true)
    }

    /// Records that no upload of `ino` is in doubt (the server refused the last one whole).
    pub fn clear_put_started(&self, ino: u64) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE entries SET put_started = 0 WHERE ino = ?1")?
            .execute(params![ino as i64])?;
        Ok(())
    }

    /// Records `etag` as the server version `ino`'s local content is based on: the server
    /// holds what a crash-cut upload of ours left, so replacing it loses nobody's work.
    pub fn set_base_version(&self, ino: u64, etag: &ETag) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(Some(etag));
        conn.prepare_cached("UPDATE entries SET etag = ?2, etag_weak = ?3 WHERE ino = ?1")?
            .execute(params![ino as i64, etag, weak])?;
        Ok(())
    }

    /// Marks that an upload of `ino`, a file the server has, starts. Returns `false` (and
    /// records nothing) if it was deleted locally meanwhile: its tombstone's DELETE is
    /// what the server gets then.
    pub fn start_overwrite(&self, ino: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn
            .prepare_cached(
                "UPDATE entries SET put_started = 1 WHERE ino = ?1 AND parent IS NOT NULL",
            )?
            .execute(params![ino as i64])?;
        Ok(n > 0)
    }

    /// A stored setting of this mount (kept across restarts), if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, MetaError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores (`Some`) or clears (`None`) a setting of this mount.
    pub fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), MetaError> {
        let conn = self.conn();
        match value {
            Some(v) => conn
                .prepare_cached(
                    "INSERT INTO settings(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![key, v])?,
            None => conn
                .prepare_cached("DELETE FROM settings WHERE key = ?1")?
                .execute(params![key])?,
        };
        Ok(())
    }
}

impl Meta {
    /// The settings whose key starts with `prefix`, as (key, value).
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
