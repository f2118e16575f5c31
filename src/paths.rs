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
    std::env::temp_dir().join("edrive-cache")
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

fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edrive");
    }
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        std::env::temp_dir().join(format!("edrive-{uid}"))
    }
    #[cfg(not(unix))]
    {
        std::env::temp_dir().join("edrive")
    }
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

    #[cfg(not(windows))]
    #[test]
    fn mount_fields_unescape() {
        assert_eq!(unescape_mount_field("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_field("/plain"), "/plain");
    }
}
