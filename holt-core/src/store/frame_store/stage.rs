//! Images written ahead of a checkpoint ("staged"), so that a dirty frame
//! can leave memory without a checkpoint of its own: a tree larger than
//! the cache otherwise checkpoints whenever half the cache is dirty.
//!
//! Protocol (what a crash at each step leaves):
//! 1. a staged write takes a slot that is free (neither published nor
//!    pinned nor staged) and writes the sealed image there, unsynced. A
//!    crash leaves a free slot holding bytes no manifest names: the next
//!    open counts it free, and its first commit punches it.
//! 2. the image is staged for its frame: reads of the frame go to it from
//!    then on; a frame's earlier staged image, if any, is free again (the
//!    swap takes the mapping's write lock, so no read starts on it after;
//!    reads already on it are waited for before its bytes change,
//!    `readers.rs`) and its space is given back. Lost in a crash like 1.
//! 3. the next commit (`CheckpointTxn::commit`) syncs the frame file,
//!    then publishes every staged image its checkpoint did not write anew
//!    or drop. Only then do replaced slots become free.
//!
//! What makes a staged image right to publish is the caller's to keep
//! (`engine::write_out`): staging runs only between checkpoints (it takes
//! the checkpoint mutex), and a frame whose staged image is not its
//! current state stays dirty, so the next checkpoint's cut writes it anew.
//! A checkpoint that ends without its commit leaves the images it wrote
//! staged on the same terms (`shadow.rs`).

use std::ops::Range;
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;

use super::{check_image, slot_after, slot_runs, FrameStore, Holes, Sealed};
use crate::error::Result;
use crate::store::frame_file::gap_blocks;
use crate::ids::FrameId;
use crate::store::frame_source::Over;
use crate::store::manifest::{Base, SlotRef};

/// Staged writes in progress: holds the checkpoint mutex, so no
/// checkpoint hands out slots, publishes or punches meanwhile.
pub(crate) struct StageTxn<'a> {
    pub(super) store: &'a FrameStore,
    holes: MutexGuard<'a, Holes>,
    /// Slots written since this began.
    written: Vec<u32>,
}

impl FrameStore {
    /// Begin staging images, or `None` while a checkpoint (or another
    /// staging) holds the checkpoint mutex: it cleans frames itself.
    /// `Error::Poisoned` after a failed sync.
    pub(crate) fn try_stage(&self) -> Result<Option<StageTxn<'_>>> {
        let Some(holes) = self.checkpoint.try_lock() else { return Ok(None) };
        self.check_poisoned()?;
        Ok(Some(StageTxn { store: self, holes, written: Vec::new() }))
    }

    /// `try_stage`, waiting for a checkpoint or staging under way.
    pub(crate) fn stage(&self) -> Result<StageTxn<'_>> {
        let holes = self.checkpoint.lock();
        self.check_poisoned()?;
        Ok(StageTxn { store: self, holes, written: Vec::new() })
    }

    /// Images staged since the last commit, restaged frames counted again.
    pub(crate) fn staged_since_commit(&self) -> usize {
        self.staged_since_commit.load(Ordering::Relaxed)
    }

    /// Frames with a staged image (reports, tests).
    pub(crate) fn staged_count(&self) -> usize {
        self.published.read().staged.len()
    }
}

impl StageTxn<'_> {
    /// Seal `img`, the whole current image of frame `id`, write it into a
    /// free slot and read the frame from there on; published by the next
    /// commit (see the module's protocol): whole, or as a delta over
    /// `over` as `CheckpointTxn::seal_and_write`. On `Err` nothing changed
    /// but the free slot's bytes.
    pub(crate) fn seal_and_stage(&mut self, id: FrameId, img: &mut [u8], over: Option<Over>) -> Result<()> {
        check_image(id, img)?;
        let sealed = self.store.file.seal(id, img);
        let base = self.store.allowed(id, over);
        self.stage_image(id, img, sealed, base)
    }

    /// Stage `bytes` as they are (not sealed: tests compare what they
    /// read back with what they wrote), with checksums computed here.
    #[cfg(test)]
    pub(crate) fn stage_frame(&mut self, id: FrameId, bytes: &[u8]) -> Result<()> {
        check_image(id, bytes)?;
        let sealed = self.store.file.checksums(id, bytes);
        self.stage_image(id, bytes, sealed, None)
    }

    /// Stage a sealed image (with `base`, its pages `base.pages` only).
    fn stage_image(&mut self, id: FrameId, bytes: &[u8], sealed: Sealed, base: Option<Base>) -> Result<()> {
        let slot = self.alloc_slot(&gap_blocks(bytes))?;
        let written = self.store.write_image(&mut self.holes, slot, bytes, &sealed, base);
        let mut p = self.store.published.write();
        p.staging = None;
        if let Err(e) = written {
            p.free.insert(slot);
            return Err(e);
        }
        let replaced = p.staged.insert(id, SlotRef { slot, crc: sealed.crc, base }).map(|old| old.slot);
        p.free.extend(replaced);
        let cap = self.holes.kept_cap(p.manifest.frames.len());
        drop(p);
        self.store.release_slots(replaced.into_iter(), &mut self.holes, cap);
        self.written.push(slot);
        self.store.staged_since_commit.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// End the staging: wait for the staged images' pages to be written
    /// back. Not for durability (no manifest names a staged image until a
    /// commit syncs the file), but so that write-outs do not pile dirty
    /// pages up in the page cache, which under a memory limit counts
    /// against the same limit as the cache and which a checkpoint keeps
    /// bounded by syncing every few images. A failed wait poisons the
    /// store, as a failed sync of the frame file does (it may have taken
    /// the file's writeback error from the next sync). Waits after the
    /// checkpoint mutex is released: a slot a checkpoint frees and fills
    /// meanwhile only makes the wait cover its new pages.
    pub(crate) fn finish(self) -> Result<()> {
        let StageTxn { store, holes, written } = self;
        drop(holes);
        for run in slot_runs(written.into_iter()) {
            store.file.wait_slots_written(run).inspect_err(|e| store.poison(e))?;
        }
        Ok(())
    }

    /// The kept free slot that leaves the least of `gap` to punch
    /// (`Holes::take_kept`), else the lowest free slot, else one past the
    /// end of the file; marked as being staged, so it is neither free nor
    /// readable meanwhile.
    fn alloc_slot(&mut self, gap: &Range<usize>) -> Result<u32> {
        let mut p = self.store.published.write();
        let kept = self.holes.take_kept(gap);
        let free = kept.filter(|slot| p.free.remove(slot));
        debug_assert_eq!(kept, free, "a kept slot is free");
        let slot = match free.or_else(|| p.free.pop_first()) {
            Some(slot) => slot,
            None => {
                let slot = p.slots_total;
                p.slots_total = slot_after(slot)?;
                slot
            }
        };
        p.staging = Some(slot);
        Ok(slot)
    }
}
