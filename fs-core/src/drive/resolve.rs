//! Conflicts the user settles (`edrive conflicts`, `edrive resolve`), and the store of
//! local versions discarded by "use remote".

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{lock, Drive};
use crate::error::FsError;
use crate::meta::Event;
use crate::remote::RemoteError;

/// How long discarded local versions are kept.
pub const RECOVERY_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// How the user settles a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Overwrite the server's version with the local one.
    UseLocal,
    /// Replace the local version with the server's; the local bytes are kept in the
    /// recovery folder for [`RECOVERY_KEEP`].
    UseRemote,
    /// Keep both: the local version is renamed to a conflict copy and uploaded.
    KeepBoth,
}

/// A file in conflict, waiting for the user.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConflictInfo {
    /// Its path in the mount.
    pub path: String,
    /// Bytes of the local version.
    pub local_size: u64,
}

impl Drive {
    /// Files in conflict (policy `ask`) and the latest `events` sync events.
    pub fn conflicts(&self, events: usize) -> Result<(Vec<ConflictInfo>, Vec<Event>), FsError> {
        let mut out = Vec::new();
        for ino in self.meta.conflicts()? {
            let Some(e) = self.meta.get(ino)? else {
                continue;
            };
            let local_size = match lock(&self.works).get(&ino) {
                Some((w, _)) => w.size_and_mtime().0,
                None => std::fs::metadata(self.cache.work_path(ino))
                    .map(|m| m.len())
                    .unwrap_or(e.size),
            };
            out.push(ConflictInfo {
                path: self.meta.path_of(ino)?.to_string(),
                local_size,
            });
        }
        Ok((out, self.meta.events(events)?))
    }

    /// The entry the server has at `path` (its server location), also one deleted here
    /// whose deletion has not reached the server (a tombstone): what `edrive resolve`
    /// settles for a path the mount no longer shows.
    pub fn at_server_path(&self, path: &[String]) -> Result<Option<u64>, FsError> {
        let mut ino = crate::meta::ROOT_INO;
        for name in path {
            match self.meta.occupant(ino, name)? {
                Some(e) => ino = e.ino,
                None => return Ok(None),
            }
        }
        Ok(Some(ino))
    }

    /// Settles entry `ino` as the user chose: a conflict (see [`Choice`]), or any other
    /// change that does not move (refused, retried, waiting for a lock or for room, or a
    /// deletion the server does not take): `UseLocal` tries it again now, `UseRemote`
    /// gives it up for the server's version (a file's local bytes go to the recovery
    /// folder). Returns a sentence saying what was done.
    pub async fn resolve(&self, ino: u64, choice: Choice) -> Result<String, FsError> {
        let e = match self.meta.get_any(ino)? {
            Some(e) => e,
            None => return Err(FsError::NotFound),
        };
        match &e.problem {
            Some(crate::meta::Problem::Conflict) => {}
            Some(_) => return self.resolve_stuck(e, choice).await,
            None => {
                return Err(FsError::Invalid(
                    "nothing waits here (see edrive conflicts)",
                ))
            }
        }
        if e.deleted {
            return self.resolve_stuck(e, choice).await;
        }
        if e.is_dir() {
            return Err(FsError::IsDir);
        }
        let local_path = self.meta.path_of(ino)?.to_string();
        let Some(server_path) = self.meta.remote_path_of(ino)? else {
            return Err(FsError::Invalid("not on the server: nothing to resolve"));
        };
        let server = match self.remote.stat(&server_path).await {
            Ok(s) if !s.is_dir => Some(s),
            Ok(_) => return Err(FsError::Invalid("a folder has this name on the server")),
            Err(RemoteError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        // The working-copy gate before the tree lock, as writers take them (a writer holds
        // the gate while it may list a folder, which takes the tree lock).
        let gate = match choice {
            Choice::UseRemote => Some(self.work_gate.lock().await),
            _ => None,
        };
        let _tree = self.uploader.tree_lock.write().await;
        let said = match (choice, server) {
            (Choice::UseLocal, Some(s)) => {
                // The server's version is not lost either: kept like a discarded local one.
                drop(_tree);
                let kept = self.keep_server_version(&server_path, &e.name).await?;
                let _tree = self.uploader.tree_lock.write().await;
                self.meta.overrule_server(ino, s.etag.as_ref())?;
                format!(
                    "{local_path}: the local version replaces the server's, which is kept at {}",
                    kept.display()
                )
            }
            (Choice::UseLocal, None) => {
                // Detaching clears the conflict.
                self.meta.detach(ino)?;
                format!("{local_path}: the server had no version any more; uploading the local one")
            }
            (Choice::UseRemote, Some(s)) => {
                // No handle may open (and write) the working copy from here on (the gate,
                // taken above).
                let _work = self.activity.lock_work();
                if self.activity.has_handles(ino) || lock(&self.works).contains_key(&ino) {
                    return Err(FsError::Invalid("the file is open; close it first"));
                }
                let kept = self.keep_discarded(ino, &e.name)?;
                self.meta.take_server_version(ino, &s)?;
                self.cache.work_remove(ino)?;
                drop(_work);
                drop(gate);
                self.inval.inode(ino);
                let kept = kept
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "nowhere (there was no local content)".into());
                let _ = self.meta.record_event("used-remote", &local_path, &kept);
                format!(
                    "{local_path}: the server's version is back; the local one is kept at {kept}"
                )
            }
            (Choice::UseRemote, None) => {
                return Err(FsError::Invalid(
                    "the server no longer has this file; use --use-local or --keep-both",
                ))
            }
            (Choice::KeepBoth, _) => {
                drop(_tree);
                match self.uploader.keep_both_now(ino, &server_path).await {
                    Ok(Some(copy)) => {
                        format!("{local_path}: kept both; the local version is now {copy}")
                    }
                    Ok(None) => {
                        self.meta.detach(ino)?;
                        format!("{local_path}: the server had no version any more; uploading the local one")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if choice == Choice::UseLocal {
            let _ = self.meta.record_event("used-local", &local_path, "");
        }
        info!(%local_path, ?choice, "conflict resolved");
        self.activity.wake();
        self.uploader.request_sync();
        Ok(said)
    }

    /// Settles a change that does not move for a reason other than a conflict.
    async fn resolve_stuck(
        &self,
        e: crate::meta::Entry,
        choice: Choice,
    ) -> Result<String, FsError> {
        let ino = e.ino;
        let shown = if e.deleted {
            self.meta
                .remote_path_of(ino)?
                .map(|p| format!("{p} (deleted here)"))
                .unwrap_or_default()
        } else {
            self.meta.path_of(ino)?.to_string()
        };
        let said = match choice {
            Choice::UseLocal => {
                if matches!(e.problem, Some(crate::meta::Problem::Forbidden(_))) {
                    // The rights may have changed on the server: what a refusal taught
                    // is forgotten (a new refusal teaches it again).
                    self.lift_refusal(&e)?;
                }
                self.meta.set_problem(ino, None)?;
                format!("{shown}: trying again now")
            }
            Choice::KeepBoth => {
                return Err(FsError::Invalid(
                    "keep-both is for conflicts; use --use-local to try again or --use-remote to give the change up",
                ))
            }
            Choice::UseRemote if e.deleted => {
                // The deletion is given up: the server's entry comes back at the next
                // listing.
                let parent = e.remote.as_ref().map(|(p, _)| *p);
                self.meta.drop_tombstone(ino)?;
                if let Some(p) = parent {
                    self.meta.expire_listing(p)?;
                    self.inval.inode(p);
                }
                format!("{shown}: the deletion is given up; the server's version comes back")
            }
            Choice::UseRemote if e.is_dir() => {
                return Err(FsError::Invalid(
                    "a folder: give up the changes of the files in it, or try again with --use-local",
                ))
            }
            Choice::UseRemote => {
                let server = match self.meta.remote_path_of(ino)? {
                    Some(p) => match self.remote.stat(&p).await {
                        Ok(s) if !s.is_dir => Some(s),
                        Ok(_) | Err(RemoteError::NotFound) => None,
                        Err(err) => return Err(err.into()),
                    },
                    None => None,
                };
                let _gate = self.work_gate.lock().await;
                let _work = self.activity.lock_work();
                if self.activity.has_handles(ino) || lock(&self.works).contains_key(&ino) {
                    return Err(FsError::Invalid("the file is open; close it first"));
                }
                let kept = self.keep_discarded(ino, &e.name)?;
                match &server {
                    Some(s) => self.meta.take_server_version(ino, s)?,
                    None => {
                        // The server has no file there: nothing is left to delete
                        // either (a refused first upload left none).
                        if !self.meta.remove_local(ino)? {
                            self.meta.drop_tombstone(ino)?;
                        }
                        self.inval.entry(e.parent, &e.name);
                    }
                }
                self.cache.work_remove(ino)?;
                self.inval.inode(ino);
                let kept = kept
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "nowhere (there was no local content)".into());
                let _ = self.meta.record_event("used-remote", &shown, &kept);
                match server {
                    Some(_) => format!("{shown}: the server's version is back; the local one is kept at {kept}"),
                    None => format!("{shown}: the local change is given up (the server has no such file); it is kept at {kept}"),
                }
            }
        };
        info!(path = %shown, ?choice, "stuck change resolved");
        self.activity.wake();
        self.uploader.request_sync();
        Ok(said)
    }

    /// Downloads the server's version at `path` into a dated folder of the recovery store,
    /// before the local version replaces it.
    async fn keep_server_version(
        &self,
        path: &crate::remote::RemotePath,
        name: &str,
    ) -> Result<PathBuf, FsError> {
        use futures_util::StreamExt;
        use std::io::Write;
        let dl = self.remote.read(path, None).await?;
        let dest = self.recovery_path(&format!("{name} (server)"))?;
        let mut out = std::fs::File::create(&dest)?;
        let mut body = dl.body;
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk?)?;
        }
        out.sync_all()?;
        if let Some(d) = dest.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = d.sync_all();
        }
        Ok(dest)
    }

    /// A free path for `name` in today's folder of the recovery store (created).
    fn recovery_path(&self, name: &str) -> Result<PathBuf, FsError> {
        let date = crate::sync::local_date(SystemTime::now());
        let dir = self.recovery_dir().join(date);
        std::fs::create_dir_all(&dir)?;
        let mut dest = dir.join(name);
        let mut n = 2;
        while dest.exists() {
            dest = dir.join(format!("{name}.{n}"));
            n += 1;
        }
        Ok(dest)
    }

    /// Where discarded local versions go.
    fn recovery_dir(&self) -> PathBuf {
        match &self.options.recovery_dir {
            Some(d) => d.clone(),
            None => self
                .cache
                .dir()
                .parent()
                .unwrap_or(self.cache.dir())
                .join("recovered"),
        }
    }

    /// Copies the local content of `ino` into a dated folder of the recovery store; `None`
    /// if there is none.
    fn keep_discarded(&self, ino: u64, name: &str) -> Result<Option<PathBuf>, FsError> {
        let src = self.cache.work_path(ino);
        if !src.exists() {
            return Ok(None);
        }
        let dest = self.recovery_path(name)?;
        std::fs::copy(&src, &dest)?;
        std::fs::File::open(&dest)?.sync_all()?;
        if let Some(d) = dest.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = d.sync_all();
        }
        Ok(Some(dest))
    }

    /// Deletes recovered versions older than [`RECOVERY_KEEP`].
    pub(super) fn prune_recovered(&self) {
        prune(&self.recovery_dir(), RECOVERY_KEEP);
    }
}

fn prune(dir: &Path, keep: Duration) {
    let Ok(days) = std::fs::read_dir(dir) else {
        return;
    };
    for d in days.flatten() {
        let old = d
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep);
        if old {
            if let Err(e) = std::fs::remove_dir_all(d.path()) {
                warn!(path = %d.path().display(), error = %e, "could not prune recovered versions");
            }
        }
    }
}
