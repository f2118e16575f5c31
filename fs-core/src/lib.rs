//! edrive's filesystem core: the drive as the user sees it (lookup, read, listing, state),
//! built on a [`remote::Remote`] server, a SQLite metadata store ([`meta`]) and the bounded
//! content cache (the `edrive-cache` crate).
//!
//! It knows nothing about FUSE or ProjFS: the kernel adapters translate callbacks into calls
//! on [`drive::Drive`], which is why everything here can be tested without a mount. Nor does
//! it know any protocol (no HTTP, no XML): a server is reached only through the
//! [`remote::Remote`] trait of the `edrive-remote` crate; backends such as `edrive-webdav`
//! are chosen and built by the binary.

pub mod connectivity;
pub mod drive;
pub mod error;
pub mod hydrate;
mod locks;
mod logged;
pub mod meta;
pub mod notify;
mod positional;
pub mod ranges;
pub mod readers;
pub mod state;
pub mod sync;

/// The backend boundary (the `edrive-remote` crate), under the name fs-core's modules and
/// its users have always reached it by.
pub use edrive_remote as remote;

pub use connectivity::NetState;
pub use drive::{
    Attr, DirEntry, Drive, DriveOptions, DriveStatus, EntryInfo, KernelReads, ReadPath, SetAttr,
};
pub use error::FsError;
pub use meta::{Kind, Meta, ROOT_INO};
pub use state::EntryState;

/// Locks `m`, also when a panic poisoned it: every state behind these locks stays
/// consistent between statements (SQLite rolls back an unfinished transaction).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
