//! Writes to a server that cannot be trusted to refuse a write over another version: it
//! ignores `If-Match` / `If-None-Match: *`, or sends no ETags (see
//! [`Capabilities::conditional_writes`]).
//!
//! Such a write is checked by the client itself: the server's current version (ETag, or
//! time and size where it has none) is compared with the one the change was based on
//! before the upload starts; the content goes to a staging name next to the target
//! (`.edrive-up-…`, never listed); the version is compared once more, and only then is the
//! staged file moved over the target in one MOVE. What remains unguarded is the time
//! between that last comparison and the MOVE: one round trip. A staging name is journaled
//! in the metadata store before its PUT, so one left by a crash is deleted by the next run.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use super::Uploader;
use crate::remote::capabilities::{probe, Capabilities, PROBE_PREFIX};
use crate::remote::{ETag, Precondition, RemoteError, RemotePath};

/// Name prefix of an upload's staging file on the server.
pub const STAGING_PREFIX: &str = ".edrive-up-";
/// Settings key prefix of journaled staging files (`staging/INO` → server path).
const STAGING_KEY: &str = "staging/";
/// Settings key of what was learnt about the server.
pub(crate) const CAPABILITIES_KEY: &str = "server_capabilities";

impl Uploader {
    /// What is known of the server now.
    pub fn capabilities(&self) -> Capabilities {
        crate::lock(&self.caps).clone()
    }

    /// Whether writes go through the second check of this module.
    pub(super) fn needs_check(&self) -> bool {
        !crate::lock(&self.caps).conditional_writes()
    }

    /// Learns what the server guarantees (see [`probe`]) and keeps it in the store; until
    /// then (and if the probe cannot run) what the last mount learnt, or nothing, is used.
    /// Returns `false` if the probe should be tried again later (the server was not
    /// reached).
    pub(super) async fn learn_server(&self) -> bool {
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
        if !self.needs_check() {
            let tag = self.put(path, file, len, pre, mtime).await?;
            return match tag {
                Some(tag) => Ok(Some(tag)),
                None => self.verify_stored(path, len).await.map(|e| e.etag),
            };
        }
        self.check_version(path, &pre).await?;
        let Some(dir) = path.parent() else {
            return Err(RemoteError::Local("cannot upload over the root".into()));
        };
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging = dir
            .join(&format!("{STAGING_PREFIX}{ino}-{nonce:08x}"))
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let key = format!("{STAGING_KEY}{ino}");
        self.meta
            .set_setting(&key, Some(&staging.to_string()))
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let moved = async {
            self.put(&staging, file, len, Precondition::None, mtime)
                .await?;
            self.check_version(path, &pre).await?;
            self.remote.rename(&staging, path, true).await
        }
        .await;
        if let Err(e) = &moved {
            debug!(%path, error = %e, "staged upload not moved into place; removing the staging file");
            match self.remote.delete(&staging, Precondition::None).await {
                Ok(()) | Err(RemoteError::NotFound) => {}
                // Left journaled: the next run removes it.
                Err(_) => return moved.map(|()| None),
            }
        }
        let _ = self.meta.set_setting(&key, None);
        moved?;
        self.verify_stored(path, len).await.map(|e| e.etag)
    }

    /// Deletes what is at `path` if the server's version there is what `pre` says,
    /// checking it first on a server that does not.
    pub(super) async fn delete_checked(
        &self,
        path: &RemotePath,
        pre: Precondition,
    ) -> Result<(), RemoteError> {
        if self.needs_check() {
            match self.check_version(path, &pre).await {
                Err(RemoteError::PreconditionFailed)
                    if matches!(self.remote.stat(path).await, Err(RemoteError::NotFound)) =>
                {
                    return Err(RemoteError::NotFound)
                }
                r => r?,
            }
        }
        self.remote.delete(path, pre).await
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
            Precondition::IfNoneExists => match self.remote.stat(path).await {
                Err(RemoteError::NotFound) => Ok(()),
                Ok(_) => Err(RemoteError::PreconditionFailed),
                Err(e) => Err(e),
            },
            Precondition::IfMatch(base) => match self.remote.stat(path).await {
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
        match self.remote.stat(path).await {
            Ok(e) if !e.is_dir && e.size == len => Ok(e),
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

    /// Deletes the staging files a crash left on the server (journaled before each
    /// staged upload). Returns `false` if the server could not be reached.
    pub(super) async fn remove_stale_staging(&self) -> bool {
        let Ok(left) = self.meta.settings_with_prefix(STAGING_KEY) else {
            return true;
        };
        for (key, path) in left {
            let parts = path.split('/').filter(|p| !p.is_empty());
            let Ok(staging) = RemotePath::from_parts(parts) else {
                let _ = self.meta.set_setting(&key, None);
                continue;
            };
            match self.remote.delete(&staging, Precondition::None).await {
                Ok(()) => info!(%staging, "removed a staging file an interrupted upload left"),
                Err(RemoteError::NotFound) => {}
                Err(e) if e.is_transient() => return false,
                Err(e) => warn!(%staging, error = %e, "could not remove a staging file"),
            }
            let _ = self.meta.set_setting(&key, None);
        }
        true
    }
}
