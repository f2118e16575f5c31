//! What a daemon answers to `status`, the same on every platform.

use std::path::PathBuf;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use edrive_fs_core::drive::Choice;
use edrive_fs_core::{Drive, DriveStatus, FsError, Kind, NetState, ROOT_INO};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::control::Request;
use crate::pin_hydration::spawn_pin_hydration;

/// What the daemon tells about itself.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// The server URL (no credentials).
    pub url: String,
    /// The absolute mountpoint.
    pub mountpoint: PathBuf,
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// The daemon's log file.
    pub log_file: PathBuf,
    /// The mount's credentials (`edrive login`).
    pub keeper: Arc<crate::login::Keeper>,
}

/// The reply to `Request::Status`.
pub fn status_json(drive: &Drive, info: &MountInfo) -> serde_json::Value {
    let pins = drive.pin_progress();
    let kr = drive.kernel_reads();
    match drive.status() {
        Ok(s) => json!({
            "ok": true,
            "pid": std::process::id(),
            "url": info.url,
            "server": server_json(&drive.capabilities()),
            "mountpoint": info.mountpoint,
            "state": mount_state(drive, &s),
            "link": link_json(drive.net_state()),
            "auth": info.keeper.summary(),
            "suspended": match drive.suspended() {
                None => serde_json::Value::Null,
                Some(false) => json!("on"),
                Some(true) => json!("offline"),
            },
            "pins": {
                "running": pins.running,
                "files": pins.files,
                "done": pins.done,
                "bytes": pins.bytes,
                "done_bytes": pins.done_bytes,
                "failed": pins.failed,
            },
            "transfer": {
                "pending": s.sync.pending,
                "pending_bytes": s.sync.pending_bytes,
                "uploading": drive.uploads_running().max(usize::from(s.sync.current.is_some())),
                "downloads": s.downloads,
                "upload_rate_bytes_per_s": s.sync.rate,
            },
            "cache_dir": info.cache_dir,
            "log_file": info.log_file,
            "cache": {
                "used_bytes": s.cache.used_bytes,
                "limit_bytes": s.cache.limit_bytes,
                "over_limit_bytes": s.cache.over_limit_bytes,
                "pinned_bytes": s.cache.pinned_bytes,
                "dirty_bytes": s.cache.dirty_bytes,
                "partial_bytes": s.cache.partial_bytes,
                "open_files": s.cache.open_blobs,
            },
            "kernel_reads": {
                "available": kr.available,
                "open": kr.open,
                "opened": kr.opened,
            },
            "hydrated_files": s.hydrated_files,
            "excluded": drive.excluded_paths().unwrap_or_default(),
            "downloads": s.downloads,
            "background_reads_refused": {
                "total": s.background_refused.0,
                "by_program": s.background_refused.1.iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "known_entries": s.known_entries,
            "sync": {
                "pending": s.sync.pending,
                "stuck": s.sync.stuck,
                "pending_bytes": s.sync.pending_bytes,
                "uploading": s.sync.current.as_ref().map(|(path, sent, total)| json!({
                    "path": path, "sent_bytes": sent, "total_bytes": total,
                })),
                "last_error": s.sync.last_error,
                "syncing": s.sync.syncing,
                "attention": {
                    "held": s.sync.attention.held,
                    "refused": s.sync.attention.refused,
                    "conflicts": s.sync.attention.conflicts,
                },
                "problems": drive.problems(20).unwrap_or_default().into_iter()
                    .map(|(path, why)| json!({"path": path, "problem": why.to_string()}))
                    .collect::<Vec<_>>(),
            },
        }),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// How many recent sync events a snapshot carries.
const EVENTS: usize = 10;

/// One snapshot: the `status` reply, the files in conflict (waiting for a choice) and the
/// latest sync events (conflict copies made, resolutions, …).
pub fn snapshot(drive: &Drive, info: &MountInfo) -> serde_json::Value {
    let mut s = status_json(drive, info);
    if let serde_json::Value::Object(map) = &mut s {
        let (conflicts, events) = drive.conflicts(EVENTS).unwrap_or_default();
        map.insert("conflicts".into(), json!(conflicts));
        map.insert("events".into(), json!(events));
    }
    s
}

/// What was learnt about the server, and what the write-back does about it.
fn server_json(c: &edrive_fs_core::remote::Capabilities) -> serde_json::Value {
    json!({
        "probed": c.probed,
        "etags": c.etags,
        "if_match": c.if_match,
        "if_none_match": c.if_none_match,
        "delete_if_match": c.delete_if_match,
        "move_no_overwrite": c.move_no_overwrite,
        "etag_survives_move": c.etag_survives_move,
        "mtime": c.mtime,
        "ranges": c.ranges,
        "conditional_writes": c.conditional_writes(),
        "note": c.note,
        // What protects a change made on the server meanwhile from being overwritten.
        "write_check": if c.conditional_writes() {
            "server (If-Match / If-None-Match)"
        } else if c.move_no_overwrite == Some(true) && c.etag_survives_move != Some(false) {
            "client: version compared, upload staged, the replaced version set aside and \
             checked, ours moved in with Overwrite: F"
        } else {
            "client: version compared before the upload and again before a staged upload \
             is moved into place; unguarded for one round trip"
        },
    })
}

/// The mount in one word: `auth-required`, `offline`, `suspended`, `transferring`,
/// `attention` or `synced`, in that order of precedence. `transferring` while something
/// can still move; `attention` when every change left waits for the user (held
/// deletions, refusals, conflicts); `synced` when nothing is pending.
fn mount_state(drive: &Drive, s: &DriveStatus) -> &'static str {
    let waiting = s.sync.attention.total();
    match drive.net_state() {
        NetState::AuthRequired { .. } => "auth-required",
        NetState::Offline { .. } => "offline",
        NetState::Online if drive.suspended().is_some() => "suspended",
        NetState::Online
            if s.sync.pending > waiting || s.sync.current.is_some() || s.downloads > 0 =>
        {
            "transferring"
        }
        NetState::Online if waiting > 0 => "attention",
        NetState::Online => "synced",
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The link to the server, with since when and the next retry when it is down.
fn link_json(state: NetState) -> serde_json::Value {
    match state {
        NetState::Online => json!({"state": "online"}),
        NetState::Offline {
            since,
            next_probe,
            reason,
        } => json!({
            "state": "offline",
            "since_unix": unix(since),
            "next_retry_in_s": next_probe
                .duration_since(SystemTime::now())
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "reason": reason,
        }),
        NetState::AuthRequired { since, status } => json!({
            "state": "auth-required",
            "since_unix": unix(since),
            "http_status": status,
        }),
    }
}

/// The inode at `path` (components below the mountpoint).
async fn resolve(drive: &Drive, path: &[String]) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for name in path {
        ino = drive.lookup(ino, name).await?.ino;
    }
    Ok(ino)
}

/// How the daemon's main loop answers an unmount request: `Ok` once unmounted.
pub type UnmountReply = oneshot::Sender<Result<(), String>>;

/// Answers one control request line (both platforms' channels): the reply line, with its
/// newline. Unmount requests are handed to the main loop through `unmount_tx`.
pub async fn answer(
    line: &str,
    drive: &Arc<Drive>,
    info: &MountInfo,
    unmount_tx: mpsc::Sender<UnmountReply>,
) -> anyhow::Result<String> {
    let reply = match serde_json::from_str::<Request>(line) {
        // Not the parser's message: it may quote the request, and a login carries secrets.
        Err(e) => json!({"ok": false, "error": format!(
            "bad request ({:?} error at column {})", e.classify(), e.column()
        )}),
        Ok(Request::Status) => status_json(drive, info),
        // Channels that do not stream (the named pipe) answer a subscription once.
        Ok(Request::Watch { .. }) => snapshot(drive, info),
        Ok(Request::Sync) => {
            drive.request_sync();
            json!({"ok": true})
        }
        Ok(Request::Suspend { offline }) => match drive.set_suspended(true, offline) {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Ok(Request::Resume) => match drive.set_suspended(false, false) {
            Ok(()) => {
                spawn_pin_hydration(drive);
                json!({"ok": true})
            }
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Ok(Request::Pin { path }) => match async {
            drive.refuse_if_excluded(&path).await?;
            resolve(drive, &path).await
        }
        .await
        {
            Ok(ino) => match drive.pin(ino) {
                Ok(_) => {
                    spawn_pin_hydration(drive);
                    json!({"ok": true})
                }
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Ok(Request::Unpin { path }) => {
            match resolve(drive, &path).await.and_then(|ino| drive.unpin(ino)) {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        Ok(Request::Free { path }) => {
            match resolve(drive, &path).await.and_then(|ino| drive.free(ino)) {
                Ok(f) => json!({
                    "ok": true,
                    "freed_bytes": f.freed_bytes,
                    "dirty_bytes": f.dirty_bytes,
                    "pinned_bytes": f.pinned_bytes,
                    "open_bytes": f.open_bytes,
                }),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        Ok(Request::Conflicts) => match drive.conflicts(50) {
            Ok((conflicts, events)) => {
                // Every other change that does not move, with why: resolvable too.
                let stuck: Vec<serde_json::Value> = drive
                    .problems(1000)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, why)| *why != edrive_fs_core::meta::Problem::Conflict)
                    .map(|(path, why)| json!({"path": path, "problem": why.to_string()}))
                    .collect();
                json!({"ok": true, "conflicts": conflicts, "stuck": stuck, "events": events})
            }
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Ok(Request::Resolve {
            path,
            choice,
            save_as,
        }) => {
            let save = choice == "save-as";
            let choice = match choice.as_str() {
                "use-local" => Some(Choice::UseLocal),
                // A refused change given up: the server's version back (the local bytes
                // are kept in the recovery folder all the same).
                "use-remote" | "discard" | "save-as" => Some(Choice::UseRemote),
                "keep-both" => Some(Choice::KeepBoth),
                _ => None,
            };
            // A path the mount no longer shows may be a deletion the server did not take.
            let target = match resolve(drive, &path).await {
                Err(FsError::NotFound) => match drive.at_server_path(&path) {
                    Ok(Some(ino)) => Ok(ino),
                    Ok(None) => Err(FsError::NotFound),
                    Err(e) => Err(e),
                },
                other => other,
            };
            match (choice, target) {
                (None, _) => json!({"ok": false, "error": "unknown choice"}),
                (Some(c), Ok(ino)) => {
                    let saved = match (save, &save_as) {
                        (false, _) => Ok(None),
                        (true, None) => Err(FsError::Invalid("--save-as needs a path")),
                        (true, Some(dest)) => drive.save_local_copy(ino, dest).map(Some),
                    };
                    match saved {
                        Err(e) => json!({"ok": false, "error": e.to_string()}),
                        Ok(saved) => match drive.resolve(ino, c).await {
                            Ok(said) => json!({"ok": true, "message": match (saved, &save_as) {
                                (Some(n), Some(dest)) => format!(
                                    "{said}; the local version ({n} bytes) is saved as {}",
                                    dest.display()
                                ),
                                _ => said,
                            }}),
                            Err(e) => json!({"ok": false, "error": e.to_string()}),
                        },
                    }
                }
                (_, Err(e)) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        Ok(Request::Entry { path }) => {
            match resolve(drive, &path)
                .await
                .and_then(|ino| drive.entry_info(ino))
            {
                Ok(e) => json!({
                    "ok": true,
                    "path": format!("/{}", path.join("/")),
                    "mountpoint": info.mountpoint,
                    "kind": match e.kind { Kind::Dir => "folder", Kind::File => "file" },
                    "state": e.state.as_str(),
                    "pinned": e.pinned,
                    "size": e.size,
                    "cached_bytes": e.cached_bytes,
                    "problem": e.problem,
                }),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        Ok(Request::Exclude { path, exclude }) => {
            crate::excluded::answer(drive, &path, exclude).await
        }
        Ok(Request::Deletions { path, action }) => {
            crate::deletions::answer(drive, &path, &action).await
        }
        Ok(Request::Login {
            user,
            password,
            bearer_token,
        }) => match info.keeper.login(drive, user, password, bearer_token).await {
            Ok(outcome) => {
                spawn_pin_hydration(drive);
                match outcome.stored {
                    Ok(file) => json!({"ok": true, "stored": file}),
                    Err(e) => json!({"ok": true, "warning": e.to_string()}),
                }
            }
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Ok(Request::Unmount) => {
            let (tx, rx) = oneshot::channel();
            unmount_tx.send(tx).await?;
            match rx.await {
                Ok(Ok(())) => json!({"ok": true}),
                Ok(Err(e)) => json!({"ok": false, "error": e}),
                Err(_) => json!({"ok": false, "error": "daemon is stopping"}),
            }
        }
    };
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    Ok(out)
}
