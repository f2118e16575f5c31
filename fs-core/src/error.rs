//! The filesystem's error type and its one mapping to errno.

use thiserror::Error;

use crate::meta::MetaError;
use crate::remote::{NameError, RemoteError};

/// Why a filesystem operation failed. Every adapter maps it through [`FsError::errno`]
/// (FUSE) or its own single table (ProjFS), never ad hoc.
#[derive(Debug, Error)]
pub enum FsError {
    /// No such entry (locally known or positively absent on the server).
    #[error("no such file or folder")]
    NotFound,
    /// A folder operation on a file.
    #[error("not a folder")]
    NotDir,
    /// A file operation on a folder.
    #[error("is a folder")]
    IsDir,
    /// The operation needs write support this drive does not offer (yet).
    #[error("read-only drive")]
    ReadOnly,
    /// A name that cannot exist on the server.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// The extended attribute does not exist.
    #[error("no such attribute")]
    NoAttr,
    /// Extended attributes of this namespace (anything but `user.`) are not kept: there
    /// are no security labels, ACLs or capabilities on the server.
    #[error("attribute namespace not supported")]
    XattrNamespace,
    /// An extended attribute was refused (see [`XattrError`]).
    #[error("extended attribute: {0}")]
    Xattr(#[from] XattrError),
    /// The file changed on the server after it was opened; open it again.
    #[error("changed on the server; open it again")]
    Stale,
    /// The file handle is not open.
    #[error("bad file handle")]
    BadHandle,
    /// The name is taken.
    #[error("already exists")]
    Exists,
    /// The folder is not empty.
    #[error("folder not empty")]
    NotEmpty,
    /// The request makes no sense (a folder moved into itself, an unsupported flag).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A kind of entry the drive cannot store (a fifo, socket or device node).
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// The handle was not opened for this (a write on a read-only handle).
    #[error("handle not open for writing")]
    NotWritable,
    /// The file is in use in a way that excludes this (written while another program
    /// reads it through the kernel's passthrough).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// A background reader (a thumbnailer, an indexer) opened content that is not local:
    /// it gets no download (see [`crate::readers`]).
    #[error("content not on this device; background programs do not download it")]
    NotLocal,
    /// The server failed or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The content cache failed.
    #[error("cache: {0}")]
    Cache(#[from] edrive_cache::CacheError),
    /// Local I/O failed.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Why an extended attribute could not be set or removed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum XattrError {
    /// The name is longer than 255 bytes.
    #[error("name longer than 255 bytes")]
    NameTooLong,
    /// The value is longer than 64 KiB.
    #[error("value longer than 64 KiB")]
    ValueTooLarge,
    /// The entry's attributes would take more than 256 KiB together.
    #[error("the entry's attributes would take more than 256 KiB")]
    NoRoom,
    /// One of edrive's own attributes, which cannot be set (but `user.edrive.pin`) or
    /// removed.
    #[error("edrive's own attributes are read-only (but user.edrive.pin)")]
    ReadOnly,
}

impl FsError {
    /// The errno the kernel should see (FUSE, so Unix only; ProjFS has its own table).
    #[cfg(unix)]
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::InvalidName(NameError::TooLong) => libc::ENAMETOOLONG,
            FsError::InvalidName(_) => libc::EINVAL,
            FsError::NoAttr => libc::ENODATA,
            // ENOTSUP, not ENODATA: `ls -l` then stops asking for SELinux labels and ACLs
            // for the rest of the mount's entries (coreutils caches it per device),
            // instead of two round trips to the daemon per entry.
            FsError::XattrNamespace => libc::EOPNOTSUPP,
            FsError::Xattr(XattrError::NameTooLong) => libc::ERANGE,
            FsError::Xattr(XattrError::ValueTooLarge) => libc::E2BIG,
            FsError::Xattr(XattrError::NoRoom) => libc::ENOSPC,
            FsError::Xattr(XattrError::ReadOnly) => libc::EPERM,
            FsError::BadHandle | FsError::NotWritable => libc::EBADF,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NotSupported(_) => libc::EPERM,
            FsError::Stale => libc::ESTALE,
            FsError::Busy(_) => libc::ETXTBSY,
            // As Windows' cloud files refuse a blocked app's hydration: access denied.
            FsError::NotLocal => libc::EACCES,
            FsError::Remote(RemoteError::NotFound) => libc::ENOENT,
            FsError::Remote(RemoteError::Auth(_)) => libc::EACCES,
            FsError::Remote(RemoteError::InsufficientStorage) => libc::ENOSPC,
            // Offline (or suspended offline): the content is not here and cannot come.
            FsError::Remote(RemoteError::Unreachable(_)) => libc::ENETUNREACH,
            FsError::Remote(_) => libc::EIO,
            FsError::Meta(_) | FsError::Cache(_) | FsError::Io(_) => libc::EIO,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(FsError::NotFound.errno(), libc::ENOENT);
        assert_eq!(
            FsError::Remote(RemoteError::Auth(401)).errno(),
            libc::EACCES
        );
        assert_eq!(
            FsError::Remote(RemoteError::Malformed("x".into())).errno(),
            libc::EIO
        );
        assert_eq!(
            FsError::Remote(RemoteError::ShortBody {
                expected: 2,
                got: 1
            })
            .errno(),
            libc::EIO
        );
        assert_eq!(FsError::NotSupported("fifo").errno(), libc::EPERM);
        assert_eq!(
            FsError::Xattr(XattrError::NameTooLong).errno(),
            libc::ERANGE
        );
        assert_eq!(
            FsError::Xattr(XattrError::ValueTooLarge).errno(),
            libc::E2BIG
        );
        assert_eq!(FsError::Xattr(XattrError::NoRoom).errno(), libc::ENOSPC);
        assert_eq!(FsError::NoAttr.errno(), libc::ENODATA);
        assert_eq!(FsError::Exists.errno(), libc::EEXIST);
        assert_eq!(
            FsError::InvalidName(NameError::TooLong).errno(),
            libc::ENAMETOOLONG
        );
    }
}
