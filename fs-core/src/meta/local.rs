//! Local changes to the tree: what the kernel is told succeeded is recorded here, in one
//! transaction each, before the reply. The write-back (`crate::sync`) later brings the
//! server in line by comparing each row's local and server locations.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{delete_subtree, entry, mtime_ns, now_ms, Entry, Meta, MetaError};

/// Attributes a local change sets; `None` leaves one as it is.
#[derive(Clone, Debug, Default)]
pub struct LocalAttrs {
    /// New size in bytes.
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
    /// New access time.
    pub atime: Option<SystemTime>,
    /// New change time.
    pub ctime: Option<SystemTime>,
    /// New permission bits.
    pub mode: Option<u32>,
    /// Whether the content now differs from the server version.
    pub dirty: Option<bool>,
}

impl Meta {
    /// Records a new file or folder `name` in folder `parent`, not yet on the server.
    /// It is dirty until the server confirms it (a file's content, even empty, is still to
    /// be uploaded; a folder still to be created). A new folder counts as listed (it is
    /// empty and nobody else has it yet).
    pub fn create(
        &self,
        parent: u64,
        name: &str,
        is_dir: bool,
        mode: Option<u32>,
        mtime: SystemTime,
    ) -> Result<Entry, MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO entries(parent, name, is_dir, size, mtime_ns, dirty, mode, listed_at_ms)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            parent as i64,
            name,
            is_dir,
            mtime_ns(Some(mtime)),
            true,
            mode.map(|m| m as i64),
            if is_dir { Some(now_ms()) } else { None }
        ])?;
        let ino = conn.last_insert_rowid();
        let mut stmt = conn.prepare_cached(&format!("{} WHERE ino = ?1", entry::SELECT))?;
        Ok(stmt.query_row(params![ino], entry::from_row)?)
    }

    /// Records that folder `ino`'s children are all known now (a folder only this machine has).
    pub fn mark_listed(&self, ino: u64) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE entries SET listed_at_ms = ?2 WHERE ino = ?1")?
            .execute(params![ino as i64, now_ms()])?;
        Ok(())
    }

    /// Sets local attributes of `ino`.
    pub fn set_local(&self, ino: u64, attrs: &LocalAttrs) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE entries SET size = COALESCE(?2, size), mtime_ns = COALESCE(?3, mtime_ns),
                 mode = COALESCE(?4, mode), dirty = COALESCE(?5, dirty),
                 atime_ns = COALESCE(?6, atime_ns), ctime_ns = COALESCE(?7, ctime_ns)
             WHERE ino = ?1 AND parent IS NOT NULL",
        )?
        .execute(params![
            ino as i64,
            attrs.size.map(|s| s as i64),
            mtime_ns(attrs.mtime),
            attrs.mode.map(|m| m as i64),
            attrs.dirty,
            mtime_ns(attrs.atime),
            mtime_ns(attrs.ctime)
        ])?;
        Ok(())
    }

    /// Sets the modification and change times of folders `inos` to `t`, after a change of
    /// their children. Only the times change: the folders do not become pending for
    /// write-back.
    pub fn touch_folders(&self, inos: &[u64], t: SystemTime) -> Result<(), MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "UPDATE entries SET mtime_ns = ?2, ctime_ns = ?2
             WHERE ino = ?1 AND is_dir = 1 AND parent IS NOT NULL",
        )?;
        for ino in inos {
            stmt.execute(params![*ino as i64, mtime_ns(Some(t))])?;
        }
        Ok(())
    }

    /// Makes the store's last changes durable on disk (for `fsync`): a checkpoint-free
    /// full sync of the write-ahead log.
    pub fn sync_to_disk(&self) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "FULL")?;
        let r = conn.execute_batch("BEGIN IMMEDIATE; UPDATE settings SET value = value WHERE key = 'schema_version'; COMMIT;");
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(r?)
    }

    /// Removes `ino` from the local tree. An entry the server has becomes a tombstone (its
    /// DELETE is pending); one that never reached the server is forgotten. Returns whether
    /// it was forgotten outright.
    pub fn remove_local(&self, ino: u64) -> Result<bool, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let gone = remove_in(&tx, ino)?;
        tx.commit()?;
        Ok(gone)
    }

    /// Moves `ino` to `name` in folder `parent`, replacing (removing) `replaced` first if
    /// given — one transaction, so a crash leaves either the old or the new tree.
    pub fn rename_local(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        replaced: Option<u64>,
    ) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(r) = replaced {
            remove_in(&tx, r)?;
        }
        tx.prepare_cached("UPDATE entries SET parent = ?2, name = ?3 WHERE ino = ?1")?
            .execute(params![ino as i64, parent as i64, name])?;
        tx.commit()?;
        Ok(())
    }

    /// Whether `ino` is `ancestor` or lies below it in the local tree.
    pub fn is_within(&self, ino: u64, ancestor: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT parent FROM entries WHERE ino = ?1")?;
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == super::ROOT_INO || cur == 0 {
                return Ok(false);
            }
            let p: Option<Option<i64>> = stmt
                .query_row(params![cur as i64], |r| r.get(0))
                .optional()?;
            match p.flatten() {
                Some(p) => cur = p as u64,
                None => return Ok(false),
            }
        }
        Err(MetaError::Corrupt(format!(
            "inode {ino} has a parent cycle"
        )))
    }
}

fn remove_in(tx: &rusqlite::Transaction<'_>, ino: u64) -> Result<bool, MetaError> {
    let on_server: Option<bool> = tx
        .query_row(
            "SELECT remote_parent IS NOT NULL FROM entries WHERE ino = ?1",
            params![ino as i64],
            |r| r.get(0),
        )
        .optional()?;
    match on_server {
        None => Ok(true),
        Some(true) => {
            tx.prepare_cached(
                "UPDATE entries SET parent = NULL, dirty = 0, listed_at_ms = NULL WHERE ino = ?1",
            )?
            .execute(params![ino as i64])?;
            Ok(false)
        }
        Some(false) => {
            delete_subtree(tx, ino as i64)?;
            Ok(true)
        }
    }
}
