//! Pins: folders and files the user wants kept local for offline use. A pin covers its
//! whole subtree (by the local tree), including entries that appear later.

use rusqlite::params;

use super::{entry, inos, Entry, Meta, MetaError, ROOT_INO};

impl Meta {
    /// Pins `ino` (and so everything below it). Returns whether it was not pinned itself.
    pub fn add_pin(&self, ino: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn
            .prepare_cached("INSERT OR IGNORE INTO pins(ino) VALUES (?1)")?
            .execute(params![ino as i64])?;
        Ok(n > 0)
    }

    /// Removes the pin on `ino` itself. Returns whether there was one.
    pub fn remove_pin(&self, ino: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn
            .prepare_cached("DELETE FROM pins WHERE ino = ?1")?
            .execute(params![ino as i64])?;
        Ok(n > 0)
    }

    /// The pin that covers `ino`: itself or its nearest pinned ancestor.
    pub fn pinned_by(&self, ino: u64) -> Result<Option<u64>, MetaError> {
        let conn = self.conn();
        let mut pinned = conn.prepare_cached("SELECT COUNT(*) FROM pins WHERE ino = ?1")?;
        let mut parent = conn.prepare_cached("SELECT parent FROM entries WHERE ino = ?1")?;
        let mut cur = ino;
        for _ in 0..4096 {
            let n: i64 = pinned.query_row(params![cur as i64], |r| r.get(0))?;
            if n > 0 {
                return Ok(Some(cur));
            }
            if cur == ROOT_INO {
                return Ok(None);
            }
            let p: Option<i64> = parent.query_row(params![cur as i64], |r| r.get(0))?;
            match p {
                Some(p) => cur = p as u64,
                None => return Ok(None),
            }
        }
        Err(MetaError::Corrupt(format!(
            "inode {ino} has a parent cycle"
        )))
    }

    /// Every pinned entry.
    pub fn pins(&self) -> Result<Vec<u64>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT p.ino FROM pins p JOIN entries e ON e.ino = p.ino
             WHERE e.parent IS NOT NULL ORDER BY p.ino",
        )?;
        inos(&mut stmt, [])
    }

    /// The files known below folder `ino` (all depths, by the local tree), or `ino` itself
    /// if it is a file.
    pub fn files_below(&self, ino: u64) -> Result<Vec<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "WITH RECURSIVE sub(ino) AS (
                 SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)
             {} WHERE ino IN sub AND is_dir = 0 AND parent IS NOT NULL ORDER BY ino",
            entry::SELECT
        ))?;
        let rows = stmt.query_map(params![ino as i64], entry::from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Folder `ino` and the folders below it (all depths, by the local tree).
    pub fn dirs_below(&self, ino: u64) -> Result<Vec<u64>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "WITH RECURSIVE sub(ino) AS (
                 SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino
                 WHERE e.is_dir = 1)
             SELECT e.ino FROM entries e JOIN sub ON e.ino = sub.ino
             WHERE e.is_dir = 1 AND e.parent IS NOT NULL",
        )?;
        inos(&mut stmt, params![ino as i64])
    }
}
