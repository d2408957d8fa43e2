//! Remove one key inside the frame it lands in. The caller holds the frame
//! exclusively. Removal never needs free space: nodes only shrink, and a
//! path-compressing collapse that would need room is simply skipped (an
//! inner node with one child is valid, just less compact).

use crate::layout::node::{
    node_bytes, Inner, InnerAt, LeafAt, FLAG_ENTRY, KIND_LEAF, KIND_LINK, OFF_FLAGS,
};
use crate::layout::space::{ensure, free_node, replace_node};
use crate::layout::{FrameBuf, Slot, NIL};

pub(crate) enum Del {
    /// `Some(value)` if the key was present (and is now gone).
    Done { prev: Option<Vec<u8>> },
    Redirect,
    Corrupt,
}

/// Edge from an inner node to the next node on a path: a child byte, or the
/// end leaf (`None`).
type Edge = (Slot, Option<u8>);

pub(crate) fn delete_in_frame(b: &FrameBuf, entry: (Slot, usize), key: &[u8]) -> Del {
    let (mut slot, mut depth) = entry;
    let mut path: Vec<Edge> = Vec::new();
    for _ in 0..key.len() + 3 {
        let Some(off) = b.node_offset(slot) else { return Del::Corrupt };
        match b.u8(off) {
            KIND_LINK => return Del::Redirect,
            KIND_LEAF => {
                let leaf = LeafAt(off);
                if !leaf.key_is(b, key) {
                    return Del::Done { prev: None };
                }
                let prev = leaf.value(b);
                unlink_leaf(b, slot, path);
                return Del::Done { prev: Some(prev) };
            }
            2..=5 => {
                let n = InnerAt(off);
                let plen = n.prefix_len(b);
                if b.common_prefix(n.prefix_off(), plen, &key[depth..]) < plen {
                    return Del::Done { prev: None };
                }
                depth += plen;
                let (edge, next) = match key.get(depth) {
                    None => (None, n.end(b)),
                    Some(&byte) => (Some(byte), n.find_child(b, byte)),
                };
                if next == NIL {
                    return Del::Done { prev: None };
                }
                path.push((slot, edge));
                depth += usize::from(edge.is_some());
                slot = Slot(next);
            }
            _ => return Del::Corrupt,
        }
    }
    Del::Corrupt
}

fn empty_inner(flags: u8) -> Inner {
    Inner { flags, prefix: Vec::new(), end: NIL, children: Vec::new() }
}

/// Remove the leaf in `leaf` whose ancestors in this frame are `path`.
fn unlink_leaf(b: &FrameBuf, leaf: Slot, mut path: Vec<Edge>) {
    let Some((parent, edge)) = path.pop() else {
        // The leaf is this frame's entry: it stays as an empty subtree.
        let flags = b.u8(b.node_offset(leaf).expect("live leaf") + OFF_FLAGS);
        replace_node(b, leaf, &empty_inner(flags).encode());
        return;
    };
    free_node(b, leaf);
    let mut cur = (parent, edge);
    loop {
        let (slot, edge) = cur;
        let mut node = Inner::decode(b, b.node_offset(slot).expect("live parent"));
        match edge {
            Some(byte) => {
                node.remove_child(byte);
            }
            None => node.end = NIL,
        }
        if !node.children.is_empty() || node.end != NIL || node.flags & FLAG_ENTRY != 0 {
            normalize(b, slot, node);
            return;
        }
        // An empty non-entry node disappears from its parent too.
        free_node(b, slot);
        match path.pop() {
            Some(up) => cur = up,
            None => unreachable!("a non-entry node always has a parent in its frame"),
        }
    }
}

/// Store `node` in `slot`, folding it into its only remaining child when that
/// child lives in this frame and there is room for the merged node.
fn normalize(b: &FrameBuf, slot: Slot, node: Inner) {
    let only = match (node.children.as_slice(), node.end) {
        ([(byte, c)], NIL) => Some((Some(*byte), Slot(*c))),
        ([], e) if e != NIL => Some((None, Slot(e))),
        _ => None,
    };
    if let Some((byte, child)) = only {
        if let Some(merged) = collapsed(b, &node, byte, child) {
            if ensure(b, merged.len()) {
                replace_node(b, slot, &merged);
                free_node(b, child);
                return;
            }
        }
    }
    replace_node(b, slot, &node.encode());
}

/// Bytes of `child` standing in for `node` (same flags, prefixes joined), or
/// `None` when the child is a link and must keep its parent.
fn collapsed(b: &FrameBuf, node: &Inner, byte: Option<u8>, child: Slot) -> Option<Vec<u8>> {
    let off = b.node_offset(child)?;
    match b.u8(off) {
        KIND_LEAF => {
            let mut bytes = b.read_vec(off, node_bytes(b, off));
            bytes[OFF_FLAGS] = node.flags;
            Some(bytes)
        }
        KIND_LINK => None,
        _ => {
            let mut inner = Inner::decode(b, off);
            let mut prefix = node.prefix.clone();
            prefix.extend(byte);
            prefix.extend_from_slice(&inner.prefix);
            inner.prefix = prefix;
            inner.flags = node.flags;
            Some(inner.encode())
        }
    }
}
