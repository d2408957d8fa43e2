//! `compact()`: one bounded step of online maintenance. Each step visits up
//! to `FRAMES_PER_STEP` frames from a rotating cursor; for each it compacts
//! dead space above a threshold and folds small linked child frames back in.
//! Frames are latched with try-lock only, so maintenance never blocks or
//! deadlocks with writers; a busy frame is simply skipped this round.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::FrameId;
use crate::layout::space::compact;
use crate::store::pool::Pool;
use crate::tree::merge::{link_slots, merge_link};
use crate::tree::spill::{entry_slots, FRAME_DATA_BYTES};
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
    if b.dead_bytes() > DEAD_BYTES_COMPACT {
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
