//! Mounting a drive with fuser's pure-Rust mount (no libfuse; `fusermount3` when not root).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edrive_fs_core::notify::KernelCache;
use edrive_fs_core::readers::ReaderPolicy;
use edrive_fs_core::Drive;
use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier, Session, SessionACL};

use crate::adapter::FuseFs;

/// How the kernel sees the mount.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Threads reading kernel requests.
    pub threads: usize,
    /// How long the kernel may trust attributes and names before asking again.
    pub attr_ttl: Duration,
    /// The name shown in /proc/mounts as the source (e.g. the server URL).
    pub fs_name: String,
    /// Whether users other than the one who mounted may use the mount (`allow_other`);
    /// the kernel still checks the mode bits (`default_permissions`).
    pub allow_other: bool,
    /// Let the kernel read cached files itself (FUSE passthrough) where it can.
    pub passthrough: bool,
    /// Which callers are background readers, refused downloads.
    pub readers: Arc<ReaderPolicy>,
    /// Mount read-only: the kernel refuses every change with EROFS.
    pub read_only: bool,
}

/// Mounts `drive` at `mountpoint`; the returned session unmounts when dropped or through
/// `umount_and_join`. Never uses `AutoUnmount` (broken in fuser 0.18.0): the daemon
/// unmounts itself on every exit path instead.
pub fn mount(
    drive: Arc<Drive>,
    runtime: tokio::runtime::Handle,
    mountpoint: &Path,
    config: &MountConfig,
) -> io::Result<BackgroundSession> {
    let fs = FuseFs::new(drive.clone(), runtime, config.attr_ttl, config.passthrough)
        .with_readers(config.readers.clone());
    let mut options = Config::default();
    options.mount_options = vec![
        MountOption::FSName(config.fs_name.clone()),
        subtype(),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.read_only {
        options.mount_options.push(MountOption::RO);
    }
    options.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    options.n_threads = Some(config.threads.max(1));
    options.clone_fd = true;
    let session = Session::new(fs, mountpoint, &options)?.spawn()?;
    drive.install_kernel_cache(Arc::new(KernelNotifier(session.notifier())));
    raise_readahead(mountpoint);
    Ok(session)
}

/// The file system type shows as `fuse.edrive` in /proc/mounts (what file managers and
/// `updatedb`'s PRUNEFS match). fusermount3 sets it from `Subtype`; fuser's own mount(2),
/// used as root, does not pass `Subtype` on, so there it goes to the kernel directly.
fn subtype() -> MountOption {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        MountOption::CUSTOM("subtype=edrive".to_string())
    } else {
        MountOption::Subtype("edrive".to_string())
    }
}

/// Read-ahead the kernel does on the mount, in KiB. FUSE mounts start at the block
/// layer's default (128 KiB) whatever the daemon asks for; larger read-ahead means fewer,
/// larger read requests (up to 1 MiB each) for sequential reads.
const READ_AHEAD_KB: u32 = 1024;

/// Raises the mount's read-ahead through sysfs (needs root; otherwise the default stays).
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = md.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, READ_AHEAD_KB.to_string()) {
        tracing::debug!(%knob, error = %e, "read-ahead left at the kernel's default");
    }
}

/// The kernel's caches of a FUSE mount, dropped through the session's notifier. A
/// failure (the kernel did not know the entry) is harmless: nothing was cached.
struct KernelNotifier(Notifier);

impl KernelCache for KernelNotifier {
    fn inval_entry(&self, parent: u64, name: &str) {
        let _ = self
            .0
            .inval_entry(INodeNo(parent), std::ffi::OsStr::new(name));
    }

    fn inval_inode(&self, ino: u64) {
        let _ = self.0.inval_inode(INodeNo(ino), 0, 0);
    }

    fn inval_data(&self, ino: u64, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        let _ = self.0.inval_inode(INodeNo(ino), offset, len);
    }
}
