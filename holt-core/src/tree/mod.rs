//! The walker: lookup, insert, remove, scan, spill and merge over frames.
//!
//! Invariants:
//! - every mutation changes exactly one frame (the key's landing frame) plus
//!   frames it creates by spilling, and, after a spill, the frames whose
//!   links it redirects past the forwarding links it left (latched without
//!   blocking, see `merge::bypass_forwards`); only merge and that bypass
//!   edit a link's two ends, and each holds both frames;
//! - a key's landing frame depends only on that frame's contents while the
//!   frame is unchanged: insertions elsewhere split prefixes above it without
//!   changing where the key leads, and links are removed only by merge or
//!   a bypass, which latch the linked frame (a bypass leaves every key's
//!   landing frame as it was). So "version unchanged" means "the key
//!   still lands here";
//! - the walker never decides durability: it reports nothing to the journal
//!   and takes no lock it does not release before returning.

pub(crate) mod check;
pub(crate) mod descend;
pub(crate) mod hits;
pub(crate) mod insert;
pub(crate) mod merge;
pub(crate) mod remove;
pub(crate) mod scan;
mod scan_run;
pub(crate) mod spill;
pub(crate) mod tidy;

use crate::ids::{FrameId, Lsn};
use crate::layout::Slot;
use crate::store::pins::Pins;
use crate::store::pool::{FrameCell, Pool};

/// The frame holding the tree root, and the root's slot in it. The root is
/// an inner node with an empty prefix (or a link left by a spill of it).
pub(crate) const ROOT_FRAME: FrameId = FrameId(1);
pub(crate) const ROOT_SLOT: Slot = Slot(0);

/// What one operation holds in the pool: frames latched exclusively, which
/// walks read directly, without optimistic validation; and the pins that
/// keep the frames it reads resident once it has lost one to eviction
/// (`store::pins`). Both are released when it ends.
pub(crate) struct Owned<'p> {
    pool: &'p Pool,
    /// Sorted by id: a batch looks its frames up once per op and may hold
    /// hundreds, so lookups are binary searches (a frame is added once).
    frames: Vec<(FrameId, &'p FrameCell)>,
    /// Forwarding links this holder's spills left, for `merge::bypass_forwards`.
    pub(crate) forwards: Vec<Forward>,
    pub(crate) pins: Pins<'p>,
    /// A read met a frame another writer holds while this holder held
    /// frames (`descend::enter`): the caller must release and start over.
    contended: std::cell::Cell<bool>,
}

/// A forwarding link a spill left in slot `slot` of frame `frame`, in
/// place of an entry subtree it moved; `key` is a key stored under it.
pub(crate) struct Forward {
    pub frame: FrameId,
    pub slot: Slot,
    pub key: Vec<u8>,
}

impl<'p> Owned<'p> {
    pub(crate) fn new(pool: &'p Pool) -> Self {
        Owned { pool, frames: Vec::new(), forwards: Vec::new(), pins: Pins::new(pool), contended: Default::default() }
    }

    /// Mark that a read backed off from a frame another writer holds.
    pub(crate) fn set_contended(&self) {
        self.contended.set(true);
    }

    /// Whether a read since `new` backed off from a frame another writer
    /// holds: the error it returned means "release everything and retry".
    pub(crate) fn was_contended(&self) -> bool {
        self.contended.get()
    }

    pub(crate) fn pool(&self) -> &'p Pool {
        self.pool
    }

    fn position(&self, id: FrameId) -> std::result::Result<usize, usize> {
        self.frames.binary_search_by_key(&id, |&(f, _)| f)
    }

    pub(crate) fn get(&self, id: FrameId) -> Option<&'p FrameCell> {
        self.position(id).ok().map(|i| self.frames[i].1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(crate) fn contains(&self, id: FrameId) -> bool {
        self.position(id).is_ok()
    }

    /// Record a frame the caller has just latched exclusively, before it
    /// changes anything: a running checkpoint takes the frame's image
    /// first if it still needs it (`Pool::before_write`).
    pub(crate) fn push(&mut self, id: FrameId, cell: &'p FrameCell) {
        match self.position(id) {
            Ok(_) => panic!("frame {id:?} owned twice"),
            Err(i) => self.frames.insert(i, (id, cell)),
        }
        self.pool.before_write(id, cell);
    }

    /// Record on every owned frame that it holds the batch at `lsn`.
    pub(crate) fn stamp_lsn(&self, lsn: Lsn) {
        for (_, cell) in &self.frames {
            cell.buf().expect("an owned frame is resident").set_lsn(lsn);
        }
    }

    /// Mark every owned frame dirty and release it.
    pub(crate) fn release_dirty(&mut self) {
        for (id, cell) in self.frames.drain(..) {
            self.pool.mark_dirty(id, cell);
            cell.latch.unlock();
        }
    }

    /// Retire every owned frame (made for a change that was given up:
    /// nothing links to them) and release it.
    pub(crate) fn retire_all(&mut self) {
        for (id, cell) in self.frames.drain(..) {
            self.pool.retire(id, cell);
            cell.latch.unlock();
        }
    }

    /// Release every owned frame without marking it (nothing was changed).
    pub(crate) fn release_clean(&mut self) {
        for (_, cell) in self.frames.drain(..) {
            cell.latch.unlock();
        }
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        // A panic between latching and releasing must not leave frames
        // latched forever; treat them as modified.
        self.release_dirty();
    }
}

/// Outcome of one optimistic attempt.
pub(crate) enum Step<T> {
    Done(T),
    /// A concurrent writer changed something this attempt read; start over.
    Restart,
}

/// Upper bound on optimistic attempts before an operation reports the tree
/// as corrupted rather than spinning forever on bytes that never validate.
pub(crate) const RESTARTS_MAX: usize = 1_000_000;
