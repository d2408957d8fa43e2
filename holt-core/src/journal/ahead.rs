//! Work done ahead of the writer, on a flusher thread, so that sealing a
//! full segment costs the writer little:
//! - seals: the fdatasync of each segment a rotation sealed
//!   (`Journal::sync_seals`), which the rotation no longer waits for;
//! - space ahead: the active segment's disk space is reserved
//!   `RESERVE_AHEAD_BYTES` past the log's end (up to the size it seals at),
//!   so the writer's own reservations (`fallocate`, which allocates blocks
//!   and can wait on the disk for a block bitmap, tens of ms behind a
//!   checkpoint's writes) find the space reserved;
//! - pages ahead: the next `FAULT_AHEAD_BYTES` of the active segment past
//!   the log's end (and the spare's first ones) are brought into the page
//!   cache (`FileIo::will_need`), so the writer's first store to each page
//!   of the mapping (which reads no page ahead itself: `SharedMap`) finds
//!   it cached: about 2 µs of put p99 (benches/RESULTS.md run 18); and the
//!   next `MAP_AHEAD_BYTES` are mapped writable in the writer's mapping
//!   (`SharedMap::populate_write`), so that store takes no page fault at
//!   all: about 3 µs more of put p99 (run 45);
//! - writeback: every `WRITEBACK_STEP_BYTES` of log, the active segment's
//!   whole pages written since the last step are queued for writeback
//!   (`FileIo::start_writeback`), so the fdatasync that seals the segment
//!   finds little left to write; their entries in the writer's mapping
//!   are dropped first, in one batch (cleaning a mapped page flushes its
//!   TLB entry on every CPU, one page at a time: interrupts that cost the
//!   writer about 2.5 µs of p99, benches/RESULTS.md run 16);
//! - the spare: the file the next segment will be, created under
//!   `SPARE_NAME`, its first space reserved and mapped, so a rotation only
//!   renames it and writes its header (`Journal::adopt_spare`);
//! - while the store's space reserve is spent (`SpaceReserve::is_low`)
//!   neither the space ahead nor the spare's space is reserved: space that
//!   frees up goes to the reserve first, and the writer allocates what its
//!   appends need itself, as it does where the flusher never ran;
//! - names: the directory is fsync'd once the active segment's name is new,
//!   so neither the next sync nor the next rotation has to;
//! - unmapping: a sealed segment's mapping (16 MiB of page tables) is
//!   dropped here rather than by the writer that sealed it.
//!
//! Invariants:
//! - Only a seal's fdatasync makes records durable here, and it raises
//!   `synced_lsn` exactly as a sync would (`sync_seals`, shared with every
//!   sync, which runs the seals still pending itself). Nothing else changes
//!   what recovery reads: writeback is a hint (no flush, no metadata);
//!   mapping pages ahead changes no byte (a sync may write those pages:
//!   zeros over reserved zeros, which recovery reads as the log's end); the
//!   spare is not a segment (open ignores the name) until a rotation,
//!   holding the I/O lock, renames it after the sealed segment's name is
//!   durable; a directory fsync here clears `dir_dirty` only if the
//!   segment whose name it found new is still the active one.
//! - Any step may fail or never run: the writer then does the work itself
//!   as before (creates the segment, syncs the directory, syncs the seals
//!   before its own sync). A failed seal fdatasync poisons the journal (the
//!   segment's durability is unknown, and a retried fdatasync may report
//!   success for data it lost); any other failure here is logged and
//!   poisons nothing.
//! - The flusher holds only a weak reference to the journal and takes the
//!   I/O lock only to read the active segment or its `dir_dirty` flag,
//!   never across a system call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::active::{self, ActiveSegment};
use super::segment;
use super::Journal;
use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::store::reserve::io_is_no_space;
use crate::store::shared_map::SharedMap;
use crate::store::vfs::FileIo;

/// Name of the spare file in the WAL directory; not a segment name.
pub(crate) const SPARE_NAME: &str = "spare-segment.tmp";
/// Log bytes between two writeback requests for the active segment: what
/// is left, at most, for the fdatasync that seals it.
pub(crate) const WRITEBACK_STEP_BYTES: u64 = 256 << 10;
/// Disk space the flusher keeps reserved past the log's end.
const RESERVE_AHEAD_BYTES: u64 = 4 << 20;
/// Bytes past the log's end brought into the page cache ahead of the
/// writer, at each writeback step and for a new spare.
const FAULT_AHEAD_BYTES: u64 = 1 << 20;
/// Bytes past the log's end mapped writable ahead of the writer, at each
/// writeback step and for a new spare: two steps, so the writer finds
/// them mapped while the flusher wakes for the next step, and little
/// enough that a sync writes few of them before the writer does.
pub(super) const MAP_AHEAD_BYTES: u64 = 2 * WRITEBACK_STEP_BYTES;
/// Writeback covers whole pages only: the writer may still be copying
/// into the page that holds the log's end.
const PAGE_BYTES: u64 = 4096;
/// Longest the flusher sleeps without a nudge.
const POLL_MAX: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(crate) struct Ahead {
    /// A prepared spare, taken by the next rotation.
    pub(super) spare: Mutex<Option<ActiveSegment>>,
    /// The spare slot was emptied (open, a rotation's rename) and not yet
    /// refilled: the flusher tries once, so a failing disk costs one try
    /// per rotation. Set only once no spare file is in use under
    /// `SPARE_NAME`, which the flusher empties when it prepares one.
    spare_wanted: AtomicBool,
    /// Segment (by first LSN) and offset below which writeback was
    /// requested.
    written_back: Mutex<(Lsn, u64)>,
    /// A sealed segment's mapping, to unmap (no one writes to it).
    retired_map: Mutex<Option<Arc<SharedMap>>>,
    /// First LSN of the segment whose space the flusher may extend (0:
    /// none). Cleared by a seal before it cuts the segment, under
    /// `reserving`, so no reservation extends a cut segment again.
    pub(super) reservable: AtomicU64,
    /// Held across the flusher's `fallocate` and a seal's cut.
    pub(super) reserving: Mutex<()>,
    signal: Arc<Signal>,
    thread: Mutex<Option<(ThreadId, JoinHandle<()>)>>,
}

/// What the flusher sleeps on; apart from the journal, which it does not
/// keep alive while asleep.
#[derive(Default)]
struct Signal {
    wake: AtomicBool,
    stop: Mutex<bool>,
    cv: Condvar,
}

impl Ahead {
    pub(crate) fn new() -> Self {
        let ahead = Ahead::default();
        ahead.spare_wanted.store(true, Ordering::Relaxed);
        ahead
    }

    #[cfg(test)]
    pub(crate) fn has_spare(&self) -> bool {
        self.spare.lock().is_some()
    }

    #[cfg(test)]
    pub(crate) fn has_retired_map(&self) -> bool {
        self.retired_map.lock().is_some()
    }

    /// Leave a sealed segment's mapping to the flusher. One is kept at a
    /// time: an older one still here (the flusher did not run for a whole
    /// segment) is unmapped now.
    pub(crate) fn retire_map(&self, map: Option<Arc<SharedMap>>) {
        let Some(map) = map else { return };
        let older = self.retired_map.lock().replace(map);
        drop(older);
    }

    /// Ask the flusher to look for work now. One atomic swap unless it was
    /// not yet asked: then the notification is sent holding the mutex the
    /// flusher checks `wake` under, so it cannot fall between that check
    /// and the wait (later nudges, `wake` already set, would not repeat it).
    pub(crate) fn nudge(&self) {
        if !self.signal.wake.swap(true, Ordering::AcqRel) {
            let _checked = self.signal.stop.lock();
            self.signal.cv.notify_one();
        }
    }
}

impl Journal {
    /// Start the flusher thread (persistent stores that write).
    pub(crate) fn start_flusher(self: &Arc<Self>) {
        let (weak, signal) = (Arc::downgrade(self), self.ahead.signal.clone());
        let spawned = thread::Builder::new().name("holt-wal-flusher".into()).spawn(move || flusher(weak, signal));
        match spawned {
            Ok(h) => *self.ahead.thread.lock() = Some((h.thread().id(), h)),
            Err(e) => log::error!("cannot start the WAL flusher (rotations will do its work): {e}"),
        }
    }

    /// Stop the flusher and wait for it, unless called from it.
    pub(crate) fn stop_flusher(&self) {
        *self.ahead.signal.stop.lock() = true;
        self.ahead.signal.cv.notify_all();
        if let Some((id, handle)) = self.ahead.thread.lock().take() {
            if id != thread::current().id() && handle.join().is_err() {
                log::error!("the WAL flusher panicked");
            }
        }
    }

    /// One round of the flusher's work; each step is skipped when there is
    /// nothing to do. Tests call it to interleave it with writes.
    pub(crate) fn work_ahead(&self) {
        let retired = self.ahead.retired_map.lock().take();
        drop(retired);
        if self.poisoned.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.sync_seals() {
            self.poison(&e);
            return;
        }
        if let Err(e) = self.write_back() {
            log::warn!("WAL writeback request failed (the next sync writes it): {e}");
        }
        if let Err(e) = self.prepare_spare() {
            log::warn!("could not prepare the next WAL segment (the rotation creates it): {e}");
        }
        if let Err(e) = self.sync_new_name() {
            log::warn!("WAL directory fsync failed (the next sync repeats it): {e}");
        }
    }

    /// Queue the active segment's full pages past the last request for
    /// writeback, once they make a step.
    fn write_back(&self) -> Result<()> {
        // Nothing allocated or waited for under the lock: a flusher
        // preempted while holding it would stall the writer.
        let (file, map, first, len, reserved) = {
            let io = self.io.lock();
            let a = &io.active;
            (a.file.clone(), a.mapping(), a.first_lsn, a.len, a.reserved())
        };
        let reserved = self.reserve_ahead(&file, first, len, reserved)?;
        let mut done = self.ahead.written_back.lock();
        if done.0 != first {
            *done = (first, 0);
        }
        let upto = len / PAGE_BYTES * PAGE_BYTES;
        if upto < done.1 + WRITEBACK_STEP_BYTES {
            return Ok(());
        }
        // Cleaning a page the writer still maps flushes its TLB entry on
        // the writer's CPU, one page at a time; dropping the written pages'
        // entries first costs one batched flush.
        if let (Some(map), Ok(from), Ok(len)) = (map.as_ref(), usize::try_from(done.1), usize::try_from(upto - done.1)) {
            if let Err(e) = map.drop_ptes(from, len) {
                log::debug!("WAL pages stay mapped during their writeback: {e}");
            }
        }
        let path = || segment::segment_path(&self.dir, first);
        file.start_writeback(done.1, upto - done.1).map_err(|e| Error::io("sync_file_range", path(), e))?;
        done.1 = upto;
        // A hint: where it fails, the writer's faults fill their pages.
        if let Err(e) = file.will_need(upto, FAULT_AHEAD_BYTES) {
            log::debug!("{}: pages ahead of the WAL's end not brought in: {e}", path().display());
        }
        if let Some(map) = map {
            map_ahead(&map, upto, reserved, &path());
        }
        Ok(())
    }

    /// Reserve the active segment's disk space `RESERVE_AHEAD_BYTES` past
    /// `len` (up to the size it seals at), unless the segment is no longer
    /// the one to extend, and tell the segment; returns how far space is
    /// reserved. The `fallocate` runs without the I/O lock; a seal cutting
    /// the segment meanwhile waits for it (`reserving`), then forbids the
    /// next.
    fn reserve_ahead(&self, file: &Arc<dyn FileIo>, first: Lsn, len: u64, reserved: u64) -> Result<u64> {
        if self.reserve.is_low() {
            return Ok(reserved);
        }
        let step = active::MAP_GROW_BYTES;
        let to = (len + RESERVE_AHEAD_BYTES).div_ceil(step).saturating_mul(step);
        let to = to.min(active::seal_bytes_for(self.map_bytes()));
        if to <= reserved + step {
            return Ok(reserved);
        }
        {
            let _reserving = self.ahead.reserving.lock();
            if self.ahead.reservable.load(Ordering::Acquire) != first.0 {
                return Ok(reserved);
            }
            match file.allocate(reserved, to - reserved) {
                Ok(()) => {}
                // The writer reserves (or writes) for itself on a full disk,
                // and appends with write(2) where nothing can be reserved.
                Err(e) if io_is_no_space(&e) || e.kind() == std::io::ErrorKind::Unsupported => return Ok(reserved),
                Err(e) => return Err(Error::io("fallocate", segment::segment_path(&self.dir, first), e)),
            }
        }
        let mut io = self.io.lock();
        if io.active.first_lsn == first {
            io.active.note_reserved(to);
        }
        Ok(to)
    }

    /// Create, reserve and map the spare if the slot is empty and wanted.
    /// An old spare file (from before a crash) is emptied and reused.
    fn prepare_spare(&self) -> Result<()> {
        if !self.ahead.spare_wanted.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let path = self.dir.join(SPARE_NAME);
        let file = self.vfs.open(&path, true).map_err(|e| Error::io("create", &path, e))?;
        file.set_len(0).map_err(|e| Error::io("truncate", &path, e))?;
        let spare = ActiveSegment::prepare(file.clone(), path.clone(), self.map_bytes(), !self.reserve.is_low());
        if let Err(e) = file.will_need(0, FAULT_AHEAD_BYTES) {
            log::debug!("{}: the spare's first pages not brought in: {e}", path.display());
        }
        if let Some(map) = spare.mapping() {
            map_ahead(&map, 0, spare.reserved(), &path);
        }
        *self.ahead.spare.lock() = Some(spare);
        Ok(())
    }

    /// fsync the directory if the active segment's name is not durable yet.
    fn sync_new_name(&self) -> Result<()> {
        let path = {
            let io = self.io.lock();
            if !io.dir_dirty {
                return Ok(());
            }
            io.active.path.clone()
        };
        self.sync_active_name(&path)
    }

    /// The spare, renamed to the segment whose first record is `first` and
    /// given its header; `None` (the caller creates the segment) when there
    /// is no spare or a step failed. Called by a rotation, holding the I/O
    /// lock, after the sealed segment's name is durable: the new name may
    /// exist only then (FORMAT.md, recovery rules).
    pub(super) fn adopt_spare(&self, first: Lsn) -> Option<ActiveSegment> {
        let mut spare = self.ahead.spare.lock().take()?;
        let path = segment::segment_path(&self.dir, first);
        let renamed = self.vfs.rename(&spare.path, &path);
        if let Err(e) = renamed {
            log::warn!("{}: could not rename the spare WAL segment: {e}", spare.path.display());
            drop(spare);
            self.ahead.spare_wanted.store(true, Ordering::Release);
            return None;
        }
        // The file has left `SPARE_NAME`: the flusher may make the next one.
        self.ahead.spare_wanted.store(true, Ordering::Release);
        // On failure the file keeps the new name; creating the segment
        // afresh empties it and writes its header.
        match spare.adopt(path, first, self.map_bytes()) {
            Ok(()) => Some(spare),
            Err(e) => {
                log::warn!("{}: could not write the WAL segment header: {e}", spare.path.display());
                None
            }
        }
    }

    /// At close: remove an unused spare (best effort; open ignores it).
    pub(super) fn drop_spare(&mut self) {
        if let Some(spare) = self.ahead.spare.get_mut().take() {
            let path = spare.path.clone();
            drop(spare);
            if let Err(e) = self.vfs.remove(&path) {
                log::debug!("{}: could not remove the spare WAL segment: {e}", path.display());
            }
        }
    }
}

/// Map the pages of the `MAP_AHEAD_BYTES` from `from` writable in the
/// writer's mapping (no further than `reserved`, which lies inside the
/// file), so its first store to each finds it mapped. A hint: the pages'
/// bytes do not change, and where it fails the writer's faults map them.
fn map_ahead(map: &SharedMap, from: u64, reserved: u64, path: &std::path::Path) {
    let to = (from + MAP_AHEAD_BYTES).min(reserved);
    let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else { return };
    if to > from {
        if let Err(e) = map.populate_write(from, to - from) {
            log::debug!("{}: pages ahead of the WAL's end not mapped: {e}", path.display());
        }
    }
}

fn flusher(weak: Weak<Journal>, signal: Arc<Signal>) {
    loop {
        {
            let mut stop = signal.stop.lock();
            if !*stop && !signal.wake.load(Ordering::Acquire) {
                signal.cv.wait_for(&mut stop, POLL_MAX);
            }
            if *stop {
                return;
            }
        }
        signal.wake.store(false, Ordering::Release);
        let Some(journal) = weak.upgrade() else { return };
        journal.work_ahead();
    }
}
