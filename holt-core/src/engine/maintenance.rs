//! `compact()`: one bounded step of online maintenance. Each step visits up
//! to `FRAMES_PER_STEP` frames from a rotating cursor; for each it lays the
//! frame out in key order if enough nodes were placed out of order
//! (`tree::tidy`), else compacts dead space above a threshold, and folds
//! small linked child frames back in. Before the cut of a checkpoint asked
//! for or due on the timer alone, every resident frame that wants it, and
//! every dirty one out of preorder, is tidied (`tidy_resident`), so what
//! the checkpoint writes, and what later reads walk, is in key order.
//! Frames are latched with try-lock only, so maintenance never blocks or
//! deadlocks with writers; a busy frame is simply skipped this round.
//!
//! `spill_ahead` makes room in a frame writers found nearly full
//! (`store::ahead`) before one of them must: the spill (and compaction) a
//! writer would otherwise run on its own path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::ids::FrameId;
use crate::layout::space::{compact, free_bytes, INSERT_COMPACT_DEAD_BYTES_MIN};
use crate::layout::FrameBuf;
use crate::store::pool::{FrameCell, Pool};
use crate::tree::merge::{bypass_forwards, link_slots, merge_link};
use crate::tree::spill::{entry_slots, spill_from, FRAME_DATA_BYTES};
use crate::tree::tidy::{plan, wants_tidy, Shape};
use crate::tree::Owned;

/// Frames visited by one `compact()` call.
const FRAMES_PER_STEP: usize = 64;
/// Dead bytes above this share of a frame make it worth compacting.
const DEAD_BYTES_COMPACT: usize = FRAME_DATA_BYTES / 8;

#[derive(Default)]
pub(crate) struct Cursor {
    next: AtomicU64,
}

pub(crate) fn step(pool: &Pool, cursor: &Cursor) {
    let ids = pool.live_ids();
    if ids.is_empty() {
        return;
    }
    let start = cursor.next.fetch_add(FRAMES_PER_STEP as u64, Ordering::Relaxed) as usize;
    for i in 0..FRAMES_PER_STEP.min(ids.len()) {
        visit(pool, ids[(start + i) % ids.len()]);
    }
}

fn visit(pool: &Pool, id: FrameId) {
    let Some(cell) = pool.cell(id).filter(|c| c.is_live()) else { return };
    if !pool.try_lock_resident(id, cell).unwrap_or(false) {
        return;
    }
    let mut owned = Owned::new(pool);
    owned.push(id, cell);
    let b = cell.buf().expect("a latched frame loaded under its latch is resident");
    let mut changed = false;
    if let Some(tidied) = wants_tidy(b).then(|| plan(b, Shape::for_pool(pool))).flatten() {
        tidied.install(b);
        pool.counters.tidies.add(1);
        changed = true;
    } else if b.dead_bytes() > DEAD_BYTES_COMPACT {
        compact(b);
        pool.counters.compactions.add(1);
        changed = true;
    }
    for slot in link_slots(b, &entry_slots(b)) {
        changed |= merge_link(pool, &mut owned, id, slot);
    }
    if changed {
        owned.release_dirty();
    } else {
        owned.release_clean();
    }
}

/// Make room in frame `id` if its free gap is still below `room`: compact
/// it when that wins back as much as an insert's compaction would (and
/// twice `room`), else spill half its live bytes into a new frame and
/// compact what that left dead. The work is done on a private copy of the
/// frame, read optimistically; the frame is taken only to install the
/// result, if no writer changed it meanwhile (else the new frame is
/// retired and the writers make their own room, as without this). So a
/// writer landing there waits for a 512 KiB copy at most, not for a spill,
/// nor for this thread to be scheduled again mid-spill. Caller holds the
/// commit gate (a cut between the new frame and the install would store a
/// frame nothing links to). Returns whether the frame changed.
pub(crate) fn spill_ahead(pool: &Pool, id: FrameId, room: usize) -> bool {
    let Some(cell) = pool.cell(id).filter(|c| c.is_live()) else { return false };
    let Some(version) = cell.latch.optimistic() else { return false };
    // Read after the version: an eviction in between moves it.
    let Some(b) = cell.buf().filter(|&b| free_bytes(b) < room) else { return false };
    COPY.with(|copy| {
        copy.copy_from(b);
        if !cell.latch.validate(version) {
            pool.ahead.cool(id);
            return false;
        }
        make_room(pool, (id, cell, b), version, copy, room)
    })
}

thread_local! {
    /// The frame `spill_ahead` works on (one per thread, reused).
    static COPY: FrameBuf = FrameBuf::plain();
}

/// `spill_ahead` on `copy`, a consistent copy of the frame at `version`.
pub(super) fn make_room(pool: &Pool, frame: (FrameId, &FrameCell, &FrameBuf), version: u64, copy: &FrameBuf, room: usize) -> bool {
    let (id, cell, b) = frame;
    let (free, dead) = (free_bytes(copy), copy.dead_bytes());
    if free >= room {
        return false;
    }
    let mut owned = Owned::new(pool);
    let spilled = !(dead >= INSERT_COMPACT_DEAD_BYTES_MIN && free + dead >= 2 * room);
    if spilled && !spill_from(pool, &mut owned, copy, id, 0) {
        return false;
    }
    compact(copy);
    if !cell.latch.try_upgrade(version) {
        owned.forwards.clear();
        owned.retire_all();
        pool.ahead.cool(id);
        return false;
    }
    owned.push(id, cell);
    b.copy_from(copy);
    if spilled {
        pool.counters.spills.add(1);
        pool.counters.spills_ahead.add(1);
    }
    pool.counters.compactions.add(1);
    bypass_forwards(pool, &mut owned);
    owned.release_dirty();
    true
}

/// Tidy every resident frame that wants it and no writer holds: dirty
/// ones, and clean ones a checkpoint under pressure wrote untidy (which a
/// tidy dirties: the checkpoint that follows writes them once more); and
/// every dirty frame out of a tidy's preorder, however few nodes moved:
/// the checkpoint writes it anyway, and scans read it as runs after
/// (`tree::scan_run`).
pub(crate) fn tidy_resident(pool: &Pool) {
    tidy_resident_as(pool, Shape::for_pool(pool));
}

/// `tidy_resident` in a given shape (tests lay out in-memory trees as
/// trees larger than the cache would be). Frames are tidied by up to
/// `TIDY_THREADS_MAX` threads at once (the caller's and scoped ones), each
/// taking the next frame in turn: every tidy is independent (a frame's
/// own latch, thread-local scratch), and a checkpoint asked for waits on
/// them (after a 1M-key load, 388 frames: ~150 ms of a ~650 ms checkpoint
/// on one thread here, 78-92 ms on two; benches/RESULTS.md run 41).
pub(crate) fn tidy_resident_as(pool: &Pool, shape: Shape) {
    let ids = pool.live_ids();
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(&id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
            tidy_frame(pool, id, shape);
        }
    };
    let helpers = tidy_threads(ids.len()) - 1;
    if helpers == 0 {
        return work();
    }
    std::thread::scope(|s| {
        for _ in 0..helpers {
            if let Err(e) = std::thread::Builder::new().name("holt-tidy".into()).spawn_scoped(s, work) {
                log::debug!("tidy helper not started (the others do its share): {e}");
                break;
            }
        }
        work();
    });
}

/// Most threads a tidy of the resident frames uses.
const TIDY_THREADS_MAX: usize = 4;
/// Frames per tidy thread below which another thread does not pay for
/// its start (and its scratch's first growth).
const FRAMES_PER_TIDY_THREAD: usize = 32;

/// Threads to tidy `frames` frames with: one per core, at most
/// `TIDY_THREADS_MAX`, each with at least `FRAMES_PER_TIDY_THREAD` frames.
fn tidy_threads(frames: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.min(TIDY_THREADS_MAX).min(frames / FRAMES_PER_TIDY_THREAD).max(1)
}

/// Plan the layout from an optimistic copy and take the frame only to
/// install it, if no writer came meanwhile: a writer waits for the two
/// writes of the install, not for the walk.
fn tidy_frame(pool: &Pool, id: FrameId, shape: Shape) {
    let Some(cell) = pool.cell(id).filter(|c| c.is_live()) else { return };
    let Some(version) = cell.latch.optimistic() else { return };
    // Read after the version: an eviction in between moves it.
    let Some(b) = cell.buf().filter(|&b| wants_tidy(b) || (cell.is_dirty() && !b.in_preorder())) else { return };
    let Some(tidied) = plan(b, shape) else { return };
    if !cell.latch.try_upgrade(version) {
        return;
    }
    let mut owned = Owned::new(pool);
    owned.push(id, cell);
    tidied.install(b);
    pool.counters.tidies.add(1);
    owned.release_dirty();
}
