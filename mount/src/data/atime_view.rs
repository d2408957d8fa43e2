//! The data directory seen through a private mount with the atime rule of
//! the holt-fs mount.
//!
//! A regular file's atime is its data object's, and with FUSE passthrough
//! the kernel reads objects itself, as files of the filesystem holding the
//! store: their atimes would follow that filesystem's mount option (often
//! relatime), whatever `-o noatime` or `-o strictatime` holt-fs was given.
//! So the store's `data/` is cloned into a detached bind mount
//! (`open_tree(OPEN_TREE_CLONE)`) whose atime flag is set to holt-fs's own
//! (`mount_setattr`), and every object is opened through it: by the daemon
//! and, through the descriptors it hands over, by the kernel. The mount is
//! in no mount table and goes away with its last descriptor.
//!
//! Cloning needs CAP_SYS_ADMIN (as passthrough does). Without it objects
//! are opened through the plain directory: `-o noatime` still holds for
//! the daemon's own reads (`O_NOATIME`), which are then the only ones.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::schema::AtimeMode;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RELATIME: u64 = 0x00;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
/// The bits of the atime setting, cleared before one is set.
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_flag(atime: AtimeMode) -> u64 {
    match atime {
        AtimeMode::Relatime => MOUNT_ATTR_RELATIME,
        AtimeMode::Noatime => MOUNT_ATTR_NOATIME,
        AtimeMode::Strictatime => MOUNT_ATTR_STRICTATIME,
    }
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
}

/// A directory descriptor of `dir` reached through a private detached
/// mount with `atime`'s rule.
pub(super) fn open(dir: BorrowedFd<'_>, atime: AtimeMode) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: open_tree with a live descriptor and an empty C path.
    let tree = owned(unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), c"".as_ptr(), flags) })?;
    let attr = MountAttr { attr_set: mount_flag(atime), attr_clr: MOUNT_ATTR_ATIME_MASK, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr on the detached mount's descriptor with a
    // struct of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // The clone's descriptor is O_PATH: open its root as a directory.
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat relative to the live clone descriptor, with a C string.
    owned(libc::c_long::from(unsafe { libc::openat(tree.as_raw_fd(), c".".as_ptr(), flags) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Reads through the view follow its rule, whatever the directory's
    /// own filesystem does (root only: cloning a mount needs CAP_SYS_ADMIN).
    #[test]
    fn reads_through_a_noatime_view_leave_atime_alone() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        // An atime older than mtime: any relatime or strictatime read updates it.
        let old = libc::timespec { tv_sec: 1_000_000, tv_nsec: 0 };
        let omit = libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT };
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: utimensat with a C path and two timespecs.
        assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [old, omit].as_ptr(), 0) }, 0);
        let dir = std::fs::File::open(tmp.path()).unwrap();
        let atime = |name: &std::ffi::CStr, view: &OwnedFd| {
            // SAFETY: openat/read/close on descriptors we own; fstatat into a zeroed struct.
            unsafe {
                let fd = libc::openat(view.as_raw_fd(), name.as_ptr(), libc::O_RDONLY);
                assert!(fd >= 0);
                let mut b = [0u8; 1];
                libc::read(fd, b.as_mut_ptr().cast(), 1);
                libc::close(fd);
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstatat(view.as_raw_fd(), name.as_ptr(), &mut st, 0);
                st.st_atime
            }
        };
        let view = open(dir.as_fd(), AtimeMode::Noatime).expect("root can clone a mount");
        assert_eq!(atime(c"f", &view), 1_000_000, "a read through a noatime view");
        let view = open(dir.as_fd(), AtimeMode::Strictatime).unwrap();
        assert_ne!(atime(c"f", &view), 1_000_000, "a read through a strictatime view");
    }
}
