//! Spill: move subtrees of a full frame into a new child frame, leaving a
//! link node in each moved subtree's slot.
//!
//! Any node may move, a frame entry included: the link left in its slot
//! keeps the slot valid for whoever references it (a forwarding link). The
//! spill packs the largest "maximal" subtrees (those no bigger than
//! `PACK_BYTES_MAX`, whose parent subtree is bigger) into the new frame, so
//! the new frame starts at most `PACK_BYTES_MAX` full and the source gets
//! back at least half its used bytes (or what the pending insert needs).
//!
//! Subtrees holding no link go first: a subtree holding links is the top
//! of structure already spilled below, and moving it puts one more frame
//! on the path of every key under those links, for good (a 1M-key tree
//! built that way had most keys three links deep where two sufficed). So
//! the maximal link-free subtrees are packed first, and subtrees holding
//! links only when those free less than the pending insert needs or a
//! quarter of the frame (a frame of little but links and the nodes above
//! them: its depth then grows, as a B-tree's root splits).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Forward, Owned};
use crate::ids::FrameId;
use crate::layout::node::{encode_link, node_bytes, remap_image_slots, Inner, InnerAt, LeafAt, FLAG_ENTRY, KIND_LEAF, KIND_LINK, OFF_FLAGS};
use crate::layout::space::{append_nodes, free_nodes, replace_node, with_scratch};
use crate::layout::{FrameBuf, Slot, FRAME_BYTES, HEADER_BYTES, NIL, SLOT_BYTES};
use crate::store::pool::Pool;

/// Data-area bytes of an empty frame.
pub(crate) const FRAME_DATA_BYTES: usize = FRAME_BYTES - HEADER_BYTES;
/// Most bytes a spill packs into a new frame, leaving it room to grow.
const PACK_BYTES_MAX: usize = FRAME_DATA_BYTES * 5 / 8;
/// Subtrees smaller than this are not worth a link.
const MOVE_BYTES_MIN: usize = 256;
/// `Plan::of`'s mark of a stack entry not expanded yet (no offset read).
const UNEXPANDED: usize = usize::MAX;

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
    if let Some(off) = b.node_offset(slot) {
        children_at(b, off, out);
    }
}

/// `children_into` for the node at `off`: the end leaf, then the children
/// in key order (read a word at a time by `children_rev_from`).
fn children_at(b: &FrameBuf, off: usize, out: &mut Vec<u32>) {
    if matches!(b.u8(off), KIND_LEAF | KIND_LINK) {
        return;
    }
    let n = InnerAt(off);
    if n.end(b) != NIL {
        out.push(n.end(b));
    }
    let from = out.len();
    n.children_rev_from(b, 0, |_, c| out.push(c));
    out[from..].reverse();
}

/// Slots referenced from outside the frame.
pub(crate) fn entry_slots(b: &FrameBuf) -> Vec<Slot> {
    (0..b.slot_count())
        .map(Slot)
        .filter(|&s| b.node_offset(s).is_some_and(|off| b.u8(off + OFF_FLAGS) & FLAG_ENTRY != 0))
        .collect()
}

/// One walk's knowledge of a frame's subtrees, by slot number: every
/// subtree rooted at an entry in postorder with siblings in key order
/// (`order`), each node's place in it (`pos`), and each subtree's node
/// count and bytes (nodes plus slot entries). A subtree's nodes are the
/// `count` positions of `order` ending at its root's, so a move reads
/// them without walking again, and they land in the new frame in key
/// order.
struct Plan {
    order: Vec<Slot>,
    pos: Vec<u32>,
    count: Vec<u32>,
    size: Vec<usize>,
    /// Per slot: whether its subtree holds a link.
    links: Vec<bool>,
}

impl Plan {
    fn of(b: &FrameBuf, entries: &[Slot]) -> Plan {
        let slots = b.slot_count() as usize;
        let mut p = Plan { order: Vec::with_capacity(slots), pos: vec![0; slots], count: vec![0; slots], size: vec![0; slots], links: vec![false; slots] };
        // (slot, parent slot or NIL, the node's offset once it has been
        // expanded): a node finishes after its children and adds its
        // totals to its parent's.
        let mut stack: Vec<(u32, u32, usize)> = Vec::new();
        let mut kids = Vec::new();
        for &e in entries {
            stack.push((e.0, NIL, UNEXPANDED));
            while let Some((s, parent, off)) = stack.pop() {
                if off == UNEXPANDED {
                    let off = b.node_offset(Slot(s)).expect("live");
                    stack.push((s, parent, off));
                    children_at(b, off, &mut kids);
                    // Last pushed pops first: end leaf, then key order.
                    stack.extend(kids.drain(..).rev().map(|c| (c, s, UNEXPANDED)));
                    continue;
                }
                let (i, own) = (s as usize, node_bytes(b, off) + SLOT_BYTES);
                p.pos[i] = p.order.len() as u32;
                p.order.push(Slot(s));
                p.count[i] += 1;
                p.size[i] += own;
                p.links[i] |= b.u8(off) == KIND_LINK;
                if parent != NIL {
                    let j = parent as usize;
                    p.count[j] += p.count[i];
                    p.size[j] += p.size[i];
                    p.links[j] |= p.links[i];
                }
            }
        }
        p
    }

    /// The nodes of the subtree rooted at `root`, in postorder.
    fn nodes(&self, root: Slot) -> &[Slot] {
        let end = self.pos[root.0 as usize] as usize + 1;
        &self.order[end - self.count[root.0 as usize] as usize..end]
    }
}

/// Maximal subtrees that fit a new frame, largest first: with `link_free`,
/// maximal among those that hold no link (a subtree holding one is looked
/// into instead).
fn candidates(b: &FrameBuf, entries: &[Slot], plan: &Plan, link_free: bool) -> Vec<(usize, Slot)> {
    let mut out = Vec::new();
    let mut stack: Vec<Slot> = entries.to_vec();
    while let Some(s) = stack.pop() {
        let off = b.node_offset(s).expect("live");
        let bytes = plan.size[s.0 as usize];
        if bytes <= PACK_BYTES_MAX && !(link_free && plan.links[s.0 as usize]) {
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

/// The subtrees a spill needing `need` bytes packs from: the link-free
/// ones if they free that much and a quarter of the frame's live bytes
/// (less would leave it full, to spill again at the next write), else any
/// (see the module doc).
fn chosen_candidates(b: &FrameBuf, entries: &[Slot], plan: &Plan, need: usize) -> Vec<(usize, Slot)> {
    let free = candidates(b, entries, plan, true);
    // What `spill_from` would pack of them: each that still fits.
    let mut packed = 0;
    for &(bytes, _) in &free {
        if packed + bytes <= PACK_BYTES_MAX {
            packed += bytes;
        }
    }
    if !free.is_empty() && packed >= need.max(b.live_bytes() / 4) {
        free
    } else {
        candidates(b, entries, plan, false)
    }
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

/// Copy the subtrees rooted at `roots` of `src` into fresh slots of `dst`,
/// in one append: the roots first, in consecutive slots from the first
/// fresh one, then each subtree's other nodes (`plan`'s postorder) in
/// consecutive slots of their own, so each child slot is renamed by
/// arithmetic. The roots become entries of `dst`, named from `src`'s links
/// for life: giving them the lowest slots puts their slot-table entries,
/// which a lookup entering the frame reads, together at the table's end
/// (the page a frame held in part keeps, `store::cell::skeleton_page`).
/// Returns the roots' slots in `dst`.
fn copy_subtrees(src: &FrameBuf, plan: &Plan, roots: &[Slot], dst: &FrameBuf) -> Vec<Slot> {
    let base = dst.slot_count();
    // Slot of each subtree's first non-root node, and how `plan`'s place of
    // one of its nodes maps to its new slot.
    let mut firsts = Vec::with_capacity(roots.len());
    let mut next = base + roots.len() as u32;
    for &root in roots {
        let nodes = plan.nodes(root);
        firsts.push((next, plan.pos[nodes[0].0 as usize]));
        next += nodes.len() as u32 - 1;
    }
    let mut lens = Vec::with_capacity((next - base) as usize);
    with_scratch(|images| {
        images.clear();
        // Two passes in the order of the new slots: the roots, then each
        // subtree's other nodes.
        for take_roots in [true, false] {
            for (&root, &(first, first_pos)) in roots.iter().zip(&firsts) {
                let nodes = plan.nodes(root);
                let (split, is_root) = nodes.split_at(nodes.len() - 1);
                for &s in if take_roots { is_root } else { split } {
                    let (at, len) = copy_node(src, s, images);
                    remap_image_slots(&mut images[at..], |c| first + plan.pos[c as usize] - first_pos);
                    if take_roots {
                        images[at + OFF_FLAGS] |= FLAG_ENTRY;
                    }
                    lens.push(len as u32);
                }
            }
        }
        append_nodes(dst, images, &lens);
    });
    (0..roots.len() as u32).map(|i| Slot(base + i)).collect()
}

/// Append the image of node `s` of `src` to `out`; returns where it
/// starts and its length.
fn copy_node(src: &FrameBuf, s: Slot, out: &mut Vec<u8>) -> (usize, usize) {
    let off = src.node_offset(s).expect("live");
    let (at, len) = (out.len(), node_bytes(src, off));
    out.resize(at + len, 0);
    // SAFETY: a spill runs with its source frame held exclusively, or on a
    // private copy of it (`spill_from`).
    unsafe { src.read_unshared(off, &mut out[at..]) };
    (at, len)
}

/// Move subtrees out of owned frame `src` until it has gained at least
/// `need` bytes (or half its used bytes). The new frame is added to `owned`.
/// Returns false if nothing could be moved.
pub(crate) fn spill<'p>(pool: &'p Pool, owned: &mut Owned<'p>, src: FrameId, need: usize) -> bool {
    let b = owned.get(src).and_then(|c| c.buf()).expect("spill source is owned and resident");
    let spilled = spill_from(pool, owned, b, src, need);
    if spilled {
        pool.counters.spills.add(1);
    }
    spilled
}

/// `spill` out of `b`, the image of frame `src`: the frame itself, owned,
/// or a private copy of it that the caller installs in the frame once the
/// frame is owned and unchanged since the copy (`maintenance::spill_ahead`;
/// forwards then name the frame as they should). Counts nothing.
pub(crate) fn spill_from<'p>(pool: &'p Pool, owned: &mut Owned<'p>, b: &FrameBuf, src: FrameId, need: usize) -> bool {
    let started = Instant::now();
    let spilled = spill_timed(pool, owned, b, src, need);
    if spilled {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        pool.counters.spill_nanos.add(nanos);
        pool.counters.spill_nanos_max.fetch_max(nanos, Ordering::Relaxed);
    }
    spilled
}

/// `spill_from`, untimed.
fn spill_timed<'p>(pool: &'p Pool, owned: &mut Owned<'p>, b: &FrameBuf, src: FrameId, need: usize) -> bool {
    // The walks below read every node of the frame, one dependent miss
    // after another on a frame that has left the cache: streamed in
    // first, a spill of a loading tree took 605-623 µs against 718-720.
    b.warm_used();
    let entries = entry_slots(b);
    let plan = Plan::of(b, &entries);
    let cands = chosen_candidates(b, &entries, &plan, need);
    if cands.is_empty() {
        return false;
    }
    let target = need.max(b.live_bytes() / 2);
    let mut chosen = Vec::new();
    let mut packed = 0;
    for (bytes, slot) in cands {
        if packed + bytes > PACK_BYTES_MAX {
            continue;
        }
        chosen.push(slot);
        packed += bytes;
        if packed >= target {
            break;
        }
    }
    let (id, cell) = pool.create();
    owned.push(id, cell);
    let dst = cell.buf().expect("new frame is resident");
    owned.forwards.extend(move_subtrees(b, &plan, &chosen, (dst, id), src));
    true
}

/// Move the subtrees at `roots` of frame `src_id` into frame `dst` (its
/// buffer and id), leaving a link in place of each. Moving an entry
/// leaves a forwarding link (another frame links to the slot): returned,
/// with a key under it, so the referrer can be redirected.
fn move_subtrees(src: &FrameBuf, plan: &Plan, roots: &[Slot], dst: (&FrameBuf, FrameId), src_id: FrameId) -> Vec<Forward> {
    let new_slots = copy_subtrees(src, plan, roots, dst.0);
    let mut forwards = Vec::new();
    for (&slot, new_slot) in roots.iter().zip(new_slots) {
        let flags = src.u8(src.node_offset(slot).expect("live") + OFF_FLAGS);
        let nodes = plan.nodes(slot);
        if let Some(key) = (flags & FLAG_ENTRY != 0).then(|| first_key(src, nodes)).flatten() {
            forwards.push(Forward { frame: src_id, slot, key });
        }
        free_nodes(src, nodes[..nodes.len() - 1].iter().copied());
        replace_node(src, slot, &encode_link(dst.1, new_slot, flags & FLAG_ENTRY));
    }
    forwards
}

/// The key of the first leaf among `nodes`, if any.
fn first_key(b: &FrameBuf, nodes: &[Slot]) -> Option<Vec<u8>> {
    nodes.iter().find_map(|&s| {
        let off = b.node_offset(s).expect("live");
        (b.u8(off) == KIND_LEAF).then(|| LeafAt(off).key(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::node::encode_leaf;
    use crate::layout::space::{check_space, new_node};

    fn leaf(b: &FrameBuf, key: &[u8]) -> u32 {
        new_node(b, &encode_leaf(key, b"v", 1, 0)).0
    }

    fn key_at(b: &FrameBuf, s: Slot) -> Vec<u8> {
        LeafAt(b.node_offset(s).unwrap()).key(b)
    }

    /// A frame holding root (entry) -> end leaf "x", 'a' -> inner
    /// {"xa1", "xa2", "xa3"}, 'b' -> "xb", its nodes stored out of key
    /// order as inserts leave them; returns the root and the inner node.
    fn frame(b: &FrameBuf) -> (Slot, Slot) {
        b.format(FrameId(1));
        let (xb, xa3, xa1, xa2) = (leaf(b, b"xb"), leaf(b, b"xa3"), leaf(b, b"xa1"), leaf(b, b"xa2"));
        let a = Inner { flags: 0, prefix: vec![], end: NIL, children: vec![(b'1', xa1), (b'2', xa2), (b'3', xa3)] };
        let a = new_node(b, &a.encode());
        let end = leaf(b, b"x");
        let root = Inner { flags: FLAG_ENTRY, prefix: b"x".to_vec(), end, children: vec![(b'a', a.0), (b'b', xb)] };
        (new_node(b, &root.encode()), a)
    }

    #[test]
    fn the_plan_lists_each_subtree_in_key_order_with_its_size() {
        let b = FrameBuf::zeroed();
        let (root, a) = frame(&b);
        let plan = Plan::of(&b, &entry_slots(&b));
        let keys: Vec<Vec<u8>> = plan.nodes(a).iter().filter(|&&s| s != a).map(|&s| key_at(&b, s)).collect();
        assert_eq!(keys, [b"xa1".to_vec(), b"xa2".to_vec(), b"xa3".to_vec()], "children in key order");
        assert_eq!(plan.nodes(a).last(), Some(&a), "the root last");
        assert_eq!(plan.nodes(root).len(), 7);
        assert_eq!(plan.nodes(root)[0], Slot(b.node_offset(root).map(|o| InnerAt(o).end(&b)).unwrap()), "end leaf first");
        let bytes = |s: Slot| node_bytes(&b, b.node_offset(s).unwrap()) + SLOT_BYTES;
        assert_eq!(plan.size[a.0 as usize], plan.nodes(a).iter().map(|&s| bytes(s)).sum::<usize>());
        assert_eq!(plan.size[root.0 as usize], b.live_bytes() + SLOT_BYTES * b.live_slots() as usize);
    }

    /// A subtree holding a link is the top of structure already spilled:
    /// its link-free parts are packed instead, unless they free too little.
    #[test]
    fn link_free_subtrees_are_packed_before_any_holding_a_link() {
        let b = FrameBuf::zeroed();
        b.format(FrameId(1));
        let big = |key: &[u8]| new_node(&b, &encode_leaf(key, &[7u8; 600], 1, 0)).0;
        let (a1, a2) = (big(b"xa1"), big(b"xa2"));
        let link = new_node(&b, &encode_link(FrameId(9), Slot(3), 0)).0;
        let a = Inner { flags: 0, prefix: vec![], end: NIL, children: vec![(b'1', a1), (b'2', a2), (b'3', link)] };
        let a = new_node(&b, &a.encode());
        let b1 = big(b"xb1");
        let bn = new_node(&b, &Inner { flags: 0, prefix: vec![], end: NIL, children: vec![(b'1', b1)] }.encode());
        let root = Inner { flags: FLAG_ENTRY, prefix: b"x".to_vec(), end: NIL, children: vec![(b'a', a.0), (b'b', bn.0)] };
        let root = new_node(&b, &root.encode());
        let entries = entry_slots(&b);
        let plan = Plan::of(&b, &entries);
        assert!(plan.links[a.0 as usize] && plan.links[root.0 as usize] && !plan.links[bn.0 as usize]);
        let slots = |c: Vec<(usize, Slot)>| c.into_iter().map(|(_, s)| s.0).collect::<Vec<_>>();
        assert_eq!(slots(candidates(&b, &entries, &plan, false)), [root.0], "the whole small frame, links and all");
        let free = slots(chosen_candidates(&b, &entries, &plan, 0));
        assert_eq!(free, [bn.0, a2, a1], "the link-free parts, largest first (ties by slot)");
        // Mostly links: the one link-free leaf is under a quarter of it.
        let b = FrameBuf::zeroed();
        b.format(FrameId(2));
        let mut children: Vec<(u8, u32)> = (0..80u8).map(|i| (i, new_node(&b, &encode_link(FrameId(9), Slot(u32::from(i)), 0)).0)).collect();
        children.push((200, new_node(&b, &encode_leaf(b"y\xc8", &[7u8; 600], 1, 0)).0));
        let root = new_node(&b, &Inner { flags: FLAG_ENTRY, prefix: b"y".to_vec(), end: NIL, children }.encode());
        let entries = entry_slots(&b);
        let plan = Plan::of(&b, &entries);
        assert_eq!(slots(candidates(&b, &entries, &plan, true)).len(), 1);
        assert_eq!(slots(chosen_candidates(&b, &entries, &plan, 0)), [root.0], "under a quarter of the frame free: anything goes");
        assert_eq!(slots(chosen_candidates(&b, &entries, &plan, 100_000)), [root.0], "too little free: anything goes");
    }

    /// Directory-shaped keys (as holt-fs stores them: `D/`, the parent's
    /// inode number, `/`, a name) in random order, plus a few directories
    /// far away in inode numbers: packing the largest subtree that fits,
    /// links and all, moved the top of the near directories into a child
    /// frame early, and every key under it stayed a frame deeper (2.56
    /// links a key on average here; this rule: 1.79).
    #[test]
    fn spills_keep_the_tree_shallow() {
        let tree = crate::TreeBuilder::new("unused").memory().open().unwrap();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let dentry = |ino: u64, name: String| [&b"D/"[..], &ino.to_be_bytes(), b"/", name.as_bytes()].concat();
        let mut keys = Vec::new();
        let mut ino = 2;
        while keys.len() < 150_000 {
            for i in 0..1 + next() % 200 {
                let stem = ["index", "main", "util", "config", "readme", "test"][(next() % 6) as usize];
                keys.push(dentry(ino, if next() % 5 == 0 { format!("{stem}-{:016x}-{i}", next()) } else { format!("{stem}_{i:04}") }));
            }
            ino += 1;
        }
        keys.extend((0..20_000).map(|i| dentry((1 << 40) + i / 1000, format!("main_{:04}.rs", i % 1000))));
        for i in (1..keys.len()).rev() {
            keys.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for k in &keys {
            tree.put(k, &[7; 70]).unwrap();
        }
        let census = crate::tree::check::check_tree(tree.engine().pool()).unwrap();
        let hops = census.link_hops_sum as f64 / census.keys as f64;
        assert!(census.frames > 50, "the keys spilled: {} frames", census.frames);
        assert!(hops < 2.0, "{hops:.2} links crossed a key on average");
        // A spill's roots take the new frame's lowest slots, and entries
        // keep their numbers: every frame's entries have slot-table
        // entries in the table's last page (slots below 1024), which a
        // frame held in part keeps.
        let pool = tree.engine().pool();
        let ids = pool.live_ids();
        let last_page = (crate::store::frame_file::PAGE_BYTES / crate::layout::SLOT_BYTES) as u32;
        let low = |id| entry_slots(pool.cell(id).unwrap().buf().unwrap()).iter().all(|s| s.0 < last_page);
        let high: Vec<_> = ids.iter().filter(|&&id| !low(id)).collect();
        assert!(high.is_empty(), "frames with entries past the table's last page: {high:?}");
    }

    #[test]
    fn a_moved_subtree_keeps_its_shape_its_root_first() {
        let (src, dst) = (FrameBuf::zeroed(), FrameBuf::zeroed());
        let (root, a) = frame(&src);
        dst.format(FrameId(2));
        leaf(&dst, b"already here");
        let plan = Plan::of(&src, &entry_slots(&src));
        let live = src.live_bytes();
        assert!(move_subtrees(&src, &plan, &[a], (&dst, FrameId(2)), FrameId(1)).is_empty(), "not an entry: no forward");
        check_space(&src).unwrap();
        check_space(&dst).unwrap();
        let link = src.node_offset(a).unwrap();
        assert_eq!(src.u8(link), KIND_LINK);
        let (to_frame, to_slot) = crate::layout::node::link_target(&src, link);
        assert_eq!((to_frame, to_slot), (FrameId(2), Slot(1)), "the root first, after the slot in use");
        let moved = Inner::decode(&dst, dst.node_offset(to_slot).unwrap());
        assert_eq!(moved.flags & FLAG_ENTRY, FLAG_ENTRY, "the moved root is an entry of its new frame");
        let got: Vec<(u8, Vec<u8>)> = moved.children.iter().map(|&(k, c)| (k, key_at(&dst, Slot(c)))).collect();
        assert_eq!(got, [(b'1', b"xa1".to_vec()), (b'2', b"xa2".to_vec()), (b'3', b"xa3".to_vec())]);
        assert_eq!(moved.children.iter().map(|c| c.1).collect::<Vec<_>>(), [2, 3, 4], "leaves in key order, after the root");
        assert!(src.live_bytes() < live);
        assert_eq!(Inner::decode(&src, src.node_offset(root).unwrap()).children[0], (b'a', a.0), "the parent is untouched");
    }
}
