//! Memory for frame buffers: 2 MiB-aligned chunks of four frames each,
//! marked for transparent huge pages.
//!
//! Why: a descent touches a few nodes scattered over hundreds of MiB of
//! frames. With 4 KiB pages nearly every such touch also misses the TLB
//! and walks the page table; one 2 MiB page per four frames cuts the page
//! table a descent needs by 512x. A 512 KiB allocation on its own can never
//! be backed by a huge page (the kernel maps only aligned 2 MiB ranges).
//!
//! The first touch of a chunk makes the kernel zero its 2 MiB (and, in a
//! virtual machine, often makes the hypervisor back it), which took
//! milliseconds here: on the path of the write whose spill needed a new
//! frame. So a thread of the arena's (`holt-arena`, started at the first
//! allocation) keeps chunks touched ahead of need, and a new chunk is one
//! of those whenever one is ready. Spills come in bursts (the frames of a
//! random load fill at the same rate): a 1M-key load asked for a chunk
//! every 4-7 ms for tens of milliseconds at a time, while touching one
//! took ~4 ms, so with one spare about one chunk in eight was touched on
//! a writer's path, 2.6-3.9 ms each (benches/RESULTS.md run 41). A pool
//! asks for more spares in proportion to its capacity (`keep_spares`).
//!
//! Frames held in part (`store::pages`) get plain frames instead
//! (`alloc_plain_frame`): a mapping of their own that is never backed by
//! huge pages. Their memory is given back whenever they are reused and
//! comes back a page at a time as pages are read; in a huge-page chunk a
//! write into a chunk whose memory was all given back faults in a whole
//! zeroed 2 MiB page: a lookup's one page cost 2 MiB of zeroing and of
//! memory (at 50 M keys under a memory cap, half a lookup's CPU).
//!
//! Invariants:
//! - a chunk is zeroed at allocation and freed when the last frame carved
//!   from it is dropped (each frame holds an `Arc` of its chunk); a
//!   spare is touched only with zeros, before anyone else can see it;
//! - at most `SPARES_MAX` spares (8 MiB) are kept, outside any pool's
//!   budget.
//! - frames never overlap: each chunk hands out each quarter once.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use parking_lot::{Condvar, Mutex};

use super::mapped::{map_anonymous, Mapped};
use super::FRAME_BYTES;

/// The size and alignment of a huge page on x86-64 and aarch64 (4 KiB base).
const CHUNK_BYTES: usize = 2 << 20;
const FRAMES_PER_CHUNK: usize = CHUNK_BYTES / FRAME_BYTES;

/// One 2 MiB region (or one plain frame's); freed when its last frame goes.
/// Frames reach its memory only through `base` (as atomics), never through
/// `Mapped`'s slices, which would alias their concurrent writes.
pub(super) struct Chunk {
    map: Mapped,
}

impl Chunk {
    /// A fresh, zeroed, 2 MiB-aligned region straight from the kernel
    /// (`mmap`): the huge-page advice must come before the first touch,
    /// which an allocator that zeroes memory itself would already be.
    fn new() -> Chunk {
        let span = 2 * CHUNK_BYTES;
        let raw = map_anonymous(span);
        let start = raw.as_ptr() as usize;
        let base = start.next_multiple_of(CHUNK_BYTES);
        // SAFETY: both trims lie inside the mapping made above and outside
        // the aligned 2 MiB kept; unmapping them cannot fail for a valid range.
        unsafe {
            if base > start {
                libc::munmap(raw.as_ptr().cast(), base - start);
            }
            let end = base + CHUNK_BYTES;
            if start + span > end {
                libc::munmap(end as *mut libc::c_void, start + span - end);
            }
            // Failure (no THP support) leaves ordinary pages: ignored.
            libc::madvise(base as *mut libc::c_void, CHUNK_BYTES, libc::MADV_HUGEPAGE);
        }
        let base = NonNull::new(base as *mut u8).expect("inside a non-null mapping");
        // SAFETY: the aligned 2 MiB left of the mapping, page-aligned, ours alone.
        Chunk { map: unsafe { Mapped::from_raw(base, CHUNK_BYTES) } }
    }

    /// One frame's zeroed memory, untouched and never backed by a huge
    /// page (the advice only refuses them: its failure changes nothing
    /// where huge pages are off).
    fn plain() -> Chunk {
        let map = Mapped::zeroed(FRAME_BYTES);
        // SAFETY: the mapping made above.
        unsafe { libc::madvise(map.base().as_ptr().cast(), FRAME_BYTES, libc::MADV_NOHUGEPAGE) };
        Chunk { map }
    }

    fn base(&self) -> NonNull<u8> {
        self.map.base()
    }

    pub(super) fn is_plain(&self) -> bool {
        self.map.len() == FRAME_BYTES
    }

    /// Write a zero into every 4 KiB page, so the kernel backs the chunk
    /// now (one huge-page fault, or one per page without huge pages).
    fn touch(&self) {
        for off in (0..CHUNK_BYTES).step_by(4096) {
            // SAFETY: inside the chunk; the caller holds the only reference
            // (the spare is touched before it is published), and a zero
            // leaves zeroed memory zeroed.
            unsafe { std::ptr::write_volatile(self.base().as_ptr().add(off).cast::<u64>(), 0) };
        }
    }
}

/// The chunk being carved and how many of its frames are handed out.
static CURRENT: Mutex<Option<(Arc<Chunk>, usize)>> = Mutex::new(None);
/// Chunks touched ahead of need by the arena's thread.
static SPARE: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
/// How many spares the arena's thread keeps: the most any pool of the
/// process asked for (`keep_spares`), at least one.
static SPARES_WANTED: AtomicUsize = AtomicUsize::new(1);
/// Most spares kept, whatever pools ask for.
pub(crate) const SPARES_MAX: usize = 4;
/// Set when a spare was taken; the arena's thread waits on `REFILL`.
static REFILL_WANTED: Mutex<bool> = Mutex::new(false);
static REFILL: Condvar = Condvar::new();
static START: Once = Once::new();

/// Keep at least `n` chunks (up to `SPARES_MAX`) touched ahead of need,
/// from the next refill on, for the rest of the process.
pub(crate) fn keep_spares(n: usize) {
    SPARES_WANTED.fetch_max(n.clamp(1, SPARES_MAX), Ordering::Relaxed);
}

/// A chunk for the next frames: a spare if one is ready, else a fresh
/// one (touched by its first frame's user). Asks for more spares.
fn next_chunk() -> Arc<Chunk> {
    START.call_once(start_refill_thread);
    let spare = SPARE.lock().pop();
    *REFILL_WANTED.lock() = true;
    REFILL.notify_one();
    Arc::new(spare.unwrap_or_else(Chunk::new))
}

/// Start the thread that keeps the spares; without it (no thread could be
/// made) every chunk is made on demand.
fn start_refill_thread() {
    let spawned = std::thread::Builder::new().name("holt-arena".into()).spawn(|| loop {
        {
            let mut wanted = REFILL_WANTED.lock();
            while !*wanted {
                REFILL.wait(&mut wanted);
            }
            *wanted = false;
        }
        while SPARE.lock().len() < SPARES_WANTED.load(Ordering::Relaxed) {
            let chunk = Chunk::new();
            chunk.touch();
            SPARE.lock().push(chunk);
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the frame arena's thread (new frames are touched on demand): {e}");
    }
}

/// Zeroed words for one frame, and the chunk that keeps them alive.
pub(super) fn alloc_frame() -> (NonNull<AtomicU64>, Arc<Chunk>) {
    let mut cur = CURRENT.lock();
    let (chunk, used) = match cur.take() {
        Some((c, used)) if used < FRAMES_PER_CHUNK => (c, used),
        _ => (next_chunk(), 0),
    };
    // SAFETY: `used < FRAMES_PER_CHUNK`, so the frame lies inside the chunk.
    let words = unsafe { chunk.base().as_ptr().add(used * FRAME_BYTES) };
    let words = NonNull::new(words.cast::<AtomicU64>()).expect("inside a non-null chunk");
    if used + 1 < FRAMES_PER_CHUNK {
        *cur = Some((chunk.clone(), used + 1));
    }
    (words, chunk)
}

/// Zeroed words for one frame that huge pages never back.
pub(super) fn alloc_plain_frame() -> (NonNull<AtomicU64>, Arc<Chunk>) {
    let chunk = Arc::new(Chunk::plain());
    (chunk.base().cast::<AtomicU64>(), chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_disjoint_aligned_and_zeroed() {
        let frames: Vec<_> = (0..41)
            .map(|i| {
                if i % 8 == 0 {
                    // Give the arena's thread time to have a spare ready.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                alloc_frame()
            })
            .collect();
        let mut starts: Vec<usize> = frames.iter().map(|(p, _)| p.as_ptr() as usize).collect();
        starts.sort();
        for w in starts.windows(2) {
            assert!(w[1] - w[0] >= FRAME_BYTES, "frames overlap");
        }
        for (p, chunk) in &frames {
            let off = p.as_ptr() as usize - chunk.base().as_ptr() as usize;
            assert!(off.is_multiple_of(FRAME_BYTES) && off < CHUNK_BYTES);
            assert_eq!(chunk.base().as_ptr() as usize % CHUNK_BYTES, 0);
            let words = FRAME_BYTES / 8;
            for i in [0, 511, words / 2, words - 1] {
                // SAFETY: word `i` of a frame handed out above, kept alive by `frames`.
                let w = unsafe { &*p.as_ptr().add(i) };
                assert_eq!(w.load(std::sync::atomic::Ordering::Relaxed), 0, "frame word {i} is not zero");
            }
        }
    }

    /// A pool may ask for more spares than one; the arena's thread then
    /// keeps that many touched ahead of need (other tests take spares
    /// meanwhile, so it is enough to see the count reached once).
    #[test]
    fn the_arena_keeps_the_spares_asked_for() {
        keep_spares(SPARES_MAX + 10);
        assert_eq!(SPARES_WANTED.load(Ordering::Relaxed), SPARES_MAX, "capped");
        drop(alloc_frame());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while SPARE.lock().len() < SPARES_MAX {
            assert!(std::time::Instant::now() < deadline, "{} spares of {SPARES_MAX}", SPARE.lock().len());
            *REFILL_WANTED.lock() = true;
            REFILL.notify_one();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
