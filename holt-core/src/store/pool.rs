//! The buffer manager: frame cells, resident buffers, pins, dirty tracking
//! and eviction. It knows frames only as ids and byte images; it knows
//! nothing of ART nodes.
//!
//! Invariants:
//! - a buffer is never freed while the pool lives: an evicted buffer goes to
//!   the free list and may be reused for another frame. A frame's buffer is
//!   detached (evicted, retired) only under its exclusive latch, which bumps
//!   its version; an optimistic reader reads the version before the buffer
//!   pointer and validates after reading, so it never uses bytes of a buffer
//!   recycled under it: it may read them (they are atomics, and the memory
//!   stays mapped), then fails validation and restarts;
//! - a load that reads without the latch installs its image only if the
//!   frame's version did not move since before the read (`load`): a
//!   frame changed, written and evicted meanwhile is never brought back
//!   as it was;
//! - a frame is evicted only when live, clean, unpinned, and latched
//!   exclusively by the evictor: never a frame a writer holds, never a
//!   frame whose only copy is in memory;
//! - every miss makes progress: an operation that lost a frame it loaded
//!   pins the frames of its next attempts (`store::pins`), and with nothing
//!   evictable, or the clean part of the pool at its floor (an eighth of
//!   the budget), the pool allocates past its budget rather than wait. It
//!   comes back to the budget as pins are released (`shrink_to_budget`) and
//!   as checkpoints and write-outs clean dirty frames (the engine cleans
//!   when half the budget is dirty, and makes a writer clean, or wait for
//!   the checkpoint that does, once the cache is past its bound,
//!   `past_bound`, with an eighth of the budget dirty);
//! - a checkpoint captures the frames dirty at its cut without holding up
//!   writers (`store::capture`): a writer waits for at most one frame's copy
//!   per frame it latches;
//! - no whole-pool scan on the hot path: eviction is a CLOCK over evictable
//!   frames only (`store::clock`), and the resident and dirty counts and
//!   the list of dirty frames are kept as they change;
//! - without a backing source (memory mode) nothing is ever evicted: the
//!   cached image is the only copy.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub(crate) use self::capture::{Copied, Cut, Sunk, SPARES_KEPT};
#[cfg(test)]
pub(crate) use self::capture::{on_unheld_copies, WRITER_SPARES};
pub(crate) use super::cell::FrameCell;
pub(crate) use super::frame_source::{FrameSource, Loaded, Over};
use super::ahead::Ahead;
use super::clock::Clock;
use super::frame_file::{PAGES, PAGE_BYTES};
use super::image_buf::{ImageBuf, Via};
use super::table::{CellTable, CELLS_MAX};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::{verify_header, FrameBuf};

/// The pool keeps at least an eighth of its budget, and at least
/// `CLEAN_FRAMES_MIN` frames, clean and evictable (not dirty, not held by
/// a checkpoint): below that it grows rather than evict. With the budget
/// full of dirty frames, or of frames a checkpoint is writing, each load
/// would otherwise evict one of the few frames left, often one of the
/// loading operation's own path, which then restarts (random inserts at a
/// 1/8 pool: 2.2 frame loads per insert with no floor, 1.6 with a floor
/// that counted a checkpoint's frames as evictable).
const CLEAN_SHARE_DIVISOR: usize = 8;
const CLEAN_FRAMES_MIN: usize = 4;

thread_local! {
    /// The image buffer of this thread's frame loads (`read_image`).
    static IMAGE: std::cell::RefCell<Option<ImageBuf>> = const { std::cell::RefCell::new(None) };
}

/// How pages of frames held in part are read: through the page cache,
/// even where whole frames are read around it (`read_via`). A page read
/// fills one page-cache page, not a hundred, and under a memory limit the
/// page cache then keeps recently read pages in the room the pool leaves:
/// a second level that turns a quarter of the pages a lookup misses into
/// copies instead of device requests (gets 3784-3811 -> 4529-4961 ops/s
/// under the cap, benches/RESULTS.md run 23). Read around it instead, the
/// pages of a 2M-key tree under a 61 MiB limit cost 10-19% less, those of
/// a 10M-key tree under 307 MiB no less (run 50).
const PAGES_VIA: Via = Via::PageCache;

/// Free buffers kept with their memory for quick reuse, at most; more are
/// kept with their memory given back to the kernel. Their memory is
/// outside the budget, so a small cache keeps fewer (`warm_bufs_max`).
const FREE_BUFS_WARM: usize = 16;
/// ... and at most one per this many frames of the budget.
const WARM_BUFS_DIVISOR: usize = 16;

/// Activity counters, sharded per thread (see `counter`).
#[derive(Default)]
pub(crate) struct PoolCounters {
    /// Frames entered that were resident.
    pub hits: Counter,
    /// Frames loaded into the cache (a read that lost a race to load the
    /// same frame is not a miss, but counts in `frames_read`).
    pub misses: Counter,
    pub frames_read: Counter,
    /// Pages read into frames resident in part (`store::pages`), the
    /// first page and page checksums of each such load included.
    pub pages_read: Counter,
    pub bytes_read: Counter,
    pub evictions: Counter,
    /// Operations that went on pinning their frames after losing one.
    pub pinned_retries: Counter,
    pub restarts: Counter,
    pub spills: Counter,
    /// Spills the background thread made ahead of writers (also in
    /// `spills`; `store::ahead`).
    pub spills_ahead: Counter,
    /// Wall time of every spill, new frame included, in nanoseconds, and
    /// the longest one (`tree::spill::spill_from`).
    pub spill_nanos: Counter,
    pub spill_nanos_max: AtomicU64,
    pub merges: Counter,
    pub compactions: Counter,
    /// Frames laid out again in key order (`tree::tidy`), in memory or as
    /// images a checkpoint writes (`tidy_image`).
    pub tidies: Counter,
    /// Frames that took the layout a checkpoint gave their image
    /// (`store::capture`, `adopt_layout`).
    pub layouts_adopted: Counter,
    /// Checkpoints that gave way to one a caller waited for
    /// (`engine::checkpoint::Owner`).
    pub checkpoints_stopped: Counter,
    /// Frames a writer copied for a running checkpoint before changing
    /// them (`store::capture`).
    pub copies_on_write: Counter,
    /// Free buffers whose memory went back to the kernel (see `park_buf`).
    pub buffers_released: Counter,
    /// Dirty frames written out between checkpoints and cleaned
    /// (`store::write_out`).
    pub write_outs: Counter,
}

/// Live dirty frames: their number, and every frame dirtied in the current
/// capture epoch (it may also name frames cleaned or retired since).
#[derive(Default)]
struct Dirty {
    count: AtomicUsize,
    ids: Mutex<Vec<FrameId>>,
}

/// Buffers no frame uses, kept for reuse (never freed while the pool
/// lives). Warm ones still hold their memory and are handed out first: a
/// load into a cold one faults in and zeroes each of its pages before
/// its copy.
#[derive(Default)]
struct FreeBufs {
    warm: Vec<*mut FrameBuf>,
    /// Memory given back to the kernel (`FrameBuf::release_memory`).
    cold: Vec<*mut FrameBuf>,
}

impl FreeBufs {
    fn pop(&mut self) -> Option<*mut FrameBuf> {
        self.warm.pop().or_else(|| self.cold.pop())
    }

    /// A cold buffer, if any (tests).
    #[cfg(test)]
    fn last_cold(&self) -> Option<*mut FrameBuf> {
        self.cold.last().copied()
    }
}

pub(crate) struct Pool {
    cells: CellTable<FrameCell>,
    /// Every buffer ever allocated (owned here, freed on drop).
    all: Mutex<Vec<*mut FrameBuf>>,
    free_bufs: Mutex<FreeBufs>,
    /// Free plain buffers (for frames held in part).
    free_plain_bufs: Mutex<FreeBufs>,
    free_ids: Mutex<Vec<FrameId>>,
    /// Ids retired since the last cut, kept from reuse until a checkpoint
    /// has dropped them (`store::capture`); without a backing source a
    /// retired id is free at once.
    retired: Mutex<Vec<FrameId>>,
    next_id: AtomicU64,
    /// Frames of the tree (live cells), resident or not.
    live_frames: AtomicUsize,
    /// Pages the resident frames hold: `PAGES` for a whole frame, the
    /// pages read so far for one resident in part (`store::pages`). The
    /// budget counts these, so a frame a lookup read a few pages of costs
    /// a few pages.
    held_pages: AtomicUsize,
    /// Bytes of memory outside the frames that the budget counts (the
    /// engine's miss filter): the frames get what is left.
    set_aside: AtomicUsize,
    capacity: usize,
    clock: Clock,
    dirty: Dirty,
    /// The capture epoch frames are dirtied in; a checkpoint's cut ends it.
    epoch: AtomicU64,
    /// The running capture's images (`store::capture`).
    images: capture::Images,
    /// Frames a checkpoint holds pinned from capture to publication: clean
    /// and resident, but not evictable (the store's image is stale).
    captured: AtomicUsize,
    source: Option<Arc<dyn FrameSource>>,
    /// Loads into a full pool read around the page cache (`read_via`).
    direct_reads: bool,
    /// Frames nearly full, for the background to make room in.
    pub(crate) ahead: Ahead,
    pub(crate) counters: PoolCounters,
}

// SAFETY: the raw buffer pointers are only dereferenced as shared `&FrameBuf`
// (whose bytes are atomics) and freed only in `Drop`, when no borrow remains.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

/// Capacity (in frames) for each chunk of new frames the arena keeps
/// touched ahead of need (`layout::arena`): a default pool (1024 frames,
/// 512 MiB) keeps four (8 MiB), one of a few hundred frames one.
const FRAMES_PER_SPARE_CHUNK: usize = 256;

impl Pool {
    /// A pool caching at most `capacity` frames (soft limit; see `alloc_buf`).
    pub(crate) fn new(capacity: usize, source: Option<Arc<dyn FrameSource>>) -> Self {
        crate::layout::keep_spare_chunks(capacity / FRAMES_PER_SPARE_CHUNK);
        Pool {
            cells: CellTable::new(),
            all: Mutex::new(Vec::new()),
            free_bufs: Mutex::new(FreeBufs::default()),
            free_plain_bufs: Mutex::new(FreeBufs::default()),
            free_ids: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            live_frames: AtomicUsize::new(0),
            held_pages: AtomicUsize::new(0),
            set_aside: AtomicUsize::new(0),
            capacity,
            clock: Clock::default(),
            dirty: Dirty::default(),
            epoch: AtomicU64::new(1),
            images: capture::Images::default(),
            captured: AtomicUsize::new(0),
            source,
            direct_reads: false,
            ahead: Ahead::default(),
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
        if !cell.live.swap(true, Ordering::AcqRel) {
            self.live_frames.fetch_add(1, Ordering::AcqRel);
        }
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
        debug_assert!(!cell.is_live() && !cell.is_dirty(), "a fresh id names no frame");
        let buf = self.alloc_buf(PAGES);
        // SAFETY: `alloc_buf` returns a pool-owned buffer nobody else uses.
        unsafe { &*buf }.format(id);
        cell.buf.store(buf, Ordering::Release);
        cell.live.store(true, Ordering::Release);
        self.live_frames.fetch_add(1, Ordering::AcqRel);
        self.mark_dirty(id, cell);
        (id, cell)
    }

    /// Retire frame `id`, which the caller holds exclusively and which no
    /// node references any more. Its id is reused once no checkpoint can
    /// still need it (see `retired`).
    pub(crate) fn retire(&self, id: FrameId, cell: &FrameCell) {
        debug_assert!(!self.is_pending(cell), "a writer copies a pending frame as it latches it");
        if cell.dirty_epoch.swap(0, Ordering::AcqRel) != 0 {
            self.dirty.count.fetch_sub(1, Ordering::AcqRel);
        }
        if cell.live.swap(false, Ordering::AcqRel) {
            self.live_frames.fetch_sub(1, Ordering::AcqRel);
        }
        cell.forget_links_out();
        let (mut buf, mut pages) = (cell.buf.swap(std::ptr::null_mut(), Ordering::AcqRel), PAGES);
        if buf.is_null() {
            (buf, pages) = cell.take_part();
        }
        if !buf.is_null() {
            self.park_buf(buf);
            self.held_pages.fetch_sub(pages, Ordering::AcqRel);
        }
        if self.source.is_some() {
            self.retired.lock().push(id);
        } else {
            self.free_ids.lock().push(id);
        }
    }

    /// Record a modification of frame `id`, dirty from now on in the
    /// current epoch. The caller holds its latch exclusively, and holds the
    /// commit gate's shared side, or runs alone (open, replay), or is the
    /// checkpoint putting back frames it failed to write: so no cut moves
    /// the epoch meanwhile. A retired frame stays clean: its id names no
    /// frame.
    pub(crate) fn mark_dirty(&self, id: FrameId, cell: &FrameCell) {
        if !cell.is_live() {
            return;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let was = cell.dirty_epoch.swap(epoch, Ordering::AcqRel);
        debug_assert!(was == 0 || was == epoch, "frame {id:?} changed while pending (dirtied in epoch {was})");
        if was == 0 {
            self.dirty.count.fetch_add(1, Ordering::AcqRel);
            self.dirty.ids.lock().push(id);
            if let Some(state) = cell.page_state() {
                state.forget_image();
            }
        }
    }

    /// Keep frame `id` resident until `unpin` (the root frame, for good).
    pub(crate) fn pin(&self, cell: &FrameCell) {
        cell.pin();
    }

    pub(crate) fn unpin(&self, id: FrameId, cell: &FrameCell) {
        if cell.unpin() {
            self.clock.enqueue(id, cell);
        }
    }

    /// Read live frame `id` from the source and install it unless another
    /// thread did first, or the frame changed since the read began. The
    /// frame may be evicted again before the caller looks, unless the
    /// caller pinned it.
    ///
    /// The read runs without the latch, so the stored image it returns may
    /// be older than the frame by the time it is installed: another thread
    /// may have loaded the frame meanwhile, changed it, had a checkpoint
    /// write it, and seen it evicted. Each of those steps moves the latch
    /// version, so an image is installed only if the version did not move
    /// since before the read (`lock_unchanged_since`); else the caller
    /// finds the frame not resident and loads it again.
    pub(crate) fn load(&self, id: FrameId, cell: &FrameCell) -> Result<()> {
        let Some(version) = version_to_load(cell) else { return Ok(()) };
        self.read_image(id, |image, loaded| {
            if cell.latch.lock_unchanged_since(version) {
                self.install(cell, image, loaded);
            }
            cell.latch.unlock();
        })?;
        self.clock.enqueue(id, cell);
        Ok(())
    }

    /// Latch live frame `id` exclusively if no one holds it, loading it
    /// under the latch if it is not resident: `Ok(true)` when latched and
    /// resident (a latched frame is never evicted).
    pub(crate) fn try_lock_resident(&self, id: FrameId, cell: &FrameCell) -> Result<bool> {
        if !cell.latch.try_lock() {
            return Ok(false);
        }
        if let Err(e) = self.make_whole(id, cell) {
            cell.latch.unlock();
            return Err(e);
        }
        Ok(true)
    }

    /// Make frame `id`, which the caller holds exclusively, resident whole:
    /// read from the source if it is held in part or not at all. A writer
    /// needs every byte of a frame it holds, and a version a scan noted may
    /// be of the frame in part.
    pub(crate) fn make_whole(&self, id: FrameId, cell: &FrameCell) -> Result<()> {
        if cell.buf().is_some() {
            return Ok(());
        }
        self.read_image(id, |image, loaded| self.install(cell, image, loaded))?;
        // The hand drops the entry of a frame it met between its part
        // buffer's detach and the whole one's install.
        self.clock.enqueue(id, cell);
        Ok(())
    }

    /// Hand `then` the image of frame `id` from the source, its header
    /// checked. The image lives in this thread's buffer, made at its first
    /// load and reused: a fresh 512 KiB allocation per load costs page
    /// faults, zeroing and unmapping.
    fn read_image(&self, id: FrameId, then: impl FnOnce(&ImageBuf, Loaded)) -> Result<()> {
        let source = self.source.as_ref().ok_or_else(|| dangling(id))?;
        IMAGE.with_borrow_mut(|image| {
            let image = image.get_or_insert_with(ImageBuf::zeroed);
            let loaded = source.read_frame(id, image, self.read_via())?;
            self.counters.frames_read.add(1);
            self.counters.bytes_read.add(loaded.bytes);
            // The source checked a checksum over the whole image; the frame's
            // own checksum could only repeat that, so only its header is checked.
            verify_header(image, id).map_err(|what| Error::corrupted("frames", id.0, what))?;
            then(image, loaded);
            Ok(())
        })
    }

    /// Whether a lookup or scan that misses should load the frame in part
    /// (`store::pages`): the source reads pages, and the pool is full or
    /// the tree has more frames than it holds. A tree the pool holds is
    /// read whole, once, with fewer requests; one larger than the pool
    /// would fill it with whole frames after every start, each costing a
    /// frame's bytes for a few nodes (a 50 M-key tree's cold gets: 1250
    /// ops/s at 1 ms of CPU each, benches/RESULTS.md run 23).
    pub(crate) fn loads_pages(&self) -> bool {
        let larger = self.charged_frames() >= self.capacity || self.live_frames.load(Ordering::Acquire) > self.capacity;
        larger && self.source.as_ref().is_some_and(|s| s.paged())
    }

    /// Whether the cache could hold the whole tree, with room to spare:
    /// what a scan of every frame (the miss filter's build) wants, so it
    /// does not evict what readers use.
    pub(crate) fn could_hold_tree(&self) -> bool {
        self.source.is_none() || self.live_frames.load(Ordering::Acquire).saturating_mul(2) <= self.capacity
    }

    /// Whether the tree has more frames than the cache holds: dirty
    /// frames are then written out between checkpoints
    /// (`engine::write_out`).
    pub(crate) fn tree_outgrows_cache(&self) -> bool {
        self.source.is_some() && self.live_frames.load(Ordering::Acquire) > self.capacity
    }

    /// Whether the cache has room for the tree twice over: what room made
    /// ahead of the writers wants (`engine::maintenance::spill_ahead`: a
    /// frame made early, and a copy of another).
    pub(crate) fn holds_tree_twice(&self) -> bool {
        let twice = |n: usize| n.saturating_mul(2) < self.capacity;
        twice(self.live_frames.load(Ordering::Acquire)) && twice(self.resident_count())
    }

    /// Read frames around the page cache once the pool is full
    /// (`TreeBuilder::direct_frame_reads`).
    pub(crate) fn with_direct_reads(mut self, on: bool) -> Self {
        self.direct_reads = on;
        self
    }

    /// While the pool has room, loads read through the page cache: after
    /// a restart the last checkpoint's frames are still there, and a tree
    /// the pool holds is read once. A full pool replaces a frame at each
    /// load; where direct reads are asked for (a memory limit the page
    /// cache counts against), a page-cache copy of its frames would only
    /// double their memory, and filling and reclaiming it costs most of a
    /// miss's CPU: loads go around it. Elsewhere the page cache keeps the
    /// frames the pool evicted, to read them back from.
    fn read_via(&self) -> Via {
        if self.direct_reads && self.charged_frames() >= self.capacity {
            Via::Direct
        } else {
            Via::PageCache
        }
    }

    /// Make `image` the frame's buffer if it has none. A frame resident in
    /// part gives its part buffer back and takes a whole one like any
    /// other load: the part buffer's absent pages were given back to the
    /// kernel, so filling it would fault in most of a frame, while the
    /// buffer of a frame evicted to make room is warm. The part buffer is
    /// parked only after, so it is never the one taken. Caller holds the
    /// latch (readers of the part buffer fail validation).
    fn install(&self, cell: &FrameCell, image: &[u8], loaded: Loaded) {
        if cell.buf().is_some() {
            return;
        }
        let (part, had) = cell.take_part();
        self.held_pages.fetch_sub(had, Ordering::AcqRel);
        let buf = self.alloc_buf(PAGES);
        if !part.is_null() {
            self.park_buf(part);
        }
        // SAFETY: a pool-owned buffer no one else uses yet.
        let b = unsafe { &*buf };
        // Only the used bytes are copied: a cold buffer's gap pages stay
        // unfaulted. The marks then count the pages that differ from the
        // stored whole image (all, without one).
        b.install_image(image);
        b.set_marks(loaded.base.map_or(u128::MAX, |b| b.pages));
        cell.delta_base.store(loaded.base.map_or(0, |b| u64::from(b.slot) + 1), Ordering::Release);
        cell.buf.store(buf, Ordering::Release);
        cell.touch();
        self.counters.misses.add(1);
    }

    /// A free buffer for a frame that will hold `pages` of it: taken from
    /// an evicted frame when over capacity (frames are evicted until it is
    /// not: one whole frame may replace many held in part), else recycled
    /// or newly allocated. Over capacity with nothing evictable, it
    /// allocates anyway: dirty frames stay until a checkpoint writes them,
    /// pinned ones until released.
    fn alloc_buf(&self, pages: usize) -> *mut FrameBuf {
        // A frame held in part needs a plain buffer (`FrameBuf::plain`); a
        // whole frame takes any, rather than a fresh chunk to zero.
        let plain = pages < PAGES;
        self.held_pages.fetch_add(pages, Ordering::AcqRel);
        let mut reuse = None;
        while self.over_budget() {
            match self.evict_one() {
                Some(b) if b.is_null() => {}
                // SAFETY: every buffer pointer stays valid until the pool drops.
                Some(b) if reuse.is_none() && (!plain || unsafe { &*b }.is_plain()) => reuse = Some(b),
                Some(b) => self.park_buf(b),
                None => break,
            }
        }
        let free = || match plain {
            true => self.free_plain_bufs.lock().pop(),
            false => self.free_bufs.lock().pop().or_else(|| self.free_plain_bufs.lock().pop()),
        };
        if let Some(b) = reuse.or_else(free) {
            return b;
        }
        let b = Box::into_raw(Box::new(if plain { FrameBuf::plain() } else { FrameBuf::zeroed() }));
        self.all.lock().push(b);
        b
    }

    /// Detach the buffer of one evictable frame, or trim one held in part
    /// (null: its pages are back in the budget, the frame stays): never in
    /// memory mode, nor while the clean part of the pool is at its floor.
    fn evict_one(&self) -> Option<*mut FrameBuf> {
        self.source.as_ref()?;
        let pinned = self.dirty_count() + self.captured.load(Ordering::Acquire);
        let clean = self.resident_count().saturating_sub(pinned);
        if clean <= (self.capacity / CLEAN_SHARE_DIVISOR).max(CLEAN_FRAMES_MIN) {
            return None;
        }
        let (buf, pages) = self.clock.evict(&self.cells)?;
        self.held_pages.fetch_sub(pages, Ordering::AcqRel);
        if !buf.is_null() {
            self.counters.evictions.add(1);
        }
        Some(buf)
    }

    /// Evict clean frames until the cache is back within its budget (after
    /// a checkpoint cleaned frames, or pins were released). Stops early when
    /// nothing is evictable.
    pub(crate) fn shrink_to_budget(&self) {
        while self.over_budget() {
            match self.evict_one() {
                Some(buf) if buf.is_null() => {}
                Some(buf) => self.park_buf(buf),
                None => return,
            }
        }
    }

    /// Keep a buffer no frame uses for reuse. Past `warm_bufs_max` of
    /// them its memory goes back to the kernel first, so a pool that grew
    /// past its budget (dirty or pinned frames) shrinks in memory too, not
    /// only in frames. A plain buffer's always does: a frame held in part
    /// gives the memory back before it uses one anyway (`attach_part`),
    /// so a warm plain buffer only holds memory the budget does not count
    /// while it waits. Buffers are never freed while the pool lives:
    /// optimistic readers may still hold their pointers.
    fn park_buf(&self, buf: *mut FrameBuf) {
        // SAFETY: every buffer pointer stays valid until the pool drops.
        let plain = unsafe { &*buf }.is_plain();
        let mut free = self.free_list(plain).lock();
        if !plain && free.warm.len() < self.warm_bufs_max() {
            free.warm.push(buf);
            return;
        }
        // SAFETY: every buffer pointer stays valid until the pool drops.
        unsafe { &*buf }.release_memory();
        self.counters.buffers_released.add(1);
        free.cold.push(buf);
    }

    /// The free buffers of one kind (`FrameBuf::plain` or not).
    fn free_list(&self, plain: bool) -> &Mutex<FreeBufs> {
        if plain {
            &self.free_plain_bufs
        } else {
            &self.free_bufs
        }
    }

    /// Frames cached in memory, as whole frames' worth of pages: a frame
    /// resident in part counts the share it holds.
    pub(crate) fn resident_count(&self) -> usize {
        self.held_pages.load(Ordering::Acquire).div_ceil(PAGES)
    }

    /// The cache budget, in frames.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames' worth of the budget nothing holds: what a checkpoint may
    /// fill with images before it writes them (`Start::images_held`).
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.charged_frames())
    }

    /// Free buffers kept warm (`park_buf`): `FREE_BUFS_WARM`, and no more
    /// than a sixteenth of the budget (at least one).
    pub(crate) fn warm_bufs_max(&self) -> usize {
        FREE_BUFS_WARM.min(self.capacity / WARM_BUFS_DIVISOR).max(1)
    }

    /// Live frames modified since their last capture (one atomic load).
    pub(crate) fn dirty_count(&self) -> usize {
        self.dirty.count.load(Ordering::Acquire)
    }

    /// More frames are cached than the budget allows (dirty ones pin them).
    pub(crate) fn over_budget(&self) -> bool {
        self.charged_frames() > self.capacity
    }

    /// The cache is charged past its bound: its budget and an eighth
    /// more (`CLEAN_SHARE_DIVISOR`: the clean floor's share, which loads
    /// keep while dirty or pinned frames fill the rest). Writers clean
    /// there before they go on (`Engine::nudge_if_due`), so the memory a
    /// write load holds stays within this bound however fast it writes,
    /// give or take the frames a checkpoint has captured and not yet
    /// written.
    pub(crate) fn past_bound(&self) -> bool {
        self.charged_frames() > self.capacity + (self.capacity / CLEAN_SHARE_DIVISOR).max(CLEAN_FRAMES_MIN)
    }

    /// What the budget counts, in frames: the resident frames' pages and
    /// the memory set aside for others.
    fn charged_frames(&self) -> usize {
        let aside = self.set_aside.load(Ordering::Acquire).div_ceil(PAGE_BYTES);
        (self.held_pages.load(Ordering::Acquire) + aside).div_ceil(PAGES)
    }

    /// Count `bytes` of memory held outside the frames against the budget
    /// (replacing the figure set before); the frames are evicted down to
    /// what is left as loads come.
    pub(crate) fn set_aside(&self, bytes: usize) {
        self.set_aside.store(bytes, Ordering::Release);
    }

    pub(crate) fn is_live(&self, id: FrameId) -> bool {
        self.cell(id).is_some_and(FrameCell::is_live)
    }

    /// Ids of every live frame: a walk over every id, for reports and
    /// maintenance, never for a read or a write.
    pub(crate) fn live_ids(&self) -> Vec<FrameId> {
        (1..self.id_limit()).map(FrameId).filter(|&id| self.is_live(id)).collect()
    }
}

/// The latch version a load that reads without the latch starts from
/// (`Pool::load`); `None`, after waiting, while a writer holds the frame
/// (the caller looks at it again).
fn version_to_load(cell: &FrameCell) -> Option<u64> {
    let version = cell.latch.optimistic();
    if version.is_none() {
        cell.latch.wait_unlocked();
    }
    version
}

pub(super) fn dangling(id: FrameId) -> Error {
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

#[path = "capture.rs"]
mod capture;
#[path = "pool_parts.rs"]
mod parts;
#[path = "write_out.rs"]
mod write_out;

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
