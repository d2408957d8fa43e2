//! Dirty frames written out between checkpoints where the tree outgrows
//! the cache (`store::write_out`, `FrameStore`'s staging): memory
//! pressure then costs one unsynced image write per frame, not a
//! checkpoint (a WAL sync, a frame-file sync, a manifest publication and
//! the punches of the slots it frees) for every half cache of dirty
//! frames. Checkpoints still come on the WAL target, the timer, a caller
//! or a close, and publish the staged images with their own.
//!
//! A crash loses nothing: a staged image is never published by anything
//! but a checkpoint's commit, and then only as the state at that
//! checkpoint's cut (see `store::write_out`); recovery reads the last
//! manifest and replays the WAL from its LSN, as ever.

use super::durable::Durable;
use super::Engine;
use crate::error::Result;
use crate::store::pool::Sunk;
use crate::tree::tidy::{tidy_image, Shape};

/// Frames one write-out round stages before it lets a waiting checkpoint
/// have the store (it takes the checkpoint mutex for the round).
const WRITE_OUT_ROUND_MAX: usize = 16;

impl Engine {
    /// Whether dirty frames should be written out now rather than
    /// checkpointed: the tree outgrows the cache, half the cache is dirty
    /// and the WAL is under its target (which only a checkpoint trims).
    pub(crate) fn write_out_due(&self) -> bool {
        let Some(d) = &self.durable else { return false };
        self.pool.tree_outgrows_cache()
            && self.pool.dirty_count() >= self.cfg.dirty_frames_mark()
            && d.journal.bytes() < self.cfg.wal_bytes_target
            && self.check_poison().is_ok()
    }

    /// Write the oldest dirty frames out until a quarter of the cache is
    /// dirty, in rounds of `WRITE_OUT_ROUND_MAX`, then evict down to the
    /// budget. Stops when a checkpoint holds the store (it cleans frames
    /// itself) or a caller waits for one. Returns the frames cleaned.
    pub(crate) fn write_out_dirty(&self) -> Result<usize> {
        let Some(d) = &self.durable else { return Ok(0) };
        let target = self.cfg.dirty_frames_mark() / 2;
        let mut ids = self.pool.dirtied_ids().into_iter();
        let mut cleaned = 0;
        while self.pool.dirty_count() > target && ids.len() > 0 && !d.asked_waits() {
            match self.write_out_round(d, &mut ids, target)? {
                Some(n) => cleaned += n,
                None => break,
            }
        }
        self.pool.shrink_to_budget();
        Ok(cleaned)
    }

    /// One round under the store's checkpoint mutex; `None` if a
    /// checkpoint holds it.
    fn write_out_round(&self, d: &Durable, ids: &mut impl Iterator<Item = crate::ids::FrameId>, target: usize) -> Result<Option<usize>> {
        let Some(mut stage) = d.store.try_stage()? else { return Ok(None) };
        let (pool, shape) = (&self.pool, Shape::for_pool(&self.pool));
        let mut cleaned = 0;
        for id in ids.by_ref().take(WRITE_OUT_ROUND_MAX) {
            if pool.dirty_count() <= target {
                break;
            }
            let wrote = pool.write_out(id, &mut |id, img| {
                let laid_out = tidy_image(img, shape);
                if laid_out {
                    pool.counters.tidies.add(1);
                }
                stage.seal_and_stage(id, img).map(|()| if laid_out { Sunk::LaidOut } else { Sunk::Written })
            })?;
            cleaned += usize::from(wrote);
        }
        Ok(Some(cleaned))
    }
}
