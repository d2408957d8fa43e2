//! Dirty frames written out between checkpoints where the tree outgrows
//! the cache (`store::write_out`, `FrameStore`'s staging): memory
//! pressure then costs one unsynced image write per frame, not a
//! checkpoint (a WAL sync, a frame-file sync, a manifest publication and
//! the punches of the slots it frees) for every half cache of dirty
//! frames. Checkpoints still come on the WAL (at a quarter of its target
//! while frames are written out), after 256 MiB of staged images, on the
//! timer, for a caller or a close, and publish the staged images with
//! their own.
//!
//! A crash loses nothing: a staged image is never published by anything
//! but a checkpoint's commit, and then only as the state at that
//! checkpoint's cut (see `store::write_out`); recovery reads the last
//! manifest and replays the WAL from its LSN, as ever.

use super::checkpoint::lay_out_and_store;
use super::durable::Durable;
use super::Engine;
use crate::error::Result;
use crate::ids::FrameId;
use crate::store::frame_store::StageTxn;
use crate::tree::tidy::Shape;

/// Bytes of images staged between checkpoints, as a multiple of the WAL
/// target (256 MiB, 512 frames, by default).
const STAGED_IMAGES_PER_WAL_TARGET: u64 = 4;

/// Frames one write-out round stages before it waits for their pages to
/// be written back and lets a waiting checkpoint have the store (it takes
/// the checkpoint mutex for the round).
const WRITE_OUT_ROUND_MAX: usize = 16;

impl Engine {
    /// Whether dirty frames should be written out now: write-outs keep
    /// the cache's bounds (`writes_out`) and half the cache is dirty.
    pub(crate) fn write_out_due(&self) -> bool {
        let Some(d) = &self.durable else { return false };
        self.writes_out(d) && self.pool.dirty_count() >= self.cfg.dirty_frames_mark()
    }

    /// Whether the cache's bounds are kept by write-outs now rather than
    /// by checkpoints: the tree outgrows the cache, the WAL is under a
    /// quarter of its target, and the images staged since the last
    /// checkpoint are under `STAGED_IMAGES_PER_WAL_TARGET` times it.
    /// Past either bound the checkpoints come back: a load that streams
    /// through the cache still trims its WAL every few tens of MiB (one
    /// that waited for the whole target ran ~8% slower: benches/RESULTS.md
    /// run 47), and the slots staged images churn through, and the bytes
    /// the next commit's sync may find unwritten, stay bounded.
    pub(super) fn writes_out(&self, d: &Durable) -> bool {
        let staged_bytes = d.store.staged_since_commit() as u64 * crate::FRAME_BYTES as u64;
        self.pool.tree_outgrows_cache()
            && d.journal.bytes() < self.cfg.wal_bytes_target / 4
            && staged_bytes < self.cfg.wal_bytes_target.saturating_mul(STAGED_IMAGES_PER_WAL_TARGET)
            && self.check_poison().is_ok()
    }

    /// Write the oldest dirty frames out until a quarter of the cache is
    /// dirty, in rounds of `WRITE_OUT_ROUND_MAX`, then evict down to the
    /// budget. Stops when a caller waits for a checkpoint, and, unless
    /// `waits` (a writer over the cache bound, which would otherwise
    /// checkpoint), when a checkpoint or another write-out holds the store
    /// (it cleans frames itself). Returns the frames cleaned.
    pub(crate) fn write_out_dirty(&self, waits: bool) -> Result<usize> {
        let Some(d) = &self.durable else { return Ok(0) };
        let target = self.cfg.dirty_frames_mark() / 2;
        let mut ids = self.pool.dirtied_ids().into_iter();
        let mut cleaned = 0;
        while self.pool.dirty_count() > target && ids.len() > 0 && !d.asked_waits() {
            let stage = match waits {
                true => d.store.stage()?,
                false => match d.store.try_stage()? {
                    Some(stage) => stage,
                    None => break,
                },
            };
            cleaned += self.write_out_round(stage, &mut ids, target)?;
        }
        self.pool.shrink_to_budget();
        Ok(cleaned)
    }

    /// One round: at most `WRITE_OUT_ROUND_MAX` frames staged through
    /// `stage`, which holds the store's checkpoint mutex.
    fn write_out_round(&self, mut stage: StageTxn<'_>, ids: &mut impl Iterator<Item = FrameId>, target: usize) -> Result<usize> {
        let (pool, shape) = (&self.pool, Shape::for_pool(&self.pool));
        let mut cleaned = 0;
        for id in ids.by_ref().take(WRITE_OUT_ROUND_MAX) {
            if pool.dirty_count() <= target {
                break;
            }
            let wrote = pool.write_out(id, &mut |id, img, base| {
                lay_out_and_store(pool, shape, img, base, |img, base| stage.seal_and_stage(id, img, base))
            })?;
            cleaned += usize::from(wrote);
        }
        stage.finish()?;
        Ok(cleaned)
    }
}
