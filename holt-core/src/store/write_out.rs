//! Writing dirty frames out between checkpoints, so that they can be
//! evicted: where the tree outgrows the cache, each insert dirties a
//! frame of its own, and a frame that only a published checkpoint could
//! clean made the engine checkpoint whenever half the cache was dirty
//! (a 2M-key tree with a 1/8 cache: 83 checkpoints for 2000 inserts,
//! benches/RESULTS.md run 46).
//!
//! A write-out copies the frame under its latch's hold (writers wait for
//! the copy, readers go on), hands the copy to the store to stage
//! (`FrameStore`'s `stage`: written, unsynced, read in place of the
//! published image), then cleans the frame only if no writer latched it
//! since the copy (`try_upgrade` at the copy's version). So:
//! - a clean frame's stored image (published or staged) is its state;
//! - a frame whose staged image is older than its state is dirty, and the
//!   next checkpoint's cut writes it anew, superseding the staged image;
//! - nothing is pending meanwhile: the caller holds the store's
//!   checkpoint mutex (`StageTxn`), so no checkpoint is between its cut
//!   and its last copy, and no cut comes until the write-out ends.

use std::sync::atomic::Ordering;

use super::capture::{during_unheld_copy, ImageSink, Sunk};
use super::Pool;
use crate::error::Result;
use crate::ids::FrameId;

impl Pool {
    /// The frames dirtied since the last cut, oldest first (some may be
    /// clean or retired since, some named twice).
    pub(crate) fn dirtied_ids(&self) -> Vec<FrameId> {
        self.dirty.ids.lock().clone()
    }

    /// Write dirty frame `id` out through `stage` (which seals and stages
    /// the image it is handed; `Sunk::LaidOut` if it laid the image out
    /// anew first) and clean it; `Ok(false)` if it was not dirty, or a
    /// writer latched it after the copy (it stays dirty). The caller holds
    /// the store's checkpoint mutex, so no frame is pending.
    pub(crate) fn write_out(&self, id: FrameId, stage: &mut ImageSink<'_>) -> Result<bool> {
        // A look without the latch skips frames cleaned since the list
        // named them (most of it between checkpoints) without waiting for
        // a writer; the hold looks again.
        let Some(cell) = self.cell(id).filter(|c| c.is_dirty()) else { return Ok(false) };
        cell.latch.hold();
        if !cell.is_dirty() || !cell.is_live() {
            cell.latch.release_hold();
            return Ok(false);
        }
        debug_assert!(!self.is_pending(cell), "no checkpoint runs during a write-out");
        let mut img = self.copy_into(cell, self.copier_buffer());
        let base = self.delta_of(id, cell);
        let version = cell.latch.optimistic().expect("a hold is not a write");
        cell.latch.release_hold();
        during_unheld_copy();
        let sunk = stage(id, &mut img, base);
        if matches!(sunk, Ok(Sunk::LaidOut)) {
            self.forget_base(id);
        }
        let cleaned = match sunk {
            Ok(Sunk::Stopped) | Err(_) => false,
            Ok(sunk) => self.clean_written(id, version, (sunk == Sunk::LaidOut).then_some(&img)),
        };
        self.return_spare(img);
        sunk.map(|_| cleaned)
    }

    /// Clean frame `id`, staged as it was at latch version `version`
    /// (taking the staged layout `laid_out`, the same content), unless a
    /// writer latched it since: then it stays dirty.
    fn clean_written(&self, id: FrameId, version: u64, laid_out: Option<&[u8]>) -> bool {
        let Some(cell) = self.cell(id) else { return false };
        if !cell.latch.try_upgrade(version) {
            return false;
        }
        if let Some(img) = laid_out {
            cell.buf().expect("a dirty frame is resident").install_image(img);
            self.counters.layouts_adopted.add(1);
        }
        if cell.dirty_epoch.swap(0, Ordering::AcqRel) != 0 {
            self.dirty.count.fetch_sub(1, Ordering::AcqRel);
        }
        // The uses it has were its writers': unless a lookup or writer
        // comes back to it, it is the first to go, before the frames
        // every walk crosses, which a burst of write-outs would otherwise
        // wear down first.
        cell.forget_uses();
        cell.latch.unlock();
        self.clock.enqueue(id, cell);
        self.counters.write_outs.add(1);
        true
    }
}
