//! Mounting with mount(2) ourselves where we may (root): the filesystem
//! shows as type `fuse.holt-fs` with the store as its source, where
//! fuser's own mount(2) always says `fuse`. The kernel options are those
//! fuser's pure-Rust mounter passes (`fd`, `rootmode`, `user_id`,
//! `group_id`, then `default_permissions` and `allow_other`); fuser sets no
//! `max_read`, and neither do we (the kernel's default is unlimited).
//! Users who may not call mount(2) get `None` and go through fuser's
//! fusermount3 path, which gives the same type through its `subtype`.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::FuseOptions;
use crate::AtimeMode;

/// The FUSE device; each open is a new connection.
const DEV_FUSE: &str = "/dev/fuse";
/// The root's mode bits as the kernel takes them: a directory.
const ROOT_MODE: u32 = libc::S_IFDIR;

/// The mount(2) flags `opts` ask for: nosuid, nodev and noexec unless
/// allowed, ro, and the atime options.
fn flags(opts: &FuseOptions) -> libc::c_ulong {
    let set = [
        (!opts.suid, libc::MS_NOSUID),
        (!opts.dev, libc::MS_NODEV),
        (!opts.exec, libc::MS_NOEXEC),
        (opts.read_only, libc::MS_RDONLY),
        (opts.atime == AtimeMode::Noatime, libc::MS_NOATIME),
        (opts.atime == AtimeMode::Strictatime, libc::MS_STRICTATIME),
        (opts.nodiratime, libc::MS_NODIRATIME),
        (opts.lazytime, libc::MS_LAZYTIME),
    ];
    set.iter().filter(|(on, _)| *on).fold(0, |acc, (_, flag)| acc | flag)
}

/// The data string of a FUSE mount on descriptor `fd` for `uid`/`gid`.
fn data(fd: i32, uid: u32, gid: u32, allow_other: bool) -> String {
    let mut data = format!("fd={fd},rootmode={ROOT_MODE:o},user_id={uid},group_id={gid},default_permissions");
    if allow_other {
        data.push_str(",allow_other");
    }
    data
}

fn c_string(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL in the {what}")))
}

/// Open /dev/fuse and mount it at `mountpoint` as type `fuse.holt-fs`
/// with source `opts.fsname`; returns the connection's descriptor, or
/// `None` where mount(2) is not permitted (EPERM).
pub(super) fn mount(mountpoint: &Path, opts: &FuseOptions) -> io::Result<Option<OwnedFd>> {
    let dev = OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(DEV_FUSE).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => "is the fuse module loaded? modprobe fuse",
            io::ErrorKind::PermissionDenied => {
                "mounting as a user needs it readable and writable by all, as distributions ship it, and fusermount3"
            }
            _ => "the FUSE device",
        };
        io::Error::new(e.kind(), format!("cannot open {DEV_FUSE}: {e} ({hint})"))
    })?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = c_string(data(dev.as_raw_fd(), uid, gid, opts.allow_other).as_bytes(), "mount options")?;
    let source = c_string(opts.fsname.as_bytes(), "store path")?;
    let target = c_string(mountpoint.as_os_str().as_bytes(), "mountpoint")?;
    let fstype = c_string(crate::mountpoint::FS_TYPE.as_bytes(), "type")?;
    // SAFETY: mount(2) with valid C strings; `data` is a NUL-terminated string.
    let rc =
        unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags(opts), data.as_ptr().cast()) };
    if rc == 0 {
        return Ok(Some(dev.into()));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) => Ok(None),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_flags_unless_asked_otherwise() {
        let safe = FuseOptions::default();
        assert_eq!(flags(&safe), libc::MS_NOSUID | libc::MS_NODEV);
        let opts = FuseOptions { suid: true, dev: true, exec: false, read_only: true, atime: AtimeMode::Noatime, ..safe };
        assert_eq!(flags(&opts), libc::MS_NOEXEC | libc::MS_RDONLY | libc::MS_NOATIME);
        let opts = FuseOptions { atime: AtimeMode::Strictatime, nodiratime: true, lazytime: true, ..FuseOptions::default() };
        let atimes = libc::MS_STRICTATIME | libc::MS_NODIRATIME | libc::MS_LAZYTIME;
        assert_eq!(flags(&opts), libc::MS_NOSUID | libc::MS_NODEV | atimes);
    }

    #[test]
    fn data_names_the_descriptor_owner_and_permissions() {
        assert_eq!(data(5, 0, 0, false), "fd=5,rootmode=40000,user_id=0,group_id=0,default_permissions");
        assert!(data(7, 1000, 100, true).ends_with("group_id=100,default_permissions,allow_other"));
    }
}
