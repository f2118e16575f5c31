//! What the kernel hears when an operation fails: the one mapping of [`FsError`] to errno
//! (the ProjFS adapter has its one HRESULT table), names that are not UTF-8, and the one
//! place a failed operation is logged.

use std::ffi::OsStr;

use edrive_fs_core::error::{FsError, XattrError};
use edrive_fs_core::remote::{NameError, RemoteError};
use fuser::Errno;
use tracing::{debug, info, warn};

/// The errno for `e`.
fn code(e: &FsError) -> i32 {
    match e {
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

/// A name the kernel passed, as UTF-8. Names on the server are UTF-8, so any other name
/// can neither exist there nor be made: every operation answers it with `EILSEQ`
/// ("invalid or incomplete multibyte or wide character"), which says why.
pub(crate) fn utf8(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or_else(|| {
        debug!(?name, "not UTF-8: EILSEQ");
        Errno::EILSEQ
    })
}

/// Logs the failure of the operation whose span is current, once, and returns its errno.
/// Answers (no such name, no such attribute, name taken) log at debug; refusals and
/// conditions that pass (offline, read-only, stale) at info; broken things (EIO) at warn.
pub(crate) fn failed(e: &FsError) -> Errno {
    let code = code(e);
    match code {
        libc::ENOENT
        | libc::ENODATA
        | libc::EEXIST
        | libc::ENOTEMPTY
        | libc::ENOTDIR
        | libc::EISDIR
        | libc::EOPNOTSUPP
        | libc::ERANGE => debug!(error = %e, errno = code, "failed"),
        libc::EIO => warn!(error = %e, errno = code, "failed"),
        _ => info!(error = %e, errno = code, "failed"),
    }
    Errno::from_i32(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let cases: Vec<(FsError, i32)> = vec![
            (FsError::NotFound, libc::ENOENT),
            (FsError::Remote(RemoteError::Auth(401)), libc::EACCES),
            (
                FsError::Remote(RemoteError::Malformed("x".into())),
                libc::EIO,
            ),
            (
                FsError::Remote(RemoteError::ShortBody {
                    expected: 2,
                    got: 1,
                }),
                libc::EIO,
            ),
            (FsError::NotSupported("fifo"), libc::EPERM),
            (FsError::Xattr(XattrError::NameTooLong), libc::ERANGE),
            (FsError::Xattr(XattrError::ValueTooLarge), libc::E2BIG),
            (FsError::Xattr(XattrError::NoRoom), libc::ENOSPC),
            (FsError::NoAttr, libc::ENODATA),
            (FsError::Exists, libc::EEXIST),
            (FsError::InvalidName(NameError::TooLong), libc::ENAMETOOLONG),
            (
                FsError::Remote(RemoteError::Unreachable("x".into())),
                libc::ENETUNREACH,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(failed(&e), Errno::from_i32(want), "{e:?}");
        }
    }

    #[test]
    fn names_that_are_not_utf8_give_one_errno() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(utf8(OsStr::new("a.txt")), Ok("a.txt"));
        assert_eq!(utf8(OsStr::from_bytes(b"caf\xe9")), Err(Errno::EILSEQ));
    }
}
