//! `compact()`: one bounded step of online maintenance. Each step visits up
//! to `FRAMES_PER_STEP` frames from a rotating cursor; for each it lays the
//! frame out in key order if enough nodes were placed out of order
//! (`tree::tidy`), else compacts dead space above a threshold, and folds
//! small linked child frames back in. Before the cut of a checkpoint asked
//! for or due on the timer alone, every resident frame that wants it is
//! tidied (`tidy_resident`), so what the checkpoint writes, and what later
//! reads walk, is in key order.
//! Frames are latched with try-lock only, so maintenance never blocks or
//! deadlocks with writers; a busy frame is simply skipped this round.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::FrameId;
use crate::layout::space::compact;
use crate::store::pool::Pool;
use crate::tree::merge::{link_slots, merge_link};
use crate::tree::spill::{entry_slots, FRAME_DATA_BYTES};
use crate::tree::tidy::{plan, wants_tidy};
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
    if let Some(tidied) = wants_tidy(b).then(|| plan(b)).flatten() {
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

/// Tidy every resident frame that wants it and no writer holds: dirty
/// ones, and clean ones a checkpoint under pressure wrote untidy (which a
/// tidy dirties: the checkpoint that follows writes them once more).
pub(crate) fn tidy_resident(pool: &Pool) {
    for id in pool.live_ids() {
        tidy_frame(pool, id);
    }
}

/// Plan the layout from an optimistic copy and take the frame only to
/// install it, if no writer came meanwhile: a writer waits for the two
/// writes of the install, not for the walk.
fn tidy_frame(pool: &Pool, id: FrameId) {
    let Some(cell) = pool.cell(id).filter(|c| c.is_live()) else { return };
    let Some(version) = cell.latch.optimistic() else { return };
    // Read after the version: an eviction in between moves it.
    let Some(b) = cell.buf().filter(|&b| wants_tidy(b)) else { return };
    let Some(tidied) = plan(b) else { return };
    if !cell.latch.try_upgrade(version) {
        return;
    }
    let mut owned = Owned::new(pool);
    owned.push(id, cell);
    tidied.install(b);
    pool.counters.tidies.add(1);
    owned.release_dirty();
}
