//! The buffer manager: frame cells, resident buffers, pins, dirty tracking
//! and eviction. It knows frames only as ids and byte images; it knows
//! nothing of ART nodes.
//!
//! Invariants:
//! - a buffer is never freed while the pool lives: an evicted buffer goes to
//!   the free list and may be reused for another frame, so an optimistic
//!   reader holding a stale pointer reads bytes it will then reject, since
//!   detaching a buffer bumps the frame's latch version;
//! - a frame is evicted only when clean, unpinned, and latched exclusively
//!   by the evictor;
//! - without a backing source (memory mode) nothing is ever evicted: the
//!   cached image is the only copy.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::table::{CellTable, CELLS_MAX};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::latch::HybridLatch;
use crate::layout::{verify_header, FrameBuf};

/// Loads of one frame `resident` tries while evictions race it.
const LOAD_TRIES_MAX: usize = 64;

/// Fewest evictable frames for which eviction on a load is tried at all.
const EVICTABLE_MIN: usize = 4;

thread_local! {
    /// The image buffer of this thread's frame loads.
    static IMAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where evicted frames are read back from.
pub(crate) trait FrameSource: Send + Sync {
    /// Put into `into` the image of frame `id` as last written by a
    /// checkpoint, verified against a checksum over every byte of it.
    fn read_frame(&self, id: FrameId, into: &mut Vec<u8>) -> Result<()>;
}

/// Per-frame state. Lives for the pool's life; `live` says whether the id
/// names a frame of the tree right now.
#[derive(Default)]
pub(crate) struct FrameCell {
    pub(crate) latch: HybridLatch,
    buf: AtomicPtr<FrameBuf>,
    live: AtomicBool,
    dirty: AtomicBool,
    pins: AtomicU32,
    /// Set when the frame is used, cleared by the eviction clock hand.
    referenced: AtomicBool,
}

impl FrameCell {
    /// The resident image, if any. Readers must validate the latch after use.
    #[inline]
    pub(crate) fn buf(&self) -> Option<&FrameBuf> {
        let p = self.buf.load(Ordering::Acquire);
        // SAFETY: buffers are owned by the pool's `all` list and never freed
        // before the pool; see the module invariants.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Note a use for the eviction clock (a plain store, and only when the
    /// bit is clear, so hot frames cost readers no shared writes).
    #[inline]
    pub(crate) fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Record a modification. Caller holds the latch exclusively.
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Clear the dirty mark after the image was captured for writing.
    pub(crate) fn mark_clean(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    pub(crate) fn pin(&self) {
        self.pins.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn unpin(&self) {
        let before = self.pins.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "unpin without pin");
    }
}

#[derive(Default)]
pub(crate) struct PoolCounters {
    pub hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
    pub restarts: Counter,
    pub spills: Counter,
    pub merges: Counter,
    pub compactions: Counter,
}

pub(crate) struct Pool {
    cells: CellTable<FrameCell>,
    /// Every buffer ever allocated (owned here, freed on drop).
    all: Mutex<Vec<*mut FrameBuf>>,
    free_bufs: Mutex<Vec<*mut FrameBuf>>,
    free_ids: Mutex<Vec<FrameId>>,
    next_id: AtomicU64,
    resident: AtomicUsize,
    capacity: usize,
    clock_hand: AtomicUsize,
    source: Option<Arc<dyn FrameSource>>,
    pub(crate) counters: PoolCounters,
}

// SAFETY: the raw buffer pointers are only dereferenced as shared `&FrameBuf`
// (whose bytes are atomics) and freed only in `Drop`, when no borrow remains.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

impl Pool {
    /// A pool caching at most `capacity` frames (soft limit; see `alloc_buf`).
    pub(crate) fn new(capacity: usize, source: Option<Arc<dyn FrameSource>>) -> Self {
        Pool {
            cells: CellTable::new(),
            all: Mutex::new(Vec::new()),
            free_bufs: Mutex::new(Vec::new()),
            free_ids: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            resident: AtomicUsize::new(0),
            capacity,
            clock_hand: AtomicUsize::new(0),
            source,
            counters: PoolCounters::default(),
        }
    }

    #[inline]
    pub(crate) fn cell(&self, id: FrameId) -> Option<&FrameCell> {
        self.cells.get(id.0 as usize)
    }

    /// Ids are handed out above every id restored from a store.
    pub(crate) fn reserve_ids_through(&self, id: FrameId) {
        self.next_id.fetch_max(id.0 + 1, Ordering::AcqRel);
    }

    /// One past the largest id ever used.
    pub(crate) fn id_limit(&self) -> u64 {
        self.next_id.load(Ordering::Acquire)
    }

    /// Mark `id` as a live frame known to the backing source (at open).
    pub(crate) fn register_stored(&self, id: FrameId) {
        self.reserve_ids_through(id);
        let cell = self.cells.get_or_create(id.0 as usize);
        cell.live.store(true, Ordering::Release);
    }

    fn fresh_id(&self) -> FrameId {
        if let Some(id) = self.free_ids.lock().pop() {
            return id;
        }
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        assert!((id as usize) < CELLS_MAX, "frame ids exhausted");
        FrameId(id)
    }

    /// Create a new empty frame, returned latched exclusively and dirty.
    pub(crate) fn create(&self) -> (FrameId, &FrameCell) {
        let id = self.fresh_id();
        let cell = self.cells.get_or_create(id.0 as usize);
        cell.latch.lock();
        let buf = self.alloc_buf();
        // SAFETY: `alloc_buf` returns a pool-owned buffer nobody else uses.
        unsafe { &*buf }.format(id);
        cell.buf.store(buf, Ordering::Release);
        cell.live.store(true, Ordering::Release);
        cell.mark_dirty();
        (id, cell)
    }

    /// Retire frame `id`, which the caller holds exclusively and which no
    /// node references any more. Its id may be reused.
    pub(crate) fn retire(&self, id: FrameId, cell: &FrameCell) {
        cell.live.store(false, Ordering::Release);
        cell.mark_dirty();
        let buf = cell.buf.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !buf.is_null() {
            self.free_bufs.lock().push(buf);
            self.resident.fetch_sub(1, Ordering::AcqRel);
        }
        self.free_ids.lock().push(id);
    }

    /// The buffer of live frame `id`, reading it from the source on a miss.
    /// The returned buffer is valid until the caller's latch validation.
    pub(crate) fn resident(&self, id: FrameId) -> Result<(&FrameCell, &FrameBuf)> {
        let cell = self.cell(id).filter(|c| c.is_live()).ok_or_else(|| dangling(id))?;
        if let Some(b) = cell.buf() {
            self.counters.hits.add(1);
            return Ok((cell, b));
        }
        // A concurrent eviction may take the frame again before we look.
        for _ in 0..LOAD_TRIES_MAX {
            self.load(id, cell)?;
            if let Some(b) = cell.buf() {
                return Ok((cell, b));
            }
        }
        Err(Error::corrupted("frames", id.0, format!("frame {} kept being evicted while loading", id.0)))
    }

    fn load(&self, id: FrameId, cell: &FrameCell) -> Result<()> {
        let source = self.source.as_ref().ok_or_else(|| dangling(id))?;
        IMAGE.with_borrow_mut(|image| self.install(id, cell, source.as_ref(), image))
    }

    /// `load` with the thread's image buffer: reusing it spares each load a
    /// fresh 512 KiB allocation (page faults, zeroing, unmapping).
    fn install(&self, id: FrameId, cell: &FrameCell, source: &dyn FrameSource, image: &mut Vec<u8>) -> Result<()> {
        source.read_frame(id, image)?;
        // The source checked a checksum over the whole image; the frame's own
        // checksum could only repeat that, so only its header is checked.
        verify_header(image, id).map_err(|what| Error::corrupted("frames", id.0, what))?;
        cell.latch.lock();
        if cell.buf().is_none() {
            let buf = self.alloc_buf();
            // SAFETY: fresh pool-owned buffer.
            unsafe { &*buf }.load(image);
            cell.buf.store(buf, Ordering::Release);
            cell.touch();
            self.counters.misses.add(1);
        }
        cell.latch.unlock();
        Ok(())
    }

    /// A free buffer: recycled, newly allocated under capacity, or taken from
    /// an evicted frame. Over capacity with nothing evictable, it allocates
    /// anyway (dirty frames must stay until a checkpoint writes them).
    fn alloc_buf(&self) -> *mut FrameBuf {
        let resident = self.resident.fetch_add(1, Ordering::AcqRel) + 1;
        if resident > self.capacity && self.source.is_some() {
            if let Some(b) = self.evict_one() {
                return b;
            }
        }
        if let Some(b) = self.free_bufs.lock().pop() {
            return b;
        }
        let b = Box::into_raw(Box::new(FrameBuf::zeroed()));
        self.all.lock().push(b);
        b
    }

    /// Clock sweep with a second chance for a clean, unpinned, unlatched
    /// frame. With fewer than `EVICTABLE_MIN` candidates it gives up (the
    /// pool grows past its budget until a checkpoint cleans frames), so a
    /// descent never thrashes by evicting the frames of its own path.
    fn evict_one(&self) -> Option<*mut FrameBuf> {
        let limit = self.id_limit() as usize;
        let evictable = |c: &FrameCell| {
            c.buf().is_some() && !c.is_dirty() && c.pins.load(Ordering::Acquire) == 0 && !c.latch.is_locked()
        };
        let candidates = (1..limit).filter(|&i| self.cells.get(i).is_some_and(evictable)).count();
        if candidates < EVICTABLE_MIN {
            return None;
        }
        for _ in 0..2 * limit {
            let i = self.clock_hand.fetch_add(1, Ordering::Relaxed) % limit.max(1);
            let Some(cell) = self.cells.get(i) else { continue };
            if !evictable(cell) || cell.referenced.swap(false, Ordering::AcqRel) {
                continue;
            }
            if let Some(buf) = self.detach(cell) {
                return Some(buf);
            }
        }
        None
    }

    /// Take the buffer of an evictable frame, latched while we do.
    fn detach(&self, cell: &FrameCell) -> Option<*mut FrameBuf> {
        if !cell.latch.try_lock() {
            return None;
        }
        let ok = !cell.is_dirty() && cell.pins.load(Ordering::Acquire) == 0;
        let buf = if ok { cell.buf.swap(std::ptr::null_mut(), Ordering::AcqRel) } else { std::ptr::null_mut() };
        cell.latch.unlock();
        if buf.is_null() {
            return None;
        }
        self.resident.fetch_sub(1, Ordering::AcqRel);
        self.counters.evictions.add(1);
        Some(buf)
    }

    /// Evict clean frames until the cache is back within its budget (after
    /// a checkpoint has cleaned frames). Stops early when nothing is evictable.
    pub(crate) fn shrink_to_budget(&self) {
        if self.source.is_none() {
            return;
        }
        while self.over_budget() {
            match self.evict_one() {
                Some(buf) => self.free_bufs.lock().push(buf),
                None => return,
            }
        }
    }

    /// Frames cached in memory.
    pub(crate) fn resident_count(&self) -> usize {
        self.resident.load(Ordering::Acquire)
    }

    /// Live frames modified since their last capture.
    pub(crate) fn dirty_count(&self) -> usize {
        (1..self.id_limit())
            .filter(|&i| self.cells.get(i as usize).is_some_and(|c| c.is_live() && c.is_dirty()))
            .count()
    }

    /// More frames are cached than the budget allows (dirty ones pin them).
    pub(crate) fn over_budget(&self) -> bool {
        self.resident_count() > self.capacity
    }

    /// Ids of every live frame.
    pub(crate) fn live_ids(&self) -> Vec<FrameId> {
        (1..self.id_limit())
            .filter(|&i| self.cells.get(i as usize).is_some_and(|c| c.is_live()))
            .map(FrameId)
            .collect()
    }
}

fn dangling(id: FrameId) -> Error {
    Error::corrupted("frames", id.0, format!("link to frame {} which does not exist", id.0))
}

impl Drop for Pool {
    fn drop(&mut self) {
        for &b in self.all.get_mut().iter() {
            // SAFETY: each pointer came from Box::into_raw in alloc_buf and is
            // dropped exactly once, here, when no borrow can remain.
            drop(unsafe { Box::from_raw(b) });
        }
    }
}
