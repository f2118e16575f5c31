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
}

impl EntryState {
    /// The value of the `user.edrive.state` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::OnlineOnly => "online-only",
            EntryState::Partial => "partial",
            EntryState::Hydrated => "hydrated",
        }
    }
}
