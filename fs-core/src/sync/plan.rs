//! Which server operations to run next, derived from the rows whose local state differs
//! from the server's (see `crate::meta`). An operation is only planned once it can work:
//! a folder is created before anything goes into it, an entry is moved out of a deleted
//! folder before that folder's DELETE, and a file that replaces another (an editor's
//! save-by-rename) is written over it in one conditional PUT or MOVE.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::meta::{Entry, Meta, MetaError, ROOT_INO};
use crate::remote::{ETag, RemotePath};

use super::{Activity, IgnoreList};

/// One server operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// DELETE a tombstone (recursively for a folder); `etag` guards a file's version.
    Delete {
        /// The tombstone.
        ino: u64,
        /// Where the server has it.
        path: RemotePath,
        /// The version the deletion applies to (files only).
        etag: Option<ETag>,
    },
    /// MKCOL a new folder.
    Mkdir {
        /// The folder.
        ino: u64,
        /// Local and future server path.
        path: RemotePath,
        /// Its parent.
        parent: u64,
        /// Its name.
        name: String,
    },
    /// MOVE an entry to where the user has it now.
    Move {
        /// The entry.
        ino: u64,
        /// Where the server has it.
        from: RemotePath,
        /// Where the user has it.
        to: RemotePath,
        /// New parent.
        parent: u64,
        /// New name.
        name: String,
        /// The tombstone it replaces on the server, if any.
        replaces: Option<u64>,
    },
    /// PUT a file's local content.
    Upload {
        /// The file.
        ino: u64,
        /// Local (and server) path.
        path: RemotePath,
        /// Its parent.
        parent: u64,
        /// Its name.
        name: String,
        /// If-Match this version; `None` with `replaces == None` and a new file means
        /// If-None-Match: *.
        base: Option<ETag>,
        /// Whether the server is not supposed to have anything at `path`.
        create: bool,
        /// The entry it replaces on the server (tombstone, or a file renamed to an ignored
        /// name), if any.
        replaces: Option<u64>,
    },
}

impl Op {
    /// The entry the operation is about.
    pub fn ino(&self) -> u64 {
        match self {
            Op::Delete { ino, .. }
            | Op::Mkdir { ino, .. }
            | Op::Move { ino, .. }
            | Op::Upload { ino, .. } => *ino,
        }
    }
}

/// A plan: operations that can run now (in this order), and when to plan again if some
/// entries wait for their files to go quiet.
#[derive(Debug, Default)]
pub struct Plan {
    /// Runnable now.
    pub ops: Vec<Op>,
    /// Earliest time a waiting upload becomes due.
    pub wake_at: Option<Instant>,
    /// Entries still pending after these operations (waiting, blocked or stuck).
    pub waiting: usize,
}

/// Name prefix of the temporary server names that break rename cycles (a↔b).
pub const MOVE_ASIDE_PREFIX: &str = ".edrive-move-";

/// Plans the next operations. `debounce` is how long a file must stay untouched after its
/// last close (zero when a sync was asked for).
pub fn plan(
    meta: &Meta,
    activity: &Activity,
    ignore: &IgnoreList,
    debounce: Duration,
) -> Result<Plan, MetaError> {
    let mut out = Plan::default();
    let mut home: HashMap<u64, bool> = HashMap::new();
    home.insert(ROOT_INO, true);
    let mut blocked: Vec<Aside> = Vec::new();
    let pending = meta.pending()?;
    let deletions_go =
        super::held::deletions_may_go(meta, activity, debounce, &pending, &mut out.wake_at)?;
    for e in pending {
        let before = out.ops.len();
        if e.problem.is_none() && (deletions_go || !e.deleted) {
            plan_one(
                meta,
                activity,
                ignore,
                debounce,
                &e,
                &mut home,
                &mut out,
                &mut blocked,
            )?;
        }
        if out.ops.len() == before {
            out.waiting += 1;
        }
    }
    // Nothing can run but entries wait for places held by entries that wait themselves:
    // move one holder aside to a temporary name on the server, which frees its place.
    if out.ops.is_empty() {
        // Out of a deleted folder only when deletions may go (not while they are held
        // for the user's confirmation: the folder may yet come back).
        let aside = blocked.iter().find(|a| a.into.is_none() || deletions_go);
        if let Some(Aside { entry: e, into }) = aside {
            if let (Some((rparent, _)), Some(from)) = (&e.remote, meta.remote_path_of(e.ino)?) {
                let name = format!("{MOVE_ASIDE_PREFIX}{}", e.ino);
                let (parent, folder) = match into {
                    Some((ino, path)) => (*ino, Some(path.clone())),
                    None => (*rparent, from.parent()),
                };
                if let Some(Ok(to)) = folder.map(|p| p.join(&name)) {
                    out.ops.push(Op::Move {
                        ino: e.ino,
                        from,
                        to,
                        parent,
                        name,
                        replaces: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// An entry to move to a temporary name on the server if nothing else can run.
struct Aside {
    entry: Entry,
    /// The server folder (inode, path) to move it into; `None`: the one it is in.
    into: Option<(u64, RemotePath)>,
}

/// Whether the server has `e` somewhere below folder `ancestor`.
fn below_on_server(meta: &Meta, e: &Entry, ancestor: u64) -> Result<bool, MetaError> {
    let mut at = e.remote.as_ref().map(|(p, _)| *p);
    // Bounded: a damaged store with a loop in it must not hang the planner.
    for _ in 0..4096 {
        match at {
            Some(p) if p == ancestor => return Ok(true),
            Some(p) if p != ROOT_INO => {
                at = meta.get_any(p)?.and_then(|x| x.remote.map(|(pp, _)| pp));
            }
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Whether folder `ino` is on the server where the user has it, and so are its ancestors.
/// A folder whose MKCOL is not confirmed (dirty) is not there yet.
fn at_home(meta: &Meta, ino: u64, memo: &mut HashMap<u64, bool>) -> Result<bool, MetaError> {
    if let Some(&v) = memo.get(&ino) {
        return Ok(v);
    }
    let v = match meta.get(ino)? {
        Some(e) if e.at_home() && !e.dirty => at_home(meta, e.parent, memo)?,
        _ => false,
    };
    memo.insert(ino, v);
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn plan_one(
    meta: &Meta,
    activity: &Activity,
    ignore: &IgnoreList,
    debounce: Duration,
    e: &Entry,
    home: &mut HashMap<u64, bool>,
    out: &mut Plan,
    blocked: &mut Vec<Aside>,
) -> Result<(), MetaError> {
    if e.deleted {
        return plan_delete(meta, ignore, e, out);
    }
    if ignore.matches(&e.name) || !at_home(meta, e.parent, home)? {
        return Ok(());
    }
    // A file to upload waits until it has been left alone for `debounce`. Asked first:
    // during an untar most pending files are that young, and every plan would otherwise
    // build their paths and look up their places (a third of the daemon's CPU).
    let uploads = !e.is_dir() && (e.remote.is_none() || (e.at_home() && e.dirty));
    if uploads && !due(activity, e.ino, debounce, out) {
        return Ok(());
    }
    let Some(path) = meta.path_of(e.ino).ok() else {
        return Ok(());
    };
    let occupant = meta.occupant(e.parent, &e.name)?;
    let occupant = occupant.filter(|o| o.ino != e.ino);
    // What sits on the server where this entry goes: nothing, something it may replace
    // (a deleted file, or a file renamed to an ignored name), or a blocker.
    let replaceable = |o: &Entry| {
        !o.is_dir() && !e.is_dir() && (o.deleted || (ignore.matches(&o.name) && !o.dirty))
    };
    let replaces = match &occupant {
        None => None,
        Some(o) if replaceable(o) => Some(o.clone()),
        Some(o) => {
            // Held by a live entry that is itself waiting to move (a rename cycle, or
            // a folder created where a file moving into it was): moving that entry aside
            // frees the place.
            if !o.deleted && o.remote.is_some() && !o.at_home() {
                blocked.push(Aside {
                    entry: o.clone(),
                    into: None,
                });
            }
            // Held by a deleted folder that this entry is still in on the server (moved
            // out of it and into its place): the folder's DELETE waits for this entry to
            // leave, and this entry for the place. This entry steps out to a temporary
            // name in the folder it goes to; then the folder goes, then this entry moves.
            else if o.deleted && o.is_dir() && below_on_server(meta, e, o.ino)? {
                if let Some(folder) = path.parent() {
                    blocked.push(Aside {
                        entry: e.clone(),
                        into: Some((e.parent, folder)),
                    });
                }
            }
            return Ok(());
        }
    };
    match (&e.remote, e.is_dir()) {
        (None, true) if replaces.is_none() => {
            out.ops.push(Op::Mkdir {
                ino: e.ino,
                path,
                parent: e.parent,
                name: e.name.clone(),
            });
        }
        (None, false) => {
            out.ops.push(Op::Upload {
                ino: e.ino,
                path,
                parent: e.parent,
                name: e.name.clone(),
                base: replaces.as_ref().and_then(|o| o.base_etag()),
                create: replaces.is_none(),
                replaces: replaces.map(|o| o.ino),
            });
        }
        (Some(_), _) if !e.at_home() => {
            let Some(from) = meta.remote_path_of(e.ino)? else {
                return Ok(());
            };
            out.ops.push(Op::Move {
                ino: e.ino,
                from,
                to: path,
                parent: e.parent,
                name: e.name.clone(),
                replaces: replaces.map(|o| o.ino),
            });
        }
        // A folder whose MKCOL a crash may have cut short: again (405 on a folder is fine).
        (Some(_), true) if e.dirty => {
            out.ops.push(Op::Mkdir {
                ino: e.ino,
                path,
                parent: e.parent,
                name: e.name.clone(),
            });
        }
        (Some(_), false) if e.dirty => {
            out.ops.push(Op::Upload {
                ino: e.ino,
                path,
                parent: e.parent,
                name: e.name.clone(),
                base: e.base_etag(),
                // A file whose first upload a crash cut short: the server must not
                // have another one there (what it has may be ours; the uploader checks).
                create: e.etag.is_none() && e.put_started,
                replaces: None,
            });
        }
        _ => {}
    }
    Ok(())
}

fn due(activity: &Activity, ino: u64, debounce: Duration, out: &mut Plan) -> bool {
    match activity.quiet(ino, debounce) {
        Ok(()) => true,
        Err(when) => {
            if let Some(t) = when {
                out.wake_at = Some(out.wake_at.map_or(t, |w| w.min(t)));
            }
            false
        }
    }
}

fn plan_delete(
    meta: &Meta,
    ignore: &IgnoreList,
    e: &Entry,
    out: &mut Plan,
) -> Result<(), MetaError> {
    let Some((rparent, rname)) = &e.remote else {
        return Ok(());
    };
    // A tombstone below another tombstone goes with that folder's DELETE.
    if let Some(p) = meta.get_any(*rparent)? {
        if p.deleted {
            return Ok(());
        }
    }
    // Entries moved out of a deleted folder must leave first.
    if e.is_dir() && meta.has_live_below(e.ino)? {
        return Ok(());
    }
    // A live file taking this place overwrites it instead (one PUT or MOVE keeps the
    // server's identity of the file and checks its version).
    if !e.is_dir() {
        if let Some(c) = meta.child(*rparent, rname)? {
            if !c.is_dir() && c.problem.is_none() && !ignore.matches(&c.name) {
                return Ok(());
            }
        }
    }
    let Some(path) = meta.remote_path_of(e.ino)? else {
        return Ok(());
    };
    out.ops.push(Op::Delete {
        ino: e.ino,
        path,
        etag: if e.is_dir() { None } else { e.base_etag() },
    });
    Ok(())
}

/// Whether `op` still fits the rows now. A plan reads many rows one by one while the
/// user keeps working, and an operation run earlier in the same batch (a folder's MOVE or
/// DELETE) can change where the server has an entry: a stale operation would act on the
/// wrong place, so it is planned again instead.
pub fn still_current(meta: &Meta, op: &Op) -> Result<bool, MetaError> {
    let folder_is = |parent: u64, path: &RemotePath| -> Result<bool, MetaError> {
        Ok(meta.remote_path_of(parent)? == path.parent())
    };
    // The entry is live at (parent, name), and that is `path`.
    let placed =
        |ino: u64, parent: u64, name: &str, path: &RemotePath| -> Result<bool, MetaError> {
            Ok(meta
                .get(ino)?
                .is_some_and(|e| e.parent == parent && e.name == name)
                && meta.path_of(ino).ok().as_ref() == Some(path))
        };
    Ok(match op {
        Op::Delete { ino, path, .. } => {
            meta.get_any(*ino)?.is_some_and(|e| e.deleted)
                && meta.remote_path_of(*ino)?.as_ref() == Some(path)
        }
        Op::Mkdir {
            ino,
            path,
            parent,
            name,
        } => {
            meta.get(*ino)?.is_some_and(|e| e.dirty)
                && placed(*ino, *parent, name, path)?
                && folder_is(*parent, path)?
        }
        Op::Move {
            ino,
            from,
            to,
            parent,
            name,
            ..
        } => {
            let aside = name.starts_with(MOVE_ASIDE_PREFIX);
            meta.remote_path_of(*ino)?.as_ref() == Some(from)
                && (aside || placed(*ino, *parent, name, to)?)
                && folder_is(*parent, to)?
        }
        Op::Upload {
            ino,
            path,
            parent,
            name,
            ..
        } => placed(*ino, *parent, name, path)? && folder_is(*parent, path)?,
    })
}
