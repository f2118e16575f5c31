//! The `user.*` extended attributes applications set on entries (tags, ratings,
//! comments, a download's origin): kept in the store by inode, never sent to the server.
//! An entry's attributes go with it (see the triggers in `schema`).

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{mtime_ns, Meta, MetaError};

/// When [`Meta::set_xattr`] may set an attribute (the flags of `setxattr(2)`); neither
/// flag: whether or not it exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XattrMode {
    /// Only if it does not exist yet (`XATTR_CREATE`).
    pub create: bool,
    /// Only if it exists (`XATTR_REPLACE`).
    pub replace: bool,
}

/// What [`Meta::set_xattr`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrSet {
    /// Set.
    Done,
    /// Not set: it exists and the mode says create.
    Exists,
    /// Not set: it does not exist and the mode says replace.
    Missing,
    /// Not set: the entry's attributes would take more than the room given.
    Full,
    /// Not set: no such live entry.
    NoEntry,
}

impl Meta {
    /// The value of attribute `name` of `ino`, if set.
    pub fn xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2")?;
        Ok(stmt
            .query_row(params![ino as i64, name], |r| r.get(0))
            .optional()?)
    }

    /// The names of `ino`'s attributes, in byte order.
    pub fn xattr_names(&self, ino: u64) -> Result<Vec<Vec<u8>>, MetaError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT name FROM xattrs WHERE ino = ?1 ORDER BY name")?;
        let rows = stmt.query_map(params![ino as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets attribute `name` of live entry `ino` to `value` if `mode` allows, and if all
    /// of `ino`'s attributes (names and values) then take at most `room` bytes; the
    /// entry's change time becomes `now`. One transaction.
    pub fn set_xattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
        room: usize,
        now: SystemTime,
    ) -> Result<XattrSet, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let live: bool = tx
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM entries WHERE ino = ?1 AND parent IS NOT NULL)",
            )?
            .query_row(params![ino as i64], |r| r.get(0))?;
        if !live {
            return Ok(XattrSet::NoEntry);
        }
        let old: Option<i64> = tx
            .prepare_cached(
                "SELECT length(name) + length(value) FROM xattrs WHERE ino = ?1 AND name = ?2",
            )?
            .query_row(params![ino as i64, name], |r| r.get(0))
            .optional()?;
        match old {
            Some(_) if mode.create => return Ok(XattrSet::Exists),
            None if mode.replace => return Ok(XattrSet::Missing),
            _ => {}
        }
        let total: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(SUM(length(name) + length(value)), 0) FROM xattrs WHERE ino = ?1",
            )?
            .query_row(params![ino as i64], |r| r.get(0))?;
        let after = total - old.unwrap_or(0) + (name.len() + value.len()) as i64;
        if after > room as i64 {
            return Ok(XattrSet::Full);
        }
        tx.prepare_cached("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES (?1, ?2, ?3)")?
            .execute(params![ino as i64, name, value])?;
        tx.prepare_cached("UPDATE entries SET ctime_ns = ?2 WHERE ino = ?1")?
            .execute(params![ino as i64, mtime_ns(Some(now))])?;
        tx.commit()?;
        Ok(XattrSet::Done)
    }

    /// Removes attribute `name` of `ino`; the entry's change time becomes `now`. Returns
    /// whether it was set.
    pub fn remove_xattr(&self, ino: u64, name: &[u8], now: SystemTime) -> Result<bool, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx
            .prepare_cached("DELETE FROM xattrs WHERE ino = ?1 AND name = ?2")?
            .execute(params![ino as i64, name])?;
        if n > 0 {
            tx.prepare_cached("UPDATE entries SET ctime_ns = ?2 WHERE ino = ?1")?
                .execute(params![ino as i64, mtime_ns(Some(now))])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }
}
