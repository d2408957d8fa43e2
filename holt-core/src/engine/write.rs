//! Applying resolved log ops to frames the batch has latched. Ops land only
//! in owned frames (see the landing invariant in `tree`); a spill adds the
//! frames it creates to the owned set.

use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::op::LogOp;
use crate::ids::FrameId;
use crate::layout::Slot;
use crate::tree::descend::{corrupt_frame, retry, try_locate, FrameView, Landing, Walk};
use crate::tree::insert::{put_in_frame, Put};
use crate::tree::remove::{delete_in_frame, Del};
use crate::tree::spill::spill;
use crate::tree::Owned;
use crate::store::pool::Pool;

/// Spill rounds one insert may need before the frame is declared unusable.
const SPILLS_PER_PUT_MAX: usize = 64;
/// Attempts to latch a landing frame held by another writer.
const LAND_TRIES_MAX: usize = 1_000_000;

/// Net change in the number of keys.
pub(crate) type KeyDelta = i64;

/// Where the batch's first key landed during its footprint: still exact
/// when the batch applies its first op, as the frame is latched at the
/// version the footprint saw. Saves that op a second descent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hint {
    pub frame: FrameId,
    pub entry: (Slot, usize),
}

/// Where `key` lands, latching the landing frame if the batch does not own
/// it yet (possible only for frames a concurrent spill just created from a
/// frame we did not need; a try-lock keeps this deadlock-free). A hint is
/// used once, for the batch's first op.
fn land<'p>(pool: &'p Pool, owned: &mut Owned<'p>, key: &[u8], hint: &mut Option<Hint>) -> Result<Landing<'p>> {
    if let Some(h) = hint.take() {
        if let Some(cell) = owned.get(h.frame) {
            let buf = cell.buf().expect("an owned frame is resident");
            let view = FrameView { id: h.frame, cell, buf, version: None };
            return Ok(Landing { view, walk: Walk::Miss, entry: h.entry });
        }
    }
    for _ in 0..LAND_TRIES_MAX {
        let landing = retry(pool, || try_locate(pool, owned, key))?;
        if landing.view.version.is_none() {
            return Ok(landing);
        }
        let cell = landing.view.cell;
        if let Some(v) = landing.view.version {
            if cell.latch.try_upgrade(v) {
                owned.push(landing.view.id, cell);
                continue;
            }
        }
        std::thread::yield_now();
    }
    Err(Error::corrupted("frames", 0, "could not latch the frame a batch key lands in"))
}

fn put<'p>(pool: &'p Pool, owned: &mut Owned<'p>, kv: (&[u8], &[u8]), lsn: Lsn, hint: &mut Option<Hint>) -> Result<KeyDelta> {
    let (key, value) = kv;
    for _ in 0..SPILLS_PER_PUT_MAX {
        let landing = land(pool, owned, key, hint)?;
        let b = landing.view.buf;
        match put_in_frame(b, landing.entry, key, value, lsn.0) {
            Put::Done { inserted } => return Ok(KeyDelta::from(inserted)),
            Put::NeedSpace(need) => {
                if !spill(pool, owned, landing.view.id, need) {
                    return Err(corrupt_frame(landing.view.id, "no subtree can move to make room"));
                }
            }
            Put::Redirect => continue,
            Put::Corrupt => return Err(corrupt_frame(landing.view.id, "unreadable node on insert")),
        }
    }
    Err(Error::corrupted("frames", 0, "insert found no room after repeated spills"))
}

fn delete<'p>(pool: &'p Pool, owned: &mut Owned<'p>, key: &[u8], hint: &mut Option<Hint>) -> Result<KeyDelta> {
    for _ in 0..SPILLS_PER_PUT_MAX {
        let landing = land(pool, owned, key, hint)?;
        match delete_in_frame(landing.view.buf, landing.entry, key) {
            Del::Done { prev } => return Ok(-KeyDelta::from(prev.is_some())),
            Del::Redirect => continue,
            Del::Corrupt => return Err(corrupt_frame(landing.view.id, "unreadable node on delete")),
        }
    }
    Err(Error::corrupted("frames", 0, "delete kept being redirected"))
}

/// Apply `ops` in order with version `lsn`; `hint` is where the first op's
/// first key lands. Returns the net key delta.
pub(crate) fn apply_ops<'p>(
    pool: &'p Pool,
    owned: &mut Owned<'p>,
    ops: &[LogOp],
    lsn: Lsn,
    mut hint: Option<Hint>,
) -> Result<KeyDelta> {
    let mut delta = 0;
    for op in ops {
        let h = &mut hint;
        delta += match op {
            LogOp::Put { key, value } => put(pool, owned, (key, value), lsn, h)?,
            LogOp::Delete { key } => delete(pool, owned, key, h)?,
            LogOp::Rename { src, dst, value } => delete(pool, owned, src, h)? + put(pool, owned, (dst, value), lsn, h)?,
        };
        hint = None;
    }
    owned.stamp_lsn(lsn);
    Ok(delta)
}
