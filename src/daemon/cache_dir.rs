//! The mount's cache directory: made private (0700) and locked, so two mounts never share
//! it.

use super::*;

/// Creates `dir` (and parents) and makes it private to the user (mode 0700).
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An exclusive lock on the cache directory, held for the daemon's life, so two mounts
/// never share one.
pub(super) fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path: PathBuf = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a valid open descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            bail!(
                "cache directory {} is in use by another mount",
                dir.display()
            );
        }
    }
    Ok(f)
}
