//! The file-system seam. Every byte the engine writes or reads goes through
//! these two traits, so tests can substitute a store that fails, tears or
//! forgets unsynced writes.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shared_map::SharedMap;

/// One open file.
pub(crate) trait FileIo: Send + Sync {
    /// Read up to `buf.len()` bytes at `offset`; returns bytes read (short at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Read the bytes from `offset` into `bufs`, one after another: in one
    /// request where the file can (`preadv`), else one `read_at` each.
    /// Returns bytes read (short only at EOF).
    fn read_vectored_at(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        for buf in bufs.iter_mut() {
            let n = self.read_at(buf, offset + done as u64)?;
            done += n;
            if n < buf.len() {
                break;
            }
        }
        Ok(done)
    }
    /// Write all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Write `bufs` one after another from `offset`: in one request where
    /// the file can (`pwritev`), else one `write_at` each.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for buf in bufs {
            self.write_at(buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
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
    /// The first hole (bytes that read as zeros and hold no disk space)
    /// that starts in `[from, to)`, cut at `to`; `None` where there is
    /// none or the file cannot tell (every simulated one). Only disk
    /// space may depend on the answer.
    fn first_hole(&self, _from: u64, _to: u64) -> io::Result<Option<Range<u64>>> {
        Ok(None)
    }
    /// Reserve disk space for `[offset, offset + len)` and extend the file
    /// to cover it (`fallocate`), keeping existing bytes. `Unsupported` for
    /// files that cannot (every simulated one).
    fn allocate(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// A writable shared mapping of the first `len` bytes, where stores are
    /// writes to the file (see `SharedMap`); `None` for a file whose writes
    /// must go through `write_at` (every simulated one, so crash simulation
    /// and fault injection see each write).
    fn map_shared(&self, _len: usize) -> io::Result<Option<SharedMap>> {
        Ok(None)
    }
    /// Start writing back the dirty pages of `[offset, offset + len)`,
    /// mapped or written, without waiting for them
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint that makes a later
    /// `sync_data` cheaper: it makes nothing durable (no flush, no
    /// metadata), so no durability rule may count on it. A no-op where
    /// there is nothing to gain (every simulated file).
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// Write back the dirty pages of `[offset, offset + len)` and wait
    /// for them (`sync_file_range` with both waits): bounds the dirty
    /// page cache a writer leaves behind, and makes nothing durable (no
    /// flush, no metadata). An error may have been taken from the file's
    /// writeback error state, so callers treat it as a failed sync. A
    /// no-op where there is nothing to gain (every simulated file).
    fn wait_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// Bring the pages of `[offset, offset + len)` into the page cache now
    /// (`posix_fadvise(POSIX_FADV_WILLNEED)`), so that a later store into a
    /// mapping of them faults on a cached page instead of allocating and
    /// filling one. A hint: it changes no byte and nothing durable. A no-op
    /// where there is nothing to gain (every simulated file).
    fn will_need(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// Reads of this file come in no order: read what is asked, nothing
    /// ahead of it (`posix_fadvise(POSIX_FADV_RANDOM)`). A hint: it changes
    /// no byte and nothing durable. A no-op for simulated files.
    fn random_access(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A directory tree of files.
pub(crate) trait Vfs: Send + Sync {
    /// How file I/O is done, for logs and tests ("pread/pwrite", "io_uring", ...).
    fn kind(&self) -> &'static str;
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
    /// `path` opened a second time, read-only, for reads that bypass the
    /// page cache (`O_DIRECT`): each read's buffer, offset and length
    /// aligned to `image_buf::DIRECT_ALIGN`. `None` where the file system
    /// has no direct I/O (tmpfs), and by default: the caller then reads
    /// through its ordinary file.
    fn open_direct_reader(&self, _path: &Path) -> io::Result<Option<Arc<dyn FileIo>>> {
        Ok(None)
    }
}
