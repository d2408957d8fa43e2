//! Optimistic descent: from the root, through links, to the frame where a
//! key lands, and point lookups on top of it.

use super::{Owned, Step, RESTARTS_MAX, ROOT_FRAME, ROOT_SLOT};
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::node::{link_target, InnerAt, LeafAt, KIND_LEAF, KIND_LINK};
use crate::layout::{FrameBuf, Slot, NIL};
use crate::store::pool::{FrameCell, Pool};
use crate::Record;

/// Most frames one descent may cross before the chain is declared a cycle.
pub(crate) const FRAME_HOPS_MAX: usize = 4096;
/// Loads of one frame `enter` tries before restarting the whole walk.
const LOADS_PER_ENTER_MAX: usize = 4;

/// A frame as seen by one walk: read optimistically at `version`, or owned.
#[derive(Clone, Copy)]
pub(crate) struct FrameView<'p> {
    pub id: FrameId,
    pub cell: &'p FrameCell,
    pub buf: &'p FrameBuf,
    /// `None` when the walking thread holds the frame exclusively.
    pub version: Option<u64>,
}

impl FrameView<'_> {
    /// Whether everything read from this frame so far is consistent.
    pub(crate) fn valid(&self) -> bool {
        self.version.is_none_or(|v| self.cell.latch.validate(v))
    }
}

/// Start reading frame `id`: directly if owned, else optimistically. A frame
/// that is latched or not resident makes this attempt restart (after
/// waiting for the writer or loading the frame).
pub(crate) fn enter<'p>(pool: &'p Pool, owned: &Owned<'p>, id: FrameId) -> Result<Step<FrameView<'p>>> {
    if let Some(cell) = owned.get(id) {
        let buf = cell.buf().expect("an owned frame is resident");
        return Ok(Step::Done(FrameView { id, cell, buf, version: None }));
    }
    let cell = pool.cell(id).filter(|c| c.is_live());
    let Some(cell) = cell else {
        // Only an error if the link that led here validates (see `follow`).
        return Err(corrupt_frame(id, "link to a frame that does not exist"));
    };
    // Pinned before its version is read: a frame pinned and then loaded stays.
    owned.pins.enter(id, cell);
    // A frame just read from the store is used at once rather than after a
    // restart, so a descent through a small cache usually makes progress
    // even when each load evicts another frame (and always once it pins).
    for _ in 0..LOADS_PER_ENTER_MAX {
        let Some(version) = cell.latch.optimistic() else {
            // Waiting while holding latches could deadlock with a writer
            // that waits for ours: a batch backs off instead, through an
            // error its engine loop recognises by `was_contended` (and
            // that reads as starvation should any other path return it).
            if !owned.is_empty() {
                owned.set_contended();
                return Err(Error::Starved { what: "a batch's read of a frame another writer holds", restarts: 0 });
            }
            cell.latch.wait_unlocked();
            return Ok(Step::Restart);
        };
        // The buffer pointer is read after the version, so an eviction in
        // between is caught by validation.
        if let Some(buf) = cell.buf() {
            pool.counters.hits.add(1);
            cell.touch();
            return Ok(Step::Done(FrameView { id, cell, buf, version: Some(version) }));
        }
        owned.pins.note_miss();
        pool.load(id, cell)?;
    }
    Ok(Step::Restart)
}

/// Cross the link read from `from` into frame `to`. Errors count only if
/// `from` still validates (a torn read can name any frame); and `from` is
/// validated after entering `to`, so the link was real when we crossed.
pub(crate) fn follow<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    from: &FrameView<'p>,
    to: FrameId,
) -> Result<Step<FrameView<'p>>> {
    match enter(pool, owned, to) {
        Err(_) | Ok(Step::Done(_)) if !from.valid() => Ok(Step::Restart),
        r => r,
    }
}

/// Where a walk inside one frame ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The key's leaf, at this offset.
    Leaf(usize),
    /// The key is absent; an insert would change this frame.
    Miss,
    /// The key continues in another frame, at this slot and key depth.
    Link(FrameId, Slot, usize),
    /// The bytes read make no sense: torn by a writer, or corrupt.
    Torn,
}

/// Follow `key` inside one frame from `slot` at key depth `depth`.
#[inline]
pub(crate) fn walk_frame(b: &FrameBuf, slot: Slot, depth: usize, key: &[u8]) -> Walk {
    walk_frame_at(b, slot, depth, key).0
}

/// `walk_frame`, also returning the slot of the node the walk stopped at
/// (for `Walk::Link`, the link node's own slot).
#[inline(always)]
pub(crate) fn walk_frame_at(b: &FrameBuf, mut slot: Slot, mut depth: usize, key: &[u8]) -> (Walk, Slot) {
    for _ in 0..key.len() + 3 {
        let Some(off) = b.node_offset(slot) else { return (Walk::Torn, slot) };
        match b.u8(off) {
            KIND_LINK => {
                let (f, s) = link_target(b, off);
                return (Walk::Link(f, s, depth), slot);
            }
            KIND_LEAF => {
                let walk = if LeafAt(off).key_is(b, key) { Walk::Leaf(off) } else { Walk::Miss };
                return (walk, slot);
            }
            2..=5 => {
                let n = InnerAt(off);
                let plen = n.prefix_len(b);
                let Some(rest) = key.get(depth..) else { return (Walk::Torn, slot) };
                if b.common_prefix(n.prefix_off(), plen, rest) < plen {
                    return (Walk::Miss, slot);
                }
                depth += plen;
                let next = match key.get(depth) {
                    None => n.end(b),
                    Some(&byte) => {
                        depth += 1;
                        n.find_child(b, byte)
                    }
                };
                if next == NIL {
                    return (Walk::Miss, slot);
                }
                slot = Slot(next);
            }
            _ => return (Walk::Torn, slot),
        }
    }
    (Walk::Torn, slot)
}

/// The frame where `key` lands, the walk's result there, and the slot and
/// depth at which the walk entered that frame.
pub(crate) struct Landing<'p> {
    pub view: FrameView<'p>,
    pub walk: Walk,
    pub entry: (Slot, usize),
}

pub(crate) fn corrupt_frame(id: FrameId, what: &str) -> Error {
    Error::corrupted("frames", id.0, format!("frame {}: {what}", id.0))
}

/// One optimistic attempt to find where `key` lands.
pub(crate) fn try_locate<'p>(pool: &'p Pool, owned: &Owned<'p>, key: &[u8]) -> Result<Step<Landing<'p>>> {
    let Step::Done(mut view) = enter(pool, owned, ROOT_FRAME)? else { return Ok(Step::Restart) };
    let (mut slot, mut depth) = (ROOT_SLOT, 0);
    for _ in 0..FRAME_HOPS_MAX {
        match walk_frame(view.buf, slot, depth, key) {
            Walk::Link(f, s, d) => {
                let Step::Done(next) = follow(pool, owned, &view, f)? else { return Ok(Step::Restart) };
                (view, slot, depth) = (next, s, d);
            }
            Walk::Torn if view.valid() => return Err(corrupt_frame(view.id, "unreadable node")),
            Walk::Torn => return Ok(Step::Restart),
            walk => return Ok(Step::Done(Landing { view, walk, entry: (slot, depth) })),
        }
    }
    if view.valid() {
        return Err(corrupt_frame(view.id, "link chain too long (cycle?)"));
    }
    Ok(Step::Restart)
}

/// Run `attempt`, whose walks use `owned`, until it completes, counting
/// restarts. An attempt that restarted after loading a frame makes the next
/// ones pin what they read (`store::pins`), so the loop ends: each restart
/// after that is a writer's change.
pub(crate) fn retry<T>(owned: &Owned<'_>, mut attempt: impl FnMut() -> Result<Step<T>>) -> Result<T> {
    for _ in 0..RESTARTS_MAX {
        match attempt()? {
            Step::Done(t) => return Ok(t),
            Step::Restart => {
                owned.pool().counters.restarts.add(1);
                owned.pins.after_restart();
            }
        }
    }
    Err(Error::Starved { what: "a read", restarts: RESTARTS_MAX })
}

/// The record stored at `key`.
pub(crate) fn lookup<'p>(pool: &'p Pool, owned: &Owned<'p>, key: &[u8]) -> Result<Option<Record>> {
    retry(owned, || {
        let Step::Done(land) = try_locate(pool, owned, key)? else { return Ok(Step::Restart) };
        let b = land.view.buf;
        let rec = match land.walk {
            Walk::Leaf(off) => {
                let leaf = LeafAt(off);
                Some(Record { value: leaf.value(b), version: leaf.version(b) })
            }
            _ => None,
        };
        Ok(if land.view.valid() { Step::Done(rec) } else { Step::Restart })
    })
}
