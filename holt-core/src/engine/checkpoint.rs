//! Checkpoints: capture every dirty frame at one consistent cut, then write
//! and publish them without holding up writers, then trim the WAL.
//!
//! Protocol (and what a crash at each step leaves):
//! 0. tidy (`Start::Tidy`): resident frames whose inserts scattered their
//!    nodes are laid out in key order (`maintenance::tidy_resident`), each
//!    under its own latch, like any writer; no content changes, nothing is
//!    logged, so a crash here loses nothing;
//! 1. cut, under the exclusive side of the commit gate (writers hold the
//!    shared side from latching to releasing their frames): the cut LSN is
//!    the journal's last LSN, every record up to it is in the frames, none
//!    past it. The cut only ends the pool's capture epoch (`store::capture`)
//!    and reads the LSN, key count and id limit: O(1), whatever is dirty.
//! 2. copy, outside the gate: every frame dirty at the cut is copied once,
//!    as it was at the cut, by the copier (read optimistically, claimed
//!    under a short hold at the version read, then clean and pinned until
//!    step 5) or by a writer about to change it (copy-on-write, under the
//!    writer's latch). A writer waits for at most one claim per frame it
//!    latches (one copy, where writers kept the copier from a clean read).
//! 3. sync the WAL through the cut (write-ahead rule: no frame image is
//!    published before the records that produced it are durable);
//! 4. write the images into shadow slots, drop the frames retired before
//!    the cut, and publish the manifest with the cut LSN. A crash before the
//!    publish leaves the previous checkpoint in force, and replay from its
//!    LSN rebuilds everything; after it, replay starts at the cut.
//! 5. unpin the copied frames, free the dropped ids, trim WAL segments
//!    wholly at or below the cut.
//!
//! On failure the frames the copier cleaned are marked dirty again (those
//! a writer copied are dirty already) and the retired ids wait for the
//! next cut, so nothing is lost from memory and the next checkpoint retries
//! them. A publication that finds the disk full releases the store's space
//! reserve and is retried once (it writes only shadow slots and a new
//! manifest, so repeating it is safe); a checkpoint that succeeds while the
//! reserve is spent tries to make it whole again, after the trim has given
//! back the WAL's space.

use std::time::Instant;

use super::durable::{encode_user, Durable};
use super::maintenance;
use super::Engine;
use crate::error::Result;
use crate::ids::{FrameId, Lsn};
use crate::layout::seal_image;
use crate::store::manifest::ManifestMeta;
use crate::store::pool::{Cut, FrameCell};
use crate::tree::ROOT_FRAME;

/// How a checkpoint begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// Tidy the dirty frames that want it first (step 0): asked for
    /// (`Tree::checkpoint`, a clean close), or due on the timer alone,
    /// when writers are few enough that the tidies' short latch holds and
    /// the longer checkpoint cost them little.
    Tidy,
    /// Capture at once: writers press on a bound (WAL, dirty frames, the
    /// cache) or wait for this checkpoint, which a tidy would lengthen by
    /// a quarter of a millisecond a frame.
    Now,
}

struct Capture<'p> {
    lsn: Lsn,
    /// Frames the copier cleaned, pinned until `release_captured`.
    held: Vec<(FrameId, &'p FrameCell)>,
    /// The image of every frame dirty at the cut, as it was then, by id.
    images: Vec<(FrameId, Vec<u8>)>,
    /// Ids retired before the cut (`Cut::retired`), freed once published.
    retired: Vec<FrameId>,
    /// The stored ones among `retired`: the frames this checkpoint drops.
    dropped: Vec<FrameId>,
    keys: u64,
    next_frame_id: u64,
}

/// What the cut reads under the gate besides the pool's `Cut`.
struct CutMeta {
    lsn: Lsn,
    keys: u64,
    next_frame_id: u64,
}

#[cfg(not(test))]
#[inline(always)]
fn after_cut() {}

#[cfg(test)]
pub(crate) use cut_hook::{after_cut, on_next_cut};

impl Engine {
    /// `Err(Poisoned)` if the engine was poisoned by the time the cut is
    /// taken: a batch that failed half applied held the gate until it had
    /// raised the poison, so no capture cut after it runs, and one cut
    /// before it holds only images from before it (its writer copied each
    /// pending frame before changing it).
    fn capture(&self, d: &Durable) -> Result<Capture<'_>> {
        let pool = &self.pool;
        // Image buffers are allocated and faulted in before the cut, so a
        // copy (a writer's included) faults nothing (~0.4 ms a buffer).
        pool.provision_images(pool.dirty_count());
        let (cut, meta) = match self.cut(d) {
            Ok(cut) => cut,
            Err(e) => {
                pool.drop_spare_images();
                return Err(e);
            }
        };
        after_cut();
        let held = pool.copy_pending(&cut);
        let dropped = cut.retired.iter().copied().filter(|&id| d.store.contains(id)).collect();
        let images = pool.take_images();
        debug_assert!(
            cut.retired.iter().all(|id| images.binary_search_by_key(id, |&(i, _)| i).is_err()),
            "a frame retired before the cut was not live at it"
        );
        Ok(Capture {
            lsn: meta.lsn,
            held,
            images,
            retired: cut.retired,
            dropped,
            keys: meta.keys,
            next_frame_id: meta.next_frame_id,
        })
    }

    /// Step 1: no frame is copied here, so writers wait only for a few
    /// loads and two list swaps.
    fn cut(&self, d: &Durable) -> Result<(Cut, CutMeta)> {
        let gate = self.gate.write();
        let taken = Instant::now();
        self.check_poison()?;
        let meta = CutMeta { lsn: d.journal.last_lsn(), keys: self.key_count(), next_frame_id: self.pool.id_limit() };
        let cut = self.pool.cut();
        drop(gate);
        self.checkpoint_time.cut_done(taken);
        Ok((cut, meta))
    }

    fn publish(&self, d: &Durable, cap: &mut Capture<'_>) -> Result<()> {
        d.journal.sync()?;
        let mut txn = d.store.begin_checkpoint()?;
        for (id, img) in &mut cap.images {
            seal_image(img);
            txn.write_frame(*id, img)?;
        }
        for &id in &cap.dropped {
            txn.drop_frame(id);
        }
        txn.commit(ManifestMeta {
            checkpoint_lsn: cap.lsn,
            next_frame_id: cap.next_frame_id,
            root: ROOT_FRAME,
            user: encode_user(cap.keys),
        })
    }

    /// Write dirty frames and trim the WAL (no-op in memory mode).
    pub(crate) fn checkpoint_now(&self, start: Start) -> Result<()> {
        let Some(d) = &self.durable else { return Ok(()) };
        let _serial = d.checkpoint_serial.lock();
        self.checkpoint_locked(d, start)
    }

    /// `checkpoint_now` for a caller holding `checkpoint_serial`.
    pub(crate) fn checkpoint_locked(&self, d: &Durable, start: Start) -> Result<()> {
        let timer = self.checkpoint_time.start(&self.checkpoints);
        let done = self.checkpoint_and_trim(d, start);
        timer.stop(&self.checkpoints);
        if done.is_ok() && d.reserve.is_low() {
            d.reserve.establish();
        }
        done
    }

    fn checkpoint_and_trim(&self, d: &Durable, start: Start) -> Result<()> {
        self.check_poison()?;
        if start == Start::Tidy {
            maintenance::tidy_resident(&self.pool);
        }
        let mut cap = self.capture(d)?;
        // Nothing written since the published checkpoint (a clean close of
        // an idle tree): it already is this checkpoint. Its retired ids
        // were never stored.
        let unchanged = cap.images.is_empty() && cap.dropped.is_empty() && d.store.checkpoint_lsn() == Some(cap.lsn);
        if unchanged {
            self.pool.settle_retired(cap.retired, true);
            return d.journal.trim(cap.lsn);
        }
        let result = d.reserve.retry("checkpoint", || self.publish(d, &mut cap));
        self.pool.release_captured(&cap.held, result.is_ok());
        self.pool.settle_retired(std::mem::take(&mut cap.retired), result.is_ok());
        if let Err(e) = result {
            self.poison_if_durability_unknown(&e);
            return Err(e);
        }
        self.checkpoints.add(1);
        d.journal.trim(cap.lsn)
    }
}

/// Tests run code between the cut and the copy (`capture_tests`).
#[cfg(test)]
mod cut_hook {
    use std::cell::RefCell;

    thread_local! {
        /// Run by the next checkpoint this thread cuts; one shot.
        static HOOK: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// Run `f` on this thread right after its next checkpoint's cut.
    pub(crate) fn on_next_cut(f: impl FnOnce() + 'static) {
        HOOK.set(Some(Box::new(f)));
    }

    pub(crate) fn after_cut() {
        if let Some(f) = HOOK.take() {
            f();
        }
    }
}
