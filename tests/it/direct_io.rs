//! Every completed write is seen by every later read, whichever path each
//! takes: O_DIRECT writes (synchronous and through Linux AIO) followed by
//! buffered reads of pages the kernel has cached, on a persistent mount.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use crate::harness::Mount;

const PAGE: usize = 4096;

/// A page-aligned buffer for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    fn filled(len: usize, byte: u8) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, PAGE).unwrap();
        // SAFETY: a non-zero layout; freed in Drop with the same layout.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `ptr` is valid for `len` bytes.
        unsafe { std::ptr::write_bytes(ptr, byte, len) };
        Aligned { ptr, len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: valid for `len` initialized bytes while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `filled` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, std::alloc::Layout::from_size_align(self.len, PAGE).unwrap()) };
    }
}

/// `struct iocb` and `struct io_event` of <linux/aio_abi.h> (little-endian).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: u32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

#[repr(C)]
#[derive(Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const IOCB_CMD_PWRITE: u16 = 1;

/// One O_DIRECT pwrite through io_submit; returns the bytes written.
fn aio_pwrite(file: &File, buf: &Aligned, offset: u64) -> i64 {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: the raw AIO syscalls get valid pointers to locals that outlive them.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_io_setup, 4, &mut ctx), 0, "io_setup");
        let mut cb = Iocb {
            aio_lio_opcode: IOCB_CMD_PWRITE,
            aio_fildes: file.as_raw_fd() as u32,
            aio_buf: buf.ptr as u64,
            aio_nbytes: buf.len as u64,
            aio_offset: offset as i64,
            ..Iocb::default()
        };
        let mut list = [&mut cb as *mut Iocb];
        assert_eq!(libc::syscall(libc::SYS_io_submit, ctx, 1, list.as_mut_ptr()), 1, "io_submit");
        let mut ev = IoEvent::default();
        assert_eq!(libc::syscall(libc::SYS_io_getevents, ctx, 1, 1, &mut ev, std::ptr::null::<libc::timespec>()), 1);
        libc::syscall(libc::SYS_io_destroy, ctx);
        ev.res
    }
}

fn read_all(f: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn buffered_reads_see_completed_direct_and_aio_writes() {
    let m = Mount::persistent(&[]);
    let path = m.path("f");
    let mut expect = vec![b'A'; 1 << 20];
    fs::write(&path, &expect).unwrap();
    let mut reader = File::open(&path).unwrap();
    assert_eq!(read_all(&mut reader), expect, "pages now cached");
    let direct = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();

    let b = Aligned::filled(64 * 1024, b'B');
    assert_eq!(direct.write_at(b.bytes(), 0).unwrap(), b.len);
    expect[..b.len].copy_from_slice(b.bytes());
    assert_eq!(read_all(&mut reader), expect, "same descriptor after an O_DIRECT write");
    assert_eq!(fs::read(&path).unwrap(), expect, "new descriptor after an O_DIRECT write");

    let c = Aligned::filled(1 << 20, b'C');
    assert_eq!(aio_pwrite(&direct, &c, 0), c.len as i64);
    expect.copy_from_slice(c.bytes());
    assert_eq!(read_all(&mut reader), expect, "same descriptor after an AIO O_DIRECT write");

    let d = Aligned::filled(PAGE, b'D');
    assert_eq!(aio_pwrite(&direct, &d, (1 << 20) + 8192), PAGE as i64, "an AIO write that grows the file");
    expect.resize((1 << 20) + 8192, 0);
    expect.extend_from_slice(d.bytes());
    assert_eq!(read_all(&mut reader), expect, "growth by AIO is visible with zeros before it");
    assert_eq!(fs::metadata(&path).unwrap().len(), expect.len() as u64);
}
