//! Merge: fold a small child frame's subtree back into the frame that links
//! to it, and shorten forwarding chains. Runs from `Tree::compact` with both
//! frames latched; never blocks on the second latch (try-lock), so it cannot
//! deadlock with batches that latch frames in id order.

use super::spill::{postorder, remapped_node, FRAME_DATA_BYTES};
use super::Owned;
use crate::ids::FrameId;
use crate::layout::node::{link_target, node_bytes, FLAG_ENTRY, KIND_LINK, OFF_FLAGS};
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
    if pool.resident(child).is_err() || !cell.latch.try_lock() {
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
