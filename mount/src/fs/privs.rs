//! Dropping the setuid and setgid bits when a file changes: the VFS rule,
//! applied here because the filesystem handles it (FUSE_HANDLE_KILLPRIV_V2,
//! which spares every write a round trip that asks for
//! `security.capability`). For a regular file:
//! - a write, truncate or fallocate by a caller without CAP_FSETID (taken
//!   to be root) drops setuid, and setgid if the group may execute or the
//!   caller is outside the file's group;
//! - a chown drops setuid, and setgid by the same rule (root counting as a
//!   member of every group).
//!
//! The kernel says which changes need it: an empty setattr (a write or
//! fallocate, including those it makes itself through passthrough), a
//! write with `FUSE_WRITE_KILL_SUIDGID`, and truncates and chowns, whose
//! flag fuser does not pass on, so they are recognised by kind and caller.
//! A kernel that refuses KILLPRIV_V2 clears the bits itself and sends the
//! new mode; applying the rule again changes nothing, except dropping a
//! setgid bit the kernel's FUSE client leaves to a caller outside the group.

use super::attr::SetAttr;
use super::{Attr, Fs};
use crate::error::FsResult;
use crate::schema::{FileKind, Ino};

const SET_UID: u16 = libc::S_ISUID as u16;
const SET_GID: u16 = libc::S_ISGID as u16;
const GROUP_EXEC: u16 = libc::S_IXGRP as u16;

/// Who asks for a change: the privilege rule needs the caller.
pub struct Setter<'a> {
    pub uid: u32,
    /// Whether the caller is in group `gid` (its own or a supplementary one).
    pub in_group: &'a dyn Fn(u32) -> bool,
}

impl Setter<'_> {
    /// Root, with every privilege: nothing is dropped for it but a chown's setuid.
    pub const ROOT: Setter<'static> = Setter { uid: 0, in_group: &|_| true };
}

/// `perm` with the privilege bits a change by `who` drops, `gid` being
/// the file's group.
fn dropped(perm: u16, gid: u32, who: &Setter<'_>) -> u16 {
    let mut perm = perm & !SET_UID;
    let outsider = who.uid != 0 && !(who.in_group)(gid);
    if perm & SET_GID != 0 && (perm & GROUP_EXEC != 0 || outsider) {
        perm &= !SET_GID;
    }
    perm
}

/// Whether `set` from `who` on a file of `kind` is a change that drops
/// privilege bits (a chmod is not: the kernel has applied the rule to it).
fn drops_privileges(set: &SetAttr, kind: FileKind, who: &Setter<'_>) -> bool {
    kind == FileKind::File && may_drop_privileges(set, who)
}

/// [`drops_privileges`] for a regular file: decided by the request alone,
/// so most setattrs (utimens, a plain chmod, root's truncate) need no
/// read of the inode before the setattr's own.
fn may_drop_privileges(set: &SetAttr, who: &Setter<'_>) -> bool {
    let kill_request = *set == SetAttr::default();
    let truncate = set.size.is_some() && who.uid != 0;
    let chown = set.uid.is_some() || set.gid.is_some();
    let chmod_keeping_sgid = set.mode.is_some_and(|m| m & u32::from(SET_GID) != 0);
    kill_request || truncate || chown || chmod_keeping_sgid
}

impl Fs {
    /// [`Fs::setattr`] for `who`, dropping setuid/setgid where the change
    /// calls for it (see the module docs).
    pub fn setattr_as(&self, ino: Ino, set: &SetAttr, who: &Setter<'_>) -> FsResult<Attr> {
        if !may_drop_privileges(set, who) {
            return self.setattr(ino, set);
        }
        let inode = self.meta.inode(ino)?;
        if !drops_privileges(set, inode.kind, who) {
            return self.setattr(ino, set);
        }
        let perm = set.mode.map_or(inode.perm, |m| (m & 0o7777) as u16);
        let keep = set.mode.is_some() && set.uid.is_none() && set.gid.is_none() && set.size.is_none();
        // A chmod only loses a setgid bit its caller may not set.
        let new = if keep {
            if who.uid != 0 && !(who.in_group)(inode.gid) { perm & !SET_GID } else { perm }
        } else {
            dropped(perm, inode.gid, who)
        };
        if new == inode.perm && set.mode.is_none() {
            return if *set == SetAttr::default() { self.getattr(ino) } else { self.setattr(ino, set) };
        }
        self.setattr(ino, &SetAttr { mode: Some(u32::from(new)), ..set.clone() })
    }

    /// A write through the daemon that the kernel marked
    /// `FUSE_WRITE_KILL_SUIDGID`: drop the bits before it.
    pub fn drop_privileges(&self, ino: Ino, who: &Setter<'_>) -> FsResult<()> {
        self.setattr_as(ino, &SetAttr::default(), who).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vfs_rule() {
        let member = Setter { uid: 1000, in_group: &|g| g == 50 };
        assert_eq!(dropped(0o6755, 50, &member), 0o0755, "setuid always; setgid when the group may execute");
        assert_eq!(dropped(0o2745, 50, &member), 0o2745, "a member keeps a setgid without group execute");
        assert_eq!(dropped(0o2745, 60, &member), 0o0745, "an outsider does not");
        assert_eq!(dropped(0o6745, 60, &Setter::ROOT), 0o2745, "root keeps it");
    }

    #[test]
    fn which_changes_drop() {
        let user = Setter { uid: 1000, in_group: &|_| true };
        let file = FileKind::File;
        assert!(drops_privileges(&SetAttr::default(), file, &user));
        assert!(drops_privileges(&SetAttr { size: Some(0), ..SetAttr::default() }, file, &user));
        assert!(!drops_privileges(&SetAttr { size: Some(0), ..SetAttr::default() }, file, &Setter::ROOT));
        assert!(drops_privileges(&SetAttr { uid: Some(5), ..SetAttr::default() }, file, &Setter::ROOT));
        assert!(!drops_privileges(&SetAttr { mode: Some(0o644), ..SetAttr::default() }, file, &user));
        assert!(!drops_privileges(&SetAttr::default(), FileKind::Dir, &user));
    }
}
