//! What a daemon answers to `status`, the same on every platform.

use std::path::PathBuf;

use edrive_fs_core::Drive;
use serde_json::json;

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
}

/// The reply to `Request::Status`.
pub fn status_json(drive: &Drive, info: &MountInfo) -> serde_json::Value {
    match drive.status() {
        Ok(s) => json!({
            "ok": true,
            "pid": std::process::id(),
            "url": info.url,
            "mountpoint": info.mountpoint,
            "state": "online",
            "cache_dir": info.cache_dir,
            "log_file": info.log_file,
            "cache": {
                "used_bytes": s.cache.used_bytes,
                "limit_bytes": s.cache.limit_bytes,
                "over_limit_bytes": s.cache.over_limit_bytes,
                "pinned_bytes": s.cache.pinned_bytes,
                "dirty_bytes": s.cache.dirty_bytes,
                "open_files": s.cache.open_blobs,
            },
            "hydrated_files": s.hydrated_files,
            "downloads": s.downloads,
            "known_entries": s.known_entries,
        }),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}
