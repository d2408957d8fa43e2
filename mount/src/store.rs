//! The on-disk store of one filesystem:
//!
//! ```text
//! STORE/          mode 0700, created on first use
//!   lock          flock'd exclusively by the serving daemon; holds its pid
//!   meta/         the holt-core tree (superblock, inodes, dentries, xattrs)
//!   data/         file contents, one sparse file per inode (see data::FileData)
//! ```
//!
//! `--memory` mounts have no store: the tree and the data live in memory.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use holt_core::{Tree, TreeBuilder};

use crate::data::{DataStore, FileData, MemoryData};

/// How to open a store.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Acknowledge metadata only once it is on stable storage.
    pub sync: bool,
    /// Cached open data files (0: the default).
    pub fds_max: usize,
    /// Reads leave file access times alone.
    pub noatime: bool,
}

/// An opened store: the metadata tree, the data store, and the held lock.
pub struct Store {
    pub tree: Tree,
    pub data: Box<dyn DataStore>,
    pub lock: StoreLock,
}

/// The store's flock; dropping it (after the tree closes) frees the store.
pub struct StoreLock(Option<File>);

impl Drop for StoreLock {
    /// Unlock explicitly: a child forked by another thread shares the lock's
    /// open file description until it execs, so closing alone could keep
    /// the store locked after this daemon let go of it.
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            // SAFETY: flock on a descriptor owned by `file`; no memory is passed.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug)]
pub enum StoreError {
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// Another daemon serves this store.
    Locked { path: PathBuf, holder: String },
    Tree { path: PathBuf, source: holt_core::Error },
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
        Ok(Store { tree, data: Box::new(MemoryData::new(opts.noatime)), lock: StoreLock(None) })
    }

    /// Open (creating on first use) the store in `dir` and lock it.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("create store directory", dir))?;
        let lock = take_lock(dir)?;
        let meta_dir = dir.join("meta");
        let tree = TreeBuilder::new(&meta_dir)
            .wal_sync_on_commit(opts.sync)
            .open()
            .map_err(|source| StoreError::Tree { path: meta_dir.clone(), source })?;
        let data_dir = dir.join("data");
        let fds_max = if opts.fds_max == 0 { crate::data::FDS_CACHED_MAX } else { opts.fds_max };
        let data = FileData::open(&data_dir, fds_max, opts.noatime).map_err(io_err("open data directory", &data_dir))?;
        Ok(Store { tree, data: Box::new(data), lock: StoreLock(Some(lock)) })
    }
}

/// flock `dir/lock` without waiting and record our pid in it.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    // SAFETY: flock on a descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "pid unknown".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(StoreError::Locked { path: dir.to_path_buf(), holder });
        }
        return Err(StoreError::Io { what: "lock", path, source: e });
    }
    let write_pid = |f: &mut File| -> io::Result<()> {
        f.set_len(0)?;
        f.seek(io::SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())
    };
    write_pid(&mut file).map_err(io_err("write lock file", &path))?;
    Ok(file)
}

/// Whether `dir` looks like a store (for messages; opening checks for real).
pub fn is_store(dir: &Path) -> bool {
    fs::metadata(dir.join("lock")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_store_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = take_lock(dir.path()).unwrap();
        let err = take_lock(dir.path()).expect_err("a second lock must fail");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Locked { .. }), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(is_store(dir.path()));
    }
}
