//! The store's tables, created or checked when it is opened.

use rusqlite::Connection;

/// Bumped when the tables change shape.
const VERSION: i64 = 1;

/// Sets WAL mode and creates the tables (and the root row) if they are missing.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS entries(
             ino INTEGER PRIMARY KEY AUTOINCREMENT,
             parent INTEGER NOT NULL,
             name TEXT NOT NULL,
             is_dir INTEGER NOT NULL,
             size INTEGER NOT NULL DEFAULT 0,
             mtime_ns INTEGER,
             etag TEXT,
             etag_weak INTEGER NOT NULL DEFAULT 0,
             listed_at_ms INTEGER,
             UNIQUE(parent, name)
         );
         INSERT OR IGNORE INTO entries(ino, parent, name, is_dir) VALUES (1, 0, '', 1);",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO settings(key, value) VALUES ('schema_version', ?1)",
        [VERSION.to_string()],
    )?;
    Ok(())
}
