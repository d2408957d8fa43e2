//! Each operation as its one system call through the mount, with the raw
//! errno on failure (a killed daemon answers ENOTCONN or ECONNABORTED).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::op::Op;

/// A failed call's errno.
pub type Errno = i32;

/// One worker's handle on the mount: at most one open file at a time.
pub struct Exec {
    mount: PathBuf,
    fd: Option<libc::c_int>,
}

fn errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn cvt(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn cstr(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("workload names and values have no NUL")
}

impl Exec {
    pub fn new(mount: &Path) -> Exec {
        Exec { mount: mount.to_path_buf(), fd: None }
    }

    fn path(&self, rel: &str) -> CString {
        cstr(self.mount.join(rel).as_os_str().as_bytes())
    }

    fn open_fd(&self) -> libc::c_int {
        self.fd.expect("a descriptor operation follows its open")
    }

    /// Run `op`; `Ok` carries the bytes a write wrote (0 for other calls).
    pub fn run(&mut self, op: &Op) -> Result<usize, Errno> {
        // SAFETY (every call below): libc calls with valid C strings and
        // buffers that outlive the call, on descriptors this Exec owns.
        match op {
            Op::Create { path, mode } => {
                let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
                self.fd = Some(cvt(unsafe { libc::open(self.path(path).as_ptr(), flags, *mode) })?);
            }
            Op::OpenTrunc { path } => {
                let flags = libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC;
                self.fd = Some(cvt(unsafe { libc::open(self.path(path).as_ptr(), flags) })?);
            }
            Op::Write { off, data, .. } => {
                let fd = self.open_fd();
                let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), *off as libc::off_t) };
                return if n < 0 { Err(errno()) } else { Ok(n as usize) };
            }
            Op::Fsync { .. } => {
                cvt(unsafe { libc::fsync(self.open_fd()) })?;
            }
            Op::Truncate { len, .. } => {
                cvt(unsafe { libc::ftruncate(self.open_fd(), *len as libc::off_t) })?;
            }
            _ => self.run_path_op(op)?,
        }
        Ok(0)
    }

    fn run_path_op(&self, op: &Op) -> Result<(), Errno> {
        // SAFETY: as in `run`.
        let ret = match op {
            Op::Mkdir { path, mode } => unsafe { libc::mkdir(self.path(path).as_ptr(), *mode) },
            Op::Rmdir { path } => unsafe { libc::rmdir(self.path(path).as_ptr()) },
            Op::Rename { from, to } => unsafe { libc::rename(self.path(from).as_ptr(), self.path(to).as_ptr()) },
            Op::Link { from, to } => unsafe { libc::link(self.path(from).as_ptr(), self.path(to).as_ptr()) },
            Op::Symlink { target, path } => unsafe { libc::symlink(cstr(target).as_ptr(), self.path(path).as_ptr()) },
            Op::Unlink { path } => unsafe { libc::unlink(self.path(path).as_ptr()) },
            Op::Chmod { path, mode } => unsafe { libc::chmod(self.path(path).as_ptr(), *mode) },
            Op::Utimens { path, mtime } => {
                let atime = libc::timespec { tv_sec: mtime.sec - 86_400, tv_nsec: mtime.nsec };
                let times = [atime, libc::timespec { tv_sec: mtime.sec, tv_nsec: mtime.nsec }];
                unsafe { libc::utimensat(libc::AT_FDCWD, self.path(path).as_ptr(), times.as_ptr(), 0) }
            }
            Op::SetXattr { path, name, value } => unsafe {
                libc::setxattr(self.path(path).as_ptr(), cstr(name).as_ptr(), value.as_ptr().cast(), value.len(), 0)
            },
            Op::RemoveXattr { path, name } => unsafe {
                libc::removexattr(self.path(path).as_ptr(), cstr(name).as_ptr())
            },
            Op::Create { .. } | Op::OpenTrunc { .. } | Op::Write { .. } | Op::Fsync { .. } | Op::Truncate { .. } => {
                unreachable!("descriptor operations are run by `run`")
            }
        };
        cvt(ret).map(|_| ())
    }

    /// Open an existing file for writing; changes nothing.
    pub fn open_existing(&mut self, path: &str) -> Result<(), Errno> {
        // SAFETY: open with a valid C path.
        self.fd = Some(cvt(unsafe { libc::open(self.path(path).as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?);
        Ok(())
    }

    /// Close the open file. Its result is not an acknowledgement of
    /// anything: writes were acknowledged one by one.
    pub fn close(&mut self) {
        if let Some(fd) = self.fd.take() {
            // SAFETY: closing the descriptor this Exec opened.
            unsafe { libc::close(fd) };
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        self.close();
    }
}
