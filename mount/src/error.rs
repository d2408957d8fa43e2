//! `FsError`: every failure of the semantics layer, named by cause, with the
//! one and only mapping to an errno (`FsError::errno`).

use std::fmt;
use std::io;

use crate::schema::Ino;

/// Everything a filesystem operation can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum FsError {
    /// No such entry or inode (ENOENT).
    NotFound,
    /// The name is already taken (EEXIST).
    Exists,
    /// A directory was required (ENOTDIR).
    NotDir,
    /// A non-directory was required (EISDIR).
    IsDir,
    /// The directory still has entries (ENOTEMPTY).
    NotEmpty,
    /// An argument the kernel should never send, or an impossible request (EINVAL).
    Invalid(&'static str),
    /// A name over 255 bytes or a symlink target over 4095 bytes (ENAMETOOLONG).
    NameTooLong,
    /// The operation is not permitted on this kind of inode (EPERM).
    NotPermitted(&'static str),
    /// Permission bits deny the caller (EACCES).
    AccessDenied,
    /// The filesystem is mounted read-only (EROFS).
    ReadOnly,
    /// The extended attribute does not exist (ENODATA).
    NoXattr,
    /// The caller's buffer is too small (ERANGE).
    Range,
    /// A value larger than the filesystem accepts (E2BIG).
    TooBig,
    /// Offset past the end for SEEK_DATA/SEEK_HOLE (ENXIO).
    NoSuchOffset,
    /// Unknown file or directory handle (EBADF).
    BadHandle(u64),
    /// The request is valid but this filesystem does not support it (EOPNOTSUPP).
    Unsupported(&'static str),
    /// An arithmetic limit such as the maximum file size was exceeded (EFBIG).
    FileTooBig,
    /// The store's device is full and the operation would take space
    /// (ENOSPC); operations that free space still run (see `fs::space`).
    NoSpace,
    /// Guarded batches kept failing under contention; the operation gave up.
    Contention { attempts: u32 },
    /// Metadata bytes failed to decode.
    Corrupt { key: Vec<u8>, what: &'static str },
    /// The metadata engine failed.
    Store(holt_core::Error),
    /// The data store failed on an inode's contents.
    Data { op: &'static str, ino: Ino, source: io::Error },
}

impl FsError {
    /// The errno reported to the kernel for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::AccessDenied => libc::EACCES,
            FsError::ReadOnly => libc::EROFS,
            FsError::NoXattr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::TooBig => libc::E2BIG,
            FsError::NoSuchOffset => libc::ENXIO,
            FsError::BadHandle(_) => libc::EBADF,
            FsError::Unsupported(_) => libc::EOPNOTSUPP,
            FsError::FileTooBig => libc::EFBIG,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Contention { .. } | FsError::Corrupt { .. } => libc::EIO,
            FsError::Store(e) => match e {
                holt_core::Error::KeyTooLarge { .. } => libc::ENAMETOOLONG,
                holt_core::Error::ValueTooLarge { .. } => libc::E2BIG,
                holt_core::Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
                holt_core::Error::ReadOnly => libc::EROFS,
                _ => libc::EIO,
            },
            FsError::Data { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    pub(crate) fn data(op: &'static str, ino: Ino, source: io::Error) -> Self {
        FsError::Data { op, ino, source }
    }

    /// True for errors that are the caller's doing, or a full device,
    /// rather than a fault of the filesystem; the adapter logs the others.
    pub fn is_expected(&self) -> bool {
        let full = matches!(self.errno(), libc::ENOSPC | libc::EDQUOT);
        full || !matches!(
            self,
            FsError::Contention { .. } | FsError::Corrupt { .. } | FsError::Store(_) | FsError::Data { .. }
        )
    }
}

impl From<holt_core::Error> for FsError {
    fn from(e: holt_core::Error) -> Self {
        FsError::Store(e)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => write!(f, "no such file or directory"),
            FsError::Exists => write!(f, "name already exists"),
            FsError::NotDir => write!(f, "not a directory"),
            FsError::IsDir => write!(f, "is a directory"),
            FsError::NotEmpty => write!(f, "directory not empty"),
            FsError::Invalid(why) => write!(f, "invalid argument: {why}"),
            FsError::NameTooLong => write!(f, "name too long"),
            FsError::NotPermitted(why) => write!(f, "operation not permitted: {why}"),
            FsError::AccessDenied => write!(f, "permission denied"),
            FsError::ReadOnly => write!(f, "filesystem is mounted read-only"),
            FsError::NoXattr => write!(f, "no such extended attribute"),
            FsError::Range => write!(f, "buffer too small for the result"),
            FsError::TooBig => write!(f, "value too large"),
            FsError::NoSuchOffset => write!(f, "no data or hole at or after the offset"),
            FsError::BadHandle(fh) => write!(f, "unknown handle {fh}"),
            FsError::Unsupported(what) => write!(f, "not supported: {what}"),
            FsError::FileTooBig => write!(f, "file too large"),
            FsError::NoSpace => {
                write!(f, "no space left on the store's device (removing files, truncating and renaming still work)")
            }
            FsError::Contention { attempts } => {
                write!(f, "gave up after {attempts} conflicting metadata batches")
            }
            FsError::Corrupt { key, what } => {
                write!(f, "corrupted metadata at key {}: {what}", crate::schema::show_key(key))
            }
            FsError::Store(e) => write!(f, "metadata store: {e}"),
            FsError::Data { op, ino, source } => write!(f, "data store: {op} of inode {} failed: {source}", ino.0),
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FsError::Store(e) => Some(e),
            FsError::Data { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias of the semantics layer.
pub type FsResult<T> = Result<T, FsError>;
