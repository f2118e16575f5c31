//! Writes to a server that cannot be trusted to refuse a write over another version: it
//! ignores `If-Match` / `If-None-Match: *`, or sends no ETags (see
//! [`Capabilities::conditional_writes`]).
//!
//! Such a write is checked by the client itself. The server's current version (its ETag,
//! or one made up from time and size) is compared with the one the change was based on
//! before the upload starts, and the content goes to a staging name next to the target
//! (`.edrive-up-…`, never listed). Then, where the server refuses a MOVE onto an existing
//! name (`Overwrite: F`, probed), the version at the target is moved aside to a hidden
//! name, checked there, and the staged file is moved in with `Overwrite: F`: a change made
//! by someone else at any moment is either set aside and put back, or refuses our MOVE;
//! nothing is overwritten unseen. Where the server does not refuse that either, the
//! version is compared once more right before one overwriting MOVE, and the time between
//! the two (one round trip) is unguarded. The names are journaled in the metadata store
//! before the first request, so the next run cleans up after a crash (see
//! [`Uploader::remove_stale_staging`]).

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

mod delete;

use super::Uploader;
use crate::logged::OrLog;
use crate::remote::capabilities::{probe, Capabilities, WriteChecks, PROBE_PREFIX};
use crate::remote::{again, ETag, Precondition, RemoteError, RemotePath};

/// Name prefix of an upload's staging file on the server.
pub const STAGING_PREFIX: &str = ".edrive-up-";
/// Settings key prefix of journaled staging files (`staging/INO-N` → the staging file,
/// the set-aside name and the target, tab-separated).
const STAGING_KEY: &str = "staging/";
/// Settings key of what was learnt about the server.
pub(crate) const CAPABILITIES_KEY: &str = "server_capabilities";

impl Uploader {
    /// What is known of the server now.
    pub fn capabilities(&self) -> Capabilities {
        crate::lock(&self.caps).clone()
    }

    /// Whether a version can be moved aside and checked there: the server refuses a MOVE
    /// onto an existing name (`Overwrite: F`) and keeps a file's tag across a MOVE.
    fn set_aside_works(&self) -> bool {
        let caps = crate::lock(&self.caps);
        caps.move_no_overwrite == Some(true) && caps.etag_survives_move != Some(false)
    }

    /// Whether a write or delete under `pre` must be checked by the client: the server
    /// gives no guarantee, or the tag is one `If-Match` cannot carry (made up, or weak).
    fn must_check(&self, pre: &Precondition, delete: bool) -> bool {
        let caps = crate::lock(&self.caps);
        let server = !caps.conditional_writes() || (delete && caps.delete_if_match != Some(true));
        match pre {
            Precondition::IfMatch(t) => server || t.weak || t.is_synthetic(),
            Precondition::IfNoneExists => server,
            Precondition::None => false,
        }
    }

    /// Learns what the server guarantees (see [`probe`]) and keeps it in the store; until
    /// then (and if the probe cannot run) what the last mount learnt, or nothing, is used.
    /// Returns `false` if the probe should be tried again later (the server was not
    /// reached).
    pub(super) async fn learn_server(&self) -> bool {
        match self.write_checks {
            WriteChecks::Auto => {}
            WriteChecks::Trust | WriteChecks::Check => {
                let trust = self.write_checks == WriteChecks::Trust;
                let mut caps = crate::lock(&self.caps);
                caps.etags = Some(trust);
                caps.if_match = Some(trust);
                caps.if_none_match = Some(trust);
                caps.note = Some(format!(
                    "not probed: --conditional-writes {}",
                    self.write_checks.as_str()
                ));
                return true;
            }
        }
        if let Ok(Some(stored)) = self.meta.setting(CAPABILITIES_KEY) {
            let mut caps = crate::lock(&self.caps);
            if !caps.probed {
                *caps = Capabilities::decode(&stored);
            }
        }
        let name = format!("{PROBE_PREFIX}{}-{}", self.host, std::process::id());
        let Ok(dir) = RemotePath::root().join(&name) else {
            return true;
        };
        match probe(self.remote.as_ref(), &dir).await {
            Ok(caps) => {
                info!(capabilities = %caps, trusted = caps.conditional_writes(), "learnt what the server guarantees");
                if !caps.conditional_writes() {
                    warn!("the server does not enforce conditional writes: every upload is checked against the server's version first and staged under a temporary name");
                }
                let _ = self
                    .meta
                    .set_setting(CAPABILITIES_KEY, Some(&caps.encode()));
                *crate::lock(&self.caps) = caps;
                true
            }
            Err(e) if e.is_transient() => false,
            Err(e) => {
                warn!(error = %e, "cannot probe the server (no write permission at the top?); every upload is checked against the server's version first");
                let mut caps = crate::lock(&self.caps);
                caps.note = Some(format!("not probed: {e}"));
                true
            }
        }
    }

    /// Writes `len` bytes of `file` to `path` if the server's version there is what
    /// `pre` says; on a server that does not enforce that itself, checks it first and
    /// stages the upload (see the module doc). Returns the new version if known.
    pub(super) async fn write(
        &self,
        ino: u64,
        path: &RemotePath,
        file: &std::fs::File,
        len: u64,
        pre: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        if !self.must_check(&pre, false) {
            let tag = self.put(path, file, len, pre, mtime).await?;
            return match tag {
                Some(tag) => Ok(Some(tag)),
                None => self.verify_stored(path, len).await.map(|e| e.etag),
            };
        }
        self.write_staged(ino, path, file, len, pre, mtime).await
    }

    /// [`Uploader::write`] with the client's own check and a staging name, whatever the
    /// server guarantees: also for a weak ETag, which `If-Match` never matches.
    pub(super) async fn write_staged(
        &self,
        ino: u64,
        path: &RemotePath,
        file: &std::fs::File,
        len: u64,
        pre: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        self.check_version(path, &pre).await?;
        let (Some(dir), Some(name)) = (path.parent(), path.name()) else {
            return Err(RemoteError::Local("cannot upload over the root".into()));
        };
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let work = |suffix: &str| {
            dir.join(&format!("{STAGING_PREFIX}{ino}-{nonce:08x}{suffix}"))
                .map_err(|e| RemoteError::Local(e.to_string()))
        };
        let staging = work("")?;
        let aside = work(".old")?;
        // Journaled before any request: a crash leaves nothing the next run cannot find.
        let key = format!("{STAGING_KEY}{ino}-{nonce:08x}");
        let journal = journal(&[&staging, &aside, path]);
        self.meta
            .set_setting(&key, Some(&journal))
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let no_overwrite = self.set_aside_works();
        let placed = async {
            again(|| self.put(&staging, file, len, Precondition::None, mtime)).await?;
            // Our version, as the server keeps it (a MOVE keeps it): read from the staging
            // file, which nobody else writes, not from the target after the MOVE, where
            // someone else's write could be taken for ours.
            let ours = self.verify_stored(&staging, len).await?.etag;
            match &pre {
                // Refused by the server if someone created it meanwhile.
                Precondition::IfNoneExists if no_overwrite => {
                    self.remote.rename(&staging, path, false).await
                }
                Precondition::IfMatch(base) if no_overwrite => {
                    self.swap_in(&key, &staging, &aside, path, name, base).await
                }
                _ => {
                    self.check_version(path, &pre).await?;
                    self.remote.rename(&staging, path, true).await
                }
            }
            .map(|()| ours)
        }
        .await;
        if let Err(e) = &placed {
            debug!(%path, error = %e, "staged upload not moved into place; removing the staging file");
            match again(|| self.remote.delete(&staging, Precondition::None)).await {
                Ok(()) | Err(RemoteError::NotFound) => {}
                // Left journaled: removed by a later round.
                Err(_) => return placed,
            }
        }
        // The journal goes only once nothing is left under the set-aside name: a version
        // that could not be put back stays findable (see `remove_stale_staging`).
        if self.gone(&aside).await {
            self.meta.set_setting(&key, None).or_log("meta set_setting");
        }
        let ours = placed?;
        // Still checked: a server that answered the MOVE but has no such file.
        self.verify_stored(path, len).await?;
        Ok(ours)
    }

    /// Whether nothing is at `path` on the server (a positive 404).
    async fn gone(&self, path: &RemotePath) -> bool {
        matches!(
            again(|| self.remote.stat(path)).await,
            Err(RemoteError::NotFound)
        )
    }

    /// Puts the staged upload at `path` in place of version `base`, leaving no moment in
    /// which a change made by someone else could be overwritten unseen: the version at
    /// `path` is first moved aside (to `aside`, a hidden name nobody else writes to) and
    /// checked there; the staged file then goes in with `Overwrite: F`, so a file someone
    /// created meanwhile refuses it. A version that is not `base` goes back (or, should
    /// its place be taken again, to a visible conflict name): never lost.
    async fn swap_in(
        &self,
        key: &str,
        staging: &RemotePath,
        aside: &RemotePath,
        path: &RemotePath,
        name: &str,
        base: &ETag,
    ) -> Result<(), RemoteError> {
        match self.remote.rename(path, aside, false).await {
            Ok(()) => {}
            Err(RemoteError::NotFound) => return Err(RemoteError::PreconditionFailed),
            // No answer, but the server may have moved it: then it is checked there.
            Err(e) => {
                if again(|| self.remote.stat(aside)).await.is_err() {
                    return Err(e);
                }
            }
        }
        let frozen = again(|| self.remote.stat(aside)).await;
        let same =
            matches!(&frozen, Ok(e) if e.etag.as_ref().is_some_and(|t| t.value == base.value));
        if !same {
            let _ = self.put_back(aside, path, name).await;
            return match frozen {
                Ok(_) => Err(RemoteError::PreconditionFailed),
                Err(e) => Err(e),
            };
        }
        match self.remote.rename(staging, path, false).await {
            Ok(()) => {}
            // Taken meanwhile by someone else: theirs stays, ours is a conflict; `base`,
            // superseded by theirs, is not needed.
            Err(RemoteError::PreconditionFailed) => {
                let _ = again(|| self.remote.delete(aside, Precondition::None)).await;
                return Err(RemoteError::PreconditionFailed);
            }
            Err(e) => {
                let _ = self.put_back(aside, path, name).await;
                return Err(e);
            }
        }
        // Ours is in: the version set aside is the one it replaces, checked, and goes. The
        // journal says so first, so that a later round deletes it rather than put it back.
        self.meta
            .set_setting(key, Some(&journal(&[aside, aside, aside])))
            .or_log("meta set_setting");
        if let Err(e) = again(|| self.remote.delete(aside, Precondition::None)).await {
            warn!(%aside, error = %e, "could not remove the replaced version; the next run does");
        }
        Ok(())
    }

    /// Moves a version set aside at `aside` back to `path`, or, if `path` is taken again,
    /// to a visible conflict name next to it.
    /// Returns whether the version is visible again (or gone already).
    async fn put_back(&self, aside: &RemotePath, path: &RemotePath, name: &str) -> bool {
        match self.remote.rename(aside, path, false).await {
            Ok(()) | Err(RemoteError::NotFound) => return true,
            Err(e) => debug!(%path, error = %e, "cannot put a version back in its place"),
        }
        let Some(dir) = path.parent() else {
            return false;
        };
        for n in 1..20 {
            let copy = super::super::conflict_name(name, &self.host, SystemTime::now(), n);
            let Ok(to) = dir.join(&copy) else {
                return false;
            };
            match self.remote.rename(aside, &to, false).await {
                Ok(()) => {
                    warn!(%path, copy = %copy, "a version changed on the server while ours went in is kept as a conflict copy");
                    return true;
                }
                Err(RemoteError::PreconditionFailed) => continue,
                Err(e) => {
                    warn!(%aside, error = %e, "cannot move a set-aside version to a visible name; the next run tries again");
                    return false;
                }
            }
        }
        false
    }

    /// `Ok` if the server's version at `path` is what `pre` asks for, else
    /// [`RemoteError::PreconditionFailed`].
    async fn check_version(
        &self,
        path: &RemotePath,
        pre: &Precondition,
    ) -> Result<(), RemoteError> {
        match pre {
            Precondition::None => Ok(()),
            Precondition::IfNoneExists => match again(|| self.remote.stat(path)).await {
                Err(RemoteError::NotFound) => Ok(()),
                Ok(_) => Err(RemoteError::PreconditionFailed),
                Err(e) => Err(e),
            },
            Precondition::IfMatch(base) => match again(|| self.remote.stat(path)).await {
                Ok(e) if !e.is_dir && e.etag.as_ref().is_some_and(|t| t.value == base.value) => {
                    Ok(())
                }
                Ok(_) | Err(RemoteError::NotFound) => Err(RemoteError::PreconditionFailed),
                Err(e) => Err(e),
            },
        }
    }

    /// After an upload the server called a success: whether it really holds a file of
    /// `len` bytes at `path`. One that it does not hold is a refused upload (the local
    /// copy is kept), never somebody else's deletion.
    async fn verify_stored(
        &self,
        path: &RemotePath,
        len: u64,
    ) -> Result<crate::remote::RemoteEntry, RemoteError> {
        match again(|| self.remote.stat(path)).await {
            // A size the server does not say (or garbles) cannot be checked.
            Ok(e) if !e.is_dir && (e.size == len || !e.size_known) => Ok(e),
            Ok(e) => Err(RemoteError::Malformed(format!(
                "the server accepted the upload but has {} there",
                if e.is_dir {
                    "a folder".to_string()
                } else {
                    format!("{} bytes instead of {len}", e.size)
                }
            ))),
            Err(RemoteError::NotFound) => Err(RemoteError::Malformed(
                "the server accepted the upload but does not have the file".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Cleans up after staged uploads and checked deletes that a crash (or a failure) cut
    /// short, as journaled before each: a version set aside goes back to its place, or to
    /// a visible conflict name if the place is taken; a staging file is deleted. An entry
    /// is forgotten only once nothing is left under its work names. Returns `false` if the
    /// server could not be reached.
    pub(super) async fn remove_stale_staging(&self) -> bool {
        let Ok(left) = self.meta.settings_with_prefix(STAGING_KEY) else {
            return true;
        };
        for (key, value) in left {
            let Some([staging, aside, target]) = unjournal(&value) else {
                warn!(%key, "an unreadable staging journal entry; forgetting it");
                self.meta.set_setting(&key, None).or_log("meta set_setting");
                continue;
            };
            match again(|| self.remote.stat(&aside)).await {
                // A replaced version, checked, whose removal failed (journaled as its own
                // target): deleted, not put back.
                Ok(_) if target == aside => {
                    match again(|| self.remote.delete(&aside, Precondition::None)).await {
                        Ok(()) | Err(RemoteError::NotFound) => {
                            info!(%aside, "removed a replaced version an upload left")
                        }
                        Err(e) if e.is_transient() => return false,
                        Err(e) => {
                            warn!(%aside, error = %e, "could not remove a replaced version; tried again later");
                            continue;
                        }
                    }
                }
                Ok(_) => {
                    // Back in its place if that is free; if ours (or someone's) went in
                    // already, kept under a visible conflict name: the crash may have come
                    // before the set-aside version was checked.
                    info!(%target, "putting back a version an interrupted upload had set aside");
                    let name = target.name().unwrap_or_default().to_string();
                    if !self.put_back(&aside, &target, &name).await {
                        continue;
                    }
                }
                Err(RemoteError::NotFound) => {}
                Err(e) if e.is_transient() => return false,
                Err(e) => {
                    warn!(%aside, error = %e, "cannot check a set-aside version; tried again later");
                    continue;
                }
            }
            if staging != aside {
                match again(|| self.remote.delete(&staging, Precondition::None)).await {
                    Ok(()) => info!(%staging, "removed a staging file an interrupted upload left"),
                    Err(RemoteError::NotFound) => {}
                    Err(e) if e.is_transient() => return false,
                    Err(e) => {
                        warn!(%staging, error = %e, "could not remove a staging file; tried again later");
                        continue;
                    }
                }
            }
            if self.gone(&aside).await {
                self.meta.set_setting(&key, None).or_log("meta set_setting");
            }
        }
        true
    }

    /// Whether journaled work is left (see [`Uploader::remove_stale_staging`]).
    pub(super) fn staging_left(&self) -> bool {
        matches!(self.meta.settings_with_prefix(STAGING_KEY), Ok(v) if !v.is_empty())
    }
}

/// The paths of a journal entry, each component escaped so that no name can be taken
/// for a separator: `\` → `\\`, tab → `\t`, newline → `\n`.
fn journal(paths: &[&RemotePath]) -> String {
    paths
        .iter()
        .map(|p| {
            p.parts()
                .iter()
                .map(|c| {
                    c.replace('\\', "\\\\")
                        .replace('\t', "\\t")
                        .replace('\n', "\\n")
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect::<Vec<_>>()
        .join("\t")
}

/// The staging, set-aside and target paths of a journal entry; `None` unless both work
/// names are edrive's own (`.edrive-up-…`), so a garbled entry can never make the
/// recovery delete or move a user's file.
fn unjournal(value: &str) -> Option<[RemotePath; 3]> {
    let unescape = |c: &str| {
        let mut out = String::new();
        let mut chars = c.chars();
        while let Some(ch) = chars.next() {
            match (ch, ch == '\\') {
                (_, true) => match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => {}
                },
                (ch, false) => out.push(ch),
            }
        }
        out
    };
    let mut paths = value
        .split('\t')
        .map(|p| RemotePath::from_parts(p.split('/').filter(|c| !c.is_empty()).map(unescape)).ok());
    let (Some(Some(staging)), Some(Some(aside)), Some(Some(target)), None) =
        (paths.next(), paths.next(), paths.next(), paths.next())
    else {
        return None;
    };
    let ours = |p: &RemotePath| p.name().is_some_and(|n| n.starts_with(STAGING_PREFIX));
    (ours(&staging) && ours(&aside)).then_some([staging, aside, target])
}

#[cfg(test)]
mod tests {
    use super::{journal, unjournal};
    use crate::remote::RemotePath;

    #[test]
    fn journal_entries_round_trip_names_with_tabs_and_backslashes() {
        let dir = RemotePath::from_parts(["a\tb", "c\\d\ne"]).unwrap();
        let staging = dir.join(".edrive-up-7-00000001").unwrap();
        let aside = dir.join(".edrive-up-7-00000001.old").unwrap();
        let target = dir.join("x\ty.txt").unwrap();
        let entry = journal(&[&staging, &aside, &target]);
        assert_eq!(unjournal(&entry), Some([staging, aside, target.clone()]));
        // Never a user's file as a work name.
        assert_eq!(unjournal(&journal(&[&target, &target, &target])), None);
        assert_eq!(unjournal("garbage"), None);
    }
}
