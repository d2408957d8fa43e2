//! The superblock and the session record: formatting an empty tree,
//! upgrading format 1, and what a mount learns from how the last one ended.
//!
//! At a read-write mount, in order: reclaim the orphans (`R/`); if the last
//! mount was not closed cleanly and the kernel has rebooted since, remove
//! data objects that no live file owns (only a power loss leaves them);
//! then record this mount as unclean and sync. A clean close records it
//! clean. A kill -9 leaves no stray object behind: objects are created
//! after their inode is committed and removed before its keys.

use std::fmt;

use log::{debug, info, warn};

use super::Fs;
use crate::error::{FsError, FsResult};
use crate::meta::Meta;
use crate::schema::{self, FileKind, Ino, Inode, Session, Superblock, Timespec, Usage};

/// Format of stores written before sizes moved into the data objects.
const FORMAT_SIZES_IN_INODES: u32 = 1;

/// Write the superblock, the root directory and the counters into an
/// empty tree; returns the format of the filesystem found.
pub(super) fn format_if_empty(meta: &Meta) -> FsResult<u32> {
    if let Some(v) = meta.get(schema::SUPERBLOCK_KEY)? {
        let sb = Superblock::decode(schema::SUPERBLOCK_KEY, &v)?;
        if sb.format != schema::FORMAT_VERSION && sb.format != FORMAT_SIZES_IN_INODES {
            return Err(FsError::Corrupt { key: schema::SUPERBLOCK_KEY.to_vec(), what: "unsupported format version" });
        }
        return Ok(sb.format);
    }
    let now = Timespec::now();
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut root = Inode::new(FileKind::Dir, 0o755, uid, gid, now);
    root.parent = Ino::ROOT;
    let sb = Superblock { format: schema::FORMAT_VERSION, uuid: random_uuid(), created: now };
    let mut txn = meta.txn();
    if txn.get(schema::SUPERBLOCK_KEY)?.is_some() {
        return Ok(schema::FORMAT_VERSION);
    }
    txn.put(schema::SUPERBLOCK_KEY.to_vec(), sb.encode());
    txn.put(schema::NEXT_INO_KEY.to_vec(), schema::encode_u64(Ino::FIRST_FREE.0).to_vec());
    txn.put(schema::usage_key(0), Usage { inodes: 1 }.encode().to_vec());
    txn.put_inode(Ino::ROOT, &root);
    if !txn.commit()? {
        warn!("another process formatted the store concurrently");
    } else {
        debug!("formatted a new filesystem");
    }
    Ok(schema::FORMAT_VERSION)
}

fn random_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    // SAFETY: getrandom writes at most 16 bytes into the buffer.
    let n = unsafe { libc::getrandom(uuid.as_mut_ptr().cast(), uuid.len(), 0) };
    if n != 16 {
        let t = Timespec::now();
        uuid[..8].copy_from_slice(&t.sec.to_le_bytes());
        uuid[8..12].copy_from_slice(&t.nsec.to_le_bytes());
        uuid[12..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    uuid
}

/// How the mount before this one ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastMount {
    /// There was none: a new filesystem.
    None,
    Clean,
    /// Its daemon was killed; the machine (and its page cache) stayed up.
    Killed,
    /// The machine went down under it (power loss or reboot).
    PowerLoss,
}

impl LastMount {
    /// How the mount recorded in `session` ended, as seen from the kernel
    /// booted as `boot_id`: a record still marked unclean was killed, or
    /// went down with the machine if the boot changed since.
    pub fn of(session: Option<&Session>, boot_id: [u8; 16]) -> LastMount {
        match session {
            None => LastMount::None,
            Some(s) if s.clean => LastMount::Clean,
            Some(s) if s.boot_id == boot_id => LastMount::Killed,
            Some(_) => LastMount::PowerLoss,
        }
    }
}

/// What a read-write mount found of the last one and did about it before
/// serving, for the mount's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub last_mount: LastMount,
    /// Inodes unlinked while open (or whose reclaim was cut short) reclaimed.
    pub orphans_reclaimed: usize,
    /// Data objects no live file owned, removed after a power loss.
    pub stray_objects_removed: u64,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_mount {
            LastMount::None => write!(f, "new filesystem")?,
            LastMount::Clean => write!(f, "last mount closed cleanly")?,
            LastMount::Killed => write!(f, "last mount was killed, its work recovered")?,
            LastMount::PowerLoss => write!(
                f,
                "last mount ended with the machine (power loss or reboot), {} stray data objects removed",
                self.stray_objects_removed
            )?,
        }
        match self.orphans_reclaimed {
            0 => Ok(()),
            n => write!(f, ", {n} orphaned inodes reclaimed"),
        }
    }
}

/// The running kernel's boot id; a random one if it cannot be read (every
/// unclean mount then counts as a possible power loss, which is safe).
pub fn current_boot_id() -> [u8; 16] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    if digits.len() != 32 {
        return random_uuid();
    }
    let nibble = |c: u8| (c as char).to_digit(16).expect("filtered to hex digits") as u8;
    std::array::from_fn(|i| nibble(digits[2 * i]) << 4 | nibble(digits[2 * i + 1]))
}

impl Fs {
    /// Format 1 kept a file's size in its inode and let the object be
    /// shorter or longer: make each object exactly that long, zero the
    /// inode fields the object now owns, and record format 2.
    pub(super) fn upgrade_format_1(&self) -> FsResult<()> {
        let inodes = self.meta.scan(schema::INODE_PREFIX)?;
        for (key, value) in &inodes {
            let mut inode = Inode::decode(key, value)?;
            if inode.kind != FileKind::File || (inode.size == 0 && inode.blocks == 0) {
                continue;
            }
            let ino = schema::inode_ino(key)?;
            self.data.set_len(ino, inode.size).map_err(|e| FsError::data("upgrade", ino, e))?;
            inode.size = 0;
            inode.blocks = 0;
            self.transact(|t| {
                t.put_inode(ino, &inode);
                Ok(())
            })?;
        }
        let mut sb = Superblock::decode(schema::SUPERBLOCK_KEY, &self.meta.get(schema::SUPERBLOCK_KEY)?.unwrap_or_default())?;
        sb.format = schema::FORMAT_VERSION;
        self.transact(|t| {
            t.put(schema::SUPERBLOCK_KEY.to_vec(), sb.encode());
            Ok(())
        })?;
        self.meta.sync()?;
        info!("upgraded the store from format 1 to {} ({} inodes looked at)", schema::FORMAT_VERSION, inodes.len());
        Ok(())
    }

    /// The previous mount's record, if any.
    pub fn last_session(&self) -> FsResult<Option<Session>> {
        self.meta.get(schema::SESSION_KEY)?.map(|v| Session::decode(schema::SESSION_KEY, &v)).transpose()
    }

    /// Recovery work a read-write mount does before serving, then the record
    /// that this mount is live.
    pub(super) fn begin_session(&self) -> FsResult<Recovery> {
        let boot_id = self.cfg.boot_id.unwrap_or_else(current_boot_id);
        let last = self.last_session()?;
        let orphans_reclaimed = self.sweep_orphans()?;
        let mut recovery = Recovery { last_mount: LastMount::None, orphans_reclaimed, stray_objects_removed: 0 };
        recovery.last_mount = LastMount::of(last.as_ref(), boot_id);
        if recovery.last_mount == LastMount::PowerLoss {
            recovery.stray_objects_removed = self.sweep_stray_objects()?;
        }
        self.write_session(Session { boot_id, clean: false, mounted: Timespec::now() })?;
        self.meta.sync()?;
        Ok(recovery)
    }

    /// Record a clean close (after every queued reclaim is done).
    pub(super) fn end_session(&self) -> FsResult<()> {
        let Some(mut session) = self.last_session()? else { return Ok(()) };
        session.clean = true;
        self.write_session(session)
    }

    fn write_session(&self, session: Session) -> FsResult<()> {
        self.transact(|t| {
            t.put(schema::SESSION_KEY.to_vec(), session.encode().to_vec());
            Ok(())
        })
    }
}
