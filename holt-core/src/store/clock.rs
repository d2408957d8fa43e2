//! The eviction clock: a ring of frame ids the hand sweeps, sparing each
//! frame once per recent use (GCLOCK: CLOCK with a small use count instead
//! of one reference bit, see `cell::USES_MAX`).
//!
//! Only frames that may become evictable are in the ring. Every transition
//! that makes a frame evictable (loaded, pins dropping to zero; a frame
//! gets clean only while a checkpoint pins it) calls `enqueue`, and the
//! transitions out of evictability (dirtied, pinned, retired) cost nothing
//! there: the hand drops such an entry when it meets it. So:
//! - every evictable frame has exactly one entry (`FrameCell::queued` says
//!   which have one; it and the ring change only under the ring's mutex,
//!   and each enqueue looks at the frame after the transition it follows);
//! - eviction is O(1) amortised per miss: each entry the hand drops was
//!   paid for by its enqueue, each use it takes off by the use that
//!   counted it; dirty frames cost nothing, however many there are;
//! - a sweep is bounded: it visits each entry it started with at most
//!   `USES_MAX + 1` times, then gives up (the pool then grows past its
//!   budget).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::cell::{Fate, FrameCell, USES_MAX};
use super::table::CellTable;
use crate::ids::FrameId;
use crate::layout::FrameBuf;

#[derive(Default)]
pub(super) struct Clock {
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    ids: VecDeque<FrameId>,
    /// Entries the hand has looked at, ever (the cost of eviction).
    visits: u64,
}

impl Clock {
    /// Give frame `id` an entry if it is evictable and has none. Call after
    /// any transition that may have made it evictable.
    pub(super) fn enqueue(&self, id: FrameId, cell: &FrameCell) {
        let mut ring = self.ring.lock();
        if !cell.queued.load(Ordering::Relaxed) && cell.evictable() {
            cell.queued.store(true, Ordering::Relaxed);
            ring.ids.push_back(id);
        }
    }

    /// Sweep for one frame to evict and detach its buffer (and the pages
    /// the frame held of it), or to trim (a null buffer, and the pages it
    /// gave back); `None` if no frame was evictable within the sweep's
    /// bound.
    pub(super) fn evict(&self, cells: &CellTable<FrameCell>) -> Option<(*mut FrameBuf, usize)> {
        let ring = &mut *self.ring.lock();
        let visits_max = (USES_MAX as usize + 1) * ring.ids.len() + 1;
        for _ in 0..visits_max {
            let id = ring.ids.pop_front()?;
            ring.visits += 1;
            let Some(cell) = cells.get(id.0 as usize) else { continue };
            match cell.visit() {
                Fate::Evicted(buf, pages) => {
                    cell.queued.store(false, Ordering::Relaxed);
                    return Some((buf, pages));
                }
                Fate::Trimmed(pages) => {
                    ring.ids.push_back(id);
                    return Some((std::ptr::null_mut(), pages));
                }
                Fate::Spared => ring.ids.push_back(id),
                Fate::Dropped => cell.queued.store(false, Ordering::Relaxed),
            }
        }
        None
    }

    /// Entries in the ring (stale ones included), and the hand's visits.
    #[cfg(test)]
    pub(super) fn census(&self) -> (usize, u64) {
        let ring = self.ring.lock();
        (ring.ids.len(), ring.visits)
    }
}
