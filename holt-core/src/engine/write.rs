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

/// Where every key a batch touches landed in its footprint
/// (`batch::footprint`): each key once, in key order, so a lookup is a
/// binary search; and, per op, the rank of its key in that order, so a
/// large batch is put in key order without a search per op. The keys lie
/// in one buffer: a 10k-op batch makes two allocations, not one per key.
#[derive(Default)]
pub(crate) struct Hints {
    keys: Vec<u8>,
    /// Sorted by key: where the key ends in `keys` (it starts where the
    /// previous one ends), and its hint.
    at: Vec<(usize, Hint)>,
    /// Per op of the batch, the rank in `at` of its key; `NO_RANK` for a
    /// rename (two keys).
    op_rank: Vec<u32>,
}

/// `Hints::op_rank` of an op with two keys.
pub(crate) const NO_RANK: u32 = u32::MAX;

impl Hints {
    /// Room for `keys` keys of `ops` ops.
    pub(crate) fn with_capacity(keys: usize, ops: usize) -> Hints {
        Hints { keys: Vec::new(), at: Vec::with_capacity(keys), op_rank: vec![NO_RANK; ops] }
    }

    /// Add `key`, greater than every key added so far, with its hint;
    /// returns its rank.
    pub(crate) fn push(&mut self, key: &[u8], hint: Hint) -> u32 {
        self.keys.extend_from_slice(key);
        self.at.push((self.keys.len(), hint));
        (self.at.len() - 1) as u32
    }

    /// Op `op`'s single key has rank `rank`.
    pub(crate) fn set_op_rank(&mut self, op: usize, rank: u32) {
        self.op_rank[op] = rank;
    }

    /// Op `op`'s key rank (`NO_RANK` for a rename, or past the ops given).
    pub(crate) fn op_rank(&self, op: usize) -> u32 {
        self.op_rank.get(op).copied().unwrap_or(NO_RANK)
    }

    fn key(&self, rank: usize) -> &[u8] {
        let start = rank.checked_sub(1).map_or(0, |r| self.at[r].0);
        &self.keys[start..self.at[rank].0]
    }

    fn hint(&self, rank: u32) -> Hint {
        self.at[rank as usize].1
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Hint> {
        let (mut lo, mut hi) = (0, self.at.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.at[mid].1),
            }
        }
        None
    }
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

/// Apply one op, landing each key from its hint `h(key)`; no stamp (see
/// `apply_ops`).
fn apply_op<'p>(pool: &'p Pool, owned: &mut Owned<'p>, op: &LogOp, lsn: Lsn, h: &dyn Fn(&[u8]) -> Option<Hint>) -> Result<KeyDelta> {
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
pub(crate) fn apply_ops<'p>(pool: &'p Pool, owned: &mut Owned<'p>, ops: &[LogOp], lsn: Lsn, hints: &Hints, ranks: &[u32]) -> Result<KeyDelta> {
    let mut delta = 0;
    match key_order(ops, hints, ranks) {
        Some(order) => {
            // No renames here (`key_order` refuses them): one key, one hint.
            for (i, hint) in order {
                fault::point(Step::BeforeOp)?;
                delta += apply_op(pool, owned, &ops[i], lsn, &|_| Some(hint))?;
            }
        }
        None => {
            for (i, op) in ops.iter().enumerate() {
                fault::point(Step::BeforeOp)?;
                delta += match ranks.get(i).copied().filter(|&r| r != NO_RANK) {
                    Some(r) => apply_op(pool, owned, op, lsn, &|_| Some(hints.hint(r)))?,
                    None => apply_op(pool, owned, op, lsn, &|key| hints.get(key))?,
                };
            }
        }
    }
    fault::point(Step::BeforeFinish)?;
    finish(pool, owned, lsn);
    Ok(delta)
}

/// Batches with fewer ops are applied in op order (the sort's two
/// allocations would cost more than the shared paths save). Key order
/// made bulk loads in batches of 100, 300 and 1000 puts 3-5%, 5-7% and
/// 4-13% faster (benches/RESULTS.md run 40).
const KEY_ORDER_OPS_MIN: usize = 64;

/// The order to apply a batch of puts and deletes in: by key,
/// stably (each key's ops keep their order), each with its hint. Ops are
/// resolved before they are applied (nothing is read while applying), so
/// ops on different keys commute and the result is the op-order one (the
/// journal keeps op order; replay gets the same tree). In key order
/// consecutive ops walk neighbouring paths. A counting sort over the
/// ranks of the ops' keys among the hints (`ranks[i]` for `ops[i]`, from
/// the footprint's sort). `None` (op order) for a small batch, one with a
/// rename (two keys per op), or replay (no hints).
fn key_order(ops: &[LogOp], hints: &Hints, ranks: &[u32]) -> Option<Vec<(usize, Hint)>> {
    if ops.len() < KEY_ORDER_OPS_MIN || ranks.len() != ops.len() || ranks.contains(&NO_RANK) {
        return None;
    }
    let mut next = vec![0usize; hints.len() + 1];
    for &r in ranks {
        next[r as usize + 1] += 1;
    }
    for r in 1..next.len() {
        next[r] += next[r - 1];
    }
    let mut order = vec![(0, hints.hint(0)); ops.len()];
    for (i, &r) in ranks.iter().enumerate() {
        debug_assert!(matches!(&ops[i], LogOp::Put { key, .. } | LogOp::Delete { key } if hints.key(r as usize) == key.as_slice()));
        order[next[r as usize]] = (i, hints.hint(r));
        next[r as usize] += 1;
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
