//! Data store on the local filesystem: `DIR/<ino low byte, hex>/<ino, hex>`,
//! one sparse file per inode, reached through a bounded cache of open
//! descriptors.
//!
//! No path under `DIR` is ever resolved through a symlink: `DIR` itself is
//! opened `O_DIRECTORY | O_NOFOLLOW`, each shard directory is opened the
//! same way relative to it (and its descriptor kept), and every object is
//! opened, stat'ed and unlinked relative to its shard's descriptor with
//! `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`. A symlink planted in the store is
//! an error, never followed, and its target is never touched.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::{atime_view, copy_via_buffer, AllocMode, DataStore, ObjectReader, ObjectStat, SeekKind, Space};
use crate::schema::{AtimeMode, Ino, TimeSet, Timespec};

/// Default bound on cached open descriptors.
pub const FDS_CACHED_MAX: usize = 512;
/// Shard directories: one per value of an inode number's low byte.
const SHARDS: usize = 256;

struct FdCache {
    files: HashMap<Ino, Arc<File>>,
    /// Insertion order for eviction; may name inodes already removed.
    order: VecDeque<Ino>,
    files_max: usize,
}

/// File contents as sparse files under one directory.
pub struct FileData {
    /// For messages only: every access goes through `dir_fd`.
    dir: PathBuf,
    dir_fd: OwnedFd,
    /// Each shard directory's descriptor, opened on first use.
    shards: Box<[OnceLock<OwnedFd>]>,
    cache: Mutex<FdCache>,
    /// Extra open flags of every object (`O_NOATIME` for noatime mounts).
    open_flags: libc::c_int,
    /// Objects are opened for reading only and never created.
    read_only: bool,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `openat(2)` relative to `dir`, never following a symlink in `name`.
fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    loop {
        // SAFETY: openat with a live directory descriptor and a C string; a
        // returned descriptor is new and owned by the caller.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, libc::c_uint::from(mode)) };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn shard_name(ino: Ino) -> CString {
    CString::new(format!("{:02x}", ino.0 & 0xff)).expect("hex digits hold no NUL")
}

/// An object's file name, `<ino as 16 hex digits>` and a NUL, built on the
/// stack: it is made for every object operation.
struct ObjectName([u8; 17]);

impl ObjectName {
    fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.0).expect("16 hex digits and a NUL")
    }
}

impl std::ops::Deref for ObjectName {
    type Target = CStr;
    fn deref(&self) -> &CStr {
        self.as_c_str()
    }
}

fn object_name(ino: Ino) -> ObjectName {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = [0u8; 17];
    for (i, byte) in name[..16].iter_mut().enumerate() {
        *byte = HEX[((ino.0 >> (60 - 4 * i)) & 0xf) as usize];
    }
    ObjectName(name)
}

impl FileData {
    /// A store rooted at `dir` (created if missing, unless `read_only`),
    /// caching up to `fds_max` descriptors; with `noatime`, reads leave
    /// objects' access times alone. `dir` must not be a symlink.
    /// Objects are reached through a private mount of `dir` with `atime`'s
    /// rule where the daemon may make one (see `atime_view`).
    pub fn open(dir: &Path, fds_max: usize, atime: AtimeMode, read_only: bool) -> io::Result<FileData> {
        if !read_only {
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        let dir_fd = open_at(at_cwd(), &c_path(dir)?, flags, 0).map_err(|e| symlink_refused(e, dir))?;
        let dir_fd = match atime_view::open(dir_fd.as_fd(), atime) {
            Ok(view) => view,
            Err(e) => {
                log::debug!("data objects keep the atime rule of the filesystem holding {}: {e}", dir.display());
                dir_fd
            }
        };
        let files_max = fds_max.max(1);
        let noatime_flag = if atime == AtimeMode::Noatime { libc::O_NOATIME } else { 0 };
        Ok(FileData {
            dir: dir.to_path_buf(),
            dir_fd,
            shards: (0..SHARDS).map(|_| OnceLock::new()).collect(),
            cache: Mutex::new(FdCache { files: HashMap::new(), order: VecDeque::new(), files_max }),
            open_flags: noatime_flag,
            read_only,
        })
    }

    fn shard_dir(&self, ino: Ino) -> PathBuf {
        self.dir.join(format!("{:02x}", ino.0 & 0xff))
    }

    fn path(&self, ino: Ino) -> PathBuf {
        self.shard_dir(ino).join(format!("{:016x}", ino.0))
    }

    /// The descriptor of `ino`'s shard directory, made (mode 0700) if
    /// missing and `create`; `None` if it is missing and not `create`.
    fn shard(&self, ino: Ino, create: bool) -> io::Result<Option<BorrowedFd<'_>>> {
        let cell = &self.shards[(ino.0 & 0xff) as usize];
        if let Some(fd) = cell.get() {
            return Ok(Some(fd.as_fd()));
        }
        let name = shard_name(ino);
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        let opened = match open_at(self.dir_fd.as_fd(), &name, flags, 0) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                // SAFETY: mkdirat with a live directory descriptor and a C string.
                match cvt(unsafe { libc::mkdirat(self.dir_fd.as_raw_fd(), name.as_ptr(), 0o700) }) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                open_at(self.dir_fd.as_fd(), &name, flags, 0)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other,
        };
        let fd = opened.map_err(|e| symlink_refused(e, &self.shard_dir(ino)))?;
        // A racing opener may have set it first: either descriptor names the directory.
        let _ = cell.set(fd);
        Ok(cell.get().map(|fd| fd.as_fd()))
    }

    /// The open file of `ino`; `None` if it does not exist and `create` is false.
    fn file(&self, ino: Ino, create: bool) -> io::Result<Option<Arc<File>>> {
        if let Some(f) = self.cache.lock().files.get(&ino) {
            return Ok(Some(Arc::clone(f)));
        }
        match self.open_object(ino, create, false) {
            Ok(file) => Ok(Some(self.cache_insert(ino, file, false))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open the object file, making its shard directory on first use.
    fn open_object(&self, ino: Ino, create: bool, truncate: bool) -> io::Result<File> {
        self.open_object_as(ino, !self.read_only, create, truncate)
    }

    fn open_object_as(&self, ino: Ino, write: bool, create: bool, truncate: bool) -> io::Result<File> {
        if self.read_only && (write || create || truncate) {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        let Some(shard) = self.shard(ino, create)? else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let mut flags = self.open_flags | if write { libc::O_RDWR } else { libc::O_RDONLY };
        if create {
            flags |= libc::O_CREAT;
        }
        if truncate {
            flags |= libc::O_TRUNC;
        }
        let fd = open_at(shard, &object_name(ino), flags, 0o600).map_err(|e| symlink_refused(e, &self.path(ino)))?;
        Ok(File::from(fd))
    }

    /// Cache `file` as `ino`'s descriptor (replacing a cached one if
    /// `replace`) and return the cached descriptor.
    fn cache_insert(&self, ino: Ino, file: File, replace: bool) -> Arc<File> {
        let mut cache = self.cache.lock();
        let file = if replace {
            cache.files.insert(ino, Arc::new(file));
            Arc::clone(&cache.files[&ino])
        } else {
            Arc::clone(cache.files.entry(ino).or_insert_with(|| Arc::new(file)))
        };
        cache.order.push_back(ino);
        while cache.files.len() > cache.files_max {
            let Some(old) = cache.order.pop_front() else { break };
            if old != ino {
                cache.files.remove(&old);
            }
        }
        // Stale names pile up in `order` only as long as the map is small.
        if cache.order.len() > 4 * cache.files_max {
            let FdCache { files, order, .. } = &mut *cache;
            order.retain(|i| files.contains_key(i));
        }
        file
    }

    /// The object for a change of its contents or times, first asked for
    /// its times: a file system with multigrain timestamps (ext4, xfs,
    /// btrfs, tmpfs since Linux 6.13) stamps a change after such a query
    /// with the fine-grained clock, not the coarse one that can lag the
    /// daemon's clock by a tick. Else a change could get a ctime older than
    /// the one its inode already shows, and look like no change at all.
    fn file_to_change(&self, ino: Ino) -> io::Result<Arc<File>> {
        let file = self.file(ino, true)?.expect("create=true always yields a file");
        Ok(query_times(file))
    }

    fn fallocate_raw(file: &File, flags: libc::c_int, off: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on an open descriptor owned by `file`.
        cvt(unsafe { libc::fallocate(file.as_raw_fd(), flags, off as libc::off_t, len as libc::off_t) })
            .map(|_| ())
    }

    /// copy_file_range until the source ends; returns the bytes copied.
    fn kernel_copy(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> io::Result<u64> {
        let (mut off_in, mut off_out) = (src_off as libc::loff_t, dst_off as libc::loff_t);
        let mut done = 0u64;
        while done < len {
            let step = (len - done).min(1 << 30) as usize;
            // SAFETY: both descriptors are open; the offsets are valid pointers.
            let n = unsafe {
                libc::copy_file_range(src.as_raw_fd(), &mut off_in, dst.as_raw_fd(), &mut off_out, step, 0)
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
            done += n as u64;
        }
        Ok(done)
    }
}

/// Query `file`'s times, so its next change gets a fine-grained stamp
/// (see `FileData::file_to_change`).
fn query_times(file: Arc<File>) -> Arc<File> {
    // SAFETY: fstat on an open descriptor into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstat(file.as_raw_fd(), &mut st) };
    file
}

/// `O_NOFOLLOW` on a symlink fails with ELOOP (ENOTDIR with
/// `O_DIRECTORY`): say what it means here.
fn symlink_refused(e: io::Error, path: &Path) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            io::Error::new(e.kind(), format!("{} is a symlink, which a store never holds", path.display()))
        }
        Some(libc::ENOTDIR) => io::Error::new(
            e.kind(),
            format!("{} is a symlink or not a directory, which a store never holds", path.display()),
        ),
        _ => e,
    }
}

fn at_cwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is valid for the whole process as a dirfd argument.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD as RawFd) }
}

fn timespec(sec: libc::time_t, nsec: libc::c_long) -> Timespec {
    Timespec { sec, nsec: nsec as u32 }
}

fn object_stat(st: &libc::stat) -> ObjectStat {
    ObjectStat {
        size: st.st_size as u64,
        allocated_bytes: st.st_blocks as u64 * 512,
        atime: timespec(st.st_atime, st.st_atime_nsec),
        mtime: timespec(st.st_mtime, st.st_mtime_nsec),
        ctime: timespec(st.st_ctime, st.st_ctime_nsec),
    }
}

/// `object_stat` of what must be an object: anything but a regular file
/// is an error.
/// `path` names the object for the error, and is built only then.
fn regular_object_stat<P: AsRef<Path>>(st: &libc::stat, path: impl FnOnce() -> P) -> io::Result<ObjectStat> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        let what = format!("{} is not a regular file, which every object is", path().as_ref().display());
        return Err(io::Error::new(io::ErrorKind::InvalidData, what));
    }
    Ok(object_stat(st))
}

fn utime(t: Option<TimeSet>) -> libc::timespec {
    match t {
        None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        Some(TimeSet::Now) => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        Some(TimeSet::At(t)) => libc::timespec { tv_sec: t.sec, tv_nsec: libc::c_long::from(t.nsec as i32) },
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a store path"))
}

impl DataStore for FileData {
    fn create(&self, ino: Ino) -> io::Result<()> {
        let file = self.open_object(ino, true, true)?;
        self.cache_insert(ino, file, true);
        Ok(())
    }

    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(file) = self.file(ino, false)? else { return Ok(0) };
        read_full_at(&file, off, buf)
    }

    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()> {
        self.file_to_change(ino)?.write_all_at(data, off)
    }

    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()> {
        self.file_to_change(ino)?.set_len(len)
    }

    fn stat(&self, ino: Ino) -> io::Result<Option<ObjectStat>> {
        // SAFETY: the stat calls fill the zeroed struct; the descriptor or
        // C path they are given stays valid for the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let cached = self.cache.lock().files.get(&ino).cloned();
        let ret = match cached {
            Some(file) => unsafe { libc::fstat(file.as_raw_fd(), &mut st) },
            None => {
                let Some(shard) = self.shard(ino, false)? else { return Ok(None) };
                let name = object_name(ino);
                unsafe { libc::fstatat(shard.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }
            }
        };
        if ret != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(e) };
        }
        regular_object_stat(&st, || self.path(ino)).map(Some)
    }

    fn set_times(&self, ino: Ino, atime: Option<TimeSet>, mtime: Option<TimeSet>) -> io::Result<()> {
        let file = self.file_to_change(ino)?;
        let times = [utime(atime), utime(mtime)];
        // SAFETY: futimens on an open descriptor with a two-element array.
        cvt(unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) }).map(|_| ())
    }

    fn touch_ctime(&self, ino: Ino) -> io::Result<()> {
        let Some(file) = self.file(ino, false)?.map(query_times) else { return Ok(()) };
        // SAFETY: fchmod on an open descriptor; objects are always 0600, and
        // a chmod to the same mode still stamps the ctime.
        cvt(unsafe { libc::fchmod(file.as_raw_fd(), 0o600) }).map(|_| ())
    }

    fn fallocate(&self, ino: Ino, mode: AllocMode, off: u64, len: u64) -> io::Result<()> {
        // Punching a missing (empty) object changes nothing.
        if mode.punch_hole && self.file(ino, false)?.is_none() {
            return Ok(());
        }
        let file = self.file_to_change(ino)?;
        let keep = if mode.keep_size { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
        if mode.punch_hole {
            return Self::fallocate_raw(&file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len);
        }
        if mode.zero_range {
            let zeroed = Self::fallocate_raw(&file, libc::FALLOC_FL_ZERO_RANGE | keep, off, len);
            return match zeroed {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    Self::fallocate_raw(&file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)?;
                    Self::fallocate_raw(&file, keep, off, len)
                }
                other => other,
            };
        }
        Self::fallocate_raw(&file, keep, off, len)
    }

    fn seek(&self, ino: Ino, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        let Some(file) = self.file(ino, false)? else { return Ok(None) };
        seek_in(&file, off, kind)
    }

    fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> io::Result<()> {
        let dst_file = self.file_to_change(dst)?;
        let copied = match self.file(src, false)? {
            Some(src_file) => match Self::kernel_copy(&src_file, src_off, &dst_file, dst_off, len) {
                Ok(n) => n,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP)) => {
                    return copy_via_buffer(self, src, src_off, dst, dst_off, len);
                }
                Err(e) => return Err(e),
            },
            None => 0,
        };
        if copied < len {
            // The source ended early: the rest of the range is a hole there.
            let hole = AllocMode { punch_hole: true, keep_size: true, zero_range: false };
            self.fallocate(dst, hole, dst_off + copied, len - copied)?;
        }
        Ok(())
    }

    fn sync(&self, ino: Ino) -> io::Result<()> {
        let Some(file) = self.file(ino, false)? else { return Ok(()) };
        file.sync_data()?;
        // The file's own directory entry must survive a power loss too.
        let shard = self.shard(ino, false)?.ok_or(io::ErrorKind::NotFound)?;
        // SAFETY: fsync on a live directory descriptor.
        cvt(unsafe { libc::fsync(shard.as_raw_fd()) }).map(|_| ())
    }

    fn remove(&self, ino: Ino) -> io::Result<()> {
        self.cache.lock().files.remove(&ino);
        let Some(shard) = self.shard(ino, false)? else { return Ok(()) };
        let name = object_name(ino);
        // SAFETY: unlinkat with a live directory descriptor and a C string;
        // unlink never follows a symlink, it removes the name itself.
        match cvt(unsafe { libc::unlinkat(shard.as_raw_fd(), name.as_ptr(), 0) }) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn space(&self) -> io::Result<Space> {
        // SAFETY: fstatvfs fills the zeroed struct from a live descriptor.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        cvt(unsafe { libc::fstatvfs(self.dir_fd.as_raw_fd(), &mut st) })?;
        let frsize = st.f_frsize as u64;
        Ok(Space {
            total_bytes: st.f_blocks as u64 * frsize,
            free_bytes: st.f_bfree as u64 * frsize,
            avail_bytes: st.f_bavail as u64 * frsize,
        })
    }

    fn open_backing(&self, ino: Ino, writable: bool) -> io::Result<Option<Arc<File>>> {
        // On a writable store the kept descriptor is open for reading and
        // writing: the kernel takes its own reference to it, so handing it
        // over costs no path lookup (a create hands over the object it has
        // just made).
        if writable && !self.read_only {
            return self.file(ino, true);
        }
        match self.open_object_as(ino, false, false, false) {
            // A read-only mount cannot make the missing object of an empty file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            other => other.map(|f| Some(Arc::new(f))),
        }
    }

    /// A private read-only descriptor, `O_NOATIME` where the kernel allows
    /// it (the caller owns the object, or has CAP_FOWNER): not the cached
    /// one, whose reads update the atime and which user opens share.
    fn open_reader(&self, ino: Ino) -> io::Result<Option<Box<dyn ObjectReader>>> {
        let Some(shard) = self.shard(ino, false)? else { return Ok(None) };
        let flags = libc::O_RDONLY | libc::O_NOATIME;
        let opened = match open_at(shard, &object_name(ino), flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open_at(shard, &object_name(ino), libc::O_RDONLY, 0),
            other => other,
        };
        match opened {
            Ok(fd) => Ok(Some(Box::new(FileReader { file: File::from(fd), path: self.path(ino) }))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(symlink_refused(e, &self.path(ino))),
        }
    }

    fn list(&self, visit: &mut dyn FnMut(Ino)) -> io::Result<()> {
        for shard in fs::read_dir(&self.dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() || parse_hex(&shard.file_name(), 2).is_none() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                if let Some(ino) = parse_hex(&entry?.file_name(), 16) {
                    visit(Ino(ino));
                }
            }
        }
        Ok(())
    }
}

/// One object opened read-only for `DataStore::open_reader`.
struct FileReader {
    file: File,
    /// For messages only.
    path: PathBuf,
}

impl ObjectReader for FileReader {
    fn stat(&self) -> io::Result<ObjectStat> {
        // SAFETY: fstat fills the zeroed struct from a live descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        cvt(unsafe { libc::fstat(self.file.as_raw_fd(), &mut st) })?;
        regular_object_stat(&st, || &self.path)
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_full_at(&self.file, off, buf)
    }

    fn seek(&self, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        seek_in(&self.file, off, kind)
    }
}

/// `pread` until `buf` is full or the file ends.
fn read_full_at(file: &File, off: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `lseek(SEEK_DATA | SEEK_HOLE)`; `None` past the end (ENXIO).
fn seek_in(file: &File, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
    let whence = match kind {
        SeekKind::Data => libc::SEEK_DATA,
        SeekKind::Hole => libc::SEEK_HOLE,
    };
    // SAFETY: lseek on an open descriptor; data I/O never uses the file offset.
    let pos = unsafe { libc::lseek(file.as_raw_fd(), off as libc::off_t, whence) };
    if pos < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
    }
    Ok(Some(pos as u64))
}

/// `digits` lowercase hex digits as a number; `None` for any other name.
fn parse_hex(name: &std::ffi::OsStr, digits: usize) -> Option<u64> {
    let name = name.as_bytes();
    let hex = name.len() == digits && name.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(std::str::from_utf8(name).ok()?, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_file_store_reads_writes_punches_and_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileData::open(dir.path(), 2, AtimeMode::Relatime, false).unwrap();
        let ino = Ino(0x1_0203);
        store.write(ino, 1 << 20, b"tail").unwrap();
        let mut buf = [9u8; 8];
        assert_eq!(store.read(ino, (1 << 20) - 4, &mut buf).unwrap(), 8);
        assert_eq!(&buf, b"\0\0\0\0tail");
        assert_eq!(store.seek(ino, 0, SeekKind::Data).unwrap(), Some(1 << 20));
        assert_eq!(store.seek(ino, 0, SeekKind::Hole).unwrap(), Some(0));
        // The source ends after 4 bytes: the rest reads as past-the-end.
        store.write(Ino(7), 0, b"xxxxxxxxxxxx").unwrap();
        store.copy_range(ino, 1 << 20, Ino(7), 0, 10).unwrap();
        let mut out = [1u8; 12];
        assert_eq!(store.read(Ino(7), 0, &mut out).unwrap(), 12);
        assert_eq!(&out, b"tail\0\0\0\0\0\0xx");
        // More inodes than cached descriptors: eviction must not lose data.
        for i in 100..110 {
            store.write(Ino(i), 0, &i.to_le_bytes()).unwrap();
        }
        for i in 100..110 {
            let mut b = [0u8; 8];
            store.read(Ino(i), 0, &mut b).unwrap();
            assert_eq!(u64::from_le_bytes(b), i);
        }
        let punch = AllocMode { punch_hole: true, keep_size: true, zero_range: false };
        store.fallocate(ino, punch, 1 << 20, 4).unwrap();
        assert_eq!(store.read(ino, 1 << 20, &mut buf[..4]).unwrap(), 4);
        assert_eq!(&buf[..4], b"\0\0\0\0");
        store.sync(ino).unwrap();
        store.remove(ino).unwrap();
        store.remove(ino).unwrap();
        assert_eq!(store.read(ino, 0, &mut buf).unwrap(), 0);
        assert!(dir.path().join("03").join(format!("{:016x}", 0x1_0203)).metadata().is_err());
        assert!(store.space().unwrap().total_bytes > 0);
    }
}

#[cfg(test)]
mod reader_tests {
    use super::*;

    /// A dump reads every file: it must not refresh an access time (here
    /// one a relatime read would refresh: a week old) nor fill the cache.
    #[test]
    fn reader_sees_holes_and_leaves_atime_and_cache_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileData::open(dir.path(), 4, AtimeMode::Relatime, false).unwrap();
        let ino = Ino(0x42);
        store.write(ino, 1 << 20, b"tail").unwrap();
        let old = Timespec { sec: Timespec::now().sec - 7 * 86_400, nsec: 5 };
        store.set_times(ino, Some(TimeSet::At(old)), None).unwrap();
        store.cache.lock().files.clear();
        let reader = store.open_reader(ino).unwrap().expect("the object exists");
        assert_eq!(reader.seek(0, SeekKind::Data).unwrap(), Some(1 << 20));
        assert_eq!(reader.seek(1 << 20, SeekKind::Hole).unwrap(), Some((1 << 20) + 4));
        let mut buf = [0u8; 8];
        assert_eq!(reader.read_at(1 << 20, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"tail");
        assert_eq!(reader.stat().unwrap().atime, old, "a quiet read keeps the atime");
        assert!(store.cache.lock().files.is_empty(), "the reader's descriptor is its own");
        assert!(store.open_reader(Ino(0x43)).unwrap().is_none(), "a missing object has no reader");
    }
}

#[cfg(test)]
mod symlink_tests {
    use super::*;

    /// A data store in `tmp/data` and a file outside it that must survive.
    fn setup(tmp: &Path) -> (FileData, PathBuf) {
        let victim = tmp.join("victim");
        fs::write(&victim, b"precious").unwrap();
        (FileData::open(&tmp.join("data"), 4, AtimeMode::Relatime, false).unwrap(), victim)
    }

    #[test]
    fn symlinked_object_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, victim) = setup(tmp.path());
        store.write(Ino(0x101), 0, b"x").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("data/01/0000000000000201")).unwrap();
        let ino = Ino(0x201);
        let mut buf = [0u8; 8];
        let err = store.read(ino, 0, &mut buf).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert!(store.write(ino, 0, b"evil").is_err() && store.set_len(ino, 0).is_err() && store.create(ino).is_err());
        assert!(store.stat(ino).is_err(), "an object that is a symlink is not a regular file");
        store.remove(ino).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn symlinked_shard_directory_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, victim) = setup(tmp.path());
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let planted = elsewhere.join("0000000000000302");
        fs::copy(&victim, &planted).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("data/02")).unwrap();
        let ino = Ino(0x302);
        let mut buf = [0u8; 8];
        let err = store.read(ino, 0, &mut buf).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(store.write(ino, 0, b"evil").is_err() && store.create(ino).is_err() && store.stat(ino).is_err());
        assert!(store.remove(ino).is_err() && store.sync(ino).is_err());
        assert_eq!(fs::read(&planted).unwrap(), b"precious", "nothing reached through the planted shard");
        let mut seen = Vec::new();
        store.list(&mut |i| seen.push(i)).unwrap();
        assert!(seen.is_empty(), "listing skips a symlinked shard: {seen:?}");
    }

    #[test]
    fn symlinked_data_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("data")).unwrap();
        assert!(FileData::open(&tmp.path().join("data"), 4, AtimeMode::Relatime, false).is_err());
        assert!(FileData::open(&tmp.path().join("data"), 4, AtimeMode::Relatime, true).is_err());
    }

    #[test]
    fn object_names_are_sixteen_hex_digits() {
        assert_eq!(object_name(Ino(0x1_0203)).to_bytes(), b"0000000000010203");
        assert_eq!(object_name(Ino(u64::MAX)).to_bytes(), b"ffffffffffffffff");
        assert_eq!(object_name(Ino(0xabc)).to_bytes(), format!("{:016x}", 0xabc).as_bytes());
    }

    #[test]
    fn read_only_store_reads_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = setup(tmp.path());
        store.write(Ino(5), 0, b"kept").unwrap();
        drop(store);
        let ro = FileData::open(&tmp.path().join("data"), 4, AtimeMode::Relatime, true).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(ro.read(Ino(5), 0, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"kept");
        assert_eq!(ro.read(Ino(6), 0, &mut buf).unwrap(), 0, "a missing object reads empty");
        assert!(ro.open_backing(Ino(5), true).unwrap().is_some(), "a read-only backing file");
        assert!(ro.write(Ino(6), 0, b"x").is_err() && ro.create(Ino(7)).is_err());
        assert!(!tmp.path().join("data/06").exists() && !tmp.path().join("data/07").exists());
        assert!(FileData::open(&tmp.path().join("absent"), 4, AtimeMode::Relatime, true).is_err(), "read-only never creates");
    }
}
