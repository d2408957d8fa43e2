//! The request callbacks: each decodes its request into plain values,
//! calls [`Fs`] once, and encodes the reply; errno comes from
//! [`FsError::errno`] and nowhere else. Each starts a [`Call`] first, so
//! every request it answers is counted with its time and errno.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags as FuseOpenFlags, PollEvents, PollFlags, PollNotifier,
    RenameFlags as FuseRenameFlags, ReplyAttr, ReplyBmap, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use log::{debug, warn};

use super::backing::Backings;
use super::call::Call;
use super::convert::{caller, creator, file_attr, file_type, in_group_of, name, time_set, timespec};
use super::FuseOptions;
use crate::data::SeekKind;
use crate::metrics::{Op, Requests};
use crate::schema::{FileKind, Ino, Timespec};
use crate::{Attr, Fs, FsError, OpenFlags, RenameFlags, SetAttr, Setter, XattrFlags, XattrReply};

/// Largest write the kernel sends in one request.
const MAX_WRITE_BYTES: u32 = 1 << 20;
/// Background requests (readahead, async writes) the kernel may queue.
const MAX_BACKGROUND: u16 = 64;

pub(super) struct Adapter {
    pub(super) fs: Arc<Fs>,
    pub(super) opts: FuseOptions,
    /// Passthrough granted by the kernel and not yet found unusable.
    pub(super) passthrough: Arc<AtomicBool>,
    /// Shared with the filesystem's object removal hook.
    pub(super) backings: Arc<Backings>,
    /// Where every request is counted (`call::Call`).
    pub(super) requests: Arc<Requests>,
}

impl Adapter {
    /// Start counting a request of `op`.
    fn call(&self, op: Op) -> Call<'_> {
        Call::start(&self.requests, op)
    }

    fn entry(&self, reply: ReplyEntry, call: &Call, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => reply.entry(&self.opts.entry_ttl, &file_attr(a.ino, &a.inode), Generation(0)),
            Err(FsError::NotFound) if call.op() == Op::Lookup && !self.opts.negative_ttl.is_zero() => {
                // Node id 0 is a negative entry the kernel caches for the TTL;
                // counted as the ENOENT it stands for.
                call.refuse(Errno::ENOENT);
                let mut attr = file_attr(Ino(0), &crate::schema::Inode::new(FileKind::File, 0, 0, 0, Timespec::default()));
                attr.ino = INodeNo(0);
                reply.entry(&self.opts.negative_ttl, &attr, Generation(0))
            }
            Err(e) => reply.error(call.fail(e)),
        }
    }

    /// The passthrough backing for handle `fh` of regular file `ino`;
    /// `None` serves the handle through the daemon. A file whose handles
    /// are open keeps their mode (the kernel refuses a mix); else it is
    /// passthrough if that is on and the store has its space reserve. A
    /// kernel that refuses a backing turns passthrough off.
    fn backing(
        &self,
        ino: Ino,
        fh: u64,
        kind: FileKind,
        register: impl FnOnce(&std::fs::File) -> io::Result<fuser::BackingId>,
    ) -> Option<Arc<fuser::BackingId>> {
        if kind != FileKind::File || !self.fs.objects_shared_with_kernel() {
            return None;
        }
        // With the space reserve spent, writes must come through the daemon,
        // which refuses those that would take the space deletes need.
        let wanted = self.passthrough.load(Ordering::Relaxed) && !self.fs.space_low();
        let open = || self.fs.backing_file(ino).map_err(|e| io::Error::from_raw_os_error(e.errno()));
        match self.backings.open_handle(ino, fh, wanted, open, register) {
            Ok(b) => b,
            Err(e) => {
                if self.passthrough.swap(false, Ordering::Relaxed) {
                    warn!("FUSE passthrough refused for inode {} ({e}); data now goes through the daemon", ino.0);
                }
                None
            }
        }
    }

    /// Open flags of a handle served through the daemon. Without
    /// passthrough the daemon is the only writer, so cached pages stay
    /// valid across opens; with it the kernel writes objects beside this
    /// inode's page cache, so each served open starts afresh. With
    /// strictatime too: each open reads through the daemon again, whose
    /// reads update the atime (a read within one open may still hit the cache).
    fn cache_flags(&self) -> FopenFlags {
        if self.opts.atime == crate::AtimeMode::Strictatime || self.fs.objects_shared_with_kernel() {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    fn empty(&self, reply: ReplyEmpty, call: &Call, r: Result<(), FsError>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn attr(&self, reply: ReplyAttr, call: &Call, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => reply.attr(&self.opts.attr_ttl, &file_attr(a.ino, &a.inode)),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn xattr(&self, reply: ReplyXattr, call: &Call, r: Result<XattrReply, FsError>) {
        match r {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(call.fail(e)),
        }
    }
}

/// Ask for FUSE passthrough; true if the kernel grants it. The kernel
/// registers backing files only for a privileged daemon (CAP_SYS_ADMIN), so
/// another user's daemon does not ask, rather than be refused at its first
/// open (and log a warning for it).
fn request_passthrough(config: &mut KernelConfig) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        debug!("FUSE passthrough needs a root daemon; data goes through the daemon");
        return false;
    }
    let granted = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok();
    if !granted {
        debug!("the kernel does not offer FUSE passthrough; data goes through the daemon");
    }
    granted
}

/// Ask for each capability on its own, so one the kernel lacks does not
/// take the others down with it.
fn request_capabilities(config: &mut KernelConfig, opts: &FuseOptions) {
    if opts.writeback_cache {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE) {
            log::warn!("kernel lacks {missing:?}; writes stay write-through");
        }
    }
    let wanted = [
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_PARALLEL_DIROPS,
        InitFlags::FUSE_CACHE_SYMLINKS,
        InitFlags::FUSE_ASYNC_DIO,
        InitFlags::FUSE_BIG_WRITES,
        InitFlags::FUSE_MAX_PAGES,
        // File handles (name_to_handle_at, NFS export): the kernel looks up
        // `.` and `..` by inode number; inode numbers are never reused, so
        // generation 0 is stable across remounts.
        InitFlags::FUSE_EXPORT_SUPPORT,
        // The kernel enforces POSIX ACLs (stored as system.posix_acl_*
        // xattrs, see fs/acl.rs) and leaves the umask to the daemon.
        InitFlags::FUSE_POSIX_ACL,
        // The daemon drops setuid/setgid on writes, truncates and chowns
        // (fs/privs.rs), so the kernel need not ask for security.capability
        // before every write.
        InitFlags::FUSE_HANDLE_KILLPRIV_V2,
    ];
    for flag in wanted {
        if let Err(missing) = config.add_capabilities(flag) {
            debug!("kernel lacks FUSE capability {missing:?}");
        }
    }
    if let Err(nearest) = config.set_max_write(MAX_WRITE_BYTES) {
        let _ = config.set_max_write(nearest);
    }
    let _ = config.set_max_background(MAX_BACKGROUND);
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        request_capabilities(config, &self.opts);
        let granted = self.opts.passthrough && request_passthrough(config);
        if granted {
            self.fs.share_objects_with_kernel();
        }
        self.passthrough.store(granted, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let call = self.call(Op::Lookup);
        self.entry(reply, &call, self.fs.lookup(Ino(parent.0), name(n)));
    }

    /// fuser hands a BATCH_FORGET request over as one call per inode
    /// (its item type is private), so each counts as a `forget`.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _call = self.call(Op::Forget);
        self.fs.forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let call = self.call(Op::Getattr);
        self.attr(reply, &call, self.fs.getattr(Ino(ino.0)));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let call = self.call(Op::Setattr);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(timespec),
        };
        let in_group = in_group_of(req);
        let who = Setter { uid: req.uid(), in_group: &in_group };
        self.attr(reply, &call, self.fs.setattr_as(Ino(ino.0), &set, &who));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let call = self.call(Op::Readlink);
        match self.fs.readlink(Ino(ino.0)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let call = self.call(Op::Mknod);
        self.entry(reply, &call, self.fs.mknod(creator(req, umask), Ino(parent.0), name(n), mode, rdev));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let call = self.call(Op::Mkdir);
        self.entry(reply, &call, self.fs.mkdir(creator(req, umask), Ino(parent.0), name(n), mode));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let call = self.call(Op::Unlink);
        self.empty(reply, &call, self.fs.unlink(Ino(parent.0), name(n)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let call = self.call(Op::Rmdir);
        self.empty(reply, &call, self.fs.rmdir(Ino(parent.0), name(n)));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, n: &OsStr, target: &Path, reply: ReplyEntry) {
        let call = self.call(Op::Symlink);
        let target = target.as_os_str().as_bytes();
        self.entry(reply, &call, self.fs.symlink(caller(req), Ino(parent.0), name(n), target));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: FuseRenameFlags,
        reply: ReplyEmpty,
    ) {
        let call = self.call(Op::Rename);
        if flags.contains(FuseRenameFlags::RENAME_WHITEOUT) {
            return reply.error(call.fail(FsError::Invalid("RENAME_WHITEOUT is not supported")));
        }
        let flags = RenameFlags {
            noreplace: flags.contains(FuseRenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(FuseRenameFlags::RENAME_EXCHANGE),
        };
        let r = self.fs.rename(Ino(parent.0), name(n), Ino(new_parent.0), name(new_name), flags);
        self.empty(reply, &call, r);
    }

    fn link(&self, _req: &Request, ino: INodeNo, new_parent: INodeNo, new_name: &OsStr, reply: ReplyEntry) {
        let call = self.call(Op::Link);
        self.entry(reply, &call, self.fs.link(Ino(ino.0), Ino(new_parent.0), name(new_name)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        let call = self.call(Op::Open);
        let (fh, kind) = match self.fs.open(Ino(ino.0), OpenFlags::from_raw(flags.0)) {
            Ok(opened) => opened,
            Err(e) => return reply.error(call.fail(e)),
        };
        match self.backing(Ino(ino.0), fh, kind, |f| reply.open_backing(f)) {
            Some(b) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &b),
            None => reply.opened(FileHandle(fh), self.cache_flags()),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let call = self.call(Op::Read);
        match self.fs.read(Ino(ino.0), offset, size) {
            Ok(data) => {
                self.requests.add_read_bytes(data.len() as u64);
                reply.data(&data)
            }
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let call = self.call(Op::Write);
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            let in_group = in_group_of(req);
            let who = Setter { uid: req.uid(), in_group: &in_group };
            if let Err(e) = self.fs.drop_privileges(Ino(ino.0), &who) {
                return reply.error(call.fail(e));
            }
        }
        match self.fs.write(Ino(ino.0), offset, data) {
            Ok(n) => {
                self.requests.add_write_bytes(u64::from(n));
                reply.written(n)
            }
            Err(e) => reply.error(call.fail(e)),
        }
    }

    /// Writes are in the data store before they are acknowledged, so flush
    /// has nothing to do; ENOSYS tells the kernel to stop sending it, which
    /// saves a round trip on every close(2).
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let call = self.call(Op::Flush);
        reply.error(call.refuse(Errno::ENOSYS));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let call = self.call(Op::Release);
        self.backings.release(Ino(ino.0), fh.0);
        self.empty(reply, &call, self.fs.release(Ino(ino.0), fh.0));
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let call = self.call(Op::Fsync);
        self.empty(reply, &call, self.fs.fsync(Ino(ino.0), datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        let call = self.call(Op::Opendir);
        match self.fs.opendir(Ino(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let call = self.call(Op::Readdir);
        let r = self.fs.readdir(Ino(ino.0), fh.0, offset, false, &mut |e| {
            !reply.add(INodeNo(e.ino.0), e.offset, file_type(e.kind), OsStr::from_bytes(&e.name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let call = self.call(Op::Readdirplus);
        let ttl = self.opts.entry_ttl;
        let r = self.fs.readdir(Ino(ino.0), fh.0, offset, true, &mut |e| {
            let attr = e.attr.as_ref().expect("readdir with plus=true carries attributes");
            let name = OsStr::from_bytes(&e.name);
            !reply.add(INodeNo(e.ino.0), e.offset, name, &ttl, &file_attr(e.ino, attr), Generation(0))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: FuseOpenFlags, reply: ReplyEmpty) {
        let call = self.call(Op::Releasedir);
        self.empty(reply, &call, self.fs.releasedir(Ino(ino.0), fh.0));
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let call = self.call(Op::Fsyncdir);
        self.empty(reply, &call, self.fs.fsyncdir(Ino(ino.0), fh.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let call = self.call(Op::Statfs);
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_avail,
                s.files,
                s.files_free,
                s.block_bytes,
                s.name_bytes_max,
                s.block_bytes,
            ),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let call = self.call(Op::Setxattr);
        let in_group = in_group_of(req);
        let who = Setter { uid: req.uid(), in_group: &in_group };
        let r = self.fs.setxattr_as(Ino(ino.0), name(n), value, XattrFlags::from_raw(flags), &who);
        self.empty(reply, &call, r);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let call = self.call(Op::Getxattr);
        self.xattr(reply, &call, self.fs.getxattr(Ino(ino.0), name(n), size));
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let call = self.call(Op::Listxattr);
        // trusted.* names are listed to root only, as ext4 lists them.
        self.xattr(reply, &call, self.fs.listxattr_as(Ino(ino.0), size, req.uid() == 0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let call = self.call(Op::Removexattr);
        self.empty(reply, &call, self.fs.removexattr(Ino(ino.0), name(n)));
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let call = self.call(Op::Access);
        self.empty(reply, &call, self.fs.access(caller(req), Ino(ino.0), mask.bits() as u32));
    }

    fn create(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let call = self.call(Op::Create);
        let (a, fh) = match self.fs.create(creator(req, umask), Ino(parent.0), name(n), mode, OpenFlags::from_raw(flags)) {
            Ok(created) => created,
            Err(e) => return reply.error(call.fail(e)),
        };
        let (ttl, attr, fh) = (&self.opts.entry_ttl, file_attr(a.ino, &a.inode), FileHandle(fh));
        match self.backing(a.ino, fh.0, a.inode.kind, |f| reply.open_backing(f)) {
            Some(b) => reply.created_passthrough(ttl, &attr, Generation(0), fh, FopenFlags::empty(), &b),
            None => reply.created(ttl, &attr, Generation(0), fh, self.cache_flags()),
        }
    }

    /// No ioctl is supported: ENOTTY, as for any file without ioctls, and
    /// quietly (every Python open asks whether the file is a terminal).
    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let call = self.call(Op::Ioctl);
        debug!("ioctl {cmd:#x} on inode {}: ENOTTY", ino.0);
        reply.error(call.refuse(Errno::ENOTTY));
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        let call = self.call(Op::Fallocate);
        self.empty(reply, &call, self.fs.fallocate(Ino(ino.0), offset, length, mode));
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let call = self.call(Op::Lseek);
        let kind = match whence {
            libc::SEEK_DATA => SeekKind::Data,
            libc::SEEK_HOLE => SeekKind::Hole,
            _ => return reply.error(call.fail(FsError::Invalid("lseek whence other than SEEK_DATA/SEEK_HOLE"))),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(call.fail(FsError::NoSuchOffset));
        };
        match self.fs.lseek(Ino(ino.0), offset, kind) {
            Ok(pos) => reply.offset(pos as i64),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let call = self.call(Op::CopyFileRange);
        match self.fs.copy_file_range(Ino(ino_in.0), offset_in, Ino(ino_out.0), offset_out, len) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(call.fail(e)),
        }
    }

    /// Locks are left to the kernel (single host): it sends none unless
    /// asked to, so these four are answered ENOSYS as fuser would, but
    /// counted, and without fuser's warning.
    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        let call = self.call(Op::Getlk);
        reply.error(call.refuse(Errno::ENOSYS));
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        let call = self.call(Op::Setlk);
        reply.error(call.refuse(Errno::ENOSYS));
    }

    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        let call = self.call(Op::Bmap);
        reply.error(call.refuse(Errno::ENOSYS));
    }

    /// ENOSYS makes the kernel stop asking and treat files as always ready.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let call = self.call(Op::Poll);
        reply.error(call.refuse(Errno::ENOSYS));
    }
}
