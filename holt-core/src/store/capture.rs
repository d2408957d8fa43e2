//! A checkpoint's capture: the image of every frame dirty at one cut,
//! taken while writers go on, none of them waiting for more than one
//! frame's copy per frame it latches.
//!
//! Epochs. Frames are dirtied in the pool's current epoch
//! (`FrameCell::dirty_epoch`, 0 while clean). A cut (`Pool::cut`, taken
//! under the exclusive side of the engine's commit gate, so no writer holds
//! a latch) ends the epoch: it takes the list of frames dirtied in it and
//! moves to the next epoch, O(1) however many frames are dirty. A frame
//! dirtied before the cut and not yet copied is *pending*: its bytes are
//! still exactly the cut's. Each pending frame is copied once, by whichever
//! comes first:
//! - the checkpoint's copier (`copy_pending`), under the frame's latch
//!   `hold` (writers wait for this one copy, optimistic readers go on): the
//!   frame turns clean, and stays pinned until `release_captured`, because
//!   the store's image of it is stale until the checkpoint publishes;
//! - a writer that latches it exclusively (`before_write`, from
//!   `Owned::push`, before any change): it copies the image first, and the
//!   frame turns dirty in the new epoch.
//!
//! Both copy under a latch that keeps every writer out, and before any
//! change after the cut: so the images are the state at the cut. A writer
//! puts its image into the capture before the frame stops being pending,
//! so once `copy_pending` has walked the cut's list every image is taken,
//! and no frame is pending until the next cut. Frames created after the cut
//! are dirty in the new epoch, never pending; a frame retired after it was
//! copied when it was latched to be retired.
//!
//! Retired ids: an id retired before a cut stays out of reuse until the
//! checkpoint of a later cut has published (`settle_retired`). So the ids a
//! cut takes (`Cut::retired`) are exactly the frames dropped since the last
//! cut, none of them live at the cut, and no id names one frame at the cut
//! and another before the checkpoint ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::{FrameCell, Pool};
use crate::ids::FrameId;
use crate::layout::FRAME_BYTES;

/// Spare image buffers the copier leaves to writers: a writer that finds
/// none allocates one under its latch (page faults and zeroing, about
/// 0.4 ms a frame).
const WRITER_SPARES: usize = 8;

/// What a cut took from the epoch it ended.
pub(crate) struct Cut {
    /// Every frame dirtied in the epoch; some were cleaned or retired
    /// since, some appear twice.
    pub dirtied: Vec<FrameId>,
    /// Ids retired before the cut: not live at it.
    pub retired: Vec<FrameId>,
}

/// The images taken since the last cut, and spare buffers for more.
#[derive(Default)]
pub(super) struct Images {
    taken: Mutex<Vec<(FrameId, Vec<u8>)>>,
    spare: Mutex<Vec<Vec<u8>>>,
    copy_nanos_max: AtomicU64,
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

impl Pool {
    /// Have spare image buffers for `frames` frames, allocated and faulted
    /// in now, before the cut, so copies after it fault nothing.
    pub(crate) fn provision_images(&self, frames: usize) {
        let have = self.images.spare.lock().len();
        let more: Vec<Vec<u8>> = (have..frames).map(|_| faulted_image()).collect();
        self.images.spare.lock().extend(more);
    }

    /// End the current epoch. The caller holds the commit gate exclusively
    /// (no writer holds a latch) and runs `copy_pending` next. O(1).
    pub(crate) fn cut(&self) -> Cut {
        let dirtied = std::mem::take(&mut *self.dirty.ids.lock());
        let retired = std::mem::take(&mut *self.retired.lock());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Cut { dirtied, retired }
    }

    /// Dirtied before the last cut and not copied yet. Stable while the
    /// caller holds the frame's latch (a write or a hold).
    pub(super) fn is_pending(&self, cell: &FrameCell) -> bool {
        let dirtied_in = cell.dirty_epoch.load(Ordering::Acquire);
        dirtied_in != 0 && dirtied_in < self.epoch.load(Ordering::Acquire)
    }

    /// A writer has just latched frame `id` exclusively and has changed
    /// nothing yet: a pending frame's image goes to the capture first.
    #[inline]
    pub(crate) fn before_write(&self, id: FrameId, cell: &FrameCell) {
        if self.is_pending(cell) {
            self.copy_on_write(id, cell);
        }
    }

    #[cold]
    fn copy_on_write(&self, id: FrameId, cell: &FrameCell) {
        let img = self.images.spare.lock().pop().unwrap_or_else(|| vec![0; FRAME_BYTES]);
        self.take_image(id, cell, img);
        // After the image is in: a copier that sees the frame no longer
        // pending may take the images at once.
        cell.dirty_epoch.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
        self.dirty.ids.lock().push(id);
        self.counters.copies_on_write.add(1);
    }

    fn take_image(&self, id: FrameId, cell: &FrameCell, mut img: Vec<u8>) {
        let buf = cell.buf().expect("a dirty frame is never evicted");
        let started = Instant::now();
        buf.image_into(&mut img);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.images.copy_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        self.images.taken.lock().push((id, img));
    }

    /// The longest one frame's copy took, by a writer or the copier: what
    /// a writer waits for at most per frame it latches.
    pub(crate) fn frame_copy_nanos_max(&self) -> u64 {
        self.images.copy_nanos_max.load(Ordering::Relaxed)
    }

    /// The checkpoint's copier, after `cut`: copy every frame of the cut
    /// still pending, each under its latch's hold; each turns clean and is
    /// pinned. Returns them for `release_captured`.
    pub(crate) fn copy_pending(&self, cut: &Cut) -> Vec<(FrameId, &FrameCell)> {
        let mut held = Vec::new();
        for &id in &cut.dirtied {
            let Some(cell) = self.cell(id) else { continue };
            // A look without the latch only skips: a frame stops being
            // pending once, and never becomes pending again before a cut.
            if !self.is_pending(cell) {
                continue;
            }
            let img = self.copier_buffer();
            cell.latch.hold();
            if self.is_pending(cell) {
                cell.pin();
                self.take_image(id, cell, img);
                cell.dirty_epoch.store(0, Ordering::Release);
                self.dirty.count.fetch_sub(1, Ordering::AcqRel);
                held.push((id, cell));
            } else {
                self.images.spare.lock().push(img);
            }
            cell.latch.release_hold();
        }
        self.captured.fetch_add(held.len(), Ordering::AcqRel);
        held
    }

    /// A spare buffer unless only the writers' share is left.
    fn copier_buffer(&self) -> Vec<u8> {
        let mut spare = self.images.spare.lock();
        if spare.len() > WRITER_SPARES {
            return spare.pop().expect("more than the writers' share");
        }
        drop(spare);
        faulted_image()
    }

    /// Every image of the cut, by id, after `copy_pending`; the spare
    /// buffers are freed.
    pub(crate) fn take_images(&self) -> Vec<(FrameId, Vec<u8>)> {
        self.drop_spare_images();
        let mut taken = std::mem::take(&mut *self.images.taken.lock());
        taken.sort_unstable_by_key(|&(id, _)| id);
        debug_assert!(taken.windows(2).all(|w| w[0].0 < w[1].0), "each frame is copied once per cut");
        taken
    }

    /// Free the spare buffers (a capture that took no cut).
    pub(crate) fn drop_spare_images(&self) {
        std::mem::take(&mut *self.images.spare.lock());
    }

    /// After a checkpoint wrote (or failed to write) the frames the copier
    /// cleaned: a failure makes them dirty again; then unpin them.
    pub(crate) fn release_captured(&self, captured: &[(FrameId, &FrameCell)], written: bool) {
        for &(id, cell) in captured {
            if !written {
                cell.latch.lock();
                self.mark_dirty(id, cell);
                cell.latch.unlock();
            }
            self.unpin(id, cell);
        }
        self.captured.fetch_sub(captured.len(), Ordering::AcqRel);
        if written {
            self.shrink_to_budget();
        }
    }

    /// After a checkpoint of a cut that took `ids` (`Cut::retired`):
    /// published, its manifest no longer names them and they may name new
    /// frames; otherwise they wait for the next cut.
    pub(crate) fn settle_retired(&self, ids: Vec<FrameId>, published: bool) {
        if published {
            self.free_ids.lock().extend(ids);
        } else {
            self.retired.lock().extend(ids);
        }
    }

    /// Images taken since the last cut (tests watch the capture).
    #[cfg(test)]
    pub(crate) fn images_taken(&self) -> usize {
        self.images.taken.lock().len()
    }
}
