//! What fsck can find: one variant per kind of inconsistency, carrying the
//! facts (inode numbers, keys, the path where there is one), and the words
//! a user reads.

use std::fmt;

use crate::schema::{show_key, FileKind, Ino};

/// A directory entry: the directory, the name, and the full path when the
/// directory is reachable from the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub dir: Ino,
    pub name: Vec<u8>,
    pub path: Option<String>,
}

/// One inconsistency in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// `tree.check_invariants()` failed: the engine's own structures.
    Engine { message: String },
    /// No `S/format`: not a holt-fs filesystem (or a damaged one).
    SuperblockMissing,
    SuperblockUnreadable { what: &'static str },
    /// A format this build does not check (format 1 is upgraded by a mount).
    FormatUnsupported { format: u32 },
    SessionUnreadable { what: &'static str },
    /// A key outside every family this build knows.
    UnknownKey { key: Vec<u8> },
    /// A key in a known family without that family's shape.
    MalformedKey { key: Vec<u8> },
    RootMissing,
    RootNotDir { kind: FileKind },
    InodeUnreadable { ino: Ino, what: &'static str },
    DentryUnreadable { at: Place, what: &'static str },
    /// An entry whose directory does not exist (`dir_kind` None) or is not a directory.
    DentryOutsideDir { at: Place, ino: Ino, dir_kind: Option<FileKind> },
    DentryToMissingInode { at: Place, ino: Ino },
    DentryNameInvalid { at: Place, ino: Ino },
    DentryKindWrong { at: Place, ino: Ino, recorded: FileKind, actual: FileKind },
    /// An entry naming the root directory, which has no name.
    RootHasName { at: Place },
    /// A directory with more than one name: this one is not kept.
    DirExtraName { ino: Ino, at: Place },
    /// A directory whose recorded parent is not the directory holding its name.
    DirParentWrong { ino: Ino, path: Option<String>, recorded: Ino, actual: Ino },
    /// A directory reachable only through a cycle of directories.
    DirCycle { ino: Ino, at: Place },
    /// An inode no path from the root reaches and that is not an orphan.
    Unreachable { ino: Ino, kind: FileKind, nlink: u32 },
    NlinkWrong { ino: Ino, kind: FileKind, path: Option<String>, nlink: u32, expected: u32 },
    /// A regular file's inode records a size or blocks (the data object owns them).
    FileSizeInInode { ino: Ino, path: Option<String>, size: u64, blocks: u64 },
    XattrOfMissingInode { ino: Ino, name: Vec<u8> },
    /// `R/<ino>` for an inode that is missing (`nlink` None) or still linked.
    OrphanMarkerStale { ino: Ino, nlink: Option<u32>, names: u32 },
    OrphanMarkerUnreadable { ino: Ino },
    /// A data object of an inode that is missing (`owner` None) or not a regular file.
    StrayObject { ino: Ino, owner: Option<FileKind> },
    CounterUnreadable { key: Vec<u8>, what: &'static str },
    /// The usage counters' inode total disagrees with the inodes stored.
    InodeCountWrong { counted: i64, actual: u64 },
    /// `C/next_ino` missing or not above every inode number.
    NextInoTooLow { next: Option<u64>, max: Ino },
}

/// Words for a kind, as `ls` users know them.
pub fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "regular file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDev => "character device",
        FileKind::BlockDev => "block device",
    }
}

/// A name made printable: UTF-8 as it is, control characters and invalid
/// bytes escaped.
pub fn show_name(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => show_key(name),
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "'{}' in directory inode {}", show_name(&self.name), self.dir.0),
        }
    }
}

/// "path (inode N)" or "inode N".
struct Named<'a>(Ino, &'a Option<String>);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(p) => write!(f, "{p} (inode {})", self.0 .0),
            None => write!(f, "inode {}", self.0 .0),
        }
    }
}

impl fmt::Display for Problem {
    /// Problems of the namespace here; those of keys, counters and the
    /// store in `fmt_store`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem::*;
        match self {
            DentryUnreadable { at, what } => write!(f, "{at}: entry unreadable: {what}"),
            DentryOutsideDir { at, ino, dir_kind: None } => {
                write!(f, "{at}: entry (inode {}) in directory inode {}, which does not exist", ino.0, at.dir.0)
            }
            DentryOutsideDir { at, ino, dir_kind: Some(k) } => {
                write!(f, "{at}: entry (inode {}) in inode {}, a {}, not a directory", ino.0, at.dir.0, kind_name(*k))
            }
            DentryToMissingInode { at, ino } => write!(f, "{at}: entry names inode {}, which does not exist", ino.0),
            DentryNameInvalid { at, ino } => write!(f, "{at}: entry (inode {}) has an invalid name", ino.0),
            DentryKindWrong { at, ino, recorded, actual } => write!(
                f,
                "{at}: entry says {} but inode {} is a {}",
                kind_name(*recorded),
                ino.0,
                kind_name(*actual)
            ),
            RootHasName { at } => write!(f, "{at}: entry names the root directory"),
            DirExtraName { ino, at } => {
                write!(f, "{at}: extra name of directory inode {} (a directory has one name)", ino.0)
            }
            DirParentWrong { ino, path, recorded, actual } => write!(
                f,
                "{}: directory records parent inode {} but its name is in inode {}",
                Named(*ino, path),
                recorded.0,
                actual.0
            ),
            DirCycle { ino, at } => {
                write!(f, "{at}: directory inode {} is in a cycle of directories cut off from the root", ino.0)
            }
            Unreachable { ino, kind, nlink } => {
                write!(f, "{} inode {} (nlink {nlink}) is not reachable from the root", kind_name(*kind), ino.0)
            }
            NlinkWrong { ino, kind: FileKind::Dir, path, nlink, expected } => write!(
                f,
                "{}: directory nlink is {nlink}, but 2 + its subdirectories is {expected}",
                Named(*ino, path)
            ),
            NlinkWrong { ino, path, nlink, expected, .. } => {
                write!(f, "{}: nlink is {nlink}, but it has {expected} names", Named(*ino, path))
            }
            FileSizeInInode { ino, path, size, blocks } => write!(
                f,
                "{}: inode records size {size} and {blocks} blocks; a regular file's data object owns them",
                Named(*ino, path)
            ),
            _ => self.fmt_store(f),
        }
    }
}

impl Problem {
    fn fmt_store(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem::*;
        match self {
            Engine { message } => write!(f, "metadata engine check failed: {message}"),
            SuperblockMissing => {
                write!(f, "no superblock (S/format): not a holt-fs filesystem, or it lost its superblock")
            }
            SuperblockUnreadable { what } => write!(f, "superblock (S/format) unreadable: {what}"),
            FormatUnsupported { format } => write!(
                f,
                "filesystem format {format} is not checked by this build (format {} is; \
                 a read-write mount upgrades format 1)",
                crate::schema::FORMAT_VERSION
            ),
            SessionUnreadable { what } => write!(f, "session record (S/session) unreadable: {what}"),
            UnknownKey { key } => write!(f, "key {} belongs to no known family", show_key(key)),
            MalformedKey { key } => write!(f, "key {} does not have its family's shape", show_key(key)),
            RootMissing => write!(f, "the root directory (inode 1) is missing"),
            RootNotDir { kind } => write!(f, "the root (inode 1) is a {}, not a directory", kind_name(*kind)),
            InodeUnreadable { ino, what } => write!(f, "inode {} unreadable: {what}", ino.0),
            XattrOfMissingInode { ino, name } => {
                write!(f, "extended attribute '{}' of inode {}, which does not exist", show_name(name), ino.0)
            }
            OrphanMarkerStale { ino, nlink: None, .. } => {
                write!(f, "orphan marker R/{} names an inode that does not exist", ino.0)
            }
            OrphanMarkerStale { ino, nlink: Some(0), names: 0 } => {
                write!(f, "orphan marker R/{} names directory inode {} that still holds entries", ino.0, ino.0)
            }
            OrphanMarkerStale { ino, nlink: Some(n), names } => write!(
                f,
                "orphan marker R/{} names inode {} that is still linked (nlink {n}, {names} names)",
                ino.0, ino.0
            ),
            OrphanMarkerUnreadable { ino } => write!(f, "orphan marker R/{} has an unreadable value", ino.0),
            StrayObject { ino, owner: None } => write!(f, "data object of inode {}, which does not exist", ino.0),
            StrayObject { ino, owner: Some(k) } => {
                write!(f, "data object of inode {}, a {} (only regular files have one)", ino.0, kind_name(*k))
            }
            CounterUnreadable { key, what } => write!(f, "counter {} unreadable: {what}", show_key(key)),
            InodeCountWrong { counted, actual } => {
                write!(f, "usage counters count {counted} inodes, but {actual} are stored")
            }
            NextInoTooLow { next: None, max } => {
                write!(f, "next inode number (C/next_ino) is missing; the largest inode is {}", max.0)
            }
            NextInoTooLow { next: Some(n), max } => {
                write!(f, "next inode number (C/next_ino) is {n}, not above the largest inode {}", max.0)
            }
            _ => write!(f, "{self:?}"),
        }
    }
}
