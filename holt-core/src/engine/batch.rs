//! The batch protocol: every mutation, single or batched, runs as
//! 1. footprint: find, optimistically, each frame the batch's keys land in
//!    (and, for a prefix guard, every frame its emptiness depends on);
//! 2. latch: upgrade each footprint frame at the version observed, in id
//!    order, never blocking while holding one; any change restarts; with
//!    every frame held, a poisoned engine refuses (see step 4);
//! 3. resolve: check guards and read what ops need, against latched frames;
//! 4. apply: journal the resolved ops, then change the frames.
//!
//! Nothing is written before step 4, so a failed guard or a missing rename
//! source leaves the tree untouched, and no reader sees half a batch of
//! any frame. A failure inside step 4, after the journal append, poisons
//! the engine instead (`Engine::abandon_half_applied`): a batch is never
//! published, read or recovered in part.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::op::{Guard, LogOp, Op};
use crate::store::pool::Pool;
use super::write::{land_from, Hint, Hints, NO_RANK};
use crate::layout::node::LeafAt;
use crate::tree::descend::{retry, try_locate_paged, Walk};
use crate::tree::hits::Hits;
use crate::tree::scan::{scan, Scan, ScanScratch};
use crate::tree::Owned;

pub(crate) type Footprint = BTreeMap<FrameId, u64>;

/// A footprint key that is no op's only key (a guard's, a rename's).
const NO_OP: usize = usize::MAX;

/// Record frame `id` at `version`; false if it was seen at another version.
fn note(fp: &mut Footprint, id: FrameId, version: Option<u64>) -> bool {
    let Some(v) = version else { return true };
    *fp.entry(id).or_insert(v) == v
}

fn key_footprint(reader: &Owned<'_>, key: &[u8], fp: &mut Footprint) -> Result<Option<Hint>> {
    let land = retry(reader, || try_locate_paged(reader.pool(), reader, key))?;
    let hint = Hint { frame: land.view.id, entry: land.entry };
    Ok(note(fp, land.view.id, land.view.version).then_some(hint))
}

/// Frames an empty-prefix answer depends on: the prefix's landing frame and
/// every frame the scan entered after it.
fn prefix_footprint(reader: &Owned<'_>, prefix: &[u8], fp: &mut Footprint) -> Result<bool> {
    let pool = reader.pool();
    let land = retry(reader, || try_locate_paged(pool, reader, prefix))?;
    let mut scratch = ScanScratch::default();
    scan(pool, reader, &Scan::first_key(prefix), &mut scratch, &mut Hits::default())?;
    let frames = &scratch.frames;
    let start = frames.iter().position(|&(id, _)| id == land.view.id).unwrap_or(0);
    Ok(frames[start..].iter().all(|&(id, v)| note(fp, id, v)))
}

/// Step 1: the frames to latch, and where every key lands (hints sorted
/// by key, each key once, and each op's rank among them). Keys are walked in key order, so neighbours
/// share the cache lines of their common path. The walks use `reader`,
/// which the caller keeps across its retries until the frames are latched:
/// once it pins, a footprint larger than the pool's clean part keeps its
/// frames (and their versions) instead of evicting them itself.
/// `Ok(None)`: frames changed while observed; try again.
pub(crate) fn footprint(reader: &Owned<'_>, guards: &[Guard], ops: &[Op]) -> Result<Option<(Footprint, Hints)>> {
    let mut fp = Footprint::new();
    for g in guards {
        if let Guard::PrefixEmpty(p) = g {
            if !prefix_footprint(reader, p, &mut fp)? {
                return Ok(None);
            }
        }
    }
    // Each key with the op it is the only key of, for the op's rank.
    let guard_keys = guards.iter().filter(|g| !matches!(g, Guard::PrefixEmpty(_))).map(|g| (g.key(), NO_OP));
    let op_keys = ops.iter().enumerate().flat_map(|(i, op)| {
        let only = if matches!(op, Op::Rename { .. }) { NO_OP } else { i };
        op.keys().map(move |k| (k, only))
    });
    let mut keys: Vec<(&[u8], usize)> = guard_keys.chain(op_keys).collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hints = Hints::with_capacity(keys.len(), ops.len());
    let mut last: Option<(&[u8], u32)> = None;
    for (key, op) in keys {
        let rank = match last {
            Some((k, rank)) if k == key => rank,
            _ => {
                let Some(h) = key_footprint(reader, key, &mut fp)? else { return Ok(None) };
                let rank = hints.push(key, h);
                last = Some((key, rank));
                rank
            }
        };
        if op != NO_OP {
            hints.set_op_rank(op, rank);
        }
    }
    Ok(Some((fp, hints)))
}

/// Step 2. `Ok(false)`: everything taken is released and the frame that
/// refused is waited for. Each frame latched is made whole: a guard's
/// footprint notes the frames its scan read, and a scan reads a frame
/// held in part as it is (its version is the same either way).
pub(crate) fn latch<'p>(pool: &'p Pool, fp: &Footprint, owned: &mut Owned<'p>) -> Result<bool> {
    for (&id, &v) in fp {
        let Some(cell) = pool.cell(id) else { return Ok(false) };
        if !cell.latch.try_upgrade(v) {
            owned.release_clean();
            cell.latch.wait_unlocked();
            return Ok(false);
        }
        owned.push(id, cell);
        pool.make_whole(id, cell)?;
    }
    Ok(true)
}

/// A batch after step 3.
pub(crate) struct Resolved {
    pub log: Vec<LogOp>,
    /// Per log op, its key's rank among the hints (`Hints::op_rank`).
    pub ranks: Vec<u32>,
    pub prev: Vec<Option<Vec<u8>>>,
}

impl Resolved {
    fn push(&mut self, op: LogOp, rank: u32) {
        self.log.push(op);
        self.ranks.push(rank);
    }
}

/// The record at `key`, read from its landing (the batch holds the frame).
fn read_hinted<'p>(pool: &'p Pool, owned: &mut Owned<'p>, hints: &Hints, key: &[u8]) -> Result<Option<crate::Record>> {
    let hint = hints.get(key).expect("every key of a batch has a footprint hint");
    let land = land_from(pool, owned, hint, key)?;
    Ok(match land.walk {
        Walk::Leaf(off) => {
            let leaf = LeafAt(off);
            Some(crate::Record { value: leaf.value(land.view.buf), version: leaf.version(land.view.buf) })
        }
        _ => None,
    })
}

/// Step 3a: whether every guard holds. An error with
/// `owned.was_contended()` when a prefix scan met a frame another writer
/// holds: the caller releases and retries.
pub(crate) fn guards_hold<'p>(pool: &'p Pool, owned: &mut Owned<'p>, guards: &[Guard], hints: &Hints) -> Result<bool> {
    for g in guards {
        let holds = match g {
            Guard::Absent(k) => read_hinted(pool, owned, hints, k)?.is_none(),
            Guard::Exists(k) => read_hinted(pool, owned, hints, k)?.is_some(),
            Guard::Version(k, v) => read_hinted(pool, owned, hints, k)?.is_some_and(|r| r.version == *v),
            Guard::PrefixEmpty(p) => {
                let mut found = Hits::default();
                scan(pool, owned, &Scan::first_key(p), &mut ScanScratch::default(), &mut found)?;
                found.is_empty()
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads through the batch's own earlier writes.
struct View<'a, 'p> {
    pool: &'p Pool,
    owned: &'a mut Owned<'p>,
    hints: &'a Hints,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl View<'_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(read_hinted(self.pool, self.owned, self.hints, key)?.map(|r| r.value))
    }
}

/// Step 3b: read what the ops need and turn them into log ops. Reads only
/// the batch's own frames, so it never contends.
pub(crate) fn resolve<'p>(
    pool: &'p Pool,
    owned: &mut Owned<'p>,
    ops: Vec<Op>,
    want_prev: bool,
    hints: &Hints,
) -> Result<Resolved> {
    let mut view = View { pool, owned, hints, overlay: HashMap::new() };
    let n = ops.len();
    let mut out = Resolved { log: Vec::with_capacity(n), ranks: Vec::with_capacity(n), prev: Vec::with_capacity(n) };
    // Only a delete, a rename or a put asked for its previous value reads
    // the tree; with none of them (a bulk load) no op needs the overlay.
    let reads = want_prev || ops.iter().any(|op| !matches!(op, Op::Put { .. }));
    for (i, op) in ops.into_iter().enumerate() {
        // No later op reads what this one writes (it is the last, or
        // nothing reads): spare it the overlay copies.
        let unread = !reads || i + 1 == n;
        match op {
            Op::Put { key, value } => {
                out.prev.push(if want_prev { view.get(&key)? } else { None });
                if !unread {
                    view.overlay.insert(key.clone(), Some(value.clone()));
                }
                out.push(LogOp::Put { key, value }, hints.op_rank(i));
            }
            Op::Delete { key } => {
                let prev = view.get(&key)?;
                if prev.is_some() {
                    if !unread {
                        view.overlay.insert(key.clone(), None);
                    }
                    out.push(LogOp::Delete { key }, hints.op_rank(i));
                }
                out.prev.push(prev);
            }
            Op::Rename { src, dst, force } => {
                let value = view.get(&src)?.ok_or(Error::NotFound)?;
                out.prev.push(None);
                if src == dst {
                    continue;
                }
                if !force && view.get(&dst)?.is_some() {
                    return Err(Error::DstExists);
                }
                if !unread {
                    view.overlay.insert(src.clone(), None);
                    view.overlay.insert(dst.clone(), Some(value.clone()));
                }
                out.push(LogOp::Rename { src, dst, value }, NO_RANK);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TreeBuilder;
    use crate::tree::descend::try_locate;
    use crate::tree::Step;

    fn landing(pool: &Pool, key: &[u8]) -> FrameId {
        let reader = Owned::new(pool);
        match try_locate(pool, &reader, key).unwrap() {
            Step::Done(land) => land.view.id,
            Step::Restart => panic!("no writer runs: the walk validates"),
        }
    }

    /// A batch holding frames whose prefix guard meets a frame another
    /// writer holds must not wait for it (that writer may wait for ours):
    /// the scan backs off with an error the engine's loop recognises by
    /// `was_contended`, releases everything and starts over. The error is
    /// no special public variant: should it ever escape, it reads as
    /// starvation.
    #[test]
    fn a_guard_meeting_a_frame_another_writer_holds_backs_off() {
        let tree = TreeBuilder::new("unused").memory().open().unwrap();
        for i in 0..20_000u32 {
            tree.put(format!("a/{i:05}").as_bytes(), &[1; 100]).unwrap();
        }
        tree.put(b"b", b"1").unwrap();
        let pool = &tree.engine().pool;
        let mine = landing(pool, b"b");
        // A thousand keys that all land in one frame other than "b"'s.
        let (prefix, theirs) = (0..20u32)
            .map(|t| format!("a/{t:02}").into_bytes())
            .find_map(|p| {
                let mut frames: Vec<FrameId> = (0..1000u32).map(|i| landing(pool, format!("{}{i:03}", String::from_utf8_lossy(&p)).as_bytes())).collect();
                frames.dedup();
                (frames.len() == 1 && frames[0] != mine).then(|| (p, frames[0]))
            })
            .expect("the keys spilled out of the frame holding \"b\"");
        let (mine_cell, theirs_cell) = (pool.cell(mine).unwrap(), pool.cell(theirs).unwrap());
        let mut owned = Owned::new(pool);
        mine_cell.latch.lock();
        owned.push(mine, mine_cell);
        theirs_cell.latch.lock();
        let guard = [Guard::PrefixEmpty(prefix.clone())];
        let r = guards_hold(pool, &mut owned, &guard, &Hints::default());
        assert!(owned.was_contended(), "the scan backed off: {r:?}");
        assert!(matches!(r, Err(Error::Starved { .. })), "{r:?}");
        owned.release_clean();
        theirs_cell.latch.unlock();
        assert!(!tree.atomic(|x| { x.assert_prefix_empty(&prefix).put(b"b", b"2"); }).unwrap());
        assert!(tree.atomic(|x| { x.assert_prefix_empty(b"c/").put(b"b", b"2"); }).unwrap());
    }
}
