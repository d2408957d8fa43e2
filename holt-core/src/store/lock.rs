//! The store directory's lock, held for the life of an open store so that a
//! second opener gets `Error::Locked` instead of corrupting the first.
//!
//! On real files: `DIR/LOCK` held with `flock(LOCK_EX | LOCK_NB)`, or
//! `LOCK_SH` by read-only opens, which share it with each other only. flock locks
//! belong to open file descriptions, so a second `open()` of `LOCK` in the
//! same process conflicts just like another process does. The kernel drops
//! the lock when its holder dies, so a crash never leaves a stale lock; a
//! clean release unlocks explicitly (see `Held`'s `Drop`).
//!
//! The lock covers the whole directory (frame file, manifest, WAL), so the
//! directory's owner takes it before opening anything in it; the frame store
//! does not take it itself. On a `MemVfs` the lock is an in-process set kept
//! by that `MemVfs`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

#[cfg(any(test, feature = "testing"))]
use super::mem_vfs::{MemDirLock, MemVfs};
use crate::error::{Error, Result};

pub(crate) const LOCK_NAME: &str = "LOCK";

/// A held store lock; dropping it releases the lock.
pub(crate) struct StoreLock {
    _held: Held,
}

enum Held {
    /// The open `LOCK` file, flocked; `Drop` unlocks it.
    Flock(File),
    /// A simulated file system's lock, released by its own `Drop`.
    #[cfg(any(test, feature = "testing"))]
    Mem { _guard: MemDirLock },
}

impl Drop for Held {
    /// Unlock explicitly rather than by closing: a child another thread has
    /// just forked shares the open file description until it execs, and
    /// closing our descriptor would leave the lock held through it, so an
    /// immediate reopen would fail with `Error::Locked`.
    fn drop(&mut self) {
        match self {
            // SAFETY: flock on a descriptor this value owns; no memory is passed.
            Held::Flock(file) => unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_UN);
            },
            // The simulated lock releases itself when its guard drops.
            #[cfg(any(test, feature = "testing"))]
            Held::Mem { .. } => {}
        }
    }
}

impl StoreLock {
    /// Lock the real directory `dir` (which must exist), creating `LOCK`.
    pub(crate) fn acquire(dir: &Path) -> Result<StoreLock> {
        let path = dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Self::flock(file, path, libc::LOCK_EX)
    }

    /// Share the lock of the real directory `dir` with other read-only
    /// openers, for a read-only open: `LOCK` must exist and is opened for
    /// reading only, so this works on read-only media. A writer's exclusive
    /// lock and a shared one exclude each other.
    pub(crate) fn acquire_shared(dir: &Path) -> Result<StoreLock> {
        let path = dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Self::flock(file, path, libc::LOCK_SH)
    }

    fn flock(file: File, path: std::path::PathBuf, op: libc::c_int) -> Result<StoreLock> {
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(StoreLock { _held: Held::Flock(file) });
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Err(Error::Locked { path }),
                _ => return Err(Error::io("flock", path, err)),
            }
        }
    }

    /// Lock `dir` of a simulated file system.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn acquire_mem(vfs: &MemVfs, dir: &Path) -> Result<StoreLock> {
        match vfs.lock_dir(dir) {
            Ok(guard) => Ok(StoreLock { _held: Held::Mem { _guard: guard } }),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Err(Error::Locked { path: dir.join(LOCK_NAME) }),
            Err(e) => Err(Error::io("lock", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn locked_path(r: Result<StoreLock>) -> std::path::PathBuf {
        match r {
            Err(Error::Locked { path }) => path,
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("expected Locked, got the lock"),
        }
    }

    /// Whether a forked child process can take the flock on `path`.
    fn child_can_lock(path: &Path) -> bool {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: the child only calls async-signal-safe functions (open,
        // flock, _exit) on memory prepared before the fork.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let fd = libc::open(c_path.as_ptr(), libc::O_RDWR);
                let ok = fd >= 0 && libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0;
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status));
            libc::WEXITSTATUS(status) == 0
        }
    }

    #[test]
    fn second_handle_in_this_process_is_locked_out() {
        let tmp = tempfile::tempdir().unwrap();
        let held = StoreLock::acquire(tmp.path()).unwrap();
        assert_eq!(locked_path(StoreLock::acquire(tmp.path())), tmp.path().join(LOCK_NAME));
        drop(held);
        StoreLock::acquire(tmp.path()).expect("released on drop");
    }

    #[test]
    fn another_process_is_locked_out_until_release() {
        let tmp = tempfile::tempdir().unwrap();
        let held = StoreLock::acquire(tmp.path()).unwrap();
        let path = tmp.path().join(LOCK_NAME);
        assert!(!child_can_lock(&path));
        drop(held);
        assert!(child_can_lock(&path));
    }

    #[test]
    fn release_does_not_wait_for_a_forked_child_to_exec() {
        let tmp = tempfile::tempdir().unwrap();
        let held = StoreLock::acquire(tmp.path()).unwrap();
        // A child forked by another thread (a process spawn) shares the
        // LOCK description until it execs; this one never does.
        // SAFETY: the child only sleeps and exits (async-signal-safe).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            unsafe {
                libc::sleep(30);
                libc::_exit(0);
            }
        }
        drop(held);
        let again = StoreLock::acquire(tmp.path());
        // SAFETY: signalling and reaping the child forked above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        again.expect("the lock is free as soon as its holder drops it");
    }

    #[test]
    fn shared_locks_coexist_and_exclude_the_writer() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(StoreLock::acquire_shared(tmp.path()), Err(Error::Io { .. })), "LOCK must exist");
        drop(StoreLock::acquire(tmp.path()).unwrap());
        let a = StoreLock::acquire_shared(tmp.path()).unwrap();
        let b = StoreLock::acquire_shared(tmp.path()).unwrap();
        assert_eq!(locked_path(StoreLock::acquire(tmp.path())), tmp.path().join(LOCK_NAME));
        drop((a, b));
        let writer = StoreLock::acquire(tmp.path()).unwrap();
        assert_eq!(locked_path(StoreLock::acquire_shared(tmp.path())), tmp.path().join(LOCK_NAME));
        drop(writer);
    }

    #[test]
    fn symlinked_lock_file_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join(LOCK_NAME)).unwrap();
        match StoreLock::acquire(tmp.path()) {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ELOOP)),
            Err(e) => panic!("expected ELOOP, got {e}"),
            Ok(_) => panic!("a symlinked LOCK must not be locked"),
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let r = StoreLock::acquire(&tmp.path().join("absent"));
        assert!(matches!(r, Err(Error::Io { .. })));
    }

    #[test]
    fn mem_lock_conflicts_per_directory() {
        let vfs = MemVfs::new();
        let held = StoreLock::acquire_mem(&vfs, Path::new("/a")).unwrap();
        assert_eq!(locked_path(StoreLock::acquire_mem(&vfs, Path::new("/a"))), Path::new("/a/LOCK"));
        let _other = StoreLock::acquire_mem(&vfs, Path::new("/b")).unwrap();
        drop(held);
        StoreLock::acquire_mem(&vfs, Path::new("/a")).unwrap();
    }
}
