//! What goes back to the kernel besides errors: attributes, times, xattr replies, how a
//! file is opened (through the daemon or the kernel's passthrough), folder rows.

use super::*;

impl FuseFs {
    /// How long the kernel may keep `a`: not at all while the size is unknown, so that the
    /// next access asks again (and finds it).
    pub(super) fn ttl_of(&self, a: &Attr) -> Duration {
        if a.size_known {
            self.ttl
        } else {
            Duration::ZERO
        }
    }

    /// Replies to the open of a read-only handle `fh`: served by the kernel from the
    /// cached file when the drive allows it, else through the daemon.
    pub(super) fn reply_read_open(&self, ino: u64, fh: u64, reply: ReplyOpen) {
        let daemon = |reply: ReplyOpen, keep_cache: bool| {
            let flags = if keep_cache {
                FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::empty()
            };
            reply.opened(FileHandle(fh), flags)
        };
        let mut backings = self.backings();
        match self.drive.read_path(fh) {
            Ok(ReadPath::Daemon { keep_cache }) => daemon(reply, keep_cache),
            Ok(ReadPath::Kernel { file, version }) => {
                if let Some(id) = backings.share(ino, &version, fh) {
                    return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), id);
                }
                if backings.has(ino) {
                    // The drive and the kernel disagree on the version: refuse rather
                    // than serve the wrong one.
                    warn!(
                        ino,
                        "passthrough: inode has a backing file of another version"
                    );
                    let _ = self.drive.release(fh);
                    return reply.error(Errno::EBUSY);
                }
                match reply.open_backing(&file) {
                    Ok(id) => {
                        let id = backings.insert(ino, version, fh, id);
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), id)
                    }
                    Err(e) => {
                        warn!(error = %e, "passthrough refused by the kernel; reads go through the daemon from now on");
                        self.drive.set_kernel_reads(false);
                        let keep_cache = self.drive.kernel_read_refused(fh);
                        daemon(reply, keep_cache)
                    }
                }
            }
            Err(e) => {
                let _ = self.drive.release(fh);
                reply.error(failed(&e))
            }
        }
    }

    /// `.` or `..` of folder `ino` (`i` 0 or 1), the first two rows of every listing.
    pub(super) fn dot_row(&self, ino: u64, i: u64) -> Result<(&'static str, Attr), FsError> {
        Ok(if i == 0 {
            (".", self.drive.getattr(ino)?)
        } else {
            ("..", self.drive.getattr(self.drive.parent_of(ino)?)?)
        })
    }

    /// Lists folder `ino` (open as `fh`) from position `offset` into `add`, which says
    /// when the reply is full. Positions: 0 and 1 are `.` and `..`; after them a child's
    /// is its inode number plus 2 (see [`Drive::readdir_page`]), so each call reads only
    /// the page it replies with.
    pub(super) fn list_into(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&str, &Attr, u64) -> bool,
    ) -> Result<(), FsError> {
        let mut next = offset;
        while next < 2 {
            let (name, attr) = self.dot_row(ino, next)?;
            if add(name, &attr, next + 1) {
                return Ok(());
            }
            next += 1;
        }
        let mut after = next - 2;
        loop {
            let page = self.drive.readdir_page(fh, after, LIST_PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.attr.ino;
            for d in &page {
                if add(&d.name, &d.attr, d.attr.ino.saturating_add(2)) {
                    return Ok(());
                }
            }
        }
    }
}

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// A time the kernel sent, as fuser 0.18 hands it over, made right. Before 1970, fuser
/// subtracts a timespec's nanoseconds instead of adding them: `-6 s + 0.5 s` (that is
/// -5.5 s) arrives as -6.5 s. Whole seconds arrive right.
pub(super) fn kernel_time(t: SystemTime) -> SystemTime {
    match UNIX_EPOCH.duration_since(t) {
        Ok(before) if before.subsec_nanos() != 0 => {
            UNIX_EPOCH - Duration::from_secs(before.as_secs())
                + Duration::from_nanos(u64::from(before.subsec_nanos()))
        }
        _ => t,
    }
}

pub(super) fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

/// Replies to an xattr request of `size` with `data` following the getxattr(2) protocol.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if (size as usize) < data.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}
