//! Memory for frame buffers: 2 MiB-aligned chunks of four frames each,
//! marked for transparent huge pages.
//!
//! Why: a descent touches a few nodes scattered over hundreds of MiB of
//! frames. With 4 KiB pages nearly every such touch also misses the TLB
//! and walks the page table; one 2 MiB page per four frames cuts the page
//! table a descent needs by 512x. A 512 KiB allocation on its own can never
//! be backed by a huge page (the kernel maps only aligned 2 MiB ranges).
//!
//! Invariants:
//! - a chunk is zeroed at allocation and freed when the last frame carved
//!   from it is dropped (each frame holds an `Arc` of its chunk);
//! - frames never overlap: each chunk hands out each quarter once.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;

use super::FRAME_BYTES;

/// The size and alignment of a huge page on x86-64 and aarch64 (4 KiB base).
const CHUNK_BYTES: usize = 2 << 20;
const FRAMES_PER_CHUNK: usize = CHUNK_BYTES / FRAME_BYTES;

/// One 2 MiB region; freed when its last frame goes.
pub(super) struct Chunk {
    base: NonNull<u8>,
}

// SAFETY: the chunk is plain memory, accessed only through `AtomicU64`s.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    /// A fresh, zeroed, 2 MiB-aligned region straight from the kernel
    /// (`mmap`): the huge-page advice must come before the first touch,
    /// which an allocator that zeroes memory itself would already be.
    fn new() -> Chunk {
        let span = 2 * CHUNK_BYTES;
        // SAFETY: an anonymous private mapping; no file, no fixed address.
        let raw = unsafe {
            libc::mmap(std::ptr::null_mut(), span, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if raw == libc::MAP_FAILED {
            let layout = std::alloc::Layout::from_size_align(CHUNK_BYTES, CHUNK_BYTES).expect("valid layout");
            std::alloc::handle_alloc_error(layout);
        }
        let start = raw as usize;
        let base = start.next_multiple_of(CHUNK_BYTES);
        // SAFETY: both trims lie inside the mapping made above and outside
        // the aligned 2 MiB kept; unmapping them cannot fail for a valid range.
        unsafe {
            if base > start {
                libc::munmap(raw, base - start);
            }
            let end = base + CHUNK_BYTES;
            if start + span > end {
                libc::munmap(end as *mut libc::c_void, start + span - end);
            }
            // Failure (no THP support) leaves ordinary pages: ignored.
            libc::madvise(base as *mut libc::c_void, CHUNK_BYTES, libc::MADV_HUGEPAGE);
        }
        Chunk { base: NonNull::new(base as *mut u8).expect("mmap never returns null") }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: the aligned region mapped in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), CHUNK_BYTES) };
    }
}

/// The chunk being carved and how many of its frames are handed out.
static CURRENT: Mutex<Option<(Arc<Chunk>, usize)>> = Mutex::new(None);

/// Zeroed words for one frame, and the chunk that keeps them alive.
pub(super) fn alloc_frame() -> (NonNull<AtomicU64>, Arc<Chunk>) {
    let mut cur = CURRENT.lock();
    let (chunk, used) = match cur.take() {
        Some((c, used)) if used < FRAMES_PER_CHUNK => (c, used),
        _ => (Arc::new(Chunk::new()), 0),
    };
    // SAFETY: `used < FRAMES_PER_CHUNK`, so the frame lies inside the chunk.
    let words = unsafe { chunk.base.as_ptr().add(used * FRAME_BYTES) };
    let words = NonNull::new(words.cast::<AtomicU64>()).expect("inside a non-null chunk");
    if used + 1 < FRAMES_PER_CHUNK {
        *cur = Some((chunk.clone(), used + 1));
    }
    (words, chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_disjoint_aligned_and_zeroed() {
        let frames: Vec<_> = (0..9).map(|_| alloc_frame()).collect();
        let mut starts: Vec<usize> = frames.iter().map(|(p, _)| p.as_ptr() as usize).collect();
        starts.sort();
        for w in starts.windows(2) {
            assert!(w[1] - w[0] >= FRAME_BYTES, "frames overlap");
        }
        for (p, chunk) in &frames {
            let off = p.as_ptr() as usize - chunk.base.as_ptr() as usize;
            assert!(off.is_multiple_of(FRAME_BYTES) && off < CHUNK_BYTES);
            assert_eq!(chunk.base.as_ptr() as usize % CHUNK_BYTES, 0);
        }
    }
}
