//! The one error type of the engine, named by cause.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in a holt-core call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `rename` (or a batch rename) found no source key.
    NotFound,
    /// `rename` without `force` found the destination key already present.
    DstExists,
    /// A key longer than [`crate::KEY_BYTES_MAX`].
    KeyTooLarge { len: usize, max: usize },
    /// A value longer than [`crate::VALUE_BYTES_MAX`].
    ValueTooLarge { len: usize, max: usize },
    /// An operating-system call failed on `path`.
    Io { op: &'static str, path: PathBuf, source: io::Error },
    /// Bytes on disk (or in a frame) fail their checks.
    Corrupted { path: PathBuf, offset: u64, what: String },
    /// Another process (or handle) holds the store's lock file.
    Locked { path: PathBuf },
    /// An earlier error left the tree's state unknown: after a failed WAL
    /// write or sync (durability unknown) the tree refuses writes; after a
    /// batch failed while being applied (frames may hold part of it) it
    /// refuses reads too. `cause` names the error. Reopening the store
    /// recovers it to its last durable state.
    Poisoned { cause: String },
    /// The store was written by a format version this build does not read.
    UnsupportedFormat { path: PathBuf, found: u32, supported: u32 },
    /// A builder option or call argument is not usable.
    InvalidArgument(String),
    /// A write to a tree opened with `TreeBuilder::read_only`.
    ReadOnly,
    /// An operation restarted `restarts` times in a row because the frames
    /// it read kept changing or never validated; it gave up.
    Starved { what: &'static str, restarts: usize },
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn corrupted(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupted { path: path.into(), offset, what: what.into() }
    }

    /// The disk or the quota is full: an `Io` error with ENOSPC or EDQUOT.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. } if crate::store::reserve::io_is_no_space(source))
    }

    /// The operating system's error number behind an `Io` error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => write!(f, "source key not found"),
            Error::DstExists => write!(f, "destination key already exists"),
            Error::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes exceeds the maximum of {max} bytes")
            }
            Error::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds the maximum of {max} bytes")
            }
            Error::Io { op, path, source } => {
                write!(f, "{op} failed on {}: {source}", path.display())
            }
            Error::Corrupted { path, offset, what } => {
                write!(f, "corrupted store: {what} in {} at offset {offset}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "store is in use: {} is locked by another process or handle",
                path.display()
            ),
            Error::Poisoned { cause } => {
                write!(f, "tree poisoned (an earlier error left durability or frames unknown): {cause}")
            }
            Error::UnsupportedFormat { path, found, supported } => write!(
                f,
                "{} has format version {found}; this build reads version {supported}",
                path.display()
            ),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::ReadOnly => write!(f, "the tree was opened read-only"),
            Error::Starved { what, restarts } => {
                write!(f, "{what} gave up after {restarts} restarts (its frames kept changing or never validated)")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
