//! Extended attributes under `X/<ino>/<name>`. Changing one also updates the
//! inode's ctime, in the same batch. The namespaces are ext4's: `user.`,
//! `trusted.` (the kernel lets only CAP_SYS_ADMIN read or write them; they
//! are listed to root only), `security.`, and in `system.` only the POSIX
//! ACLs (`acl`); any other name is refused with EOPNOTSUPP.

use super::acl::{self, Acl};
use super::privs::Setter;
use super::Fs;
use crate::error::{FsError, FsResult};
use crate::schema::{self, FileKind, Ino, Timespec};

/// Longest xattr name (XATTR_NAME_MAX).
const XATTR_NAME_BYTES_MAX: usize = 255;
/// Largest xattr value (XATTR_SIZE_MAX).
const XATTR_VALUE_BYTES_MAX: usize = 64 * 1024;

/// setxattr flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XattrFlags {
    /// XATTR_CREATE: fail with EEXIST if the attribute exists.
    pub create: bool,
    /// XATTR_REPLACE: fail with ENODATA if it does not.
    pub replace: bool,
}

impl XattrFlags {
    pub fn from_raw(flags: i32) -> XattrFlags {
        XattrFlags { create: flags & libc::XATTR_CREATE != 0, replace: flags & libc::XATTR_REPLACE != 0 }
    }
}

/// getxattr/listxattr answer under the size protocol: a zero-size request
/// asks only for the size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

fn check_xattr_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.len() > XATTR_NAME_BYTES_MAX {
        return Err(FsError::Range);
    }
    if name.contains(&0) {
        return Err(FsError::Invalid("NUL in an xattr name"));
    }
    if name == acl::ACCESS || name == acl::DEFAULT {
        return Ok(());
    }
    let known = [&b"user."[..], b"trusted.", b"security."];
    match known.iter().find(|p| name.starts_with(p)) {
        Some(prefix) if name.len() > prefix.len() => Ok(()),
        Some(_) => Err(FsError::Invalid("an xattr name with nothing after its namespace")),
        None => Err(FsError::Unsupported("extended attributes outside user., trusted., security. and the POSIX ACLs")),
    }
}

fn sized(data: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    let len = u32::try_from(data.len()).map_err(|_| FsError::TooBig)?;
    match size {
        0 => Ok(XattrReply::Size(len)),
        s if s < len => Err(FsError::Range),
        _ => Ok(XattrReply::Data(data)),
    }
}

/// The bits an access ACL sets in a mode, and whether it is stored at all.
struct AclMode {
    bits: u16,
    stored: bool,
}

/// Check an ACL value for `kind` and say what it does to the mode.
fn acl_effect(name: &[u8], value: &[u8], kind: FileKind) -> FsResult<Option<AclMode>> {
    if name != acl::ACCESS && name != acl::DEFAULT {
        return Ok(None);
    }
    let parsed = Acl::decode(value)?;
    if name == acl::DEFAULT {
        return if kind == FileKind::Dir { Ok(None) } else { Err(FsError::AccessDenied) };
    }
    Ok(Some(AclMode { bits: parsed.mode_bits(), stored: !parsed.is_mode_only() }))
}

impl Fs {
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: XattrFlags) -> FsResult<()> {
        self.setxattr_as(ino, name, value, flags, &Setter::ROOT)
    }

    /// Set an xattr for `who`. An access ACL also sets the permission bits
    /// it implies (and is not kept if the mode says it all); set by a
    /// caller outside the file's group it drops the setgid bit, as
    /// ext4's ACL code does.
    pub fn setxattr_as(&self, ino: Ino, name: &[u8], value: &[u8], flags: XattrFlags, who: &Setter<'_>) -> FsResult<()> {
        self.writable()?;
        check_xattr_name(name)?;
        if value.len() > XATTR_VALUE_BYTES_MAX {
            return Err(FsError::TooBig);
        }
        self.space_for_growth()?;
        let key = schema::xattr_key(ino, name);
        let kind = self.transact(|t| {
            let mut inode = t.inode(ino)?;
            let exists = t.get(&key)?.is_some();
            if exists && flags.create {
                return Err(FsError::Exists);
            }
            if !exists && flags.replace {
                return Err(FsError::NoXattr);
            }
            inode.ctime = Timespec::now();
            match acl_effect(name, value, inode.kind)? {
                Some(m) => {
                    inode.perm = (inode.perm & !0o777) | m.bits;
                    if who.uid != 0 && !(who.in_group)(inode.gid) {
                        inode.perm &= !(libc::S_ISGID as u16);
                    }
                    if m.stored {
                        t.put(key.clone(), value.to_vec());
                    } else {
                        t.delete(key.clone());
                    }
                }
                None => t.put(key.clone(), value.to_vec()),
            }
            t.put_inode(ino, &inode);
            Ok(inode.kind)
        })?;
        self.status_changed(ino, kind);
        Ok(())
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8], size: u32) -> FsResult<XattrReply> {
        check_xattr_name(name)?;
        self.meta.inode(ino)?;
        let value = self.meta.get(&schema::xattr_key(ino, name))?.ok_or(FsError::NoXattr)?;
        sized(value, size)
    }

    /// Names as consecutive NUL-terminated strings.
    pub fn listxattr(&self, ino: Ino, size: u32) -> FsResult<XattrReply> {
        self.listxattr_as(ino, size, true)
    }

    /// [`Fs::listxattr`], with `trusted.` names left out unless `privileged`.
    pub fn listxattr_as(&self, ino: Ino, size: u32, privileged: bool) -> FsResult<XattrReply> {
        self.meta.inode(ino)?;
        let prefix = schema::xattr_prefix(ino);
        let mut names = Vec::new();
        for (key, _) in self.meta.scan(&prefix)? {
            let name = &key[prefix.len()..];
            if privileged || !name.starts_with(b"trusted.") {
                names.extend_from_slice(name);
                names.push(0);
            }
        }
        sized(names, size)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_xattr_name(name)?;
        let key = schema::xattr_key(ino, name);
        let kind = self.transact(|t| {
            let mut inode = t.inode(ino)?;
            if t.get(&key)?.is_none() {
                return Err(FsError::NoXattr);
            }
            inode.ctime = Timespec::now();
            t.put_inode(ino, &inode);
            t.delete(key.clone());
            Ok(inode.kind)
        })?;
        self.status_changed(ino, kind);
        Ok(())
    }
}
