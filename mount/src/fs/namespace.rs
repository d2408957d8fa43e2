//! Names: lookup, node creation (mknod, mkdir, symlink, create), link,
//! unlink and rmdir. Each mutation is one transaction touching the dentry,
//! the child inode, the parent inode and, when a last name goes, `R/<ino>`.

use super::acl::{self, Acl};
use super::file::OpenFlags;
use super::{Attr, Caller, Fs, SetAttr, Setter};
use crate::error::{FsError, FsResult};
use crate::meta::Txn;
use crate::schema::{self, check_name, Dentry, FileKind, Ino, Inode, OrphanReason, TimeSet, Timespec};

/// Most names one inode may have (ext4's limit; also caps a directory's subdirectories).
const LINKS_MAX: u32 = 65_000;

/// What a new inode is made of.
struct NewNode<'a> {
    kind: FileKind,
    perm: u16,
    rdev: u32,
    target: &'a [u8],
}

/// The parent of an operation: must be a live directory.
fn parent_dir(t: &mut Txn, parent: Ino) -> FsResult<Inode> {
    let p = t.inode(parent)?;
    if p.kind != FileKind::Dir {
        return Err(FsError::NotDir);
    }
    if p.nlink == 0 {
        return Err(FsError::NotFound);
    }
    Ok(p)
}

fn touch_dir(p: &mut Inode, now: Timespec) {
    p.mtime = now;
    p.ctime = now;
}

impl Fs {
    /// The inode named `name` in `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        match name {
            b"." => return self.lookup_self(parent),
            b".." => return self.lookup_parent(parent),
            _ => {}
        }
        check_name(name)?;
        match self.meta.dentry(parent, name)? {
            Some(d) => self.attr(d.ino, self.meta.inode(d.ino)?),
            None => match self.meta.inode(parent)?.kind {
                FileKind::Dir => Err(FsError::NotFound),
                _ => Err(FsError::NotDir),
            },
        }
    }

    /// `ino` itself, as long as it has a name: what the kernel asks when it
    /// turns a file handle (name_to_handle_at, NFS) into an inode it no
    /// longer caches. Inode numbers are never reused, so a handle of a
    /// removed inode finds nothing (ESTALE), never another file.
    fn lookup_self(&self, ino: Ino) -> FsResult<Attr> {
        let inode = self.meta.inode(ino)?;
        if inode.nlink == 0 {
            return Err(FsError::NotFound);
        }
        self.attr(ino, inode)
    }

    /// The parent of directory `dir` (the root's is itself): how the
    /// kernel reconnects a directory found by its handle to the tree.
    fn lookup_parent(&self, dir: Ino) -> FsResult<Attr> {
        let inode = self.meta.inode(dir)?;
        if inode.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        self.lookup_self(inode.parent)
    }

    /// The kernel dropped `nlookup` references to `ino`. Inode lifetime here
    /// depends only on names and open handles, so there is nothing to do.
    pub fn forget(&self, _ino: Ino, _nlookup: u64) {}

    /// Create a regular file, fifo, socket or device node (`mode` carries the kind).
    pub fn mknod(&self, caller: Caller, parent: Ino, name: &[u8], mode: u32, rdev: u32) -> FsResult<Attr> {
        let kind = FileKind::from_mode(mode).ok_or(FsError::Invalid("mknod of an unknown file type"))?;
        if matches!(kind, FileKind::Dir | FileKind::Symlink) {
            return Err(FsError::Invalid("mknod of a directory or symlink"));
        }
        let rdev = if matches!(kind, FileKind::CharDev | FileKind::BlockDev) { rdev } else { 0 };
        self.make_node(caller, parent, name, NewNode { kind, perm: mode as u16, rdev, target: b"" })
    }

    pub fn mkdir(&self, caller: Caller, parent: Ino, name: &[u8], mode: u32) -> FsResult<Attr> {
        self.make_node(caller, parent, name, NewNode { kind: FileKind::Dir, perm: mode as u16, rdev: 0, target: b"" })
    }

    pub fn symlink(&self, caller: Caller, parent: Ino, name: &[u8], target: &[u8]) -> FsResult<Attr> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > schema::SYMLINK_TARGET_BYTES_MAX {
            return Err(FsError::NameTooLong);
        }
        if target.contains(&0) {
            return Err(FsError::Invalid("NUL in a symlink target"));
        }
        self.make_node(caller, parent, name, NewNode { kind: FileKind::Symlink, perm: 0o777, rdev: 0, target })
    }

    /// Create and open a regular file. Without `O_EXCL`, an existing file is
    /// opened instead (the kernel may ask to create a name it has not seen).
    pub fn create(&self, caller: Caller, parent: Ino, name: &[u8], mode: u32, flags: OpenFlags) -> FsResult<(Attr, u64)> {
        let node = NewNode { kind: FileKind::File, perm: mode as u16, rdev: 0, target: b"" };
        match self.make_node(caller, parent, name, node) {
            Ok(attr) => {
                // The new inode's attributes are in hand: count the handle
                // without reading them back.
                let counted = self.opens.acquire(attr.ino, flags.read_write);
                debug_assert!(counted, "a new inode is not being reclaimed");
                Ok((attr, self.new_fh()))
            }
            Err(FsError::Exists) if !flags.exclusive => self.open_existing(caller, parent, name, flags),
            Err(e) => Err(e),
        }
    }

    /// create(2) of a name that exists: open it (truncated with `O_TRUNC`).
    /// A truncating open drops setuid/setgid as a truncate does (`privs`;
    /// the caller's supplementary groups are not known here, so only its
    /// primary group counts as membership).
    fn open_existing(&self, caller: Caller, parent: Ino, name: &[u8], flags: OpenFlags) -> FsResult<(Attr, u64)> {
        let attr = self.lookup(parent, name)?;
        if attr.inode.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        if flags.truncate && attr.inode.kind == FileKind::File {
            let in_group = |gid: u32| gid == caller.gid;
            let who = Setter { uid: caller.uid, in_group: &in_group };
            // O_TRUNC marks the file modified even where it was empty.
            let truncate = SetAttr { size: Some(0), mtime: Some(TimeSet::Now), ..SetAttr::default() };
            self.setattr_as(attr.ino, &truncate, &who)?;
        }
        let (fh, _) = self.open(attr.ino, flags)?;
        Ok((self.getattr(attr.ino)?, fh))
    }

    /// The inode goes first, then (for a regular file whose objects the
    /// kernel uses) its empty data object. A regular file without an object
    /// is the empty file the create made, with the inode's times, and the
    /// first step that changes its contents or times makes the object; so
    /// without kernel I/O a create makes none. A crash never leaves an
    /// object without an inode (except a power loss, which the next mount
    /// sweeps up).
    fn make_node(&self, caller: Caller, parent: Ino, name: &[u8], node: NewNode) -> FsResult<Attr> {
        self.writable()?;
        check_name(name)?;
        self.space_for_name(parent, name)?;
        let (ino, refill_wanted) = self.inos.alloc(&self.meta)?;
        if refill_wanted {
            self.reclaims.want_ino_refill();
        }
        let kind = node.kind;
        let attr = self.make_inode(caller, parent, name, node, ino)?;
        if kind != FileKind::File {
            return Ok(attr);
        }
        if !self.opens.kernel_io() {
            self.opens.no_object_yet(ino);
            return Ok(attr);
        }
        // Failure leaves the empty file without its object: still the
        // file the create promised; the first write makes the object.
        if let Err(e) = self.data.create(ino) {
            log::debug!("data object of new inode {} not created yet: {e}", ino.0);
        }
        self.attr(ino, attr.inode)
    }

    fn make_inode(&self, caller: Caller, parent: Ino, name: &[u8], node: NewNode, ino: Ino) -> FsResult<Attr> {
        self.transact_counted(|t, usage| {
            let mut p = parent_dir(t, parent)?;
            if t.dentry(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let now = Timespec::now();
            let mut inode = new_inode(caller, &p, &node, now);
            inherit_acls(t, parent, ino, &mut inode, caller.umask)?;
            if node.kind == FileKind::Dir {
                if p.nlink >= LINKS_MAX {
                    return Err(FsError::NotPermitted("too many subdirectories"));
                }
                inode.parent = parent;
                p.nlink += 1;
            }
            touch_dir(&mut p, now);
            t.put_inode(parent, &p);
            t.put_inode(ino, &inode);
            t.put_dentry(parent, name, Dentry { ino, kind: node.kind });
            usage.inodes += 1;
            Ok(Attr { ino, inode })
        })
    }

    /// Give `ino` one more name. Directories cannot be linked (EPERM).
    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> FsResult<Attr> {
        self.writable()?;
        check_name(new_name)?;
        self.space_for_name(new_parent, new_name)?;
        let inode = self.transact(|t| {
            let mut inode = t.inode(ino)?;
            if inode.kind == FileKind::Dir {
                return Err(FsError::NotPermitted("hard link to a directory"));
            }
            if inode.nlink == 0 {
                return Err(FsError::NotFound);
            }
            if inode.nlink >= LINKS_MAX {
                return Err(FsError::NotPermitted("too many links"));
            }
            let mut p = parent_dir(t, new_parent)?;
            if t.dentry(new_parent, new_name)?.is_some() {
                return Err(FsError::Exists);
            }
            let now = Timespec::now();
            inode.nlink += 1;
            inode.ctime = now;
            touch_dir(&mut p, now);
            t.put_inode(ino, &inode);
            t.put_inode(new_parent, &p);
            t.put_dentry(new_parent, new_name, Dentry { ino, kind: inode.kind });
            Ok(inode)
        })?;
        self.status_changed(ino, inode.kind);
        self.attr(ino, inode)
    }

    /// Remove a non-directory name.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        let (d, last) = self.transact(|t| {
            let mut p = parent_dir(t, parent)?;
            let d = t.dentry(parent, name)?.ok_or(FsError::NotFound)?;
            if d.kind == FileKind::Dir {
                return Err(FsError::IsDir);
            }
            let now = Timespec::now();
            let last = drop_name(t, d.ino, now)?;
            t.delete_dentry(parent, name);
            touch_dir(&mut p, now);
            t.put_inode(parent, &p);
            Ok((d, last))
        })?;
        if last {
            self.reclaim_after_commit(d.ino);
            return Ok(());
        }
        self.status_changed(d.ino, d.kind);
        Ok(())
    }

    /// Remove an empty directory.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        let ino = self.transact(|t| {
            let mut p = parent_dir(t, parent)?;
            let d = t.dentry(parent, name)?.ok_or(FsError::NotFound)?;
            if d.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            if !t.dir_is_empty(d.ino)? {
                return Err(FsError::NotEmpty);
            }
            let now = Timespec::now();
            remove_dir_inode(t, d.ino, now)?;
            t.delete_dentry(parent, name);
            p.nlink -= 1;
            touch_dir(&mut p, now);
            t.put_inode(parent, &p);
            Ok(d.ino)
        })?;
        self.reclaim_after_commit(ino);
        Ok(())
    }
}

/// The ACLs and permission bits of new inode `ino` under `parent`: from
/// the parent's default ACL if it has one (no umask), else the umask.
fn inherit_acls(t: &mut Txn, parent: Ino, ino: Ino, inode: &mut Inode, umask: u32) -> FsResult<()> {
    if inode.kind == FileKind::Symlink {
        return Ok(());
    }
    let Some(bytes) = t.get(&schema::xattr_key(parent, acl::DEFAULT))? else {
        inode.perm &= !((umask & 0o777) as u16);
        return Ok(());
    };
    let default = Acl::decode(&bytes)?;
    let access = default.inherit(inode.perm & 0o777);
    inode.perm = (inode.perm & !0o777) | access.mode_bits();
    if !access.is_mode_only() {
        t.put(schema::xattr_key(ino, acl::ACCESS), access.encode());
    }
    if inode.kind == FileKind::Dir {
        t.put(schema::xattr_key(ino, acl::DEFAULT), bytes);
    }
    Ok(())
}

fn new_inode(caller: Caller, parent: &Inode, node: &NewNode, now: Timespec) -> Inode {
    let mut perm = node.perm & 0o7777;
    let mut gid = caller.gid;
    if parent.perm & libc::S_ISGID as u16 != 0 {
        gid = parent.gid;
        if node.kind == FileKind::Dir {
            perm |= libc::S_ISGID as u16;
        } else if caller.uid != 0 && caller.gid != gid {
            perm &= !(libc::S_ISGID as u16);
        }
    }
    let mut inode = Inode::new(node.kind, perm, caller.uid, gid, now);
    inode.rdev = node.rdev;
    inode.target = node.target.to_vec();
    // A symlink's size is its target's length, as lstat(2) reports.
    inode.size = node.target.len() as u64;
    inode
}

/// Take one name away from non-directory `ino`; true if it was the last
/// (then `R/<ino>` joins the batch).
pub(super) fn drop_name(t: &mut Txn, ino: Ino, now: Timespec) -> FsResult<bool> {
    let mut inode = t.inode(ino)?;
    inode.nlink = inode.nlink.checked_sub(1).ok_or(FsError::Corrupt {
        key: schema::inode_key(ino),
        what: "a named inode has nlink 0",
    })?;
    inode.ctime = now;
    t.put_inode(ino, &inode);
    if inode.nlink == 0 {
        t.put(schema::orphan_key(ino), OrphanReason::Unlinked.encode().to_vec());
    }
    Ok(inode.nlink == 0)
}

/// Unlink the (empty) directory `ino` from the namespace; its parent's
/// nlink is the caller's business.
pub(super) fn remove_dir_inode(t: &mut Txn, ino: Ino, now: Timespec) -> FsResult<()> {
    let mut inode = t.inode(ino)?;
    inode.nlink = 0;
    inode.ctime = now;
    t.put_inode(ino, &inode);
    t.put(schema::orphan_key(ino), OrphanReason::Unlinked.encode().to_vec());
    Ok(())
}
