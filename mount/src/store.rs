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
use std::time::{Duration, Instant};

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

/// How long a mount waits for a previous daemon that is still closing the store.
const CLOSING_WAIT: Duration = Duration::from_secs(60);

/// flock `dir/lock` and record our pid in it. A lock held by a daemon that
/// no longer serves a mount of this store (it is closing: unmounted, still
/// making its last changes durable) is waited for, up to `CLOSING_WAIT`.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let deadline = Instant::now() + CLOSING_WAIT;
    let mut said = false;
    while !try_flock(&file, libc::LOCK_EX).map_err(|source| StoreError::Io { what: "lock", path: path.clone(), source })? {
        let holder = holder(&mut file);
        let ours = holder == format!("pid {}", std::process::id());
        if ours || crate::mountpoint::store_mounted(&canonical) || Instant::now() >= deadline {
            return Err(StoreError::Locked { path: dir.to_path_buf(), holder });
        }
        if !said {
            log::info!("waiting for the previous holt-fs daemon ({holder}) to finish closing {}", dir.display());
            said = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let write_pid = |f: &mut File| -> io::Result<()> {
        f.set_len(0)?;
        f.seek(io::SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())
    };
    write_pid(&mut file).map_err(io_err("write lock file", &path))?;
    Ok(file)
}

/// flock without waiting: false if someone else holds a conflicting lock.
fn try_flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock on a descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Who holds the lock, as its file says.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(io::SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
    match text.trim() {
        "" => "pid unknown".to_string(),
        pid => format!("pid {pid}"),
    }
}

/// Wait until no daemon holds the store in `dir` (it closed it), up to
/// `limit`; false if it still holds it then. A directory without a lock
/// file holds nothing.
pub fn wait_closed(dir: &Path, limit: Duration) -> io::Result<bool> {
    let file = match File::open(dir.join("lock")) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let deadline = Instant::now() + limit;
    loop {
        if try_flock(&file, libc::LOCK_SH)? {
            // SAFETY: flock on a descriptor owned by `file`.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
