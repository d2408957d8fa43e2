//! Frames resident a page at a time: what a point lookup may read of a
//! frame it found only partly in memory.
//!
//! Once the pool is full, a point lookup that misses does not read the
//! whole frame (hundreds of KiB for a few nodes): it reads the frame's page
//! checksums and first page (`FrameFile::read_head`) into a buffer kept in
//! the cell's `part`, and then each page its walk needs, when it needs it
//! (`Pool::fault_pages`). A writer's walk reads the frames it passes
//! through the same way, and makes whole the one it lands in once it
//! holds it. Everything else (writers' changes, checkpoints, maintenance)
//! only ever sees whole frames: its load of a frame that is partly
//! resident reads the whole image into a whole buffer.
//!
//! Invariants:
//! - A partly resident frame is clean: writers take a whole frame, and the
//!   load that completes one clears `part` under the exclusive latch.
//! - A page's bytes are in the buffer, checked against the page checksum
//!   the manifest vouches for, before its bit in `present` is set (Release;
//!   readers test it with Acquire before reading the page).
//! - `table` is locked to write a page into the buffer, and to attach or
//!   detach the buffer (`part`); a page is written only after its writer,
//!   holding `table`, validated the latch version it read `part` at. So no
//!   page is ever written into a buffer that another frame took over.
//! - Lock order: the frame's latch, then `table`; a thread holding `table`
//!   never waits for the latch.
//! - What `table` keeps of the stored image (page checksums, header)
//!   outlives the part buffer, so a frame read back in part after its
//!   eviction needs no head read: its buffer gets the kept header, and
//!   page 0 is read like any other page when a walk needs it. The kept
//!   copy is the stored image's while `current`: a head read sets it, and
//!   the frame turning dirty clears it (`Pool::mark_dirty`, under the
//!   exclusive latch; only a dirty frame is ever written again, and only
//!   a clean frame not in memory is loaded in part).
//! - A buffer holding the header but not page 0 (`headed`) counts page 0
//!   in the budget: its memory is in use.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::frame_file::{PageCrcs, PAGES, PAGE_BYTES};
use crate::layout::{FRAME_BYTES, HEADER_BYTES};

const MASK_WORDS: usize = PAGES / 64;

/// The page state of one frame, kept for its cell's life once the frame
/// was first loaded in part.
pub(crate) struct PageState {
    present: [AtomicU64; MASK_WORDS],
    /// The part buffer holds the header (bytes 0..64) but page 0 is not
    /// present (see the module invariants).
    headed: AtomicBool,
    /// What is kept of the stored image `part` holds pages of.
    pub(super) table: Mutex<Kept>,
}

/// The stored image's page checksums and header, kept across loads.
pub(super) struct Kept {
    pub(super) crcs: PageCrcs,
    pub(super) header: [u8; HEADER_BYTES],
    /// `crcs` and `header` are those of the image the store holds now.
    pub(super) current: bool,
}

impl PageState {
    pub(super) fn new() -> PageState {
        let kept = Kept { crcs: [0; PAGES], header: [0; HEADER_BYTES], current: false };
        PageState { present: Default::default(), headed: AtomicBool::new(false), table: Mutex::new(kept) }
    }

    /// Pages covering `len` bytes at `off`, or `None` past the frame.
    pub(crate) fn span(off: usize, len: usize) -> Option<std::ops::Range<usize>> {
        let end = off.checked_add(len.max(1)).filter(|&e| e <= FRAME_BYTES)?;
        Some(off / PAGE_BYTES..end.div_ceil(PAGE_BYTES))
    }

    #[inline]
    pub(crate) fn has(&self, page: usize) -> bool {
        self.present[page / 64].load(Ordering::Acquire) >> (page % 64) & 1 == 1
    }

    /// Whether every page in `pages` is present.
    #[inline]
    pub(crate) fn has_all(&self, pages: std::ops::Range<usize>) -> bool {
        pages.into_iter().all(|p| self.has(p))
    }

    /// Record page `page` as holding the frame's bytes. Caller holds `table`.
    pub(super) fn mark(&self, page: usize) {
        self.present[page / 64].fetch_or(1 << (page % 64), Ordering::Release);
    }

    /// Forget every page; returns how many the budget counted (present
    /// ones, and page 0 of a `headed` buffer). Caller holds `table` and
    /// the exclusive latch.
    pub(super) fn clear(&self) -> usize {
        let headed = usize::from(self.headed.swap(false, Ordering::AcqRel));
        headed + self.present.iter().map(|w| w.swap(0, Ordering::AcqRel).count_ones() as usize).sum::<usize>()
    }

    /// Forget the present pages `keep` does not name, handing each to
    /// `dropped`; returns how many. Page 0 is always kept (a `headed`
    /// buffer counts it). Caller holds `table` and the exclusive latch.
    pub(super) fn trim(&self, keep: impl Fn(usize) -> bool, mut dropped: impl FnMut(usize)) -> usize {
        let mut n = 0;
        for (w, word) in self.present.iter().enumerate() {
            let mut gone = 0u64;
            let bits = word.load(Ordering::Acquire);
            for b in (0..64).filter(|b| bits >> b & 1 == 1) {
                let page = w * 64 + b;
                if page != 0 && !keep(page) {
                    gone |= 1 << b;
                    dropped(page);
                    n += 1;
                }
            }
            word.fetch_and(!gone, Ordering::AcqRel);
        }
        n
    }

    /// The part buffer now holds the header without page 0. Caller holds
    /// `table` and the exclusive latch.
    pub(super) fn set_headed(&self) {
        self.headed.store(true, Ordering::Release);
    }

    /// Pages of `run`, now read, that the budget did not count yet: a
    /// `headed` buffer's page 0 was counted. Caller holds `table`.
    pub(super) fn newly_held(&self, run: &std::ops::Range<usize>) -> usize {
        run.len() - usize::from(run.contains(&0) && self.headed.swap(false, Ordering::AcqRel))
    }

    /// The frame's stored image is about to change: what is kept of it no
    /// longer describes it.
    pub(super) fn forget_image(&self) {
        self.table.lock().current = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_covers_every_page_it_touches_and_nothing_past_the_frame() {
        assert_eq!(PageState::span(0, 16), Some(0..1));
        assert_eq!(PageState::span(4090, 16), Some(0..2));
        assert_eq!(PageState::span(4096, 4096), Some(1..2));
        assert_eq!(PageState::span(FRAME_BYTES - 4, 4), Some(PAGES - 1..PAGES));
        assert_eq!(PageState::span(FRAME_BYTES - 4, 8), None);
        assert_eq!(PageState::span(usize::MAX, 2), None);
    }

    #[test]
    fn a_trim_forgets_the_pages_not_kept_but_never_page_0() {
        let s = PageState::new();
        for p in [0, 3, 64, 70, PAGES - 1] {
            s.mark(p);
        }
        let mut dropped = Vec::new();
        assert_eq!(s.trim(|p| p == PAGES - 1 || p == 64, |p| dropped.push(p)), 2);
        assert_eq!(dropped, [3, 70]);
        assert!(s.has(0) && s.has(64) && s.has(PAGES - 1) && !s.has(3) && !s.has(70));
        assert_eq!(s.trim(|_| false, |_| {}), 2, "page 0 stays");
        assert_eq!(s.clear(), 1);
    }

    #[test]
    fn marks_are_per_page_and_cleared_together() {
        let s = PageState::new();
        s.mark(0);
        s.mark(70);
        assert!(s.has(0) && s.has(70) && !s.has(69));
        assert!(s.has_all(70..71) && !s.has_all(69..71));
        assert_eq!(s.clear(), 2);
        assert!(!s.has(0) && !s.has(70));
    }
}
