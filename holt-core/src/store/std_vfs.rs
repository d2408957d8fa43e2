//! The real file system: pread/pwrite/fdatasync on std files.
//!
//! Every file and directory is opened with `O_NOFOLLOW`: a store never holds
//! a symlink, so one planted in it is an error (ELOOP), never a way to make
//! the engine read or write a file outside the store.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shared_map::SharedMap;
use super::vfs::{FileIo, Vfs};

/// [`Vfs`] over the operating system's files.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StdVfs;

struct StdFile(File);

impl FileIo for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.0, buf, offset)
    }

    fn read_vectored_at(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
        read_full_vectored_at(&self.0, bufs, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        write_all_vectored_at(&self.0, bufs, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        punch_hole(&self.0, offset, len)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        allocate(&self.0, offset, len)
    }

    fn first_hole(&self, from: u64, to: u64) -> io::Result<Option<std::ops::Range<u64>>> {
        first_hole(&self.0, from, to)
    }

    fn map_shared(&self, len: usize) -> io::Result<Option<SharedMap>> {
        SharedMap::new(&self.0, len).map(Some)
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        start_writeback(&self.0, offset, len)
    }

    fn wait_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        wait_writeback(&self.0, offset, len)
    }

    fn will_need(&self, offset: u64, len: u64) -> io::Result<()> {
        will_need(&self.0, offset, len)
    }

    fn random_access(&self) -> io::Result<()> {
        advise(&self.0, 0, 0, libc::POSIX_FADV_RANDOM)
    }
}

/// `pwritev` at `offset` until every byte of `bufs` is written.
fn write_all_vectored_at(file: &File, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    write_all_iov(bufs, offset, |iov, at| {
        let (count, pos) = iov_args(iov, at)?;
        // SAFETY: every iovec names a live slice of `bufs`, which outlives
        // the call; the kernel only reads them.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), count, pos) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    })
}

/// `preadv` until `bufs` are full or the file ends; returns bytes read.
pub(crate) fn read_full_vectored_at(file: &File, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
    read_full_iov(bufs, offset, |iov, at| {
        let (count, pos) = iov_args(iov, at)?;
        // SAFETY: every iovec names a live, exclusively borrowed part of
        // `bufs`, which outlives the call.
        let n = unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), count, pos) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    })
}

/// An iovec array's length and a file offset as the system calls take them.
fn iov_args(iov: &[libc::iovec], at: u64) -> io::Result<(libc::c_int, libc::off_t)> {
    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    Ok((libc::c_int::try_from(iov.len()).map_err(|_| invalid())?, libc::off_t::try_from(at).map_err(|_| invalid())?))
}

/// Write every byte of `bufs` from `offset` by `one` vectored request at a
/// time (its iovecs and offset; bytes written), continued after a short
/// one and retried when interrupted.
pub(super) fn write_all_iov(bufs: &[&[u8]], offset: u64, mut one: impl FnMut(&[libc::iovec], u64) -> io::Result<usize>) -> io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut done = 0;
    while done < total {
        let iov = rest_iov(bufs.iter().map(|b| (b.as_ptr().cast_mut(), b.len())), done);
        match one(&iov, offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fill `bufs` from `offset` by `one` vectored request at a time,
/// continued after a short one, until they are full or the file ends
/// (a request reads nothing); returns the bytes read.
pub(super) fn read_full_iov(bufs: &mut [&mut [u8]], offset: u64, mut one: impl FnMut(&[libc::iovec], u64) -> io::Result<usize>) -> io::Result<usize> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut done = 0;
    while done < total {
        let iov = rest_iov(bufs.iter_mut().map(|b| (b.as_mut_ptr(), b.len())), done);
        match one(&iov, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The iovecs of the buffers `(start, len)` past their first `skip` bytes.
fn rest_iov(bufs: impl Iterator<Item = (*mut u8, usize)>, mut skip: usize) -> Vec<libc::iovec> {
    let mut iov = Vec::new();
    for (start, len) in bufs {
        if skip >= len {
            skip -= len;
            continue;
        }
        // SAFETY: `skip < len`, so the pointer stays inside the buffer.
        iov.push(libc::iovec { iov_base: unsafe { start.add(skip) }.cast(), iov_len: len - skip });
        skip = 0;
    }
    iov
}

/// Read at `offset` until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Options that open a store file without following a symlink in its last
/// component; read-write unless `write` is false.
pub(crate) fn open_options(write: bool, create: bool) -> OpenOptions {
    let mut opts = OpenOptions::new();
    opts.read(true).write(write).create(create).truncate(false).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    opts
}

/// Open directory `dir` (not a symlink to one), e.g. to fsync it.
pub(crate) fn open_dir(dir: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(dir)
}

/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: give back the blocks of the range.
pub(crate) fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
}

/// `lseek(SEEK_HOLE)` from `from`, then `lseek(SEEK_DATA)` from the hole
/// (see `FileIo::first_hole`). The file offset moves; every read and
/// write here is positioned, so nothing depends on it.
pub(crate) fn first_hole(file: &File, from: u64, to: u64) -> io::Result<Option<std::ops::Range<u64>>> {
    let seek = |at: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        let at = libc::off_t::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: lseek on an open descriptor this `File` owns.
        match unsafe { libc::lseek(file.as_raw_fd(), at, whence) } {
            -1 => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
                e => Err(e),
            },
            n => Ok(Some(n as u64)),
        }
    };
    let Some(start) = seek(from, libc::SEEK_HOLE)?.filter(|&h| h < to) else { return Ok(None) };
    let end = seek(start, libc::SEEK_DATA)?.map_or(to, |d| d.min(to));
    Ok(Some(start..end))
}

/// `fallocate(mode 0)`: reserve disk blocks for `[offset, offset + len)` and
/// extend the file to cover it, so later stores into a mapping of the range
/// need no allocation (a full disk fails here, not as SIGBUS). Existing
/// bytes are kept.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(file, 0, offset, len)
}

/// `posix_fadvise(POSIX_FADV_WILLNEED)` (see `FileIo::will_need`).
pub(crate) fn will_need(file: &File, offset: u64, len: u64) -> io::Result<()> {
    advise(file, offset, len, libc::POSIX_FADV_WILLNEED)
}

/// `posix_fadvise` of `[offset, offset + len)` (`len` 0: to the end).
pub(crate) fn advise(file: &File, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "range past the largest file offset"));
    };
    // SAFETY: plain syscall on an open descriptor; no memory is passed.
    match unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, advice) } {
        0 => Ok(()),
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: queue the range's dirty pages
/// for writeback and return (see `FileIo::start_writeback`).
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// `sync_file_range` with both waits: write the range's dirty pages back
/// and wait for them (see `FileIo::wait_writeback`).
pub(crate) fn wait_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    sync_file_range(file, offset, len, flags)
}

fn sync_file_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "range past the largest file offset"));
    };
    // SAFETY: plain syscall on an open descriptor; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fallocate(2)`, retried on EINTR; EOPNOTSUPP becomes `Unsupported`.
fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "range past the largest file offset"));
    };
    loop {
        // SAFETY: plain syscall on an fd this `File` owns; no memory is passed.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => return Err(io::Error::new(io::ErrorKind::Unsupported, e)),
            _ => return Err(e),
        }
    }
}

impl Vfs for StdVfs {
    fn kind(&self) -> &'static str {
        "pread/pwrite"
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        let file = open_options(true, create).open(path)?;
        Ok(Arc::new(StdFile(file)))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        open_dir(dir)?.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn open_direct_reader(&self, path: &Path) -> io::Result<Option<Arc<dyn FileIo>>> {
        super::read_only_vfs::open_direct_reader(path)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_vectored_write_lays_its_buffers_end_to_end_and_skips_empty_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StdVfs.open(&tmp.path().join("f"), true).unwrap();
        let (a, b) = (vec![1u8; 4096], vec![2u8; 10_000]);
        file.write_all_vectored_at(&[&a, &[], &b], 100).unwrap();
        let mut back = vec![0u8; 100 + a.len() + b.len()];
        assert_eq!(file.read_at(&mut back, 0).unwrap(), back.len());
        assert!(back[..100].iter().all(|&x| x == 0));
        assert!(back[100..100 + a.len()] == a[..] && back[100 + a.len()..] == b[..]);
        file.write_all_vectored_at(&[&[], &[]], 1 << 20).unwrap();
        assert_eq!(file.len().unwrap(), back.len() as u64, "writing nothing does not extend the file");
    }

    #[test]
    fn a_vectored_read_fills_its_buffers_in_order_up_to_the_end_of_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StdVfs.open(&tmp.path().join("f"), true).unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        file.write_at(&bytes, 0).unwrap();
        let (mut a, mut b, mut c) = (vec![0u8; 4096], vec![], vec![0u8; 8192]);
        assert_eq!(file.read_vectored_at(&mut [&mut a, &mut b, &mut c], 100).unwrap(), 9900, "short only at the end");
        assert!([&a[..], &c[..9900 - 4096]].concat() == bytes[100..]);
    }

    /// Requests that move fewer bytes than asked, as a signal or a
    /// device may make them: the helpers go on from where each stopped.
    #[test]
    fn vectored_requests_cut_short_are_continued_where_they_stopped() {
        let file: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let mut written = vec![0u8; 5000];
        let parts = [&file[..7], &file[7..3000], &file[3000..]];
        let mut calls = 0;
        write_all_iov(&parts, 0, |iov, at| {
            calls += 1;
            if calls % 3 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let first = &iov[0];
            let n = first.iov_len.min(777);
            // SAFETY: the iovec names `n` readable bytes of `parts`.
            let src = unsafe { std::slice::from_raw_parts(first.iov_base as *const u8, n) };
            written[at as usize..at as usize + n].copy_from_slice(src);
            Ok(n)
        })
        .unwrap();
        assert!(written == file);
        let (mut a, mut b) = (vec![0u8; 1234], vec![0u8; 5000]);
        let n = read_full_iov(&mut [&mut a, &mut b], 10, |iov, at| {
            let at = at as usize;
            let n = iov[0].iov_len.min(500).min(file.len() - at);
            // SAFETY: the iovec names `n` writable bytes of `a` or `b`.
            unsafe { std::ptr::copy_nonoverlapping(file[at..].as_ptr(), iov[0].iov_base.cast(), n) };
            Ok(n)
        })
        .unwrap();
        assert_eq!(n, 4990);
        assert!([&a[..], &b[..4990 - 1234]].concat() == file[10..]);
    }

    #[test]
    fn symlinks_in_the_store_are_refused_and_their_targets_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("outside");
        fs::write(&target, b"keep").unwrap();
        let link = tmp.path().join("frames.dat");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for create in [false, true] {
            let err = StdVfs.open(&link, create).err().expect("a symlinked store file must not open");
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "create={create}");
        }
        let dir_link = tmp.path().join("wal");
        std::os::unix::fs::symlink(tmp.path(), &dir_link).unwrap();
        // O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR.
        assert_eq!(StdVfs.sync_dir(&dir_link).unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }

    /// `will_need` brings a reserved, never written range into the page
    /// cache (the WAL's pages ahead of its writer), changing no byte.
    #[test]
    fn will_need_caches_a_reserved_range_without_changing_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StdVfs.open(&tmp.path().join("seg"), true).unwrap();
        let len = 1usize << 20;
        file.allocate(0, len as u64).unwrap();
        file.will_need(0, len as u64).unwrap();
        let cached = cached_pages(&tmp.path().join("seg"), len);
        assert!(cached * 2 >= len / 4096, "{cached} of {} pages cached", len / 4096);
        let mut back = vec![1u8; len];
        assert_eq!(file.read_at(&mut back, 0).unwrap(), len);
        assert!(back.iter().all(|&b| b == 0));
    }

    /// `wait_writeback` returns with the range's pages written back: none
    /// dirty, none under writeback (the kernel's `cachestat`), the bytes
    /// as written.
    #[test]
    fn wait_writeback_leaves_no_dirty_page_in_its_range() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("frames");
        let file = StdVfs.open(&path, true).unwrap();
        let len = 2usize << 20;
        file.write_at(&vec![7u8; len], 0).unwrap();
        assert!(dirty_pages(&path, len).0 > 0, "a buffered write leaves dirty pages");
        file.wait_writeback(0, len as u64).unwrap();
        assert_eq!(dirty_pages(&path, len), (0, 0), "dirty and writeback pages after the wait");
        let mut back = vec![0u8; len];
        assert_eq!(file.read_at(&mut back, 0).unwrap(), len);
        assert!(back.iter().all(|&b| b == 7));
    }

    /// `cachestat`'s number, the same on every architecture (libc does not
    /// name it yet).
    const SYS_CACHESTAT: libc::c_long = 451;

    /// Dirty pages and pages under writeback among `path`'s first `len`
    /// bytes (`cachestat(2)`, Linux 6.5).
    fn dirty_pages(path: &std::path::Path, len: usize) -> (u64, u64) {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            cache: u64,
            dirty: u64,
            writeback: u64,
            evicted: u64,
            recently_evicted: u64,
        }
        let file = fs::File::open(path).unwrap();
        let (range, mut stat) = (Range { off: 0, len: len as u64 }, Stat::default());
        // SAFETY: `cachestat` reads `range` and writes `stat`, both live and laid out as the kernel's.
        let rc = unsafe { libc::syscall(SYS_CACHESTAT, file.as_raw_fd(), &range as *const Range, &mut stat as *mut Stat, 0) };
        assert_eq!(rc, 0, "cachestat: {}", io::Error::last_os_error());
        (stat.dirty, stat.writeback)
    }

    /// Pages of `path`'s first `len` bytes in the page cache.
    pub(crate) fn cached_pages(path: &std::path::Path, len: usize) -> usize {
        use std::os::fd::AsRawFd;
        let raw = fs::OpenOptions::new().read(true).open(path).unwrap();
        // SAFETY: a fresh read-only shared mapping of `len` bytes of the file, unmapped below.
        let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, raw.as_raw_fd(), 0) };
        assert_ne!(map, libc::MAP_FAILED);
        let mut resident = vec![0u8; len / 4096];
        // SAFETY: `resident` holds one byte per page of the mapping.
        assert_eq!(unsafe { libc::mincore(map, len, resident.as_mut_ptr()) }, 0);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(map, len) };
        resident.iter().filter(|&&r| r & 1 != 0).count()
    }

    /// After `random_access`, a read brings in the pages it asked for and
    /// no readahead window past them (a frame load reads one slot).
    #[test]
    fn random_access_reads_no_further_than_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("frames");
        let len = 4usize << 20;
        fs::write(&path, vec![7u8; len]).unwrap();
        let file = StdVfs.open(&path, false).unwrap();
        file.sync_data().unwrap();
        let raw = fs::File::open(&path).unwrap();
        advise(&raw, 0, 0, libc::POSIX_FADV_DONTNEED).unwrap();
        assert_eq!(cached_pages(&path, len), 0, "clean pages dropped");
        file.random_access().unwrap();
        // Reads one after another: the kernel would take them for a
        // sequential stream and read far ahead.
        let mut buf = vec![0u8; 4096];
        for page in 256..260 {
            assert_eq!(file.read_at(&mut buf, page * 4096).unwrap(), buf.len());
            assert!(buf.iter().all(|&b| b == 7));
        }
        assert_eq!(cached_pages(&path, len), 4, "the pages read, none ahead");
    }
}
