//! Where a mount keeps its things: cache directory, control socket, and how a mountpoint
//! is named so that every command finds the same daemon.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The absolute form of a mountpoint, resolved without touching the mountpoint itself
/// (which may be a hung mount): only its parent is canonicalized.
pub fn absolute_mountpoint(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Ok(abs);
    };
    let parent = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    Ok(parent.join(name))
}

fn user_cache_base() -> PathBuf {
    if cfg!(windows) {
        if let Some(d) = std::env::var_os("LOCALAPPDATA") {
            return PathBuf::from(d).join("edrive").join("cache");
        }
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edrive");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".cache").join("edrive");
    }
    #[cfg(unix)]
    {
        std::env::temp_dir().join(format!("edrive-cache-{}", current_uid()))
    }
    #[cfg(not(unix))]
    {
        std::env::temp_dir().join("edrive-cache")
    }
}

/// The default cache directory of the mount of `url` at `mountpoint`: one per (server,
/// mountpoint), so two mounts never share one and a remount finds its content again.
pub fn default_cache_dir(url: &str, mountpoint: &Path) -> PathBuf {
    let host: String = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .map(|authority| authority.rsplit('@').next().unwrap_or(authority))
        .filter(|s| !s.is_empty())
        .unwrap_or("server")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let key = format!("{url}\n{}", mountpoint.display());
    user_cache_base().join(format!("{host}-{}", short_hash(&key)))
}

/// Where the control sockets live: `$XDG_RUNTIME_DIR/edrive`; without it (su, cron, a
/// user without a login session) the session's `/run/user/UID/edrive` when that folder
/// exists and is the user's, else `$TMPDIR/edrive-UID` (see [`check_runtime_dir`]).
fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edrive");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = current_uid();
        let run = PathBuf::from(format!("/run/user/{uid}"));
        if std::fs::symlink_metadata(&run).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
            return run.join("edrive");
        }
        std::env::temp_dir().join(format!("edrive-{uid}"))
    }
    #[cfg(not(unix))]
    {
        std::env::temp_dir().join("edrive")
    }
}

#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Creates the folder of the control sockets (mode 0700) unless it exists, and refuses
/// one that is not a real folder of this user's: in a shared `/tmp` another user could
/// have made it first, to receive what is sent to a daemon (`login` sends credentials).
#[cfg(unix)]
pub fn check_runtime_dir(create: bool) -> std::io::Result<PathBuf> {
    let dir = runtime_dir();
    check_private_dir(&dir, create)?;
    Ok(dir)
}

/// [`check_runtime_dir`] for any folder `dir`.
#[cfg(unix)]
fn check_private_dir(dir: &Path, create: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if create {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    let md = std::fs::symlink_metadata(dir)?;
    let uid = current_uid();
    if !md.is_dir() || md.uid() != uid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a folder of yours (uid {uid}); remove it or set XDG_RUNTIME_DIR to one",
                dir.display()
            ),
        ));
    }
    if create && md.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The control socket of the mount at `mountpoint` (absolute).
pub fn socket_path(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!(
        "{}.sock",
        short_hash(&mountpoint.display().to_string())
    ))
}

/// The control sockets of the mounts running now (and stale ones a crashed daemon left),
/// for the panel icon to find every mount.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn control_sockets() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(runtime_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    out.sort();
    out
}

/// Where the panel icon writes its icons (`IconThemePath`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn tray_icon_dir() -> PathBuf {
    runtime_dir().join("tray-icons")
}

/// The named pipe of the control channel of the mount at `mountpoint` (absolute), on
/// Windows: `\\.\pipe\edrive-<16 hex digits of sha256(mountpoint)>`.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn pipe_name(mountpoint: &Path) -> String {
    format!(
        r"\\.\pipe\edrive-{}",
        short_hash(&mountpoint.display().to_string())
    )
}

/// Whether `mountpoint` (absolute) is a mountpoint now, per /proc/mounts.
#[cfg(not(windows))]
pub fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return false;
    };
    let want = mountpoint.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1).map(unescape_mount_field).as_deref() == Some(&want))
}

/// Whether `mountpoint` is a mountpoint now: always false on Windows. A ProjFS
/// virtualization root is an ordinary folder (marked by a reparse point that stays after the
/// provider stops), so there is no mount table to consult and a root left by an earlier run
/// is no reason to refuse; a running daemon is found through its named pipe instead.
#[cfg(windows)]
pub fn is_mounted(_mountpoint: &Path) -> bool {
    false
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
#[cfg(not(windows))]
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dirs_differ_per_mountpoint_and_server() {
        let a = default_cache_dir("http://h:8080/dav/", Path::new("/mnt/a"));
        let b = default_cache_dir("http://h:8080/dav/", Path::new("/mnt/b"));
        let c = default_cache_dir("http://other/dav/", Path::new("/mnt/a"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            default_cache_dir("http://h:8080/dav/", Path::new("/mnt/a"))
        );
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("h_8080-"));
    }

    #[test]
    fn pipe_names_are_stable_per_mountpoint() {
        let a = pipe_name(Path::new("/mnt/a"));
        assert!(a.starts_with(r"\\.\pipe\edrive-"));
        assert_eq!(a.len(), r"\\.\pipe\edrive-".len() + 16);
        assert_eq!(a, pipe_name(Path::new("/mnt/a")));
        assert_ne!(a, pipe_name(Path::new("/mnt/b")));
    }

    #[cfg(unix)]
    #[test]
    fn socket_folders_are_private_and_never_another_users() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("edrive-fresh");
        check_private_dir(&fresh, true).unwrap();
        let md = std::fs::metadata(&fresh).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o777), (current_uid(), 0o700));
        // An open folder of ours is closed.
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o777)).unwrap();
        check_private_dir(&fresh, true).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        // A symlink, even to a folder of ours, is refused; so is a missing folder when
        // only looking.
        let link = tmp.path().join("edrive-link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(check_private_dir(&link, true).is_err());
        assert!(check_private_dir(&tmp.path().join("missing"), false).is_err());
        // Another user's folder (only root can make one here).
        if current_uid() == 0 {
            let theirs = tmp.path().join("edrive-theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = check_private_dir(&theirs, true).unwrap_err();
            assert!(
                err.to_string().contains("is not a folder of yours"),
                "{err}"
            );
        }
    }

    #[cfg(not(windows))]
    #[test]
    fn mount_fields_unescape() {
        assert_eq!(unescape_mount_field("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_field("/plain"), "/plain");
    }
}
