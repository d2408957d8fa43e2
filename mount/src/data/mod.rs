//! File contents, kept beside the metadata tree: one sparse object per inode.
//!
//! The semantics layer owns sizes: a data object may be shorter than the
//! inode's size (the tail reads as zeros) and is never trusted to say how
//! long the file is. Data is written here before the metadata that makes it
//! visible, so a crash between the two leaves unreachable bytes, never
//! garbage inside a file.

mod file;
mod memory;

pub use file::{FileData, FDS_CACHED_MAX};
pub use memory::MemoryData;

use std::io;

use crate::schema::Ino;

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
    pub avail_bytes: u64,
}

/// Storage for file contents. Offsets and lengths are in bytes.
pub trait DataStore: Send + Sync {
    /// Fill `buf` from `off`; returns the bytes read, short at the object's end.
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `data` at `off`, creating the object if needed.
    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()>;
    /// Cut or extend (sparsely) the object to `len` bytes.
    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()>;
    /// Bytes actually allocated to the object.
    fn allocated_bytes(&self, ino: Ino) -> io::Result<u64>;
    /// Allocate, punch or zero `[off, off + len)`; never changes the logical size
    /// of the inode, which the caller owns.
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
