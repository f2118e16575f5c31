//! edrive's FUSE adapter: decodes kernel requests, calls [`edrive_fs_core::Drive`], and maps
//! its errors to errno through the one table in `errno`. No filesystem logic lives
//! here — that is what keeps the drive testable without FUSE.
//!
//! Requests are served by several kernel-reading threads (fuser's `n_threads`), so a read
//! waiting for a slow download never blocks a listing or a read of another file.

#[cfg(unix)]
mod adapter;
#[cfg(unix)]
mod caller;
#[cfg(unix)]
mod errno;
#[cfg(unix)]
mod mount;
#[cfg(unix)]
mod passthrough;

#[cfg(unix)]
pub use adapter::FuseFs;
#[cfg(unix)]
pub use mount::{mount, MountConfig};
