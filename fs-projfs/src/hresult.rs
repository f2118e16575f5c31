//! HRESULTs as ProjFS callbacks return them, and the one mapping from [`FsError`] to them.
//!
//! Every callback answers with an HRESULT. Failures are Win32 error codes wrapped by
//! `HRESULT_FROM_WIN32`; ProjFS gives some of them a meaning of their own:
//! `ERROR_FILE_NOT_FOUND` is "this name does not exist" (never a transient failure),
//! `ERROR_IO_PENDING` is "completed later through `PrjCompleteCommand`", and
//! `ERROR_INSUFFICIENT_BUFFER` from a directory enumeration is "not even one entry fit".

use std::fmt;

use edrive_fs_core::remote::{NameError, RemoteError};
use edrive_fs_core::FsError;

/// Win32 error codes this crate uses (winerror.h).
pub mod win32 {
    /// The system cannot find the file specified.
    pub const ERROR_FILE_NOT_FOUND: u32 = 2;
    /// The system cannot find the path specified.
    pub const ERROR_PATH_NOT_FOUND: u32 = 3;
    /// The directory is not empty.
    pub const ERROR_DIR_NOT_EMPTY: u32 = 145;
    /// Cannot create a file when that file already exists.
    pub const ERROR_ALREADY_EXISTS: u32 = 183;
    /// Access is denied.
    pub const ERROR_ACCESS_DENIED: u32 = 5;
    /// The handle is invalid.
    pub const ERROR_INVALID_HANDLE: u32 = 6;
    /// Not enough memory resources are available.
    pub const ERROR_OUTOFMEMORY: u32 = 14;
    /// The media is write protected.
    pub const ERROR_WRITE_PROTECT: u32 = 19;
    /// Another process has locked a portion of the file.
    pub const ERROR_SHARING_VIOLATION: u32 = 32;
    pub const ERROR_LOCK_VIOLATION: u32 = 33;
    /// The request is not supported.
    pub const ERROR_NOT_SUPPORTED: u32 = 50;
    /// An unexpected network error occurred.
    pub const ERROR_UNEXP_NET_ERR: u32 = 59;
    /// The parameter is incorrect.
    pub const ERROR_INVALID_PARAMETER: u32 = 87;
    /// There is not enough space on the disk.
    pub const ERROR_DISK_FULL: u32 = 112;
    /// The data area passed to a system call is too small.
    pub const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
    /// The file name, directory name, or volume label syntax is incorrect.
    pub const ERROR_INVALID_NAME: u32 = 123;
    /// The file name or extension is too long.
    pub const ERROR_FILENAME_EXCED_RANGE: u32 = 206;
    /// The directory name is invalid.
    pub const ERROR_DIRECTORY: u32 = 267;
    /// An operation is not supported on a directory.
    pub const ERROR_DIRECTORY_NOT_SUPPORTED: u32 = 336;
    /// Overlapped I/O operation is in progress.
    pub const ERROR_IO_PENDING: u32 = 997;
    /// The volume for a file has been externally altered so that the opened file is no
    /// longer valid.
    pub const ERROR_FILE_INVALID: u32 = 1006;
    /// The request could not be performed because of an I/O device error.
    pub const ERROR_IO_DEVICE: u32 = 1117;
    /// Element not found.
    pub const ERROR_NOT_FOUND: u32 = 1168;
    /// The operation was canceled by the user.
    pub const ERROR_CANCELLED: u32 = 1223;
    /// The network location cannot be reached.
    pub const ERROR_NETWORK_UNREACHABLE: u32 = 1231;
}

/// An HRESULT: `S_OK` (0), or a failure (negative).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hresult(pub i32);

impl Hresult {
    /// `S_OK`.
    pub const OK: Hresult = Hresult(0);
    /// The name does not exist (ProjFS: a definite "no such file", not a failure).
    pub const FILE_NOT_FOUND: Hresult = Hresult::from_win32(win32::ERROR_FILE_NOT_FOUND);
    /// The callback completes later through `PrjCompleteCommand`.
    pub const IO_PENDING: Hresult = Hresult::from_win32(win32::ERROR_IO_PENDING);
    /// Not even one directory entry fit the buffer.
    pub const INSUFFICIENT_BUFFER: Hresult = Hresult::from_win32(win32::ERROR_INSUFFICIENT_BUFFER);
    /// The operation is refused.
    pub const ACCESS_DENIED: Hresult = Hresult::from_win32(win32::ERROR_ACCESS_DENIED);
    /// A malformed argument from ProjFS.
    pub const INVALID_PARAMETER: Hresult = Hresult::from_win32(win32::ERROR_INVALID_PARAMETER);
    /// The content changed on the server since the placeholder was written.
    pub const FILE_INVALID: Hresult = Hresult::from_win32(win32::ERROR_FILE_INVALID);
    /// The command was cancelled.
    pub const CANCELLED: Hresult = Hresult::from_win32(win32::ERROR_CANCELLED);
    /// Out of memory (an aligned buffer could not be allocated).
    pub const OUT_OF_MEMORY: Hresult = Hresult::from_win32(win32::ERROR_OUTOFMEMORY);
    /// A local I/O failure.
    pub const IO_DEVICE: Hresult = Hresult::from_win32(win32::ERROR_IO_DEVICE);

    /// `HRESULT_FROM_WIN32(code)`: severity error, facility Win32 (7), the code's low 16 bits.
    pub const fn from_win32(code: u32) -> Hresult {
        if code == 0 {
            Hresult::OK
        } else {
            Hresult(((code & 0xFFFF) | 0x8007_0000) as i32)
        }
    }

    /// Whether this is a success code.
    pub const fn is_ok(self) -> bool {
        self.0 >= 0
    }

    /// The Win32 code inside a `HRESULT_FROM_WIN32` failure.
    pub const fn win32_code(self) -> Option<u32> {
        let bits = self.0 as u32;
        if bits & 0xFFFF_0000 == 0x8007_0000 {
            Some(bits & 0xFFFF)
        } else {
            None
        }
    }
}

impl fmt::Debug for Hresult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0 as u32)
    }
}

impl fmt::Display for Hresult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.win32_code() {
            Some(code) => write!(f, "HRESULT {:#010x} (Win32 error {code})", self.0 as u32),
            None => write!(f, "HRESULT {:#010x}", self.0 as u32),
        }
    }
}

impl From<&FsError> for Hresult {
    /// The single `FsError` → HRESULT table of the ProjFS adapter (the counterpart of
    /// `FsError::errno` for FUSE).
    fn from(e: &FsError) -> Hresult {
        use win32::*;
        let code = match e {
            FsError::NotFound | FsError::Remote(RemoteError::NotFound) => ERROR_FILE_NOT_FOUND,
            FsError::NotDir => ERROR_DIRECTORY,
            FsError::IsDir => ERROR_DIRECTORY_NOT_SUPPORTED,
            FsError::ReadOnly => ERROR_WRITE_PROTECT,
            FsError::InvalidName(NameError::TooLong) => ERROR_FILENAME_EXCED_RANGE,
            FsError::InvalidName(_) => ERROR_INVALID_NAME,
            FsError::NoAttr | FsError::XattrNamespace => ERROR_NOT_FOUND,
            FsError::Xattr(_) => ERROR_NOT_SUPPORTED,
            FsError::BadHandle => ERROR_INVALID_HANDLE,
            FsError::NotWritable => ERROR_ACCESS_DENIED,
            // Windows' own answer to a blocked app's hydration is access denied too.
            FsError::NotLocal => ERROR_ACCESS_DENIED,
            FsError::Exists => ERROR_ALREADY_EXISTS,
            FsError::NotEmpty => ERROR_DIR_NOT_EMPTY,
            FsError::Invalid(_) => ERROR_INVALID_PARAMETER,
            FsError::NotSupported(_) => ERROR_NOT_SUPPORTED,
            FsError::Stale => ERROR_FILE_INVALID,
            FsError::Busy(_) => ERROR_SHARING_VIOLATION,
            FsError::Remote(RemoteError::Auth(_)) => ERROR_ACCESS_DENIED,
            FsError::Remote(RemoteError::InsufficientStorage) => ERROR_DISK_FULL,
            FsError::Remote(RemoteError::Locked(_)) => ERROR_LOCK_VIOLATION,
            FsError::Remote(RemoteError::Unreachable(_)) => ERROR_NETWORK_UNREACHABLE,
            FsError::Remote(_) => ERROR_UNEXP_NET_ERR,
            FsError::Meta(_) | FsError::Cache(_) | FsError::Io(_) => ERROR_IO_DEVICE,
        };
        Hresult::from_win32(code)
    }
}

impl From<FsError> for Hresult {
    fn from(e: FsError) -> Hresult {
        Hresult::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_win32_builds_facility_7_failures() {
        assert_eq!(Hresult::FILE_NOT_FOUND.0 as u32, 0x8007_0002);
        assert_eq!(Hresult::IO_PENDING.0 as u32, 0x8007_03E5);
        assert_eq!(Hresult::INSUFFICIENT_BUFFER.0 as u32, 0x8007_007A);
        assert_eq!(Hresult::from_win32(0), Hresult::OK);
        assert!(!Hresult::FILE_NOT_FOUND.is_ok());
        assert!(Hresult::OK.is_ok());
        assert_eq!(Hresult::IO_PENDING.win32_code(), Some(997));
        assert_eq!(Hresult(0x8000_4005u32 as i32).win32_code(), None); // E_FAIL
        assert_eq!(format!("{:?}", Hresult::FILE_NOT_FOUND), "0x80070002");
    }

    #[test]
    fn fs_errors_map_to_the_documented_codes() {
        let code = |e: FsError| Hresult::from(e).win32_code();
        assert_eq!(code(FsError::NotFound), Some(win32::ERROR_FILE_NOT_FOUND));
        assert_eq!(code(FsError::Remote(RemoteError::NotFound)), Some(2));
        assert_eq!(code(FsError::NotDir), Some(267));
        assert_eq!(code(FsError::IsDir), Some(336));
        assert_eq!(code(FsError::ReadOnly), Some(19));
        assert_eq!(code(FsError::InvalidName(NameError::TooLong)), Some(206));
        assert_eq!(code(FsError::BadHandle), Some(6));
        assert_eq!(code(FsError::Stale), Some(1006));
        assert_eq!(code(FsError::Remote(RemoteError::Auth(403))), Some(5));
        assert_eq!(
            code(FsError::Remote(RemoteError::InsufficientStorage)),
            Some(112)
        );
        assert_eq!(code(FsError::Remote(RemoteError::Locked(None))), Some(33));
        assert_eq!(
            code(FsError::Remote(RemoteError::Unreachable("x".into()))),
            Some(1231)
        );
        assert_eq!(code(FsError::Remote(RemoteError::Status(500))), Some(59));
        assert_eq!(code(FsError::Io(std::io::Error::other("x"))), Some(1117));
    }
}
