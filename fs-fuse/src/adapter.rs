//! The `fuser::Filesystem` implementation: one short method per kernel request.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edrive_fs_core::meta::XattrMode;
use edrive_fs_core::{Attr, Drive, FsError, Kind, ReadPath, SetAttr};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use tracing::{info, warn};

mod replies;

use replies::{file_attr, file_type, kernel_time, reply_xattr};

use crate::caller::Callers;
use crate::errno::{failed, utf8};
use crate::passthrough::Backings;
use edrive_fs_core::readers::ReaderPolicy;

/// Folder entries read from the store in one query while a listing reply fills (a
/// 4 KiB `readdirplus` reply holds about 25).
const LIST_PAGE: usize = 64;

/// The drive as a FUSE filesystem.
pub struct FuseFs {
    drive: Arc<Drive>,
    rt: tokio::runtime::Handle,
    ttl: Duration,
    /// Whether to ask the kernel for passthrough reads.
    passthrough: bool,
    /// The kernel's backing files; also serializes deciding and ending passthrough opens.
    backings: Mutex<Backings>,
    /// Who is a background reader.
    callers: Callers,
}

/// Enters the span of one kernel request: the operation's name, the request's id, the
/// calling process, and the given fields. Every operation has one, so that its one log
/// line on failure ([`failed`]) says which request of which process failed.
macro_rules! op_span {
    ($req:expr, $op:literal $(, $($field:tt)*)?) => {
        tracing::info_span!($op, req = $req.unique().0, pid = $req.pid() $(, $($field)*)?).entered()
    };
}

impl FuseFs {
    /// The adapter over `drive`; async work runs on `rt`. With `passthrough`, reads of
    /// cached files are served by the kernel where it can.
    pub fn new(
        drive: Arc<Drive>,
        rt: tokio::runtime::Handle,
        ttl: Duration,
        passthrough: bool,
    ) -> FuseFs {
        FuseFs {
            drive,
            rt,
            ttl,
            passthrough,
            backings: Mutex::new(Backings::default()),
            callers: Callers::new(Arc::new(ReaderPolicy::everyone())),
        }
    }

    /// Refuses downloads to the background readers `policy` names.
    pub fn with_readers(mut self, policy: Arc<ReaderPolicy>) -> FuseFs {
        self.callers = Callers::new(policy);
        self
    }

    fn backings(&self) -> std::sync::MutexGuard<'_, Backings> {
        self.backings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        let _ = config.add_capabilities(InitFlags::FUSE_READDIRPLUS_AUTO);
        // Cached pages are dropped when a file's size or time changes (kept otherwise:
        // see `Drive::keeps_cache`).
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        let _ = config.set_max_readahead(1 << 20);
        // Passthrough: the kernel reads cached files itself. Registering a backing file
        // needs CAP_SYS_ADMIN; depth 2 lets the cache sit on a stacked filesystem
        // (overlayfs) too.
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if self.passthrough && root {
            let on = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok();
            info!(on, "passthrough reads");
            self.drive.set_kernel_reads(on);
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _s = op_span!(req, "lookup", parent = parent.0, ?name);
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.rt.block_on(self.drive.lookup(parent.0, name)) {
            Ok(a) => reply.entry(&self.ttl_of(&a), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _s = op_span!(req, "getattr", ino = ino.0);
        match self.drive.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl_of(&a), &file_attr(&a)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _s = op_span!(req, "open", ino = ino.0);
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY)
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND) != 0;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let opener = self.callers.opener(req.pid());
        match self
            .rt
            .block_on(self.drive.open_as(ino.0, write, truncate, &opener))
        {
            Ok(fh) => self.reply_read_open(ino.0, fh, reply),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let _s = op_span!(req, "read", ino = ino.0, offset, size);
        match self.rt.block_on(self.drive.read(fh.0, offset, size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(req, "release", fh = fh.0);
        let mut backings = self.backings();
        let r = self.drive.release(fh.0);
        backings.release(fh.0);
        drop(backings);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(req, "flush", ino = ino.0);
        match self.drive.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        let _s = op_span!(req, "write", ino = ino.0, offset, len = data.len());
        match self.drive.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(req, "fsync", ino = ino.0);
        match self.drive.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _s = op_span!(req, "setattr", ino = ino.0, ?size);
        let time = |t: fuser::TimeOrNow| match t {
            fuser::TimeOrNow::SpecificTime(t) => kernel_time(t),
            fuser::TimeOrNow::Now => SystemTime::now(),
        };
        let set = SetAttr {
            size,
            mtime: mtime.map(time),
            atime: atime.map(time),
            mode,
        };
        match self.rt.block_on(self.drive.setattr(ino.0, set)) {
            Ok(a) => reply.attr(&self.ttl_of(&a), &file_attr(&a)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        let _s = op_span!(req, "create", parent = parent.0, ?name);
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self
            .rt
            .block_on(self.drive.create(parent.0, name, mode & !umask))
        {
            Ok((a, fh)) => reply.created(
                &self.ttl,
                &file_attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(failed(&e)),
        }
    }

    /// Only regular files (created like `create`, then closed); other node types cannot
    /// be stored on the server.
    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let _s = op_span!(req, "mknod", parent = parent.0, ?name, mode);
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let kind = mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != 0 {
            return reply.error(failed(&FsError::NotSupported(
                "only regular files and folders",
            )));
        }
        let created = self
            .rt
            .block_on(self.drive.create(parent.0, name, mode & !umask));
        match created.and_then(|(a, fh)| self.drive.release(fh).map(|()| a)) {
            Ok(a) => reply.entry(&self.ttl, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _s = op_span!(req, "mkdir", parent = parent.0, ?name);
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self
            .rt
            .block_on(self.drive.mkdir(parent.0, name, mode & !umask))
        {
            Ok(a) => reply.entry(&self.ttl, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = op_span!(req, "unlink", parent = parent.0, ?name);
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.rt.block_on(self.drive.unlink(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = op_span!(req, "rmdir", parent = parent.0, ?name);
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.rt.block_on(self.drive.rmdir(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(
            req,
            "rename",
            parent = parent.0,
            ?name,
            newparent = newparent.0,
            ?newname
        );
        let (name, newname) = match (utf8(name), utf8(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if flags.contains(fuser::RenameFlags::RENAME_EXCHANGE) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(fuser::RenameFlags::RENAME_NOREPLACE);
        match self.rt.block_on(
            self.drive
                .rename(parent.0, name, newparent.0, newname, no_replace),
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _s = op_span!(req, "opendir", ino = ino.0);
        match self.rt.block_on(self.drive.opendir(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _s = op_span!(req, "readdir", ino = ino.0, offset);
        let listed = self.list_into(ino.0, fh.0, offset, |name, a, next| {
            reply.add(INodeNo(a.ino), next, file_type(a.kind), name)
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _s = op_span!(req, "readdirplus", ino = ino.0, offset);
        let listed = self.list_into(ino.0, fh.0, offset, |name, a, next| {
            reply.add(
                INodeNo(a.ino),
                next,
                name,
                &self.ttl_of(a),
                &file_attr(a),
                Generation(0),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(req, "fsyncdir");
        match self.drive.fsyncdir() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(req, "releasedir", fh = fh.0);
        self.drive.releasedir(fh.0);
        reply.ok();
    }

    /// The server's quota, or the cache's room (see [`Drive::statfs`]).
    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _s = op_span!(req, "statfs");
        const BSIZE: u64 = 4096;
        let space = self.rt.block_on(self.drive.statfs());
        let free = space.free / BSIZE;
        reply.statfs(
            space.total / BSIZE,
            free,
            free,
            1 << 30,
            1 << 30,
            BSIZE as u32,
            255,
            BSIZE as u32,
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _s = op_span!(req, "getxattr", ino = ino.0, ?name);
        match self.drive.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _s = op_span!(req, "setxattr", ino = ino.0, ?name);
        let mode = XattrMode {
            create: flags & libc::XATTR_CREATE != 0,
            replace: flags & libc::XATTR_REPLACE != 0,
        };
        match self.drive.setxattr(ino.0, name.as_bytes(), value, mode) {
            Ok(fetch) => {
                if fetch && self.drive.request_pin_run() {
                    let d = self.drive.clone();
                    self.rt.spawn(async move { d.hydrate_pins().await });
                }
                reply.ok()
            }
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _s = op_span!(req, "listxattr", ino = ino.0);
        match self.drive.listxattr(ino.0) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                reply_xattr(reply, size, &buf)
            }
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = op_span!(req, "removexattr", ino = ino.0, ?name);
        match self.drive.removexattr(ino.0, name.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let _s = op_span!(req, "access", ino = ino.0);
        match self.drive.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(failed(&e)),
        }
    }
}

#[cfg(test)]
mod tests;
