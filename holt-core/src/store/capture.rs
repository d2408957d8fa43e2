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
//! - the checkpoint's copier (`copy_pending`): it copies the frame with
//!   optimistic reads, then takes the latch's `hold` only if the version is
//!   still the one it read at (`try_hold_at`: no writer came, so the copy
//!   is the cut's state) and claims the frame under it — writers wait for
//!   the claim, not for the copy (a frame the writers keep changing is
//!   copied under a plain hold, as a last resort); the frame turns clean,
//!   and stays pinned until its image is written, because until then the
//!   store's image of it is stale (from the write on the store reads the
//!   frame from the new image, `frame_store::shadow`; an image that is not
//!   written keeps its frame pinned until `release_captured`);
//! - a writer that latches it exclusively (`before_write`, from
//!   `Owned::push`, before any change): it copies the image first, and the
//!   frame turns dirty in the new epoch.
//!
//! Both take their image of a frame with every writer kept out from the
//! copy's start (the copier: no write between its look at the version and
//! its hold at that version) to the claim, and before any change after the
//! cut: so the images are the state at the cut. A writer
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

#[cfg(not(test))]
#[inline(always)]
pub(super) fn during_unheld_copy() {}

#[cfg(test)]
pub(crate) use copy_hook::{during_unheld_copy, on_unheld_copies};

/// Tests run writers between the copier's optimistic copy of a frame and
/// its hold (`copy_unheld`), or between a write-out's copy and its clean
/// (`store::write_out`), on the copying thread.
#[cfg(test)]
mod copy_hook {
    use std::cell::RefCell;

    thread_local! {
        static HOOK: RefCell<Option<Box<dyn FnMut() -> bool>>> = const { RefCell::new(None) };
    }

    /// Run `f` after each optimistic copy this thread's copier takes,
    /// until `f` returns false.
    pub(crate) fn on_unheld_copies(f: impl FnMut() -> bool + 'static) {
        HOOK.set(Some(Box::new(f)));
    }

    pub(crate) fn during_unheld_copy() {
        let Some(mut f) = HOOK.take() else { return };
        if f() {
            HOOK.set(Some(f));
        }
    }
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use crate::store::frame_file::{page_in_gap, PAGES};
use crate::store::frame_source::Over;
use super::{FrameCell, Pool};
use crate::ids::FrameId;
use crate::layout::mapped::Mapped;
use crate::layout::FRAME_BYTES;

/// Spare image buffers the copier leaves to writers: a writer that finds
/// none allocates one under its latch (page faults and zeroing, about
/// 0.4 ms a frame).
pub(crate) const WRITER_SPARES: usize = 8;
/// Spare image buffers kept resident from one checkpoint to the next: the
/// writers' share and the copier's one, all a quiet checkpoint uses, so
/// that it touches no page in again (~0.3 ms a buffer here). 4.5 MiB
/// outside the cache's budget; the others are released lazily.
pub(crate) const SPARES_KEPT: usize = WRITER_SPARES + 1;
/// A frame is written as a delta while at most one page in this many of
/// those its image uses changed since its base.
const DELTA_SHARE: usize = 4;
/// Optimistic copies the copier tries for one frame before it copies
/// under a hold (writers kept changing the frame).
const UNHELD_COPY_TRIES: usize = 4;

/// Where the copier sends each image of a cut: seal and write it (the
/// buffer is reused once it returns), and say what it did (`Sunk`).
/// With an `Over`, the image may be written as a delta over it
/// (`frame_store::delta`): its pages outside `Over::pages` are the base's.
pub(crate) type ImageSink<'a> = dyn FnMut(FrameId, &mut [u8], Option<Over>) -> crate::error::Result<Sunk> + 'a;

/// What an `ImageSink` did with an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sunk {
    /// Wrote it as it was.
    Written,
    /// Laid it out anew (`tidy::tidy_image`), then wrote it: the copier
    /// gives a frame it claimed that layout too (`adopt_layout`).
    LaidOut,
    /// Wrote nothing, and wants no more images: its checkpoint gave way
    /// (to one a caller waits for). Like a failed write, the copier still
    /// takes every pending frame.
    Stopped,
}

/// How far the copier's writes went (`copy_pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Copied {
    /// Every image of the cut was written.
    All,
    /// The sink stopped taking images (`Sunk::Stopped`).
    Stopped,
}

/// Unmap `bufs` on a short-lived thread (inline if none can start: a
/// failed spawn drops its closure, and `bufs` with it, here).
fn unmap_aside(bufs: Vec<Mapped>) {
    if bufs.is_empty() {
        return;
    }
    let unmap = move || drop(bufs);
    if let Err(e) = std::thread::Builder::new().name("holt-unmap".into()).spawn(unmap) {
        log::debug!("image buffers unmapped in place: {e}");
    }
}

/// An image the copier claimed, with its frame and the frame's version at
/// the claim; `None` for a writer's copy (its frame changed since).
type Claimed<'p> = Option<(&'p FrameCell, u64)>;

/// An image the copier holds unwritten: frame, image, what it may be
/// written over (`delta_of`), and its claim.
type Held<'p> = (FrameId, Image, Option<Over>, Claimed<'p>);

/// The copier's progress through one cut (`Pool::copy_pending`).
struct Copying<'p> {
    /// Frames it claimed and still pins: their images are not written, or
    /// the sink does not let them go.
    held: Vec<(FrameId, &'p FrameCell)>,
    /// How far the writes went, or the first failure.
    written: crate::error::Result<Copied>,
    /// A claimed frame is unpinned once its image is written.
    let_go: bool,
}

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
    taken: Mutex<Vec<(FrameId, Image, Option<Over>)>>,
    /// Zeroed buffers, every page resident: a copy into one faults nothing.
    spare: Mutex<Vec<Image>>,
    /// Zeroed buffers past `SPARES_KEPT` a capture left, released lazily
    /// (`Mapped::release_lazily`): memory the kernel may take back, that
    /// the next capture's `provision_images` touches in again first, and
    /// that its writers and copier take before mapping new ones (a page
    /// the kernel left costs no fault; zeros either way).
    cold: Mutex<Vec<Image>>,
    copy_nanos_max: AtomicU64,
    /// Image buffers allocated since the pool was made.
    made: AtomicU64,
}

/// A frame image buffer: a mapping of its own, never memory of the
/// allocator's heaps, which keep what is freed resident (`Mapped`).
pub(crate) type Image = Mapped;

impl Pool {
    /// Have spare image buffers for `frames` frames, allocated and faulted
    /// in now, before the cut, so copies after it fault nothing.
    pub(crate) fn provision_images(&self, frames: usize) {
        let have = self.images.spare.lock().len();
        let mut more = {
            let mut cold = self.images.cold.lock();
            let warm = cold.len().saturating_sub(frames.saturating_sub(have));
            cold.split_off(warm)
        };
        let fresh = frames.saturating_sub(have + more.len());
        more.extend((0..fresh).map(|_| self.new_image()));
        more.iter_mut().for_each(Mapped::touch_zeros);
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

    /// Into a spare, else a buffer released lazily, else a new mapping:
    /// under a timer checkpoint writers copy most dirty frames themselves
    /// (a random write touches every frame within milliseconds of the
    /// cut), and each new mapping faults 128 pages on the writer's path
    /// (~0.4 ms).
    #[cold]
    fn copy_on_write(&self, id: FrameId, cell: &FrameCell) {
        let spare = self.images.spare.lock().pop();
        let img = spare.unwrap_or_else(|| self.released_or_new(false));
        self.take_image(id, cell, img);
        // After the image is in: a copier that sees the frame no longer
        // pending may take the images at once.
        cell.dirty_epoch.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
        self.dirty.ids.lock().push(id);
        self.counters.copies_on_write.add(1);
    }

    fn take_image(&self, id: FrameId, cell: &FrameCell, img: Image) {
        let img = self.copy_into(cell, img);
        let base = self.delta_of(id, cell);
        self.images.taken.lock().push((id, img, base));
    }

    /// What the image just copied from `cell` (writers kept out) may be
    /// written over: the stored whole image its buffer's page marks count
    /// changes from, while the store still publishes it and at most one
    /// page in `DELTA_SHARE` of those the image uses changed. Otherwise it
    /// is written whole, and the marks restart from it with no base: no
    /// delta is written until a load names one again (a whole image's
    /// slot is known only once written, and a base that is not the one
    /// the marks count from would fail every page read through it).
    pub(super) fn delta_of(&self, id: FrameId, cell: &FrameCell) -> Option<Over> {
        let buf = cell.buf().expect("a captured frame is resident");
        let published = self.source.as_ref().and_then(|s| s.delta_base(id));
        // Pages inside the free gap are zeros, read from nowhere.
        let gap = buf.free_gap();
        let in_gap = (0..PAGES).filter(|&p| page_in_gap(p, &gap)).fold(0u128, |m, p| m | 1 << p);
        let pages = (buf.marks() & !in_gap) | 1;
        let used = PAGES - in_gap.count_ones() as usize;
        match cell.delta_base() {
            Some(slot) if published == Some(slot) && pages.count_ones() as usize * DELTA_SHARE <= used => Some(Over { slot, pages }),
            _ => {
                buf.take_marks();
                cell.delta_base.store(0, Ordering::Release);
                None
            }
        }
    }

    /// The image of the dirty frame in `cell`, copied into `img`, which
    /// must be zeros (the frame's free gap is left as it is: the image's
    /// checksum covers those zeros). Exact when the caller keeps writers
    /// out; otherwise the caller validates.
    pub(super) fn copy_into(&self, cell: &FrameCell, mut img: Image) -> Image {
        let buf = cell.buf().expect("a dirty frame is never evicted");
        let started = Instant::now();
        buf.image_into(&mut img);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.images.copy_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        img
    }

    /// The longest one frame's copy took, by a writer or the copier: what
    /// a writer waits for at most per frame it latches.
    pub(crate) fn frame_copy_nanos_max(&self) -> u64 {
        self.images.copy_nanos_max.load(Ordering::Relaxed)
    }

    /// The checkpoint's copier, after `cut`: copy every frame of the cut
    /// still pending, each under its latch's hold; each turns clean and is
    /// pinned. Every image, the writers' copies included, goes to `write`,
    /// and its buffer back to the spares, once more than `hold` images
    /// wait unwritten (writers' copies counted). `hold` 0 writes each as
    /// soon as it is taken: a quiet checkpoint holds a few images at a
    /// time, not one per dirty frame. A larger `hold` copies up to that
    /// many frames before writing any: writers meet pending frames, and
    /// copy them on their own path, for as long as those copies take, not
    /// the writes too, while the images' memory stays bounded by `hold`
    /// (and the writers' share). After a failed or stopped write the
    /// copier still takes every pending frame (a frame left pending would
    /// hand a later writer's copy to no capture) but writes nothing more.
    /// With `let_go` (the sink's contract: the store reads a frame from
    /// the image written from then on, as a checkpoint's does,
    /// `frame_store::shadow`) a frame it claimed is unpinned once its image
    /// is written, so it may leave memory before the commit; without, every
    /// claimed frame stays pinned. Returns the frames it cleaned and still
    /// pins, for `release_captured`, and how far the writes went or the
    /// first failure.
    pub(crate) fn copy_pending(
        &self,
        cut: &Cut,
        hold: usize,
        let_go: bool,
        write: &mut ImageSink<'_>,
    ) -> (Vec<(FrameId, &FrameCell)>, crate::error::Result<Copied>) {
        let mut copied = Vec::new();
        let mut c = Copying { held: Vec::new(), written: Ok(Copied::All), let_go };
        for &id in &cut.dirtied {
            let Some(cell) = self.cell(id) else { continue };
            // A look without the latch only skips: a frame stops being
            // pending once, and never becomes pending again before a cut.
            if !self.is_pending(cell) {
                continue;
            }
            let img = self.copier_buffer();
            let img = self.copy_unheld(cell, img).unwrap_or_else(|img| {
                cell.latch.hold();
                self.copy_into(cell, img)
            });
            match self.claim(id, cell, img) {
                Ok((img, version, base)) => copied.push((id, img, base, Some((cell, version)))),
                Err(unused) => self.images.spare.lock().push(unused),
            }
            if copied.len() + self.images.taken.lock().len() > hold {
                self.write_held(&mut copied, write, &mut c);
            }
        }
        // Every writer's copy is in: a writer puts its image in before the
        // frame stops being pending.
        self.write_held(&mut copied, write, &mut c);
        self.captured.fetch_add(c.held.len(), Ordering::AcqRel);
        (c.held, c.written)
    }

    /// Hand `img` to `write` unless a write failed or stopped already; its
    /// buffer goes back to the spares as zeros (see `copy_into`). A frame
    /// the copier claimed is let go once its image is written, if the sink
    /// allows (`Copying::let_go`); otherwise it stays pinned, in `held`.
    fn write_image<'p>(&self, id: FrameId, mut img: Image, base: Option<Over>, claimed: Claimed<'p>, write: &mut ImageSink<'_>, c: &mut Copying<'p>) {
        if matches!(c.written, Ok(Copied::All)) {
            c.written = write(id, &mut img, base).map(|sunk| {
                if sunk == Sunk::LaidOut {
                    self.forget_base(id);
                }
                if let (Sunk::LaidOut, Some((cell, version))) = (sunk, claimed) {
                    self.adopt_layout(cell, version, &img);
                }
                if sunk == Sunk::Stopped { Copied::Stopped } else { Copied::All }
            });
        }
        match claimed {
            Some((cell, _)) if c.let_go && matches!(c.written, Ok(Copied::All)) => self.unpin(id, cell),
            Some((cell, _)) => c.held.push((id, cell)),
            None => {}
        }
        self.return_spare(img);
    }

    /// Give an image buffer back to the spares, zeroed (see `copy_into`).
    pub(super) fn return_spare(&self, mut img: Image) {
        img.fill(0);
        self.images.spare.lock().push(img);
    }

    /// A frame the copier claimed at `version`, whose image the sink laid
    /// out anew and wrote, takes that layout, if no writer latched it
    /// since: the content is the same (no writer came), and the image is
    /// what the store holds for it once this checkpoint publishes, so the
    /// frame stays clean (a failed checkpoint makes it dirty again, as
    /// every frame it claimed). Without this, the next tidy of resident
    /// frames (`maintenance::tidy_resident`, before a requested checkpoint)
    /// would lay the frame out again, dirty it, and have that checkpoint
    /// write it a second time. Writers wait for the install's two writes,
    /// as for a tidy's.
    fn adopt_layout(&self, cell: &FrameCell, version: u64, img: &[u8]) {
        if !cell.latch.try_upgrade(version) {
            return;
        }
        cell.buf().expect("a claimed frame is pinned, so resident").install_image(img);
        cell.latch.unlock();
        self.counters.layouts_adopted.add(1);
    }

    /// Write the images the copier holds, then those writers copied so far.
    fn write_held<'p>(&self, copied: &mut Vec<Held<'p>>, write: &mut ImageSink<'_>, c: &mut Copying<'p>) {
        for (id, img, base, claimed) in copied.drain(..) {
            self.write_image(id, img, base, claimed, write, c);
        }
        let taken = std::mem::take(&mut *self.images.taken.lock());
        for (id, img, base) in taken {
            self.write_image(id, img, base, None, write, c);
        }
    }

    /// A frame whose image was laid out anew and written whole: its marks
    /// no longer count changes from its base (see `delta_of`).
    pub(super) fn forget_base(&self, id: FrameId) {
        if let Some(cell) = self.cell(id) {
            cell.delta_base.store(0, Ordering::Release);
        }
    }

    /// Copy the pending frame in `cell` without keeping writers out while
    /// the bytes are read: an optimistic copy, then a hold at the version
    /// it was read at (so the copy is the frame's state at the cut, and a
    /// writer waits only for the claim, not for the copy). `Ok` with the
    /// hold taken, or `Err` (the buffer back, no hold) when writers kept
    /// changing the frame: the caller then copies under a plain hold.
    fn copy_unheld(&self, cell: &FrameCell, mut img: Image) -> Result<Image, Image> {
        for tries in 0..UNHELD_COPY_TRIES {
            if tries > 0 {
                // A copy leaves the frame's free gap as the buffer had it:
                // a copy taken again must start from zeros.
                img.fill(0);
            }
            let Some(v) = cell.latch.optimistic() else {
                cell.latch.wait_unlocked();
                continue;
            };
            if !self.is_pending(cell) {
                cell.latch.hold();
                return Ok(img);
            }
            img = self.copy_into(cell, img);
            during_unheld_copy();
            if cell.latch.try_hold_at(v) {
                return Ok(img);
            }
        }
        img.fill(0);
        Err(img)
    }

    /// Under the hold of `cell` the caller took: if the frame is still
    /// pending, `img` (its copy) is the capture's, the frame turns clean
    /// and stays pinned until the image is written (`write_image`).
    /// Releases the hold;
    /// `Ok` with the image and the frame's version (a hold leaves it as it
    /// is), `Err` with the buffer, zeroed, when a writer had copied the
    /// frame first.
    fn claim(&self, id: FrameId, cell: &FrameCell, mut img: Image) -> Result<(Image, u64, Option<Over>), Image> {
        let claimed = if self.is_pending(cell) {
            cell.pin();
            cell.dirty_epoch.store(0, Ordering::Release);
            self.dirty.count.fetch_sub(1, Ordering::AcqRel);
            let base = self.delta_of(id, cell);
            Ok((img, cell.latch.optimistic().expect("a hold is not a write"), base))
        } else {
            // Spare buffers are zeros (see `copy_into`).
            img.fill(0);
            Err(img)
        };
        cell.latch.release_hold();
        claimed
    }

    /// A spare buffer unless only the writers' share is left (all of
    /// them between checkpoints: a write-out's).
    pub(super) fn copier_buffer(&self) -> Image {
        let mut spare = self.images.spare.lock();
        if spare.len() > WRITER_SPARES {
            return spare.pop().expect("more than the writers' share");
        }
        drop(spare);
        // Faulted in now, not during a copy that holds writers out.
        self.released_or_new(true)
    }

    /// A buffer a capture released lazily, else a new mapping; its pages
    /// faulted in now with `fault_in` (a copy under a hold), else at the
    /// copy (a writer's, which faults the same either way).
    fn released_or_new(&self, fault_in: bool) -> Image {
        let released = self.images.cold.lock().pop();
        let mut img = released.unwrap_or_else(|| self.new_image());
        if fault_in {
            img.touch_zeros();
        }
        img
    }

    /// A new zeroed mapping, counted; its pages fault at first touch.
    fn new_image(&self) -> Image {
        self.images.made.fetch_add(1, Ordering::Relaxed);
        Mapped::zeroed(FRAME_BYTES)
    }

    /// Image buffers allocated so far (tests bound a capture's memory).
    #[cfg(test)]
    pub(crate) fn images_made(&self) -> u64 {
        self.images.made.load(Ordering::Relaxed)
    }

    /// Release the spare buffers past `SPARES_KEPT` lazily (after a
    /// capture, or one that took no cut): the kernel may take their memory
    /// back whenever it wants it, and the next capture that needs them
    /// reuses what it did not take without a fault. Unmapping them all
    /// instead made every capture map and fault its images in again
    /// (~0.36 ms a buffer here) and the worst write of a 1M-key load grow
    /// to 6-24 ms (benches/RESULTS.md run 26). Released spares this
    /// capture did not take back are more than the captures need now:
    /// those are unmapped, so a burst's buffers do not outlive the next
    /// capture, on a thread of their own: after a 1M-key load they are
    /// ~200 MB, ~50 ms of `munmap` that fell on whoever ran the checkpoint
    /// (a caller of `Tree::checkpoint`, or a writer over a bound).
    pub(crate) fn trim_spare_images(&self) {
        let extra = {
            let mut spare = self.images.spare.lock();
            let keep = spare.len().min(SPARES_KEPT);
            spare.split_off(keep)
        };
        extra.iter().for_each(Mapped::release_lazily);
        let stale = std::mem::replace(&mut *self.images.cold.lock(), extra);
        unmap_aside(stale);
    }

    /// Spare image buffers now, resident and lazily released (tests check
    /// what a capture keeps).
    #[cfg(test)]
    pub(crate) fn spare_images(&self) -> (usize, usize) {
        (self.images.spare.lock().len(), self.images.cold.lock().len())
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
