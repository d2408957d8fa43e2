//! Space management inside one frame: slot allocation, bump allocation of
//! node bytes, dead-space accounting and in-place compaction.
//!
//! Invariants (checked by `check_space`):
//! - `HEADER_BYTES <= data_end <= FRAME_BYTES - SLOT_BYTES * slot_count`;
//! - `live_bytes` is the sum of the sizes of the nodes of live slots, and
//!   `data_end - HEADER_BYTES == live_bytes + dead_bytes`;
//! - free slots form a singly linked list from `HDR_FREE_SLOT`.
//!
//! Every function here requires the frame to be held exclusively.

use super::node::{image_node_bytes, node_bytes};
use super::*;

/// Bytes between the end of the data area and the slot table.
pub(crate) fn free_bytes(b: &FrameBuf) -> usize {
    let table = FRAME_BYTES - SLOT_BYTES * b.slot_count() as usize;
    table.saturating_sub(b.data_end())
}

/// Bytes a compaction could make available.
pub(crate) fn reclaimable_bytes(b: &FrameBuf) -> usize {
    free_bytes(b) + b.dead_bytes()
}

/// Bytes that `n_nodes` new nodes totalling `node_bytes` may consume, slot
/// table growth included.
pub(crate) fn bytes_needed(node_bytes: usize, n_nodes: usize) -> usize {
    node_bytes + SLOT_BYTES * n_nodes
}

/// Dead bytes an insert's compaction must win back at least. Below it a full
/// frame spills instead: compacting for a few dead bytes moves the whole
/// data area and is needed again a few inserts later.
pub(crate) const INSERT_COMPACT_DEAD_BYTES_MIN: usize = (FRAME_BYTES - HEADER_BYTES) / 16;

/// `ensure` for an insert: compacts only when that wins back at least
/// `INSERT_COMPACT_DEAD_BYTES_MIN`; otherwise false, and the caller spills.
pub(crate) fn ensure_for_insert(b: &FrameBuf, need: usize) -> bool {
    if free_bytes(b) >= need {
        return true;
    }
    b.dead_bytes() >= INSERT_COMPACT_DEAD_BYTES_MIN && ensure(b, need)
}

/// Make `need` contiguous bytes available, compacting if that suffices.
/// Returns false (frame unchanged) if even compaction would not.
pub(crate) fn ensure(b: &FrameBuf, need: usize) -> bool {
    if free_bytes(b) >= need {
        return true;
    }
    if reclaimable_bytes(b) < need {
        return false;
    }
    compact(b);
    free_bytes(b) >= need
}

fn set_slot_entry(b: &FrameBuf, s: Slot, v: u32) {
    b.set_u32(slot_entry_offset(s), v);
}

fn add_u32(b: &FrameBuf, field: usize, delta: isize) {
    let v = b.u32(field) as isize + delta;
    debug_assert!(v >= 0, "header counter at {field} went negative");
    b.set_u32(field, v as u32);
}

/// Next free slot after a free entry `e` (`NIL` at the end of the list).
fn free_link(e: u32) -> u32 {
    match e & !SLOT_FREE_BIT {
        FREE_END => NIL,
        next => next,
    }
}

/// Free-list terminator as stored in a free entry (the free bit is set on top).
const FREE_END: u32 = NIL & !SLOT_FREE_BIT;

fn alloc_slot(b: &FrameBuf) -> Slot {
    let head = b.u32(HDR_FREE_SLOT);
    let s = if head != NIL {
        let s = Slot(head);
        b.set_u32(HDR_FREE_SLOT, free_link(b.slot_entry(s)));
        s
    } else {
        let s = Slot(b.slot_count());
        assert!(free_bytes(b) >= SLOT_BYTES, "slot table overflow: caller skipped ensure()");
        b.set_u32(HDR_SLOT_COUNT, s.0 + 1);
        s
    };
    add_u32(b, HDR_LIVE_SLOTS, 1);
    s
}

/// Append `bytes` to the data area; returns their offset.
fn place(b: &FrameBuf, bytes: &[u8]) -> usize {
    let off = b.data_end();
    assert!(free_bytes(b) >= bytes.len(), "frame data overflow: caller skipped ensure()");
    b.write(off, bytes);
    b.set_u32(HDR_DATA_END, (off + bytes.len()) as u32);
    add_u32(b, HDR_LIVE_BYTES, bytes.len() as isize);
    b.set_u32(HDR_PLACED, b.placed().saturating_add(1));
    b.set_preorder(false);
    off
}

/// Store a new node; returns its slot.
pub(crate) fn new_node(b: &FrameBuf, bytes: &[u8]) -> Slot {
    let s = alloc_slot(b);
    let off = place(b, bytes);
    set_slot_entry(b, s, off as u32);
    s
}

/// Store the nodes whose images are `images`, one after another (`lens`
/// gives each one's length), in consecutive fresh slots at the end of the
/// slot table; returns the first. Free slots stay free: one header update
/// and two writes however many nodes, for a spill's whole subtree.
pub(crate) fn append_nodes(b: &FrameBuf, images: &[u8], lens: &[u32]) -> Slot {
    assert!(free_bytes(b) >= bytes_needed(images.len(), lens.len()), "frame overflow: caller skipped ensure()");
    let (first, data) = (b.slot_count(), b.data_end());
    let mut table = vec![0u8; SLOT_BYTES * lens.len()];
    let mut off = data;
    // Slot `first + i` sits `i` entries below slot `first`'s.
    for (entry, &len) in table.rchunks_exact_mut(SLOT_BYTES).zip(lens) {
        entry.copy_from_slice(&(off as u32).to_le_bytes());
        off += len as usize;
    }
    debug_assert_eq!(off - data, images.len(), "lens add up to the images");
    b.write(data, images);
    b.write(slot_entry_offset(Slot(first + lens.len() as u32 - 1)), &table);
    b.set_u32(HDR_SLOT_COUNT, first + lens.len() as u32);
    b.set_u32(HDR_DATA_END, off as u32);
    add_u32(b, HDR_LIVE_SLOTS, lens.len() as isize);
    add_u32(b, HDR_LIVE_BYTES, images.len() as isize);
    b.set_preorder(false);
    Slot(first)
}

/// Replace the node in slot `s` with `bytes` (in place when not larger).
pub(crate) fn replace_node(b: &FrameBuf, s: Slot, bytes: &[u8]) {
    let old = b.node_offset(s).expect("replace_node on a free slot");
    let old_len = node_bytes(b, old);
    if bytes.len() <= old_len {
        // Shrinking in place never needs free space; the tail becomes dead.
        b.write(old, bytes);
        let shrink = (old_len - bytes.len()) as isize;
        add_u32(b, HDR_LIVE_BYTES, -shrink);
        add_u32(b, HDR_DEAD_BYTES, shrink);
        if shrink > 0 {
            b.set_preorder(false);
        }
        return;
    }
    let off = place(b, bytes);
    set_slot_entry(b, s, off as u32);
    add_u32(b, HDR_LIVE_BYTES, -(old_len as isize));
    add_u32(b, HDR_DEAD_BYTES, old_len as isize);
}

/// Give the node in slot `s` a new slot, leaving `s` holding the same bytes
/// until the caller stores a node there with `replace_node`-like
/// `reuse_slot`. Returns the new slot.
pub(crate) fn relocate(b: &FrameBuf, s: Slot) -> Slot {
    let off = b.node_offset(s).expect("relocate of a free slot");
    let fresh = alloc_slot(b);
    set_slot_entry(b, fresh, off as u32);
    fresh
}

/// Store `bytes` in slot `s`, whose previous node was moved by `relocate`.
pub(crate) fn reuse_slot(b: &FrameBuf, s: Slot, bytes: &[u8]) {
    let off = place(b, bytes);
    set_slot_entry(b, s, off as u32);
}

/// Free slot `s` and account its node as dead space.
pub(crate) fn free_node(b: &FrameBuf, s: Slot) {
    let off = b.node_offset(s).expect("free of a free slot");
    let len = node_bytes(b, off);
    add_u32(b, HDR_LIVE_BYTES, -(len as isize));
    add_u32(b, HDR_DEAD_BYTES, len as isize);
    set_slot_entry(b, s, SLOT_FREE_BIT | b.u32(HDR_FREE_SLOT));
    b.set_u32(HDR_FREE_SLOT, s.0);
    add_u32(b, HDR_LIVE_SLOTS, -1);
    b.set_preorder(false);
}

/// `free_node` for each of `slots`, with one header update.
pub(crate) fn free_nodes(b: &FrameBuf, slots: impl IntoIterator<Item = Slot>) {
    let (mut head, mut bytes, mut n) = (b.u32(HDR_FREE_SLOT), 0, 0);
    for s in slots {
        bytes += node_bytes(b, b.node_offset(s).expect("free of a free slot"));
        set_slot_entry(b, s, SLOT_FREE_BIT | head);
        (head, n) = (s.0, n + 1);
    }
    b.set_u32(HDR_FREE_SLOT, head);
    add_u32(b, HDR_LIVE_BYTES, -(bytes as isize));
    add_u32(b, HDR_DEAD_BYTES, bytes as isize);
    add_u32(b, HDR_LIVE_SLOTS, -n);
    b.set_preorder(false);
}

/// Live slots with their node offsets, sorted by offset.
pub(crate) fn live_nodes(b: &FrameBuf) -> Vec<(usize, Slot)> {
    let mut v: Vec<_> = (0..b.slot_count())
        .filter_map(|i| b.node_offset(Slot(i)).map(|off| (off, Slot(i))))
        .collect();
    v.sort_unstable();
    v
}

thread_local! {
    /// A frame-sized staging buffer per thread. A fresh one per compaction
    /// or spill is above the allocator's mmap threshold: each would map,
    /// fault in and unmap up to half a megabyte on the writer's path.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Run `f` with this thread's staging buffer (its contents are stale: `f`
/// sizes it and overwrites what it reads). A nested call gets a new one.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s.take());
    let r = f(&mut buf);
    // `try_with`: a thread exiting just frees it.
    let _ = SCRATCH.try_with(|s| s.set(buf));
    r
}

/// Pack every live node at the start of the data area over dead space;
/// slots keep their numbers. The nodes are gathered (in slot order) into
/// one buffer and the slot table is rewritten in another, each written
/// back once: an insert runs this on its own path (after each spill, over
/// the half of the frame the spill left dead).
pub(crate) fn compact(b: &FrameBuf) {
    let table_at = FRAME_BYTES - SLOT_BYTES * b.slot_count() as usize;
    let mut table = vec![0u8; FRAME_BYTES - table_at];
    // SAFETY: every function here runs with the frame held exclusively.
    unsafe { b.read_unshared(table_at, &mut table) };
    with_scratch(|data| compact_into(b, data, table_at, &mut table));
}

/// `compact`'s move, with `data` as the staging buffer.
fn compact_into(b: &FrameBuf, scratch: &mut Vec<u8>, table_at: usize, table: &mut [u8]) {
    let used = b.data_end().saturating_sub(HEADER_BYTES);
    scratch.resize(2 * used, 0);
    let (old, new) = scratch.split_at_mut(used);
    // SAFETY: every function here runs with the frame held exclusively.
    unsafe { b.read_unshared(HEADER_BYTES, old) };
    let mut cursor = 0;
    // The table's last entry is slot 0's.
    for entry in table.rchunks_exact_mut(SLOT_BYTES) {
        let e = u32::from_le_bytes(entry.try_into().expect("slot entry"));
        if e & SLOT_FREE_BIT != 0 {
            continue;
        }
        let at = e as usize - HEADER_BYTES;
        let len = image_node_bytes(&old[at..]);
        new[cursor..cursor + len].copy_from_slice(&old[at..at + len]);
        entry.copy_from_slice(&((HEADER_BYTES + cursor) as u32).to_le_bytes());
        cursor += len;
    }
    b.write(HEADER_BYTES, &new[..cursor]);
    b.write(table_at, table);
    b.set_u32(HDR_DATA_END, (HEADER_BYTES + cursor) as u32);
    b.set_u32(HDR_DEAD_BYTES, 0);
    // Slot order, which is not preorder: entry slots keep their numbers.
    b.set_preorder(false);
}

/// Replace the frame's data area and slot table by `data` (the nodes, from
/// byte 64 on) and `table` (the slot table's bytes, slot 0's entry last),
/// with `free_head` heading its free list: the same live nodes and bytes,
/// no dead ones, laid out in key order (`tree::tidy` builds them), its
/// runs starting at `runs_from`. Two writes, like `compact`.
pub(crate) fn install_layout(b: &FrameBuf, data: &[u8], table: &[u8], free_head: u32, runs_from: usize) {
    debug_assert_eq!(data.len(), b.live_bytes(), "a layout keeps every live byte");
    b.write(HEADER_BYTES, data);
    b.write(FRAME_BYTES - table.len(), table);
    b.set_u32(HDR_SLOT_COUNT, (table.len() / SLOT_BYTES) as u32);
    b.set_u32(HDR_FREE_SLOT, free_head);
    b.set_u32(HDR_DATA_END, (HEADER_BYTES + data.len()) as u32);
    b.set_u32(HDR_DEAD_BYTES, 0);
    b.set_u32(HDR_PLACED, 0);
    b.set_u32(HDR_RUNS_FROM, runs_from as u32);
    b.set_u16(HDR_VERSION, FRAME_VERSION);
    b.set_preorder(true);
}

/// Check the space invariants; `Err` names the first one broken.
pub(crate) fn check_space(b: &FrameBuf) -> Result<(), String> {
    let table = FRAME_BYTES.checked_sub(SLOT_BYTES * b.slot_count() as usize);
    let table = table.ok_or("slot table larger than the frame")?;
    let end = b.data_end();
    if end < HEADER_BYTES || end > table {
        return Err(format!("data_end {end} outside {HEADER_BYTES}..={table}"));
    }
    let nodes = live_nodes(b);
    let mut live = 0usize;
    let mut prev_end = HEADER_BYTES;
    for &(off, s) in &nodes {
        let len = node_bytes(b, off);
        if len == 0 || off < prev_end || off + len > end {
            return Err(format!("slot {} node at {off} (+{len}) overlaps or escapes", s.0));
        }
        prev_end = off + len;
        live += len;
    }
    if live != b.live_bytes() || end - HEADER_BYTES != live + b.dead_bytes() {
        return Err(format!(
            "accounting: live {live} vs header {}, dead {}, data {}",
            b.live_bytes(),
            b.dead_bytes(),
            end - HEADER_BYTES
        ));
    }
    if nodes.len() != b.live_slots() as usize {
        return Err(format!("live slots {} vs header {}", nodes.len(), b.live_slots()));
    }
    let mut free = 0;
    let mut cur = b.u32(HDR_FREE_SLOT);
    while cur != NIL {
        let e = b.slot_entry(Slot(cur));
        if e & SLOT_FREE_BIT == 0 || free > b.slot_count() {
            return Err(format!("free list broken at slot {cur}"));
        }
        free += 1;
        cur = free_link(e);
    }
    if free as usize + nodes.len() != b.slot_count() as usize {
        return Err("free list does not cover every free slot".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::node::encode_leaf;
    use super::*;
    use crate::ids::FrameId;

    #[test]
    fn alloc_free_compact_keeps_accounting() {
        let b = FrameBuf::zeroed();
        b.format(FrameId(9));
        let mut slots = Vec::new();
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            slots.push(new_node(&b, &encode_leaf(&key, &vec![7; i as usize], 1, 0)));
        }
        check_space(&b).unwrap();
        for s in slots.iter().step_by(2) {
            free_node(&b, *s);
        }
        replace_node(&b, slots[1], &encode_leaf(b"bigger", &[1; 300], 2, 0));
        check_space(&b).unwrap();
        let before: Vec<_> = slots.iter().skip(1).step_by(2).map(|s| {
            let off = b.node_offset(*s).unwrap();
            b.read_vec(off, node_bytes(&b, off))
        }).collect();
        compact(&b);
        check_space(&b).unwrap();
        assert_eq!(b.dead_bytes(), 0);
        for (s, bytes) in slots.iter().skip(1).step_by(2).zip(before) {
            let off = b.node_offset(*s).unwrap();
            assert_eq!(b.read_vec(off, node_bytes(&b, off)), bytes);
        }
        let reused = new_node(&b, &encode_leaf(b"x", b"y", 3, 0));
        assert_eq!(reused, slots[98], "free list hands back the last freed slot");
        check_space(&b).unwrap();
    }

    #[test]
    fn compacting_an_empty_or_fully_dead_frame_leaves_an_empty_data_area() {
        let b = FrameBuf::zeroed();
        b.format(FrameId(3));
        compact(&b);
        check_space(&b).unwrap();
        let s = new_node(&b, &encode_leaf(b"k", b"v", 1, 0));
        free_node(&b, s);
        compact(&b);
        check_space(&b).unwrap();
        assert_eq!((b.data_end(), b.dead_bytes(), b.slot_count()), (HEADER_BYTES, 0, 1), "the free slot stays");
        assert_eq!(new_node(&b, &encode_leaf(b"k2", b"v", 1, 0)), s, "and is handed back");
    }

    /// A batch of appended nodes reads back like nodes stored one by one,
    /// and a batch free accounts like `free_node` per slot.
    #[test]
    fn batch_append_and_free_keep_accounting() {
        let (one, batch) = (FrameBuf::zeroed(), FrameBuf::zeroed());
        one.format(FrameId(1));
        batch.format(FrameId(2));
        let freed = new_node(&batch, &encode_leaf(b"gone", b"", 1, 0));
        free_node(&one, new_node(&one, &encode_leaf(b"gone", b"", 1, 0)));
        free_node(&batch, freed);
        let nodes: Vec<Vec<u8>> = (0..37u32).map(|i| encode_leaf(&i.to_be_bytes(), &vec![5; i as usize % 9], 1, 0)).collect();
        let slots: Vec<Slot> = nodes.iter().map(|n| new_node(&one, n)).collect();
        let lens: Vec<u32> = nodes.iter().map(|n| n.len() as u32).collect();
        let first = append_nodes(&batch, &nodes.concat(), &lens);
        assert_eq!(first, Slot(1), "appended after the table's end; the free slot stays free");
        check_space(&batch).unwrap();
        for (i, n) in nodes.iter().enumerate() {
            let off = batch.node_offset(Slot(first.0 + i as u32)).unwrap();
            assert_eq!(batch.read_vec(off, n.len()), *n, "node {i}");
        }
        free_nodes(&batch, (0..nodes.len() as u32).step_by(3).map(|i| Slot(first.0 + i)));
        slots.iter().step_by(3).for_each(|&s| free_node(&one, s));
        check_space(&batch).unwrap();
        assert_eq!((batch.live_bytes(), batch.live_slots()), (one.live_bytes(), one.live_slots()));
        assert_eq!(batch.dead_bytes(), one.dead_bytes());
    }
}
