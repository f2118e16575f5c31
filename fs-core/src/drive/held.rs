//! Held mass deletions as the user sees them (`edrive deletions`): what is held, and
//! confirming (sent to the server) or restoring (back in the mount, as the server has
//! it) all of them or those under one path. See `crate::sync::held` for when a burst is
//! held.

use std::collections::{HashMap, HashSet};

use tracing::{info, instrument};

use super::Drive;
use crate::error::FsError;
use crate::logged::OrLog;
use crate::meta::{Entry, Kind};

/// One held deletion as `edrive deletions` lists it: a file, or a folder standing for
/// everything held below it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldDeletion {
    /// Where the server has it (`/a/b`).
    pub path: String,
    /// `file` or `folder`.
    pub kind: &'static str,
    /// Entries held, itself and what is below it.
    pub entries: u64,
    /// Bytes of the files held.
    pub bytes: u64,
}

impl Drive {
    /// The held deletions, outermost only (a folder counts what is held below it).
    pub fn held_deletions(&self) -> Result<Vec<HeldDeletion>, FsError> {
        let held = self.meta.held()?;
        let set: HashSet<u64> = held.iter().map(|e| e.ino).collect();
        let by_ino: HashMap<u64, &Entry> = held.iter().map(|e| (e.ino, e)).collect();
        let mut tops: Vec<(u64, HeldDeletion)> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut under: Vec<(u64, u64)> = Vec::new();
        for e in &held {
            // The outermost held folder above it (by the server's tree).
            let mut top = e.ino;
            let mut seen = 0;
            while let Some((rparent, _)) = by_ino.get(&top).and_then(|t| t.remote.clone()) {
                if !set.contains(&rparent) || seen > 4096 {
                    break;
                }
                top = rparent;
                seen += 1;
            }
            under.push((top, e.ino));
        }
        for (top, ino) in under {
            let e = by_ino[&ino];
            let i = match index.get(&top) {
                Some(i) => *i,
                None => {
                    let t = by_ino[&top];
                    let path = self
                        .meta
                        .remote_path_of(top)?
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    tops.push((
                        top,
                        HeldDeletion {
                            path,
                            kind: if t.kind == Kind::Dir {
                                "folder"
                            } else {
                                "file"
                            },
                            entries: 0,
                            bytes: 0,
                        },
                    ));
                    index.insert(top, tops.len() - 1);
                    tops.len() - 1
                }
            };
            tops[i].1.entries += 1;
            if !e.is_dir() {
                tops[i].1.bytes = tops[i].1.bytes.saturating_add(e.size);
            }
        }
        let mut out: Vec<HeldDeletion> = tops.into_iter().map(|(_, h)| h).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The held deletions at or below `path` (server path components; `None`: all),
    /// and those of folders above it (which must come back for it to).
    fn held_matching(&self, path: Option<&[String]>) -> Result<(Vec<u64>, Vec<u64>), FsError> {
        let mut inside = Vec::new();
        let mut above = Vec::new();
        for e in self.meta.held()? {
            let Some(p) = self.meta.remote_path_of(e.ino)? else {
                continue;
            };
            match path {
                None => inside.push(e.ino),
                Some(want) if p.parts().starts_with(want) => inside.push(e.ino),
                Some(want) if want.starts_with(p.parts()) => above.push(e.ino),
                Some(_) => {}
            }
        }
        Ok((inside, above))
    }

    /// Sends the held deletions at or below `path` (all with `None`). Returns how many
    /// entries were let go.
    #[instrument(level = "debug", skip(self))]
    pub fn confirm_deletions(&self, path: Option<&[String]>) -> Result<u64, FsError> {
        let (inside, above) = self.held_matching(path)?;
        if !above.is_empty() {
            return Err(FsError::Invalid(
                "this path lies in a held deletion of a folder above it: confirm that folder, or restore this path",
            ));
        }
        if inside.is_empty() {
            return Err(FsError::NotFound);
        }
        self.meta.release_held(&inside)?;
        info!(entries = inside.len(), "held deletions confirmed");
        self.activity.wake();
        Ok(inside.len() as u64)
    }

    /// Brings the held deletions at or below `path` (all with `None`) back into the
    /// mount where the server has them, with the folders above it that were held too.
    /// Their content is fetched on demand again; pins on them hold again; the folders
    /// are listed anew, so what comes back is what the server has now (the caller starts
    /// the pin run). Returns how many entries came back.
    #[instrument(level = "debug", skip(self))]
    pub async fn restore_deletions(&self, path: Option<&[String]>) -> Result<u64, FsError> {
        let (mut inos, above) = self.held_matching(path)?;
        if inos.is_empty() {
            return Err(FsError::NotFound);
        }
        inos.extend(above);
        let entries: Vec<Entry> = inos
            .iter()
            .filter_map(|i| self.meta.get_any(*i).ok().flatten())
            .collect();
        let _tree = self.uploader.tree_lock.write().await;
        let blocked = self.meta.revive_held(&inos)?;
        for e in &entries {
            if let Some((rparent, rname)) = &e.remote {
                self.inval.entry(*rparent, rname);
                self.inval.inode(*rparent);
                self.meta
                    .expire_listing(*rparent)
                    .or_log("meta expire_listing");
            }
        }
        let back = inos.len() - blocked.len();
        info!(
            entries = back,
            blocked = blocked.len(),
            "held deletions restored"
        );
        if !blocked.is_empty() {
            return Err(FsError::Invalid(
                "some entries could not come back: a new file or folder here has their name (rename it and restore again)",
            ));
        }
        Ok(back as u64)
    }
}
