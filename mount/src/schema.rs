//! The key schema of one holt-core tree (DESIGN §3.2) and the byte codecs of
//! its values. Pure: no I/O, no tree access.
//!
//! | key                     | value                                   |
//! |-------------------------|-----------------------------------------|
//! | `S/format`              | [`Superblock`]                          |
//! | `S/session`             | [`Session`]: last mount, clean or not   |
//! | `C/next_ino`            | u64 LE: first inode number not reserved |
//! | `C/used/<shard u8>`     | [`Usage`] of one counter shard          |
//! | `I/<ino be64>`          | [`Inode`]                               |
//! | `D/<parent be64>/<name>`| [`Dentry`]                              |
//! | `X/<ino be64>/<name>`   | raw xattr value                         |
//! | `R/<ino be64>`          | [`OrphanReason`] byte                   |
//!
//! Inode numbers are fixed-width big-endian so that `D/<ino>/` is a prefix of
//! exactly one directory's entries and keys sort by inode number. Every value
//! but the `C/next_ino` counter and raw xattr values starts with a version
//! byte; decoders reject versions they do not know. Byte layouts: section
//! `holt-fs store` of doc/FORMAT.md, mirrored by the `*_FIELDS` constants.

use crate::error::{FsError, FsResult};

/// An inode number. Never reused: numbers come from `C/next_ino`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);
    /// The first number handed out after the root.
    pub const FIRST_FREE: Ino = Ino(2);
}

/// Longest file name, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// Longest symlink target, in bytes (PATH_MAX without its NUL).
pub const SYMLINK_TARGET_BYTES_MAX: usize = 4095;
/// Version byte of every value this build writes.
const VALUE_VERSION: u8 = 1;
/// `S/format` format number this build writes. Format 1 kept file sizes in
/// the inode and is upgraded at mount (see `fs::format`).
pub const FORMAT_VERSION: u32 = 2;

pub const SUPERBLOCK_KEY: &[u8] = b"S/format";
pub const SESSION_KEY: &[u8] = b"S/session";
pub const NEXT_INO_KEY: &[u8] = b"C/next_ino";
pub const USAGE_PREFIX: &[u8] = b"C/used/";
pub const ORPHAN_PREFIX: &[u8] = b"R/";
pub const INODE_PREFIX: &[u8] = b"I/";
const DENTRY_PREFIX: &[u8] = b"D/";
const XATTR_PREFIX: &[u8] = b"X/";

fn ino_key(family: &[u8], ino: Ino, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(family.len() + 9 + tail.len());
    k.extend_from_slice(family);
    k.extend_from_slice(&ino.0.to_be_bytes());
    k.extend_from_slice(tail);
    k
}

pub fn inode_key(ino: Ino) -> Vec<u8> {
    ino_key(INODE_PREFIX, ino, b"")
}

/// `D/<parent>/`: the prefix of every entry of one directory.
pub fn dir_prefix(parent: Ino) -> Vec<u8> {
    ino_key(DENTRY_PREFIX, parent, b"/")
}

pub fn dentry_key(parent: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = dir_prefix(parent);
    k.extend_from_slice(name);
    k
}

pub fn xattr_prefix(ino: Ino) -> Vec<u8> {
    ino_key(XATTR_PREFIX, ino, b"/")
}

pub fn xattr_key(ino: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = xattr_prefix(ino);
    k.extend_from_slice(name);
    k
}

pub fn orphan_key(ino: Ino) -> Vec<u8> {
    ino_key(ORPHAN_PREFIX, ino, b"")
}

pub fn usage_key(shard: u8) -> Vec<u8> {
    let mut k = USAGE_PREFIX.to_vec();
    k.push(shard);
    k
}

/// The inode number at the end of an `R/<ino>` key.
pub fn orphan_ino(key: &[u8]) -> FsResult<Ino> {
    key_ino(ORPHAN_PREFIX, key).ok_or_else(|| corrupt(key, "orphan key is not R/<8-byte ino>"))
}

/// The inode number of an `I/<ino>` key.
pub fn inode_ino(key: &[u8]) -> FsResult<Ino> {
    key_ino(INODE_PREFIX, key).ok_or_else(|| corrupt(key, "inode key is not I/<8-byte ino>"))
}

fn key_ino(family: &[u8], key: &[u8]) -> Option<Ino> {
    let tail: [u8; 8] = key.strip_prefix(family)?.try_into().ok()?;
    Some(Ino(u64::from_be_bytes(tail)))
}

/// A key made printable for messages: ASCII kept, other bytes as `\xNN`.
pub fn show_key(key: &[u8]) -> String {
    key.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

fn corrupt(key: &[u8], what: &'static str) -> FsError {
    FsError::Corrupt { key: key.to_vec(), what }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub fn now() -> Timespec {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec into the valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        Timespec { sec: ts.tv_sec, nsec: ts.tv_nsec as u32 }
    }
}

/// relatime refreshes an atime older than this even if newer than mtime/ctime.
const RELATIME_SECS: i64 = 24 * 3600;

/// Whether a read at `now` refreshes an access time (Linux's relatime).
/// How reads update access times (the mount's atime option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtimeMode {
    /// Update atime when it is not newer than mtime/ctime or older than a day.
    #[default]
    Relatime,
    /// Never update atime on reads.
    Noatime,
    /// Update atime on every read.
    Strictatime,
}

impl AtimeMode {
    /// Whether a read now updates an atime, given the inode's times.
    pub fn due(self, atime: Timespec, mtime: Timespec, ctime: Timespec, now: Timespec) -> bool {
        match self {
            AtimeMode::Relatime => relatime_due(atime, mtime, ctime, now),
            AtimeMode::Noatime => false,
            AtimeMode::Strictatime => true,
        }
    }
}

pub fn relatime_due(atime: Timespec, mtime: Timespec, ctime: Timespec, now: Timespec) -> bool {
    atime <= mtime || atime <= ctime || now.sec - atime.sec >= RELATIME_SECS
}

/// A time to set: the current time (UTIME_NOW) or a given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timespec),
}

impl TimeSet {
    pub fn resolve(self, now: Timespec) -> Timespec {
        match self {
            TimeSet::Now => now,
            TimeSet::At(ts) => ts,
        }
    }
}

/// The kind of an inode, as stored (one byte) and as `S_IFMT` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl FileKind {
    const ALL: [FileKind; 7] = [
        FileKind::File,
        FileKind::Dir,
        FileKind::Symlink,
        FileKind::Fifo,
        FileKind::Socket,
        FileKind::CharDev,
        FileKind::BlockDev,
    ];

    /// The kind named by the `S_IFMT` bits of `mode`.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.mode_bits() == mode & libc::S_IFMT)
    }

    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }

    /// The kind's byte in stored values (and in dump streams).
    pub(crate) fn to_byte(self) -> u8 {
        FileKind::ALL.iter().position(|&k| k == self).expect("every kind is in ALL") as u8 + 1
    }

    pub(crate) fn from_byte(b: u8) -> Option<FileKind> {
        FileKind::ALL.get((b as usize).checked_sub(1)?).copied()
    }
}

/// Attributes of one inode: the value of `I/<ino>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Names of a file; 2 + subdirectories for a directory; 0 once unlinked.
    pub nlink: u32,
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub crtime: Timespec,
    pub flags: u32,
    /// The containing directory of a directory; `Ino(0)` for other kinds.
    pub parent: Ino,
    /// The target of a symlink; empty for other kinds.
    pub target: Vec<u8>,
}

/// Bytes of an encoded inode before the symlink target.
pub(crate) const INODE_FIXED_BYTES: usize = 1 + 1 + 2 + 4 * 5 + 8 * 2 + 12 * 4 + 4 + 8 + 2;
/// Byte table of an inode's fixed part (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const INODE_FIELDS: &[(&str, usize, usize)] = &[
    ("version", 0, 1),
    ("kind", 1, 1),
    ("perm", 2, 2),
    ("uid", 4, 4),
    ("gid", 8, 4),
    ("rdev", 12, 4),
    ("nlink", 16, 4),
    ("flags", 20, 4),
    ("size", 24, 8),
    ("blocks", 32, 8),
    ("atime_sec", 40, 8),
    ("atime_nsec", 48, 4),
    ("mtime_sec", 52, 8),
    ("mtime_nsec", 60, 4),
    ("ctime_sec", 64, 8),
    ("ctime_nsec", 72, 4),
    ("crtime_sec", 76, 8),
    ("crtime_nsec", 84, 4),
    ("reserved", 88, 4),
    ("parent", 92, 8),
    ("target_len", 100, 2),
];

impl Inode {
    /// A fresh inode of `kind` owned by `uid:gid`, all times `now`.
    pub fn new(kind: FileKind, perm: u16, uid: u32, gid: u32, now: Timespec) -> Inode {
        Inode {
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            rdev: 0,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            size: 0,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            flags: 0,
            parent: Ino(0),
            target: Vec::new(),
        }
    }

    /// `st_mode`: kind bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.perm)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(INODE_FIXED_BYTES + self.target.len());
        v.push(VALUE_VERSION);
        v.push(self.kind.to_byte());
        v.extend_from_slice(&self.perm.to_le_bytes());
        for x in [self.uid, self.gid, self.rdev, self.nlink, self.flags] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.blocks.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            v.extend_from_slice(&t.sec.to_le_bytes());
            v.extend_from_slice(&t.nsec.to_le_bytes());
        }
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&self.parent.0.to_le_bytes());
        let target_len = u16::try_from(self.target.len()).expect("symlink targets are checked to fit u16");
        v.extend_from_slice(&target_len.to_le_bytes());
        v.extend_from_slice(&self.target);
        debug_assert_eq!(v.len(), INODE_FIXED_BYTES + self.target.len());
        v
    }

    pub fn decode(key: &[u8], v: &[u8]) -> FsResult<Inode> {
        if v.len() < INODE_FIXED_BYTES {
            return Err(corrupt(key, "inode value shorter than its fixed part"));
        }
        if v[0] != VALUE_VERSION {
            return Err(corrupt(key, "inode value has an unknown version"));
        }
        let kind = FileKind::from_byte(v[1]).ok_or_else(|| corrupt(key, "inode has an unknown kind"))?;
        let mut r = Reader { v, pos: 2 };
        let perm = u16::from_le_bytes(r.take());
        let [uid, gid, rdev, nlink, flags] = [(); 5].map(|_| u32::from_le_bytes(r.take()));
        let size = u64::from_le_bytes(r.take());
        let blocks = u64::from_le_bytes(r.take());
        let [atime, mtime, ctime, crtime] =
            [(); 4].map(|_| Timespec { sec: i64::from_le_bytes(r.take()), nsec: u32::from_le_bytes(r.take()) });
        let _reserved: [u8; 4] = r.take();
        let parent = Ino(u64::from_le_bytes(r.take()));
        let target_len = usize::from(u16::from_le_bytes(r.take()));
        if v.len() != INODE_FIXED_BYTES + target_len {
            return Err(corrupt(key, "inode value length disagrees with its target length"));
        }
        let target = v[INODE_FIXED_BYTES..].to_vec();
        let inode = Inode {
            kind, perm, uid, gid, rdev, nlink, size, blocks, atime, mtime, ctime, crtime, flags, parent, target,
        };
        inode.check(key)?;
        Ok(inode)
    }

    /// Invariants every stored inode satisfies.
    pub fn check(&self, key: &[u8]) -> FsResult<()> {
        if self.perm & !0o7777 != 0 {
            return Err(corrupt(key, "inode permission bits outside 0o7777"));
        }
        if (self.kind == FileKind::Symlink) == self.target.is_empty() {
            return Err(corrupt(key, "symlink target present exactly when the kind is symlink"));
        }
        if (self.kind == FileKind::Dir) == (self.parent == Ino(0)) {
            return Err(corrupt(key, "a parent is recorded exactly for directories"));
        }
        if self.kind == FileKind::Dir && self.nlink == 1 {
            return Err(corrupt(key, "a linked directory has nlink of at least 2"));
        }
        Ok(())
    }
}

struct Reader<'a> {
    v: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out = self.v[self.pos..self.pos + N].try_into().expect("caller checked the length");
        self.pos += N;
        out
    }
}

/// A directory entry: the value of `D/<parent>/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dentry {
    pub ino: Ino,
    pub kind: FileKind,
}

pub(crate) const DENTRY_BYTES: usize = 1 + 1 + 8;
/// Byte table of a dentry (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const DENTRY_FIELDS: &[(&str, usize, usize)] = &[("version", 0, 1), ("kind", 1, 1), ("ino", 2, 8)];

impl Dentry {
    pub fn encode(&self) -> [u8; DENTRY_BYTES] {
        let mut v = [0u8; DENTRY_BYTES];
        v[0] = VALUE_VERSION;
        v[1] = self.kind.to_byte();
        v[2..].copy_from_slice(&self.ino.0.to_le_bytes());
        v
    }

    pub fn decode(key: &[u8], v: &[u8]) -> FsResult<Dentry> {
        if v.len() != DENTRY_BYTES || v[0] != VALUE_VERSION {
            return Err(corrupt(key, "dentry value has a bad length or version"));
        }
        let kind = FileKind::from_byte(v[1]).ok_or_else(|| corrupt(key, "dentry has an unknown kind"))?;
        let ino = Ino(u64::from_le_bytes(v[2..].try_into().expect("length checked")));
        if ino.0 < Ino::ROOT.0 {
            return Err(corrupt(key, "dentry points at inode 0"));
        }
        Ok(Dentry { ino, kind })
    }
}

/// Why an inode sits in `R/`: it has no names left but could not be reclaimed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrphanReason {
    /// Its last name went away while it was open.
    Unlinked = 1,
}

pub(crate) const ORPHAN_BYTES: usize = 1 + 1;
/// Byte table of an orphan marker (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const ORPHAN_FIELDS: &[(&str, usize, usize)] = &[("version", 0, 1), ("reason", 1, 1)];

impl OrphanReason {
    pub fn encode(self) -> [u8; ORPHAN_BYTES] {
        [VALUE_VERSION, self as u8]
    }
}

/// Per-shard usage counter: the value of `C/used/<shard>`. Its second
/// field (file bytes in format 1) is written as zero: sizes live in the
/// data objects, and `statfs` asks the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub inodes: i64,
}

pub(crate) const USAGE_BYTES: usize = 1 + 8 + 8;
/// Byte table of a usage counter (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const USAGE_FIELDS: &[(&str, usize, usize)] = &[("version", 0, 1), ("inodes", 1, 8), ("reserved", 9, 8)];

impl Usage {
    pub fn encode(&self) -> [u8; USAGE_BYTES] {
        let mut v = [0u8; USAGE_BYTES];
        v[0] = VALUE_VERSION;
        v[1..9].copy_from_slice(&self.inodes.to_le_bytes());
        v
    }

    pub fn decode(key: &[u8], v: &[u8]) -> FsResult<Usage> {
        if v.len() != USAGE_BYTES || v[0] != VALUE_VERSION {
            return Err(corrupt(key, "usage counter has a bad length or version"));
        }
        let inodes = i64::from_le_bytes(v[1..9].try_into().expect("length checked"));
        Ok(Usage { inodes })
    }
}

/// The last mount of the store: the value of `S/session`. A mount that
/// finds `clean` unset was killed; if the boot differs too, the machine
/// may have lost power, which is the one case that can strand data objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// `/proc/sys/kernel/random/boot_id` of the mounting kernel.
    pub boot_id: [u8; 16],
    /// Set by a clean unmount, cleared at mount.
    pub clean: bool,
    pub mounted: Timespec,
}

pub(crate) const SESSION_BYTES: usize = 1 + 16 + 1 + 12;
/// Byte table of a session record (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const SESSION_FIELDS: &[(&str, usize, usize)] =
    &[("version", 0, 1), ("boot_id", 1, 16), ("clean", 17, 1), ("mounted_sec", 18, 8), ("mounted_nsec", 26, 4)];

impl Session {
    pub fn encode(&self) -> [u8; SESSION_BYTES] {
        let mut v = [0u8; SESSION_BYTES];
        v[0] = VALUE_VERSION;
        v[1..17].copy_from_slice(&self.boot_id);
        v[17] = u8::from(self.clean);
        v[18..26].copy_from_slice(&self.mounted.sec.to_le_bytes());
        v[26..30].copy_from_slice(&self.mounted.nsec.to_le_bytes());
        v
    }

    pub fn decode(key: &[u8], v: &[u8]) -> FsResult<Session> {
        if v.len() != SESSION_BYTES || v[0] != VALUE_VERSION || v[17] > 1 {
            return Err(corrupt(key, "session record has a bad length, version or flag"));
        }
        let mounted = Timespec {
            sec: i64::from_le_bytes(v[18..26].try_into().expect("length checked")),
            nsec: u32::from_le_bytes(v[26..30].try_into().expect("length checked")),
        };
        Ok(Session { boot_id: v[1..17].try_into().expect("length checked"), clean: v[17] == 1, mounted })
    }
}

/// A u64 counter (`C/next_ino`): the bare integer, no version byte.
pub(crate) const COUNTER_BYTES: usize = 8;
/// Byte table of a u64 counter (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const COUNTER_FIELDS: &[(&str, usize, usize)] = &[("value", 0, 8)];

pub fn encode_u64(x: u64) -> [u8; COUNTER_BYTES] {
    x.to_le_bytes()
}

pub fn decode_u64(key: &[u8], v: &[u8]) -> FsResult<u64> {
    let b: [u8; COUNTER_BYTES] = v.try_into().map_err(|_| corrupt(key, "counter is not 8 bytes"))?;
    Ok(u64::from_le_bytes(b))
}

/// The value of `S/format`: what created this filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub format: u32,
    pub uuid: [u8; 16],
    pub created: Timespec,
}

pub(crate) const SUPERBLOCK_BYTES: usize = 1 + 4 + 16 + 12;
/// Byte table of a superblock (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const SUPERBLOCK_FIELDS: &[(&str, usize, usize)] =
    &[("version", 0, 1), ("format", 1, 4), ("uuid", 5, 16), ("created_sec", 21, 8), ("created_nsec", 29, 4)];

impl Superblock {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![VALUE_VERSION];
        v.extend_from_slice(&self.format.to_le_bytes());
        v.extend_from_slice(&self.uuid);
        v.extend_from_slice(&self.created.sec.to_le_bytes());
        v.extend_from_slice(&self.created.nsec.to_le_bytes());
        v
    }

    pub fn decode(key: &[u8], v: &[u8]) -> FsResult<Superblock> {
        if v.len() != SUPERBLOCK_BYTES || v[0] != VALUE_VERSION {
            return Err(corrupt(key, "superblock has a bad length or version"));
        }
        let mut r = Reader { v, pos: 1 };
        let format = u32::from_le_bytes(r.take());
        let uuid = r.take();
        let created = Timespec { sec: i64::from_le_bytes(r.take()), nsec: u32::from_le_bytes(r.take()) };
        Ok(Superblock { format, uuid, created })
    }
}

/// Name rules: the kernel never sends these, so they are EINVAL, except an
/// overlong name, which users can produce (ENAMETOOLONG).
pub fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(FsError::Invalid("empty, '.' or '..' as a name"));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid("'/' or NUL in a name"));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: FileKind) -> Inode {
        let mut i = Inode::new(kind, 0o4755, 1000, 100, Timespec { sec: -5, nsec: 999_999_999 });
        i.size = u64::MAX;
        if kind == FileKind::Dir {
            i.parent = Ino(7);
        }
        if kind == FileKind::Symlink {
            i.target = vec![b'x'; SYMLINK_TARGET_BYTES_MAX];
        }
        i
    }

    #[test]
    fn inode_round_trips_every_kind() {
        for kind in FileKind::ALL {
            let i = sample(kind);
            assert_eq!(Inode::decode(b"k", &i.encode()).unwrap(), i);
            assert_eq!(FileKind::from_mode(i.mode()), Some(kind));
        }
    }

    #[test]
    fn inode_decode_rejects_truncation_and_bad_version() {
        let v = sample(FileKind::Symlink).encode();
        for len in 0..v.len() {
            assert!(Inode::decode(b"k", &v[..len]).is_err(), "prefix of {len} bytes accepted");
        }
        let mut bad = v.clone();
        bad[0] = 9;
        assert!(Inode::decode(b"k", &bad).is_err());
    }

    #[test]
    fn dentry_and_usage_round_trip() {
        let d = Dentry { ino: Ino(0x2f2f), kind: FileKind::Fifo };
        assert_eq!(Dentry::decode(b"k", &d.encode()).unwrap(), d);
        let u = Usage { inodes: -3 };
        assert_eq!(Usage::decode(b"k", &u.encode()).unwrap(), u);
        let session = Session { boot_id: [9; 16], clean: true, mounted: Timespec { sec: -1, nsec: 3 } };
        assert_eq!(Session::decode(b"k", &session.encode()).unwrap(), session);
        let s = Superblock { format: FORMAT_VERSION, uuid: [7; 16], created: Timespec { sec: 1, nsec: 2 } };
        assert_eq!(Superblock::decode(b"k", &s.encode()).unwrap(), s);
    }

    #[test]
    fn dir_prefix_is_unique_per_parent_even_with_slash_bytes() {
        // 0x2f is '/': the fixed-width ino keeps prefixes distinct anyway.
        let a = dir_prefix(Ino(0x2f));
        let b = dentry_key(Ino(0x2f2f), b"x");
        assert!(!b.starts_with(&a));
        assert_eq!(orphan_ino(&orphan_key(Ino(0x2f))).unwrap(), Ino(0x2f));
    }

    #[test]
    fn name_rules() {
        assert!(matches!(check_name(b""), Err(FsError::Invalid(_))));
        assert!(matches!(check_name(b".."), Err(FsError::Invalid(_))));
        assert!(matches!(check_name(b"a/b"), Err(FsError::Invalid(_))));
        assert!(matches!(check_name(b"a\0"), Err(FsError::Invalid(_))));
        assert!(matches!(check_name(&[b'a'; 256]), Err(FsError::NameTooLong)));
        assert!(check_name(&[b'a'; 255]).is_ok());
        assert!(check_name(b"...").is_ok());
    }
}
