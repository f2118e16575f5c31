//! Conflicts and the event log: both sides changed a file, or a remote change met a local
//! one. The store keeps every version reachable; what the user should know is logged in
//! `events` (shown by `edrive conflicts`).

use rusqlite::{params, OptionalExtension};

use super::{etag_cols, inos, mtime_ns, now_ms, size_col, Meta, MetaError};
use crate::remote::{ETag, RemoteEntry};

/// Events kept (the oldest go first).
const EVENTS_KEPT: i64 = 1000;

/// Something the sync did that the user should know about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What happened: `kept-both`, `kept-local`, `restored`, `used-local`, `used-remote`.
    pub kind: String,
    /// The local path it is about.
    pub path: String,
    /// Details: the other name, where a discarded copy went.
    pub detail: String,
}

impl Meta {
    /// Keeps both versions of file `ino` whose upload found another version on the server:
    /// the local version becomes a new local-only file `conflict_name` in the same folder
    /// (uploaded as new by the write-back), and the server's version `server` takes the
    /// row's server place under its server name (a new, clean row, fetched when opened).
    /// Returns the new row of the server's version (`None` if its name is taken locally;
    /// the next listing shows it then), or `Err`/no change if `ino` is gone.
    pub fn split_conflict(
        &self,
        ino: u64,
        conflict_name: &str,
        server: &RemoteEntry,
    ) -> Result<Option<u64>, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        type Row = (Option<i64>, Option<i64>, Option<String>);
        let row: Option<Row> = tx
            .query_row(
                "SELECT parent, remote_parent, remote_name FROM entries WHERE ino = ?1",
                params![ino as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((Some(_), rparent, rname)) = row else {
            return Ok(None);
        };
        tx.prepare_cached(
            "UPDATE entries SET name = ?2, remote_parent = NULL, remote_name = NULL,
                 etag = NULL, etag_weak = 0, problem = NULL, put_started = 0, dirty = 1,
                 moving_parent = NULL, moving_name = NULL
             WHERE ino = ?1",
        )?
        .execute(params![ino as i64, conflict_name])?;
        let mut fresh = None;
        if let (Some(rparent), Some(rname)) = (rparent, rname) {
            let (etag, weak) = etag_cols(server.etag.as_ref());
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO entries(parent, name, is_dir, size, mtime_ns, etag,
                     etag_weak, remote_parent, remote_name)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?1, ?2)",
                )?
                .execute(params![
                    rparent,
                    rname,
                    size_col(server),
                    mtime_ns(server.mtime),
                    etag,
                    weak
                ])?;
            if n > 0 {
                fresh = Some(tx.last_insert_rowid() as u64);
            }
        }
        tx.commit()?;
        Ok(fresh)
    }

    /// Makes the server's version `etag` the base of `ino`'s local content, so its next
    /// upload replaces that version (the user chose the local one).
    pub fn overrule_server(&self, ino: u64, etag: Option<&ETag>) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(etag);
        conn.prepare_cached(
            "UPDATE entries SET etag = ?2, etag_weak = ?3, problem = NULL, dirty = 1
             WHERE ino = ?1",
        )?
        .execute(params![ino as i64, etag, weak])?;
        Ok(())
    }

    /// Drops `ino`'s local changes in favour of the server's version `server` (the user
    /// chose it): clean, with the server's size, time and version.
    pub fn take_server_version(&self, ino: u64, server: &RemoteEntry) -> Result<(), MetaError> {
        let conn = self.conn();
        let (etag, weak) = etag_cols(server.etag.as_ref());
        conn.prepare_cached(
            "UPDATE entries SET etag = ?2, etag_weak = ?3, size = ?4, mtime_ns = ?5,
                 problem = NULL, dirty = 0, put_started = 0, ctime_ns = NULL
             WHERE ino = ?1",
        )?
        .execute(params![
            ino as i64,
            etag,
            weak,
            size_col(server),
            mtime_ns(server.mtime)
        ])?;
        Ok(())
    }

    /// Files in conflict (the `ask` policy): `(ino)` in inode order.
    pub fn conflicts(&self) -> Result<Vec<u64>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT ino FROM entries WHERE problem = 'conflict' AND parent IS NOT NULL
             ORDER BY ino",
        )?;
        inos(&mut stmt, [])
    }

    /// Logs an event for the user.
    pub fn record_event(&self, kind: &str, path: &str, detail: &str) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO events(at_ms, kind, path, detail) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![now_ms(), kind, path, detail])?;
        conn.prepare_cached("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1")?
            .execute(params![EVENTS_KEPT])?;
        Ok(())
    }

    /// The latest events, newest last, at most `limit`.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT at_ms, kind, path, detail FROM
                 (SELECT id, at_ms, kind, path, detail FROM events ORDER BY id DESC LIMIT ?1)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok(Event {
                at_ms: r.get(0)?,
                kind: r.get(1)?,
                path: r.get(2)?,
                detail: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
