//! Conversions between fuser's types and the semantics layer's plain ones.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, Request, TimeOrNow};

use crate::schema::{FileKind, Ino, Timespec};
use crate::{Caller, TimeSet};

/// Whether the caller of `req` is in a group: its own, or one of its
/// process's supplementary groups.
pub(super) fn in_group_of(req: &Request) -> impl Fn(u32) -> bool + '_ {
    |gid: u32| gid == req.gid() || supplementary_groups(req.pid()).contains(&gid)
}

/// The supplementary groups of process `pid` (empty if it is gone or its
/// status cannot be read, which errs towards dropping a setgid bit).
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap_or("");
    line.split_whitespace().filter_map(|g| g.parse().ok()).collect()
}

pub(super) fn name(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

pub(super) fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid(), umask: 0 }
}

/// The caller of a create, mkdir or mknod: with POSIX ACLs the kernel
/// leaves the umask to the filesystem (a default ACL replaces it).
pub(super) fn creator(req: &Request, umask: u32) -> Caller {
    Caller { umask, ..caller(req) }
}

pub(super) fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(u64::from(t.nsec))
    }
}

pub(super) fn timespec(t: SystemTime) -> Timespec {
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

pub(super) fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(st) => TimeSet::At(timespec(st)),
    }
}

pub(super) fn file_type(kind: FileKind) -> FileType {
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

pub(super) fn file_attr(ino: Ino, i: &crate::schema::Inode) -> FileAttr {
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
