use super::*;
use crate::remote::Listing;
use std::sync::Arc;

fn file(name: &str, size: u64, etag: &str) -> RemoteEntry {
    RemoteEntry {
        access: None,
        name: name.into(),
        is_dir: false,
        size,
        size_known: true,
        mtime: Some(UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
        etag: ETag::parse(etag),
    }
}

fn dir(name: &str) -> RemoteEntry {
    RemoteEntry {
        access: None,
        name: name.into(),
        is_dir: true,
        size: 0,
        size_known: true,
        mtime: None,
        etag: None,
    }
}

fn listing(children: Vec<RemoteEntry>) -> Listing {
    Listing {
        dir: dir(""),
        children,
        complete: true,
    }
}

#[test]
fn inodes_are_stable_and_removals_only_from_listings() {
    let m = Meta::in_memory().unwrap();
    let ch = m
        .apply_listing(ROOT_INO, &listing(vec![file("a", 1, "\"1\""), dir("d")]))
        .unwrap();
    assert_eq!(ch.added, 2);
    let a = m.child(ROOT_INO, "a").unwrap().unwrap();
    let d = m.child(ROOT_INO, "d").unwrap().unwrap();
    m.apply_listing(d.ino, &listing(vec![file("x", 5, "\"x\"")]))
        .unwrap();
    let x = m.child(d.ino, "x").unwrap().unwrap();
    assert_eq!(m.path_of(x.ino).unwrap().to_string(), "/d/x");

    // Relisting keeps inode numbers; a changed etag is reported.
    let ch = m
        .apply_listing(ROOT_INO, &listing(vec![file("a", 2, "\"2\""), dir("d")]))
        .unwrap();
    assert_eq!(ch.changed, vec![a.ino]);
    let a2 = m.child(ROOT_INO, "a").unwrap().unwrap();
    assert_eq!((a2.ino, a2.size, a2.etag.as_deref()), (a.ino, 2, Some("2")));

    // A listing without "d" removes d and everything below it.
    let ch = m
        .apply_listing(ROOT_INO, &listing(vec![file("a", 2, "\"2\"")]))
        .unwrap();
    assert_eq!(ch.removed, vec![d.ino]);
    assert!(m.get(x.ino).unwrap().is_none());
    // New entries never reuse a removed inode.
    m.apply_listing(ROOT_INO, &listing(vec![file("a", 2, "\"2\""), dir("d")]))
        .unwrap();
    assert!(m.child(ROOT_INO, "d").unwrap().unwrap().ino > x.ino);
}

#[test]
fn kind_change_is_a_new_identity_and_bad_names_are_skipped() {
    let m = Meta::in_memory().unwrap();
    m.apply_listing(ROOT_INO, &listing(vec![file("k", 1, "a")]))
        .unwrap();
    let k = m.child(ROOT_INO, "k").unwrap().unwrap();
    m.apply_listing(
        ROOT_INO,
        &listing(vec![dir("k"), file("..", 1, "x"), file("a/b", 1, "x")]),
    )
    .unwrap();
    let k2 = m.child(ROOT_INO, "k").unwrap().unwrap();
    assert!(k2.is_dir() && k2.ino != k.ino);
    assert_eq!(m.children(ROOT_INO).unwrap().len(), 1);
}

#[test]
fn store_survives_reopen_and_refuses_other_server() {
    let dir_ = tempfile::tempdir().unwrap();
    let p = dir_.path().join("meta.db");
    let ino = {
        let m = Meta::open(&p, "http://a/").unwrap();
        m.apply_listing(ROOT_INO, &listing(vec![file("f", 3, "\"e\"")]))
            .unwrap();
        m.child(ROOT_INO, "f").unwrap().unwrap().ino
    };
    let m = Meta::open(&p, "http://a/").unwrap();
    assert_eq!(m.child(ROOT_INO, "f").unwrap().unwrap().ino, ino);
    assert!(m.listed_at_ms(ROOT_INO).unwrap().is_some());
    drop(m);
    assert!(matches!(
        Meta::open(&p, "http://b/"),
        Err(MetaError::OtherServer { .. })
    ));
}

#[test]
fn content_version_falls_back_to_mtime_and_size() {
    let m = Meta::in_memory().unwrap();
    let mut f = file("n", 7, "");
    f.etag = None;
    m.apply_listing(ROOT_INO, &listing(vec![f, file("w", 1, "W/\"z\"")]))
        .unwrap();
    let n = m.child(ROOT_INO, "n").unwrap().unwrap();
    assert_eq!(n.content_version(), "m1700000000000000000-s7");
    assert_eq!(
        m.child(ROOT_INO, "w").unwrap().unwrap().content_version(),
        // By value alone, weak or strong (Apache's tags turn strong a second later).
        "z"
    );
}

#[test]
fn incomplete_listing_never_deletes_and_vanished_folder_is_ignored() {
    let m = Meta::in_memory().unwrap();
    m.apply_listing(ROOT_INO, &listing(vec![file("keep", 1, "a"), dir("d")]))
        .unwrap();
    let d = m.child(ROOT_INO, "d").unwrap().unwrap();
    let partial = Listing {
        dir: dir(""),
        children: vec![file("new", 1, "n")],
        complete: false,
    };
    let ch = m.apply_listing(ROOT_INO, &partial).unwrap();
    assert!(ch.removed.is_empty());
    assert!(m.child(ROOT_INO, "keep").unwrap().is_some());
    assert!(m.child(ROOT_INO, "new").unwrap().is_some());
    // A listing of a folder that was removed meanwhile leaves no orphan rows.
    m.apply_listing(ROOT_INO, &listing(vec![file("keep", 1, "a")]))
        .unwrap();
    m.apply_listing(d.ino, &listing(vec![file("orphan", 1, "o")]))
        .unwrap();
    assert!(m.children(d.ino).unwrap().is_empty());
}

#[test]
fn a_version_2_store_gains_the_move_record_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO settings VALUES ('schema_version', '2'), ('server_url', 'http://x/');
             CREATE TABLE entries(
                 ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name TEXT NOT NULL,
                 is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0, mtime_ns INTEGER,
                 etag TEXT, etag_weak INTEGER NOT NULL DEFAULT 0, listed_at_ms INTEGER,
                 remote_parent INTEGER, remote_name TEXT, dirty INTEGER NOT NULL DEFAULT 0,
                 mode INTEGER, problem TEXT, put_started INTEGER NOT NULL DEFAULT 0,
                 UNIQUE(parent, name));
             INSERT INTO entries(ino, parent, name, is_dir, remote_parent, remote_name)
                 VALUES (1, 0, '', 1, 0, ''), (7, 1, 'kept.txt', 0, 1, 'old.txt');",
        )
        .unwrap();
    }
    let m = Meta::open(&path, "http://x/").unwrap();
    let e = m.get(7).unwrap().unwrap();
    assert_eq!(
        (e.name.as_str(), e.remote),
        ("kept.txt", Some((1, "old.txt".to_string())))
    );
    assert!(m.moves_in_flight().unwrap().is_empty());
    m.start_move(7, 1, "kept.txt").unwrap();
    assert_eq!(
        m.moves_in_flight().unwrap(),
        vec![(7, 1, "kept.txt".to_string())]
    );
    m.set_remote(7, 1, "kept.txt").unwrap();
    assert!(m.moves_in_flight().unwrap().is_empty());
    // It gained the local access and change times too.
    assert_eq!((e.atime, e.ctime), (None, None));
    let t = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    m.set_local(
        7,
        &LocalAttrs {
            atime: Some(t),
            ctime: Some(t),
            ..Default::default()
        },
    )
    .unwrap();
    let e = m.get(7).unwrap().unwrap();
    assert_eq!((e.atime, e.ctime), (Some(t), Some(t)));
    drop(m);
    // Opening again is a no-op migration.
    let m = Meta::open(&path, "http://x/").unwrap();
    assert!(m.get(7).unwrap().unwrap().remote.is_some());
}

#[test]
fn a_rename_on_the_server_keeps_the_row_and_its_pins() {
    let m = Meta::in_memory().unwrap();
    m.apply_listing(
        ROOT_INO,
        &listing(vec![file("a", 3, "\"e1\""), file("b", 3, "\"e2\"")]),
    )
    .unwrap();
    let a = m.child(ROOT_INO, "a").unwrap().unwrap();
    m.add_pin(a.ino).unwrap();
    // "a" became "c"; "b" was replaced by a different file "d" (another version).
    let ch = m
        .apply_listing(
            ROOT_INO,
            &listing(vec![file("c", 3, "\"e1\""), file("d", 3, "\"e3\"")]),
        )
        .unwrap();
    assert_eq!(ch.renamed, 1);
    let c = m.child(ROOT_INO, "c").unwrap().unwrap();
    assert_eq!(c.ino, a.ino, "the renamed file keeps its inode");
    assert_eq!(m.pinned_by(c.ino).unwrap(), Some(a.ino));
    assert!(m.child(ROOT_INO, "a").unwrap().is_none());
    assert!(m.child(ROOT_INO, "b").unwrap().is_none());
    assert_eq!(ch.removed.len(), 1, "b is gone: {ch:?}");
    for n in ["a", "c", "b"] {
        assert!(ch.names.iter().any(|x| x == n), "{n} in {:?}", ch.names);
    }
    // A name that only appeared: nothing of it can be in the kernel's cache.
    assert!(!ch.names.iter().any(|x| x == "d"), "{:?}", ch.names);
}

#[test]
fn a_split_conflict_keeps_both_versions() {
    let m = Meta::in_memory().unwrap();
    m.apply_listing(ROOT_INO, &listing(vec![file("r.txt", 3, "\"v1\"")]))
        .unwrap();
    let r = m.child(ROOT_INO, "r.txt").unwrap().unwrap();
    m.set_local(
        r.ino,
        &LocalAttrs {
            dirty: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    let fresh = m
        .split_conflict(
            r.ino,
            "r (conflict h 2026-01-01 000000).txt",
            &file("", 9, "\"v2\""),
        )
        .unwrap()
        .expect("the server's version gets a row");
    let local = m.get(r.ino).unwrap().unwrap();
    assert_eq!(local.name, "r (conflict h 2026-01-01 000000).txt");
    assert!(local.dirty && local.remote.is_none(), "{local:?}");
    let server = m.child(ROOT_INO, "r.txt").unwrap().unwrap();
    assert_eq!(server.ino, fresh);
    assert_eq!(
        (server.size, server.etag.as_deref(), server.dirty),
        (9, Some("v2"), false)
    );
    assert_eq!(
        m.pending().unwrap().len(),
        1,
        "only the copy waits for upload"
    );
    m.record_event("kept-both", "/r.txt", &local.name).unwrap();
    assert_eq!(m.events(10).unwrap()[0].kind, "kept-both");
}

/// The store holds its file lock for good (one daemon per store); `close` lets go of it
/// as a crash would, leaving the write-ahead log for the next open to recover.
#[test]
fn the_store_is_locked_while_open_and_close_leaves_the_log_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let m = Meta::open(&path, "http://x/").unwrap();
    let e = m
        .create(1, "a.txt", false, Some(0o644), SystemTime::now())
        .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    assert!(
        other
            .query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .is_err(),
        "a second connection could read the store while it is open"
    );
    drop(other);
    m.close();
    let wal = dir.path().join("meta.db-wal");
    assert!(
        std::fs::metadata(&wal).is_ok_and(|md| md.len() > 0),
        "the log was checkpointed away"
    );
    assert!(m.get(e.ino).is_err(), "the closed store still answers");
    let again = Meta::open(&path, "http://x/").unwrap();
    assert_eq!(again.get(e.ino).unwrap().unwrap().name, "a.txt");
}

/// Rows a staged listing left in the store's temporary tables.
fn staged_rows(m: &Meta) -> i64 {
    let conn = m.conn();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM temp.sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .iter()
        .map(|t| {
            conn.query_row(&format!("SELECT COUNT(*) FROM temp.{t}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        })
        .sum::<i64>()
}

/// How many staging tables the store has made.
fn stage_tables(m: &Meta) -> i64 {
    m.conn()
        .query_row(
            "SELECT COUNT(*) FROM temp.sqlite_master WHERE type = 'table' AND name LIKE 'stage_%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn staging_tables_are_reused_and_a_name_listed_twice_does_not_hide_a_rename() {
    let m = Meta::in_memory().unwrap();
    m.apply_listing(ROOT_INO, &listing(vec![file("a", 1, "\"t\"")]))
        .unwrap();
    let a = m.child(ROOT_INO, "a").unwrap().unwrap();
    // `a` renamed to `b`, and the reply names `b` twice.
    let mut b = file("b", 1, "\"t\"");
    b.mtime = file("a", 1, "").mtime;
    let ch = m
        .apply_listing(ROOT_INO, &listing(vec![b.clone(), b]))
        .unwrap();
    assert_eq!(ch.renamed, 1, "{ch:?}");
    assert_eq!(m.child(ROOT_INO, "b").unwrap().unwrap().ino, a.ino);
    // Listings one after the other share one table: no schema change per listing.
    assert_eq!(stage_tables(&m), 1);
    assert_eq!(staged_rows(&m), 0);
}

#[test]
fn a_folder_larger_than_a_batch_merges_renames_changes_and_removals() {
    let m = Meta::in_memory().unwrap();
    let n = 2_500; // more than two merge batches
    let name = |i: usize| format!("f{i:05}");
    let first: Vec<RemoteEntry> = (0..n)
        .map(|i| file(&name(i), i as u64, &format!("\"t{i}\"")))
        .collect();
    assert_eq!(
        m.apply_listing(ROOT_INO, &listing(first.clone()))
            .unwrap()
            .added,
        n
    );
    let ino = |s: &str| m.child(ROOT_INO, s).unwrap().map(|e| e.ino);
    let (renamed, removed, changed) = (ino(&name(7)), ino(&name(2_400)), ino(&name(1_500)));

    // f00007 renamed to z-renamed (listed last, after its old name's batch), f02400
    // deleted, f01500 changed, one new file; the rest as before, in another order.
    let mut second: Vec<RemoteEntry> = first.iter().rev().cloned().collect();
    second.retain(|e| e.name != name(7) && e.name != name(2_400));
    if let Some(e) = second.iter_mut().find(|e| e.name == name(1_500)) {
        e.etag = ETag::parse("\"new\"");
    }
    second.push(file("new", 1, "\"n\""));
    let mut moved = file("z-renamed", 7, "\"t7\"");
    moved.mtime = first[7].mtime;
    second.push(moved);
    let ch = m.apply_listing(ROOT_INO, &listing(second)).unwrap();
    assert_eq!(ch.added, 1);
    assert_eq!(ch.renamed, 1);
    assert_eq!(ch.changed, vec![changed.unwrap()]);
    assert_eq!(ch.removed, vec![removed.unwrap()]);
    assert_eq!(ino("z-renamed"), renamed, "the row follows the rename");
    assert_eq!(ino(&name(7)), None);
    assert_eq!(m.children(ROOT_INO).unwrap().len(), n);
    assert_eq!(staged_rows(&m), 0);
}

#[test]
fn a_name_listed_twice_keeps_the_first_and_a_failed_listing_leaves_nothing_staged() {
    let m = Arc::new(Meta::in_memory().unwrap());
    m.apply_listing(
        ROOT_INO,
        &listing(vec![file("a", 1, "\"1\""), file("a", 2, "\"2\"")]),
    )
    .unwrap();
    assert_eq!(m.child(ROOT_INO, "a").unwrap().unwrap().size, 1);

    // Children received, then the listing fails: the receiver goes without `finish`.
    let rx = Receiver::new(m.clone());
    for i in 0..1_500 {
        rx.push(file(&format!("x{i}"), 1, "\"x\"")).unwrap();
    }
    assert!(staged_rows(&m) > 0, "a full batch went to the store");
    drop(rx);
    assert_eq!(staged_rows(&m), 0);
    assert!(m.child(ROOT_INO, "x0").unwrap().is_none());

    // A finished one merges and leaves nothing behind either.
    let rx = Receiver::new(m.clone());
    rx.push(file("b", 1, "\"b\"")).unwrap();
    let stage = rx.finish().unwrap();
    drop(rx);
    m.merge_staged(ROOT_INO, stage, &dir(""), true, &Default::default())
        .unwrap();
    assert!(m.child(ROOT_INO, "b").unwrap().is_some());
    assert!(
        m.child(ROOT_INO, "a").unwrap().is_none(),
        "a complete listing without a"
    );
    assert_eq!(staged_rows(&m), 0);
}

/// A file whose size the listing did not give.
fn unknown(name: &str, etag: &str, mtime_s: u64) -> RemoteEntry {
    RemoteEntry {
        access: None,
        size: 0,
        size_known: false,
        mtime: Some(UNIX_EPOCH + std::time::Duration::from_secs(mtime_s)),
        ..file(name, 0, etag)
    }
}

#[test]
fn an_unknown_size_stays_unknown_until_found_and_found_for_its_version_only() {
    let m = Meta::in_memory().unwrap();
    let t = 1_700_000_000;
    let list = |a: RemoteEntry, b: RemoteEntry| listing(vec![a, b]);
    m.apply_listing(
        ROOT_INO,
        &list(unknown("a", "\"1\"", t), unknown("b", "", t)),
    )
    .unwrap();
    let a = m.child(ROOT_INO, "a").unwrap().unwrap();
    let b = m.child(ROOT_INO, "b").unwrap().unwrap();
    for e in [&a, &b] {
        assert_eq!((e.size, e.size_known), (0, false), "{}", e.name);
    }
    assert!(
        b.content_version().ends_with("-s?"),
        "{}",
        b.content_version()
    );
    // A found size is recorded once; a known one is never replaced this way.
    assert!(m.learn_size(a.ino, 100, &a).unwrap());
    assert!(!m.learn_size(a.ino, 7, &a).unwrap());
    assert!(m.learn_size(b.ino, 50, &b).unwrap());
    let b_found = m.get(b.ino).unwrap().unwrap();
    assert_eq!((b_found.size, b_found.size_known), (50, true));
    assert!(b_found.content_version().ends_with("-s50"));

    // Listed again, still without sizes: the same versions keep them, nothing changed.
    let ch = m
        .apply_listing(
            ROOT_INO,
            &list(unknown("a", "\"1\"", t), unknown("b", "", t)),
        )
        .unwrap();
    assert!(ch.changed.is_empty(), "{ch:?}");
    assert_eq!(m.get(a.ino).unwrap().unwrap().size, 100);
    assert_eq!(m.get(b.ino).unwrap().unwrap().size, 50);

    // New versions (a new tag; without tags a new time): unknown again.
    let ch = m
        .apply_listing(
            ROOT_INO,
            &list(unknown("a", "\"2\"", t), unknown("b", "", t + 1)),
        )
        .unwrap();
    assert_eq!(ch.changed.len(), 2, "{ch:?}");
    for ino in [a.ino, b.ino] {
        let e = m.get(ino).unwrap().unwrap();
        assert_eq!((e.size, e.size_known), (0, false), "{}", e.name);
    }
    // A size found for the version before is not taken for this one.
    assert!(!m.learn_size(a.ino, 100, &a).unwrap());
    // A listing with a size sets it.
    m.apply_listing(
        ROOT_INO,
        &list(file("a", 9, "\"2\""), unknown("b", "", t + 1)),
    )
    .unwrap();
    let a = m.get(a.ino).unwrap().unwrap();
    assert_eq!((a.size, a.size_known), (9, true));
}

#[test]
fn a_time_the_store_cannot_hold_is_unknown() {
    let m = Meta::in_memory().unwrap();
    let far = RemoteEntry {
        access: None,
        // 2800-01-01: more nanoseconds since 1970 than an i64 holds.
        mtime: Some(UNIX_EPOCH + std::time::Duration::from_secs(26_192_246_400)),
        ..file("far", 1, "\"f\"")
    };
    m.apply_listing(ROOT_INO, &listing(vec![far])).unwrap();
    assert_eq!(m.child(ROOT_INO, "far").unwrap().unwrap().mtime, None);
}

#[test]
fn times_before_1970_and_after_2038_round_trip() {
    use std::time::Duration;
    let m = Meta::in_memory().unwrap();
    m.apply_listing(ROOT_INO, &listing(vec![file("f", 1, "\"f\"")]))
        .unwrap();
    let f = m.child(ROOT_INO, "f").unwrap().unwrap();
    let (t1960, minus, t2100) = (
        UNIX_EPOCH - Duration::from_secs(315_615_540),
        UNIX_EPOCH - Duration::from_millis(5_500),
        UNIX_EPOCH + Duration::new(4_102_444_800, 123),
    );
    m.set_local(
        f.ino,
        &LocalAttrs {
            mtime: Some(t1960),
            atime: Some(minus),
            ctime: Some(t2100),
            ..Default::default()
        },
    )
    .unwrap();
    let f = m.get(f.ino).unwrap().unwrap();
    assert_eq!(
        (f.mtime, f.atime, f.ctime),
        (Some(t1960), Some(minus), Some(t2100))
    );
    // A relisting of the same version keeps the local time.
    m.apply_listing(ROOT_INO, &listing(vec![file("f", 1, "\"f\"")]))
        .unwrap();
    assert_eq!(m.get(f.ino).unwrap().unwrap().mtime, Some(t1960));
    // Times beyond what the store holds are clamped to its range when a user sets them.
    let far = UNIX_EPOCH + Duration::from_secs(32_503_680_000);
    assert_eq!(
        storable_time(far),
        UNIX_EPOCH + Duration::from_nanos(i64::MAX as u64)
    );
    assert_eq!(
        storable_time(UNIX_EPOCH - Duration::from_secs(32_503_680_000)),
        UNIX_EPOCH - Duration::from_nanos(i64::MIN.unsigned_abs())
    );
    assert_eq!(storable_time(t1960), t1960);
    assert_eq!(time_to_ns(minus), Some(-5_500_000_000));
    assert_eq!(ns_to_time(-5_500_000_000), minus);
}

/// A listing of a folder whose own time is `mtime_s`.
fn listing_at(mtime_s: u64, children: Vec<RemoteEntry>) -> Listing {
    let mut l = listing(children);
    l.dir.mtime = Some(UNIX_EPOCH + std::time::Duration::from_secs(mtime_s));
    l.dir.etag = ETag::parse(&format!("\"dir-{mtime_s}\""));
    l
}

fn dir_at(name: &str, mtime_s: u64) -> RemoteEntry {
    RemoteEntry {
        access: None,
        mtime: Some(UNIX_EPOCH + std::time::Duration::from_secs(mtime_s)),
        etag: ETag::parse(&format!("\"{name}-{mtime_s}\"")),
        ..dir(name)
    }
}

#[test]
fn a_folders_known_time_stays_until_its_own_listing_finds_names_changed() {
    let at = |s: u64| Some(UNIX_EPOCH + std::time::Duration::from_secs(s));
    let m = Meta::in_memory().unwrap();
    m.apply_listing(ROOT_INO, &listing_at(100, vec![dir_at("d", 1_000)]))
        .unwrap();
    let d = m.child(ROOT_INO, "d").unwrap().unwrap();
    assert_eq!(d.mtime, at(1_000), "the server's time when none is known");
    let time_of = |ino| m.get(ino).unwrap().unwrap().mtime;

    // The parent's listing says the folder changed (its own uploads, a probe): kept.
    m.apply_listing(ROOT_INO, &listing_at(101, vec![dir_at("d", 2_000)]))
        .unwrap();
    assert_eq!(time_of(d.ino), at(1_000));
    // Its own listing without a name added, removed or renamed: kept.
    m.apply_listing(d.ino, &listing_at(3_000, vec![])).unwrap();
    assert_eq!(time_of(d.ino), at(1_000));
    // A local change sets it; listings that change no name keep that.
    let local = UNIX_EPOCH + std::time::Duration::new(3_500, 42);
    m.touch_folders(&[d.ino], local).unwrap();
    m.apply_listing(d.ino, &listing_at(4_000, vec![])).unwrap();
    m.apply_listing(ROOT_INO, &listing_at(102, vec![dir_at("d", 4_000)]))
        .unwrap();
    assert_eq!(time_of(d.ino), Some(local));
    assert_eq!(m.get(d.ino).unwrap().unwrap().ctime, Some(local));
    // Names added there: the server's time, and the change time goes with it.
    m.apply_listing(d.ino, &listing_at(5_000, vec![file("x", 1, "\"x\"")]))
        .unwrap();
    let now = m.get(d.ino).unwrap().unwrap();
    assert_eq!((now.mtime, now.ctime), (at(5_000), None));
    // A new version of a file in it changes no name: kept.
    m.apply_listing(d.ino, &listing_at(6_000, vec![file("x", 2, "\"x2\"")]))
        .unwrap();
    assert_eq!(time_of(d.ino), at(5_000));
    // Removed there: the server's time.
    m.apply_listing(d.ino, &listing_at(7_000, vec![])).unwrap();
    assert_eq!(time_of(d.ino), at(7_000));

    // A server that gives folders no time keeps the one known.
    m.apply_listing(ROOT_INO, &listing_at(103, vec![dir("d")]))
        .unwrap();
    m.apply_listing(d.ino, &listing(vec![file("y", 1, "\"y\"")]))
        .unwrap();
    assert_eq!(time_of(d.ino), at(7_000));

    // The root's time at a mount is the server's only if none is known.
    let root = |s| RemoteEntry {
        access: None,
        mtime: at(s),
        ..dir("")
    };
    m.update_root(&root(8_000)).unwrap();
    assert_eq!(time_of(ROOT_INO), at(100));
    let fresh = Meta::in_memory().unwrap();
    fresh.update_root(&root(8_000)).unwrap();
    assert_eq!(fresh.get(ROOT_INO).unwrap().unwrap().mtime, at(8_000));
}

#[test]
fn extended_attributes_follow_the_inode_and_go_with_the_entry() {
    let now = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let any = XattrMode::default();
    let m = Meta::in_memory().unwrap();
    m.apply_listing(
        ROOT_INO,
        &listing(vec![file("a", 1, "\"a\""), file("b", 1, "\"b\""), dir("d")]),
    )
    .unwrap();
    let [a, b, d] = ["a", "b", "d"].map(|n| m.child(ROOT_INO, n).unwrap().unwrap().ino);
    let set = |ino, name: &[u8], value: &[u8], mode| {
        m.set_xattr(ino, name, value, mode, 100, now).unwrap()
    };

    assert_eq!(set(a, b"user.tags", b"red", any), XattrSet::Done);
    assert_eq!(m.get(a).unwrap().unwrap().ctime, Some(now));
    let create = XattrMode {
        create: true,
        replace: false,
    };
    let replace = XattrMode {
        create: false,
        replace: true,
    };
    assert_eq!(set(a, b"user.tags", b"x", create), XattrSet::Exists);
    assert_eq!(set(a, b"user.other", b"x", replace), XattrSet::Missing);
    let both = XattrMode {
        create: true,
        replace: true,
    };
    assert_eq!(set(a, b"user.tags", b"x", both), XattrSet::Exists);
    assert_eq!(set(a, b"user.other", b"x", both), XattrSet::Missing);
    // Room counts names and values, the replaced value excluded.
    assert_eq!(set(a, b"user.big", &[0; 80], any), XattrSet::Done);
    assert_eq!(set(a, b"user.more", &[0; 10], any), XattrSet::Full);
    assert_eq!(set(a, b"user.big", &[0; 79], any), XattrSet::Done);
    assert_eq!(set(a, b"user.big", &[0; 80], any), XattrSet::Done);
    assert_eq!(set(a, b"user.big", &[0; 81], any), XattrSet::Full);
    assert_eq!(
        m.xattr_names(a).unwrap(),
        [b"user.big".to_vec(), b"user.tags".to_vec()]
    );

    // Renamed (and moved) here: kept.
    m.rename_local(a, d, "a2", None).unwrap();
    assert_eq!(
        m.xattr(a, b"user.tags").unwrap().as_deref(),
        Some(&b"red"[..])
    );
    // Deleted here (a tombstone until the server has it deleted): gone.
    m.remove_local(a).unwrap();
    assert_eq!(m.xattr(a, b"user.tags").unwrap(), None);
    assert_eq!(set(a, b"user.tags", b"red", any), XattrSet::NoEntry);
    // Replaced by a rename: gone.
    assert_eq!(set(b, b"user.tags", b"b", any), XattrSet::Done);
    let (c, _) = (m.create(ROOT_INO, "c", false, None, now).unwrap(), ());
    assert_eq!(set(c.ino, b"user.tags", b"c", any), XattrSet::Done);
    m.rename_local(c.ino, ROOT_INO, "b", Some(b)).unwrap();
    assert_eq!(m.xattr(b, b"user.tags").unwrap(), None);
    assert_eq!(
        m.xattr(c.ino, b"user.tags").unwrap().as_deref(),
        Some(&b"c"[..])
    );
    // A local-only entry deleted: gone.
    m.remove_local(c.ino).unwrap();
    assert!(m.xattr_names(c.ino).unwrap().is_empty());
    // Deleted on the server: gone with its row.
    assert_eq!(set(d, b"user.tags", b"d", any), XattrSet::Done);
    m.apply_listing(ROOT_INO, &listing(vec![])).unwrap();
    assert!(m.get(d).unwrap().is_none());
    assert!(m.xattr_names(d).unwrap().is_empty());
    // Removing one that is not set.
    assert!(!m.remove_xattr(b, b"user.nope", now).unwrap());
}

#[test]
fn a_version_4_store_gains_extended_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO settings VALUES ('schema_version', '4'), ('server_url', 'http://x/');
             CREATE TABLE entries(
                 ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name TEXT NOT NULL,
                 is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0, mtime_ns INTEGER,
                 etag TEXT, etag_weak INTEGER NOT NULL DEFAULT 0, listed_at_ms INTEGER,
                 remote_parent INTEGER, remote_name TEXT, dirty INTEGER NOT NULL DEFAULT 0,
                 mode INTEGER, problem TEXT, put_started INTEGER NOT NULL DEFAULT 0,
                 moving_parent INTEGER, moving_name TEXT, atime_ns INTEGER, ctime_ns INTEGER,
                 UNIQUE(parent, name));
             CREATE TABLE pins(ino INTEGER PRIMARY KEY);
             INSERT INTO entries(ino, parent, name, is_dir, remote_parent, remote_name, mtime_ns)
                 VALUES (1, 0, '', 1, 0, '', NULL), (7, 1, 'kept.txt', 0, 1, 'kept.txt', 5);",
        )
        .unwrap();
    }
    let now = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let m = Meta::open(&path, "http://x/").unwrap();
    assert_eq!(m.get(7).unwrap().unwrap().name, "kept.txt");
    assert_eq!(
        m.set_xattr(
            7,
            b"user.xdg.tags",
            b"t",
            XattrMode::default(),
            1 << 10,
            now
        )
        .unwrap(),
        XattrSet::Done
    );
    // Migrated on to today's version: `denied` added (nothing refused).
    assert_eq!(m.setting("schema_version").unwrap().as_deref(), Some("6"));
    assert_eq!(m.get(7).unwrap().unwrap().denied, 0);
    drop(m);
    let m = Meta::open(&path, "http://x/").unwrap();
    assert_eq!(
        m.xattr(7, b"user.xdg.tags").unwrap().as_deref(),
        Some(&b"t"[..])
    );
    m.remove_local(7).unwrap();
    assert_eq!(m.xattr(7, b"user.xdg.tags").unwrap(), None);
}
