//! The filesystem semantics layer: POSIX operations over the key schema.
//!
//! Methods take plain arguments and return `FsResult`; nothing here knows
//! about FUSE. Every mutation is one optimistic [`Txn`] committed as one
//! guarded atomic batch (see `meta`), retried from scratch when a guard fails.
//! Directory inodes carry their parent, so `..` and the rename subtree check
//! never scan. In-memory state is limited to caches that can be rebuilt at
//! mount: the inode-number reservation, usage counter shards, open counts and
//! directory cursors.

pub(crate) mod acl;
mod alloc;
mod attr;
mod dir;
mod dir_offsets;
mod file;
mod format;
mod namespace;
mod open;
mod privs;
mod reclaim;
mod rename;
mod space;
mod xattr;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use log::warn;

use crate::data::DataStore;
use crate::error::{FsError, FsResult};
use crate::meta::{Meta, Txn};
use crate::schema::{self, Ino, Inode, Usage};
use crate::store::{Store, StoreLock};

pub use attr::SetAttr;
pub use privs::Setter;
pub use crate::schema::{AtimeMode, TimeSet};
pub use dir::DirEntry;
pub use file::OpenFlags;
pub use reclaim::ReclaimHold;
pub use format::{LastMount, Recovery};
pub(crate) use format::current_boot_id;
pub use rename::RenameFlags;
pub use xattr::{XattrFlags, XattrReply};
pub(crate) use acl::DEFAULT as DEFAULT_ACL_XATTR;

use alloc::{InoAlloc, UsageShards};
use dir::DirHandles;
use open::OpenTable;
use reclaim::ReclaimQueue;

/// Attempts of one operation's transaction before it gives up (EIO).
const TXN_ATTEMPTS_MAX: u32 = 1000;

/// Mount-wide behaviour of the semantics layer.
#[derive(Clone, Debug, Default)]
pub struct FsConfig {
    /// Refuse every mutation with EROFS.
    pub read_only: bool,
    /// Make file data durable before acknowledging each write.
    pub sync_data: bool,
    pub atime: AtimeMode,
    /// Listings leave directories' access times alone (`nodiratime`).
    pub nodiratime: bool,
    /// Boot id the session record compares with; `None`: the running kernel's.
    pub boot_id: Option<[u8; 16]>,
}

/// What [`Fs::on_object_removal`] installs.
type RemovalHook = Box<dyn Fn(Ino) + Send + Sync>;

/// Who is asking: owner of new inodes and subject of permission checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The umask of a create, mkdir or mknod, applied unless the parent
    /// has a default ACL (0 where the kernel applied it already).
    pub umask: u32,
}

impl Caller {
    pub const ROOT: Caller = Caller { uid: 0, gid: 0, umask: 0 };
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
    reclaims: Arc<ReclaimQueue>,
    /// Held while a directory moves to a new parent (see `rename`).
    dir_moves: parking_lot::Mutex<()>,
    next_fh: AtomicU64,
    closed: AtomicBool,
    /// Transactions re-run because a key they read changed before they
    /// committed (a failed guard); rare, so one shared counter.
    txn_conflicts: AtomicU64,
    /// What opening did about the last mount; `None` for a read-only mount.
    recovery: Option<Recovery>,
    /// Told of each data object just before it is removed (see
    /// [`Fs::on_object_removal`]).
    removal_hook: OnceLock<RemovalHook>,
    /// Declared last so it is released after the tree and data store close.
    _lock: Option<StoreLock>,
}

impl Fs {
    /// Open the filesystem in `tree`, formatting it if empty, and finish
    /// what a previous daemon left (see `format`).
    pub fn new(tree: holt_core::Tree, data: Box<dyn DataStore>, cfg: FsConfig) -> FsResult<Fs> {
        let meta = Meta::new(tree);
        let format = format::format_if_empty(&meta)?;
        let usage = UsageShards::load(&meta)?;
        let mut fs = Fs {
            meta,
            data,
            cfg,
            inos: InoAlloc::default(),
            usage,
            opens: OpenTable::default(),
            dirs: DirHandles::default(),
            reclaims: Arc::default(),
            dir_moves: parking_lot::Mutex::new(()),
            next_fh: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            txn_conflicts: AtomicU64::new(0),
            recovery: None,
            removal_hook: OnceLock::new(),
            _lock: None,
        };
        if fs.cfg.read_only {
            if format != schema::FORMAT_VERSION {
                return Err(FsError::Unsupported("a format 1 store mounted read-only (mount it read-write once to upgrade)"));
            }
            fs.closed.store(true, Ordering::Relaxed);
            return Ok(fs);
        }
        if format != schema::FORMAT_VERSION {
            fs.upgrade_format_1()?;
        }
        fs.recovery = Some(fs.begin_session()?);
        Ok(fs)
    }

    /// Finish queued reclaims and record a clean close; later calls do
    /// nothing. Dropping `Fs` does the same.
    pub fn shutdown(&self) -> FsResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_reclaimer();
        self.drain_reclaims()?;
        self.end_session()
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

    /// What this mount found of the last one and did about it before
    /// serving; `None` for a read-only mount, which recovers nothing.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// Transactions re-run after a conflict since the mount.
    pub(crate) fn txn_conflicts(&self) -> u64 {
        self.txn_conflicts.load(Ordering::Relaxed)
    }

    /// The metadata seam, for reports that read the tree (`info`).
    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The file contents, for reports that stat objects (`info`).
    pub(crate) fn data(&self) -> &dyn DataStore {
        self.data.as_ref()
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
            self.txn_conflicts.fetch_add(1, Ordering::Relaxed);
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
            self.txn_conflicts.fetch_add(1, Ordering::Relaxed);
            backoff(attempt);
        }
        Err(FsError::Contention { attempts: TXN_ATTEMPTS_MAX })
    }

    /// Filesystem statistics: blocks as the store's device has them (what
    /// files really take, holes excluded), inodes from the usage counters.
    pub fn statfs(&self) -> FsResult<StatFs> {
        let used = self.usage.total();
        let space = self.data.space().map_err(|e| FsError::data("statfs", Ino::ROOT, e))?;
        let bs = u64::from(BLOCK_BYTES);
        Ok(StatFs {
            block_bytes: BLOCK_BYTES,
            blocks: space.total_bytes / bs,
            blocks_free: space.free_bytes / bs,
            blocks_avail: space.avail_bytes / bs,
            files: used.inodes.max(0) as u64 + FILES_FREE_REPORTED,
            files_free: FILES_FREE_REPORTED,
            name_bytes_max: schema::NAME_BYTES_MAX as u32,
        })
    }

    /// The metadata tree spent its space reserve on a full device:
    /// operations that take space are refused with ENOSPC until it is
    /// whole again (see `space`).
    pub fn space_low(&self) -> bool {
        self.meta.space_low()
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

impl Drop for Fs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            warn!("closing the filesystem: {e} (the next mount finishes the work)");
        }
    }
}
