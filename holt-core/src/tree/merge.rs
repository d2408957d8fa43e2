//! Merge: fold a small child frame's subtree back into the frame that links
//! to it, and shorten forwarding chains. Runs from `Tree::compact` with both
//! frames latched; never blocks on the second latch (try-lock), so it cannot
//! deadlock with batches that latch frames in id order.
//!
//! Bypass: right after a write, redirect the links that lead to forwarding
//! links its spills left (see `bypass_forwards`), with the same try-lock rule.

use super::descend::{enter, follow, walk_frame_at, Walk, Whole, FRAME_HOPS_MAX};
use super::spill::{postorder, remapped_node, FRAME_DATA_BYTES};
use super::{Forward, Owned, Step, ROOT_FRAME, ROOT_SLOT};
use crate::ids::FrameId;
use crate::layout::node::{encode_link, link_target, node_bytes, FLAG_ENTRY, KIND_LINK, OFF_FLAGS};
use crate::layout::space::{bytes_needed, ensure, free_node, new_node, replace_node, reclaimable_bytes};
use crate::layout::{FrameBuf, Slot, SLOT_BYTES};
use crate::store::pool::Pool;

/// A child frame whose live bytes are below this share of a frame is small
/// enough to fold back.
pub(crate) const MERGE_BYTES_MAX: usize = FRAME_DATA_BYTES / 4;

/// Fold the subtree behind the link in `slot` of owned frame `parent` into
/// `parent`, if the linked frame can be latched and everything fits.
/// Returns true if the link was replaced.
pub(crate) fn merge_link<'p>(pool: &'p Pool, owned: &mut Owned<'p>, parent: FrameId, slot: Slot) -> bool {
    let pb = owned.get(parent).and_then(|c| c.buf()).expect("merge parent is owned");
    let Some(off) = pb.node_offset(slot) else { return false };
    if pb.u8(off) != KIND_LINK {
        return false;
    }
    let (child, cslot) = link_target(pb, off);
    if child == parent || owned.contains(child) {
        return false;
    }
    let Some(cell) = pool.cell(child).filter(|c| c.is_live()) else { return false };
    if !pool.try_lock_resident(child, cell).unwrap_or(false) {
        return false;
    }
    owned.push(child, cell);
    let cb = cell.buf().expect("latched live frame is resident");
    let nodes = postorder(cb, cslot);
    let bytes: usize = nodes.iter().map(|&s| node_bytes(cb, cb.node_offset(s).expect("live")) + SLOT_BYTES).sum();
    if bytes > MERGE_BYTES_MAX || reclaimable_bytes(pb) < bytes_needed(bytes, 0) || !ensure(pb, bytes) {
        return false;
    }
    let flags = pb.u8(pb.node_offset(slot).expect("live") + OFF_FLAGS);
    fold(cb, cslot, pb, slot, flags);
    for s in nodes {
        free_node(cb, s);
    }
    if cb.live_slots() == 0 {
        pool.retire(child, cell);
    }
    pool.counters.merges.add(1);
    true
}

/// Copy the subtree at `root` of `src` into `dst`, its root taking `slot`
/// (which held the link) with the link's entry flag.
fn fold(src: &FrameBuf, root: Slot, dst: &FrameBuf, slot: Slot, flags: u8) {
    let mut map = std::collections::HashMap::new();
    for s in postorder(src, root) {
        let mut bytes = remapped_node(src, src.node_offset(s).expect("live"), &map);
        if s == root {
            bytes[OFF_FLAGS] = (bytes[OFF_FLAGS] & !FLAG_ENTRY) | (flags & FLAG_ENTRY);
            replace_node(dst, slot, &bytes);
        } else {
            bytes[OFF_FLAGS] &= !FLAG_ENTRY;
            map.insert(s.0, new_node(dst, &bytes).0);
        }
    }
}

/// Links in this frame (slots of link nodes), for the compaction sweep.
pub(crate) fn link_slots(b: &FrameBuf, entries: &[Slot]) -> Vec<Slot> {
    let mut out = Vec::new();
    for &e in entries {
        for s in postorder(b, e) {
            if b.node_offset(s).is_some_and(|off| b.u8(off) == KIND_LINK) {
                out.push(s);
            }
        }
    }
    out
}

/// Point each link that leads to a forwarding link left by this holder's
/// spills (`owned.forwards`) straight at the forwarding link's target, and
/// free the forwarding link. Without this, every spill of an entry subtree
/// puts one more frame on the path of every key under it, and frame chains
/// grow one spill at a time (a cold lookup loads each frame on the way).
/// The referring frame is found by an optimistic walk for a key under the
/// forwarding link and latched at the version walked, never waiting; where
/// that fails the forwarding link stays (correct, one frame longer). Call
/// once every op of the batch has landed: ops land from hints that may name
/// a forwarding slot. Every key keeps its landing frame.
pub(crate) fn bypass_forwards<'p>(pool: &'p Pool, owned: &mut Owned<'p>) {
    for fwd in std::mem::take(&mut owned.forwards) {
        bypass(pool, owned, &fwd);
    }
}

fn bypass<'p>(pool: &'p Pool, owned: &mut Owned<'p>, fwd: &Forward) {
    let fcell = owned.get(fwd.frame).expect("a spilled frame stays owned");
    let fb = fcell.buf().expect("an owned frame is resident");
    // A frame left holding only this link stays as it is: freeing the link
    // would leave a live frame nothing reaches.
    if fb.live_slots() <= 1 {
        return;
    }
    let Some((referrer, link_slot, version)) = referrer(pool, owned, fwd) else { return };
    if referrer == fwd.frame {
        return;
    }
    if let Some(v) = version {
        let Some(cell) = pool.cell(referrer) else { return };
        if !cell.latch.try_upgrade(v) {
            return;
        }
        owned.push(referrer, cell);
    }
    let rb = owned.get(referrer).and_then(|c| c.buf()).expect("referrer is owned and resident");
    let foff = fb.node_offset(fwd.slot).expect("a forwarding link stays until bypassed");
    debug_assert_eq!(fb.u8(foff), KIND_LINK, "forwarding slot holds a link");
    let (to, to_slot) = link_target(fb, foff);
    let roff = rb.node_offset(link_slot).expect("the referring link was just read");
    let flags = rb.u8(roff + OFF_FLAGS);
    replace_node(rb, link_slot, &encode_link(to, to_slot, flags & FLAG_ENTRY));
    free_node(fb, fwd.slot);
}

/// The frame holding the link to `fwd`'s slot, that link's slot, and the
/// version the frame was read at (`None` if owned): found by walking a key
/// stored under the forwarding link from the root. `None` when the walk
/// meets contention or does not pass that link.
fn referrer<'p>(pool: &'p Pool, owned: &Owned<'p>, fwd: &Forward) -> Option<(FrameId, Slot, Option<u64>)> {
    let Ok(Step::Done(mut view)) = enter(pool, owned, ROOT_FRAME) else { return None };
    let (mut slot, mut depth) = (ROOT_SLOT, 0);
    for _ in 0..FRAME_HOPS_MAX {
        let (walk, at) = walk_frame_at(view.buf, &Whole, slot, depth, &fwd.key);
        let Walk::Link(to, to_slot, d) = walk else { return None };
        if (to, to_slot) == (fwd.frame, fwd.slot) {
            return view.valid().then_some((view.id, at, view.version));
        }
        let Ok(Step::Done(next)) = follow(pool, owned, &view, to) else { return None };
        (view, slot, depth) = (next, to_slot, d);
    }
    None
}
