//! The persisted SQLite index: one row per complete blob with its file, length, flags and the
//! recency counter, so a restart keeps what is cached and roughly in which order it was used.

use crate::error::CacheError;
use crate::key::BlobKey;
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::Duration;

/// One index row, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub key: BlobKey,
    /// File name inside `blobs/`.
    pub file: String,
    pub len: u64,
    /// Value of the cache's use counter at the last recorded use.
    pub last_used: u64,
    pub pinned: bool,
    pub dirty: bool,
}

/// One partial download, as stored: which byte ranges of the file are present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartialRow {
    pub key: BlobKey,
    /// File name inside `blobs/`.
    pub file: String,
    /// The whole file's length.
    pub len: u64,
    /// Sorted, disjoint, non-empty half-open ranges within `len`.
    pub ranges: Vec<(u64, u64)>,
    pub last_used: u64,
}

/// `"s-e,s-e"` → ranges, if sorted, disjoint, non-empty and within `len`.
fn parse_ranges(text: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for part in text.split(',') {
        let (s, e) = part.split_once('-')?;
        let (s, e) = (s.parse::<u64>().ok()?, e.parse::<u64>().ok()?);
        if s >= e || e > len || out.last().is_some_and(|&(_, pe)| pe >= s) {
            return None;
        }
        out.push((s, e));
    }
    Some(out)
}

/// SQLite stores signed 64-bit integers; ids and counters are kept bit-for-bit.
fn to_sql(v: u64) -> i64 {
    v as i64
}

fn from_sql(v: i64) -> u64 {
    v as u64
}

/// The index database connection.
pub(crate) struct Index {
    conn: Connection,
}

impl Index {
    /// Opens (creating if needed) the index at `path` in WAL mode with `synchronous=NORMAL`.
    pub fn open(path: &Path) -> Result<Index, CacheError> {
        let conn = Connection::open(path)?;
        // More than the index's statements: none is compiled twice.
        conn.set_prepared_statement_cache_capacity(64);
        conn.busy_timeout(Duration::from_secs(5))?;
        // One process uses the index (the directory's lock): keep the database lock for
        // good, so WAL needs no shared-memory index and no lock calls per transaction.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "cache index is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS blobs (
                entry     INTEGER NOT NULL,
                version   TEXT    NOT NULL,
                file      TEXT    NOT NULL,
                len       INTEGER NOT NULL,
                last_used INTEGER NOT NULL,
                pinned    INTEGER NOT NULL DEFAULT 0,
                dirty     INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (entry, version)
            );
            CREATE TABLE IF NOT EXISTS partials (
                entry     INTEGER NOT NULL,
                version   TEXT    NOT NULL,
                file      TEXT    NOT NULL,
                len       INTEGER NOT NULL,
                ranges    TEXT    NOT NULL,
                last_used INTEGER NOT NULL,
                PRIMARY KEY (entry, version)
            );",
        )?;
        Ok(Index { conn })
    }

    /// All rows, least recently used first. A row with an impossible (negative) length comes
    /// back as `Err(key)` so the caller drops it.
    pub fn load(&self) -> Result<Vec<Result<Row, BlobKey>>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT entry, version, file, len, last_used, pinned, dirty
             FROM blobs ORDER BY last_used ASC",
        )?;
        let rows = stmt.query_map([], |r| {
            let key = BlobKey::new(from_sql(r.get(0)?), r.get::<_, String>(1)?);
            let len: i64 = r.get(3)?;
            let Ok(len) = u64::try_from(len) else {
                return Ok(Err(key));
            };
            Ok(Ok(Row {
                key,
                file: r.get(2)?,
                len,
                last_used: from_sql(r.get(4)?),
                pinned: r.get(5)?,
                dirty: r.get(6)?,
            }))
        })?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }

    /// Inserts `rows` in one transaction, each replacing any row with the same key.
    pub fn upsert_many(&mut self, rows: &[Row]) -> Result<(), CacheError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO blobs (entry, version, file, len, last_used, pinned, dirty)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for row in rows {
                stmt.execute(params![
                    to_sql(row.key.entry),
                    row.key.version,
                    row.file,
                    to_sql(row.len),
                    to_sql(row.last_used),
                    row.pinned,
                    row.dirty,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes the rows of `keys` in one transaction.
    pub fn delete_many<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a BlobKey>,
    ) -> Result<(), CacheError> {
        self.delete_keys("DELETE FROM blobs WHERE entry = ?1 AND version = ?2", keys)
    }

    /// Runs `delete` (a statement taking entry and version) for each of `keys`, in one
    /// transaction.
    fn delete_keys<'a>(
        &mut self,
        delete: &str,
        keys: impl IntoIterator<Item = &'a BlobKey>,
    ) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(delete)?;
            for key in keys {
                stmt.execute(params![to_sql(key.entry), key.version])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets the pinned flag of `key`'s row.
    pub fn set_pinned(&self, key: &BlobKey, pinned: bool) -> Result<(), CacheError> {
        self.conn
            .prepare_cached("UPDATE blobs SET pinned = ?3 WHERE entry = ?1 AND version = ?2")?
            .execute(params![to_sql(key.entry), key.version, pinned])?;
        Ok(())
    }

    /// Sets the dirty flag of `key`'s row.
    pub fn set_dirty(&self, key: &BlobKey, dirty: bool) -> Result<(), CacheError> {
        self.conn
            .prepare_cached("UPDATE blobs SET dirty = ?3 WHERE entry = ?1 AND version = ?2")?
            .execute(params![to_sql(key.entry), key.version, dirty])?;
        Ok(())
    }

    /// Records the use counters of several keys in one transaction.
    pub fn touch_many(&mut self, uses: &[(BlobKey, u64)]) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE blobs SET last_used = ?3 WHERE entry = ?1 AND version = ?2",
            )?;
            for (key, last_used) in uses {
                stmt.execute(params![to_sql(key.entry), key.version, to_sql(*last_used)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// All partial downloads, least recently used first. A row whose ranges do not parse
    /// comes back as `Err(key)` so the caller drops it.
    pub fn load_partials(&self) -> Result<Vec<Result<PartialRow, BlobKey>>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT entry, version, file, len, ranges, last_used
             FROM partials ORDER BY last_used ASC",
        )?;
        let rows = stmt.query_map([], |r| {
            let key = BlobKey::new(from_sql(r.get(0)?), r.get::<_, String>(1)?);
            let len = from_sql(r.get(3)?);
            let text: String = r.get(4)?;
            let Some(ranges) = parse_ranges(&text, len) else {
                return Ok(Err(key));
            };
            Ok(Ok(PartialRow {
                key,
                file: r.get(2)?,
                len,
                ranges,
                last_used: from_sql(r.get(5)?),
            }))
        })?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }

    /// Inserts `row`, replacing any partial download with the same key.
    pub fn upsert_partial(&self, row: &PartialRow) -> Result<(), CacheError> {
        let ranges: Vec<String> = row.ranges.iter().map(|(s, e)| format!("{s}-{e}")).collect();
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO partials (entry, version, file, len, ranges, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                to_sql(row.key.entry),
                row.key.version,
                row.file,
                to_sql(row.len),
                ranges.join(","),
                to_sql(row.last_used),
            ])?;
        Ok(())
    }

    /// Deletes the partial download rows of `keys`.
    pub fn delete_partials<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a BlobKey>,
    ) -> Result<(), CacheError> {
        self.delete_keys(
            "DELETE FROM partials WHERE entry = ?1 AND version = ?2",
            keys,
        )
    }

    /// The stored row of `key`, if any.
    #[cfg(test)]
    pub fn row(&self, key: &BlobKey) -> Result<Option<Row>, CacheError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT file, len, last_used, pinned, dirty FROM blobs
                 WHERE entry = ?1 AND version = ?2",
                params![to_sql(key.entry), key.version],
                |r| {
                    Ok(Row {
                        key: key.clone(),
                        file: r.get(0)?,
                        len: from_sql(r.get(1)?),
                        last_used: from_sql(r.get(2)?),
                        pinned: r.get(3)?,
                        dirty: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}
