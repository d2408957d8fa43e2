//! The FUSE adapter: the only module that names fuser types. Each callback
//! decodes its request into plain values, calls [`Fs`] once, and encodes the
//! reply; errno comes from [`FsError::errno`] and nowhere else. `backing`
//! holds the kernel's passthrough handles for open regular files;
//! `kernel_mount` mounts through mount(2) where we may.

mod backing;
mod kernel_mount;

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Config, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, MountOption,
    OpenFlags as FuseOpenFlags, RenameFlags as FuseRenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, Session, SessionACL, TimeOrNow, WriteFlags,
};
use log::{debug, error, warn};

use backing::Backings;

use crate::data::SeekKind;
use crate::schema::{FileKind, Ino, Timespec};
use crate::{Attr, Caller, Fs, FsError, OpenFlags, RenameFlags, SetAttr, Setter, TimeSet, XattrFlags, XattrReply};

/// Largest write the kernel sends in one request.
const MAX_WRITE_BYTES: u32 = 1 << 20;
/// Background requests (readahead, async writes) the kernel may queue.
const MAX_BACKGROUND: u16 = 64;

/// How the kernel caches what this daemon tells it.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// How long a name → inode answer stays valid.
    pub entry_ttl: Duration,
    /// How long attributes stay valid.
    pub attr_ttl: Duration,
    /// How long "no such name" stays valid (0: not cached).
    pub negative_ttl: Duration,
    /// Request-serving threads.
    pub threads: usize,
    /// Let other users in (`allow_other`).
    pub allow_other: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// Honour setuid/setgid bits (`suid`); off: the mount is `nosuid`.
    pub suid: bool,
    /// Honour device files (`dev`); off: the mount is `nodev`.
    pub dev: bool,
    /// Allow executing files (`exec`); off: the mount is `noexec`.
    pub exec: bool,
    /// The atime option (the kernel shows it; the daemon keeps atimes).
    pub atime: crate::AtimeMode,
    /// `nodiratime` (shown; the daemon leaves directory atimes alone).
    pub nodiratime: bool,
    /// `lazytime` (shown; the daemon makes no timestamp durable before the
    /// next sync anyway).
    pub lazytime: bool,
    /// Source name shown in mount tables.
    pub fsname: String,
    /// Opt-in speed mode: the kernel buffers writes in its page cache and
    /// sends them later, so a write(2) is acknowledged before the daemon
    /// has it (kill -9 of the daemon can lose writes not yet fsync'd).
    pub writeback_cache: bool,
    /// Let the kernel read and write data objects directly (FUSE
    /// passthrough) where it can; else every read and write is a request.
    pub passthrough: bool,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            entry_ttl: Duration::from_secs(60),
            attr_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            threads: 4,
            allow_other: false,
            read_only: false,
            suid: false,
            dev: false,
            exec: true,
            atime: crate::AtimeMode::Relatime,
            nodiratime: false,
            lazytime: false,
            fsname: "holt-fs".into(),
            writeback_cache: false,
            passthrough: true,
        }
    }
}

/// A mounted filesystem, handshake done; `run` serves it until unmounted.
pub struct Mounted {
    session: Session<Adapter>,
    fs: Arc<Fs>,
    mountpoint: PathBuf,
    /// The adapter's passthrough flag, as the handshake left it.
    passthrough: Arc<AtomicBool>,
    /// The control socket, stopped (and removed) before the filesystem closes.
    control: Option<crate::ctl::Server>,
}

/// Unmounts a [`Mounted`] from another thread (e.g. the signal thread),
/// with umount2(2), or fusermount3 where that is not permitted.
pub struct Unmounter(PathBuf);

impl Unmounter {
    /// Unmount; `lazy` detaches even while files are in use.
    pub fn unmount(&mut self, lazy: bool) -> io::Result<()> {
        crate::mountpoint::unmount(&self.0, lazy)
    }
}

/// fuser's session settings, and its mount options for the fusermount3
/// path (the mount(2) path passes the same through `kernel_mount`).
fn session_config(opts: &FuseOptions) -> Config {
    let mut config = Config::default();
    let pick = |on: bool, yes: MountOption, no: MountOption| if on { yes } else { no };
    config.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype(crate::mountpoint::FS_TYPE["fuse.".len()..].into()),
        MountOption::DefaultPermissions,
        pick(opts.dev, MountOption::Dev, MountOption::NoDev),
        pick(opts.suid, MountOption::Suid, MountOption::NoSuid),
        pick(opts.exec, MountOption::Exec, MountOption::NoExec),
        pick(opts.read_only, MountOption::RO, MountOption::RW),
    ];
    if opts.atime == crate::AtimeMode::Noatime {
        config.mount_options.push(MountOption::NoAtime);
    }
    config.acl = if opts.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    config
}

/// Mount `fs` at `mountpoint` and complete the FUSE handshake: when this
/// returns, the mount is ready for use.
pub fn mount(fs: Fs, mountpoint: &Path, opts: &FuseOptions) -> io::Result<Mounted> {
    let config = session_config(opts);
    let fs = Arc::new(fs);
    Fs::start_reclaimer(&fs)?;
    let passthrough = Arc::new(AtomicBool::new(false));
    let backings = Arc::new(Backings::default());
    let kept = Arc::clone(&backings);
    fs.on_object_removal(move |ino| kept.forget(ino)).map_err(io::Error::other)?;
    let adapter = Adapter { fs: Arc::clone(&fs), opts: opts.clone(), passthrough: Arc::clone(&passthrough), backings };
    let session = match kernel_mount::mount(mountpoint, opts)? {
        Some(fd) => Session::from_fd(adapter, fd, config.acl, config).inspect_err(|_| {
            // The handshake failed: leave no dead mount behind.
            let _ = crate::mountpoint::unmount(mountpoint, true);
        })?,
        None => {
            debug!("mount(2) is not permitted; mounting through fusermount3");
            Session::new(adapter, mountpoint, &config)?
        }
    };
    Ok(Mounted { session, fs, mountpoint: mountpoint.to_path_buf(), passthrough, control: None })
}

impl Mounted {
    pub fn unmounter(&self) -> Unmounter {
        Unmounter(self.mountpoint.clone())
    }

    /// Whether the kernel reads and writes data objects directly (FUSE
    /// passthrough granted at the handshake).
    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    /// The filesystem being served (for the control socket's handler).
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// Keep `server` running while the filesystem is served.
    pub fn attach_control(&mut self, server: crate::ctl::Server) {
        self.control = Some(server);
    }

    /// Serve requests until the filesystem is unmounted, then stop the
    /// control socket (removing it, while the store is still ours) and
    /// close the filesystem (queued reclaims done, clean close recorded)
    /// before returning, so the caller can release the store right after.
    pub fn run(mut self) -> io::Result<()> {
        let served = self.session.run();
        drop(self.control.take());
        if let Err(e) = self.fs.shutdown() {
            error!("closing the filesystem: {e} (the next mount finishes the work)");
        }
        served
    }
}

struct Adapter {
    fs: Arc<Fs>,
    opts: FuseOptions,
    /// Passthrough granted by the kernel and not yet found unusable.
    passthrough: Arc<AtomicBool>,
    /// Shared with the filesystem's object removal hook.
    backings: Arc<Backings>,
}

/// Whether the caller of `req` is in a group: its own, or one of its
/// process's supplementary groups.
fn in_group_of(req: &Request) -> impl Fn(u32) -> bool + '_ {
    |gid: u32| gid == req.gid() || supplementary_groups(req.pid()).contains(&gid)
}

/// The supplementary groups of process `pid` (empty if it is gone or its
/// status cannot be read, which errs towards dropping a setgid bit).
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap_or("");
    line.split_whitespace().filter_map(|g| g.parse().ok()).collect()
}

fn name(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid(), umask: 0 }
}

/// The caller of a create, mkdir or mknod: with POSIX ACLs the kernel
/// leaves the umask to the filesystem (a default ACL replaces it).
fn creator(req: &Request, umask: u32) -> Caller {
    Caller { umask, ..caller(req) }
}

/// The errno for `e`; failures that are not the caller's doing are logged.
fn fail(op: &'static str, e: FsError) -> Errno {
    if e.is_expected() {
        debug!("{op}: {e}");
    } else {
        error!("{op}: {e}");
    }
    Errno::from_i32(e.errno())
}

fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(u64::from(t.nsec))
    }
}

fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
        Err(e) => {
            let d = e.duration();
            let nsec = d.subsec_nanos();
            let sec = -(d.as_secs() as i64) - i64::from(nsec > 0);
            Timespec { sec, nsec: if nsec > 0 { 1_000_000_000 - nsec } else { 0 } }
        }
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(st) => TimeSet::At(timespec(st)),
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(ino: Ino, i: &crate::schema::Inode) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino.0),
        size: i.size,
        blocks: i.blocks,
        atime: system_time(i.atime),
        mtime: system_time(i.mtime),
        ctime: system_time(i.ctime),
        crtime: system_time(i.crtime),
        kind: file_type(i.kind),
        perm: i.perm,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        blksize: crate::BLOCK_BYTES,
        flags: 0,
    }
}

impl Adapter {
    fn entry(&self, reply: ReplyEntry, op: &'static str, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => reply.entry(&self.opts.entry_ttl, &file_attr(a.ino, &a.inode), Generation(0)),
            Err(FsError::NotFound) if op == "lookup" && !self.opts.negative_ttl.is_zero() => {
                // Node id 0 is a negative entry the kernel caches for the TTL.
                let mut attr = file_attr(Ino(0), &crate::schema::Inode::new(FileKind::File, 0, 0, 0, Timespec::default()));
                attr.ino = INodeNo(0);
                reply.entry(&self.opts.negative_ttl, &attr, Generation(0))
            }
            Err(e) => reply.error(fail(op, e)),
        }
    }

    /// The passthrough backing for handle `fh` of `ino`, if passthrough is
    /// on, `ino` is a regular file and the store has its space reserve;
    /// `None` serves the handle through the daemon. A kernel that refuses a
    /// backing turns passthrough off.
    fn backing(
        &self,
        ino: Ino,
        fh: u64,
        kind: FileKind,
        register: impl FnOnce(&std::fs::File) -> io::Result<fuser::BackingId>,
    ) -> Option<Arc<fuser::BackingId>> {
        // With the space reserve spent, writes must come through the daemon,
        // which refuses those that would take the space deletes need.
        if kind != FileKind::File || !self.passthrough.load(Ordering::Relaxed) || self.fs.space_low() {
            return None;
        }
        let open = || self.fs.backing_file(ino).map_err(|e| io::Error::from_raw_os_error(e.errno()));
        match self.backings.attach(ino, fh, open, register) {
            Ok(b) => b,
            Err(e) => {
                if self.passthrough.swap(false, Ordering::Relaxed) {
                    warn!("FUSE passthrough refused for inode {} ({e}); data now goes through the daemon", ino.0);
                }
                None
            }
        }
    }

    /// Open flags of a handle served through the daemon. The daemon is the
    /// only writer, so cached pages stay valid across opens; but with
    /// strictatime each open reads through the daemon again, whose reads
    /// update the atime (a read within one open may still hit the cache).
    fn cache_flags(&self) -> FopenFlags {
        if self.opts.atime == crate::AtimeMode::Strictatime {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    fn empty(&self, reply: ReplyEmpty, op: &'static str, r: Result<(), FsError>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail(op, e)),
        }
    }

    fn attr(&self, reply: ReplyAttr, op: &'static str, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => reply.attr(&self.opts.attr_ttl, &file_attr(a.ino, &a.inode)),
            Err(e) => reply.error(fail(op, e)),
        }
    }

    fn xattr(&self, reply: ReplyXattr, op: &'static str, r: Result<XattrReply, FsError>) {
        match r {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(fail(op, e)),
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
        self.passthrough.store(granted, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        self.entry(reply, "lookup", self.fs.lookup(Ino(parent.0), name(n)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr(reply, "getattr", self.fs.getattr(Ino(ino.0)));
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
        self.attr(reply, "setattr", self.fs.setattr_as(Ino(ino.0), &set, &who));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(Ino(ino.0)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(fail("readlink", e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        self.entry(reply, "mknod", self.fs.mknod(creator(req, umask), Ino(parent.0), name(n), mode, rdev));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.entry(reply, "mkdir", self.fs.mkdir(creator(req, umask), Ino(parent.0), name(n), mode));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, "unlink", self.fs.unlink(Ino(parent.0), name(n)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, "rmdir", self.fs.rmdir(Ino(parent.0), name(n)));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, n: &OsStr, target: &Path, reply: ReplyEntry) {
        let target = target.as_os_str().as_bytes();
        self.entry(reply, "symlink", self.fs.symlink(caller(req), Ino(parent.0), name(n), target));
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
        if flags.contains(FuseRenameFlags::RENAME_WHITEOUT) {
            return reply.error(fail("rename", FsError::Invalid("RENAME_WHITEOUT is not supported")));
        }
        let flags = RenameFlags {
            noreplace: flags.contains(FuseRenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(FuseRenameFlags::RENAME_EXCHANGE),
        };
        let r = self.fs.rename(Ino(parent.0), name(n), Ino(new_parent.0), name(new_name), flags);
        self.empty(reply, "rename", r);
    }

    fn link(&self, _req: &Request, ino: INodeNo, new_parent: INodeNo, new_name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, "link", self.fs.link(Ino(ino.0), Ino(new_parent.0), name(new_name)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        let (fh, kind) = match self.fs.open(Ino(ino.0), OpenFlags::from_raw(flags.0)) {
            Ok(opened) => opened,
            Err(e) => return reply.error(fail("open", e)),
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
        match self.fs.read(Ino(ino.0), offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(fail("read", e)),
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
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            let in_group = in_group_of(req);
            let who = Setter { uid: req.uid(), in_group: &in_group };
            if let Err(e) = self.fs.drop_privileges(Ino(ino.0), &who) {
                return reply.error(fail("write", e));
            }
        }
        match self.fs.write(Ino(ino.0), offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", e)),
        }
    }

    /// Writes are in the data store before they are acknowledged, so flush
    /// has nothing to do; ENOSYS tells the kernel to stop sending it, which
    /// saves a round trip on every close(2).
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
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
        self.backings.release(Ino(ino.0), fh.0);
        self.empty(reply, "release", self.fs.release(Ino(ino.0), fh.0));
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.empty(reply, "fsync", self.fs.fsync(Ino(ino.0), datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(Ino(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = self.fs.readdir(Ino(ino.0), fh.0, offset, false, &mut |e| {
            !reply.add(INodeNo(e.ino.0), e.offset, file_type(e.kind), OsStr::from_bytes(&e.name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdir", e)),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let ttl = self.opts.entry_ttl;
        let r = self.fs.readdir(Ino(ino.0), fh.0, offset, true, &mut |e| {
            let attr = e.attr.as_ref().expect("readdir with plus=true carries attributes");
            let name = OsStr::from_bytes(&e.name);
            !reply.add(INodeNo(e.ino.0), e.offset, name, &ttl, &file_attr(e.ino, attr), Generation(0))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdirplus", e)),
        }
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: FuseOpenFlags, reply: ReplyEmpty) {
        self.empty(reply, "releasedir", self.fs.releasedir(Ino(ino.0), fh.0));
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.empty(reply, "fsyncdir", self.fs.fsyncdir(Ino(ino.0), fh.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
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
            Err(e) => reply.error(fail("statfs", e)),
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
        let in_group = in_group_of(req);
        let who = Setter { uid: req.uid(), in_group: &in_group };
        let r = self.fs.setxattr_as(Ino(ino.0), name(n), value, XattrFlags::from_raw(flags), &who);
        self.empty(reply, "setxattr", r);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        self.xattr(reply, "getxattr", self.fs.getxattr(Ino(ino.0), name(n), size));
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        // trusted.* names are listed to root only, as ext4 lists them.
        self.xattr(reply, "listxattr", self.fs.listxattr_as(Ino(ino.0), size, req.uid() == 0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, "removexattr", self.fs.removexattr(Ino(ino.0), name(n)));
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.empty(reply, "access", self.fs.access(caller(req), Ino(ino.0), mask.bits() as u32));
    }

    fn create(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let (a, fh) = match self.fs.create(creator(req, umask), Ino(parent.0), name(n), mode, OpenFlags::from_raw(flags)) {
            Ok(created) => created,
            Err(e) => return reply.error(fail("create", e)),
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
        debug!("ioctl {cmd:#x} on inode {}: ENOTTY", ino.0);
        reply.error(Errno::ENOTTY);
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        self.empty(reply, "fallocate", self.fs.fallocate(Ino(ino.0), offset, length, mode));
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let kind = match whence {
            libc::SEEK_DATA => SeekKind::Data,
            libc::SEEK_HOLE => SeekKind::Hole,
            _ => return reply.error(fail("lseek", FsError::Invalid("lseek whence other than SEEK_DATA/SEEK_HOLE"))),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(fail("lseek", FsError::NoSuchOffset));
        };
        match self.fs.lseek(Ino(ino.0), offset, kind) {
            Ok(pos) => reply.offset(pos as i64),
            Err(e) => reply.error(fail("lseek", e)),
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
        match self.fs.copy_file_range(Ino(ino_in.0), offset_in, Ino(ino_out.0), offset_out, len) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(fail("copy_file_range", e)),
        }
    }
}
