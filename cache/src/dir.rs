//! The cache directory layout (`index.db`, `blobs/`, `tmp/`, `work/`, `lock`) and its
//! housekeeping: private modes, the lock, emptying, removing, syncing, and opening files
//! without following symlinks.

use crate::error::CacheError;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
#[cfg(unix)]
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Creates `path` (and missing parents) and sets its mode to 0700, also if it already existed.
/// On Windows the directory inherits the ACL of its parent (`%LOCALAPPDATA%` is per user).
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), CacheError> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(path)
        .map_err(|e| CacheError::io("create directory", path, e))?;
    #[cfg(unix)]
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| CacheError::io("chmod", path, e))?;
    Ok(())
}

/// Creates `path` as an empty file with mode 0600 if missing, and sets the mode to 0600.
pub(crate) fn ensure_private_file(path: &Path) -> Result<(), CacheError> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .map_err(|e| CacheError::io("create", path, e))?;
    #[cfg(unix)]
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| CacheError::io("chmod", path, e))?;
    Ok(())
}

/// Takes an exclusive, non-blocking `flock` on `path` (created if missing); the lock lasts as
/// long as the returned file is open. On Windows the file is opened without sharing instead,
/// which excludes every other open for as long.
#[cfg(unix)]
pub(crate) fn lock_file(path: &Path, dir: &Path) -> Result<File, CacheError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CacheError::io("create", path, e))?;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(CacheError::Busy {
                dir: dir.to_path_buf(),
            });
        }
        return Err(CacheError::io("lock", path, err));
    }
    Ok(file)
}

/// See the Unix version: an open without sharing is Windows' exclusive lock.
#[cfg(windows)]
pub(crate) fn lock_file(path: &Path, dir: &Path) -> Result<File, CacheError> {
    use std::os::windows::fs::OpenOptionsExt;
    /// `ERROR_SHARING_VIOLATION`: another process has the file open.
    const SHARING_VIOLATION: i32 = 32;
    match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .share_mode(0)
        .open(path)
    {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(SHARING_VIOLATION) => Err(CacheError::Busy {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(CacheError::io("create", path, e)),
    }
}

/// Deletes everything inside `dir` (not `dir` itself).
pub(crate) fn empty_dir(dir: &Path) -> Result<usize, CacheError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| CacheError::io("list", dir, e))? {
        let entry = entry.map_err(|e| CacheError::io("list", dir, e))?;
        remove_any(&entry.path())?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes a file, symlink or directory tree at `path` (without following symlinks).
pub(crate) fn remove_any(path: &Path) -> Result<(), CacheError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CacheError::io("stat", path, e)),
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CacheError::io("remove", path, e)),
    }
}

/// Makes the entries of directory `path` durable (`fsync` on the directory). A no-op on
/// Windows, where directories cannot be synced this way and NTFS journals its metadata.
pub(crate) fn sync_dir(path: &Path) -> Result<(), CacheError> {
    #[cfg(unix)]
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| CacheError::io("fsync", path, e))?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens an existing regular file read+write, not following a symlink on Unix.
pub(crate) fn open_read_write(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW);
    options.open(path)
}
