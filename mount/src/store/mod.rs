//! The on-disk store of one filesystem:
//!
//! ```text
//! STORE/          mode 0700, created on first use; owned by the daemon's user
//!   lock          flock'd exclusively by the serving daemon; holds its pid
//!   meta/         the holt-core tree (superblock, inodes, dentries, xattrs)
//!   data/         file contents, one sparse file per inode (see data::FileData)
//! ```
//!
//! `dir` checks the directory before anything in it is opened; `lock`
//! holds the flock. A read-only store is opened without writing anything:
//! a shared lock on `lock`, a read-only tree, data objects opened
//! read-only. `--memory` mounts have no store: the tree and the data live
//! in memory. `cache` sizes the tree's cache (`--cache-size`).

mod cache;
mod dir;
mod lock;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use holt_core::{Tree, TreeBuilder};

pub use self::cache::{cache_frames, default_cache_bytes, parse_size, under_memory_limit, CACHE_BYTES_MIN};
pub use self::lock::{is_store, wait_closed, StoreLock};
pub(crate) use dir::{DATA_NAME, META_NAME};
use crate::data::{DataStore, FileData, MemoryData};

/// How to open a store.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Acknowledge metadata only once it is on stable storage.
    pub sync: bool,
    /// Cached open data files (0: the default).
    pub fds_max: usize,
    /// How reads update file access times.
    pub atime: crate::schema::AtimeMode,
    /// Write nothing (the store may sit on read-only media).
    pub read_only: bool,
    /// The tree's cache budget in 512 KiB frames (0: `default_cache_bytes()`,
    /// an eighth of the memory this process may use; see `cache`).
    pub cache_frames: usize,
}

/// An opened store: the metadata tree, the data store, and the held lock.
pub struct Store {
    pub tree: Tree,
    pub data: Box<dyn DataStore>,
    pub lock: StoreLock,
}

/// Why a store could not be opened.
#[derive(Debug)]
pub enum StoreError {
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// Another daemon serves this store.
    Locked { path: PathBuf, holder: String },
    Tree { path: PathBuf, source: holt_core::Error },
    /// `--store` names a file or something else that is not a directory.
    NotADirectory { path: PathBuf },
    /// A directory with other contents and no store in it.
    NotAStore { path: PathBuf },
    /// The store directory belongs to another user than the daemon's.
    ForeignOwner { path: PathBuf, owner: u32, uid: u32 },
    /// Its group or others may write the store directory.
    OpenToOthers { path: PathBuf, mode: u32 },
    /// An entry of the store is a symlink; it is never followed.
    Symlink { path: PathBuf },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { what, path, source } => write!(f, "cannot {what} {}: {source}", path.display()),
            StoreError::Locked { path, holder } => write!(
                f,
                "store {} is in use by another holt-fs daemon ({holder}); unmount it first",
                path.display()
            ),
            StoreError::Tree { path, source } => write!(f, "cannot open metadata in {}: {source}", path.display()),
            StoreError::NotADirectory { path } => write!(f, "store {} is not a directory", path.display()),
            StoreError::NotAStore { path } => write!(
                f,
                "{} is not a holt-fs store (it has no lock file or meta/) and is not empty, so it will not be \
                 adopted; give a new or empty directory as the store",
                path.display()
            ),
            StoreError::ForeignOwner { path, owner, uid } => write!(
                f,
                "store {} is owned by uid {owner}, not by uid {uid} that runs holt-fs; fix: chown {uid} {} \
                 (or run holt-fs as its owner)",
                path.display(),
                path.display()
            ),
            StoreError::OpenToOthers { path, mode } => write!(
                f,
                "store {} is writable by its group or others (mode {mode:04o}), who could plant files in it; \
                 fix: chmod 700 {}",
                path.display(),
                path.display()
            ),
            StoreError::Symlink { path } => {
                write!(f, "{} is a symlink, which a store never holds; it will not be followed", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { what, path: path.to_path_buf(), source }
}

impl Store {
    /// A store that keeps everything in memory.
    pub fn memory(opts: &StoreOptions) -> Result<Store, StoreError> {
        let tree = TreeBuilder::new("memory")
            .memory()
            .open()
            .map_err(|source| StoreError::Tree { path: PathBuf::from("(memory)"), source })?;
        Ok(Store { tree, data: Box::new(MemoryData::new(opts.atime)), lock: StoreLock(None) })
    }

    /// Open (creating on first use, unless read-only) the store in `dir`
    /// and lock it.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        dir::prepare(dir, opts.read_only)?;
        let lock = lock::take(dir, opts.read_only)?;
        let meta_dir = dir.join(dir::META_NAME);
        let frames = match opts.cache_frames {
            0 => cache_frames(default_cache_bytes()),
            n => n.max(holt_core::POOL_FRAMES_MIN),
        };
        let direct = under_memory_limit();
        if direct {
            log::info!("metadata frames read around the page cache once the cache is full (a memory limit applies)");
        }
        let tree = TreeBuilder::new(&meta_dir)
            .buffer_pool_size(frames)
            .wal_sync_on_commit(opts.sync)
            .read_only(opts.read_only)
            .direct_frame_reads(direct)
            .open()
            .map_err(|source| StoreError::Tree { path: meta_dir.clone(), source })?;
        let data_dir = dir.join(dir::DATA_NAME);
        let fds_max = if opts.fds_max == 0 { crate::data::FDS_CACHED_MAX } else { opts.fds_max };
        let data = FileData::open(&data_dir, fds_max, opts.atime, opts.read_only)
            .map_err(io_err("open data directory", &data_dir))?;
        Ok(Store { tree, data: Box::new(data), lock })
    }
}
