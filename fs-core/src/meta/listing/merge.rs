//! The three-way merge of a staged listing with what the store knows, a batch at a time:
//! new, changed, renamed and gone children, and what stays because it changed here.

use super::*;

/// The merge of [`Meta::merge_staged`], in one transaction.
pub(super) fn merge(
    conn: &mut Connection,
    dir: i64,
    stage: &str,
    indexed: bool,
    dir_entry: &RemoteEntry,
    complete: bool,
    held: &HashSet<u64>,
) -> Result<ListingChanges, MetaError> {
    let tx = conn.transaction()?;
    let is_dir: Option<bool> = tx
        .query_row(
            "SELECT is_dir FROM entries WHERE ino = ?1",
            params![dir],
            |r| r.get(0),
        )
        .optional()?;
    if is_dir != Some(true) {
        // Removed (or replaced by a file) while it was being listed.
        return Ok(ListingChanges::default());
    }
    if !indexed {
        tx.execute_batch(&stage_indexes(stage))?;
    }
    tx.execute("DELETE FROM listing_gone", [])?;
    let gone = if complete {
        // Known here, missing there: deleted on the server, or renamed within the folder.
        tx.prepare(&format!(
            "INSERT INTO listing_gone(ino, etag)
             SELECT e.ino, e.etag FROM entries e WHERE e.remote_parent = ?1
                 AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.name = e.remote_name)"
        ))?
        .execute(params![dir])?
    } else {
        0
    };
    let mut m = Merge {
        tx: &tx,
        dir,
        count_tag: tx.prepare(&format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT name FROM {stage} WHERE etag = ?1 LIMIT 2)"
        ))?,
        complete,
        held,
        gone,
        insert: tx.prepare_cached(
            // A new entry in a folder refused as a whole (a read-only space) is refused too.
            "INSERT OR IGNORE INTO entries(parent, name, is_dir, size, mtime_ns, etag,
                 etag_weak, remote_parent, remote_name, denied)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1, ?2, COALESCE((SELECT denied FROM entries
                 WHERE ino = ?1 AND denied & 4 != 0) & 7, 0))",
        )?,
        // A file's time is the server's for each new version. A folder's known time
        // stays: its own listing moves it (see `folder_time`).
        update: tx.prepare_cached(
            "UPDATE entries SET size = ?2,
                 mtime_ns = CASE WHEN etag IS ?4 AND etag IS NOT NULL THEN mtime_ns
                                 WHEN is_dir AND mtime_ns IS NOT NULL THEN mtime_ns
                                 ELSE ?3 END,
                 ctime_ns = CASE WHEN etag IS ?4 AND etag IS NOT NULL THEN ctime_ns
                                 WHEN is_dir THEN ctime_ns END,
                 etag = ?4, etag_weak = ?5
             WHERE ino = ?1",
        )?,
        changes: ListingChanges::default(),
    };
    // By name, so that a name listed twice comes twice in a row: the first is kept.
    let mut next_batch = tx.prepare(&format!(
        "SELECT s.rowid, s.name, s.is_dir, s.size, s.mtime_ns, s.etag, s.etag_weak, {KNOWN_COLS}
         FROM {stage} s
         LEFT JOIN entries e ON e.remote_parent = ?1 AND e.remote_name = s.name
         WHERE (s.name, s.rowid) > (?2, ?3) ORDER BY s.name, s.rowid LIMIT ?4"
    ))?;
    let mut after = (String::new(), 0i64);
    loop {
        let batch = staged_batch(&mut next_batch, dir, &after)?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        let last = (last.name.clone(), last.id);
        for (child, known) in batch {
            if child.name == after.0 {
                warn!(name = ?child.name, "listing: skipping duplicate name (the first is kept)");
                continue;
            }
            after.0.clone_from(&child.name);
            m.child(child, known)?;
        }
        after = last;
    }
    drop(next_batch);
    if complete {
        m.remove_gone()?;
    } else {
        let kept: i64 = tx
            .prepare(&format!(
                "SELECT COUNT(*) FROM entries e WHERE e.remote_parent = ?1
                     AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.name = e.remote_name)"
            ))?
            .query_row(params![dir], |r| r.get(0))?;
        if kept > 0 {
            warn!(dir, kept, "incomplete listing: keeping entries it lacks");
        }
    }
    let changes = std::mem::take(&mut m.changes);
    drop(m);
    let (etag, weak) = etag_cols(dir_entry.etag.as_ref());
    // See `folder_time`: ?6 says whether the server's time is taken.
    tx.prepare_cached(
        "UPDATE entries SET listed_at_ms = ?2, etag = COALESCE(?3, etag), etag_weak = ?4,
             mtime_ns = CASE WHEN ?6 OR mtime_ns IS NULL THEN COALESCE(?5, mtime_ns)
                             ELSE mtime_ns END,
             ctime_ns = CASE WHEN ?6 AND ?5 IS NOT NULL THEN NULL ELSE ctime_ns END
         WHERE ino = ?1",
    )?
    .execute(params![
        dir,
        now_ms(),
        etag,
        weak,
        mtime_ns(dir_entry.mtime),
        folder_time(&changes)
    ])?;
    super::super::permissions::take_access(&tx, dir, stage, dir_entry.access)?;
    tx.execute("DELETE FROM listing_gone", [])?;
    tx.commit()?;
    Ok(changes)
}

/// Whether a folder's listing that made `changes` moves the folder's time to the
/// server's: only when the listing found names added, removed or renamed there (what
/// changes a folder's time), or the time is not known yet. Otherwise the known time stays,
/// whether the server's or a local change's: the server's time of a folder also moves with
/// edrive's own uploads of changes made here (later than they were made, in whole
/// seconds) and with its probe of the server (a folder made and removed at each mount),
/// and some servers give folders no time at all.
pub(super) fn folder_time(changes: &ListingChanges) -> bool {
    changes.added > 0
        || !changes.removed.is_empty()
        || changes.renamed > 0
        || !changes.kept_local.is_empty()
}

/// The next staged children after `after` (a name and row id), by name, each with the
/// row that has its name on the server, if any.
pub(super) fn staged_batch(
    stmt: &mut rusqlite::Statement<'_>,
    dir: i64,
    after: &(String, i64),
) -> Result<Vec<(Staged, Option<Known>)>, MetaError> {
    let rows = stmt.query_map(params![dir, after.0, after.1, BATCH as i64], |r| {
        Ok((
            Staged {
                id: r.get(0)?,
                name: r.get(1)?,
                is_dir: r.get(2)?,
                size: r.get(3)?,
                mtime_ns: r.get(4)?,
                etag: r.get(5)?,
                weak: r.get(6)?,
            },
            known_at(r, 7)?,
        ))
    })?;
    let mut out: Vec<(Staged, Option<Known>)> = Vec::with_capacity(BATCH);
    for row in rows {
        let row = row?;
        // Two rows with one server name (should not be): the first speaks for it.
        if out.last().is_some_and(|(s, _)| s.id == row.0.id) {
            continue;
        }
        out.push(row);
    }
    Ok(out)
}

/// One merge in progress: its transaction, what it knows and what it changed so far.
pub(super) struct Merge<'a, 'c> {
    tx: &'a Transaction<'c>,
    dir: i64,
    /// Counts (up to 2) the staged names with a tag (a name listed twice counts once).
    count_tag: rusqlite::Statement<'a>,
    complete: bool,
    held: &'a HashSet<u64>,
    /// How many rows the listing lacks. 0 on a first listing: then no new name is looked
    /// up as a possible rename.
    gone: usize,
    /// The statements run for most children, prepared once.
    insert: CachedStatement<'a>,
    update: CachedStatement<'a>,
    changes: ListingChanges,
}

impl Merge<'_, '_> {
    /// Merges one server child into the store.
    fn child(&mut self, child: Staged, known: Option<Known>) -> Result<(), MetaError> {
        if let Err(e) = validate_name(&child.name) {
            warn!(name = ?child.name, error = %e, "skipping entry with invalid name");
            return Ok(());
        }
        let etag = child.etag.as_deref();
        let dir = self.dir;
        let insert_params = params![
            dir,
            child.name,
            child.is_dir,
            child.size,
            child.mtime_ns,
            etag,
            child.weak
        ];
        match known {
            Some(k) if !k.live || k.dirty || k.moving || self.held.contains(&(k.ino as u64)) => {
                // Deleted or edited locally: the write-back decides; a remote change shows
                // up there as a failed precondition.
                if k.etag.as_deref() != etag {
                    self.changes.changed.push(k.ino as u64);
                }
            }
            Some(k) if k.is_dir == child.is_dir => {
                // A size the listing does not know stays the one a download found for
                // this version (the same tag, or without tags the same time).
                let same_version = k.etag.as_deref() == etag
                    && k.weak == child.weak
                    && (etag.is_some() || k.mtime_ns == child.mtime_ns);
                let size = if child.size < 0 && same_version {
                    k.size
                } else {
                    child.size
                };
                // Without ETags, a new size or time is a new version.
                let changed = k.etag.as_deref() != etag
                    || (etag.is_none()
                        && !k.is_dir
                        && (k.size != size || k.mtime_ns != child.mtime_ns));
                if changed {
                    self.changes.changed.push(k.ino as u64);
                }
                // The same tag and size: nothing to write (most of a relisting).
                let same = etag.is_some() && !changed && k.size == size && k.weak == child.weak;
                if !same {
                    self.update
                        .execute(params![k.ino, size, child.mtime_ns, etag, child.weak])?;
                }
            }
            Some(k) => {
                // Kind changed (file became folder or back): a new identity.
                if self.held.contains(&(k.ino as u64)) || subtree_has_local_changes(self.tx, k.ino)?
                {
                    warn!(name = %child.name, "changed kind on the server; keeping the local copy");
                    detach(self.tx, k.ino)?;
                } else {
                    delete_subtree(self.tx, k.ino)?;
                    self.changes.removed.push(k.ino as u64);
                }
                self.changes.names.push(child.name.clone());
                self.changes.added += self.insert.execute(insert_params)?;
            }
            None => {
                // Renamed on the server within this folder? The row (its cached content,
                // its pins) follows.
                if let Some(k) = self.renamed_from(&child)? {
                    let n = self
                        .tx
                        .prepare_cached(
                            "UPDATE OR IGNORE entries SET name = ?2, remote_name = ?2
                             WHERE ino = ?1",
                        )?
                        .execute(params![k.ino, child.name])?;
                    if n > 0 {
                        self.tx
                            .prepare_cached("DELETE FROM listing_gone WHERE ino = ?1")?
                            .execute(params![k.ino])?;
                        self.changes.names.push(k.remote_name);
                        self.changes.names.push(child.name);
                        self.changes.renamed += 1;
                        return Ok(());
                    }
                }
                let n = self.insert.execute(insert_params)?;
                if n == 0 {
                    warn!(name = %child.name, "a local entry holds this name; the server's is not shown");
                }
                // A new name needs no invalidation (see `ListingChanges::names`).
                self.changes.added += n;
            }
        }
        Ok(())
    }

    /// The row new server name `child` is the old name of, if it was renamed within the
    /// folder: the same version under a name the listing no longer has. Only when that
    /// version is unambiguous on both sides: servers that make ETags of size and time
    /// (Apache) give files written in the same clock tick the same one.
    fn renamed_from(&mut self, child: &Staged) -> Result<Option<Known>, MetaError> {
        let Some(tag) = child
            .etag
            .as_deref()
            .filter(|_| self.complete && self.gone > 0 && !child.weak)
        else {
            return Ok(None);
        };
        let staged_with_tag: i64 = self.count_tag.query_row(params![tag], |r| r.get(0))?;
        if staged_with_tag != 1 {
            return Ok(None);
        }
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {KNOWN_COLS} FROM listing_gone g JOIN entries e ON e.ino = g.ino
             WHERE g.etag = ?1 LIMIT 2"
        ))?;
        let mut found = stmt.query_map(params![tag], |r| known_at(r, 0))?;
        let k = found.next().transpose()?.flatten();
        if found.next().is_some() {
            return Ok(None);
        }
        Ok(k.filter(|k| {
            !self.held.contains(&(k.ino as u64))
                && (k.is_dir || k.mtime_ns == child.mtime_ns)
                && k.live
                && !k.dirty
                && !k.moving
                && k.at_home
                && k.is_dir == child.is_dir
                && (k.is_dir || k.size == child.size)
        }))
    }

    /// Removes the rows a complete listing lacks (see [`Meta::merge_staged`]).
    fn remove_gone(&mut self) -> Result<(), MetaError> {
        let tx = self.tx;
        let mut after = 0i64;
        loop {
            let batch: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT ino FROM listing_gone WHERE ino > ?1 ORDER BY ino LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, BATCH as i64], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let Some(&last) = batch.last() else {
                return Ok(());
            };
            after = last;
            for ino in batch {
                let k = tx
                    .prepare_cached(&format!(
                        "SELECT {KNOWN_COLS} FROM entries e WHERE e.ino = ?1"
                    ))?
                    .query_row(params![ino], |r| known_at(r, 0))
                    .optional()?
                    .flatten();
                // Gone with a subtree removed earlier in this pass.
                let Some(k) = k else { continue };
                if k.moving {
                    // Gone from here because the write-back just moved it.
                    continue;
                }
                if !k.live {
                    // Deleted here and there: nothing left to do.
                    delete_remote_subtree(tx, k.ino)?;
                } else if self.held.contains(&(k.ino as u64))
                    || subtree_has_local_changes(tx, k.ino)?
                {
                    if !k.is_dir && k.etag.is_none() {
                        // A file the server never had (its upload refused, 507 or 423): not
                        // deleted there, nothing to report, and its problem stays.
                        continue;
                    }
                    warn!(
                        ino = k.ino,
                        "deleted on the server but changed here; keeping it"
                    );
                    self.keep_changed(k.ino)?;
                    self.changes.kept_local.push(k.ino as u64);
                } else {
                    delete_subtree(tx, k.ino)?;
                    self.changes.removed.push(k.ino as u64);
                    self.changes.names.push(k.remote_name);
                }
            }
        }
    }
}

impl Merge<'_, '_> {
    /// Entry `ino`, deleted on the server while it (or something below it) changed here:
    /// kept and detached, to be written back as new. Below a folder, what the server had
    /// there goes the same way if it changed here and is removed if it did not (deleted
    /// there, unchanged here); what was moved in locally from elsewhere keeps its place on
    /// the server (the write-back moves it).
    fn keep_changed(&mut self, ino: i64) -> Result<(), MetaError> {
        let tx = self.tx;
        let kids: Vec<(i64, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT ino, name FROM entries WHERE parent = ?1 AND remote_parent = ?1",
            )?;
            let rows = stmt.query_map(params![ino], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        // Deleted here too (tombstones below it): nothing left to do for them.
        tx.prepare_cached(
            "WITH RECURSIVE sub(ino) AS (
                 SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.remote_parent = sub.ino)
             DELETE FROM entries WHERE ino IN sub AND parent IS NULL",
        )?
        .execute(params![ino])?;
        detach(tx, ino)?;
        for (kid, name) in kids {
            if self.held.contains(&(kid as u64)) || subtree_has_local_changes(tx, kid)? {
                self.keep_changed(kid)?;
            } else {
                delete_subtree(tx, kid)?;
                self.changes.removed.push(kid as u64);
                self.changes.names_below.push((ino as u64, name));
            }
        }
        Ok(())
    }
}
