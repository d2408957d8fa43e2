//! Applying resolved log ops to frames the batch has latched. Ops land only
//! in owned frames (see the landing invariant in `tree`); a spill adds the
//! frames it creates to the owned set.

use super::fault::{self, Step};
use crate::error::{Error, Result};
use crate::ids::{FrameId, Lsn};
use crate::layout::space::{ensure, free_bytes};
use crate::layout::{FrameBuf, Slot};
use crate::op::LogOp;
use crate::store::pool::Pool;
use crate::tree::descend::{corrupt_frame, retry, try_locate, walk_frame, FrameView, Landing, Walk};
use crate::tree::insert::{put_in_frame, Put};
use crate::tree::merge::bypass_forwards;
use crate::tree::remove::{delete_in_frame, Del};
use crate::tree::spill::spill;
use crate::tree::Owned;

/// Free bytes below which a frame an insert landed in is queued for the
/// background thread to make room in (`store::ahead`): room for hundreds
/// of inserts while it gets there.
pub(crate) const AHEAD_ROOM_BYTES: usize = crate::tree::spill::FRAME_DATA_BYTES / 8;

/// Spill rounds one insert may need before the frame is declared unusable.
const SPILLS_PER_PUT_MAX: usize = 64;
/// Attempts to latch a landing frame held by another writer.
const LAND_TRIES_MAX: usize = 1_000_000;

/// Net change in the number of keys.
pub(crate) type KeyDelta = i64;

/// Where a key of the batch landed during its footprint: the frame and the
/// slot and key depth at which the walk entered it. The frame is latched at
/// the version the footprint saw, and every later change the batch makes
/// stays in frames it owns (its landing frames and frames their spills
/// create), so walking from the hint finds the key's landing without ever
/// touching a frame another writer may hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hint {
    pub frame: FrameId,
    pub entry: (Slot, usize),
}

/// Hints of every key a batch touches, sorted by key, each key once
/// (`batch::footprint`), so a lookup is a binary search.
pub(crate) type Hints = Vec<(Vec<u8>, Hint)>;

pub(crate) fn hint_for(hints: &Hints, key: &[u8]) -> Option<Hint> {
    let i = hints.binary_search_by(|(k, _)| k.as_slice().cmp(key)).ok()?;
    Some(hints[i].1)
}

/// Walk from `hint` to where `key` lands, following links only into frames
/// this batch owns (latching, without blocking, a link target it does not
/// own yet, which the hint invariant says never happens).
pub(crate) fn land_from<'p>(pool: &'p Pool, owned: &mut Owned<'p>, hint: Hint, key: &[u8]) -> Result<Landing<'p>> {
    let (mut id, (mut slot, mut depth)) = (hint.frame, hint.entry);
    for _ in 0..LAND_TRIES_MAX {
        if !owned.contains(id) {
            let cell = pool.cell(id).filter(|c| c.is_live()).ok_or_else(|| corrupt_frame(id, "hinted frame is gone"))?;
            if !pool.try_lock_resident(id, cell)? {
                std::thread::yield_now();
                continue;
            }
            owned.push(id, cell);
        }
        let cell = owned.get(id).expect("owned just above");
        let buf = cell.buf().expect("an owned frame is resident");
        match walk_frame(buf, slot, depth, key) {
            Walk::Link(f, s, d) => (id, slot, depth) = (f, s, d),
            Walk::Torn => return Err(corrupt_frame(id, "unreadable node under a latch")),
            walk => {
                let view = FrameView { id, cell, buf, version: None, pages: None };
                return Ok(Landing { view, walk, entry: (slot, depth) });
            }
        }
    }
    Err(Error::corrupted("frames", 0, "could not latch the frame a batch key lands in"))
}

/// Where `key` lands: from its hint when the batch has one (always, for a
/// batch), else by a descent that latches the landing frame (replay at open,
/// which runs alone).
fn land<'p>(pool: &'p Pool, owned: &mut Owned<'p>, key: &[u8], hint: Option<Hint>) -> Result<Landing<'p>> {
    if let Some(h) = hint {
        return land_from(pool, owned, h, key);
    }
    for _ in 0..LAND_TRIES_MAX {
        let landing = retry(owned, || try_locate(pool, owned, key))?;
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

/// The hinted frame's buffer when the batch owns it: the key's walk can
/// start at the hint's entry with no walk to find the landing first (a link
/// met on the way makes the op redirect, and the caller lands properly).
fn hinted_buf<'a>(owned: &'a Owned<'_>, hint: Option<Hint>) -> Option<(&'a crate::layout::FrameBuf, Hint)> {
    let h = hint?;
    Some((owned.get(h.frame)?.buf()?, h))
}

fn put<'p>(pool: &'p Pool, owned: &mut Owned<'p>, kv: (&[u8], &[u8]), lsn: Lsn, hint: Option<Hint>) -> Result<KeyDelta> {
    let (key, value) = kv;
    if let Some((b, h)) = hinted_buf(owned, hint) {
        match put_in_frame(b, h.entry, key, value, lsn.0) {
            Put::Done { inserted } => return Ok(inserted_into(pool, (h.frame, b), inserted)),
            Put::Corrupt => return Err(corrupt_frame(h.frame, "unreadable node on insert")),
            Put::NeedSpace(_) | Put::Redirect => {}
        }
    }
    for _ in 0..SPILLS_PER_PUT_MAX {
        let landing = land(pool, owned, key, hint)?;
        let b = landing.view.buf;
        match put_in_frame(b, landing.entry, key, value, lsn.0) {
            Put::Done { inserted } => return Ok(inserted_into(pool, (landing.view.id, b), inserted)),
            Put::NeedSpace(need) => {
                // A frame with nothing movable may still have dead bytes
                // that an insert would not compact for on its own.
                if !spill(pool, owned, landing.view.id, need) && !ensure(b, need) {
                    return Err(corrupt_frame(landing.view.id, "no subtree can move to make room"));
                }
                fault::point(Step::AfterSpill)?;
            }
            Put::Redirect => continue,
            Put::Corrupt => return Err(corrupt_frame(landing.view.id, "unreadable node on insert")),
        }
    }
    Err(Error::corrupted("frames", 0, "insert found no room after repeated spills"))
}

/// A put landed in frame `id` (`b`): where room is made ahead, queue the
/// frame while its free gap is below `AHEAD_ROOM_BYTES` and the cache has
/// room for the tree twice over (`store::ahead`, `Engine::spill_ahead`).
/// Returns the put's key delta.
fn inserted_into(pool: &Pool, frame: (FrameId, &FrameBuf), inserted: bool) -> KeyDelta {
    let (id, b) = frame;
    if pool.ahead.is_on() && free_bytes(b) < AHEAD_ROOM_BYTES && pool.holds_tree_twice() {
        pool.ahead.want(id);
    }
    KeyDelta::from(inserted)
}

fn delete<'p>(pool: &'p Pool, owned: &mut Owned<'p>, key: &[u8], hint: Option<Hint>) -> Result<KeyDelta> {
    if let Some((b, h)) = hinted_buf(owned, hint) {
        match delete_in_frame(b, h.entry, key) {
            Del::Done { prev } => return Ok(-KeyDelta::from(prev.is_some())),
            Del::Corrupt => return Err(corrupt_frame(h.frame, "unreadable node on delete")),
            Del::Redirect => {}
        }
    }
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

/// Apply one op, landing from `hint`; no stamp (see `apply_ops`).
fn apply_op<'p>(pool: &'p Pool, owned: &mut Owned<'p>, op: &LogOp, lsn: Lsn, hints: &Hints) -> Result<KeyDelta> {
    let h = |key: &[u8]| hint_for(hints, key);
    Ok(match op {
        LogOp::Put { key, value } => put(pool, owned, (key, value), lsn, h(key))?,
        LogOp::Delete { key } => delete(pool, owned, key, h(key))?,
        LogOp::Rename { src, dst, value } => {
            let removed = delete(pool, owned, src, h(src))?;
            fault::point(Step::RenameHalfDone)?;
            removed + put(pool, owned, (dst, value), lsn, h(dst))?
        }
    })
}

/// Apply `ops` with version `lsn`, landing each key from its hint.
/// Returns the net key delta. An error leaves some ops applied (the engine
/// poisons, see `Engine::abandon_half_applied`).
pub(crate) fn apply_ops<'p>(pool: &'p Pool, owned: &mut Owned<'p>, ops: &[LogOp], lsn: Lsn, hints: &Hints) -> Result<KeyDelta> {
    let mut delta = 0;
    match key_order(ops, hints) {
        Some(order) => {
            for (i, hint) in order {
                fault::point(Step::BeforeOp)?;
                delta += match &ops[i] {
                    LogOp::Put { key, value } => put(pool, owned, (key, value), lsn, Some(hint))?,
                    LogOp::Delete { key } => delete(pool, owned, key, Some(hint))?,
                    LogOp::Rename { .. } => unreachable!("key_order refuses batches with renames"),
                };
            }
        }
        None => {
            for op in ops {
                fault::point(Step::BeforeOp)?;
                delta += apply_op(pool, owned, op, lsn, hints)?;
            }
        }
    }
    fault::point(Step::BeforeFinish)?;
    finish(pool, owned, lsn);
    Ok(delta)
}

/// Batches with fewer ops are applied in op order. Key order made 10k-op
/// bulk-load batches 9-13% faster and 1k-op ones 3-5% slower (two quiet
/// interleaved runs each, benches cells batch1k/batch10k): below a few
/// thousand keys, neighbours in key order share little of their paths.
const KEY_ORDER_OPS_MIN: usize = 4096;

/// The order to apply a large batch of puts and deletes in: by key,
/// stably (each key's ops keep their order), each with its hint. Ops are
/// resolved before they are applied (nothing is read while applying), so
/// ops on different keys commute and the result is the op-order one (the
/// journal keeps op order; replay gets the same tree). In key order
/// consecutive ops walk neighbouring paths. A counting sort over the
/// hints' ranks (the hints are sorted by key). `None` (op order) for a
/// small batch, one with a rename (two keys per op), or replay (no hints).
fn key_order(ops: &[LogOp], hints: &Hints) -> Option<Vec<(usize, Hint)>> {
    if ops.len() < KEY_ORDER_OPS_MIN || hints.is_empty() {
        return None;
    }
    let mut ranks = Vec::with_capacity(ops.len());
    for op in ops {
        let key = match op {
            LogOp::Put { key, .. } | LogOp::Delete { key } => key,
            LogOp::Rename { .. } => return None,
        };
        ranks.push(hints.binary_search_by(|(k, _)| k.as_slice().cmp(key)).ok()?);
    }
    let mut next = vec![0usize; hints.len() + 1];
    for &r in &ranks {
        next[r + 1] += 1;
    }
    for r in 1..next.len() {
        next[r] += next[r - 1];
    }
    let mut order = vec![(0, hints[0].1); ops.len()];
    for (i, &r) in ranks.iter().enumerate() {
        order[next[r]] = (i, hints[r].1);
        next[r] += 1;
    }
    Some(order)
}

/// Apply a single put or delete whose key landed at `hint` (a frame the
/// caller latched at the version it walked), then stamp `lsn`.
pub(crate) fn apply_single<'p>(pool: &'p Pool, owned: &mut Owned<'p>, op: &LogOp, lsn: Lsn, hint: Hint) -> Result<KeyDelta> {
    fault::point(Step::BeforeOp)?;
    let delta = match op {
        LogOp::Put { key, value } => put(pool, owned, (key, value), lsn, Some(hint))?,
        LogOp::Delete { key } => delete(pool, owned, key, Some(hint))?,
        LogOp::Rename { .. } => unreachable!("a rename has two keys; it goes through apply_ops"),
    };
    fault::point(Step::BeforeFinish)?;
    finish(pool, owned, lsn);
    Ok(delta)
}

/// Once every op of a batch has landed: cut out the forwarding links its
/// spills left (no hint is used after this), then stamp `lsn` on every
/// frame the batch holds.
fn finish<'p>(pool: &'p Pool, owned: &mut Owned<'p>, lsn: Lsn) {
    bypass_forwards(pool, owned);
    owned.stamp_lsn(lsn);
}
