//! `FrameCell`: the per-frame state the buffer manager keeps for every
//! frame id, resident or not, for the pool's whole life.
//!
//! Who changes what (the pool's invariants rest on this):
//! - `buf` and `part` are set and cleared only under the frame's exclusive
//!   latch, so every change of them bumps the latch version; at most one
//!   of them is set (`part`: a frame resident in part, `store::pages`);
//! - `live` changes under the exclusive latch (create, retire) or before the
//!   pool is shared (open);
//! - `dirty_epoch` changes under the exclusive latch, or under a
//!   checkpoint copier's `hold` of it, which also keeps every writer out:
//!   so the pool's dirty count, kept beside it, is exact;
//! - `queued` is read and written only under the eviction clock's mutex;
//! - `pins` and `uses` are plain atomics anyone may change.

use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

use super::frame_file::{PAGES, PAGE_BYTES};
use super::pages::PageState;
use crate::latch::HybridLatch;
use crate::layout::FrameBuf;

/// Per-frame state. `live` says whether the id names a frame of the tree.
#[derive(Default)]
pub(crate) struct FrameCell {
    pub(crate) latch: HybridLatch,
    pub(super) buf: AtomicPtr<FrameBuf>,
    /// The buffer of a clean frame only some of whose pages are in memory.
    pub(super) part: AtomicPtr<FrameBuf>,
    /// Which pages `part` holds; made at the frame's first partial load.
    pub(super) pages: OnceLock<Box<PageState>>,
    pub(super) live: AtomicBool,
    /// The capture epoch the frame was dirtied in (`store::capture`); 0
    /// while clean.
    pub(super) dirty_epoch: AtomicU64,
    /// Holders that need the frame to stay resident (see `store::pins`).
    pins: AtomicU32,
    /// Recent uses, up to `USES_MAX`: raised by readers, lowered by the
    /// eviction clock's hand, which takes the frame only at zero.
    uses: AtomicU8,
    /// The frame has an entry in the eviction clock's ring.
    pub(super) queued: AtomicBool,
    /// A walk left the frame by a link (an inner frame): a hint for how a
    /// writer's walk reads it on a miss (`descend::Reads::PagesAbove`),
    /// never for what it reads. Kept until the frame is retired: one that
    /// lost its links since is read in part, then whole.
    links_out: AtomicBool,
    /// One more than the slot of the stored whole image the buffer's page
    /// marks (`FrameBuf::take_marks`) count changes from; 0: none (a frame
    /// made in memory, or read from a source no delta may name). Set by a
    /// load; what a write of the frame's image makes of it is the
    /// capture's (`store::capture`).
    pub(super) delta_base: AtomicU64,
}

/// Most uses a frame remembers: a frame on every path (an inner frame)
/// survives this many sweeps of the hand more than one used once (a leaf
/// frame read by one lookup), so a burst of evictions (shrinking the pool
/// after a checkpoint) takes the cold frames first. Counting like this
/// (GCLOCK) instead of one bit keeps eviction O(1) amortised: each
/// decrement is paid for by the use that raised it.
pub(super) const USES_MAX: u8 = 3;

/// Uses a frame trimmed to its skeleton is credited with: unless used
/// again, the hand passes it this many more times before evicting it.
/// Every lookup through a frame reads its skeleton, so those few pages are
/// worth more of the budget than the run pages just given back, which one
/// lookup each read (capped 2M-key run, benches/RESULTS.md run 32: engine
/// bytes a uniform get 6709 with no credit, 6258 with 1, 5984 with 2, 5953
/// with 3). Paid for by the trim, as a use by its lookup: eviction stays
/// O(1) amortised.
const SKELETON_CREDIT: u8 = 2;

/// What the eviction clock may do with a frame it meets.
pub(super) enum Fate {
    /// Evicted: here is its buffer, detached under the frame's latch, and
    /// the pages of it the frame held (`PAGES` for a whole frame).
    Evicted(*mut FrameBuf, usize),
    /// Held in part and unused since the hand last passed: it gave back
    /// this many pages, all but its skeleton (`skeleton_page`), and stays.
    Trimmed(usize),
    /// Not evictable now, but may be soon (latched, or used since the
    /// hand last passed): keep its entry.
    Spared,
    /// Not evictable until a transition that enqueues it again (dirty,
    /// pinned, not resident, retired): drop its entry.
    Dropped,
}

impl FrameCell {
    /// The resident image, if any. Readers must validate the latch after use.
    #[inline]
    pub(crate) fn buf(&self) -> Option<&FrameBuf> {
        let p = self.buf.load(Ordering::Acquire);
        // SAFETY: buffers are owned by the pool's `all` list and never freed
        // before the pool; see the pool's module invariants.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The buffer of a frame resident in part, if it is one. Readers may
    /// read only the pages `page_state` says are present, and must
    /// validate the latch after use.
    #[inline]
    pub(crate) fn part(&self) -> Option<&FrameBuf> {
        let p = self.part.load(Ordering::Acquire);
        // SAFETY: as in `buf`.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The slot of the stored whole image the buffer's page marks count
    /// changes from, if any (see `delta_base`).
    pub(crate) fn delta_base(&self) -> Option<u32> {
        u32::try_from(self.delta_base.load(Ordering::Acquire).checked_sub(1)?).ok()
    }

    /// The page state, once the frame was loaded in part.
    pub(crate) fn page_state(&self) -> Option<&PageState> {
        self.pages.get().map(|b| &**b)
    }

    pub(super) fn page_state_or_new(&self) -> &PageState {
        self.pages.get_or_init(|| Box::new(PageState::new()))
    }

    /// Whether the frame has a buffer, whole or in part.
    fn has_buffer(&self) -> bool {
        !self.buf.load(Ordering::Acquire).is_null() || !self.part.load(Ordering::Acquire).is_null()
    }

    /// Detach the part buffer (null if none) and the number of pages it
    /// held, waiting for a page being written into it. Caller holds the
    /// exclusive latch.
    pub(super) fn take_part(&self) -> (*mut FrameBuf, usize) {
        match self.page_state() {
            Some(state) => {
                let _table = state.table.lock();
                let pages = state.clear();
                (self.part.swap(std::ptr::null_mut(), Ordering::AcqRel), pages)
            }
            None => (std::ptr::null_mut(), 0),
        }
    }

    /// Note a use for the eviction clock: a plain load and store, and no
    /// store at all once at `USES_MAX`, so hot frames cost readers no shared
    /// writes (a lost update between racing readers only loses a count).
    #[inline]
    pub(crate) fn touch(&self) {
        let uses = self.uses.load(Ordering::Relaxed);
        if uses < USES_MAX {
            self.uses.store(uses + 1, Ordering::Relaxed);
        }
    }

    /// Forget the frame's uses: the clock's hand takes it at its next
    /// visit unless it is used again first.
    pub(super) fn forget_uses(&self) {
        self.uses.store(0, Ordering::Relaxed);
    }

    /// Recent uses (tests).
    #[cfg(test)]
    pub(crate) fn uses(&self) -> u8 {
        self.uses.load(Ordering::Relaxed)
    }

    /// Note that a walk left the frame by a link (a load and, the first
    /// time, a store: inner frames are on every path).
    #[inline]
    pub(crate) fn note_links_out(&self) {
        if !self.links_out.load(Ordering::Relaxed) {
            self.links_out.store(true, Ordering::Relaxed);
        }
    }

    /// A retired id's next frame starts without the hint.
    pub(super) fn forget_links_out(&self) {
        self.links_out.store(false, Ordering::Relaxed);
    }

    /// Whether a walk was seen to leave the frame by a link.
    #[inline]
    pub(crate) fn links_out(&self) -> bool {
        self.links_out.load(Ordering::Relaxed)
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty_epoch.load(Ordering::Acquire) != 0
    }

    pub(super) fn is_pinned(&self) -> bool {
        self.pins.load(Ordering::SeqCst) != 0
    }

    /// Keep the frame resident until the matching `Pool::unpin`. SeqCst,
    /// with the fence in `detach`: either the evictor sees this pin, or the
    /// pinner's next latch read sees the eviction (and loads again).
    pub(super) fn pin(&self) {
        self.pins.fetch_add(1, Ordering::SeqCst);
    }

    /// True when this was the last pin.
    pub(super) fn unpin(&self) -> bool {
        let before = self.pins.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "unpin without pin");
        before == 1
    }

    /// Could the clock evict this frame, its latch aside?
    pub(super) fn evictable(&self) -> bool {
        self.is_live() && self.has_buffer() && !self.is_dirty() && !self.is_pinned()
    }

    /// The clock hand's visit: one use fewer for a used frame, and the
    /// buffer of one unused, evictable and free to latch.
    pub(super) fn visit(&self) -> Fate {
        if !self.evictable() {
            return Fate::Dropped;
        }
        if self.latch.is_locked() {
            return Fate::Spared;
        }
        let uses = self.uses.load(Ordering::Relaxed);
        if uses > 0 {
            self.uses.store(uses - 1, Ordering::Relaxed);
            return Fate::Spared;
        }
        self.detach()
    }

    /// Take the buffer under the exclusive latch (bumping the version, so
    /// optimistic readers of the old buffer fail validation).
    fn detach(&self) -> Fate {
        if !self.latch.try_lock() {
            return Fate::Spared;
        }
        // Pairs with the SeqCst `pin`: a pin made before this point is seen.
        fence(Ordering::SeqCst);
        let fate = if !self.evictable() {
            Fate::Dropped
        } else if self.buf().is_some() {
            Fate::Evicted(self.buf.swap(std::ptr::null_mut(), Ordering::AcqRel), PAGES)
        } else {
            // A part buffer a lookup is writing a page into is spared.
            let state = self.page_state().expect("a part buffer has page state");
            match state.table.try_lock() {
                Some(_table) => {
                    // SAFETY: a part buffer stays valid until the pool drops.
                    let part = unsafe { &*self.part.load(Ordering::Acquire) };
                    match state.trim(|p| skeleton_page(part, p), |p| part.release_page(p)) {
                        0 => Fate::Evicted(self.part.swap(std::ptr::null_mut(), Ordering::AcqRel), state.clear()),
                        n => {
                            self.uses.store(SKELETON_CREDIT, Ordering::Relaxed);
                            Fate::Trimmed(n)
                        }
                    }
                }
                None => Fate::Spared,
            }
        };
        self.latch.unlock();
        fate
    }
}

/// Whether page `page` of a frame held in part (`b`, its part buffer,
/// whose header is always present) is one every lookup through the frame
/// reads: the first page (the header, and the top of the first tree), in
/// a tidy frame every page holding upper nodes (FORMAT.md, Tidy layout),
/// and the last page (the lowest slots' table entries: a spill numbers
/// the new frame's entries there, a tidy the runs' roots). A frame the
/// clock finds unused gives back its other pages first, and the rest only
/// once its `SKELETON_CREDIT` is spent: a frame that few lookups cross
/// keeps what each of them would read again.
pub(super) fn skeleton_page(b: &FrameBuf, page: usize) -> bool {
    page == 0 || page == PAGES - 1 || (b.in_preorder() && page * PAGE_BYTES < b.runs_from())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skeleton_outlives_its_trim_by_the_credit_then_goes() {
        let cell = FrameCell::default();
        cell.live.store(true, Ordering::Release);
        let part = Box::into_raw(Box::new(FrameBuf::plain()));
        cell.part.store(part, Ordering::Release);
        let state = cell.page_state_or_new();
        for page in [0, 5, 9, PAGES - 1] {
            state.mark(page);
        }
        assert!(matches!(cell.visit(), Fate::Trimmed(2)), "pages 5 and 9 go first");
        assert!(state.has(0) && state.has(PAGES - 1) && !state.has(5) && !state.has(9));
        for _ in 0..SKELETON_CREDIT {
            assert!(matches!(cell.visit(), Fate::Spared), "the skeleton's credit spares it");
        }
        match cell.visit() {
            Fate::Evicted(buf, pages) => assert!(buf == part && pages == 2, "the skeleton goes whole"),
            _ => panic!("an unused skeleton past its credit is evicted"),
        }
        // SAFETY: made above by Box::into_raw, detached from the cell.
        drop(unsafe { Box::from_raw(part) });
    }
}
