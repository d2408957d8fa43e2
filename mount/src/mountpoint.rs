//! Mountpoint housekeeping: finding FUSE mounts, clearing a dead one (its
//! daemon died, so every access fails with ENOTCONN) and unmounting. Root
//! unmounts with umount2(2); other users go through `fusermount3 -u`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What is at a mountpoint right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountState {
    /// Not a mountpoint.
    Free,
    /// Something is mounted here and answers.
    Mounted,
    /// A FUSE mount whose daemon is gone ("Transport endpoint is not connected").
    Dead,
}

/// The filesystem type of a holt-fs mount (`fuse.` + the subtype), as both
/// our own mount(2) and fusermount3 make it; mounts made by older builds
/// through fuser's mount(2) show plain `fuse`, which `is_holt` accepts too.
pub const FS_TYPE: &str = "fuse.holt-fs";
/// The source of a `--memory` mount.
pub const MEMORY_SOURCE: &str = "holt-fs:memory";

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub fs_type: String,
    /// The source column: a holt-fs mount's store directory.
    pub source: PathBuf,
    /// The mount's own options start with `ro`.
    pub read_only: bool,
}

/// Parse one mountinfo line: fields 5 (mount point) and 6 (mount
/// options) and, after the ` - ` separator, the type and the source;
/// octal escapes undone.
fn parse_mountinfo_line(line: &[u8]) -> Option<MountEntry> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let sep = fields.iter().position(|f| *f == b"-")?;
    let path = |f: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(f)));
    Some(MountEntry {
        mountpoint: path(fields.get(4)?),
        fs_type: String::from_utf8_lossy(fields.get(sep + 1)?).into_owned(),
        source: path(fields.get(sep + 2)?),
        read_only: fields.get(5)?.split(|&b| b == b',').next() == Some(b"ro"),
    })
}

/// Every mount in this process's mount namespace.
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    let info = std::fs::read("/proc/self/mountinfo")?;
    Ok(info.split(|&b| b == b'\n').filter_map(parse_mountinfo_line).collect())
}

fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(mounts()?.into_iter().map(|m| m.mountpoint).collect())
}

/// The mount at `mountpoint` (canonical path), if any; the last one wins
/// when several are stacked.
pub fn entry(mountpoint: &Path) -> io::Result<Option<MountEntry>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.mountpoint == mountpoint))
}

impl MountEntry {
    /// Whether holt-fs serves this mount: a FUSE mount whose source is a
    /// store directory or the memory marker.
    pub fn is_holt(&self) -> bool {
        let fuse = self.fs_type == "fuse" || self.fs_type == FS_TYPE;
        fuse && (self.source == Path::new(MEMORY_SOURCE) || crate::store::is_store(&self.source))
    }
}

/// Whether a holt-fs mount serves the store in `store` (canonical path).
pub fn store_mounted(store: &Path) -> bool {
    mounts().is_ok_and(|all| all.iter().any(|m| m.source == store && m.is_holt()))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let oct = s.get(i + 1..i + 4).filter(|d| s[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// The state of `mountpoint` (an absolute, canonical path compares best).
///
/// A dead FUSE mount can still answer stat(2) from the kernel's attribute
/// cache, so the probe is statfs(2), which always reaches the daemon.
pub fn state(mountpoint: &Path) -> io::Result<MountState> {
    let path = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the mountpoint path"))?;
    // SAFETY: statvfs fills a zeroed struct from a valid C path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTCONN) => Ok(MountState::Dead),
            _ => Err(e),
        };
    }
    let canonical = std::fs::canonicalize(mountpoint)?;
    Ok(if mount_points()?.contains(&canonical) { MountState::Mounted } else { MountState::Free })
}

/// Unmount `mountpoint`; `lazy` detaches it even while files are in use.
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let path = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the mountpoint path"))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: umount2 with a valid C path.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(e);
    }
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let status = cmd.arg(mountpoint).status().map_err(|e| {
        io::Error::new(e.kind(), format!("umount2 is not permitted and fusermount3 could not run: {e}"))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("fusermount3 -u {} failed: {status}", mountpoint.display())))
    }
}

/// `unmount`, retried while the mount is busy, for up to `wait`. A file
/// closed just before is still held by any child forked while it was open
/// (until the child's exec closes it), so a `close; umount` can meet an
/// EBUSY that clears by itself; a file really held open keeps it.
pub fn unmount_waiting_out_busy(mountpoint: &Path, lazy: bool, wait: Duration) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        match unmount(mountpoint, lazy) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

/// If a dead FUSE mount sits at `mountpoint`, detach it; true if one was cleared.
pub fn clear_dead(mountpoint: &Path) -> io::Result<bool> {
    if state(mountpoint)? != MountState::Dead {
        return Ok(false);
    }
    unmount(mountpoint, true)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_point_type_and_source() {
        let line = br"36 35 0:52 / /mnt/a\040b rw,nosuid,nodev - fuse.holt-fs /var/holt\040s rw,user_id=0";
        let e = parse_mountinfo_line(line).unwrap();
        assert_eq!(e.mountpoint, Path::new("/mnt/a b"));
        assert_eq!((e.fs_type.as_str(), e.source.as_path()), (FS_TYPE, Path::new("/var/holt s")));
        assert!(!e.read_only);
        let ro = br"36 35 0:52 / /mnt/r ro,nosuid,nodev - fuse.holt-fs /s rw,user_id=0";
        assert!(parse_mountinfo_line(ro).unwrap().read_only, "the mount's own options, not the superblock's");
        assert!(parse_mountinfo_line(b"garbage").is_none());
        assert!(mounts().unwrap().iter().any(|m| m.mountpoint == Path::new("/proc") && m.fs_type == "proc"));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal(br"/tmp/a\040b\134c"), b"/tmp/a b\\c");
        assert_eq!(unescape_octal(br"/x\04"), br"/x\04");
    }

    #[test]
    fn plain_directory_is_free() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(state(dir.path()).unwrap(), MountState::Free);
        assert!(!clear_dead(dir.path()).unwrap());
        assert_eq!(state(Path::new("/proc")).unwrap(), MountState::Mounted);
    }
}
