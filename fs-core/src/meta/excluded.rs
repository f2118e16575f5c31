//! Folders excluded on this device (`edrive exclude`): kept as an empty, read-only
//! placeholder whose content is neither listed, fetched nor polled. By inode, so an
//! exclusion follows the folder through renames and holds across remounts.

use rusqlite::params;

use super::{now_ms, subtree_has_local_changes, Meta, MetaError};

/// Why a folder cannot be excluded now.
#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    /// Something below it waits to be written back.
    #[error("changes below it are not on the server yet; run `edrive sync` first")]
    Pending,
    /// Something below it (or it) is pinned.
    #[error("something in it is pinned; `edrive unpin` it first")]
    Pinned,
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl Meta {
    /// Excludes folder `ino`: forgets everything known below it (nothing of it waits to
    /// be written back, nothing is pinned) and keeps it as an empty placeholder. Returns
    /// the children names it had (for the kernel) and the files forgotten (for the cache).
    pub fn exclude(&self, ino: u64) -> Result<(Vec<String>, Vec<u64>), ExcludeError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(MetaError::from)?;
        let sub = "WITH RECURSIVE sub(ino) AS (
             SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)";
        if subtree_has_local_changes(&tx, ino as i64)? {
            return Err(ExcludeError::Pending);
        }
        let (tombstones, pins): (i64, i64) = tx
            .query_row(
                &format!(
                    "{sub} SELECT
                       (SELECT COUNT(*) FROM entries WHERE parent IS NULL
                            AND remote_parent IN sub),
                       (SELECT COUNT(*) FROM pins WHERE ino IN sub)"
                ),
                params![ino as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(MetaError::from)?;
        if tombstones > 0 {
            return Err(ExcludeError::Pending);
        }
        if pins > 0 {
            return Err(ExcludeError::Pinned);
        }
        let names: Vec<String> = {
            let mut stmt = tx
                .prepare_cached("SELECT name FROM entries WHERE parent = ?1")
                .map_err(MetaError::from)?;
            let rows = stmt
                .query_map(params![ino as i64], |r| r.get(0))
                .map_err(MetaError::from)?;
            rows.collect::<Result<_, _>>().map_err(MetaError::from)?
        };
        let files = super::inos(
            &mut tx
                .prepare_cached(&format!(
                    "{sub} SELECT ino FROM entries WHERE ino IN sub AND is_dir = 0"
                ))
                .map_err(MetaError::from)?,
            params![ino as i64],
        )?;
        tx.execute(
            &format!("{sub} DELETE FROM entries WHERE ino IN sub AND ino != ?1"),
            params![ino as i64],
        )
        .map_err(MetaError::from)?;
        tx.execute(
            "INSERT OR IGNORE INTO excluded(ino) VALUES (?1)",
            params![ino as i64],
        )
        .map_err(MetaError::from)?;
        tx.execute(
            "UPDATE entries SET listed_at_ms = ?2, denied = denied | ?3 WHERE ino = ?1",
            params![ino as i64, now_ms(), super::DENY_EXCLUDED],
        )
        .map_err(MetaError::from)?;
        tx.commit().map_err(MetaError::from)?;
        Ok((names, files))
    }

    /// Includes folder `ino` again: listed at its next access. Returns whether it was
    /// excluded.
    pub fn include(&self, ino: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn
            .prepare_cached("DELETE FROM excluded WHERE ino = ?1")?
            .execute(params![ino as i64])?;
        conn.prepare_cached(
            "UPDATE entries SET listed_at_ms = NULL, denied = denied & ~?2 WHERE ino = ?1",
        )?
        .execute(params![ino as i64, super::DENY_EXCLUDED])?;
        Ok(n > 0)
    }

    /// Whether folder `ino` is excluded on this device.
    pub fn is_excluded(&self, ino: u64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM excluded WHERE ino = ?1)")?;
        let excluded = stmt.query_row(params![ino as i64], |r| r.get(0))?;
        Ok(excluded)
    }

    /// The excluded folders that still exist.
    pub fn excluded(&self) -> Result<Vec<u64>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT x.ino FROM excluded x JOIN entries e ON e.ino = x.ino
             WHERE e.parent IS NOT NULL ORDER BY x.ino",
        )?;
        let inos = super::inos(&mut stmt, [])?;
        Ok(inos)
    }
}
