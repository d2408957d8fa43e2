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
use crate::tree::descend::{lookup, retry, try_locate};
use crate::tree::scan::{scan, Scan};
use crate::tree::Owned;

pub(crate) type Footprint = BTreeMap<FrameId, u64>;

/// Record frame `id` at `version`; false if it was seen at another version.
fn note(fp: &mut Footprint, id: FrameId, version: Option<u64>) -> bool {
    let Some(v) = version else { return true };
    *fp.entry(id).or_insert(v) == v
}

fn key_footprint(pool: &Pool, key: &[u8], fp: &mut Footprint) -> Result<bool> {
    let owned = Owned::default();
    let land = retry(pool, || try_locate(pool, &owned, key))?;
    Ok(note(fp, land.view.id, land.view.version))
}

/// Frames an empty-prefix answer depends on: the prefix's landing frame and
/// every frame the scan entered after it.
fn prefix_footprint(pool: &Pool, prefix: &[u8], fp: &mut Footprint) -> Result<bool> {
    let owned = Owned::default();
    let land = retry(pool, || try_locate(pool, &owned, prefix))?;
    let r = scan(pool, &owned, &Scan { lower: prefix, prefix, limit: 1 })?;
    let start = r.frames.iter().position(|&(id, _)| id == land.view.id).unwrap_or(0);
    Ok(r.frames[start..].iter().all(|&(id, v)| note(fp, id, v)))
}

/// Step 1. `Ok(None)`: frames changed while observed; try again.
pub(crate) fn footprint(pool: &Pool, guards: &[Guard], ops: &[Op]) -> Result<Option<Footprint>> {
    let mut fp = Footprint::new();
    for g in guards {
        let ok = match g {
            Guard::PrefixEmpty(p) => prefix_footprint(pool, p, &mut fp)?,
            _ => key_footprint(pool, g.key(), &mut fp)?,
        };
        if !ok {
            return Ok(None);
        }
    }
    for op in ops {
        for key in op.keys() {
            if !key_footprint(pool, key, &mut fp)? {
                return Ok(None);
            }
        }
    }
    Ok(Some(fp))
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
}

impl View<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(lookup(self.pool, self.owned, key)?.map(|r| r.value)),
        }
    }
}

fn guard_holds(pool: &Pool, owned: &Owned<'_>, g: &Guard) -> Result<bool> {
    Ok(match g {
        Guard::Absent(k) => lookup(pool, owned, k)?.is_none(),
        Guard::Exists(k) => lookup(pool, owned, k)?.is_some(),
        Guard::Version(k, v) => lookup(pool, owned, k)?.is_some_and(|r| r.version == *v),
        Guard::PrefixEmpty(p) => scan(pool, owned, &Scan { lower: p, prefix: p, limit: 1 })?.entries.is_empty(),
    })
}

/// Step 3.
pub(crate) fn resolve(
    pool: &Pool,
    owned: &Owned<'_>,
    guards: &[Guard],
    ops: Vec<Op>,
    want_prev: bool,
) -> Result<Resolution> {
    for g in guards {
        if !guard_holds(pool, owned, g)? {
            return Ok(Resolution::GuardFailed);
        }
    }
    let mut view = View { pool, owned, overlay: HashMap::new() };
    let mut out = Resolved { log: Vec::with_capacity(ops.len()), prev: Vec::with_capacity(ops.len()) };
    for op in ops {
        match op {
            Op::Put { key, value } => {
                out.prev.push(if want_prev { view.get(&key)? } else { None });
                view.overlay.insert(key.clone(), Some(value.clone()));
                out.log.push(LogOp::Put { key, value });
            }
            Op::Delete { key } => {
                let prev = view.get(&key)?;
                if prev.is_some() {
                    view.overlay.insert(key.clone(), None);
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
                view.overlay.insert(src.clone(), None);
                view.overlay.insert(dst.clone(), Some(value.clone()));
                out.log.push(LogOp::Rename { src, dst, value });
            }
        }
    }
    Ok(Resolution::Ready(out))
}
