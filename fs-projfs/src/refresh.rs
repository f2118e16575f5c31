//! Bringing the local disk in line with the server, and freeing space: what the provider
//! asks of `PrjUpdateFileIfNeeded` and `PrjDeleteFile`, and how it reads their answers.
//!
//! Both are called with `PRJ_UPDATE_NONE`, never with the `ALLOW_DIRTY_*` flags: ProjFS then
//! refuses to touch a file with local changes and says why (`PRJ_UPDATE_FAILURE_CAUSES`),
//! and the provider additionally skips paths its [`crate::notification::Tracker`] reports
//! dirty. A local change is never lost to a server change or to freeing space.

use crate::hresult::{win32, Hresult};

/// `PRJ_UPDATE_NONE`: the only update flags this provider uses.
pub const UPDATE_FLAGS: i32 = 0;

/// `PRJ_UPDATE_FAILURE_CAUSE_DIRTY_METADATA`.
pub const CAUSE_DIRTY_METADATA: i32 = 1;
/// `PRJ_UPDATE_FAILURE_CAUSE_DIRTY_DATA`.
pub const CAUSE_DIRTY_DATA: i32 = 2;
/// `PRJ_UPDATE_FAILURE_CAUSE_TOMBSTONE`.
pub const CAUSE_TOMBSTONE: i32 = 4;
/// `PRJ_UPDATE_FAILURE_CAUSE_READ_ONLY`.
pub const CAUSE_READ_ONLY: i32 = 8;

/// What the server says changed about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteChange {
    /// New content or metadata: update the placeholder (`PrjUpdateFileIfNeeded`).
    Modified,
    /// Gone from the server: remove the placeholder (`PrjDeleteFile`).
    Deleted,
}

/// What to do for a request about one path, decided before calling ProjFS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Call `PrjUpdateFileIfNeeded` with the new placeholder info.
    Update,
    /// Call `PrjDeleteFile` (a deletion on the server, or freeing space: the file becomes
    /// virtual again and is re-projected from the listing).
    Delete,
    /// Leave it: the path has local changes.
    SkipDirty,
}

/// The plan for a server change of a path (`dirty` from the tracker).
pub fn plan_remote_change(change: RemoteChange, dirty: bool) -> Plan {
    match (dirty, change) {
        (true, _) => Plan::SkipDirty,
        (false, RemoteChange::Modified) => Plan::Update,
        (false, RemoteChange::Deleted) => Plan::Delete,
    }
}

/// The plan for freeing the local space of a path.
pub fn plan_free_up(dirty: bool) -> Plan {
    if dirty {
        Plan::SkipDirty
    } else {
        Plan::Delete
    }
}

/// How an update or delete ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or nothing was on disk to change (never projected yet, or already gone).
    Done,
    /// Not done: the file has local changes.
    SkippedDirty,
    /// Not done: the file was deleted locally (a tombstone).
    SkippedTombstone,
    /// Not done: the file is read-only locally.
    SkippedReadOnly,
    /// ProjFS failed for another reason.
    Failed(Hresult),
}

/// Reads the result of `PrjUpdateFileIfNeeded` / `PrjDeleteFile` and its failure causes.
pub fn outcome(result: Hresult, causes: i32) -> Outcome {
    if result.is_ok() {
        return Outcome::Done;
    }
    if causes & (CAUSE_DIRTY_DATA | CAUSE_DIRTY_METADATA) != 0 {
        return Outcome::SkippedDirty;
    }
    if causes & CAUSE_TOMBSTONE != 0 {
        return Outcome::SkippedTombstone;
    }
    if causes & CAUSE_READ_ONLY != 0 {
        return Outcome::SkippedReadOnly;
    }
    match result.win32_code() {
        Some(win32::ERROR_FILE_NOT_FOUND | win32::ERROR_PATH_NOT_FOUND) => Outcome::Done,
        _ => Outcome::Failed(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_paths_are_never_planned() {
        assert_eq!(
            plan_remote_change(RemoteChange::Modified, true),
            Plan::SkipDirty
        );
        assert_eq!(
            plan_remote_change(RemoteChange::Deleted, true),
            Plan::SkipDirty
        );
        assert_eq!(
            plan_remote_change(RemoteChange::Modified, false),
            Plan::Update
        );
        assert_eq!(
            plan_remote_change(RemoteChange::Deleted, false),
            Plan::Delete
        );
        assert_eq!(plan_free_up(true), Plan::SkipDirty);
        assert_eq!(plan_free_up(false), Plan::Delete);
        assert_eq!(UPDATE_FLAGS, 0, "never PRJ_UPDATE_ALLOW_DIRTY_*");
    }

    #[test]
    fn outcomes_from_projfs_answers() {
        // ERROR_FILE_SYSTEM_VIRTUALIZATION_INVALID_OPERATION with a cause.
        let refused = Hresult::from_win32(381);
        assert_eq!(outcome(Hresult::OK, 0), Outcome::Done);
        assert_eq!(outcome(refused, CAUSE_DIRTY_DATA), Outcome::SkippedDirty);
        assert_eq!(
            outcome(refused, CAUSE_DIRTY_METADATA),
            Outcome::SkippedDirty
        );
        assert_eq!(outcome(refused, CAUSE_TOMBSTONE), Outcome::SkippedTombstone);
        assert_eq!(outcome(refused, CAUSE_READ_ONLY), Outcome::SkippedReadOnly);
        assert_eq!(
            outcome(refused, CAUSE_DIRTY_DATA | CAUSE_READ_ONLY),
            Outcome::SkippedDirty
        );
        assert_eq!(outcome(Hresult::FILE_NOT_FOUND, 0), Outcome::Done);
        assert_eq!(outcome(Hresult::from_win32(3), 0), Outcome::Done);
        assert_eq!(
            outcome(Hresult::ACCESS_DENIED, 0),
            Outcome::Failed(Hresult::ACCESS_DENIED)
        );
    }
}
