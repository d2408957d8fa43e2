//! A writable `MAP_SHARED` mapping of a file's leading bytes: a store into
//! it lands directly in the kernel's page cache for that file, so once the
//! copy completes the bytes survive the process being killed exactly as
//! bytes handed over by `write(2)` do, and `fdatasync` on the file makes
//! them durable like any other dirty page.
//!
//! Invariants:
//! - The mapping covers `[0, len)` of the file; only offsets below the
//!   file's current length may be touched (past it the kernel raises
//!   SIGBUS). Callers make the range they copy into part of the file first
//!   (`std_vfs::allocate`), and never shrink the file while the mapping lives.
//! - The owner of a `SharedMap` is its only writer (`copy_in` takes
//!   `&mut self`); the mapping is unmapped on drop.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; writes
// need `&mut self`, so moving it across threads or sharing `&SharedMap`
// (which allows no access to the bytes) is sound.
unsafe impl Send for SharedMap {}
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map the first `len` bytes of `file` (opened read-write) shared and
    /// writable. The file may be shorter than `len` for now.
    pub(crate) fn new(file: &impl AsRawFd, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory
        // is affected and the fd stays open for the call.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns null on success");
        Ok(SharedMap { ptr, len })
    }

    /// Bytes the mapping covers.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copy `bytes` to `offset`. The caller guarantees the whole range lies
    /// below the file's length (see the module invariants).
    pub(crate) fn copy_in(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len()).expect("copy range fits in usize");
        assert!(end <= self.len, "copy of [{offset}, {end}) past a {}-byte mapping", self.len);
        // SAFETY: in bounds (checked above), exclusive through `&mut self`,
        // and `bytes` cannot alias a mapping no one else can see.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) };
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference into it
        // outlives `self`. Dirty pages stay in the page cache.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::store::std_vfs::allocate;

    #[test]
    fn bytes_copied_into_the_mapping_are_the_files_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join("f")).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        allocate(&file, 0, 8192).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 8192, "allocation extends the file");
        let mut map = SharedMap::new(&file, 1 << 20).unwrap();
        map.copy_in(4, b"-mapped");
        map.copy_in(4090, b"across a page");
        // Read through the file, not the mapping: the page cache is shared.
        let mut buf = [0u8; 11];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head-mapped");
        drop(map);
        let mut buf = [0u8; 13];
        file.read_exact_at(&mut buf, 4090).unwrap();
        assert_eq!(&buf, b"across a page");
        assert_eq!(file.metadata().unwrap().len(), 8192, "mapping never changes the length");
    }

    #[test]
    #[should_panic(expected = "past a")]
    fn copy_past_the_mapping_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join("f")).unwrap();
        allocate(&file, 0, 4096).unwrap();
        let mut map = SharedMap::new(&file, 4096).unwrap();
        map.copy_in(4000, &[1; 100]);
    }
}
