//! Insert or update one key inside the frame it lands in. The caller holds
//! the frame exclusively. Space is checked before anything is written, so an
//! insert either completes or leaves the frame untouched and asks for room.

use crate::layout::node::{
    encode_leaf, inner_bytes, inner_kind_for, leaf_bytes, Inner, InnerAt, LeafAt, FLAG_ENTRY,
    KIND_LEAF, KIND_LINK, KIND_N4, OFF_FLAGS,
};
use crate::layout::space::{bytes_needed, ensure_for_insert, new_node, relocate, replace_node, reuse_slot};
use crate::layout::{FrameBuf, Slot, NIL};

/// What an insert found to do.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// The key's leaf exists in `slot`.
    Update { slot: Slot },
    /// A leaf with another key sits where the key goes; both keys agree up
    /// to key depth `m`.
    SplitLeaf { slot: Slot, depth: usize, m: usize },
    /// The inner node's prefix diverges from the key after `c` bytes.
    SplitPrefix { slot: Slot, depth: usize, c: usize },
    /// The key ends exactly at this inner node, which has no end leaf.
    SetEnd { slot: Slot },
    /// The inner node has no child under `byte`.
    AddChild { slot: Slot, byte: u8 },
    /// The key continues in another frame.
    Redirect,
    /// The frame's bytes are inconsistent.
    Corrupt,
}

pub(crate) enum Put {
    /// `inserted`: the key was new.
    Done { inserted: bool },
    /// Not enough room even after compaction; spill and retry.
    NeedSpace(usize),
    Redirect,
    Corrupt,
}

fn plan(b: &FrameBuf, entry: (Slot, usize), key: &[u8]) -> Plan {
    let (mut slot, mut depth) = entry;
    for _ in 0..key.len() + 3 {
        let Some(off) = b.node_offset(slot) else { return Plan::Corrupt };
        match b.u8(off) {
            KIND_LINK => return Plan::Redirect,
            KIND_LEAF => {
                let leaf = LeafAt(off);
                if leaf.key_is(b, key) {
                    return Plan::Update { slot };
                }
                let lk_len = leaf.key_len(b);
                let start = depth.min(lk_len);
                let m = start + b.common_prefix(leaf.key_off() + start, lk_len - start, &key[depth..]);
                return Plan::SplitLeaf { slot, depth, m };
            }
            2..=5 => {
                let n = InnerAt(off);
                let plen = n.prefix_len(b);
                let c = b.common_prefix(n.prefix_off(), plen, &key[depth..]);
                if c < plen {
                    return Plan::SplitPrefix { slot, depth, c };
                }
                depth += plen;
                let Some(&byte) = key.get(depth) else {
                    match n.end(b) {
                        NIL => return Plan::SetEnd { slot },
                        e => slot = Slot(e),
                    }
                    continue;
                };
                match n.find_child(b, byte) {
                    NIL => return Plan::AddChild { slot, byte },
                    c => (slot, depth) = (Slot(c), depth + 1),
                }
            }
            _ => return Plan::Corrupt,
        }
    }
    Plan::Corrupt
}

fn space_for(b: &FrameBuf, plan: Plan, leaf_len: usize) -> usize {
    let off = |s: Slot| b.node_offset(s).unwrap_or(0);
    match plan {
        Plan::Update { .. } => bytes_needed(leaf_len, 0),
        Plan::SplitLeaf { depth, m, .. } => bytes_needed(leaf_len + inner_bytes(KIND_N4, m - depth), 2),
        Plan::SplitPrefix { slot, .. } => {
            let old = crate::layout::node::node_bytes(b, off(slot));
            bytes_needed(leaf_len + old + inner_bytes(KIND_N4, 0), 2)
        }
        Plan::SetEnd { .. } => bytes_needed(leaf_len, 1),
        Plan::AddChild { slot, .. } => {
            // A node whose kind already fits one more child changes in place.
            let n = InnerAt(off(slot));
            let next = inner_kind_for(n.count(b) + 1);
            let grown = if next > n.kind(b) { inner_bytes(next, n.prefix_len(b)) } else { 0 };
            bytes_needed(leaf_len + grown, 1)
        }
        Plan::Redirect | Plan::Corrupt => 0,
    }
}

/// Put `key` = `value` with `version`, starting at the frame's entry slot
/// and key depth.
pub(crate) fn put_in_frame(b: &FrameBuf, entry: (Slot, usize), key: &[u8], value: &[u8], version: u64) -> Put {
    let plan = plan(b, entry, key);
    match plan {
        Plan::Redirect => return Put::Redirect,
        Plan::Corrupt => return Put::Corrupt,
        _ => {}
    }
    let need = space_for(b, plan, leaf_bytes(key.len(), value.len()));
    if !ensure_for_insert(b, need) {
        return Put::NeedSpace(need);
    }
    // Offsets may have moved in compaction; plans hold only slots.
    let off = |s: Slot| b.node_offset(s).expect("planned slot is live");
    let new_leaf = |flags| encode_leaf(key, value, version, flags);
    let inserted = !matches!(plan, Plan::Update { .. });
    match plan {
        Plan::Update { slot } => {
            let leaf = LeafAt(off(slot));
            replace_node(b, slot, &new_leaf(b.u8(leaf.0 + OFF_FLAGS)));
        }
        Plan::SplitLeaf { slot, depth, m } => {
            let leaf = LeafAt(off(slot));
            let flags = b.u8(leaf.0 + OFF_FLAGS);
            let old_byte = (leaf.key_len(b) > m).then(|| b.u8(leaf.key_off() + m));
            let moved = relocate(b, slot);
            b.set_u8(leaf.0 + OFF_FLAGS, flags & !FLAG_ENTRY);
            let fresh = new_node(b, &new_leaf(0));
            let mut node = Inner { flags, prefix: key[depth..m].to_vec(), end: NIL, children: vec![] };
            attach(&mut node, old_byte, moved);
            attach(&mut node, key.get(m).copied(), fresh);
            reuse_slot(b, slot, &node.encode());
        }
        Plan::SplitPrefix { slot, depth, c } => {
            let mut old = Inner::decode(b, off(slot));
            let flags = old.flags;
            let edge = old.prefix[c];
            let upper = old.prefix[..c].to_vec();
            old.prefix.drain(..=c);
            old.flags = flags & !FLAG_ENTRY;
            let moved = new_node(b, &old.encode());
            let fresh = new_node(b, &new_leaf(0));
            let mut node = Inner { flags, prefix: upper, end: NIL, children: vec![(edge, moved.0)] };
            attach(&mut node, key.get(depth + c).copied(), fresh);
            replace_node(b, slot, &node.encode());
        }
        Plan::SetEnd { slot } => {
            let fresh = new_node(b, &new_leaf(0));
            InnerAt(off(slot)).set_end(b, fresh.0);
        }
        Plan::AddChild { slot, byte } => {
            let fresh = new_node(b, &new_leaf(0));
            if !InnerAt(off(slot)).add_child_in_place(b, byte, fresh.0) {
                let mut node = Inner::decode(b, off(slot));
                node.set_child(byte, fresh.0);
                replace_node(b, slot, &node.encode());
            }
        }
        Plan::Redirect | Plan::Corrupt => unreachable!("handled above"),
    }
    Put::Done { inserted }
}

/// Hang `slot` under `byte`, or as the end leaf when the key ends here.
fn attach(node: &mut Inner, byte: Option<u8>, slot: Slot) {
    match byte {
        Some(b) => node.set_child(b, slot.0),
        None => node.end = slot.0,
    }
}
