//! Attributes: getattr, setattr (chmod, chown, truncate, utimens), readlink,
//! access, and the relatime rule for reads.

use super::acl::{self, Acl};
use super::{AtimeMode, Attr, Caller, Fs};
use crate::error::{FsError, FsResult};
use crate::schema::{FileKind, Ino, Inode, TimeSet, Timespec};

/// Largest file size accepted (the kernel's `loff_t` maximum).
pub(super) const FILE_BYTES_MAX: u64 = i64::MAX as u64;

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

impl Fs {
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.attr(ino, self.meta.inode(ino)?)
    }

    /// The attributes of `ino` as stat(2) shows them: a regular file's size,
    /// blocks and times come from its data object (see `data`).
    pub(super) fn attr(&self, ino: Ino, mut inode: Inode) -> FsResult<Attr> {
        if inode.kind == FileKind::File {
            let st = self.opens.object_stat(ino, || self.data.stat(ino));
            if let Some(st) = st.map_err(|e| FsError::data("stat", ino, e))? {
                inode.size = st.size;
                inode.blocks = st.allocated_bytes.div_ceil(512);
                inode.atime = st.atime;
                inode.mtime = st.mtime;
                inode.ctime = st.ctime;
            }
        }
        Ok(Attr { ino, inode })
    }

    /// Each change goes to the store that owns it: a file's size and times
    /// to its object (one step each), the rest to one metadata batch, made
    /// only if something the inode owns changes.
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        self.writable()?;
        let kind = self.meta.inode(ino)?.kind;
        let file_times = kind == FileKind::File && (set.atime.is_some() || set.mtime.is_some());
        if set.size.is_some() || file_times {
            let stepped = self.object_steps(ino, kind, set, file_times);
            // A failed step may still have changed the object (made it).
            self.opens.forget_stat(ino);
            stepped?;
            self.data_step_done(ino)?;
        }
        let inode_changes = set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || set.ctime.is_some();
        if !inode_changes && (kind == FileKind::File || (set.atime.is_none() && set.mtime.is_none())) {
            return self.getattr(ino);
        }
        let inode = self.transact(|t| {
            let mut inode = t.inode(ino)?;
            let now = Timespec::now();
            if let Some(mode) = set.mode {
                inode.perm = (mode & 0o7777) as u16;
                chmod_acl(t, ino, inode.perm)?;
            }
            inode.uid = set.uid.unwrap_or(inode.uid);
            inode.gid = set.gid.unwrap_or(inode.gid);
            if kind != FileKind::File {
                inode.atime = set.atime.map_or(inode.atime, |a| a.resolve(now));
                inode.mtime = set.mtime.map_or(inode.mtime, |m| m.resolve(now));
            }
            inode.ctime = set.ctime.unwrap_or(now);
            t.put_inode(ino, &inode);
            Ok(inode)
        })?;
        self.status_changed(ino, kind);
        self.attr(ino, inode)
    }

    /// After a committed change of `ino`'s status (mode, owner, names,
    /// xattrs): a regular file's ctime lives in its object, so stamp it
    /// there too. The change is already made; a failure here only leaves
    /// the ctime older, which is logged.
    pub(super) fn status_changed(&self, ino: Ino, kind: FileKind) {
        // Without an object the inode's ctime, stamped by the batch, is the file's.
        if kind != FileKind::File || self.opens.known_without_object(ino) {
            return;
        }
        let stamped = self.data.touch_ctime(ino);
        self.opens.forget_stat(ino);
        if let Err(e) = stamped {
            log::warn!("ctime of inode {} not updated: {e}", ino.0);
        }
    }

    fn object_steps(&self, ino: Ino, kind: FileKind, set: &SetAttr, file_times: bool) -> FsResult<()> {
        if kind == FileKind::File {
            self.object_for_step(ino)?;
        }
        if let Some(size) = set.size {
            self.resize_data(ino, kind, size)?;
        }
        if file_times {
            self.data.set_times(ino, set.atime, set.mtime).map_err(|e| FsError::data("utimens", ino, e))?;
        }
        Ok(())
    }

    /// Cut or extend the data object: one step, which is the whole truncate.
    fn resize_data(&self, ino: Ino, kind: FileKind, size: u64) -> FsResult<()> {
        match kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid("truncate of a special file")),
        }
        if size > FILE_BYTES_MAX {
            return Err(FsError::FileTooBig);
        }
        self.data.set_len(ino, size).map_err(|e| FsError::data("truncate", ino, e))
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
    /// dropped if it races with another update of the inode, and dropped
    /// (logged at debug) if it cannot be written: a read or listing never
    /// fails for want of an atime (a full or poisoned store). Skipped while
    /// the tree is low on space, whose last bytes are for freeing space.
    pub(super) fn touch_atime(&self, ino: Ino) {
        if self.cfg.atime == AtimeMode::Noatime || self.cfg.nodiratime || self.cfg.read_only || self.meta.space_low() {
            return;
        }
        if let Err(e) = self.try_touch_atime(ino) {
            log::debug!("atime of inode {} not updated: {e}", ino.0);
        }
    }

    fn try_touch_atime(&self, ino: Ino) -> FsResult<()> {
        let mut txn = self.meta.txn();
        let mut inode = txn.inode(ino)?;
        let now = Timespec::now();
        if !self.cfg.atime.due(inode.atime, inode.mtime, inode.ctime, now) {
            return Ok(());
        }
        inode.atime = now;
        txn.put_inode(ino, &inode);
        txn.commit()?;
        Ok(())
    }
}

/// Keep `ino`'s access ACL, if any, in step with new permission bits.
fn chmod_acl(t: &mut crate::meta::Txn, ino: Ino, perm: u16) -> FsResult<()> {
    let key = crate::schema::xattr_key(ino, acl::ACCESS);
    if let Some(bytes) = t.get(&key)? {
        let mut acl = Acl::decode(&bytes)?;
        acl.chmod(perm & 0o777);
        t.put(key, acl.encode());
    }
    Ok(())
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
