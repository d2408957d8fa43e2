//! Checkpoints: capture every dirty frame at one consistent cut, then write
//! and publish them without holding up writers, then trim the WAL.
//!
//! Protocol (and what a crash at each step leaves):
//! 1. capture, under the exclusive side of the commit gate (writers hold the
//!    shared side from latching to releasing their frames): the cut LSN is
//!    the journal's last LSN, and every record up to it has been applied to
//!    the frames copied here. Captured frames are pinned (not evictable)
//!    and marked clean; later writes dirty them again.
//! 2. sync the WAL through the cut (write-ahead rule: no frame image is
//!    published before the records that produced it are durable);
//! 3. write the images into shadow slots and publish the manifest with the
//!    cut LSN. A crash before the publish leaves the previous checkpoint in
//!    force, and replay from its LSN rebuilds everything; after it, replay
//!    starts at the cut.
//! 4. trim WAL segments wholly at or below the cut.
//!
//! On failure the captured frames are marked dirty again, so nothing is lost
//! from memory and the next checkpoint retries them. A publication that
//! finds the disk full releases the store's space reserve and is retried
//! once (it writes only shadow slots and a new manifest, so repeating it is
//! safe); a checkpoint that succeeds while the reserve is spent tries to
//! make it whole again, after the trim has given back the WAL's space.

use super::durable::{encode_user, Durable};
use super::Engine;
use crate::error::Result;
use crate::ids::{FrameId, Lsn};
use crate::layout::{seal_image, FRAME_BYTES};
use crate::store::manifest::ManifestMeta;
use crate::store::pool::FrameCell;
use crate::tree::ROOT_FRAME;

struct Capture<'p> {
    lsn: Lsn,
    /// The captured frames, pinned and marked clean until `release_captured`.
    frames: Vec<(FrameId, &'p FrameCell)>,
    images: Vec<Vec<u8>>,
    dropped: Vec<FrameId>,
    keys: u64,
    next_frame_id: u64,
}

/// A zeroed frame image buffer with every page already touched (a store the
/// optimizer cannot drop), so its page faults happen now.
fn faulted_image() -> Vec<u8> {
    let mut img = vec![0u8; FRAME_BYTES];
    for page in img.chunks_mut(4096) {
        std::hint::black_box(page)[0] = 0;
    }
    img
}

impl Engine {
    /// `Err(Poisoned)` if the engine was poisoned by the time the cut is
    /// taken: a batch that failed half applied held the gate until it had
    /// raised the poison, so no capture can hold a frame of it.
    fn capture(&self, d: &Durable) -> Result<Capture<'_>> {
        let pool = &self.pool;
        // Image buffers are allocated and faulted in before the cut: done
        // under the gate, the kernel's page faults and zeroing stalled every
        // writer for ~0.4 ms per dirty frame (100-140 ms at 1M keys).
        let mut spare: Vec<Vec<u8>> = (0..pool.dirty_count()).map(|_| faulted_image()).collect();
        let _cut = self.gate.write();
        self.check_poison()?;
        let frames = pool.capture_dirty();
        let mut images = Vec::with_capacity(frames.len());
        for (_, cell) in &frames {
            let buf = cell.buf().expect("a dirty frame is never evicted, and a captured one is pinned");
            let mut img = spare.pop().unwrap_or_else(|| vec![0; FRAME_BYTES]);
            buf.image_into(&mut img);
            images.push(img);
        }
        let dropped = d.store.frame_ids().into_iter().filter(|&id| !pool.is_live(id)).collect();
        Ok(Capture {
            lsn: d.journal.last_lsn(),
            frames,
            images,
            dropped,
            keys: self.key_count(),
            next_frame_id: pool.id_limit(),
        })
    }

    fn publish(&self, d: &Durable, cap: &mut Capture<'_>) -> Result<()> {
        d.journal.sync()?;
        let mut txn = d.store.begin_checkpoint()?;
        for (&(id, _), img) in cap.frames.iter().zip(&mut cap.images) {
            seal_image(img);
            txn.write_frame(id, img)?;
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
    pub(crate) fn checkpoint_now(&self) -> Result<()> {
        let Some(d) = &self.durable else { return Ok(()) };
        let _serial = d.checkpoint_serial.lock();
        self.checkpoint_locked(d)
    }

    /// `checkpoint_now` for a caller holding `checkpoint_serial`.
    pub(crate) fn checkpoint_locked(&self, d: &Durable) -> Result<()> {
        let timer = self.checkpoint_time.start(&self.checkpoints);
        let done = self.checkpoint_and_trim(d);
        timer.stop(&self.checkpoints);
        if done.is_ok() && d.reserve.is_low() {
            d.reserve.establish();
        }
        done
    }

    fn checkpoint_and_trim(&self, d: &Durable) -> Result<()> {
        self.check_poison()?;
        let mut cap = self.capture(d)?;
        // Nothing written since the published checkpoint (a clean close of
        // an idle tree): it already is this checkpoint.
        let unchanged = cap.frames.is_empty() && cap.dropped.is_empty() && d.store.checkpoint_lsn() == Some(cap.lsn);
        if unchanged {
            return d.journal.trim(cap.lsn);
        }
        let result = d.reserve.retry("checkpoint", || self.publish(d, &mut cap));
        self.pool.release_captured(&cap.frames, result.is_ok());
        if let Err(e) = result {
            self.poison_if_durability_unknown(&e);
            return Err(e);
        }
        self.checkpoints.add(1);
        d.journal.trim(cap.lsn)
    }
}
