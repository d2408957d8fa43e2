//! Tidy: lay a frame's nodes out again in key order and number its slots
//! in the same order.
//!
//! Inserts place every new or grown node at the end of the data area and
//! reuse whatever slot is free, so after a while a descent's nodes, their
//! slot-table entries and a directory's leaves are scattered over the
//! frame: each costs a cache miss of its own. A tidy rewrites the frame so
//! that nodes follow each other in preorder (a node, its end leaf, then
//! each child's subtree by key byte) and slots are numbered in that order:
//! a descent then walks forward through the data area and the table, and
//! a scan reads both front to back.
//!
//! Slot numbers are handles: a node's parent names it by slot. A tidy
//! renumbers only nodes whose parent lives in the same frame, rewriting the
//! parent in the same pass; a node named from outside the frame (a link's
//! target or the tree root: flagged `ENTRY`, and never the child of a node
//! here) keeps its number, so links, batch hints and forwards, which name
//! only such slots, stay valid. The caller holds the frame exclusively, so
//! readers see either layout, and the content (every key, value and
//! version) is the same in both: nothing is logged.

use crate::layout::node::{for_each_child_field, hinted_field, image_node_bytes, remap_image_slots, slot_field, FLAG_ENTRY, OFF_FLAGS};
use crate::layout::space::{install_layout, with_scratch};
use crate::store::pool::Pool;
use crate::layout::{
    image_u32, set_image_u32, FrameBuf, FLAG_PREORDER, FRAME_BYTES, HDR_DATA_END, HDR_DEAD_BYTES, HDR_FLAGS, HDR_FREE_SLOT, HDR_LIVE_BYTES, HDR_LIVE_SLOTS, HDR_PLACED, HDR_RUNS_FROM,
    HDR_SLOT_COUNT, HDR_VERSION, HEADER_BYTES, FRAME_VERSION, NIL, SLOT_BYTES, SLOT_FREE_BIT,
};

/// A frame is worth a tidy once this share (1/N) of its live nodes were
/// placed since the last one.
const PLACED_SHARE: u32 = 8;
/// ...and at least this many: a small frame fits in a few cache lines
/// however its nodes lie.
const PLACED_MIN: u32 = 64;
/// In the `Pages` shape, an inner node whose subtree holds more bytes
/// than this is an upper node.
pub(crate) const RUN_BYTES: usize = 4096;

/// What a tidy lays a frame out for (FORMAT.md, Tidy layout).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shape {
    /// No upper nodes: every tree of the frame is one run, in preorder. For
    /// a tree the cache holds: scans read long runs (shorter ones cost a
    /// 1000-entry listing ~18% more instructions, benches/RESULTS.md run 31).
    Scans,
    /// Upper nodes (inner nodes holding more than `RUN_BYTES` below them)
    /// together at the data area's start, then every other subtree whole.
    /// For a tree larger than the cache, whose frames are read back by
    /// pages: a lookup crosses a frame's upper nodes, which few pages hold
    /// and every lookup through the frame shares, then one run of at most
    /// `RUN_BYTES` (a page, or two); in preorder the nodes of its path lie a
    /// page apart at each level.
    Pages,
}

impl Shape {
    /// The shape for the frames of `pool`'s tree: `Pages` once its frames
    /// are read back by pages (`Pool::loads_pages`).
    pub(crate) fn for_pool(pool: &Pool) -> Shape {
        if pool.loads_pages() {
            Shape::Pages
        } else {
            Shape::Scans
        }
    }

    /// Subtree bytes past which an inner node is an upper node.
    fn upper_above(self) -> usize {
        match self {
            Shape::Scans => usize::MAX,
            Shape::Pages => RUN_BYTES,
        }
    }
}

/// Whether enough nodes were placed out of order for a tidy to pay. Read
/// from the header alone, so an optimistic look is fine (it is a hint).
pub(crate) fn wants_tidy(b: &FrameBuf) -> bool {
    placed_enough(b.placed(), b.live_slots())
}

fn placed_enough(placed: u32, live_slots: u32) -> bool {
    placed >= PLACED_MIN && placed.saturating_mul(PLACED_SHARE) >= live_slots
}

/// A frame's nodes laid out in key order, ready to replace its data area
/// and slot table (`install`).
pub(crate) struct Tidied {
    data: Vec<u8>,
    table: Vec<u8>,
    free_head: u32,
    /// Frame offset of the first node of the runs (`FrameBuf::runs_from`).
    runs_from: usize,
}

/// Lay out a copy of the frame in key order. The copy is taken with the
/// same atomic loads optimistic readers use, so the caller need not hold
/// the frame: the layout is exact if the frame's version did not move
/// from before the call until the caller takes it exclusively to
/// `install` (or if the caller holds it throughout). `None` if the copy's
/// nodes do not form a forest (a child named twice or out of range, an
/// unreachable cycle): bytes torn by a writer, or a damaged frame, which a
/// tidy must not turn into a differently damaged one.
pub(crate) fn plan(b: &FrameBuf, shape: Shape) -> Option<Tidied> {
    let data_end = (b.data_end()).clamp(HEADER_BYTES, FRAME_BYTES);
    let slots = (b.slot_count() as usize).min((FRAME_BYTES - data_end) / SLOT_BYTES);
    let mut table = vec![0u8; slots * SLOT_BYTES];
    b.copy_out(FRAME_BYTES - table.len(), &mut table);
    with_scratch(|data| {
        data.resize(data_end - HEADER_BYTES, 0);
        b.copy_out(HEADER_BYTES, data);
        lay_out(data, &table, b.live_bytes(), shape)
    })
}

/// The layout of the nodes in `data` (the data area) named by `table`
/// (the slot table), if they form a forest of `live_bytes`.
fn lay_out(data: &[u8], table: &[u8], live_bytes: usize, shape: Shape) -> Option<Tidied> {
    let frame = Forest::read(data, table)?;
    let tidied = frame.layout(shape)?.build(&frame);
    // Overlapping nodes would pass as a forest and come out larger.
    let fits = tidied.data.len() == live_bytes && HEADER_BYTES + tidied.data.len() + tidied.table.len() <= FRAME_BYTES;
    fits.then_some(tidied)
}

/// Lay out a captured image (`FrameBuf::image_into`: header, data area,
/// zeros, slot table) in key order, in place, in `shape`, if its frame
/// wants a tidy, or (`Shape::Pages`: a tree larger than the cache, read
/// back by pages) if it was never laid out for pages: what a checkpoint writes
/// is then in key order, although the frame in memory is not. Both name
/// the same nodes by the same entry slots (a tidy keeps them) and hold the
/// same keys, values and versions, so the store may hold either; a frame
/// read back from the store is the tidy one. The free gap stays zeros
/// (`layout::free_gap`). Returns whether it did.
pub(crate) fn tidy_image(img: &mut [u8], shape: Shape) -> bool {
    if img.len() != FRAME_BYTES {
        return false;
    }
    let flags = u16::from_le_bytes([img[HDR_FLAGS], img[HDR_FLAGS + 1]]);
    let never = shape == Shape::Pages && never_laid_out_for_pages(image_u32(img, HDR_RUNS_FROM) as usize, image_u32(img, HDR_LIVE_BYTES) as usize);
    if !never && !placed_enough(image_u32(img, HDR_PLACED), image_u32(img, HDR_LIVE_SLOTS)) {
        return false;
    }
    let data_end = (image_u32(img, HDR_DATA_END) as usize).clamp(HEADER_BYTES, FRAME_BYTES);
    let slots = (image_u32(img, HDR_SLOT_COUNT) as usize).min((FRAME_BYTES - data_end) / SLOT_BYTES);
    let table_at = FRAME_BYTES - slots * SLOT_BYTES;
    let Some(tidied) = lay_out(&img[HEADER_BYTES..data_end], &img[table_at..], image_u32(img, HDR_LIVE_BYTES) as usize, shape) else {
        return false;
    };
    let (new_end, new_table_at) = (HEADER_BYTES + tidied.data.len(), FRAME_BYTES - tidied.table.len());
    img[HEADER_BYTES..new_end].copy_from_slice(&tidied.data);
    img[new_end..new_table_at].fill(0);
    img[new_table_at..].copy_from_slice(&tidied.table);
    set_image_u32(img, HDR_SLOT_COUNT, (tidied.table.len() / SLOT_BYTES) as u32);
    set_image_u32(img, HDR_FREE_SLOT, tidied.free_head);
    set_image_u32(img, HDR_DATA_END, new_end as u32);
    set_image_u32(img, HDR_DEAD_BYTES, 0);
    set_image_u32(img, HDR_PLACED, 0);
    set_image_u32(img, HDR_RUNS_FROM, tidied.runs_from as u32);
    img[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&FRAME_VERSION.to_le_bytes());
    img[HDR_FLAGS..HDR_FLAGS + 2].copy_from_slice(&(flags | FLAG_PREORDER).to_le_bytes());
    true
}

/// Whether a frame of `live_bytes` whose header holds `runs_from` (raw)
/// was never laid out for pages: it holds more than a run, yet no tidy
/// gave it upper nodes. Only a tidy writes `runs_from`, so it is zero in a
/// frame never laid out at all, such as one a spill made (its nodes
/// appended in postorder, which `placed` does not count), and the data
/// area's start in one laid out for scans.
pub(crate) fn never_laid_out_for_pages(runs_from: usize, live_bytes: usize) -> bool {
    runs_from <= HEADER_BYTES && live_bytes > RUN_BYTES
}

impl Tidied {
    /// Replace the frame's layout; the caller holds it exclusively, and it
    /// is unchanged since `plan` copied it.
    pub(crate) fn install(self, b: &FrameBuf) {
        install_layout(b, &self.data, &self.table, self.free_head, self.runs_from);
    }
}

/// A frame's nodes as copied out of it: each live slot's node offset in
/// `data` (which starts at the frame's byte 64), and which slots a node of
/// this frame names as a child.
struct Forest<'a> {
    data: &'a [u8],
    /// Per slot: offset of its node in `data`, or `None` if free.
    at: Vec<Option<usize>>,
    child: Vec<bool>,
}

impl<'a> Forest<'a> {
    fn read(data: &'a [u8], table: &[u8]) -> Option<Forest<'a>> {
        let slots = table.len() / SLOT_BYTES;
        // The table's last entry is slot 0's.
        let entry = |s: usize| {
            let i = (slots - 1 - s) * SLOT_BYTES;
            u32::from_le_bytes(table[i..i + SLOT_BYTES].try_into().expect("slot entry"))
        };
        let mut at = vec![None; slots];
        for (s, at) in at.iter_mut().enumerate() {
            let e = entry(s);
            if e & SLOT_FREE_BIT == 0 {
                let off = (e as usize).checked_sub(HEADER_BYTES)?;
                let len = image_node_bytes(data.get(off..)?);
                (len > 0 && off + len <= data.len()).then_some(())?;
                *at = Some(off);
            }
        }
        let mut child = vec![false; slots];
        let mut forest = true;
        for off in at.iter().flatten() {
            let node = &data[*off..];
            for_each_child_field(node, |field| match slot_field(node, field) {
                NIL => {}
                c => match child.get_mut(c as usize).filter(|_| at[c as usize].is_some()) {
                    Some(named) => forest &= !std::mem::replace(named, true),
                    None => forest = false,
                },
            });
        }
        forest.then_some(Forest { data, at, child })
    }

    fn node(&self, s: usize) -> &[u8] {
        &self.data[self.at[s].expect("live slot")..]
    }

    /// A node whose slot must keep its number: named from outside the
    /// frame (`ENTRY`), or by no node here (the root, or a link's target).
    fn fixed(&self, s: usize) -> bool {
        !self.child[s] || self.node(s)[OFF_FLAGS] & FLAG_ENTRY != 0
    }

    /// The tidy layout of every live slot, and its new number; `None` if
    /// some live node is unreachable (a cycle).
    fn layout(&self, shape: Shape) -> Option<Layout> {
        let (order, parent) = self.preorder()?;
        let upper = self.upper_nodes(&order, &parent, shape.upper_above());
        // Upper nodes first, then the runs: a stable partition of the
        // preorder, so each keeps its order among its kind.
        let (mut placed, runs): (Vec<u32>, Vec<u32>) = order.iter().partition(|&&s| upper[s as usize]);
        let runs_at = placed.len();
        placed.extend(runs);
        // Numbers in the same order, but each run's root right after the
        // upper nodes: a lookup leaving the upper nodes (too far for a
        // distance) reads their slot-table entries, which then lie together.
        let is_root = |s: u32| parent[s as usize] == NIL || upper[parent[s as usize] as usize];
        let (roots, rest): (Vec<u32>, Vec<u32>) = placed[runs_at..].iter().partition(|&&s| is_root(s));
        let numbered = placed[..runs_at].iter().chain(&roots).chain(&rest);
        let renumber = self.renumber(numbered);
        Some(Layout { order: placed, runs_at, renumber })
    }

    /// Every live slot in preorder from each unnamed node (by slot), with
    /// each one's parent (`NIL` for none); `None` if some live node is
    /// unreachable.
    fn preorder(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        let slots = self.at.len();
        let live = self.at.iter().flatten().count();
        let mut order = Vec::with_capacity(live);
        let mut parent = vec![NIL; slots];
        let mut stack = Vec::new();
        for root in (0..slots).filter(|&s| self.at[s].is_some() && !self.child[s]) {
            stack.push(root as u32);
            while let Some(s) = stack.pop() {
                order.push(s);
                let node = self.node(s as usize);
                // Last pushed pops first: the end leaf, then key order.
                let from = stack.len();
                for_each_child_field(node, |f| match slot_field(node, f) {
                    NIL => {}
                    c => {
                        parent[c as usize] = s;
                        stack.push(c);
                    }
                });
                stack[from..].reverse();
            }
        }
        (order.len() == live).then_some((order, parent))
    }

    /// Per slot, whether it is an upper node: an inner node whose subtree
    /// holds more than `above` bytes. Every ancestor of one is one too.
    fn upper_nodes(&self, order: &[u32], parent: &[u32], above: usize) -> Vec<bool> {
        let mut bytes = vec![0usize; parent.len()];
        // Children come after their parent in preorder: sum from the end.
        for &s in order.iter().rev() {
            let node = self.node(s as usize);
            bytes[s as usize] += image_node_bytes(node);
            if let Some(p) = parent.get(s as usize).copied().filter(|&p| p != NIL) {
                bytes[p as usize] += bytes[s as usize];
            }
        }
        let inner = |s: usize| (2..=5).contains(&self.node(s)[0]);
        (0..parent.len()).map(|s| self.at[s].is_some() && bytes[s] > above && inner(s)).collect()
    }

    /// New numbers for live slots, given in `numbered` order: fixed slots
    /// keep theirs, the others take the lowest free ones in turn.
    fn renumber<'n>(&self, numbered: impl Iterator<Item = &'n u32> + Clone) -> Vec<u32> {
        let slots = self.at.len();
        let mut renumber = vec![NIL; slots];
        let mut taken = vec![false; slots];
        for &s in numbered.clone().filter(|&&s| self.fixed(s as usize)) {
            renumber[s as usize] = s;
            taken[s as usize] = true;
        }
        let mut next = 0;
        for &s in numbered.filter(|&&s| !self.fixed(s as usize)) {
            while taken[next] {
                next += 1;
            }
            renumber[s as usize] = next as u32;
            taken[next] = true;
        }
        renumber
    }
}

/// Where each node goes: `order` is the layout of old slots (upper nodes,
/// then from `order[runs_at]` on the runs), `renumber[old]` the new number
/// of each live slot.
struct Layout {
    order: Vec<u32>,
    runs_at: usize,
    renumber: Vec<u32>,
}

impl Layout {
    /// The new data area, slot table (slot 0's entry last) and free-list
    /// head: nodes packed in `order`, child fields renamed and carrying
    /// each child's distance where it fits (`hinted_field`), the unused
    /// numbers below the highest one freed, lowest first.
    fn build(&self, frame: &Forest<'_>) -> Tidied {
        let count = self.order.iter().map(|&s| self.renumber[s as usize] + 1).max().unwrap_or(0) as usize;
        // Where each node lands (nodes are packed in `order`), by new slot,
        // so each child field is written once, with its distance.
        let mut offset = vec![NIL; count];
        let (mut end, mut runs_from) = (HEADER_BYTES, HEADER_BYTES);
        for (i, &s) in self.order.iter().enumerate() {
            if i == self.runs_at {
                runs_from = end;
            }
            offset[self.renumber[s as usize] as usize] = end as u32;
            end += image_node_bytes(frame.node(s as usize));
        }
        if self.runs_at == self.order.len() {
            runs_from = end;
        }
        let mut data = Vec::with_capacity(end - HEADER_BYTES);
        for &s in &self.order {
            let node = frame.node(s as usize);
            let (start, at) = (data.len(), offset[self.renumber[s as usize] as usize]);
            data.extend_from_slice(&node[..image_node_bytes(node)]);
            remap_image_slots(&mut data[start..], |c| {
                let n = self.renumber[c as usize];
                hinted_field(n, offset[n as usize].checked_sub(at).map(|d| d as usize))
            });
        }
        let mut table = vec![0u8; count * SLOT_BYTES];
        let mut free_head = NIL;
        for n in (0..count).rev() {
            let e = match offset[n] {
                NIL => SLOT_FREE_BIT | std::mem::replace(&mut free_head, n as u32),
                off => off,
            };
            let i = (count - 1 - n) * SLOT_BYTES;
            table[i..i + SLOT_BYTES].copy_from_slice(&e.to_le_bytes());
        }
        Tidied { data, table, free_head, runs_from }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FrameId;
    use crate::layout::node::{encode_leaf, field_at, field_hint, field_slot, node_bytes, Inner, LeafAt, KIND_LEAF};
    use crate::layout::space::{live_nodes, new_node};
    use crate::layout::Slot;
    use crate::tree::spill::{child_slots, entry_slots};
    use crate::{Tree, TreeBuilder};

    /// Keys in random order, spread over a few hundred "directories", enough
    /// to spill into several frames.
    fn random_tree(keys: u32) -> Tree {
        let tree = TreeBuilder::new("tidy").memory().open().unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..keys {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("d{:03}/{:016x}-{i}", x % 300, x >> 8);
            tree.put(key.as_bytes(), &[i as u8; 40]).unwrap();
        }
        tree
    }

    fn contents(tree: &Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        let entry = |e: crate::RangeEntry| match e {
            crate::RangeEntry::Key { key, value } => (key, value),
            crate::RangeEntry::CommonPrefix(p) => panic!("no delimiter, no group: {p:?}"),
        };
        tree.range().into_iter().map(|e| entry(e.unwrap())).collect()
    }

    /// The subtree at `root`, each node before its end leaf and children.
    fn in_key_order(b: &FrameBuf, root: Slot) -> Vec<Slot> {
        let mut out = vec![root];
        for c in child_slots(b, root) {
            out.extend(in_key_order(b, c));
        }
        out
    }

    /// Keys inserted in order (an untar) leave frames a spill made with few
    /// nodes placed since: they want no tidy, but were never laid out. For
    /// pages their images are laid out; for scans they are not.
    #[test]
    fn images_of_frames_never_laid_out_are_laid_out_for_pages() {
        let tree = TreeBuilder::new("untar").memory().open().unwrap();
        for i in 0..30_000u32 {
            tree.put(format!("d{:03}/file-{i:06}", i / 100).as_bytes(), &[7; 60]).unwrap();
        }
        let pool = tree.engine().pool();
        let mut never = 0;
        for id in pool.live_ids() {
            let b = pool.cell(id).unwrap().buf().unwrap();
            if wants_tidy(b) || b.in_preorder() || b.u32(HDR_RUNS_FROM) != 0 || b.live_bytes() <= RUN_BYTES {
                continue;
            }
            never += 1;
            let mut img = vec![0u8; FRAME_BYTES];
            b.image_into(&mut img);
            assert!(!tidy_image(&mut img, Shape::Scans), "frame {id:?}: no tidy wanted for scans");
            assert!(tidy_image(&mut img, Shape::Pages), "frame {id:?}: never laid out");
            assert!(image_u32(&img, HDR_RUNS_FROM) as usize > HEADER_BYTES, "a big frame has upper nodes");
            assert!(!tidy_image(&mut img, Shape::Pages), "laid out once");
        }
        assert!(never > 3, "frames a spill made and no tidy since: {never}");
    }

    /// Bytes of the subtree at `s`, into `bytes` per slot.
    fn subtree_bytes(b: &FrameBuf, s: Slot, bytes: &mut std::collections::HashMap<Slot, usize>) -> usize {
        let own = node_bytes(b, b.node_offset(s).unwrap());
        let total = own + child_slots(b, s).into_iter().map(|c| subtree_bytes(b, c, bytes)).sum::<usize>();
        bytes.insert(s, total);
        total
    }

    /// The tidy layout: every upper node (an inner node holding more than
    /// `RUN_BYTES` below it) lies before `runs_from`, every other node from
    /// it on; so every run but a lone big leaf spans at most two pages. Run
    /// roots are numbered before the other nodes of the runs (entries keep
    /// their numbers).
    fn upper_nodes_then_runs(b: &FrameBuf, entries: &[Slot]) {
        let mut bytes = std::collections::HashMap::new();
        for &e in entries {
            subtree_bytes(b, e, &mut bytes);
        }
        let (runs_from, mut roots, mut others) = (b.runs_from(), Vec::new(), Vec::new());
        for (off, s) in live_nodes(b) {
            let upper = b.u8(off) != KIND_LEAF && b.u8(off) != crate::layout::node::KIND_LINK && bytes[&s] > RUN_BYTES;
            assert_eq!(off < runs_from, upper, "slot {s:?} at {off}, {} bytes below, runs from {runs_from}", bytes[&s]);
            if upper {
                for c in child_slots(b, s).into_iter().filter(|c| !entries.contains(c)) {
                    if b.node_offset(c).unwrap() >= runs_from {
                        roots.push(c.0);
                    }
                }
            } else if !entries.contains(&s) {
                others.push(s.0);
            }
        }
        others.retain(|s| !roots.contains(s));
        assert!(roots.iter().all(|r| others.iter().all(|o| r < o)), "run roots are numbered first");
        if b.live_bytes() > 4 * RUN_BYTES {
            assert!(runs_from > HEADER_BYTES && !roots.is_empty(), "a big frame has upper nodes: runs from {runs_from}");
        }
    }

    #[test]
    fn a_tidy_keeps_every_key_and_lays_each_frame_out_in_key_order() {
        let tree = random_tree(40_000);
        let before = contents(&tree);
        let pool = tree.engine().pool();
        let ids = pool.live_ids();
        let mut hinted = 0;
        assert!(ids.len() > 3, "the keys spilled into several frames");
        for &id in &ids {
            let b = pool.cell(id).unwrap().buf().unwrap();
            let entries = entry_slots(b);
            let (live_slots, live_bytes) = (b.live_slots(), b.live_bytes());
            assert!(b.placed() > 0);
            plan(b, Shape::Pages).expect("a tree's frame is a forest").install(b);
            assert_eq!(entry_slots(b), entries, "frame {id:?}: entries keep their slots");
            assert_eq!((b.live_slots(), b.live_bytes(), b.dead_bytes(), b.placed()), (live_slots, live_bytes, 0, 0));
            assert!(!wants_tidy(b));
            hinted += hinted_fields(b);
            // After a tidy a subtree's leaves lie in key order in the data
            // area, and are numbered in that order.
            for &e in &entries {
                let leaves: Vec<(Slot, usize)> = in_key_order(b, e)
                    .into_iter()
                    .filter_map(|s| b.node_offset(s).filter(|&off| b.u8(off) == KIND_LEAF).map(|off| (s, off)))
                    .collect();
                let keys: Vec<Vec<u8>> = leaves.iter().map(|&(_, off)| LeafAt(off).key(b)).collect();
                assert!(keys.windows(2).all(|w| w[0] < w[1]));
                assert!(leaves.windows(2).all(|w| w[0].1 < w[1].1), "frame {id:?}: leaves in key order in the data area");
            }
            upper_nodes_then_runs(b, &entries);
        }
        // The check follows each distance to its child (`check::check_hints`).
        tree.engine().check_invariants().unwrap();
        assert!(hinted > 1000, "child fields carry distances after a tidy: {hinted}");
        assert_eq!(contents(&tree), before);
        for (i, (k, v)) in before.iter().enumerate().step_by(97) {
            assert_eq!(tree.get(k).unwrap().as_ref(), Some(v), "key {i}");
        }
        tree.put(b"d000/after", b"v").unwrap();
        tree.delete(&before[5].0).unwrap();
        tree.engine().check_invariants().unwrap();
    }

    /// A captured image laid out by `tidy_image` is byte for byte the image
    /// of the frame laid out in memory in the same shape; an image that does
    /// not want a tidy, or whose nodes are not a forest, is left as it was,
    /// but for pages one never laid out for pages is laid out.
    #[test]
    fn an_image_is_tidied_exactly_as_its_frame_would_be() {
        for shape in [Shape::Scans, Shape::Pages] {
            image_tidied_as_its_frame(shape);
        }
    }

    fn image_tidied_as_its_frame(shape: Shape) {
        let tree = random_tree(40_000);
        let pool = tree.engine().pool();
        let mut tidied = 0;
        for id in pool.live_ids() {
            let b = pool.cell(id).unwrap().buf().unwrap();
            let mut img = vec![0u8; FRAME_BYTES];
            b.image_into(&mut img);
            let never = never_laid_out_for_pages(b.u32(HDR_RUNS_FROM) as usize, b.live_bytes());
            let wanted = wants_tidy(b) || (shape == Shape::Pages && never);
            assert_eq!(tidy_image(&mut img, shape), wanted, "frame {id:?}");
            if wanted {
                plan(b, shape).expect("a tree's frame is a forest").install(b);
                tidied += 1;
            }
            let mut after = vec![0u8; FRAME_BYTES];
            b.image_into(&mut after);
            assert!(img == after, "frame {id:?}: the image differs from the frame tidied in memory");
            assert!(!tidy_image(&mut img, shape), "a tidy image wants no tidy");
            if shape == Shape::Scans {
                assert_eq!(b.runs_from(), HEADER_BYTES, "for scans, every tree is one run");
            }
        }
        assert!(tidied > 3, "random inserts scatter nodes: {tidied} frames tidied");
        tree.engine().check_invariants().unwrap();
        let b = FrameBuf::zeroed();
        b.format(FrameId(2));
        let leaf = new_node(&b, &encode_leaf(b"ab", b"v", 1, 0));
        let inner = |children| Inner { flags: FLAG_ENTRY, prefix: b"a".to_vec(), end: NIL, children };
        for _ in 0..PLACED_MIN {
            new_node(&b, &inner(vec![(b'b', leaf.0)]).encode());
        }
        let mut img = vec![0u8; FRAME_BYTES];
        b.image_into(&mut img);
        let before = img.clone();
        assert!(!tidy_image(&mut img, shape) && img == before, "a leaf named by many parents is no forest");
    }

    /// Child fields of the frame's inner nodes that carry a distance.
    fn hinted_fields(b: &FrameBuf) -> usize {
        let mut n = 0;
        for (off, _) in live_nodes(b) {
            let image = b.read_vec(off, node_bytes(b, off));
            for_each_child_field(&image, |at| n += usize::from(field_hint(field_at(&image, at)) != 0));
        }
        n
    }

    /// Point a child field's distance at another node: the invariant check
    /// refuses it, and lookups stop trusting distances once the frame's
    /// layout changes (here a compaction), finding every key again.
    #[test]
    fn a_distance_that_leads_elsewhere_fails_the_check_and_dies_with_the_layout() {
        let tree = random_tree(20_000);
        let before = contents(&tree);
        let pool = tree.engine().pool();
        let id = pool.live_ids()[0];
        let b = pool.cell(id).unwrap().buf().unwrap();
        plan(b, Shape::Pages).unwrap().install(b);
        tree.engine().check_invariants().unwrap();
        let (off, at) = live_nodes(b)
            .into_iter()
            .find_map(|(off, _)| {
                let image = b.read_vec(off, node_bytes(b, off));
                let mut found = None;
                for_each_child_field(&image, |at| {
                    if field_hint(field_at(&image, at)) > 8 {
                        found.get_or_insert(at);
                    }
                });
                found.map(|at| (off, at))
            })
            .expect("a tidy frame holds a field with a distance");
        let field = b.u32(off + at);
        b.set_u32(off + at, hinted_field(field_slot(field), Some(field_hint(field) - 1)));
        let err = tree.engine().check_invariants().unwrap_err().to_string();
        assert!(err.contains("leads elsewhere"), "{err}");
        crate::layout::space::compact(b);
        assert!(!b.in_preorder());
        tree.engine().check_invariants().unwrap();
        assert_eq!(contents(&tree), before);
        for (k, v) in before.iter().step_by(13) {
            assert_eq!(tree.get(k).unwrap().as_ref(), Some(v));
        }
    }

    #[test]
    fn a_frame_whose_nodes_are_not_a_forest_is_left_alone() {
        let b = FrameBuf::zeroed();
        b.format(FrameId(2));
        let leaf = new_node(&b, &encode_leaf(b"ab", b"v", 1, 0));
        let inner = |flags, children| Inner { flags, prefix: b"a".to_vec(), end: NIL, children };
        new_node(&b, &inner(FLAG_ENTRY, vec![(b'b', leaf.0)]).encode());
        assert!(plan(&b, Shape::Pages).is_some(), "one parent per node");
        let twice = new_node(&b, &inner(FLAG_ENTRY, vec![(b'b', leaf.0)]).encode());
        assert!(plan(&b, Shape::Pages).is_none(), "a leaf named by two parents");
        crate::layout::space::free_node(&b, twice);
        new_node(&b, &inner(FLAG_ENTRY, vec![(b'b', 999)]).encode());
        assert!(plan(&b, Shape::Pages).is_none(), "a child past the slot table");
    }
}
