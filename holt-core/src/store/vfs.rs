//! The file-system seam. Every byte the engine writes or reads goes through
//! these two traits, so tests can substitute a store that fails, tears or
//! forgets unsynced writes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One open file.
pub(crate) trait FileIo: Send + Sync {
    /// Read up to `buf.len()` bytes at `offset`; returns bytes read (short at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make every completed write to this file durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncate or extend to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Give back the disk space of `[offset, offset + len)`: later reads of
    /// the range return zeros, the length does not change. Like a write, it
    /// is durable only after `sync_data`. `ErrorKind::Unsupported` where the
    /// file system cannot do it; callers treat that as space kept, not data lost.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()>;
}

/// A directory tree of files.
pub(crate) trait Vfs: Send + Sync {
    /// Open `path` for reading and writing; create it (empty) if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically replace `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Make creations, removals and renames inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir` (files only), unsorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Create `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
}
