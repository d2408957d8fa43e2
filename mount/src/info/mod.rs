//! `holt-fs info`: what a store holds and how it is kept, gathered either
//! by the daemon serving it (`live`, asked over the control socket) or
//! from a read-only open of a store no daemon serves read-write
//! (`read_store`). Both fill the same [`StoreInfo`].
//!
//! Invariants:
//! - Gathering writes nothing: the daemon only reads its tree and stats
//!   objects; `read_store` opens the store read-only (shared lock,
//!   read-only tree and objects).
//! - The inode walk never holds the engine's latches between refills and
//!   yields the CPU between chunks (`census`), so a serving daemon's
//!   requests are not held up for long, whatever the store's size.

mod census;
mod disk;
mod report;

use std::fmt;
use std::io;
use std::path::Path;

use holt_core::TreeStats;

pub use report::{
    AnsweredBy, Counts, DiskUsage, EngineInfo, LastShutdown, MountInfo, MountState, SocketState, StoreInfo,
};

use crate::data::DataStore;
use crate::error::FsError;
use crate::fs::current_boot_id;
use crate::meta::Meta;
use crate::schema::{self, Session, Superblock};
use crate::{Fs, LastMount, Store, StoreError, StoreOptions};

/// holt-core's frame size (doc/FORMAT.md, "Blob frame"): what a cached
/// frame costs in memory.
const FRAME_BYTES: u64 = holt_core::FRAME_BYTES as u64;

/// Why a report could not be made.
#[derive(Debug)]
pub enum InfoError {
    /// The store could not be opened (read-only) for the report.
    Store(StoreError),
    /// The tree could not be read, or holds bytes that do not decode.
    Fs(FsError),
    /// The store directory could not be walked.
    Io { path: std::path::PathBuf, source: io::Error },
    /// The daemon is shutting down; the walk was cut short.
    Stopped,
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::Store(e) => write!(f, "{e}"),
            InfoError::Fs(e) => write!(f, "cannot read the metadata: {e}"),
            InfoError::Io { path, source } => write!(f, "cannot measure {}: {source}", path.display()),
            InfoError::Stopped => write!(f, "the daemon is shutting down; ask again once it is mounted"),
        }
    }
}

impl std::error::Error for InfoError {}

impl From<FsError> for InfoError {
    fn from(e: FsError) -> Self {
        InfoError::Fs(e)
    }
}

/// What the report says of how the store is served, which only the one
/// answering knows.
struct Serving {
    answered_by: AnsweredBy,
    mounts: Vec<MountInfo>,
    last_shutdown: LastShutdown,
    control_socket: SocketState,
}

/// The report of the daemon serving `store` read-write at `mountpoint`;
/// `stop` cuts the inode walk short (the daemon is unmounting).
pub(crate) fn live(fs: &Fs, store: &Path, mountpoint: &Path, stop: &dyn Fn() -> bool) -> Result<StoreInfo, InfoError> {
    let mount = MountInfo {
        mountpoint: mountpoint.display().to_string(),
        pid: Some(std::process::id()),
        read_only: fs.config().read_only,
        state: MountState::Serving,
    };
    let last = fs.recovery().map_or(LastMount::None, |r| r.last_mount);
    let serving = Serving {
        answered_by: AnsweredBy::Daemon,
        mounts: vec![mount],
        last_shutdown: last.into(),
        control_socket: SocketState::Answering,
    };
    let mut info = collect(fs.meta(), fs.data(), store, serving, stop)?;
    info.engine.wal_bytes = Some(fs.meta().stats()?.wal_bytes);
    Ok(info)
}

/// The report of a store that no daemon serves read-write, from a
/// read-only open: writes nothing, and shares the store with read-only
/// mounts. `socket` is what the caller found at the control socket.
pub fn read_store(store: &Path, socket: SocketState) -> Result<StoreInfo, InfoError> {
    let opts = StoreOptions { read_only: true, ..StoreOptions::default() };
    let opened = Store::open(store, &opts).map_err(InfoError::Store)?;
    let meta = Meta::new(opened.tree.clone());
    let session = meta.get(schema::SESSION_KEY)?.map(|v| Session::decode(schema::SESSION_KEY, &v)).transpose()?;
    let canonical = std::fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf());
    let serving = Serving {
        answered_by: AnsweredBy::Store,
        mounts: mounts_of(&canonical),
        last_shutdown: LastMount::of(session.as_ref(), current_boot_id()).into(),
        control_socket: socket,
    };
    collect(&meta, opened.data.as_ref(), store, serving, &|| false)
}

/// Everything but what `Serving` says.
fn collect(
    meta: &Meta,
    data: &dyn DataStore,
    store: &Path,
    serving: Serving,
    stop: &dyn Fn() -> bool,
) -> Result<StoreInfo, InfoError> {
    let superblock = meta.get(schema::SUPERBLOCK_KEY)?;
    let superblock = superblock.map(|v| Superblock::decode(schema::SUPERBLOCK_KEY, &v)).transpose()?;
    let counts = census::count(meta, data, stop)?;
    let disk = disk::usage(store).map_err(|source| InfoError::Io { path: store.to_path_buf(), source })?;
    let engine = engine_info(&meta.stats()?, disk::last_checkpoint_sec(store));
    Ok(StoreInfo {
        store: store.display().to_string(),
        answered_by: serving.answered_by,
        format: superblock.map(|sb| sb.format),
        uuid: superblock.map(|sb| report::format_uuid(&sb.uuid)),
        created_sec: superblock.map(|sb| sb.created.sec),
        mounts: serving.mounts,
        last_shutdown: serving.last_shutdown,
        control_socket: serving.control_socket,
        counts,
        disk,
        engine,
    })
}

fn engine_info(s: &TreeStats, last_checkpoint_sec: Option<i64>) -> EngineInfo {
    let lookups = s.cache_hits + s.cache_misses;
    EngineInfo {
        keys: s.keys,
        frames: s.frames,
        frames_cached: s.frames_cached,
        cache_bytes: s.frames_cached * FRAME_BYTES,
        frames_dirty: s.frames_dirty,
        fill_factor: s.fill_factor,
        cache_hits: s.cache_hits,
        cache_misses: s.cache_misses,
        cache_hit_rate: (lookups > 0).then(|| s.cache_hits as f64 / lookups as f64),
        wal_bytes: None,
        checkpoints: s.checkpoints,
        last_checkpoint_sec,
    }
}

/// The mount table's mounts of `store`. Any that answers is read-only
/// (a read-write daemon would have answered on the socket, and its lock
/// would have kept `read_store` out), and no pid is known for it.
fn mounts_of(store: &Path) -> Vec<MountInfo> {
    let Ok(all) = crate::mountpoint::mounts() else { return Vec::new() };
    let ours = all.into_iter().filter(|m| m.is_holt() && m.source == store);
    ours.map(|m| {
        let dead = crate::mountpoint::state(&m.mountpoint).is_ok_and(|s| s == crate::mountpoint::MountState::Dead);
        MountInfo {
            mountpoint: m.mountpoint.display().to_string(),
            pid: None,
            read_only: m.read_only,
            state: if dead { MountState::Dead } else { MountState::Serving },
        }
    })
    .collect()
}

impl From<LastMount> for LastShutdown {
    fn from(last: LastMount) -> Self {
        match last {
            LastMount::None => LastShutdown::None,
            LastMount::Clean => LastShutdown::Clean,
            LastMount::Killed => LastShutdown::Killed,
            LastMount::PowerLoss => LastShutdown::PowerLoss,
        }
    }
}
