//! The fuser adapter of holt-nullfs, the only file naming fuser's request
//! and reply types: each callback decodes its request, makes one call on
//! the [`Table`] under its lock, and replies; [`errno`] is the one place a
//! [`Fail`] becomes an errno. The kernel caches as it does for holt-fs by
//! default (60 s entries, attributes and negative entries, kept page cache
//! across opens, readdirplus), so that a comparison of the two measures
//! daemon work, not caching policy. Extended attributes answer ENOSYS, which
//! the kernel remembers and stops asking: a filesystem doing nothing.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::nodes::{Entry, Fail, New, SetAttr, Table};

/// holt-fs's default entry, attribute and negative-entry TTL.
const TTL: Duration = Duration::from_secs(60);
/// holt-fs's largest write request and background queue.
const MAX_WRITE_BYTES: u32 = 1 << 20;
const MAX_BACKGROUND: u16 = 64;
/// What statfs reports: 2^28 free 4 KiB blocks (1 TiB) and inodes.
const BLOCK_BYTES: u32 = 4096;
const BLOCKS: u64 = 1 << 28;
const NAME_BYTES_MAX: u32 = 255;
/// Kernel capabilities asked for: those holt-fs asks for
/// (`request_capabilities` in mount/src/fuse/adapter.rs; keep the two in
/// step) less passthrough, export support, ACLs and the killpriv protocol,
/// which need storage or xattrs.
const CAPABILITIES: [InitFlags; 7] = [
    InitFlags::FUSE_DO_READDIRPLUS,
    InitFlags::FUSE_READDIRPLUS_AUTO,
    InitFlags::FUSE_PARALLEL_DIROPS,
    InitFlags::FUSE_CACHE_SYMLINKS,
    InitFlags::FUSE_ASYNC_DIO,
    InitFlags::FUSE_BIG_WRITES,
    InitFlags::FUSE_MAX_PAGES,
];

pub struct NullFs {
    table: Mutex<Table>,
}

fn errno(fail: Fail) -> Errno {
    match fail {
        Fail::NotFound => Errno::ENOENT,
        Fail::Exists => Errno::EEXIST,
        Fail::NotEmpty => Errno::ENOTEMPTY,
        Fail::NotDir => Errno::ENOTDIR,
        Fail::IsDir => Errno::EISDIR,
        Fail::Invalid => Errno::EINVAL,
        Fail::NotPermitted => Errno::EPERM,
    }
}

/// The kind a mknod mode names; `None` for a type mknod cannot make.
fn kind_of(mode: u32) -> Option<FileType> {
    match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Some(FileType::RegularFile),
        libc::S_IFIFO => Some(FileType::NamedPipe),
        libc::S_IFSOCK => Some(FileType::Socket),
        libc::S_IFCHR => Some(FileType::CharDevice),
        libc::S_IFBLK => Some(FileType::BlockDevice),
        _ => None,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// A node made by `req` with `mode` less `umask`.
fn new_node(req: &Request, kind: FileType, mode: u32, umask: u32, rdev: u32) -> New {
    let perm = (mode & !umask & 0o7777) as u16;
    New { kind, perm, uid: req.uid(), gid: req.gid(), rdev, target: None }
}

fn entry(reply: ReplyEntry, r: Result<FileAttr, Fail>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(fail) => reply.error(errno(fail)),
    }
}

fn attr(reply: ReplyAttr, r: Result<FileAttr, Fail>) {
    match r {
        Ok(a) => reply.attr(&TTL, &a),
        Err(fail) => reply.error(errno(fail)),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), Fail>) {
    match r {
        Ok(()) => reply.ok(),
        Err(fail) => reply.error(errno(fail)),
    }
}

fn data(reply: ReplyData, r: Result<Vec<u8>, Fail>) {
    match r {
        Ok(bytes) => reply.data(&bytes),
        Err(fail) => reply.error(errno(fail)),
    }
}

impl NullFs {
    pub fn new(table: Table) -> NullFs {
        NullFs { table: Mutex::new(table) }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("no callback panics while holding the table")
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for flag in CAPABILITIES {
            let _ = config.add_capabilities(flag);
        }
        if let Err(nearest) = config.set_max_write(MAX_WRITE_BYTES) {
            let _ = config.set_max_write(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.table().lookup(parent, name);
        match r {
            Err(Fail::NotFound) => reply.entry(&TTL, &Table::no_entry(), Generation(0)),
            r => entry(reply, r),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.table().forget(ino, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self.table().getattr(ino);
        attr(reply, r);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr { mode, uid, gid, size, atime: atime.map(time), mtime: mtime.map(time) };
        let r = self.table().setattr(ino, &set);
        attr(reply, r);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = self.table().readlink(ino);
        data(reply, target.map(|t| t.into_os_string().into_encoded_bytes()));
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let Some(kind) = kind_of(mode) else { return reply.error(Errno::EINVAL) };
        let r = self.table().make(parent, name, new_node(req, kind, mode, umask, rdev));
        entry(reply, r);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = self.table().make(parent, name, new_node(req, FileType::Directory, mode, umask, 0));
        entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.table().unlink(parent, name);
        empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.table().rmdir(parent, name);
        empty(reply, r);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, name: &OsStr, target: &Path, reply: ReplyEntry) {
        let new = New { target: Some(target.to_path_buf()), ..new_node(req, FileType::Symlink, 0o777, 0, 0) };
        let r = self.table().make(parent, name, new);
        entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let r = self.table().rename(parent, name, newparent, newname, no_replace);
        empty(reply, r);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = self.table().link(ino, newparent, newname);
        entry(reply, r);
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.table().read(ino, offset, size);
        data(reply, r);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.table().write(ino, offset, bytes);
        match r {
            Ok(n) => reply.written(n),
            Err(fail) => reply.error(errno(fail)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let add = |e: Entry<'_>| !reply.add(e.attr.ino, e.cookie, e.attr.kind, e.name);
        let r = self.table().read_dir(ino, offset, false, add);
        match r {
            Ok(()) => reply.ok(),
            Err(fail) => reply.error(errno(fail)),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let add = |e: Entry<'_>| !reply.add(e.attr.ino, e.cookie, e.name, &TTL, &e.attr, Generation(0));
        let r = self.table().read_dir(ino, offset, true, add);
        match r {
            Ok(()) => reply.ok(),
            Err(fail) => reply.error(errno(fail)),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let used = self.table().inodes();
        reply.statfs(BLOCKS, BLOCKS, BLOCKS, BLOCKS, BLOCKS - used, BLOCK_BYTES, NAME_BYTES_MAX, BLOCK_BYTES);
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let made = self.table().make(parent, name, new_node(req, FileType::RegularFile, mode, umask, 0));
        match made {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(fail) => reply.error(errno(fail)),
        }
    }
}
