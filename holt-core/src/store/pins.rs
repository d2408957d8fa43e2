//! Pins: how an operation keeps the frames it reads resident, so that it
//! makes progress however small the pool is.
//!
//! Optimistic readers take no pin: eviction may take a frame a reader is
//! in the middle of, and the version bump makes the reader restart. That
//! is safe, but not live: an operation whose frames do not all fit in the
//! pool's clean part (a scan chunk over more frames than the pool keeps
//! clean, a pool full of dirty frames after a replay) evicts its own frames
//! with its own loads and restarts forever. So an operation whose attempt
//! restarted after it had loaded a frame runs its next attempts pinning
//! every frame it enters (`Pins`), until it ends. Pinned frames are never
//! evicted; with nothing else evictable the pool grows past its budget (by
//! at most the frames the pinned operations hold) and shrinks back when they
//! are released. Such an attempt restarts only when a writer changed a
//! frame it read, which is progress for the tree.
//!
//! Pins are for liveness only: safety still comes from the versions. A pin
//! taken while an evictor detaches the frame can be missed by it; then the
//! pinner's version check sees the eviction, and its next load stays.

use std::cell::{Cell, RefCell};

use super::cell::FrameCell;
use super::pool::Pool;
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::FrameBuf;

/// Loads `Held::new` tries; a pinned frame is evicted at most once (by an
/// evictor that looked before the pin), so two always suffice.
const HOLD_LOADS_MAX: usize = 4;

/// The pins of one operation, released when it ends (drop).
pub(crate) struct Pins<'p> {
    pool: &'p Pool,
    /// Sorted by id, each frame once. A vector, not a map: almost every
    /// operation pins nothing, and an empty vector costs nothing to make or
    /// drop, where an empty map's drop walks an iterator (~4% of a point
    /// lookup's instructions).
    held: RefCell<Vec<(FrameId, &'p FrameCell)>>,
    /// Pin every frame entered from now on.
    on: Cell<bool>,
    /// A frame was loaded since the last restart.
    missed: Cell<bool>,
}

impl<'p> Pins<'p> {
    pub(crate) fn new(pool: &'p Pool) -> Self {
        Pins { pool, held: RefCell::new(Vec::new()), on: Cell::new(false), missed: Cell::new(false) }
    }

    /// Before reading frame `id`: pin it if this operation pins.
    #[inline]
    pub(crate) fn enter(&self, id: FrameId, cell: &'p FrameCell) {
        if self.on.get() {
            let mut held = self.held.borrow_mut();
            if let Err(at) = held.binary_search_by_key(&id, |&(held_id, _)| held_id) {
                cell.pin();
                held.insert(at, (id, cell));
            }
        }
    }

    /// The operation is about to load a frame.
    pub(crate) fn note_miss(&self) {
        self.missed.set(true);
    }

    /// An attempt restarted: if it loaded a frame, pin from now on.
    pub(crate) fn after_restart(&self) {
        if self.missed.replace(false) && !self.on.replace(true) {
            self.pool.counters.pinned_retries.add(1);
        }
    }

    /// Unpin everything (the mode stays).
    pub(crate) fn release(&self) {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        if held.is_empty() {
            return;
        }
        for (id, cell) in held {
            self.pool.unpin(id, cell);
        }
        // The pool may have grown past its budget for these pins.
        self.pool.shrink_to_budget();
    }
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// One frame pinned resident for as long as this lives: for a caller that
/// reads a frame outside the optimistic protocol (the invariant check).
pub(crate) struct Held<'p> {
    pool: &'p Pool,
    id: FrameId,
    cell: &'p FrameCell,
    buf: &'p FrameBuf,
}

impl<'p> Held<'p> {
    pub(crate) fn new(pool: &'p Pool, id: FrameId) -> Result<Self> {
        let cell = pool.cell(id).filter(|c| c.is_live()).ok_or_else(|| super::pool::dangling(id))?;
        cell.pin();
        for _ in 0..HOLD_LOADS_MAX {
            if let Some(buf) = cell.buf() {
                return Ok(Held { pool, id, cell, buf });
            }
            if let Err(e) = pool.load(id, cell) {
                pool.unpin(id, cell);
                return Err(e);
            }
        }
        pool.unpin(id, cell);
        Err(Error::corrupted("frames", id.0, format!("frame {} was evicted while pinned", id.0)))
    }

    pub(crate) fn buf(&self) -> &'p FrameBuf {
        self.buf
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.pool.unpin(self.id, self.cell);
        self.pool.shrink_to_budget();
    }
}
