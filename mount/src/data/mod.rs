//! File contents, kept beside the metadata tree: one sparse object per inode.
//!
//! The object is the one authority for a regular file's size, allocated
//! blocks, atime, mtime and ctime: every change
//! of contents is a single operation on the object, atomic with respect to
//! a crash of the daemon, with no metadata step to keep in step. That is
//! also what lets the kernel write objects directly (FUSE passthrough).
//! A live regular file whose object is missing is empty, with the times
//! its inode records: without passthrough a create makes no object, and
//! the first step that changes contents or data times makes it.
//! Objects are created only after their inode is committed and removed
//! only once the inode's orphan marker is durable (see `fs::open`).

mod atime_view;
mod file;
mod memory;
#[cfg(test)]
mod sim;

pub use file::{FileData, FDS_CACHED_MAX};
pub use memory::MemoryData;
#[cfg(test)]
pub(crate) use sim::SimData;

use std::io;
use std::sync::Arc;

use crate::schema::{Ino, TimeSet, Timespec};

/// Which boundary `seek` looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekKind {
    Data,
    Hole,
}

/// How `fallocate` changes a range (the kernel's `FALLOC_FL_*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocMode {
    pub keep_size: bool,
    pub punch_hole: bool,
    pub zero_range: bool,
}

/// Space of the device behind the data store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Free to an unprivileged user (`f_bavail`).
    pub avail_bytes: u64,
}

/// What an object says about its file: the authority for these facts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    /// Bytes allocated on the device (`st_blocks * 512`).
    pub allocated_bytes: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    /// Last change of the file's contents or status: its ctime.
    pub ctime: Timespec,
}

/// One object opened by a reader that must change nothing (`holt-fs
/// dump`): its access time stays as it is, and the store's own state (a
/// descriptor cache) is left alone. Reads see the object as it is at each
/// call.
pub trait ObjectReader: Send {
    /// Size, allocation and times now.
    fn stat(&self) -> io::Result<ObjectStat>;
    /// Fill `buf` from `off`; returns the bytes read, short only at the end.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The first offset `>= off` that starts data (or a hole) before the
    /// end, as `DataStore::seek`.
    fn seek(&self, off: u64, kind: SeekKind) -> io::Result<Option<u64>>;
}

/// Storage for file contents. Offsets and lengths are in bytes. Every
/// method is one step that a crash leaves done or not done, except that a
/// write or copy of several pages may land page by page.
pub trait DataStore: Send + Sync {
    /// Make an empty object for a new inode, replacing any object of that number.
    fn create(&self, ino: Ino) -> io::Result<()>;
    /// Fill `buf` from `off`; returns the bytes read, short at the object's end.
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `data` at `off`, creating the object if needed.
    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()>;
    /// Cut or extend (sparsely) the object to `len` bytes, creating it if needed.
    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()>;
    /// The object's size, allocation and times; `None` if it does not exist.
    fn stat(&self, ino: Ino) -> io::Result<Option<ObjectStat>>;
    /// Set access and modification times (`None` leaves one as it is),
    /// creating the object if needed.
    fn set_times(&self, ino: Ino, atime: Option<TimeSet>, mtime: Option<TimeSet>) -> io::Result<()>;
    /// Mark a change of the file's status (its ctime becomes now): the
    /// object keeps the file's ctime, so a change made in the metadata
    /// (chmod, link, rename, xattrs) reaches it. A missing object stays
    /// missing: the file's ctime is then its inode's, which the change's
    /// batch stamped.
    fn touch_ctime(&self, ino: Ino) -> io::Result<()>;
    /// Allocate, punch or zero `[off, off + len)`; without `keep_size` the
    /// object grows to cover the range.
    fn fallocate(&self, ino: Ino, mode: AllocMode, off: u64, len: u64) -> io::Result<()>;
    /// The first offset `>= off` that starts data (or a hole), if any before
    /// the object's end; past the end everything is a hole.
    fn seek(&self, ino: Ino, off: u64, kind: SeekKind) -> io::Result<Option<u64>>;
    /// Copy `len` bytes from `src` at `src_off` to `dst` at `dst_off`; holes and
    /// the region past the source's end arrive as zeros.
    fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> io::Result<()>;
    /// Make the object's contents durable.
    fn sync(&self, ino: Ino) -> io::Result<()>;
    /// Delete the object; a missing object is not an error.
    fn remove(&self, ino: Ino) -> io::Result<()>;
    /// Size and free space of the backing device.
    fn space(&self) -> io::Result<Space>;
    /// Every object's inode number, in no particular order.
    fn list(&self, visit: &mut dyn FnMut(Ino)) -> io::Result<()>;
    /// A descriptor of the object (created if missing), readable and, if
    /// `writable`, writable, for the kernel to use directly (it may be one
    /// the store keeps open); `None` if objects are not files.
    fn open_backing(&self, _ino: Ino, _writable: bool) -> io::Result<Option<Arc<std::fs::File>>> {
        Ok(None)
    }
    /// The object opened for a reader that changes nothing (see
    /// [`ObjectReader`]); `None` if it does not exist. Stores that cannot
    /// (the simulated disk of crash tests) refuse.
    fn open_reader(&self, _ino: Ino) -> io::Result<Option<Box<dyn ObjectReader>>> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "this data store has no quiet reader"))
    }
}

/// A shared store is a store (tests hand one to the filesystem and keep one).
impl<D: DataStore + ?Sized> DataStore for std::sync::Arc<D> {
    fn create(&self, ino: Ino) -> io::Result<()> {
        (**self).create(ino)
    }
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read(ino, off, buf)
    }
    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()> {
        (**self).write(ino, off, data)
    }
    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()> {
        (**self).set_len(ino, len)
    }
    fn stat(&self, ino: Ino) -> io::Result<Option<ObjectStat>> {
        (**self).stat(ino)
    }
    fn set_times(&self, ino: Ino, atime: Option<TimeSet>, mtime: Option<TimeSet>) -> io::Result<()> {
        (**self).set_times(ino, atime, mtime)
    }
    fn touch_ctime(&self, ino: Ino) -> io::Result<()> {
        (**self).touch_ctime(ino)
    }
    fn fallocate(&self, ino: Ino, mode: AllocMode, off: u64, len: u64) -> io::Result<()> {
        (**self).fallocate(ino, mode, off, len)
    }
    fn seek(&self, ino: Ino, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        (**self).seek(ino, off, kind)
    }
    fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> io::Result<()> {
        (**self).copy_range(src, src_off, dst, dst_off, len)
    }
    fn sync(&self, ino: Ino) -> io::Result<()> {
        (**self).sync(ino)
    }
    fn remove(&self, ino: Ino) -> io::Result<()> {
        (**self).remove(ino)
    }
    fn space(&self) -> io::Result<Space> {
        (**self).space()
    }
    fn list(&self, visit: &mut dyn FnMut(Ino)) -> io::Result<()> {
        (**self).list(visit)
    }
    fn open_backing(&self, ino: Ino, writable: bool) -> io::Result<Option<Arc<std::fs::File>>> {
        (**self).open_backing(ino, writable)
    }
    fn open_reader(&self, ino: Ino) -> io::Result<Option<Box<dyn ObjectReader>>> {
        (**self).open_reader(ino)
    }
}

/// Bytes copied per step when a store copies through a buffer.
pub(crate) const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Copy through memory, zero-filling what the source does not hold.
pub(crate) fn copy_via_buffer<D: DataStore + ?Sized>(
    store: &D,
    src: Ino,
    src_off: u64,
    dst: Ino,
    dst_off: u64,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let step = (len - done).min(buf.len() as u64) as usize;
        let got = store.read(src, src_off + done, &mut buf[..step])?;
        buf[got..step].fill(0);
        store.write(dst, dst_off + done, &buf[..step])?;
        done += step as u64;
    }
    Ok(())
}
