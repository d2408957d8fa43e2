//! POSIX ACLs, kept as the `system.posix_acl_access` and
//! `system.posix_acl_default` xattrs in the kernel's xattr encoding. The
//! kernel enforces them (FUSE_POSIX_ACL) and validates every ACL it sets;
//! the filesystem keeps them consistent with the mode, as ext4 does:
//! - setting an access ACL sets the permission bits it implies, and one
//!   that says no more than the mode is not stored at all;
//! - chmod rewrites the owner, mask (or group) and other entries;
//! - a new inode under a directory with a default ACL gets an access ACL
//!   from it, masked by the create mode, and no umask; a new directory also
//!   inherits the default ACL. Without one the umask applies.
//!
//! Encoding (`posix_acl_xattr_header`, little-endian): a u32 version (2),
//! then entries of u16 tag, u16 permission bits, u32 id.

use crate::error::{FsError, FsResult};

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
pub(crate) const HEADER_BYTES: usize = 4;
pub(crate) const ENTRY_BYTES: usize = 8;
/// The header's and each entry's fields: name, offset, size, as FORMAT.md
/// documents them and `format_doc` checks against the encoder.
#[cfg(test)]
pub(crate) const HEADER_FIELDS: &[(&str, usize, usize)] = &[("version", 0, 4)];
#[cfg(test)]
pub(crate) const ENTRY_FIELDS: &[(&str, usize, usize)] = &[("tag", 0, 2), ("perm", 2, 2), ("id", 4, 4)];
pub(crate) const USER_OBJ: u16 = 0x01;
pub(crate) const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A decoded ACL, valid by construction (see [`Acl::decode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Decode and check an ACL: one owner, group and other entry, a mask
    /// if there are named entries, permissions within rwx.
    pub fn decode(bytes: &[u8]) -> FsResult<Acl> {
        let bad = FsError::Invalid("malformed POSIX ACL");
        if bytes.len() < HEADER_BYTES || !(bytes.len() - HEADER_BYTES).is_multiple_of(ENTRY_BYTES) {
            return Err(bad);
        }
        if u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) != VERSION {
            return Err(bad);
        }
        let entries: Vec<Entry> = bytes[HEADER_BYTES..]
            .chunks_exact(ENTRY_BYTES)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let count = |tag| entries.iter().filter(|e| e.tag == tag).count();
        let named = count(USER) + count(GROUP);
        let known = [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER];
        let ok = entries.iter().all(|e| known.contains(&e.tag) && e.perm <= 7)
            && count(USER_OBJ) == 1
            && count(GROUP_OBJ) == 1
            && count(OTHER) == 1
            && count(MASK) <= 1
            && (named == 0 || count(MASK) == 1);
        if !ok {
            return Err(bad);
        }
        Ok(Acl { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + ENTRY_BYTES * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn perm(&self, tag: u16) -> u16 {
        self.entries.iter().find(|e| e.tag == tag).map_or(0, |e| e.perm)
    }

    /// The entry the mode's group bits stand for: the mask if any.
    fn group_class(&self) -> u16 {
        if self.entries.iter().any(|e| e.tag == MASK) {
            MASK
        } else {
            GROUP_OBJ
        }
    }

    /// The permission bits (0o777) this ACL implies.
    pub fn mode_bits(&self) -> u16 {
        (self.perm(USER_OBJ) << 6) | (self.perm(self.group_class()) << 3) | self.perm(OTHER)
    }

    /// Whether the mode alone says everything this ACL says.
    pub fn is_mode_only(&self) -> bool {
        self.entries.len() == 3
    }

    /// Set the owner, group-class and other entries from `mode`'s bits.
    pub fn chmod(&mut self, mode: u16) {
        let class = self.group_class();
        for e in &mut self.entries {
            match e.tag {
                USER_OBJ => e.perm = (mode >> 6) & 7,
                OTHER => e.perm = mode & 7,
                t if t == class => e.perm = (mode >> 3) & 7,
                _ => {}
            }
        }
    }

    /// The access ACL of a new inode under a directory whose default ACL
    /// is `self`, created with `mode`: each class entry masked by the mode.
    pub fn inherit(&self, mode: u16) -> Acl {
        let class = self.group_class();
        let mut acl = self.clone();
        for e in &mut acl.entries {
            match e.tag {
                USER_OBJ => e.perm &= (mode >> 6) & 7,
                OTHER => e.perm &= mode & 7,
                t if t == class => e.perm &= (mode >> 3) & 7,
                _ => {}
            }
        }
        acl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let entries = entries.iter().map(|&(tag, perm, id)| Entry { tag, perm, id }).collect();
        Acl { entries }.encode()
    }

    const NONE: u32 = u32::MAX;

    #[test]
    fn decode_checks_what_the_kernel_checks() {
        let base = acl(&[(USER_OBJ, 6, NONE), (GROUP_OBJ, 4, NONE), (OTHER, 4, NONE)]);
        let a = Acl::decode(&base).unwrap();
        assert!(a.is_mode_only());
        assert_eq!(a.mode_bits(), 0o644);
        assert_eq!(a.encode(), base);
        let named_without_mask = acl(&[(USER_OBJ, 6, NONE), (USER, 6, 1000), (GROUP_OBJ, 4, NONE), (OTHER, 4, NONE)]);
        assert!(Acl::decode(&named_without_mask).is_err());
        assert!(Acl::decode(&acl(&[(USER_OBJ, 6, NONE), (OTHER, 4, NONE)])).is_err(), "no group entry");
        assert!(Acl::decode(&acl(&[(USER_OBJ, 8, NONE), (GROUP_OBJ, 4, NONE), (OTHER, 4, NONE)])).is_err());
        assert!(Acl::decode(&base[..base.len() - 1]).is_err());
        assert!(Acl::decode(b"").is_err());
    }

    #[test]
    fn the_mask_stands_for_the_group_bits() {
        let bytes = acl(&[(USER_OBJ, 7, NONE), (USER, 6, 1000), (GROUP_OBJ, 4, NONE), (MASK, 6, NONE), (OTHER, 0, NONE)]);
        let mut a = Acl::decode(&bytes).unwrap();
        assert!(!a.is_mode_only());
        assert_eq!(a.mode_bits(), 0o760);
        a.chmod(0o705);
        assert_eq!(a.mode_bits(), 0o705);
        assert_eq!(a.perm(GROUP_OBJ), 4, "chmod leaves the owning group's entry behind the mask");
        assert_eq!(a.perm(USER), 6, "and named entries");
    }

    #[test]
    fn inheritance_masks_each_class_by_the_create_mode() {
        let default =
            Acl::decode(&acl(&[(USER_OBJ, 7, NONE), (USER, 7, 1000), (GROUP_OBJ, 5, NONE), (MASK, 7, NONE), (OTHER, 5, NONE)]))
                .unwrap();
        let file = default.inherit(0o666);
        assert_eq!(file.mode_bits(), 0o664);
        assert_eq!(file.perm(USER), 7, "named entries are limited by the mask, not changed");
    }
}
