//! Fetching pinned content in the background once a control request (`pin`, `resume`,
//! `login`, `deletions --restore`) or the daemon's start made some due.

use std::sync::Arc;

use edrive_fs_core::Drive;

/// Fetches pinned content in the background (unless suspended; `resume` starts it again).
pub fn spawn_pin_hydration(drive: &Arc<Drive>) {
    drive.spawn_pin_run();
}
