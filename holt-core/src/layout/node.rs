//! ART node encodings inside a frame's data area.
//!
//! Every node starts with `kind: u8, flags: u8`. Leaves hold the FULL key
//! (not a suffix), so a leaf can move between depths and frames unchanged and
//! a scan emits keys without rebuilding them. Inner nodes hold a compressed
//! path prefix of any length, an optional `end` slot (the leaf of the key that
//! ends exactly at this node, which sorts before every child), and children
//! keyed by one byte. A link node stands in for a node that lives in another
//! frame.

use super::{FrameBuf, Slot, NIL};
use crate::ids::FrameId;

pub(crate) const KIND_LEAF: u8 = 1;
pub(crate) const KIND_N4: u8 = 2;
pub(crate) const KIND_N16: u8 = 3;
pub(crate) const KIND_N48: u8 = 4;
pub(crate) const KIND_N256: u8 = 5;
pub(crate) const KIND_LINK: u8 = 6;

/// The node is referenced from outside its frame (by a link, or as the tree
/// root), so it must keep its slot for as long as it lives.
pub(crate) const FLAG_ENTRY: u8 = 1;

pub(crate) const OFF_KIND: usize = 0;
pub(crate) const OFF_FLAGS: usize = 1;

pub(crate) const LEAF_KEY_LEN: usize = 2;
pub(crate) const LEAF_VAL_LEN: usize = 4;
pub(crate) const LEAF_VERSION: usize = 8;
pub(crate) const LEAF_HEADER_BYTES: usize = 16;

pub(crate) const INNER_COUNT: usize = 2;
pub(crate) const INNER_PREFIX_LEN: usize = 4;
pub(crate) const INNER_END: usize = 8;
pub(crate) const INNER_HEADER_BYTES: usize = 12;

/// A child field (an inner node's `end`, or one child's entry) names the
/// child by slot. A tidy may add where the child lies: bit 31 set, the
/// slot in bits 0-15 and the child's distance in bytes past this node's
/// first byte in bits 16-30 (a child follows its parent in preorder).
/// `NIL` (every bit set) is no child. The distance is exact while the
/// frame keeps its preorder flag, which every move of a node clears, so
/// readers trust it only then (`FrameBuf::in_preorder`).
const FIELD_HINTED: u32 = 1 << 31;
/// The largest distance a child field can carry.
pub(crate) const HINT_MAX: usize = 0x7FFF;

/// The slot a child field names (`NIL` for none).
#[inline(always)]
pub(crate) fn field_slot(raw: u32) -> u32 {
    if raw & FIELD_HINTED == 0 || raw == NIL {
        raw
    } else {
        raw & 0xFFFF
    }
}

/// The distance a child field carries from its node to the child, 0 if
/// none.
#[inline(always)]
pub(crate) fn field_hint(raw: u32) -> usize {
    if raw & FIELD_HINTED == 0 || raw == NIL {
        0
    } else {
        (raw >> 16 & HINT_MAX as u32) as usize
    }
}

/// Where the child that `field` of the node at `parent` names lies, when
/// the field carries a distance and `hinted` says the frame keeps the
/// layout that wrote it (`FrameBuf::in_preorder`); else the slot table
/// must say.
#[inline(always)]
pub(crate) fn hinted_child(parent: usize, field: u32, hinted: bool) -> Option<usize> {
    match field_hint(field) {
        d if hinted && d != 0 => Some(parent + d),
        _ => None,
    }
}

/// The field naming `slot` and carrying `dist`, where the encoding has
/// room for both; else the plain slot.
pub(crate) fn hinted_field(slot: u32, dist: Option<usize>) -> u32 {
    match dist {
        Some(d) if slot < 0xFFFF && (1..=HINT_MAX).contains(&d) => FIELD_HINTED | (d as u32) << 16 | slot,
        _ => slot,
    }
}

/// Bit table (field, first bit, bits) of a child field carrying a
/// distance; doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const CHILD_FIELD_BITS: &[(&str, usize, usize)] = &[("slot", 0, 16), ("distance", 16, 15), ("hinted", 31, 1)];

pub(crate) const LINK_SLOT: usize = 4;
pub(crate) const LINK_FRAME: usize = 8;
pub(crate) const LINK_BYTES: usize = 16;

/// Byte tables (field, offset, size) of the node headers; doc/FORMAT.md
/// mirrors them.
#[cfg(test)]
pub(crate) const LEAF_FIELDS: &[(&str, usize, usize)] = &[
    ("kind", OFF_KIND, 1),
    ("flags", OFF_FLAGS, 1),
    ("key_len", LEAF_KEY_LEN, 2),
    ("value_len", LEAF_VAL_LEN, 4),
    ("version", LEAF_VERSION, 8),
];
#[cfg(test)]
pub(crate) const INNER_FIELDS: &[(&str, usize, usize)] = &[
    ("kind", OFF_KIND, 1),
    ("flags", OFF_FLAGS, 1),
    ("count", INNER_COUNT, 2),
    ("prefix_len", INNER_PREFIX_LEN, 2),
    ("reserved", INNER_PREFIX_LEN + 2, 2),
    ("end", INNER_END, 4),
];
#[cfg(test)]
pub(crate) const LINK_FIELDS: &[(&str, usize, usize)] = &[
    ("kind", OFF_KIND, 1),
    ("flags", OFF_FLAGS, 1),
    ("reserved", OFF_FLAGS + 1, 2),
    ("slot", LINK_SLOT, 4),
    ("frame", LINK_FRAME, 8),
];

/// Child capacity and body size of each inner kind.
pub(crate) fn inner_capacity(kind: u8) -> usize {
    match kind {
        KIND_N4 => 4,
        KIND_N16 => 16,
        KIND_N48 => 48,
        _ => 256,
    }
}

fn inner_body_bytes(kind: u8) -> usize {
    match kind {
        KIND_N4 => 4 + 4 * 4,
        KIND_N16 => 16 + 16 * 4,
        KIND_N48 => 256 + 48 * 4,
        _ => 256 * 4,
    }
}

/// Smallest inner kind that holds `children` children.
pub(crate) fn inner_kind_for(children: usize) -> u8 {
    match children {
        0..=4 => KIND_N4,
        5..=16 => KIND_N16,
        17..=48 => KIND_N48,
        _ => KIND_N256,
    }
}

pub(crate) fn leaf_bytes(key_len: usize, val_len: usize) -> usize {
    LEAF_HEADER_BYTES + key_len + val_len
}

pub(crate) fn inner_bytes(kind: u8, prefix_len: usize) -> usize {
    INNER_HEADER_BYTES + prefix_len + inner_body_bytes(kind)
}

/// Size of the node at `off`, derived from its header (bounds-safe on torn bytes).
pub(crate) fn node_bytes(b: &FrameBuf, off: usize) -> usize {
    node_bytes_from_head(b.u64(off))
}

/// Size of the node whose image starts at `image[0]` (the slice may end
/// before the node does: bytes past it read as zeros). 0 for an unknown
/// kind.
pub(crate) fn image_node_bytes(image: &[u8]) -> usize {
    let mut head = [0u8; 8];
    let n = image.len().min(8);
    head[..n].copy_from_slice(&image[..n]);
    node_bytes_from_head(u64::from_le_bytes(head))
}

/// Size of a node from its first eight bytes (little-endian): every
/// length that sizes a node lies in them. 0 for an unknown kind.
pub(crate) fn node_bytes_from_head(head: u64) -> usize {
    let field = |at: usize, n: usize| ((head >> (8 * at)) & ((1u64 << (8 * n)) - 1)) as usize;
    match head as u8 {
        KIND_LEAF => leaf_bytes(field(LEAF_KEY_LEN, 2), field(LEAF_VAL_LEN, 4)),
        KIND_LINK => LINK_BYTES,
        k @ (KIND_N4 | KIND_N16 | KIND_N48 | KIND_N256) => inner_bytes(k, field(INNER_PREFIX_LEN, 2)),
        _ => 0,
    }
}

pub(crate) fn encode_leaf(key: &[u8], value: &[u8], version: u64, flags: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(leaf_bytes(key.len(), value.len()));
    v.push(KIND_LEAF);
    v.push(flags);
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
    v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

pub(crate) fn encode_link(frame: FrameId, slot: Slot, flags: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(LINK_BYTES);
    v.extend_from_slice(&[KIND_LINK, flags, 0, 0]);
    v.extend_from_slice(&slot.0.to_le_bytes());
    v.extend_from_slice(&frame.0.to_le_bytes());
    v
}

/// Read-side view of a leaf at a known offset.
#[derive(Copy, Clone)]
pub(crate) struct LeafAt(pub usize);

impl LeafAt {
    /// Key and value lengths from a leaf's first eight bytes (`kind`
    /// through `value_len`, little-endian), read as one word by a walk
    /// that has just read them to learn the node's kind.
    #[inline]
    pub(crate) fn lens(head: u64) -> (usize, usize) {
        ((head >> (8 * LEAF_KEY_LEN)) as u16 as usize, (head >> (8 * LEAF_VAL_LEN)) as u32 as usize)
    }

    #[inline]
    pub(crate) fn key_len(self, b: &FrameBuf) -> usize {
        b.u16(self.0 + LEAF_KEY_LEN) as usize
    }
    #[inline]
    pub(crate) fn key_off(self) -> usize {
        self.0 + LEAF_HEADER_BYTES
    }
    #[inline]
    pub(crate) fn val_len(self, b: &FrameBuf) -> usize {
        b.u32(self.0 + LEAF_VAL_LEN) as usize
    }
    #[inline]
    pub(crate) fn val_off(self, b: &FrameBuf) -> usize {
        self.key_off() + self.key_len(b)
    }
    pub(crate) fn version(self, b: &FrameBuf) -> u64 {
        b.u64(self.0 + LEAF_VERSION)
    }
    pub(crate) fn key(self, b: &FrameBuf) -> Vec<u8> {
        b.read_vec(self.key_off(), self.key_len(b))
    }
    pub(crate) fn value(self, b: &FrameBuf) -> Vec<u8> {
        b.read_vec(self.val_off(b), self.val_len(b))
    }
    pub(crate) fn key_is(self, b: &FrameBuf, key: &[u8]) -> bool {
        self.key_len(b) == key.len() && b.common_prefix(self.key_off(), key.len(), key) == key.len()
    }
}

#[inline]
pub(crate) fn link_target(b: &FrameBuf, off: usize) -> (FrameId, Slot) {
    (FrameId(b.u64(off + LINK_FRAME)), Slot(b.u32(off + LINK_SLOT)))
}

/// An inner node's kind, child count and compressed prefix length: all in
/// its first eight bytes, so a walk that read them to learn the node's
/// kind need not read them again.
#[derive(Copy, Clone)]
pub(crate) struct InnerHead {
    pub kind: u8,
    pub count: usize,
    pub prefix_len: usize,
}

impl InnerHead {
    /// The fields of an inner node whose first eight bytes (little-endian)
    /// are `head`.
    #[inline]
    pub(crate) fn of(head: u64) -> Self {
        let u16_at = |at: usize| ((head >> (8 * at)) & 0xFFFF) as usize;
        InnerHead { kind: head as u8, count: u16_at(INNER_COUNT), prefix_len: u16_at(INNER_PREFIX_LEN) }
    }
}

/// Read-side view of an inner node at a known offset.
#[derive(Copy, Clone)]
pub(crate) struct InnerAt(pub usize);

impl InnerAt {
    #[inline]
    pub(crate) fn kind(self, b: &FrameBuf) -> u8 {
        b.u8(self.0 + OFF_KIND)
    }
    #[inline]
    pub(crate) fn count(self, b: &FrameBuf) -> usize {
        b.u16(self.0 + INNER_COUNT) as usize
    }
    #[inline]
    pub(crate) fn prefix_len(self, b: &FrameBuf) -> usize {
        b.u16(self.0 + INNER_PREFIX_LEN) as usize
    }
    #[inline]
    pub(crate) fn prefix_off(self) -> usize {
        self.0 + INNER_HEADER_BYTES
    }
    #[inline]
    pub(crate) fn end(self, b: &FrameBuf) -> u32 {
        field_slot(self.end_field(b))
    }
    /// The `end` field as stored (see `field_slot`, `field_hint`).
    #[inline]
    pub(crate) fn end_field(self, b: &FrameBuf) -> u32 {
        b.u32(self.0 + INNER_END)
    }
    /// The node's header fields, read once.
    #[inline]
    pub(crate) fn head(self, b: &FrameBuf) -> InnerHead {
        InnerHead::of(b.u64(self.0))
    }
    /// Where the child keys begin (`h`: the node's header).
    #[inline]
    fn body(self, h: InnerHead) -> usize {
        self.prefix_off() + h.prefix_len
    }

    /// Whether `byte` occurs in the node's compressed prefix past its first
    /// `from` bytes (`from <= h.prefix_len`) or keys one of its children
    /// (`h`: the node's header). A Node4/16's keys follow its prefix, so
    /// one search covers both. Always inlined: a delimited scan asks it of
    /// every inner node it reads.
    #[inline(always)]
    pub(crate) fn prefix_or_child_has(self, b: &FrameBuf, h: InnerHead, from: usize, byte: u8) -> bool {
        let (at, rest) = (self.prefix_off() + from, h.prefix_len - from);
        match h.kind {
            KIND_N4 | KIND_N16 => b.find_byte(at, rest + h.count.min(inner_capacity(h.kind)), byte).is_some(),
            _ => b.find_byte(at, rest, byte).is_some() || self.find_child_field(b, h, byte) != NIL,
        }
    }

    /// Slot of the child under `byte`, or `NIL`.
    #[inline]
    pub(crate) fn find_child(self, b: &FrameBuf, byte: u8) -> u32 {
        field_slot(self.find_child_field(b, self.head(b), byte))
    }

    /// The field of the child under `byte` as stored, or `NIL` (`h`: the
    /// node's header). Always inlined: every descent calls it at each
    /// inner node, and a call costs more than a small node's search.
    #[inline(always)]
    pub(crate) fn find_child_field(self, b: &FrameBuf, h: InnerHead, byte: u8) -> u32 {
        let body = self.body(h);
        match h.kind {
            k @ (KIND_N4 | KIND_N16) => {
                let cap = inner_capacity(k);
                let n = h.count.min(cap);
                // Eight keys a load (`find_byte`), not one.
                match b.find_byte(body, n, byte) {
                    Some(i) => b.u32(body + cap + 4 * i),
                    None => NIL,
                }
            }
            KIND_N48 => match b.u8(body + byte as usize) {
                0 => NIL,
                i => b.u32(body + 256 + 4 * (i as usize - 1)),
            },
            _ => b.u32(body + 4 * byte as usize),
        }
    }

    /// Every child with key byte `>= from`, in descending key order,
    /// passed to `f`: what a depth-first walk pushes on its stack, without
    /// collecting the children first. Reads the key, index and slot arrays
    /// eight bytes at a time.
    #[inline]
    pub(crate) fn children_rev_from(self, b: &FrameBuf, from: u16, mut f: impl FnMut(u8, u32)) {
        self.child_fields_rev_from(b, self.head(b), from, |byte, field| f(byte, field_slot(field)));
    }

    /// `children_rev_from`, passing each child's field as stored (see
    /// `field_slot`, `field_hint`; `h`: the node's header).
    #[inline]
    pub(crate) fn child_fields_rev_from(self, b: &FrameBuf, h: InnerHead, from: u16, mut f: impl FnMut(u8, u32)) {
        let body = self.body(h);
        match h.kind {
            k @ (KIND_N4 | KIND_N16) => {
                let cap = inner_capacity(k);
                let n = h.count.min(cap);
                let keys = [b.u64(body), b.u64(body + 8)];
                // Keys are sorted: the first one below `from` ends the walk.
                for j in (0..n).rev() {
                    let key = (keys[j / 8] >> (8 * (j % 8))) as u8;
                    if u16::from(key) < from {
                        break;
                    }
                    f(key, b.u32(body + cap + 4 * j));
                }
            }
            KIND_N48 => {
                let from = from as usize;
                for w in (from / 8..32).rev() {
                    let mut word = b.u64(body + 8 * w);
                    while word != 0 {
                        let at = 7 - word.leading_zeros() as usize / 8;
                        let byte = 8 * w + at;
                        if byte < from {
                            return;
                        }
                        let i = (word >> (8 * at)) as u8 as usize;
                        f(byte as u8, b.u32(body + 256 + 4 * (i - 1)));
                        word &= !(0xFF << (8 * at));
                    }
                }
            }
            _ => {
                for byte in (usize::from(from)..256).rev() {
                    let field = b.u32(body + 4 * byte);
                    if field != NIL {
                        f(byte as u8, field);
                    }
                }
            }
        }
    }

    /// Hang `slot` under `byte` (which has no child) without moving the
    /// node, when its kind is the one `Inner::encode` would pick for one
    /// more child: the node then reads exactly as the re-encoded one would.
    /// Returns false, changing nothing, when the node must be re-encoded.
    /// Caller holds the frame exclusively.
    pub(crate) fn add_child_in_place(self, b: &FrameBuf, byte: u8, slot: u32) -> bool {
        let h = self.head(b);
        let (kind, n) = (h.kind, h.count);
        if inner_kind_for(n + 1) != kind {
            return false;
        }
        let body = self.body(h);
        match kind {
            KIND_N4 | KIND_N16 => {
                let cap = inner_capacity(kind);
                let at = (0..n).find(|&i| b.u8(body + i) > byte).unwrap_or(n);
                if at < n {
                    b.copy_within(body + at, body + at + 1, n - at);
                    b.copy_within(body + cap + 4 * at, body + cap + 4 * (at + 1), 4 * (n - at));
                }
                b.set_u8(body + at, byte);
                b.set_u32(body + cap + 4 * at, slot);
            }
            KIND_N48 => {
                // `encode` packs children at positions 0..count.
                if b.u32(body + 256 + 4 * n) != NIL {
                    return false;
                }
                b.set_u32(body + 256 + 4 * n, slot);
                b.set_u8(body + byte as usize, n as u8 + 1);
            }
            _ => b.set_u32(body + 4 * byte as usize, slot),
        }
        b.set_u16(self.0 + INNER_COUNT, n as u16 + 1);
        true
    }

    /// Set the end leaf's slot in place (the node's size does not change).
    pub(crate) fn set_end(self, b: &FrameBuf, slot: u32) {
        b.set_u32(self.0 + INNER_END, slot);
    }

    /// The child with the smallest key byte `>= from`, if any.
    pub(crate) fn child_at_or_after(self, b: &FrameBuf, from: u16) -> Option<(u8, u32)> {
        let h = self.head(b);
        let body = self.body(h);
        match h.kind {
            k @ (KIND_N4 | KIND_N16) => {
                let cap = inner_capacity(k);
                let n = h.count.min(cap);
                (0..n)
                    .map(|i| (b.u8(body + i), i))
                    .find(|&(key, _)| key as u16 >= from)
                    .map(|(key, i)| (key, field_slot(b.u32(body + cap + 4 * i))))
            }
            KIND_N48 => (from..256).find_map(|byte| match b.u8(body + byte as usize) {
                0 => None,
                i => Some((byte as u8, field_slot(b.u32(body + 256 + 4 * (i as usize - 1))))),
            }),
            _ => (from..256).find_map(|byte| {
                let c = field_slot(b.u32(body + 4 * byte as usize));
                (c != NIL).then_some((byte as u8, c))
            }),
        }
    }
}

/// Call `f` with the offset, in the inner node image starting at
/// `node[0]` (the slice may run past the node), of each field holding a
/// child slot: the `end` field first, then the children's in key order
/// (the end leaf's key sorts first). Fields holding `NIL` are included;
/// an N48's positions that no index byte names are not. Nothing for
/// leaves and links. The image's own lengths are trusted: the caller
/// copied it from a frame it holds exclusively.
pub(crate) fn for_each_child_field(node: &[u8], f: impl FnMut(usize)) {
    let index = match node[OFF_KIND] {
        KIND_N48 => &node[image_body(node)..][..256],
        _ => &[],
    };
    child_field_offsets(node, index, f);
}

/// `for_each_child_field`, with an N48's 256 index bytes passed apart
/// (`index`), so that a caller may rewrite the fields meanwhile.
fn child_field_offsets(node: &[u8], index: &[u8], mut f: impl FnMut(usize)) {
    let kind = node[OFF_KIND];
    if !matches!(kind, KIND_N4 | KIND_N16 | KIND_N48 | KIND_N256) {
        return;
    }
    let body = image_body(node);
    f(INNER_END);
    match kind {
        KIND_N4 | KIND_N16 => {
            let (cap, count) = (inner_capacity(kind), u16::from_le_bytes([node[INNER_COUNT], node[INNER_COUNT + 1]]));
            (0..usize::from(count).min(cap)).for_each(|i| f(body + cap + 4 * i));
        }
        KIND_N48 => index.iter().filter(|&&i| (1..=48).contains(&i)).for_each(|&i| f(body + 256 + 4 * (usize::from(i) - 1))),
        _ => (0..256).for_each(|byte| f(body + 4 * byte)),
    }
}

/// Offset of an inner node image's body (past its header and prefix).
fn image_body(node: &[u8]) -> usize {
    INNER_HEADER_BYTES + usize::from(u16::from_le_bytes([node[INNER_PREFIX_LEN], node[INNER_PREFIX_LEN + 1]]))
}

/// The field at `at` of a node image, as stored.
pub(crate) fn field_at(node: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(node[at..at + 4].try_into().expect("4 bytes"))
}

/// The slot named by the field at `at` of a node image.
pub(crate) fn slot_field(node: &[u8], at: usize) -> u32 {
    field_slot(field_at(node, at))
}

/// Rewrite every child field (and the end field) naming a child of the
/// inner node whose image is `node` as `f` of the slot it names (a new
/// slot, or a field carrying a distance: `hinted_field`); slots of N48 positions no index byte
/// names become `NIL`, as `Inner::encode` leaves them. Leaves and links
/// are left as they are. The image's own lengths are trusted: the caller
/// copied it from a frame it holds exclusively.
pub(crate) fn remap_image_slots(node: &mut [u8], mut f: impl FnMut(u32) -> u32) {
    let mut index = [0u8; 256];
    let n48 = node[OFF_KIND] == KIND_N48;
    if n48 {
        let body = image_body(node);
        index.copy_from_slice(&node[body..body + 256]);
    }
    // The fields' places depend on the header and an N48's index only,
    // which the renaming leaves alone: read them from copies.
    let head: [u8; INNER_HEADER_BYTES] = node[..INNER_HEADER_BYTES].try_into().expect("an inner header");
    child_field_offsets(&head, if n48 { &index } else { &[] }, |at| {
        let slot = slot_field(node, at);
        if slot != NIL {
            node[at..at + 4].copy_from_slice(&f(slot).to_le_bytes());
        }
    });
    if n48 {
        let body = image_body(node);
        let mut named = 0u64;
        index.iter().filter(|&&i| (1..=48).contains(&i)).for_each(|&i| named |= 1 << (i - 1));
        for p in (0..48).filter(|p| named & (1 << p) == 0) {
            let at = body + 256 + 4 * p;
            node[at..at + 4].copy_from_slice(&NIL.to_le_bytes());
        }
    }
}

/// An inner node decoded for modification. Children are sorted by key byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inner {
    pub flags: u8,
    pub prefix: Vec<u8>,
    pub end: u32,
    pub children: Vec<(u8, u32)>,
}

impl Inner {
    pub(crate) fn decode(b: &FrameBuf, off: usize) -> Inner {
        let at = InnerAt(off);
        let mut children = Vec::with_capacity(at.count(b));
        let mut from = 0u16;
        while let Some((k, c)) = at.child_at_or_after(b, from) {
            children.push((k, c));
            from = k as u16 + 1;
        }
        Inner {
            flags: b.u8(off + OFF_FLAGS),
            prefix: b.read_vec(at.prefix_off(), at.prefix_len(b)),
            end: at.end(b),
            children,
        }
    }

    pub(crate) fn kind(&self) -> u8 {
        inner_kind_for(self.children.len())
    }

    pub(crate) fn encoded_bytes(&self) -> usize {
        inner_bytes(self.kind(), self.prefix.len())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let kind = self.kind();
        let mut v = Vec::with_capacity(self.encoded_bytes());
        v.push(kind);
        v.push(self.flags);
        v.extend_from_slice(&(self.children.len() as u16).to_le_bytes());
        v.extend_from_slice(&(self.prefix.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&self.end.to_le_bytes());
        v.extend_from_slice(&self.prefix);
        match kind {
            KIND_N4 | KIND_N16 => {
                let cap = inner_capacity(kind);
                let mut keys = vec![0u8; cap];
                let mut slots = vec![NIL; cap];
                for (i, &(k, c)) in self.children.iter().enumerate() {
                    keys[i] = k;
                    slots[i] = c;
                }
                v.extend_from_slice(&keys);
                slots.iter().for_each(|s| v.extend_from_slice(&s.to_le_bytes()));
            }
            KIND_N48 => {
                let mut index = [0u8; 256];
                let mut slots = [NIL; 48];
                for (i, &(k, c)) in self.children.iter().enumerate() {
                    index[k as usize] = i as u8 + 1;
                    slots[i] = c;
                }
                v.extend_from_slice(&index);
                slots.iter().for_each(|s| v.extend_from_slice(&s.to_le_bytes()));
            }
            _ => {
                let mut slots = [NIL; 256];
                self.children.iter().for_each(|&(k, c)| slots[k as usize] = c);
                slots.iter().for_each(|s| v.extend_from_slice(&s.to_le_bytes()));
            }
        }
        v
    }

    /// Insert or replace the child under `byte`.
    pub(crate) fn set_child(&mut self, byte: u8, slot: u32) {
        match self.children.binary_search_by_key(&byte, |&(k, _)| k) {
            Ok(i) => self.children[i].1 = slot,
            Err(i) => self.children.insert(i, (byte, slot)),
        }
    }

    pub(crate) fn remove_child(&mut self, byte: u8) -> Option<u32> {
        let i = self.children.binary_search_by_key(&byte, |&(k, _)| k).ok()?;
        Some(self.children.remove(i).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte is found in the compressed prefix (past `from`) or among the
    /// child keys of every kind, never in a Node4/16's unused key bytes.
    #[test]
    fn prefix_or_child_has_looks_at_the_prefix_and_the_keys_only() {
        for n in [2usize, 10, 30, 90] {
            let b = FrameBuf::zeroed();
            let mut inner = Inner { flags: 0, prefix: b"p/q".to_vec(), end: NIL, children: vec![] };
            for i in 0..n {
                inner.set_child(64 + 2 * i as u8, i as u32);
            }
            b.write(64, &inner.encode());
            let at = InnerAt(64);
            assert_eq!(at.kind(&b), inner_kind_for(n));
            let h = InnerHead::of(b.u64(64));
            assert_eq!((h.kind, h.count, h.prefix_len), (at.kind(&b), at.count(&b), at.prefix_len(&b)));
            for (byte, want) in [(b'/', true), (b'q', true), (64, true), (66, true), (65, false), (0, false), (b'#', false)] {
                assert_eq!(at.prefix_or_child_has(&b, h, 0, byte), want, "{n} children, byte {byte}");
                let past_slash = byte != b'/' && want;
                assert_eq!(at.prefix_or_child_has(&b, h, 2, byte), past_slash, "{n} children, byte {byte}, from 2");
            }
        }
    }

    /// The encoding puts each part where `CHILD_FIELD_BITS` (and so
    /// doc/FORMAT.md) says, and falls back to the plain slot where a part
    /// does not fit.
    #[test]
    fn child_fields_carry_slot_and_distance_where_the_table_says() {
        let bits = |raw: u32, name: &str| {
            let &(_, first, n) = CHILD_FIELD_BITS.iter().find(|f| f.0 == name).expect("documented");
            (raw >> first) & ((1u64 << n) - 1) as u32
        };
        for (slot, dist) in [(0u32, 1usize), (1, 64), (0xFFFE, HINT_MAX), (1234, 4321)] {
            let raw = hinted_field(slot, Some(dist));
            assert_eq!((bits(raw, "slot"), bits(raw, "distance") as usize, bits(raw, "hinted")), (slot, dist, 1));
            assert_eq!((field_slot(raw), field_hint(raw)), (slot, dist));
            assert_ne!(raw, NIL);
        }
        for (slot, dist) in [(5u32, None), (5, Some(0)), (5, Some(HINT_MAX + 1)), (0xFFFF, Some(8)), (70_000, Some(8))] {
            let raw = hinted_field(slot, dist);
            assert_eq!(raw, slot, "no room for the distance: the plain slot");
            assert_eq!((field_slot(raw), field_hint(raw)), (slot, 0));
        }
        assert_eq!((field_slot(NIL), field_hint(NIL)), (NIL, 0));
    }

    /// `n` children keyed from `first` on (so with `first` 1 and fewer
    /// than 256, byte 0, which pads unused key bytes, is never a key).
    fn roundtrip(n: usize, first: usize) {
        let b = FrameBuf::zeroed();
        let mut inner = Inner { flags: FLAG_ENTRY, prefix: b"abc\0/".to_vec(), end: 7, children: vec![] };
        for i in 0..n {
            inner.set_child(((first + i * 251) % 256) as u8, i as u32 + 100);
        }
        let bytes = inner.encode();
        assert_eq!(bytes.len(), inner.encoded_bytes());
        b.write(64, &bytes);
        assert_eq!(node_bytes(&b, 64), bytes.len());
        assert_eq!(Inner::decode(&b, 64), inner);
        let at = InnerAt(64);
        for byte in 0..=255u8 {
            let want = inner.children.iter().find(|&&(k, _)| k == byte).map_or(NIL, |&(_, c)| c);
            assert_eq!(at.find_child(&b, byte), want, "{n} children, byte {byte}");
        }
    }

    /// Adding a child in place reads back exactly as decode + `set_child` +
    /// encode, at every fill of every kind; a node that must grow is left
    /// untouched.
    #[test]
    fn child_added_in_place_matches_the_reencoded_node() {
        for n in 0..256usize {
            let b = FrameBuf::zeroed();
            let mut inner = Inner { flags: 0, prefix: b"p/".to_vec(), end: NIL, children: vec![] };
            for i in 0..n {
                inner.set_child((i * 167 % 256) as u8, i as u32 + 100);
            }
            let bytes = inner.encode();
            b.write(64, &bytes);
            let byte = (0..=255u8).rev().find(|k| inner.children.iter().all(|&(x, _)| x != *k)).unwrap();
            let grows = inner_kind_for(n + 1) != inner.kind();
            assert_eq!(InnerAt(64).add_child_in_place(&b, byte, 9999), !grows, "n {n}");
            if grows {
                assert_eq!(b.read_vec(64, bytes.len()), bytes, "n {n}: a node that must grow is untouched");
                continue;
            }
            inner.set_child(byte, 9999);
            assert_eq!(Inner::decode(&b, 64), inner, "n {n}");
            assert_eq!(InnerAt(64).find_child(&b, byte), 9999, "n {n}");
            assert_eq!(node_bytes(&b, 64), inner.encoded_bytes(), "n {n}");
        }
    }

    /// `children_rev_from` from every byte lists exactly the decoded
    /// children at or after it, in descending order, for every kind and at
    /// odd offsets.
    #[test]
    fn children_rev_from_lists_the_children_at_or_after_a_byte() {
        for n in [0, 3, 4, 9, 16, 17, 40, 48, 49, 131, 256] {
            let b = FrameBuf::zeroed();
            let mut inner = Inner { flags: 0, prefix: b"odd".to_vec(), end: NIL, children: vec![] };
            for i in 0..n {
                inner.set_child((i * 167 % 256) as u8, i as u32 + 100);
            }
            b.write(67, &inner.encode());
            let mut got = Vec::new();
            for from in 0..=256u16 {
                let want: Vec<_> = inner.children.iter().copied().filter(|&(k, _)| u16::from(k) >= from).collect();
                got.clear();
                InnerAt(67).children_rev_from(&b, from, |k, c| got.push((k, c)));
                got.reverse();
                assert_eq!(got, want, "{n} children from {from}");
            }
        }
    }

    /// Renaming slots in a node's image reads back as decoding the node,
    /// renaming its children and end, and encoding it again.
    #[test]
    fn remapped_image_matches_the_reencoded_node() {
        for n in [0, 2, 4, 5, 16, 17, 30, 48, 49, 256] {
            for end in [NIL, 3] {
                let mut inner = Inner { flags: FLAG_ENTRY, prefix: b"ab/".to_vec(), end, children: vec![] };
                for i in 0..n {
                    inner.set_child((i * 167 % 256) as u8, i as u32 + 100);
                }
                let mut image = inner.encode();
                remap_image_slots(&mut image, |s| s * 2 + 1);
                inner.end = if end == NIL { NIL } else { end * 2 + 1 };
                inner.children.iter_mut().for_each(|(_, c)| *c = *c * 2 + 1);
                assert_eq!(image, inner.encode(), "{n} children, end {end}");
            }
        }
        let mut leaf = encode_leaf(b"k", b"v", 1, 0);
        let before = leaf.clone();
        remap_image_slots(&mut leaf, |s| s + 1);
        assert_eq!(leaf, before, "a leaf has no slots to rename");
    }

    #[test]
    fn inner_nodes_of_every_kind_round_trip() {
        for n in [0, 1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 48, 49, 200, 256] {
            roundtrip(n, 0);
            roundtrip(n, 1);
        }
    }

    #[test]
    fn leaf_round_trips_with_nul_and_empty_parts() {
        let b = FrameBuf::zeroed();
        let bytes = encode_leaf(b"a\0b", b"", 42, 0);
        b.write(100, &bytes);
        let leaf = LeafAt(100);
        assert_eq!(node_bytes(&b, 100), bytes.len());
        assert_eq!(leaf.key(&b), b"a\0b");
        assert_eq!(LeafAt::lens(b.u64(100)), (3, 0));
        assert!(leaf.key_is(&b, b"a\0b"));
        assert!(!leaf.key_is(&b, b"a\0"));
        assert_eq!(leaf.value(&b), b"");
        assert_eq!(leaf.version(&b), 42);
    }
}
