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
//!   (`std_vfs::allocate`), and never shrink the file while its writer may
//!   still copy in (a share that only drops page-table entries touches no
//!   byte, so it may outlive the writer's use).
//! - One thread writes through a `SharedMap` (`copy_in` is unsafe for
//!   that reason: its caller holds the segment's writer lock); others may
//!   share it (`Arc`) only to drop page-table entries of ranges no one
//!   writes any more (`drop_ptes`), or to map pages ahead of the writer
//!   (`populate_write`: the kernel faults them in and changes no byte, so
//!   it may overlap the writer's copies). The mapping is unmapped on drop
//!   of its last owner.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; the only
// access to its bytes is `copy_in`, whose callers promise a single writer,
// so moving it across threads or sharing `&SharedMap` is sound.
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
        // The writer only stores: a fault on a page not yet cached must
        // not read ahead. Otherwise a fault in a segment reserved far
        // ahead reads (zero-fills) a whole readahead window of pages at
        // once, 1-3 ms on one put every few MiB of log (benches/RESULTS.md
        // run 18). A failed advice only costs that.
        // SAFETY: advice on the mapping just made, over its whole length.
        if unsafe { libc::madvise(ptr, len, libc::MADV_RANDOM) } != 0 {
            log::debug!("WAL mapping keeps readahead: {}", io::Error::last_os_error());
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
    ///
    /// # Safety
    /// No other thread copies into this mapping meanwhile.
    pub(crate) unsafe fn copy_in(&self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len()).expect("copy range fits in usize");
        assert!(end <= self.len, "copy of [{offset}, {end}) past a {}-byte mapping", self.len);
        // SAFETY: in bounds (checked above), one writer (the caller's
        // promise), and `bytes` cannot alias a mapping no one else reads.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) };
    }

    /// Drop this mapping's page-table entries for the whole pages of
    /// `[offset, offset + len)`, batching the TLB flush into one. The
    /// bytes stay the file's (dirty pages stay dirty in the page cache),
    /// and a later touch maps them again. Writeback of pages no mapping
    /// holds then write-protects nothing: cleaning a mapped page flushes
    /// every CPU's TLB entry for it, one page at a time.
    pub(crate) fn drop_ptes(&self, offset: usize, len: usize) -> io::Result<()> {
        let page = 4096;
        let start = offset.div_ceil(page) * page;
        let end = offset.saturating_add(len).min(self.len) / page * page;
        if start >= end {
            return Ok(());
        }
        // SAFETY: a range inside this shared file mapping: MADV_DONTNEED
        // only unmaps its pages, whose contents live on in the page cache.
        let rc = unsafe { libc::madvise(self.ptr.as_ptr().add(start).cast(), end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Map the pages holding `[offset, offset + len)` writable now, as a
    /// store to each would (`MADV_POPULATE_WRITE`: page cache page, page
    /// made dirty, page-table entry), without changing a byte, so a later
    /// store takes no fault. Pages past the file's end are refused with an
    /// error (the kernel's SIGBUS becomes `EFAULT` here). In steps of
    /// `POPULATE_STEP`: each holds the process's memory-map lock (read)
    /// while it faults, and a map or unmap elsewhere waits for it.
    pub(crate) fn populate_write(&self, offset: usize, len: usize) -> io::Result<()> {
        const POPULATE_STEP: usize = 64 << 10;
        let page = 4096;
        let mut start = offset / page * page;
        let end = (offset.saturating_add(len).div_ceil(page) * page).min(self.len);
        while start < end {
            let n = (end - start).min(POPULATE_STEP);
            // SAFETY: a range inside this shared file mapping; the advice
            // faults its pages in writable and changes no byte (a page
            // past the file's end is refused with EFAULT, not signalled).
            let rc = unsafe { libc::madvise(self.ptr.as_ptr().add(start).cast(), n, libc::MADV_POPULATE_WRITE) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            start += n;
        }
        Ok(())
    }
}

#[cfg(test)]
impl SharedMap {
    /// How many of the pages holding `[offset, offset + len)` have a
    /// page-table entry in this mapping now (`/proc/self/pagemap`, bit 63).
    pub(crate) fn mapped_pages(&self, offset: usize, len: usize) -> usize {
        use std::os::unix::fs::FileExt;
        let page = 4096;
        let first = (self.ptr.as_ptr() as usize + offset) / page;
        let last = (self.ptr.as_ptr() as usize + offset + len).div_ceil(page);
        let pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap readable");
        let mut entries = vec![0u8; (last - first) * 8];
        pagemap.read_exact_at(&mut entries, first as u64 * 8).expect("pagemap entries");
        entries.chunks_exact(8).filter(|e| u64::from_le_bytes((*e).try_into().unwrap()) >> 63 == 1).count()
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
        let map = SharedMap::new(&file, 1 << 20).unwrap();
        // SAFETY: this test is the only writer.
        unsafe { map.copy_in(4, b"-mapped") };
        // SAFETY: this test is the only writer.
        unsafe { map.copy_in(4090, b"across a page") };
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
        let map = SharedMap::new(&file, 4096).unwrap();
        // SAFETY: this test is the only writer.
        unsafe { map.copy_in(4000, &[1; 100]) };
    }

    /// Pages mapped ahead are in the mapping's page table and keep their
    /// bytes (a store into them then finds its page-table entry, where
    /// the same store elsewhere faults); a range past the file's end is
    /// refused, not signalled.
    #[test]
    fn pages_mapped_ahead_keep_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join("f")).unwrap();
        let pages = 64;
        allocate(&file, 0, 2 * pages as u64 * 4096).unwrap();
        file.write_all_at(b"kept", 4096 + 10).unwrap();
        let map = SharedMap::new(&file, 4 * pages * 4096).unwrap();
        assert_eq!(map.mapped_pages(0, 2 * pages * 4096), 0, "a new mapping maps nothing");
        map.populate_write(100, pages * 4096 - 200).unwrap();
        assert_eq!(map.mapped_pages(0, 2 * pages * 4096), pages, "exactly the pages asked for");
        let mut buf = [0u8; 4];
        file.read_exact_at(&mut buf, 4096 + 10).unwrap();
        assert_eq!(&buf, b"kept");
        // SAFETY: this test is the only writer.
        unsafe { map.copy_in(4096 + 14, b"-on") };
        let mut buf = [0u8; 7];
        file.read_exact_at(&mut buf, 4096 + 10).unwrap();
        assert_eq!(&buf, b"kept-on");
        let err = map.populate_write(3 * pages * 4096, 4096).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "past the file's end: {err}");
    }

    #[test]
    fn dropped_page_entries_keep_the_bytes_and_map_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join("f")).unwrap();
        allocate(&file, 0, 3 * 4096).unwrap();
        let map = SharedMap::new(&file, 3 * 4096).unwrap();
        // SAFETY: this test is the only writer.
        unsafe { map.copy_in(0, &[7; 3 * 4096]) };
        map.drop_ptes(100, 2 * 4096).unwrap();
        // SAFETY: as above; the page was unmapped and maps again.
        unsafe { map.copy_in(4096, b"again") };
        let mut buf = vec![0u8; 3 * 4096];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 7) && &buf[4096..4101] == b"again" && buf[4101..].iter().all(|&b| b == 7));
    }
}
