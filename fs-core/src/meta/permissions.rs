//! What the server does not let this user do, per entry (`denied`, a bit set): learnt
//! from a refusal (403) of a write, so that later changes fail at once, before any
//! request, instead of piling up as uploads that never go.
//!
//! A 403 says too little to know which privilege was missing, so a refusal marks the
//! folder the change was made in as read-only as a whole ([`DENY_INHERITED`]): the folder,
//! everything known below it, and everything listed below it later (the way servers set
//! such rights: Apache's `<LimitExcept>` on a location, a share given read-only).

use rusqlite::params;

use super::{Meta, MetaError};
use crate::remote::Access;

/// Its content may not change (a file), or nothing may be added to it (a folder).
pub const DENY_CHANGE: u8 = 1;
/// It may not be deleted, renamed or moved.
pub const DENY_REMOVE: u8 = 2;
/// A folder refused as a whole: what lies below it is refused too.
pub const DENY_INHERITED: u8 = 4;
/// A folder excluded on this device (see `super::excluded`), kept here too so that its
/// attributes need no other lookup; never changed by what the server says.
pub const DENY_EXCLUDED: u8 = 8;

/// The bits refused by what the server says this user may do.
pub(super) fn denied_bits(a: Access) -> u8 {
    (if a.change { 0 } else { DENY_CHANGE }) | (if a.remove { 0 } else { DENY_REMOVE })
}

/// Takes what a listing of folder `dir` (staged in `stage`) says this user may do, for
/// the folder and for each child it says it for: the server's word replaces what a
/// refusal taught. Children it says nothing for keep what is known.
pub(super) fn take_access(
    tx: &rusqlite::Transaction<'_>,
    dir: i64,
    stage: &str,
    dir_access: Option<Access>,
) -> Result<(), MetaError> {
    if let Some(a) = dir_access {
        tx.prepare_cached(
            "UPDATE entries SET denied = ?2 | (denied & ?3)
             WHERE ino = ?1 AND denied != (?2 | (denied & ?3))",
        )?
        .execute(params![dir, denied_bits(a), DENY_EXCLUDED])?;
    }
    tx.execute(
        &format!(
            "UPDATE entries SET denied = (SELECT s.denied FROM {stage} s
                 WHERE s.name = entries.remote_name AND s.denied IS NOT NULL) | (denied & ?2)
             WHERE remote_parent = ?1 AND parent IS NOT NULL
               AND EXISTS (SELECT 1 FROM {stage} s WHERE s.name = entries.remote_name
                   AND s.denied IS NOT NULL
                   AND (s.denied | (entries.denied & ?2)) != entries.denied)"
        ),
        params![dir, DENY_EXCLUDED],
    )?;
    Ok(())
}

impl Meta {
    /// Marks folder `ino` read-only as a whole: itself and every entry known below it.
    /// Returns those entries.
    pub fn deny_subtree(&self, ino: u64) -> Result<Vec<u64>, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let inos = super::inos(
            &mut tx.prepare_cached(
                "WITH RECURSIVE sub(ino) AS (
                     SELECT ?1 UNION ALL
                     SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)
                 SELECT ino FROM sub",
            )?,
            params![ino as i64],
        )?;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE entries SET denied = denied | ?2 WHERE ino = ?1")?;
            for i in &inos {
                stmt.execute(params![
                    *i as i64,
                    DENY_CHANGE | DENY_REMOVE | DENY_INHERITED
                ])?;
            }
        }
        tx.commit()?;
        Ok(inos)
    }

    /// Adds `bits` to what is refused for `ino` alone.
    pub fn deny(&self, ino: u64, bits: u8) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE entries SET denied = denied | ?2 WHERE ino = ?1")?
            .execute(params![ino as i64, bits])?;
        Ok(())
    }

    /// What is refused for `ino`: its own bits, and all of them if a folder above it is
    /// refused as a whole.
    pub fn denied(&self, ino: u64) -> Result<u8, MetaError> {
        let conn = self.conn();
        let (own, inherited): (i64, bool) = conn
            .prepare_cached(
                "WITH RECURSIVE up(ino, depth) AS (
                     SELECT ?1, 0 UNION ALL
                     SELECT e.parent, up.depth + 1 FROM entries e JOIN up ON e.ino = up.ino
                     WHERE e.parent IS NOT NULL AND e.parent != 0 AND up.depth < 4096)
                 SELECT COALESCE((SELECT denied FROM entries WHERE ino = ?1), 0),
                        EXISTS(SELECT 1 FROM entries WHERE ino IN (SELECT ino FROM up) AND denied & ?2 != 0)",
            )?
            .query_row(params![ino as i64, DENY_INHERITED], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let mut bits = own.clamp(0, 255) as u8;
        if inherited {
            bits |= DENY_CHANGE | DENY_REMOVE | DENY_INHERITED;
        }
        Ok(bits)
    }

    /// Lifts every refusal known below and at folder `ino` (the user asks to try again:
    /// rights may have changed on the server).
    pub fn allow_subtree(&self, ino: u64) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.prepare_cached(
            "WITH RECURSIVE sub(ino) AS (
                 SELECT ?1 UNION ALL SELECT e.ino FROM entries e JOIN sub ON e.parent = sub.ino)
             UPDATE entries SET denied = denied & ?2 WHERE ino IN sub",
        )?
        .execute(params![ino as i64, DENY_EXCLUDED])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ROOT_INO;

    #[test]
    fn a_refused_folder_refuses_what_is_below_it() {
        let m = Meta::in_memory().unwrap();
        let now = std::time::SystemTime::now();
        let ro = m.create(ROOT_INO, "ro", true, None, now).unwrap().ino;
        let sub = m.create(ro, "sub", true, None, now).unwrap().ino;
        let f = m.create(sub, "f", false, None, now).unwrap().ino;
        let other = m.create(ROOT_INO, "rw", true, None, now).unwrap().ino;
        assert_eq!(m.denied(f).unwrap(), 0);
        m.deny_subtree(ro).unwrap();
        assert_eq!(m.get(f).unwrap().unwrap().denied, 7);
        // Created after the refusal: refused through the folder above.
        let late = m.create(sub, "late", false, None, now).unwrap().ino;
        assert_eq!(m.get(late).unwrap().unwrap().denied, 0);
        assert_eq!(m.denied(late).unwrap(), 7);
        assert_eq!(m.denied(other).unwrap(), 0);
        assert_eq!(m.denied(ROOT_INO).unwrap(), 0);
        m.allow_subtree(ro).unwrap();
        assert_eq!(m.denied(late).unwrap(), 0);
        m.deny(f, DENY_CHANGE).unwrap();
        assert_eq!(m.denied(f).unwrap(), DENY_CHANGE);
    }

    fn entry(name: &str, is_dir: bool, access: Option<Access>) -> crate::remote::RemoteEntry {
        crate::remote::RemoteEntry {
            name: name.into(),
            is_dir,
            size: 0,
            size_known: true,
            mtime: None,
            etag: None,
            access,
        }
    }

    #[test]
    fn listings_say_what_is_refused() {
        let m = Meta::in_memory().unwrap();
        let ro = Some(Access {
            change: false,
            remove: true,
        });
        let rw = Some(Access {
            change: true,
            remove: true,
        });
        let listing = |a: Option<Access>, b: Option<Access>| crate::remote::Listing {
            dir: entry("", true, ro),
            children: vec![entry("a", false, a), entry("b", false, b)],
            complete: true,
        };
        m.apply_listing(ROOT_INO, &listing(ro, None)).unwrap();
        let a = m.child(ROOT_INO, "a").unwrap().unwrap();
        let b = m.child(ROOT_INO, "b").unwrap().unwrap();
        assert_eq!(a.denied, DENY_CHANGE);
        assert_eq!(b.denied, 0, "not said: nothing refused");
        assert_eq!(m.denied(ROOT_INO).unwrap(), DENY_CHANGE);
        // A refusal learnt by a 403 stays until the server says otherwise.
        m.deny(b.ino, DENY_CHANGE | DENY_REMOVE).unwrap();
        m.apply_listing(ROOT_INO, &listing(rw, None)).unwrap();
        assert_eq!(m.get(a.ino).unwrap().unwrap().denied, 0);
        assert_eq!(m.get(b.ino).unwrap().unwrap().denied, 3);
        m.apply_listing(ROOT_INO, &listing(rw, rw)).unwrap();
        assert_eq!(m.get(b.ino).unwrap().unwrap().denied, 0);
    }
}
