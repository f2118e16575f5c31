//! The cache directory layout (`index.db`, `blobs/`, `tmp/`, `lock`) and its housekeeping.

use crate::error::CacheError;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Creates `path` (and missing parents) and sets its mode to 0700, also if it already existed.
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), CacheError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| CacheError::io("create directory", path, e))?;
    fs::set_permissions(path, Permissions::from_mode(0o700))
        .map_err(|e| CacheError::io("chmod", path, e))
}

/// Creates `path` as an empty file with mode 0600 if missing, and sets the mode to 0600.
pub(crate) fn ensure_private_file(path: &Path) -> Result<(), CacheError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CacheError::io("create", path, e))?;
    fs::set_permissions(path, Permissions::from_mode(0o600))
        .map_err(|e| CacheError::io("chmod", path, e))
}

/// Takes an exclusive, non-blocking `flock` on `path` (created if missing); the lock lasts as
/// long as the returned file is open.
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
