//! Attributes: getattr, setattr (chmod, chown, truncate, utimens), readlink,
//! access, and the relatime rule for reads.

use super::{AtimeMode, Attr, Caller, Fs};
use crate::error::{FsError, FsResult};
use crate::schema::{FileKind, Ino, Inode, Timespec};

/// Largest file size accepted (the kernel's `loff_t` maximum).
pub(super) const FILE_BYTES_MAX: u64 = i64::MAX as u64;
/// relatime refreshes an atime older than this even if it is newer than mtime/ctime.
const RELATIME_SECS: i64 = 24 * 3600;

/// A time to set: the current time (UTIME_NOW) or a given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timespec),
}

/// The attributes a setattr changes; `None` leaves one as it is (UTIME_OMIT).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<Timespec>,
}

fn resolve(t: TimeSet, now: Timespec) -> Timespec {
    match t {
        TimeSet::Now => now,
        TimeSet::At(ts) => ts,
    }
}

impl Fs {
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        Ok(Attr { ino, inode: self.meta.inode(ino)? })
    }

    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        self.writable()?;
        if let Some(size) = set.size {
            self.resize_data(ino, size)?;
        }
        let blocks = match set.size {
            Some(_) => Some(self.allocated_blocks(ino)?),
            None => None,
        };
        self.transact_counted(|t, usage| {
            let mut inode = t.inode(ino)?;
            let now = Timespec::now();
            if let Some(mode) = set.mode {
                inode.perm = (mode & 0o7777) as u16;
            }
            inode.uid = set.uid.unwrap_or(inode.uid);
            inode.gid = set.gid.unwrap_or(inode.gid);
            if let (Some(size), Some(blocks)) = (set.size, blocks) {
                usage.bytes += size as i64 - inode.size as i64;
                if size != inode.size {
                    inode.mtime = now;
                }
                inode.size = size;
                inode.blocks = blocks;
            }
            if let Some(a) = set.atime {
                inode.atime = resolve(a, now);
            }
            if let Some(m) = set.mtime {
                inode.mtime = resolve(m, now);
            }
            inode.ctime = set.ctime.unwrap_or(now);
            t.put_inode(ino, &inode);
            Ok(Attr { ino, inode })
        })
    }

    /// Set a regular file's size (O_TRUNC, truncate).
    pub(super) fn truncate(&self, ino: Ino, size: u64) -> FsResult<Attr> {
        self.setattr(ino, &SetAttr { size: Some(size), mtime: Some(TimeSet::Now), ..SetAttr::default() })
    }

    /// Cut or extend the data object ahead of the metadata that exposes the size.
    fn resize_data(&self, ino: Ino, size: u64) -> FsResult<()> {
        match self.meta.inode(ino)?.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid("truncate of a special file")),
        }
        if size > FILE_BYTES_MAX {
            return Err(FsError::FileTooBig);
        }
        self.data.set_len(ino, size).map_err(|e| FsError::data("truncate", ino, e))
    }

    pub(super) fn allocated_blocks(&self, ino: Ino) -> FsResult<u64> {
        let bytes = self.data.allocated_bytes(ino).map_err(|e| FsError::data("stat", ino, e))?;
        Ok(bytes.div_ceil(512))
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let inode = self.meta.inode(ino)?;
        if inode.kind != FileKind::Symlink {
            return Err(FsError::Invalid("readlink of a non-symlink"));
        }
        Ok(inode.target)
    }

    /// access(2) by permission bits (the kernel usually checks these itself
    /// under `default_permissions`).
    pub fn access(&self, caller: Caller, ino: Ino, mask: u32) -> FsResult<()> {
        let inode = self.meta.inode(ino)?;
        let mask = mask & (libc::R_OK | libc::W_OK | libc::X_OK) as u32;
        if mask & libc::W_OK as u32 != 0 && self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if permits(&inode, caller, mask) {
            Ok(())
        } else {
            Err(FsError::AccessDenied)
        }
    }

    /// Apply the atime rule after a read of `ino`. Best effort: one attempt,
    /// dropped if it races with another update of the inode.
    pub(super) fn touch_atime(&self, ino: Ino) -> FsResult<()> {
        if self.cfg.atime == AtimeMode::Noatime || self.cfg.read_only {
            return Ok(());
        }
        let mut txn = self.meta.txn();
        let mut inode = txn.inode(ino)?;
        let now = Timespec::now();
        if !relatime_due(&inode, now) {
            return Ok(());
        }
        inode.atime = now;
        txn.put_inode(ino, &inode);
        txn.commit()?;
        Ok(())
    }
}

fn relatime_due(inode: &Inode, now: Timespec) -> bool {
    inode.atime <= inode.mtime || inode.atime <= inode.ctime || now.sec - inode.atime.sec >= RELATIME_SECS
}

/// Whether `caller` may access `inode` for every bit of `mask` (R=4, W=2, X=1).
fn permits(inode: &Inode, caller: Caller, mask: u32) -> bool {
    let perm = u32::from(inode.perm);
    if caller.uid == 0 {
        let any_x = perm & 0o111 != 0 || inode.kind == FileKind::Dir;
        return mask & libc::X_OK as u32 == 0 || any_x;
    }
    let class = if caller.uid == inode.uid {
        perm >> 6
    } else if caller.gid == inode.gid {
        perm >> 3
    } else {
        perm
    };
    class & mask == mask
}
