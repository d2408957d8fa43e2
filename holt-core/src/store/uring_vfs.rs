//! [`Vfs`] whose file reads, writes and fdatasyncs go through io_uring
//! (feature `io-uring`, Linux). Directory operations, lengths, truncation,
//! allocation and mappings use the plain system calls, as [`StdVfs`] does.
//!
//! Invariants:
//! - Each thread has its own ring (created on first use), so threads never
//!   wait for each other's I/O; every call submits one request and waits for
//!   its completion before returning.
//! - A request that reached the kernel is always waited for: its buffer is
//!   the caller's and must not be touched after the call returns. A request
//!   the kernel refused is dropped with its ring, never submitted later.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use super::shared_map::SharedMap;
use super::std_vfs::StdVfs;
use super::vfs::{FileIo, Vfs};

/// Submission queue depth of a thread's ring: one request is in flight at a time.
const RING_ENTRIES: u32 = 4;
/// Largest single read or write request; longer ones are split.
const REQUEST_BYTES_MAX: usize = 1 << 30;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// [`Vfs`] over the operating system's files, with file I/O through io_uring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UringVfs {
    _probed: (),
}

impl UringVfs {
    /// Fails (ENOSYS, EPERM, ...) where the kernel or a sandbox refuses
    /// io_uring, so the caller can fall back to [`StdVfs`].
    pub(crate) fn new() -> io::Result<UringVfs> {
        RING.with(|cell| ring_of(&mut cell.borrow_mut()).map(|_| ()))?;
        Ok(UringVfs { _probed: () })
    }
}

/// This thread's ring, created if needed.
fn ring_of(slot: &mut Option<IoUring>) -> io::Result<&mut IoUring> {
    if slot.is_none() {
        *slot = Some(IoUring::new(RING_ENTRIES)?);
    }
    Ok(slot.as_mut().expect("ring created above"))
}

fn retryable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY))
}

/// The kernel refused the submission: the request still sits in the
/// submission queue, so the ring must be dropped before anything else is
/// submitted on it.
struct Refused(io::Error);

/// Submit one request and wait for its completion; returns the request's
/// result (bytes transferred). See the module invariants for the buffer.
///
/// # Safety
/// Every buffer `entry` points to must stay valid until this returns.
unsafe fn run(entry: squeue::Entry) -> io::Result<u32> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ring = ring_of(&mut slot)?;
        // SAFETY: forwarded from the caller.
        match unsafe { submit_and_complete(ring, &entry) } {
            Ok(Ok(res)) if res < 0 => Err(io::Error::from_raw_os_error(-res)),
            Ok(Ok(res)) => Ok(res as u32),
            Ok(Err(e)) => Err(e),
            Err(Refused(e)) => {
                *slot = None;
                Err(e)
            }
        }
    })
}

/// Inner result: the completion's result, or an error before submission
/// that left the ring clean.
///
/// # Safety
/// As [`run`].
unsafe fn submit_and_complete(ring: &mut IoUring, entry: &squeue::Entry) -> Result<io::Result<i32>, Refused> {
    // SAFETY: the caller keeps the buffers alive until we return, and we
    // return only after the completion, or after a refusal that drops the
    // ring with the request unsubmitted.
    if unsafe { ring.submission().push(entry) }.is_err() {
        return Ok(Err(io::Error::other("io_uring submission queue full")));
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => break,
            Err(e) if retryable(&e) => continue,
            Err(e) => return Err(Refused(e)),
        }
    }
    loop {
        if let Some(cqe) = ring.completion().next() {
            return Ok(Ok(cqe.result()));
        }
        // Submitted: wait for it whatever the wait reports.
        if let Err(e) = ring.submit_and_wait(1) {
            if !retryable(&e) {
                log::error!("io_uring wait failed with a request in flight, retrying: {e}");
            }
        }
    }
}

/// An iovec array's length as a request takes it.
fn iov_len(iov: &[libc::iovec]) -> io::Result<u32> {
    u32::try_from(iov.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

struct UringFile {
    file: File,
}

impl FileIo for UringFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let fd = types::Fd(self.file.as_raw_fd());
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(REQUEST_BYTES_MAX) as u32;
            let entry = opcode::Read::new(fd, buf[done..].as_mut_ptr(), want).offset(offset + done as u64).build();
            // SAFETY: `buf` outlives the call.
            match unsafe { run(entry) } {
                Ok(0) => break,
                Ok(n) => done += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let fd = types::Fd(self.file.as_raw_fd());
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(REQUEST_BYTES_MAX) as u32;
            let entry = opcode::Write::new(fd, buf[done..].as_ptr(), want).offset(offset + done as u64).build();
            // SAFETY: `buf` outlives the call.
            match unsafe { run(entry) } {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read_vectored_at(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
        let fd = types::Fd(self.file.as_raw_fd());
        super::std_vfs::read_full_iov(bufs, offset, |iov, at| {
            let entry = opcode::Readv::new(fd, iov.as_ptr(), iov_len(iov)?).offset(at).build();
            // SAFETY: the iovecs and the buffers they name outlive the call.
            unsafe { run(entry) }.map(|n| n as usize)
        })
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let fd = types::Fd(self.file.as_raw_fd());
        super::std_vfs::write_all_iov(bufs, offset, |iov, at| {
            let entry = opcode::Writev::new(fd, iov.as_ptr(), iov_len(iov)?).offset(at).build();
            // SAFETY: the iovecs and the buffers they name outlive the call.
            unsafe { run(entry) }.map(|n| n as usize)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let fd = types::Fd(self.file.as_raw_fd());
        let entry = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build();
        // SAFETY: the request holds no buffer.
        unsafe { run(entry) }.map(|_| ())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        super::std_vfs::punch_hole(&self.file, offset, len)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        super::std_vfs::allocate(&self.file, offset, len)
    }

    fn first_hole(&self, from: u64, to: u64) -> io::Result<Option<std::ops::Range<u64>>> {
        super::std_vfs::first_hole(&self.file, from, to)
    }

    fn map_shared(&self, len: usize) -> io::Result<Option<SharedMap>> {
        SharedMap::new(&self.file, len).map(Some)
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        super::std_vfs::start_writeback(&self.file, offset, len)
    }

    fn wait_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        super::std_vfs::wait_writeback(&self.file, offset, len)
    }

    fn will_need(&self, offset: u64, len: u64) -> io::Result<()> {
        super::std_vfs::will_need(&self.file, offset, len)
    }

    fn random_access(&self) -> io::Result<()> {
        super::std_vfs::advise(&self.file, 0, 0, libc::POSIX_FADV_RANDOM)
    }
}

impl Vfs for UringVfs {
    fn kind(&self) -> &'static str {
        "io_uring"
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        let file = super::std_vfs::open_options(true, create).open(path)?;
        Ok(Arc::new(UringFile { file }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        StdVfs.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdVfs.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdVfs.sync_dir(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdVfs.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdVfs.create_dir_all(dir)
    }

    /// Frame loads are one read each: a plain `pread` on the direct
    /// descriptor, as with `StdVfs`.
    fn open_direct_reader(&self, path: &Path) -> io::Result<Option<Arc<dyn FileIo>>> {
        StdVfs.open_direct_reader(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_io_matches_pread_pwrite_semantics() {
        let vfs = UringVfs::new().expect("io_uring available (build without the feature where it is not)");
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let f = vfs.open(&path, true).unwrap();
        let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        f.write_at(&big, 4096).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.len().unwrap(), 4096 + big.len() as u64);
        let mut back = vec![0u8; big.len() + 100];
        assert_eq!(f.read_at(&mut back, 4096).unwrap(), big.len(), "short at end of file");
        assert!(back[..big.len()] == big[..]);
        let mut head = [1u8; 16];
        assert_eq!(f.read_at(&mut head, 0).unwrap(), 16);
        assert_eq!(head, [0u8; 16], "the hole reads as zeros");
        f.set_len(10).unwrap();
        assert_eq!(f.read_at(&mut head, 8).unwrap(), 2);
        assert_eq!(std::fs::read(&path).unwrap().len(), 10);
    }

    #[test]
    fn vectored_reads_and_writes_fill_and_take_their_buffers_in_order() {
        let vfs = UringVfs::new().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let f = vfs.open(&tmp.path().join("f"), true).unwrap();
        let parts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i + 1; 1000 * usize::from(i) + 7]).collect();
        let slices: Vec<&[u8]> = parts.iter().map(|p| &p[..]).chain([&[][..]]).collect();
        f.write_all_vectored_at(&slices, 100).unwrap();
        let flat: Vec<u8> = parts.concat();
        let mut whole = vec![0u8; flat.len()];
        assert_eq!(f.read_at(&mut whole, 100).unwrap(), flat.len());
        assert!(whole == flat);
        // Read back into buffers of other sizes, the last past the end.
        let (mut a, mut b, mut c) = (vec![0u8; 3], vec![0u8; 5000], vec![0u8; 9000]);
        let n = f.read_vectored_at(&mut [&mut a, &mut b, &mut c], 100).unwrap();
        assert_eq!(n, flat.len(), "short only at the end of the file");
        assert!([&a[..], &b[..], &c[..n - 5003]].concat() == flat);
    }

    #[test]
    fn errors_come_back_as_errno() {
        let vfs = UringVfs::new().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ro");
        std::fs::write(&path, b"x").unwrap();
        let f = UringFile { file: File::open(&path).unwrap() };
        assert_eq!(f.write_at(b"y", 0).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert!(vfs.open(&tmp.path().join("absent"), false).is_err());
    }

    #[test]
    fn threads_use_their_own_rings() {
        let vfs = UringVfs::new().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let f = vfs.open(&tmp.path().join("f"), true).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let f = Arc::clone(&f);
                s.spawn(move || {
                    let block = vec![t; 4096];
                    for round in 0..50u64 {
                        let off = (round * 4 + u64::from(t)) * 4096;
                        f.write_at(&block, off).unwrap();
                        let mut back = vec![0u8; 4096];
                        assert_eq!(f.read_at(&mut back, off).unwrap(), 4096);
                        assert!(back == block);
                    }
                });
            }
        });
        f.sync_data().unwrap();
    }
}
