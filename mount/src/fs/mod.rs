//! The filesystem semantics layer: POSIX operations over the key schema.
//!
//! Methods take plain arguments and return `FsResult`; nothing here knows
//! about FUSE. Every mutation is one optimistic [`Txn`] committed as one
//! guarded atomic batch (see `meta`), retried from scratch when a guard fails.
//! Directory inodes carry their parent, so `..` and the rename subtree check
//! never scan. In-memory state is limited to caches that can be rebuilt at
//! mount: the inode-number reservation, usage counter shards, open counts and
//! directory cursors.

mod alloc;
mod attr;
mod dir;
mod file;
mod namespace;
mod open;
mod rename;
mod xattr;

use std::sync::atomic::{AtomicU64, Ordering};

use log::{info, warn};

use crate::data::DataStore;
use crate::error::{FsError, FsResult};
use crate::meta::{Meta, Txn};
use crate::schema::{self, FileKind, Ino, Inode, Superblock, Timespec, Usage};
use crate::store::{Store, StoreLock};

pub use attr::{SetAttr, TimeSet};
pub use dir::DirEntry;
pub use file::OpenFlags;
pub use rename::RenameFlags;
pub use xattr::{XattrFlags, XattrReply};

use alloc::{InoAlloc, UsageShards};
use dir::DirHandles;
use open::OpenTable;

/// Attempts of one operation's transaction before it gives up (EIO).
const TXN_ATTEMPTS_MAX: u32 = 1000;

/// How reads update access times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtimeMode {
    /// Update atime when it is not newer than mtime/ctime or older than a day.
    #[default]
    Relatime,
    /// Never update atime on reads.
    Noatime,
}

/// Mount-wide behaviour of the semantics layer.
#[derive(Clone, Debug, Default)]
pub struct FsConfig {
    /// Refuse every mutation with EROFS.
    pub read_only: bool,
    /// Make file data durable before acknowledging each write.
    pub sync_data: bool,
    pub atime: AtimeMode,
}

/// Who is asking: owner of new inodes and subject of permission checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    pub const ROOT: Caller = Caller { uid: 0, gid: 0 };
}

/// An inode with its number: what every entry-returning operation replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub inode: Inode,
}

/// Filesystem statistics in `statvfs` terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_bytes: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_bytes_max: u32,
}

/// Inodes reported free by statfs: the number space is effectively unbounded.
const FILES_FREE_REPORTED: u64 = 1 << 32;
/// `statfs` block size.
pub const BLOCK_BYTES: u32 = 4096;

/// A mounted filesystem's semantics.
pub struct Fs {
    meta: Meta,
    data: Box<dyn DataStore>,
    cfg: FsConfig,
    inos: InoAlloc,
    usage: UsageShards,
    opens: OpenTable,
    dirs: DirHandles,
    next_fh: AtomicU64,
    /// Declared last so it is released after the tree and data store close.
    _lock: Option<StoreLock>,
}

impl Fs {
    /// Open the filesystem in `tree`, formatting it if empty, and reclaim the
    /// orphans a previous daemon left behind.
    pub fn new(tree: holt_core::Tree, data: Box<dyn DataStore>, cfg: FsConfig) -> FsResult<Fs> {
        let meta = Meta::new(tree);
        format_if_empty(&meta)?;
        let usage = UsageShards::load(&meta)?;
        let fs = Fs {
            meta,
            data,
            cfg,
            inos: InoAlloc::default(),
            usage,
            opens: OpenTable::default(),
            dirs: DirHandles::default(),
            next_fh: AtomicU64::new(1),
            _lock: None,
        };
        if !fs.cfg.read_only {
            fs.sweep_orphans()?;
        }
        Ok(fs)
    }

    /// Open the filesystem of an opened store; the store stays locked while `Fs` lives.
    pub fn from_store(store: Store, cfg: FsConfig) -> FsResult<Fs> {
        let mut fs = Fs::new(store.tree, store.data, cfg)?;
        fs._lock = Some(store.lock);
        Ok(fs)
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    fn writable(&self) -> FsResult<()> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// Run `body` as one transaction, re-running it until its batch commits.
    fn transact<T>(&self, mut body: impl FnMut(&mut Txn) -> FsResult<T>) -> FsResult<T> {
        for attempt in 0..TXN_ATTEMPTS_MAX {
            let mut txn = self.meta.txn();
            let out = body(&mut txn)?;
            if txn.commit()? {
                return Ok(out);
            }
            backoff(attempt);
        }
        Err(FsError::Contention { attempts: TXN_ATTEMPTS_MAX })
    }

    /// Like `transact`, with one usage shard held so `body` may change the counters.
    fn transact_counted<T>(&self, mut body: impl FnMut(&mut Txn, &mut Usage) -> FsResult<T>) -> FsResult<T> {
        let (shard, mut held) = self.usage.lock();
        for attempt in 0..TXN_ATTEMPTS_MAX {
            let mut txn = self.meta.txn();
            let mut usage = *held;
            let out = body(&mut txn, &mut usage)?;
            if usage != *held {
                txn.put(schema::usage_key(shard), usage.encode().to_vec());
            }
            if txn.commit()? {
                *held = usage;
                return Ok(out);
            }
            backoff(attempt);
        }
        Err(FsError::Contention { attempts: TXN_ATTEMPTS_MAX })
    }

    /// Filesystem statistics from the usage counters and the data store's device.
    pub fn statfs(&self) -> FsResult<StatFs> {
        let used = self.usage.total();
        let space = self.data.space().map_err(|e| FsError::data("statfs", Ino::ROOT, e))?;
        let bs = u64::from(BLOCK_BYTES);
        let used_blocks = (used.bytes.max(0) as u64).div_ceil(bs);
        let avail = space.avail_bytes / bs;
        Ok(StatFs {
            block_bytes: BLOCK_BYTES,
            blocks: used_blocks + avail,
            blocks_free: avail,
            blocks_avail: avail,
            files: used.inodes.max(0) as u64 + FILES_FREE_REPORTED,
            files_free: FILES_FREE_REPORTED,
            name_bytes_max: schema::NAME_BYTES_MAX as u32,
        })
    }

    /// Number of inodes and bytes the counters account for.
    pub fn usage(&self) -> Usage {
        self.usage.total()
    }
}

fn backoff(attempt: u32) {
    if attempt < 8 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50 * u64::from(attempt.min(100))));
    }
}

/// Write the superblock, the root directory and the counters into an empty tree.
fn format_if_empty(meta: &Meta) -> FsResult<()> {
    if let Some(v) = meta.get(schema::SUPERBLOCK_KEY)? {
        let sb = Superblock::decode(schema::SUPERBLOCK_KEY, &v)?;
        if sb.format != schema::FORMAT_VERSION {
            return Err(FsError::Corrupt { key: schema::SUPERBLOCK_KEY.to_vec(), what: "unsupported format version" });
        }
        return Ok(());
    }
    let now = Timespec::now();
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut root = Inode::new(FileKind::Dir, 0o755, uid, gid, now);
    root.parent = Ino::ROOT;
    let sb = Superblock { format: schema::FORMAT_VERSION, uuid: random_uuid(), created: now };
    let mut txn = meta.txn();
    if txn.get(schema::SUPERBLOCK_KEY)?.is_some() {
        return Ok(());
    }
    txn.put(schema::SUPERBLOCK_KEY.to_vec(), sb.encode());
    txn.put(schema::NEXT_INO_KEY.to_vec(), schema::encode_u64(Ino::FIRST_FREE.0).to_vec());
    txn.put(schema::usage_key(0), Usage { inodes: 1, bytes: 0 }.encode().to_vec());
    txn.put_inode(Ino::ROOT, &root);
    if !txn.commit()? {
        warn!("another process formatted the store concurrently");
    } else {
        info!("formatted a new filesystem");
    }
    Ok(())
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
