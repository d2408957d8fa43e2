//! Extended attributes under `X/<ino>/<name>`. Changing one also updates the
//! inode's ctime, in the same batch.

use super::Fs;
use crate::error::{FsError, FsResult};
use crate::schema::{self, Ino, Timespec};

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
    // POSIX ACLs would need enforcing, which this filesystem does not do.
    if name.starts_with(b"system.") {
        return Err(FsError::Unsupported("system.* extended attributes"));
    }
    Ok(())
}

fn sized(data: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    let len = u32::try_from(data.len()).map_err(|_| FsError::TooBig)?;
    match size {
        0 => Ok(XattrReply::Size(len)),
        s if s < len => Err(FsError::Range),
        _ => Ok(XattrReply::Data(data)),
    }
}

impl Fs {
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: XattrFlags) -> FsResult<()> {
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
            t.put_inode(ino, &inode);
            t.put(key.clone(), value.to_vec());
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
        self.meta.inode(ino)?;
        let prefix = schema::xattr_prefix(ino);
        let mut names = Vec::new();
        for (key, _) in self.meta.scan(&prefix)? {
            names.extend_from_slice(&key[prefix.len()..]);
            names.push(0);
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
