//! Whether this user can mount a FUSE file system, and if not, why in one line with the
//! fix. Root mounts with mount(2) itself. A normal user mounts through the setuid-root
//! `fusermount3`, which opens `/dev/fuse` with the caller's rights: so it needs
//! `/dev/fuse` readable and writable (mode 0666, as udev makes it on a desktop) and
//! `fusermount3` installed setuid root (package fuse3); `--allow-other` also needs
//! `user_allow_other` in `/etc/fuse.conf`.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const DEV_FUSE: &str = "/dev/fuse";

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Why this user cannot mount here (checked before contacting the server), or None when
/// nothing is known to stand in the way. Root is never stopped here.
pub fn preflight(allow_other: bool) -> Option<String> {
    if running_as_root() {
        return None;
    }
    dev_fuse_problem()
        .or_else(helper_problem)
        .or_else(|| (allow_other && !user_allow_other()).then(allow_other_problem))
}

/// A mount failure `err` (fuser's error: for a normal user often fusermount3's stderr)
/// as one line that says what is missing and how to fix it.
pub fn explain(err: &std::io::Error, allow_other: bool) -> String {
    let text = err.to_string();
    if allow_other && text.contains("user_allow_other") {
        return allow_other_problem();
    }
    if !running_as_root() {
        if let Some(why) = dev_fuse_problem().or_else(helper_problem) {
            return why;
        }
    }
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if line.is_empty() {
        "the kernel refused the mount".into()
    } else {
        line
    }
}

fn allow_other_problem() -> String {
    "--allow-other needs the line `user_allow_other` in /etc/fuse.conf (root adds it), or mount without --allow-other".into()
}

/// Whether `/etc/fuse.conf` has an uncommented `user_allow_other`.
fn user_allow_other() -> bool {
    std::fs::read_to_string("/etc/fuse.conf")
        .map(|c| c.lines().any(|l| l.trim() == "user_allow_other"))
        .unwrap_or(false)
}

/// What is wrong with /dev/fuse for this user, if anything.
fn dev_fuse_problem() -> Option<String> {
    let Ok(path) = CString::new(DEV_FUSE) else {
        return None;
    };
    // SAFETY: a valid NUL-terminated path; access has no other preconditions.
    if unsafe { libc::access(path.as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
        return None;
    }
    let err = std::io::Error::last_os_error();
    Some(match std::fs::metadata(DEV_FUSE) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
            "{DEV_FUSE} does not exist: load the fuse module (as root: modprobe fuse), or pass the device into the container"
        ),
        Ok(md) => format!(
            "{DEV_FUSE} is not readable and writable for you (mode {:04o}, owner uid {}): a normal user needs it 0666, as udev makes it on a desktop (as root: chmod 0666 {DEV_FUSE}); or mount as root",
            md.mode() & 0o7777,
            md.uid()
        ),
        Err(_) => format!("{DEV_FUSE} cannot be opened ({err}); mount as root"),
    })
}

/// What is wrong with the setuid helper `fusermount3`, if anything.
fn helper_problem() -> Option<String> {
    let Some(helper) = fusermount3() else {
        return Some(
            "fusermount3 is missing, and a normal user mounts through it: install fuse3 (apt-get install fuse3)".into(),
        );
    };
    match std::fs::metadata(&helper) {
        Ok(md) if md.uid() == 0 && md.mode() & 0o4000 != 0 => None,
        _ => Some(format!(
            "{} is not setuid root, and a normal user mounts through it: as root, chmod u+s {} (the fuse3 package installs it so)",
            helper.display(),
            helper.display()
        )),
    }
}

/// The helper fuser runs: `$FUSERMOUNT_PATH`, else the first `fusermount3` (or FUSE 2's
/// `fusermount`) on `$PATH`, in `/usr/bin` or in `/bin`.
fn fusermount3() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let dirs: Vec<PathBuf> = on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .collect();
    ["fusermount3", "fusermount"].iter().find_map(|name| {
        dirs.iter()
            .map(|d| d.join(name))
            .find(|p| Path::new(p).is_file())
    })
}
