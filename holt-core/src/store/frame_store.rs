//! The persistent frame store: `frames.dat` slots published through the
//! `MANIFEST`.
//!
//! Invariants:
//! - A slot referenced by the published manifest is never written. A
//!   checkpoint writes each frame into a slot that is free in the published
//!   mapping (shadow slot); the new mapping becomes visible (in memory and on
//!   disk) only when `commit` has synced `frames.dat` and durably published
//!   the manifest. Only then do the replaced slots become free.
//! - One checkpoint at a time: `begin_checkpoint` holds a mutex until the
//!   transaction commits or drops.
//! - A read looks its slot up under the published mapping's read lock and
//!   registers it there (`readers.rs`), then reads with no lock held; a
//!   slot leaves the mapping only under the write lock, and its bytes are
//!   changed (written, punched, cut off) only once no read has it
//!   registered. So no reader ever sees a slot change under it, and no
//!   writer of the mapping waits for the reads of other frames.
//! - After a failed sync the store is poisoned: reads go on from the last
//!   published mapping (whose slots stay intact), checkpoints are refused.
//! - A pinned mapping (`pin_published`, for a snapshot) keeps its slots
//!   out of `free` until it is unpinned: no checkpoint writes, punches or
//!   truncates them, so its images stay readable whatever is published
//!   after it. Unpinning frees the slots no other mapping holds, under the
//!   checkpoint mutex (no checkpoint is handing slots out meanwhile).
//! - A checkpoint's images are read in place of their frames' published
//!   ones as soon as they are written (`shadow.rs`), so the frames they
//!   capture may leave memory before the commit; a checkpoint abandoned
//!   after writing some leaves them staged (below).
//! - Images may be written ahead of a checkpoint (`stage.rs`): each
//!   goes to a slot neither published nor pinned, is read in place of the
//!   published image of its frame, and is published by the next commit
//!   unless that checkpoint writes the frame anew. Never synced on its
//!   own (a staging round only waits for its pages' writeback, which
//!   makes nothing durable): a commit syncs the frame file before
//!   publishing anything, and an open sees only the manifest, whose
//!   slots a staged write never touches. Staging takes the checkpoint
//!   mutex, so it never runs within a checkpoint.
//! - Frames are opaque bytes here, except that the frame file reads an
//!   image's free-gap bounds to keep the gap off the disk (frame_file.rs).
//! - The store does not take the directory lock; its owner does
//!   (see `lock.rs`), because the lock also covers files the store does not own.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use self::holes::Holes;
use self::readers::Readers;
use super::frame_file::{gap_blocks, FrameFile, Known, PageCrcs, Sealed, SlotFormat, Source, FRAME_BYTES, FRAME_FILE_NAME, HEADER_BYTES};
use super::image_buf::{ImageBuf, Via};
use super::frame_source::Over;
use super::manifest::{self, Base, Manifest, ManifestMeta, PublishError, SlotRef, H_STORE_ID, MANIFEST_NAME};
use super::splitmix::SplitMix64;
use super::vfs::Vfs;
use crate::error::{Error, Result};
use crate::ids::FrameId;

/// Frames on disk, addressed by `FrameId`. `Send + Sync`.
pub(crate) struct FrameStore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    file: FrameFile,
    published: RwLock<Published>,
    /// The slots being read (`readers.rs`).
    readers: Readers,
    /// Serialises checkpoints; held by the live `CheckpointTxn`.
    checkpoint: Mutex<Holes>,
    /// Why the store refuses checkpoints, if it does.
    poisoned: Mutex<Option<String>>,
    /// Every free slot has been punched since open.
    swept: AtomicBool,
    /// Images staged since the last commit, restaged frames counted again
    /// (`stage.rs`).
    staged_since_commit: AtomicUsize,
    /// Images written as deltas since open (`delta.rs`).
    deltas: std::sync::atomic::AtomicU64,
}

/// The mapping every reader uses: the last durably published manifest.
struct Published {
    manifest: Manifest,
    /// Invariant: `free`, the manifest's slots and the pinned slots cover
    /// `0..slots_total`, and `free` holds none of the others.
    free: BTreeSet<u32>,
    slots_total: u32,
    /// Slots of earlier mappings that snapshots still read, by pin id.
    pins: BTreeMap<u64, BTreeSet<u32>>,
    next_pin: u64,
    /// Images written since the last publication (`stage.rs`), read
    /// before the manifest's. Invariant: their slots are neither
    /// published nor pinned.
    staged: BTreeMap<FrameId, SlotRef>,
    /// The slot a staged write is filling: neither free nor readable.
    staging: Option<u32>,
    /// The new images of the checkpoint under way, its only record of
    /// them: read before the staged and the published ones, published by
    /// its commit (`shadow.rs`). Invariant: each slot here is that
    /// transaction's (free in the published mapping, or past its end) and
    /// appears once, and only it changes them.
    shadow: BTreeMap<FrameId, SlotRef>,
}

impl Published {
    fn new(manifest: Manifest, slots_total: u32) -> Published {
        let (pins, staged, shadow) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let mut p = Published { manifest, free: BTreeSet::new(), slots_total, pins, next_pin: 1, staged, staging: None, shadow };
        p.refree();
        p
    }

    /// `manifest` published over `self`, the pins carried over; it holds
    /// or supersedes every staged image.
    fn replaced_by(&mut self, manifest: Manifest, slots_total: u32) {
        self.manifest = manifest;
        self.staged.clear();
        self.shadow.clear();
        self.slots_total = slots_total;
        self.refree();
    }

    /// Recompute `free`: every slot neither published nor pinned.
    fn refree(&mut self) {
        let used = self.used_slots();
        self.free = (0..self.slots_total).filter(|s| !used.contains(s)).collect();
    }

    fn used_slots(&self) -> BTreeSet<u32> {
        let mut used: BTreeSet<u32> = self.manifest.frames.values().flat_map(SlotRef::slots).collect();
        used.extend(self.pins.values().flatten());
        used.extend(self.staged.values().flat_map(SlotRef::slots).chain(self.staging));
        used
    }

    /// The slot readers take frame `id` from: the image the checkpoint
    /// under way wrote, else its staged image, else its published one.
    fn slot_of(&self, id: FrameId) -> Option<&SlotRef> {
        self.shadow.get(&id).or_else(|| self.staged.get(&id)).or_else(|| self.manifest.frames.get(&id))
    }

    /// One past the highest slot a pin holds (0 without pins).
    fn pinned_end(&self) -> u32 {
        self.pins.values().filter_map(|s| s.last()).map(|s| s + 1).max().unwrap_or(0)
    }
}

/// A published mapping kept readable for a snapshot (`FrameStore::pin_published`).
pub(crate) struct PinnedMapping {
    pub id: u64,
    pub frames: BTreeMap<FrameId, SlotRef>,
    pub meta: Option<ManifestMeta>,
}

impl FrameStore {
    /// Open the store in `dir`, creating it if it holds no manifest.
    /// Returns the metadata of the last committed checkpoint, or `None` for a
    /// store that has never committed one.
    pub(crate) fn open(vfs: Arc<dyn Vfs>, dir: &Path) -> Result<(FrameStore, Option<ManifestMeta>)> {
        vfs.create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        manifest::remove_stale_tmp(&*vfs, dir)?;
        let (file, manifest) = match manifest::read(&*vfs, dir)? {
            Some(m) => (open_existing(&*vfs, dir, &m)?, m),
            None => create_fresh(&*vfs, dir)?,
        };
        Self::from_parts(vfs, dir, file, manifest)
    }

    /// Open the store in `dir` without writing: no stale `MANIFEST.tmp` is
    /// removed and a store without a manifest is an error, not created.
    pub(crate) fn open_read_only(vfs: Arc<dyn Vfs>, dir: &Path) -> Result<(FrameStore, Option<ManifestMeta>)> {
        let Some(manifest) = manifest::read(&*vfs, dir)? else {
            let what = "missing: the store was never opened for writing";
            return Err(Error::corrupted(dir.join(MANIFEST_NAME), 0, what));
        };
        let file = open_existing(&*vfs, dir, &manifest)?;
        Self::from_parts(vfs, dir, file, manifest)
    }

    fn from_parts(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        file: FrameFile,
        manifest: Manifest,
    ) -> Result<(FrameStore, Option<ManifestMeta>)> {
        let slots_total = file.slots_in_file()?;
        for (id, slot) in manifest.frames.iter().flat_map(|(id, r)| r.slots().map(move |s| (id, s))) {
            if slot >= slots_total {
                let what = format!("frame {} maps to slot {slot} but the file holds {slots_total} slots", id.0);
                return Err(Error::corrupted(file.path(), file.slot_offset(slot), what));
            }
        }
        let meta = manifest.meta.clone();
        let store = FrameStore {
            vfs,
            dir: dir.to_path_buf(),
            file,
            published: RwLock::new(Published::new(manifest, slots_total)),
            readers: Readers::default(),
            // A partial slot past the whole ones may hold bytes too.
            checkpoint: Mutex::new(Holes::new(slots_total.saturating_add(1))),
            staged_since_commit: AtomicUsize::new(0),
            deltas: Default::default(),
            poisoned: Mutex::new(None),
            swept: AtomicBool::new(false),
        };
        store.check_invariants();
        Ok((store, meta))
    }

    /// The frame's image as of the last commit, verified against the
    /// manifest checksum. `Error::Corrupted` (file, slot offset) on mismatch.
    #[cfg(test)]
    pub(crate) fn read_frame(&self, id: FrameId) -> Result<Vec<u8>> {
        let mut buf = ImageBuf::zeroed();
        self.read_frame_into(id, &mut buf, Via::Direct)?;
        Ok(buf.to_vec())
    }

    /// `read_frame` into a reused buffer (see `FrameFile::read_slot_into`);
    /// returns the bytes read from the file (the free gap is not read).
    #[cfg(test)]
    pub(crate) fn read_frame_into(&self, id: FrameId, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        self.read_frame_ref_into(id, buf, via).map(|(bytes, _)| bytes)
    }

    /// `read_frame_into`, with the reference it read through.
    pub(crate) fn read_frame_ref_into(&self, id: FrameId, buf: &mut ImageBuf, via: Via) -> Result<(u64, SlotRef)> {
        self.with_slot(id, |r| Ok((self.read_ref_into(id, r, buf, via)?, *r)))
    }

    /// The image `r` names: a whole slot, or a delta's head from its slot
    /// and each other page from the slot that holds it (`frame_file::delta`).
    fn read_ref_into(&self, id: FrameId, r: &SlotRef, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        if r.base.is_none() {
            return self.file.read_slot_into(r.slot, id, r.crc, buf, via);
        }
        self.file.read_delta(Source::from(r), id, r.crc, buf, via)
    }

    /// Whether frames can be read a page at a time (a version 2 file).
    pub(crate) fn paged(&self) -> bool {
        self.file.format() == SlotFormat::Paged
    }

    /// The page checksums of frame `id`, checked against the manifest,
    /// and its first page, checked against them, into `buf`
    /// (`FrameFile::read_head`).
    pub(crate) fn read_frame_head(&self, id: FrameId, buf: &mut ImageBuf, via: Via) -> Result<PageCrcs> {
        self.with_slot(id, |r| self.file.read_head(r.slot, id, r.crc, buf, via))
    }

    /// `pages` of frame `id` into the same pages of `buf`, checked against
    /// the checksums from `read_frame_head` (`FrameFile::read_pages`).
    pub(crate) fn read_frame_pages(&self, id: FrameId, pages: Range<usize>, known: Known<'_>, buf: &mut ImageBuf, via: Via) -> Result<()> {
        self.with_slot(id, |r| self.file.read_pages_from(Source::from(r), id, pages, known, buf, via))
    }

    /// Run `read` on the slot of `id` (shadow, staged, else published),
    /// registered as read (`readers.rs`): the slot stays as it is until
    /// `read` returns, and the mapping is not locked meanwhile.
    fn with_slot<T>(&self, id: FrameId, read: impl FnOnce(&SlotRef) -> Result<T>) -> Result<T> {
        let (r, _reading) = {
            let published = self.published.read();
            let Some(&r) = published.slot_of(id) else {
                let what = format!("frame {} is not in the manifest", id.0);
                return Err(Error::corrupted(self.dir.join(MANIFEST_NAME), 0, what));
            };
            (r, self.readers.enter(&r))
        };
        read(&r)
    }

    /// Keep the published mapping's slots from reuse until `unpin(id)`,
    /// and return it: a snapshot reads its frames with `read_pinned`.
    pub(crate) fn pin_published(&self) -> PinnedMapping {
        let mut p = self.published.write();
        let id = p.next_pin;
        p.next_pin += 1;
        let slots = p.manifest.frames.values().flat_map(SlotRef::slots).collect();
        p.pins.insert(id, slots);
        PinnedMapping { id, frames: p.manifest.frames.clone(), meta: p.manifest.meta.clone() }
    }

    /// The image of frame `id` in slot `r` of a pinned mapping, verified
    /// against its checksum; returns the bytes read.
    pub(crate) fn read_pinned(&self, id: FrameId, r: SlotRef, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        let _reading = self.readers.enter(&r);
        self.read_ref_into(id, &r, buf, via)
    }

    /// Let the slots of pin `id` go: those no mapping holds become free
    /// and their space is given back. Waits for a running checkpoint, which
    /// hands out free slots.
    pub(crate) fn unpin(&self, id: u64) {
        let mut holes = self.checkpoint.lock();
        let mut p = self.published.write();
        let Some(slots) = p.pins.remove(&id) else { return };
        let used = p.used_slots();
        let freed: Vec<u32> = slots.into_iter().filter(|s| !used.contains(s) && *s < p.slots_total).collect();
        p.free.extend(&freed);
        drop(p);
        // Held for a snapshot's reads, not freed by writes: given back,
        // no more kept than before.
        let cap = holes.kept.len();
        self.release_slots(freed.into_iter(), &mut holes, cap);
    }

    /// Whether the store holds an image of `id`, published or staged.
    pub(crate) fn contains(&self, id: FrameId) -> bool {
        self.published.read().slot_of(id).is_some()
    }

    /// The store's id and the published manifest's `seq`: which checkpoint
    /// an open starts from (0 before the first).
    pub(crate) fn published_seq(&self) -> (u64, u64) {
        let p = self.published.read();
        (p.manifest.store_id, p.manifest.seq)
    }

    /// The LSN the published checkpoint covers; `None` before the first.
    pub(crate) fn checkpoint_lsn(&self) -> Option<crate::ids::Lsn> {
        self.published.read().manifest.meta.as_ref().map(|m| m.checkpoint_lsn)
    }

    /// Ids of all published frames, ascending.
    pub(crate) fn frame_ids(&self) -> Vec<FrameId> {
        self.published.read().manifest.frames.keys().copied().collect()
    }

    /// Slots in `frames.dat` (live and free): the file's size in frames.
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> u32 {
        self.published.read().slots_total
    }

    /// Start the next checkpoint; blocks while another one is open.
    /// `Error::Poisoned` after a failed sync.
    pub(crate) fn begin_checkpoint(&self) -> Result<CheckpointTxn<'_>> {
        let serial = self.checkpoint.lock();
        self.check_poisoned()?;
        let slots_ext_next = self.published.read().slots_total;
        Ok(CheckpointTxn {
            store: self,
            holes: serial,
            dropped: BTreeSet::new(),
            released: Vec::new(),
            free_cursor: 0,
            from_kept: BTreeSet::new(),
            slots_ext_next,
            failed: false,
            unsynced: 0,
        })
    }

    /// Panics if the published mapping breaks an invariant (tests call this
    /// after every operation).
    pub(crate) fn check_invariants(&self) {
        let p = self.published.read();
        p.manifest.check_invariants();
        let used = p.used_slots();
        let held: BTreeSet<u32> = p.manifest.frames.values().flat_map(SlotRef::slots).chain(p.pins.values().flatten().copied()).collect();
        let staged: BTreeSet<u32> = p.staged.values().map(|r| r.slot).collect();
        assert_eq!(staged.len(), p.staged.len(), "two staged images share a slot");
        assert!(staged.is_disjoint(&held), "a staged image in a published or pinned slot");
        assert!(p.staging.is_none_or(|s| !staged.contains(&s) && !held.contains(&s)), "the slot being staged is in use");
        for &slot in &used {
            assert!(slot < p.slots_total, "slot {slot} past the end ({})", p.slots_total);
            assert!(!p.free.contains(&slot), "slot {slot} both free and used");
        }
        assert_eq!(p.free.len() + used.len(), p.slots_total as usize, "free + used != slots");
        if let Some(holes) = self.checkpoint.try_lock() {
            assert!(holes.kept.is_subset(&p.free), "a kept slot is not free");
        }
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    fn poison(&self, error: &Error) {
        self.poisoned.lock().get_or_insert_with(|| error.to_string());
    }

    /// Sync the frame file; a failure poisons the store (the kernel may
    /// have dropped dirty pages, and a later sync that succeeds would not
    /// say so).
    fn sync_frames(&self) -> Result<()> {
        self.file.sync().inspect_err(|e| self.poison(e))
    }

    /// Make `next` the published mapping, then cut free slots off the end of
    /// the file (best effort: a failed truncation only wastes space).
    fn install(&self, next: Manifest, slots_total: u32, holes: &mut Holes) {
        let mut p = self.published.write();
        let slots_used = next.frames.values().flat_map(SlotRef::slots).map(|s| s + 1).max().unwrap_or(0).max(p.pinned_end());
        let mut slots_total = slots_total.max(p.slots_total);
        if slots_used < slots_total {
            self.readers.wait_unread(slots_used..slots_total);
            match self.file.truncate_slots(slots_used) {
                Ok(()) => {
                    slots_total = slots_used;
                    holes.truncated(slots_used);
                }
                Err(e) => log::warn!("keeping free slots at the end of the frame file: {e}"),
            }
        }
        holes.committed();
        let cap = holes.kept_cap(next.frames.len());
        let freed: Vec<u32> = p.manifest.frames.values().chain(p.staged.values()).flat_map(SlotRef::slots).collect();
        // A crash between a publication and its punches leaves free slots
        // allocated: the first commit after open punches every slot that
        // was free before it (holes already, after a clean close).
        let stale = (!self.swept.swap(true, Ordering::Relaxed)).then(|| p.free.clone());
        p.replaced_by(next, slots_total);
        let freed: Vec<u32> = freed.into_iter().filter(|s| p.free.contains(s)).collect();
        let stale: Vec<u32> = stale.unwrap_or_default().into_iter().filter(|s| p.free.contains(s)).collect();
        drop(p);
        self.release_slots(freed.into_iter(), holes, cap);
        let stale = stale.into_iter().filter(|s| !holes.kept.contains(s));
        self.punch_runs(slot_runs(stale), holes);
    }

    /// Write a sealed image into `slot`, a free one, once no read that
    /// started before it was freed is still reading it; what of
    /// its free gap is not a hole already is punched out, unless that is
    /// little (`Holes::plan`, guarded by the checkpoint mutex the caller
    /// holds). Until the write returns, nothing of the slot counts as a
    /// hole.
    fn write_image(&self, holes: &mut Holes, slot: u32, bytes: &[u8], sealed: &Sealed, base: Option<Base>) -> Result<()> {
        self.readers.wait_unread(slot..slot + 1);
        match base {
            None => self.write_slot(holes, slot, bytes, sealed),
            Some(base) => {
                // What a delta leaves of its slot's earlier bytes is never
                // read; none of it counts as a hole.
                holes.writing(slot);
                self.file.write_delta(slot, bytes, sealed, base.pages)?;
                self.deltas.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn write_slot(&self, holes: &mut Holes, slot: u32, bytes: &[u8], sealed: &Sealed) -> Result<()> {
        let plan = holes.plan(slot, &gap_blocks(bytes));
        holes.writing(slot);
        self.file.write_slot(slot, bytes, sealed, &plan.punch)?;
        holes.hole_is(slot, plan.hole_after);
        Ok(())
    }

    /// Give the disk space of free slots back (best effort: a failure only
    /// costs space) and count them as holes, except for at most `cap` of
    /// them and of those kept already, kept for the images that follow.
    /// Callers pass slots free in the published mapping and hold the
    /// checkpoint mutex (`holes`), so no checkpoint refills one meanwhile.
    ///
    /// Runs of adjacent slots go in one punch each (the slots a checkpoint
    /// replaces were mostly handed out in order by the one before it), so
    /// the shortest runs are kept first: they save the most punches a
    /// slot.
    fn release_slots(&self, slots: impl Iterator<Item = u32>, holes: &mut Holes, cap: usize) {
        let slots: Vec<u32> = slots.collect();
        self.learn_holes(&slots, holes);
        if holes.kept.len() + slots.len() <= cap {
            // All of them kept: no need to weigh runs (a write-out frees one
            // slot at a time beside thousands kept).
            holes.kept.extend(slots);
            return;
        }
        let mut runs = slot_runs(std::mem::take(&mut holes.kept).into_iter().chain(slots));
        runs.sort_by_key(|run| run.len());
        let mut punch = Vec::new();
        for run in runs {
            match holes.kept.len() + run.len() <= cap {
                true => holes.kept.extend(run),
                false => punch.push(run),
            }
        }
        punch.sort_by_key(|run| run.start);
        self.punch_runs(punch, holes);
    }

    /// Ask the file system where the holes of freed slots written before
    /// this open are (their images' gaps), so that an image written into
    /// one later punches only what of its gap is not a hole already.
    fn learn_holes(&self, slots: &[u32], holes: &mut Holes) {
        for &slot in slots {
            if holes.knows(slot) {
                continue;
            }
            if let Some(hole) = self.file.image_hole(slot) {
                holes.hole_is(slot, hole);
            }
        }
    }

    /// Punch each run out of the frame file and count its slots as holes;
    /// stops at the first failure (the rest keep their space).
    fn punch_runs(&self, runs: Vec<Range<u32>>, holes: &mut Holes) {
        for run in runs {
            self.readers.wait_unread(run.clone());
            if let Err(e) = self.file.release_slots(run.clone()) {
                log::warn!("keeping the space of free frame slots {run:?}: {e}");
                return;
            }
            holes.punched_whole(run);
        }
    }

    /// Give back the space of the free slots kept for the images that
    /// follow (`Holes::kept`): a checkpoint a caller waited for (asked
    /// for, a clean close, a snapshot's) leaves the frame file holding
    /// only the images it maps. Waits for a checkpoint or staging under
    /// way.
    pub(crate) fn give_back_kept(&self) {
        let mut holes = self.checkpoint.lock();
        self.release_slots(std::iter::empty(), &mut holes, 0);
    }

    /// Holes asked of the file system since open (`FrameFile::punches`).
    /// Images written as deltas since open.
    pub(crate) fn deltas(&self) -> u64 {
        self.deltas.load(Ordering::Relaxed)
    }

    pub(crate) fn punches(&self) -> u64 {
        self.file.punches()
    }

    /// Free slots kept unpunched for the images that follow.
    #[cfg(test)]
    pub(crate) fn kept_slots(&self) -> usize {
        self.checkpoint.lock().kept.len()
    }
}

/// `slots` as ranges of adjacent slots, in ascending order (repeats merge).
fn slot_runs(slots: impl Iterator<Item = u32>) -> Vec<std::ops::Range<u32>> {
    let mut sorted: Vec<u32> = slots.collect();
    sorted.sort_unstable();
    let mut runs: Vec<std::ops::Range<u32>> = Vec::new();
    for slot in sorted {
        match runs.last_mut() {
            Some(run) if slot <= run.end => run.end = run.end.max(slot + 1),
            _ => runs.push(slot..slot + 1),
        }
    }
    runs
}

/// A checkpoint in progress: frames written so far, read in place of the
/// published images from the write on (`shadow.rs`) and published by
/// `commit`. Dropping it without a commit leaves the images it wrote
/// staged, to be published by the next commit; its other slots stay free.
pub(crate) struct CheckpointTxn<'a> {
    store: &'a FrameStore,
    /// The checkpoint mutex, held for the transaction's life.
    holes: MutexGuard<'a, Holes>,
    dropped: BTreeSet<FrameId>,
    /// Shadow slots handed out and given back in this checkpoint.
    released: Vec<u32>,
    /// Published free slots below this one are already handed out.
    free_cursor: u32,
    /// Kept free slots handed out (`Holes::kept`), which the cursor skips.
    from_kept: BTreeSet<u32>,
    /// Next slot past the end of the file to hand out.
    slots_ext_next: u32,
    /// A write failed: the checkpoint may lack an image, so it cannot commit.
    failed: bool,
    /// Images written since the last sync of the frame file.
    unsynced: usize,
}

/// Images a checkpoint writes between syncs of the frame file (8 MiB of
/// 512 KiB frames). Left to one sync at the commit, ~200 MB of images
/// after a 1M-key load reached the host at once, and while it worked
/// through them the writers' virtual CPUs stood still: puts of 4-15 ms
/// with ~50 µs of CPU and no context switch, only while a checkpoint
/// wrote. Synced every 16 images, half the loads had no put over 1 ms
/// and the rest fewer slow ones, the checkpoints no slower within the
/// noise (benches/RESULTS.md run 44). Bounding the writeback in flight
/// without syncing did not help.
const SYNC_EVERY_IMAGES: usize = 16;

fn check_image(id: FrameId, bytes: &[u8]) -> Result<()> {
    if id.0 == 0 || bytes.len() != FRAME_BYTES {
        let what = format!("frame {} image of {} bytes (want id > 0, {FRAME_BYTES} bytes)", id.0, bytes.len());
        return Err(Error::InvalidArgument(what));
    }
    Ok(())
}

impl CheckpointTxn<'_> {
    /// Write `bytes` as is (not sealed: tests compare what they read back
    /// with what they wrote), with its checksums computed here.
    #[cfg(test)]
    pub(crate) fn write_frame(&mut self, id: FrameId, bytes: &[u8]) -> Result<()> {
        check_image(id, bytes)?;
        let sealed = self.store.file.checksums(id, bytes);
        self.write_image(id, bytes, sealed, None)
    }

    /// Seal `img` (one whole frame image) for the frame file and write it
    /// as the new image of `id`, into a slot the published manifest does
    /// not reference: whole, or as a delta over `over` (its pages
    /// `over.pages`, page 0 always) while `over.slot` is the frame's
    /// published image (`delta.rs`). The manifest records its slot
    /// checksum, and every later read of the slot is checked against it.
    pub(crate) fn seal_and_write(&mut self, id: FrameId, img: &mut [u8], over: Option<Over>) -> Result<()> {
        check_image(id, img)?;
        let sealed = self.store.file.seal(id, img);
        let base = self.store.allowed(id, over);
        self.write_image(id, img, sealed, base)
    }

    /// Write a sealed image (with `base`, its pages `base.pages` only). A
    /// frame written twice in one checkpoint goes to a new slot: readers
    /// may be reading its first image. The first slot is reused after the
    /// swap (`shadow`).
    fn write_image(&mut self, id: FrameId, bytes: &[u8], sealed: Sealed, base: Option<Base>) -> Result<()> {
        self.dropped.remove(&id);
        let slot = self.alloc_slot(&gap_blocks(bytes))?;
        if let Err(e) = self.store.write_image(&mut self.holes, slot, bytes, &sealed, base) {
            self.released.push(slot);
            self.failed = true;
            return Err(e);
        }
        self.shadow(id, Some(SlotRef { slot, crc: sealed.crc, base }));
        self.sync_every_few()
    }

    /// Sync the frame file once `SYNC_EVERY_IMAGES` images wait for it.
    /// A failed sync fails the checkpoint and poisons the store, as the
    /// commit's does (`FrameStore::sync_frames`).
    fn sync_every_few(&mut self) -> Result<()> {
        self.unsynced += 1;
        if self.unsynced < SYNC_EVERY_IMAGES {
            return Ok(());
        }
        self.unsynced = 0;
        self.store.sync_frames().inspect_err(|_| self.failed = true)
    }

    /// Remove `id` from the store at commit.
    pub(crate) fn drop_frame(&mut self, id: FrameId) {
        self.shadow(id, None);
        self.dropped.insert(id);
    }

    /// Sync the frame file, then publish the new mapping with `meta`
    /// durably. On `Ok` the checkpoint is what every later open sees and the
    /// replaced slots are free. On `Err` the previous mapping stays published
    /// and readable; a failed sync also poisons the store.
    pub(crate) fn commit(mut self, meta: ManifestMeta) -> Result<()> {
        let store = self.store;
        store.check_poisoned()?;
        if self.failed {
            return Err(Error::InvalidArgument("checkpoint had a failed frame write; start a new one".into()));
        }
        let writes = |p: &Published| !p.shadow.is_empty() || !p.staged.is_empty();
        if writes(&store.published.read()) {
            store.sync_frames()?;
        }
        let next = self.next_manifest(meta);
        if let Err(PublishError { error, poisons }) = manifest::publish(&*store.vfs, &store.dir, &next) {
            if poisons {
                store.poison(&error);
            }
            return Err(error);
        }
        store.staged_since_commit.store(0, Ordering::Relaxed);
        // Empties the shadow images: nothing is left to stage when the
        // transaction drops.
        store.install(next, self.slots_ext_next, &mut self.holes);
        Ok(())
    }

    fn next_manifest(&self, meta: ManifestMeta) -> Manifest {
        let p = self.store.published.read();
        let mut frames = p.manifest.frames.clone();
        frames.extend(p.staged.iter().map(|(id, r)| (*id, *r)));
        for id in &self.dropped {
            frames.remove(id);
        }
        frames.extend(p.shadow.iter().map(|(id, r)| (*id, *r)));
        Manifest { store_id: p.manifest.store_id, seq: p.manifest.seq + 1, meta: Some(meta), frames }
    }

    /// A kept free slot first, the one that leaves the least of `gap` to
    /// punch (`Holes::take_kept`: no punch freed it), then the lowest
    /// free slot (keeps the file dense), then past the end.
    fn alloc_slot(&mut self, gap: &Range<usize>) -> Result<u32> {
        if let Some(slot) = self.released.pop() {
            return Ok(slot);
        }
        let p = self.store.published.read();
        while let Some(slot) = self.holes.take_kept(gap) {
            debug_assert!(p.free.contains(&slot), "a kept slot is free");
            if p.free.contains(&slot) {
                self.from_kept.insert(slot);
                return Ok(slot);
            }
        }
        if let Some(&slot) = p.free.range(self.free_cursor..).find(|s| !self.from_kept.contains(s)) {
            self.free_cursor = slot + 1;
            return Ok(slot);
        }
        drop(p);
        let slot = self.slots_ext_next;
        self.slots_ext_next = slot_after(slot)?;
        Ok(slot)
    }
}

/// The slot after `slot`, past the end of the file.
fn slot_after(slot: u32) -> Result<u32> {
    slot.checked_add(1).ok_or_else(|| Error::InvalidArgument("frame file reached 2^32 slots".into()))
}

/// Validate `frames.dat` against the manifest that references it.
fn open_existing(vfs: &dyn Vfs, dir: &Path, m: &Manifest) -> Result<FrameFile> {
    let path = dir.join(FRAME_FILE_NAME);
    let (file, store_id) = match FrameFile::open(vfs, &path) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::corrupted(path, 0, "frame file missing while MANIFEST exists"));
        }
        other => other?,
    };
    if store_id != m.store_id {
        let what = format!("manifest store id {:#x} differs from frame file's {store_id:#x}", m.store_id);
        return Err(Error::corrupted(dir.join(MANIFEST_NAME), H_STORE_ID as u64, what));
    }
    Ok(file)
}

/// A store with no `MANIFEST`: either never created, or its creation was
/// interrupted (then `frames.dat` holds at most a header). A `frames.dat`
/// holding slots without a manifest means the manifest was lost.
fn create_fresh(vfs: &dyn Vfs, dir: &Path) -> Result<(FrameFile, Manifest)> {
    let path = dir.join(FRAME_FILE_NAME);
    match vfs.open(&path, false) {
        Ok(f) => {
            let len = f.len().map_err(|e| Error::io("stat", &path, e))?;
            if len > HEADER_BYTES as u64 {
                let what = "missing while frames.dat holds frame slots";
                return Err(Error::corrupted(dir.join(MANIFEST_NAME), 0, what));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("open", path, e)),
    }
    let store_id = new_store_id();
    let file = FrameFile::create(vfs, &path, store_id)?;
    let m = Manifest { store_id, seq: 0, meta: None, frames: BTreeMap::new() };
    // The publication's directory sync also makes frames.dat's entry durable.
    manifest::publish(vfs, dir, &m).map_err(|e| e.error)?;
    Ok((file, m))
}

/// A store id that differs between stores with high probability; it ties a
/// manifest to its frame file.
fn new_store_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    SplitMix64::new(seed).next_u64() | 1
}

#[cfg(test)]
impl FrameStore {
    /// The published slot of `id` (tests aim corruption with it).
    pub(crate) fn slot_of(&self, id: FrameId) -> Option<u32> {
        self.published.read().manifest.frames.get(&id).map(|r| r.slot)
    }
}

mod delta;
mod holes;
mod readers;
mod shadow;
mod stage;
pub(crate) use stage::StageTxn;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod stage_tests;
#[cfg(test)]
mod shadow_tests;
#[cfg(test)]
mod delta_tests;
