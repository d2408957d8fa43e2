//! Spill: move subtrees of a full frame into a new child frame, leaving a
//! link node in each moved subtree's slot.
//!
//! Any node may move, a frame entry included: the link left in its slot
//! keeps the slot valid for whoever references it (a forwarding link). The
//! spill packs the largest "maximal" subtrees (those no bigger than
//! `PACK_BYTES_MAX`, whose parent subtree is bigger) into the new frame, so
//! the new frame starts at most `PACK_BYTES_MAX` full and the source gets
//! back at least half its used bytes (or what the pending insert needs).

use std::collections::HashMap;

use super::{Forward, Owned};
use crate::ids::FrameId;
use crate::layout::node::{encode_link, node_bytes, Inner, InnerAt, LeafAt, FLAG_ENTRY, KIND_LEAF, KIND_LINK, OFF_FLAGS};
use crate::layout::space::{free_node, new_node, replace_node};
use crate::layout::{FrameBuf, Slot, FRAME_BYTES, HEADER_BYTES, NIL, SLOT_BYTES};
use crate::store::pool::Pool;

/// Data-area bytes of an empty frame.
pub(crate) const FRAME_DATA_BYTES: usize = FRAME_BYTES - HEADER_BYTES;
/// Most bytes a spill packs into a new frame, leaving it room to grow.
const PACK_BYTES_MAX: usize = FRAME_DATA_BYTES * 5 / 8;
/// Subtrees smaller than this are not worth a link.
const MOVE_BYTES_MIN: usize = 256;

/// Slots reachable from `root` inside this frame, children before parents.
pub(crate) fn postorder(b: &FrameBuf, root: Slot) -> Vec<Slot> {
    let mut out = Vec::new();
    let mut stack = vec![(root, false)];
    let mut kids = Vec::new();
    while let Some((slot, expanded)) = stack.pop() {
        if expanded {
            out.push(slot);
            continue;
        }
        stack.push((slot, true));
        children_into(b, slot, &mut kids);
        stack.extend(kids.drain(..).map(|c| (Slot(c), false)));
    }
    out
}

/// In-frame children of the node in `slot` (end leaf first); none for
/// leaves and links.
pub(crate) fn child_slots(b: &FrameBuf, slot: Slot) -> Vec<Slot> {
    let mut kids = Vec::new();
    children_into(b, slot, &mut kids);
    kids.into_iter().map(Slot).collect()
}

/// `child_slots` as raw slot numbers appended to `out` (no allocation once
/// `out` has grown).
fn children_into(b: &FrameBuf, slot: Slot, out: &mut Vec<u32>) {
    let Some(off) = b.node_offset(slot) else { return };
    if matches!(b.u8(off), KIND_LEAF | KIND_LINK) {
        return;
    }
    let n = InnerAt(off);
    if n.end(b) != NIL {
        out.push(n.end(b));
    }
    let mut from = 0u16;
    while let Some((byte, c)) = n.child_at_or_after(b, from) {
        out.push(c);
        from = byte as u16 + 1;
    }
}

/// Slots referenced from outside the frame.
pub(crate) fn entry_slots(b: &FrameBuf) -> Vec<Slot> {
    (0..b.slot_count())
        .map(Slot)
        .filter(|&s| b.node_offset(s).is_some_and(|off| b.u8(off + OFF_FLAGS) & FLAG_ENTRY != 0))
        .collect()
}

/// Bytes (node plus slot entry) of every subtree rooted in this frame,
/// indexed by slot number.
fn subtree_sizes(b: &FrameBuf, entries: &[Slot]) -> Vec<usize> {
    let mut size = vec![0; b.slot_count() as usize];
    let mut kids = Vec::new();
    for &e in entries {
        for s in postorder(b, e) {
            let own = node_bytes(b, b.node_offset(s).expect("live")) + SLOT_BYTES;
            children_into(b, s, &mut kids);
            let below: usize = kids.drain(..).map(|c| size[c as usize]).sum();
            size[s.0 as usize] = own + below;
        }
    }
    size
}

/// Maximal subtrees that fit a new frame, largest first.
fn candidates(b: &FrameBuf, entries: &[Slot], size: &[usize]) -> Vec<(usize, Slot)> {
    let mut out = Vec::new();
    let mut stack: Vec<Slot> = entries.to_vec();
    while let Some(s) = stack.pop() {
        let off = b.node_offset(s).expect("live");
        let bytes = size[s.0 as usize];
        if bytes <= PACK_BYTES_MAX {
            if b.u8(off) != KIND_LINK && bytes >= MOVE_BYTES_MIN {
                out.push((bytes, s));
            }
        } else {
            stack.extend(child_slots(b, s));
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// The bytes of the node at `off` of `src`, its child slots renamed through
/// `map` (children are copied first, in postorder).
pub(crate) fn remapped_node(src: &FrameBuf, off: usize, map: &HashMap<u32, u32>) -> Vec<u8> {
    match src.u8(off) {
        KIND_LEAF | KIND_LINK => src.read_vec(off, node_bytes(src, off)),
        _ => {
            let mut n = Inner::decode(src, off);
            if n.end != NIL {
                n.end = map[&n.end];
            }
            n.children.iter_mut().for_each(|(_, c)| *c = map[c]);
            n.encode()
        }
    }
}

/// Copy the subtree whose nodes are `nodes` (in postorder, root last) of
/// `src` into `dst`; returns the root's slot in `dst`.
fn copy_subtree(src: &FrameBuf, nodes: &[Slot], dst: &FrameBuf) -> Slot {
    let mut map: HashMap<u32, u32> = HashMap::new();
    for &s in nodes {
        let bytes = remapped_node(src, src.node_offset(s).expect("live"), &map);
        map.insert(s.0, new_node(dst, &bytes).0);
    }
    let root = nodes.last().expect("a subtree has its root");
    let new_root = Slot(map[&root.0]);
    let off = dst.node_offset(new_root).expect("just written");
    dst.set_u8(off + OFF_FLAGS, dst.u8(off + OFF_FLAGS) | FLAG_ENTRY);
    new_root
}

/// Move subtrees out of owned frame `src` until it has gained at least
/// `need` bytes (or half its used bytes). The new frame is added to `owned`.
/// Returns false if nothing could be moved.
pub(crate) fn spill<'p>(pool: &'p Pool, owned: &mut Owned<'p>, src: FrameId, need: usize) -> bool {
    let b = owned.get(src).and_then(|c| c.buf()).expect("spill source is owned and resident");
    let entries = entry_slots(b);
    let size = subtree_sizes(b, &entries);
    let cands = candidates(b, &entries, &size);
    if cands.is_empty() {
        return false;
    }
    let target = need.max(b.live_bytes() / 2);
    let (id, cell) = pool.create();
    owned.push(id, cell);
    let dst = cell.buf().expect("new frame is resident");
    let mut packed = 0;
    for (bytes, slot) in cands {
        if packed + bytes > PACK_BYTES_MAX {
            continue;
        }
        if let Some(fwd) = move_subtree(b, slot, dst, id, src) {
            owned.forwards.push(fwd);
        }
        packed += bytes;
        if packed >= target {
            break;
        }
    }
    pool.counters.spills.add(1);
    true
}

/// Move the subtree at `slot` of frame `src_id` into `dst`, leaving a link.
/// Moving an entry leaves a forwarding link (another frame links to the
/// slot): returned, with a key under it, so the referrer can be redirected.
fn move_subtree(src: &FrameBuf, slot: Slot, dst: &FrameBuf, dst_id: FrameId, src_id: FrameId) -> Option<Forward> {
    let flags = src.u8(src.node_offset(slot).expect("live") + OFF_FLAGS);
    let nodes = postorder(src, slot);
    let new_slot = copy_subtree(src, &nodes, dst);
    let forward = (flags & FLAG_ENTRY != 0).then(|| first_key(src, &nodes)).flatten();
    for &s in &nodes {
        if s != slot {
            free_node(src, s);
        }
    }
    replace_node(src, slot, &encode_link(dst_id, new_slot, flags & FLAG_ENTRY));
    forward.map(|key| Forward { frame: src_id, slot, key })
}

/// The key of the first leaf among `nodes`, if any.
fn first_key(b: &FrameBuf, nodes: &[Slot]) -> Option<Vec<u8>> {
    nodes.iter().find_map(|&s| {
        let off = b.node_offset(s).expect("live");
        (b.u8(off) == KIND_LEAF).then(|| LeafAt(off).key(b))
    })
}
