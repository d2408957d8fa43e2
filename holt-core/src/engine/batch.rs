//! The batch protocol: every mutation, single or batched, runs as
//! 1. footprint: find, optimistically, each frame the batch's keys land in
//!    (and, for a prefix guard, every frame its emptiness depends on);
//! 2. latch: upgrade each footprint frame at the version observed, in id
//!    order, never blocking while holding one; any change restarts;
//! 3. resolve: check guards and read what ops need, against latched frames;
//! 4. apply: journal the resolved ops, then change the frames.
//! Nothing is written before step 4, so a failed guard or a missing rename
//! source leaves the tree untouched, and no reader sees half a batch of
//! any frame.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::op::{Guard, LogOp, Op};
use crate::store::pool::Pool;
use super::write::Hint;
use crate::layout::node::LeafAt;
use crate::tree::descend::{lookup, retry, try_locate, walk_frame, Walk};
use crate::tree::scan::{scan, Scan, ScanScratch};
use crate::tree::Owned;

pub(crate) type Footprint = BTreeMap<FrameId, u64>;

/// Record frame `id` at `version`; false if it was seen at another version.
fn note(fp: &mut Footprint, id: FrameId, version: Option<u64>) -> bool {
    let Some(v) = version else { return true };
    *fp.entry(id).or_insert(v) == v
}

fn key_footprint(pool: &Pool, key: &[u8], fp: &mut Footprint) -> Result<Option<Hint>> {
    let owned = Owned::default();
    let land = retry(pool, || try_locate(pool, &owned, key))?;
    let hint = Hint { frame: land.view.id, entry: land.entry };
    Ok(note(fp, land.view.id, land.view.version).then_some(hint))
}

/// Frames an empty-prefix answer depends on: the prefix's landing frame and
/// every frame the scan entered after it.
fn prefix_footprint(pool: &Pool, prefix: &[u8], fp: &mut Footprint) -> Result<bool> {
    let owned = Owned::default();
    let land = retry(pool, || try_locate(pool, &owned, prefix))?;
    let frames = scan(pool, &owned, &Scan { lower: prefix, prefix, limit: 1 }, &mut ScanScratch::default(), &mut Vec::new())?;
    let start = frames.iter().position(|&(id, _)| id == land.view.id).unwrap_or(0);
    Ok(frames[start..].iter().all(|&(id, v)| note(fp, id, v)))
}

/// Step 1: the frames to latch, and where the first op's first key lands.
/// `Ok(None)`: frames changed while observed; try again.
pub(crate) fn footprint(pool: &Pool, guards: &[Guard], ops: &[Op]) -> Result<Option<(Footprint, Option<Hint>)>> {
    let mut fp = Footprint::new();
    for g in guards {
        let ok = match g {
            Guard::PrefixEmpty(p) => prefix_footprint(pool, p, &mut fp)?,
            _ => key_footprint(pool, g.key(), &mut fp)?.is_some(),
        };
        if !ok {
            return Ok(None);
        }
    }
    let mut first = None;
    for (i, op) in ops.iter().enumerate() {
        for (j, key) in op.keys().enumerate() {
            let Some(hint) = key_footprint(pool, key, &mut fp)? else { return Ok(None) };
            if i == 0 && j == 0 {
                first = Some(hint);
            }
        }
    }
    Ok(Some((fp, first)))
}

/// Step 2. On failure everything taken is released and the frame that
/// refused is waited for.
pub(crate) fn latch<'p>(pool: &'p Pool, fp: &Footprint, owned: &mut Owned<'p>) -> bool {
    for (&id, &v) in fp {
        let Some(cell) = pool.cell(id) else { return false };
        if !cell.latch.try_upgrade(v) {
            owned.release_clean();
            cell.latch.wait_unlocked();
            return false;
        }
        owned.push(id, cell);
    }
    true
}

/// A batch after step 3.
pub(crate) struct Resolved {
    pub log: Vec<LogOp>,
    pub prev: Vec<Option<Vec<u8>>>,
    /// The first log op comes from the first op (so the first key's landing
    /// hint applies to it).
    pub first_logged: bool,
}

pub(crate) enum Resolution {
    Ready(Resolved),
    GuardFailed,
}

/// Reads through the batch's own earlier writes.
struct View<'a, 'p> {
    pool: &'p Pool,
    owned: &'a Owned<'p>,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The first op's first key and where it lands (a latched frame).
    first: Option<(&'a [u8], Hint)>,
}

impl View<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if let Some((k, h)) = self.first.filter(|(k, _)| *k == key) {
            let buf = self.owned.get(h.frame).and_then(|c| c.buf()).expect("hinted frame is latched");
            match walk_frame(buf, h.entry.0, h.entry.1, k) {
                Walk::Leaf(off) => return Ok(Some(LeafAt(off).value(buf))),
                Walk::Miss => return Ok(None),
                Walk::Link(..) | Walk::Torn => {}
            }
        }
        Ok(lookup(self.pool, self.owned, key)?.map(|r| r.value))
    }
}

fn guard_holds(pool: &Pool, owned: &Owned<'_>, g: &Guard) -> Result<bool> {
    Ok(match g {
        Guard::Absent(k) => lookup(pool, owned, k)?.is_none(),
        Guard::Exists(k) => lookup(pool, owned, k)?.is_some(),
        Guard::Version(k, v) => lookup(pool, owned, k)?.is_some_and(|r| r.version == *v),
        Guard::PrefixEmpty(p) => {
            let mut found = Vec::new();
            scan(pool, owned, &Scan { lower: p, prefix: p, limit: 1 }, &mut ScanScratch::default(), &mut found)?;
            found.is_empty()
        }
    })
}

/// Step 3.
pub(crate) fn resolve(
    pool: &Pool,
    owned: &Owned<'_>,
    guards: &[Guard],
    ops: Vec<Op>,
    want_prev: bool,
    hint: Option<Hint>,
) -> Result<Resolution> {
    for g in guards {
        if !guard_holds(pool, owned, g)? {
            return Ok(Resolution::GuardFailed);
        }
    }
    let first_key = ops.first().and_then(|op| op.keys().next()).map(<[u8]>::to_vec);
    let mut view = View { pool, owned, overlay: HashMap::new(), first: first_key.as_deref().zip(hint) };
    let mut out = Resolved { log: Vec::with_capacity(ops.len()), prev: Vec::with_capacity(ops.len()), first_logged: false };
    let n = ops.len();
    for (i, op) in ops.into_iter().enumerate() {
        // The last op has no later reader: spare it the overlay copies.
        let last = i + 1 == n;
        if i == 1 {
            out.first_logged = !out.log.is_empty();
        }
        match op {
            Op::Put { key, value } => {
                out.prev.push(if want_prev { view.get(&key)? } else { None });
                if !last {
                    view.overlay.insert(key.clone(), Some(value.clone()));
                }
                out.log.push(LogOp::Put { key, value });
            }
            Op::Delete { key } => {
                let prev = view.get(&key)?;
                if prev.is_some() {
                    if !last {
                        view.overlay.insert(key.clone(), None);
                    }
                    out.log.push(LogOp::Delete { key });
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
                if !last {
                    view.overlay.insert(src.clone(), None);
                    view.overlay.insert(dst.clone(), Some(value.clone()));
                }
                out.log.push(LogOp::Rename { src, dst, value });
            }
        }
    }
    if out.prev.len() == 1 {
        out.first_logged = !out.log.is_empty();
    }
    Ok(Resolution::Ready(out))
}
