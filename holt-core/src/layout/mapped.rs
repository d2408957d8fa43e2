//! `Mapped`: zeroed memory in an anonymous mapping of its own, given back
//! to the kernel when dropped, or lazily while kept (`release_lazily`).
//!
//! Why not the allocator: buffers of a frame's size that come and go (a
//! checkpoint's images, each thread's frame-read buffer) would come from
//! glibc's heaps once the first one freed has raised its mmap threshold
//! past their size, and freed there they stay resident: memory outside
//! the cache's budget that nothing reclaims. Under a 62 MiB memory cap
//! that was 10-16 MiB, and the cap's OOM killer ended a third of the runs
//! that checkpointed the most (benches/RESULTS.md run 26). A mapping of
//! their own is unmapped, and uncharged, when it goes, and one kept for
//! reuse can be left for the kernel to reclaim.
//!
//! Invariant: `base..base + len` is one live private anonymous mapping
//! (or part of one, page-aligned) owned by this value alone.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

pub(crate) struct Mapped {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mapped` owns its memory, as a `Box<[u8]>` would.
unsafe impl Send for Mapped {}
// SAFETY: shared access only reads, through `Deref`.
unsafe impl Sync for Mapped {}

/// A fresh private anonymous mapping of `len` bytes (zeroed, untouched).
/// Aborts, as a failed allocation does, if the kernel refuses.
pub(super) fn map_anonymous(len: usize) -> NonNull<u8> {
    // SAFETY: an anonymous private mapping; no file, no fixed address.
    let raw = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if raw == libc::MAP_FAILED {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("valid layout");
        std::alloc::handle_alloc_error(layout);
    }
    NonNull::new(raw.cast::<u8>()).expect("mmap never returns null")
}

impl Mapped {
    /// `len` zeroed bytes, page-aligned, in a mapping of their own.
    pub(crate) fn zeroed(len: usize) -> Mapped {
        Mapped { base: map_anonymous(len), len }
    }

    /// Take ownership of `len` bytes at `base`: a page-aligned range that
    /// lies in a mapping nothing else uses or unmaps.
    ///
    /// # Safety
    /// As above; the range is unmapped when the value drops.
    pub(super) unsafe fn from_raw(base: NonNull<u8>, len: usize) -> Mapped {
        Mapped { base, len }
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Let the kernel take these pages back whenever it needs memory
    /// (`MADV_FREE`): until it does they stay as they are and a write
    /// keeps them; once it has, they read as zeros. So memory that holds
    /// zeros stays zeros either way, and costs a fault per page only if
    /// it was taken. Where the kernel lacks `MADV_FREE` nothing changes.
    pub(crate) fn release_lazily(&self) {
        // SAFETY: the range this value owns; advice never unmaps it.
        unsafe { libc::madvise(self.base.as_ptr().cast(), self.len, libc::MADV_FREE) };
    }

    /// Write a zero into the first byte of each page of memory that holds
    /// zeros, so that pages the kernel took back (`release_lazily`) are
    /// faulted in now rather than at the next write.
    pub(crate) fn touch_zeros(&mut self) {
        for page in self.chunks_mut(4096) {
            std::hint::black_box(page)[0] = 0;
        }
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes owned by `self`, zeroed when mapped.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl DerefMut for Mapped {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, borrowed uniquely through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the range this value owns, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident bytes of this process (`/proc/self/statm`, pages).
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm.split_whitespace().nth(1).expect("resident field").parse().expect("a number");
        pages * 4096
    }

    #[test]
    fn lazily_released_zeros_stay_zeros_and_take_writes() {
        let mut m = Mapped::zeroed(1 << 20);
        m.touch_zeros();
        m.release_lazily();
        assert!(m.iter().all(|&b| b == 0), "released zeros read as zeros");
        m.touch_zeros();
        m[5000] = 7;
        assert_eq!((m[5000], m[4999]), (7, 0), "a write after the release is kept");
    }

    #[test]
    fn zeroed_page_aligned_and_given_back_when_dropped() {
        const LEN: usize = 64 << 20;
        let mut m = Mapped::zeroed(LEN);
        assert!((m.as_ptr() as usize).is_multiple_of(4096) && m.len() == LEN);
        assert!(m.iter().step_by(4093).all(|&b| b == 0), "fresh memory reads as zeros");
        m.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let touched = resident_bytes();
        drop(m);
        // Other tests run meanwhile: only most of the 64 MiB is asked to go.
        let after = resident_bytes();
        assert!(touched >= after + LEN / 2, "dropping gave back the touched memory: {touched} -> {after}");
    }
}
