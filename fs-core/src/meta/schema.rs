//! The store's tables, created, checked or migrated when it is opened.
//!
//! An entry row holds two locations: where the user sees it (`parent`, `name`) and where
//! the server has it (`remote_parent`, `remote_name`, both naming rows of this table).
//! The two differ exactly while a local change waits to be written back, so the store
//! itself is the durable record of pending work (see `crate::sync`). A row with a NULL
//! `parent` is a tombstone: deleted locally, still to be deleted on the server.

use rusqlite::{Connection, OptionalExtension};

/// Bumped when the tables change shape.
const VERSION: i64 = 6;

const ENTRIES: &str = "
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER,
    etag TEXT,
    etag_weak INTEGER NOT NULL DEFAULT 0,
    listed_at_ms INTEGER,
    remote_parent INTEGER,
    remote_name TEXT,
    dirty INTEGER NOT NULL DEFAULT 0,
    mode INTEGER,
    problem TEXT,
    put_started INTEGER NOT NULL DEFAULT 0,
    moving_parent INTEGER,
    moving_name TEXT,
    atime_ns INTEGER,
    ctime_ns INTEGER,
    denied INTEGER NOT NULL DEFAULT 0,
    UNIQUE(parent, name)";

/// The `user.*` extended attributes (names and values as bytes), and the triggers that
/// delete them with their entry.
const XATTRS: &str = "
    CREATE TABLE IF NOT EXISTS xattrs(ino INTEGER NOT NULL, name BLOB NOT NULL,
        value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;
    CREATE TRIGGER IF NOT EXISTS xattrs_entry_gone AFTER DELETE ON entries
        BEGIN DELETE FROM xattrs WHERE ino = OLD.ino; END;
    CREATE TRIGGER IF NOT EXISTS xattrs_entry_deleted AFTER UPDATE OF parent ON entries
        WHEN NEW.parent IS NULL AND OLD.parent IS NOT NULL
        BEGIN DELETE FROM xattrs WHERE ino = OLD.ino; END;";

/// Sets WAL mode and creates the tables (and the root row) if they are missing; migrates
/// a version 1 store (read-only era: no local changes to carry over, inodes kept), a
/// version 2 store (no record of moves in flight), a version 3 store (no access and
/// change times) and a version 4 store (no extended attributes).
///
/// `moving_parent`/`moving_name` record a server MOVE that was sent and not confirmed: a
/// crash (or a lost reply) leaves the server's location unknown until it is checked.
/// `size` is -1 for a file whose size the server did not give in a usable form (older
/// versions read it as 0, as they stored such sizes).
///
/// `atime_ns`/`ctime_ns` are local only: the access time set by `utimensat` and the time
/// of the last local change (NULL: shown as the modification time). All times are signed
/// nanoseconds since the epoch (negative before 1970).
///
/// Version 5 adds `xattrs`: the `user.*` extended attributes applications set, local only,
/// by inode (so they follow renames), deleted with their entry by triggers: when its row
/// goes, and when it becomes a tombstone (deleted locally).
///
/// Version 6 adds `denied`: what the server does not let this user do with the entry
/// (see `super::permissions`), `excluded`: server folders this device leaves alone, and
/// `deletions_confirmed`: held deletions the user let go (never held again).
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    let mut version: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if version.as_deref() == Some("1") {
        conn.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE entries_v2({ENTRIES});
             INSERT INTO entries_v2(ino, parent, name, is_dir, size, mtime_ns, etag, etag_weak,
                                    listed_at_ms, remote_parent, remote_name)
                 SELECT ino, parent, name, is_dir, size, mtime_ns, etag, etag_weak,
                        listed_at_ms, parent, name FROM entries;
             DROP TABLE entries;
             ALTER TABLE entries_v2 RENAME TO entries;
             UPDATE settings SET value = '4' WHERE key = 'schema_version';
             COMMIT;"
        ))?;
        version = Some("4".into());
    }
    if version.as_deref() == Some("2") {
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE entries ADD COLUMN moving_parent INTEGER;
             ALTER TABLE entries ADD COLUMN moving_name TEXT;
             UPDATE settings SET value = '3' WHERE key = 'schema_version';
             COMMIT;",
        )?;
        version = Some("3".into());
    }
    if version.as_deref() == Some("3") {
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE entries ADD COLUMN atime_ns INTEGER;
             ALTER TABLE entries ADD COLUMN ctime_ns INTEGER;
             UPDATE settings SET value = '4' WHERE key = 'schema_version';
             COMMIT;",
        )?;
        version = Some("4".into());
    }
    if version.as_deref() == Some("4") {
        conn.execute_batch(&format!(
            "BEGIN;
             {XATTRS}
             UPDATE settings SET value = '5' WHERE key = 'schema_version';
             COMMIT;"
        ))?;
        version = Some("5".into());
    }
    if version.as_deref() == Some("5") {
        // A version 1 store was rebuilt with today's columns: `denied` may be there.
        let has: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM pragma_table_info('entries') WHERE name = 'denied')",
            [],
            |r| r.get(0),
        )?;
        let add = if has {
            ""
        } else {
            "ALTER TABLE entries ADD COLUMN denied INTEGER NOT NULL DEFAULT 0;"
        };
        conn.execute_batch(&format!(
            "BEGIN;
             {add}
             UPDATE settings SET value = '6' WHERE key = 'schema_version';
             COMMIT;"
        ))?;
    }
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS entries({ENTRIES});
         CREATE INDEX IF NOT EXISTS entries_remote ON entries(remote_parent, remote_name);
         CREATE INDEX IF NOT EXISTS entries_children ON entries(parent, ino);
         CREATE INDEX IF NOT EXISTS entries_pending ON entries(ino)
             WHERE parent IS NULL OR remote_parent IS NULL OR dirty = 1
                OR remote_parent IS NOT parent OR remote_name IS NOT name;
         CREATE INDEX IF NOT EXISTS entries_moving ON entries(ino)
             WHERE moving_parent IS NOT NULL;
         CREATE TABLE IF NOT EXISTS pins(ino INTEGER PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS excluded(ino INTEGER PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS deletions_confirmed(ino INTEGER PRIMARY KEY);
         {XATTRS}
         CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT,
             at_ms INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, detail TEXT);
         INSERT OR IGNORE INTO entries(ino, parent, name, is_dir, remote_parent, remote_name)
             VALUES (1, 0, '', 1, 0, '');"
    ))?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO settings(key, value) VALUES ('schema_version', ?1)",
    )?
    .execute([VERSION.to_string()])?;
    Ok(())
}
