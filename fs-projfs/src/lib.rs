//! edrive's Windows adapter over the Projected File System (ProjFS): the same drive as the
//! FUSE adapter, shown in Explorer as placeholders that hydrate on open.
//!
//! For: serving fs-core's [`edrive_fs_core::Drive`] to ProjFS — directory enumeration,
//! placeholder info, file data, notifications of local changes, and bringing placeholders
//! in line with the server. Not for: filesystem logic (fs-core owns it), the mount daemon
//! or control channel (the `edrive` binary), or cloud-files (cfapi) features such as pin
//! state and Explorer status icons (see `docs/windows.md` for how those fit later).
//!
//! Everything that can be decided without Windows is plain Rust, built and unit-tested on
//! every platform:
//!
//! * [`name_order`] and [`wildcard`] — `PrjFileNameCompare` and `PrjFileNameMatch`
//!   reimplemented from Microsoft's rules (cross-checked against the real functions by
//!   tests that run on Windows);
//! * [`enumeration`] — the enumeration-session state machine;
//! * [`placeholder`] — sizes, FILETIMEs, attributes and version info;
//! * [`notification`] — the mapping from notification sequences to [`notification::CoreOp`]s;
//! * [`mirror`] — carrying those operations into fs-core's write path (through
//!   [`staging`] files);
//! * [`command`] — pending commands, completion and cancellation;
//! * [`filedata`], [`projection`], [`refresh`], [`path`], [`hresult`] — aligned content
//!   streaming, path resolution over `Drive`, server-change decisions, paths and names,
//!   and the one `FsError` → HRESULT table.
//!
//! Only `provider` — the FFI glue over the `windows` crate's
//! `Win32_Storage_ProjectedFileSystem` bindings — is Windows-only. No callback blocks on
//! the network: long work returns `ERROR_IO_PENDING` and completes from the async runtime.

pub mod command;
pub mod enumeration;
pub mod filedata;
pub mod hresult;
pub mod mirror;
pub mod name_order;
pub mod notification;
pub mod path;
pub mod placeholder;
pub mod projection;
pub mod refresh;
pub mod staging;
pub mod wildcard;

#[cfg(windows)]
pub mod provider;

#[cfg(test)]
mod testing;

#[cfg(windows)]
pub use provider::{start, MountConfig, Session, StartError};

/// The name Windows shows for the provider.
pub const PROVIDER_NAME: &str = "edrive";
