//! The store's side of held deletions (see `crate::sync::held`): marking a burst of
//! tombstones held, listing them, and letting them go or bringing them back.

use rusqlite::params;

use super::Problem;
use super::{entry, Entry, Meta, MetaError};

impl Meta {
    /// Marks tombstones `inos` held (those without another problem).
    pub fn hold(&self, inos: &[u64]) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE entries SET problem = ?2
                 WHERE ino = ?1 AND parent IS NULL AND problem IS NULL",
            )?;
            for ino in inos {
                stmt.execute(params![*ino as i64, Problem::Held])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The deletions the user confirmed (see [`Meta::release_held`]) that may still wait.
    pub fn confirmed_deletions(&self) -> Result<std::collections::HashSet<u64>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT c.ino FROM deletions_confirmed c JOIN entries e ON e.ino = c.ino
             WHERE e.parent IS NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        let mut out = std::collections::HashSet::new();
        for r in rows {
            out.insert(r? as u64);
        }
        Ok(out)
    }

    /// Every held deletion, oldest first.
    pub fn held(&self) -> Result<Vec<Entry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE parent IS NULL AND problem = ?1 ORDER BY ino",
            entry::SELECT
        ))?;
        let rows = stmt.query_map(params![Problem::Held], entry::from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Lets held deletions `inos` go: the write-back sends them (they are not held again).
    pub fn release_held(&self, inos: &[u64]) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE entries SET problem = NULL WHERE ino = ?1 AND problem = ?2",
            )?;
            let mut confirm =
                tx.prepare_cached("INSERT OR IGNORE INTO deletions_confirmed(ino) VALUES (?1)")?;
            for ino in inos {
                stmt.execute(params![*ino as i64, Problem::Held])?;
                confirm.execute(params![*ino as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Brings held deletions `inos` back where the server has them, with their inodes
    /// (so pins on them hold again); folders are listed again at their next access.
    /// Returns those that could not come back (a new local entry took the name).
    pub fn revive_held(&self, inos: &[u64]) -> Result<Vec<u64>, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut blocked = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE OR IGNORE entries SET parent = remote_parent, name = remote_name,
                     problem = NULL, listed_at_ms = NULL
                 WHERE ino = ?1 AND parent IS NULL AND problem = ?2",
            )?;
            for ino in inos {
                if stmt.execute(params![*ino as i64, Problem::Held])? == 0 {
                    blocked.push(*ino);
                }
            }
        }
        tx.commit()?;
        Ok(blocked)
    }
}
