//! `CellTable`: an append-only array of cells indexed by frame id. Lookups
//! are two atomic loads and take no lock; cells are never freed before the
//! table, so a `&T` handed out stays valid for the table's life.

use std::sync::atomic::{AtomicPtr, Ordering};

use parking_lot::Mutex;

const CHUNK_BITS: usize = 10;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
/// Chunks in the directory: 4096 * 1024 = 4M frames = 2 TiB of frames.
pub(crate) const CHUNKS_MAX: usize = 4096;
pub(crate) const CELLS_MAX: usize = CHUNKS_MAX * CHUNK_LEN;

pub(crate) struct CellTable<T: Default> {
    chunks: Box<[AtomicPtr<T>]>,
    grow: Mutex<()>,
}

impl<T: Default> CellTable<T> {
    pub(crate) fn new() -> Self {
        let chunks = (0..CHUNKS_MAX).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
        CellTable { chunks, grow: Mutex::new(()) }
    }

    /// The cell at `i`, if its chunk exists.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        let chunk = self.chunks.get(i >> CHUNK_BITS)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk pointer came from `Box::into_raw` of a
        // CHUNK_LEN slice in `get_or_create` and is freed only in `drop`.
        Some(unsafe { &*chunk.add(i & (CHUNK_LEN - 1)) })
    }

    /// The cell at `i`, creating its chunk if needed. Panics past `CELLS_MAX`.
    pub(crate) fn get_or_create(&self, i: usize) -> &T {
        if let Some(c) = self.get(i) {
            return c;
        }
        assert!(i < CELLS_MAX, "frame table full: {i} >= {CELLS_MAX}");
        let _g = self.grow.lock();
        let slot = &self.chunks[i >> CHUNK_BITS];
        if slot.load(Ordering::Acquire).is_null() {
            let chunk: Box<[T]> = (0..CHUNK_LEN).map(|_| T::default()).collect();
            slot.store(Box::into_raw(chunk) as *mut T, Ordering::Release);
        }
        self.get(i).expect("chunk was just created")
    }

}

impl<T: Default> Drop for CellTable<T> {
    fn drop(&mut self) {
        for c in self.chunks.iter() {
            let p = c.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: created by Box::into_raw of a CHUNK_LEN boxed slice.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, CHUNK_LEN)) });
            }
        }
    }
}
