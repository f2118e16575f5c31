//! Per-entry states as users and file managers see them (`user.edrive.state`).

/// What is local of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Only the name and attributes are local; content is fetched on open.
    OnlineOnly,
    /// A download is in progress; part of the content is local.
    Partial,
    /// The whole content (or, for a folder, its listing) is local.
    Hydrated,
    /// Pinned for offline use, and the whole content is local (never evicted).
    Pinned,
    /// Changed locally; the upload is pending.
    Dirty,
    /// Being uploaded now.
    Uploading,
    /// The server has another version; the local one is kept and not uploaded.
    Conflict,
    /// Locked on the server by someone else (423); retried until the lock goes.
    Locked,
    /// The server is full (507); the file stays local and dirty and is retried.
    NoSpace,
    /// The server refused the write-back; see the log.
    Error,
    /// A name on the ignore list: kept locally, never uploaded.
    LocalOnly,
    /// The server refused the change (403, a read-only space): kept locally, not
    /// retried; `edrive resolve` settles it.
    Refused,
    /// The server does not let this user change it (a read-only space).
    ReadOnly,
    /// A folder excluded on this device: an empty placeholder (`edrive include`).
    Excluded,
}

impl EntryState {
    /// The value of the `user.edrive.state` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::OnlineOnly => "online-only",
            EntryState::Partial => "partial",
            EntryState::Hydrated => "hydrated",
            EntryState::Pinned => "pinned",
            EntryState::Dirty => "dirty",
            EntryState::Uploading => "uploading",
            EntryState::Conflict => "conflict",
            EntryState::Locked => "locked",
            EntryState::NoSpace => "no-space",
            EntryState::Error => "error",
            EntryState::LocalOnly => "local-only",
            EntryState::Refused => "refused",
            EntryState::ReadOnly => "read-only",
            EntryState::Excluded => "excluded",
        }
    }

    /// The state for a write-back problem recorded in the store.
    pub fn from_problem(problem: &crate::meta::Problem) -> EntryState {
        use crate::meta::Problem;
        match problem {
            Problem::Conflict => EntryState::Conflict,
            Problem::Locked { .. } => EntryState::Locked,
            Problem::NoSpace => EntryState::NoSpace,
            // Still going: tried again with backoff (the reason is in `edrive status`).
            Problem::Retrying(_) => EntryState::Dirty,
            Problem::Forbidden(_) => EntryState::Refused,
            // A held deletion has no entry left to show it on; as before the split, an
            // error if asked.
            Problem::Held | Problem::Refused(_) => EntryState::Error,
        }
    }
}
