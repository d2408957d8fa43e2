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
//!    its image is written) or by a writer about to change it
//!    (copy-on-write, under the writer's latch). A writer waits for at most one claim per frame it
//!    latches (one copy, where writers kept the copier from a clean read).
//!    Each image is laid out in key order if its frame wants a tidy, or,
//!    while the tree is larger than the cache (its frames are read back
//!    by pages, where the layout decides how many a lookup reads: then in
//!    `tidy::Shape::Pages`), if its frame was never laid out
//!    (`tidy::tidy_image`: the two hold the same content under the
//!    same entry slots, and once the image is written a frame the copier
//!    claimed takes its layout unless a writer latched it since, staying
//!    clean: `Pool::adopt_layout`), sealed, and
//!    written into a shadow slot, which no manifest names yet: as soon as
//!    it is taken (`Start::Tidy`: a few
//!    buffers in use at a time), or once the cache's room for them is full
//!    (`Start::Now`: writers meet pending frames mostly while copies run,
//!    and the images' memory stays within the cache's budget). From its
//!    write on the store reads the frame from that image
//!    (`frame_store::shadow`), so the copier unpins the frame: it may
//!    leave memory before the commit;
//! 3. sync the WAL through the cut (write-ahead rule: no frame image is
//!    published before the records that produced it are durable);
//! 4. drop the frames retired before the cut and publish the manifest with
//!    the cut LSN. A crash before the publish leaves the previous
//!    checkpoint in force, and replay from its LSN rebuilds everything;
//!    after it, replay starts at the cut.
//! 5. unpin the frames still pinned (none unless a write failed or
//!    stopped), free the dropped ids, trim WAL segments wholly at or
//!    below the cut.
//!
//! A checkpoint nobody waits for (the checkpointer's, or one a bound made a
//! writer run) gives way to one a caller needs (`Owner`): once a caller
//! waits for the checkpoint lock it writes no more images and ends as a
//! failed one does, publishing nothing; the caller's cut then covers
//! every frame it would have written.
//!
//! On failure the frames the copier claimed and did not write are marked
//! dirty again (those a writer copied are dirty already), the images
//! written stay staged for the next commit (`frame_store::shadow`: a
//! frame let go may have left memory), and the retired ids wait for the
//! next cut, so nothing is lost and the next checkpoint publishes or
//! retries them. A checkpoint that finds the disk full releases the
//! store's space reserve and runs once more from a new cut (the failed one
//! put its frames back or staged their images); a checkpoint that succeeds
//! while the reserve is spent tries to make it whole again, after the trim
//! has given back the WAL's space.

use std::time::Instant;

use super::durable::{encode_user, Durable};
use super::maintenance;
use super::Engine;
use crate::error::Result;
use crate::ids::{FrameId, Lsn};
use crate::store::frame_store::CheckpointTxn;
use crate::store::manifest::ManifestMeta;
use crate::store::pool::Over;
use crate::store::pool::{Copied, Cut, Pool, Sunk, SPARES_KEPT};
use crate::tree::tidy::{tidy_image, Shape};
use crate::tree::ROOT_FRAME;

/// How a checkpoint begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// Tidy the resident frames that want it first (step 0), and write
    /// each image as soon as it is taken: asked for (`Tree::checkpoint`, a
    /// clean close), or due on the timer alone, which waits for a pause in
    /// the writes (`background::TIMER_DEFER_POLLS_MAX`) so that the tidies'
    /// short latch holds, the longer checkpoint and the longer wait of
    /// pending frames cost writers little.
    Tidy,
    /// Capture at once, as many frames copied before any is written as
    /// the cache has room for (`images_held`), a buffer ready for each:
    /// writers press on a bound (WAL, dirty frames, the cache) or wait for
    /// this checkpoint.
    Now,
}

/// Who needs a checkpoint, which decides whether it gives way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A caller waits for it (asked for, a clean close, a snapshot's):
    /// it runs to its end.
    Caller,
    /// The checkpointer's, or a writer's over a bound: it stops before its
    /// next image while a caller waits for the checkpoint lock
    /// (`Durable::asked_waits`).
    Background,
}

impl Owner {
    /// Whether a checkpoint of this owner stops now.
    fn gives_way(self, d: &Durable) -> bool {
        self == Owner::Background && d.asked_waits()
    }
}

/// How one checkpoint of one cut ended, short of failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Published with the cut's LSN.
    Published(Lsn),
    /// Nothing changed since the published checkpoint, which then already
    /// is this one (nothing written).
    Unchanged(Lsn),
    /// Gave way to a checkpoint a caller waits for: nothing published,
    /// everything put back as after a failure.
    Stopped,
}

impl Start {
    /// Images the copier may hold unwritten (`Pool::copy_pending`). A
    /// checkpoint a bound forces holds them in the cache's unused room
    /// only (`Pool::room`: the memory set aside for the miss filter is not
    /// room; and the spares kept anyway), so its memory stays within the
    /// cache's budget however many frames are dirty: a tree larger than
    /// memory under a memory limit was killed when every dirty frame had
    /// an image, and still with a quarter of the cache's worth beyond it
    /// (benches/RESULTS.md runs 22 and 50). The price, where the tree
    /// outgrows the cache: the copies take longer (writes in between), and
    /// writers copy more pending frames themselves.
    fn images_held(self, pool: &Pool) -> usize {
        match self {
            Start::Tidy => 0,
            Start::Now => pool.room().max(SPARES_KEPT),
        }
    }
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

/// Lay `img`, a copy of a frame, out as the store keeps frames for
/// `shape` (`tidy_image`, counted), then hand it to `store` (a
/// checkpoint's write or a write-out's staging): `Sunk::LaidOut` when
/// the frame should adopt the layout it was stored in.
/// `base`: what the image may be written over as a delta (`ImageSink`);
/// an image laid out anew is written whole.
pub(super) fn lay_out_and_store(pool: &Pool, shape: Shape, img: &mut [u8], base: Option<Over>, store: impl FnOnce(&mut [u8], Option<Over>) -> Result<()>) -> Result<Sunk> {
    let laid_out = tidy_image(img, shape);
    if laid_out {
        pool.counters.tidies.add(1);
    }
    store(img, base.filter(|_| !laid_out)).map(|()| if laid_out { Sunk::LaidOut } else { Sunk::Written })
}

impl Engine {
    /// One checkpoint of one cut: the frames' images are written to
    /// shadow slots as the copier takes them, then the WAL is synced
    /// through the cut and the manifest published (`Ended`).
    /// On `Err`, and when it stops, everything is put back for the next
    /// cut: the frames the copier claimed and did not write are dirty
    /// again (those a writer copied are dirty already), the retired ids
    /// wait, and the images written are staged for the next commit.
    ///
    /// `Err(Poisoned)` if the engine was poisoned by the time the cut is
    /// taken: a batch that failed half applied held the gate until it had
    /// raised the poison, so no capture cut after it runs, and one cut
    /// before it holds only images from before it (its writer copied each
    /// pending frame before changing it).
    fn checkpoint_once(&self, d: &Durable, start: Start, owner: Owner) -> Result<Ended> {
        let pool = &self.pool;
        // The transaction first: once the cut is taken, every pending frame
        // must be copied, whatever fails.
        let mut txn = d.store.begin_checkpoint()?;
        // Image buffers are allocated and faulted in before the cut, so a
        // copy (a writer's included) faults nothing (~0.4 ms a buffer):
        // one per image the copier may hold, and the writers' share (they
        // may copy many frames before the copier gets there); a quiet
        // checkpoint's copier reuses a few as it writes.
        let hold = start.images_held(pool);
        pool.provision_images(pool.dirty_count().min(hold) + SPARES_KEPT);
        let (cut, meta) = match self.cut(d) {
            Ok(cut) => cut,
            Err(e) => {
                pool.trim_spare_images();
                return Err(e);
            }
        };
        after_cut();
        let mut written = 0usize;
        let shape = Shape::for_pool(pool);
        let (held, copied) = pool.copy_pending(&cut, hold, true, &mut |id, img, base| {
            debug_assert!(!cut.retired.contains(&id), "a frame retired before the cut was not live at it");
            if owner.gives_way(d) {
                return Ok(Sunk::Stopped);
            }
            written += 1;
            lay_out_and_store(pool, shape, img, base, |img, base| txn.seal_and_write(id, img, base))
        });
        pool.trim_spare_images();
        let dropped: Vec<FrameId> = cut.retired.iter().copied().filter(|&id| d.store.contains(id)).collect();
        // Nothing written or staged since the published checkpoint (a clean
        // close of an idle tree): it already is this checkpoint. Its retired ids
        // were never stored.
        let unchanged = written == 0 && dropped.is_empty() && d.store.staged_count() == 0 && d.store.checkpoint_lsn() == Some(meta.lsn);
        let ended = copied.and_then(|copied| match copied {
            Copied::Stopped => Ok(Ended::Stopped),
            Copied::All if unchanged => Ok(Ended::Unchanged(meta.lsn)),
            Copied::All => publish(d, txn, &dropped, &meta).map(|()| Ended::Published(meta.lsn)),
        });
        let published = matches!(ended, Ok(Ended::Published(_) | Ended::Unchanged(_)));
        if matches!(ended, Ok(Ended::Stopped)) {
            pool.counters.checkpoints_stopped.add(1);
        }
        pool.release_captured(&held, published);
        pool.settle_retired(cut.retired, published);
        ended
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

    /// Write dirty frames and trim the WAL (no-op in memory mode), for
    /// the checkpointer: gives way to a caller's (`Owner::Background`).
    pub(crate) fn checkpoint_now(&self, start: Start) -> Result<()> {
        let Some(d) = &self.durable else { return Ok(()) };
        // Not even the lock: taken, it would only keep the caller waiting
        // for a checkpoint that stops at once.
        if d.asked_waits() {
            return Ok(());
        }
        let _serial = d.checkpoint_serial.lock();
        self.checkpoint_locked(d, start, Owner::Background)
    }

    /// `checkpoint_now` for a caller that needs it done: a checkpoint under
    /// way that nobody waits for stops for it.
    pub(crate) fn checkpoint_asked(&self, start: Start) -> Result<()> {
        let Some(d) = &self.durable else { return Ok(()) };
        let _serial = d.serial_for_asked();
        self.checkpoint_locked(d, start, Owner::Caller)
    }

    /// `checkpoint_now` for a caller holding `checkpoint_serial`. A
    /// background checkpoint that stopped returns `Ok`: the caller it gave
    /// way to is about to checkpoint.
    pub(crate) fn checkpoint_locked(&self, d: &Durable, start: Start, owner: Owner) -> Result<()> {
        let timer = self.checkpoint_time.start(&self.checkpoints);
        let done = self.checkpoint_and_trim(d, start, owner);
        timer.stop(&self.checkpoints);
        if done.is_ok() && d.reserve.is_low() {
            d.reserve.establish();
        }
        done
    }

    fn checkpoint_and_trim(&self, d: &Durable, start: Start, owner: Owner) -> Result<()> {
        self.check_poison()?;
        // Not even a cut: its copies would only be put back.
        if owner.gives_way(d) {
            self.pool.counters.checkpoints_stopped.add(1);
            return Ok(());
        }
        if start == Start::Tidy {
            maintenance::tidy_resident(&self.pool);
        }
        // A full disk releases the store's space reserve and the whole
        // checkpoint runs again from a new cut (the failed one put every
        // frame back), once.
        let ended = d.reserve.retry("checkpoint", || self.checkpoint_once(d, start, owner));
        // A checkpoint a caller waits for is where writes pause (a clean
        // close, a snapshot, an asked one): the slots kept for the next
        // images give their space back.
        if owner == Owner::Caller && matches!(ended, Ok(Ended::Published(_) | Ended::Unchanged(_))) {
            d.store.give_back_kept();
        }
        match ended {
            Ok(Ended::Published(lsn)) => {
                self.checkpoints.add(1);
                d.journal.trim(lsn)
            }
            Ok(Ended::Unchanged(lsn)) => d.journal.trim(lsn),
            Ok(Ended::Stopped) => Ok(()),
            Err(e) => {
                self.poison_if_durability_unknown(&e);
                Err(e)
            }
        }
    }
}

/// Steps 3 and 4, once every image is in its shadow slot: sync the WAL
/// through the cut (write-ahead: no image is published before the records
/// that made it are durable), then drop `dropped` and publish the manifest.
fn publish(d: &Durable, mut txn: CheckpointTxn<'_>, dropped: &[FrameId], meta: &CutMeta) -> Result<()> {
    d.journal.sync()?;
    for &id in dropped {
        txn.drop_frame(id);
    }
    txn.commit(ManifestMeta {
        checkpoint_lsn: meta.lsn,
        next_frame_id: meta.next_frame_id,
        root: ROOT_FRAME,
        user: encode_user(meta.keys),
    })
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
