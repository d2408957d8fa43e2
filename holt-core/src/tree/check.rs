//! Whole-tree invariant check, for tests and fsck. Run it while no writer is
//! active: it reads frames without latching them.
//!
//! Checked: each frame's space accounting; every live slot is reachable
//! from the frame's entry slots exactly once; every link points at an entry
//! of a live frame, and every entry but the root has exactly one link to
//! it; every leaf's key extends the path that leads to it; keys come out
//! strictly increasing; inner nodes are well formed; in a frame laid out
//! by a tidy, every distance a child field carries leads to that child and
//! the runs lie whole in preorder.

use std::collections::{HashMap, HashSet};

use super::spill::{child_slots, entry_slots, postorder};
use super::{ROOT_FRAME, ROOT_SLOT};
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::node::{field_at, field_hint, field_slot, for_each_child_field, link_target, node_bytes, InnerAt, LeafAt, FLAG_ENTRY, KIND_LEAF, KIND_LINK, OFF_FLAGS};
use crate::layout::space::{check_space, live_nodes};
use crate::layout::{FrameBuf, Slot, NIL};
use crate::store::pins::Held;
use crate::store::pool::Pool;

fn fail(id: FrameId, what: String) -> Error {
    Error::corrupted("frames", id.0, format!("invariant broken in frame {}: {what}", id.0))
}

/// Statistics gathered while checking.
#[derive(Default, Debug)]
pub(crate) struct Census {
    pub keys: u64,
    pub frames: u64,
    /// Most links crossed from the root to a leaf: frames on a path, less one.
    pub link_hops_max: usize,
    /// Links crossed from the root to each leaf, summed over the leaves.
    pub link_hops_sum: u64,
}

pub(crate) fn check_tree(pool: &Pool) -> Result<Census> {
    let mut census = Census::default();
    let mut seen_frames = HashSet::new();
    let mut entries: HashMap<(FrameId, Slot), usize> = HashMap::new();
    for id in pool.live_ids() {
        let held = Held::new(pool, id)?;
        let b = held.buf();
        check_frame(id, b)?;
        entries.extend(entry_slots(b).into_iter().map(|s| ((id, s), 0)));
        seen_frames.insert(id);
        census.frames += 1;
    }
    let mut last_key: Option<Vec<u8>> = None;
    let mut stack = vec![(ROOT_FRAME, ROOT_SLOT, Vec::<u8>::new(), 0)];
    let mut reached = HashSet::new();
    while let Some((id, slot, path, hops)) = stack.pop() {
        let held = Held::new(pool, id)?;
        let b = held.buf();
        reached.insert(id);
        census.link_hops_max = census.link_hops_max.max(hops);
        let off = b.node_offset(slot).ok_or_else(|| fail(id, format!("dead slot {}", slot.0)))?;
        match b.u8(off) {
            KIND_LINK => {
                let (to, s) = link_target(b, off);
                let target = Held::new(pool, to)?;
                let tb = target.buf();
                let toff = tb.node_offset(s).ok_or_else(|| fail(to, format!("link to dead slot {}", s.0)))?;
                if tb.u8(toff + OFF_FLAGS) & FLAG_ENTRY == 0 {
                    return Err(fail(to, format!("link target slot {} is not an entry", s.0)));
                }
                *entries.entry((to, s)).or_default() += 1;
                stack.push((to, s, path, hops + 1));
            }
            KIND_LEAF => {
                let key = LeafAt(off).key(b);
                if !key.starts_with(&path) {
                    return Err(fail(id, format!("leaf {key:?} off its path {path:?}")));
                }
                if last_key.as_ref().is_some_and(|k| *k >= key) {
                    return Err(fail(id, format!("keys out of order at {key:?}")));
                }
                last_key = Some(key);
                census.keys += 1;
                census.link_hops_sum += hops as u64;
            }
            _ => push_children(b, off, &path, hops, id, &mut stack),
        }
    }
    if let Some(orphan) = seen_frames.difference(&reached).next() {
        return Err(fail(*orphan, "live frame unreachable from the root".into()));
    }
    for (&(id, s), &links) in &entries {
        let expect = usize::from((id, s) != (ROOT_FRAME, ROOT_SLOT));
        if links != expect {
            return Err(fail(id, format!("entry slot {} has {links} links to it, expected {expect}", s.0)));
        }
    }
    Ok(census)
}

/// Push an inner node's children so they pop in key order (end leaf first).
type Pending = Vec<(FrameId, Slot, Vec<u8>, usize)>;

fn push_children(b: &FrameBuf, off: usize, path: &[u8], hops: usize, id: FrameId, stack: &mut Pending) {
    let n = InnerAt(off);
    let mut base = path.to_vec();
    base.extend(b.read_vec(n.prefix_off(), n.prefix_len(b)));
    let mut kids = Vec::new();
    if n.end(b) != NIL {
        kids.push((id, Slot(n.end(b)), base.clone(), hops));
    }
    let mut from = 0u16;
    while let Some((byte, c)) = n.child_at_or_after(b, from) {
        let mut p = base.clone();
        p.push(byte);
        kids.push((id, Slot(c), p, hops));
        from = byte as u16 + 1;
    }
    stack.extend(kids.into_iter().rev());
}

fn check_frame(id: FrameId, b: &FrameBuf) -> Result<()> {
    if b.frame_id() != id {
        return Err(fail(id, format!("header names frame {}", b.frame_id().0)));
    }
    check_space(b).map_err(|e| fail(id, e))?;
    if b.in_preorder() {
        check_runs(b).map_err(|e| fail(id, e))?;
    }
    let mut reached: HashMap<Slot, usize> = HashMap::new();
    for e in entry_slots(b) {
        for s in postorder(b, e) {
            *reached.entry(s).or_default() += 1;
            check_node(id, b, s)?;
        }
    }
    for (_, s) in live_nodes(b) {
        match reached.get(&s) {
            Some(1) => {}
            Some(n) => return Err(fail(id, format!("slot {} reached {n} times", s.0))),
            None => return Err(fail(id, format!("slot {} unreachable (leaked)", s.0))),
        }
    }
    Ok(())
}

fn check_node(id: FrameId, b: &FrameBuf, s: Slot) -> Result<()> {
    let off = b.node_offset(s).ok_or_else(|| fail(id, format!("dead slot {} in tree", s.0)))?;
    let kind = b.u8(off);
    if !(1..=6).contains(&kind) {
        return Err(fail(id, format!("slot {} has kind {kind}", s.0)));
    }
    if kind == KIND_LEAF || kind == KIND_LINK {
        return Ok(());
    }
    let n = InnerAt(off);
    let kids = child_slots(b, s);
    let expect = kids.len() - usize::from(n.end(b) != NIL);
    if n.count(b) != expect {
        return Err(fail(id, format!("slot {} count {} but {expect} children", s.0, n.count(b))));
    }
    for k in kids {
        let koff = b.node_offset(k).ok_or_else(|| fail(id, format!("slot {} child dead", s.0)))?;
        if b.u8(koff + OFF_FLAGS) & FLAG_ENTRY != 0 {
            return Err(fail(id, format!("entry slot {} is also an in-frame child", k.0)));
        }
    }
    if n.end(b) != NIL {
        let eoff = b.node_offset(Slot(n.end(b))).unwrap_or(0);
        if b.u8(eoff) != KIND_LEAF && b.u8(eoff) != KIND_LINK {
            return Err(fail(id, format!("slot {} end is neither a leaf nor a link", s.0)));
        }
    }
    if b.in_preorder() {
        check_hints(id, b, s, off)?;
    }
    Ok(())
}

/// In a tidy frame, the data area from `runs_from` on is a sequence of
/// whole subtrees, each in preorder (a node, its end leaf, then each
/// child's subtree by key byte): what a run reads front to back.
fn check_runs(b: &FrameBuf) -> std::result::Result<(), String> {
    let at: HashMap<usize, Slot> = live_nodes(b).into_iter().collect();
    let mut p = b.runs_from();
    while p < b.data_end() {
        p = run_end(b, &at, p)?;
    }
    Ok(())
}

/// Where the subtree of the node at `p` ends, if it lies whole in
/// preorder from `p`.
fn run_end(b: &FrameBuf, at: &HashMap<usize, Slot>, p: usize) -> std::result::Result<usize, String> {
    let s = *at.get(&p).ok_or_else(|| format!("runs: no node starts at {p}"))?;
    let mut q = p + node_bytes(b, p);
    if b.u8(p) == KIND_LEAF || b.u8(p) == KIND_LINK {
        return Ok(q);
    }
    for c in child_slots(b, s) {
        if b.node_offset(c) != Some(q) {
            return Err(format!("runs: slot {} lies at {:?}, not at {q} after its elder sibling", c.0, b.node_offset(c)));
        }
        q = run_end(b, at, q)?;
    }
    Ok(q)
}

/// Every distance the child fields of the inner node at `off` carry leads
/// to the child the field names: readers of a tidy's layout take it for
/// the slot-table entry.
fn check_hints(id: FrameId, b: &FrameBuf, s: Slot, off: usize) -> Result<()> {
    let image = b.read_vec(off, node_bytes(b, off));
    let mut bad = None;
    for_each_child_field(&image, |at| {
        let field = field_at(&image, at);
        let dist = field_hint(field);
        if dist != 0 && b.node_offset(Slot(field_slot(field))) != Some(off + dist) {
            bad.get_or_insert(field_slot(field));
        }
    });
    match bad {
        Some(child) => Err(fail(id, format!("slot {}: the distance to child slot {child} leads elsewhere", s.0))),
        None => Ok(()),
    }
}
