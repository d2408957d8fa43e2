//! `Hits`: a scan chunk's answer, every entry's bytes packed in one buffer.
//!
//! A scan copies each key and value out of its frame once, into `bytes`,
//! and records where it landed in `spans`; a caller reads the entries back
//! as slices of that buffer. Once both vectors have grown to a chunk's
//! size, collecting the next chunk allocates nothing, whatever the number
//! of entries (an owned `Vec` per key and per value cost a third of a full
//! scan's time in `malloc`/`free`). An entry is copied as the whole words
//! that hold it (`FrameBuf::copy_words`), so its bytes start at the same
//! offset modulo 8 as in the frame and up to 7 bytes on each side are
//! padding.

use crate::layout::{repeat_byte, zero_byte_flags, FrameBuf};

/// `Span::value_len` of a group (a group has no value).
const GROUP: u32 = u32::MAX;

/// Where one entry's bytes lie in `Hits::bytes`: the key (or group) at
/// `start..start + key_len`, the value right after it (as in a leaf).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    key_len: u32,
    value_len: u32,
}

/// One entry of a scan's answer, lent from `Hits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HitRef<'a> {
    Key { key: &'a [u8], value: &'a [u8] },
    /// Every key starting with these bytes, which end with the delimiter
    /// (its first occurrence past the prefix).
    Group(&'a [u8]),
}

impl<'a> HitRef<'a> {
    /// The key, or the group's bytes.
    pub(crate) fn key(self) -> &'a [u8] {
        match self {
            HitRef::Key { key, .. } => key,
            HitRef::Group(g) => g,
        }
    }
}

/// Entries in key order. Invariants: `spans` are in `bytes` order; the
/// words entry `i` was copied from start at `spans[i].start` rounded down
/// to 8, at or past the end of entry `i - 1`'s, and the last ends at or
/// before `used`, a multiple of 8. `bytes` is only ever grown (zeroed), so
/// copying into it needs no initialisation per entry.
#[derive(Default)]
pub(crate) struct Hits {
    bytes: Vec<u8>,
    used: usize,
    spans: Vec<Span>,
}

impl Hits {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes the entries take, padding included.
    pub(crate) fn bytes_len(&self) -> usize {
        self.used
    }

    pub(crate) fn clear(&mut self) {
        self.used = 0;
        self.spans.clear();
    }

    /// Keep the first `n` entries.
    pub(crate) fn truncate(&mut self, n: usize) {
        if let Some(s) = self.spans.get(n) {
            self.used = s.start & !7;
            self.spans.truncate(n);
        }
    }

    /// Entry `i`; panics past the end, like indexing.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> HitRef<'_> {
        let s = self.spans[i];
        let group = s.value_len == GROUP;
        let value_len = if group { 0 } else { s.value_len as usize };
        // One range check for the key and value together.
        let (key, value) = self.bytes[s.start..s.start + s.key_len as usize + value_len].split_at(s.key_len as usize);
        if group {
            return HitRef::Group(key);
        }
        HitRef::Key { key, value }
    }

    pub(crate) fn last(&self) -> Option<HitRef<'_>> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// Append the leaf whose key (`key_len` bytes, the value's `value_len`
    /// right after it) lies at `key_off` of frame `b`: as its key and
    /// value or, when `delimiter` occurs in the key past its first `from`
    /// bytes, as the group of its bytes through that occurrence, whose
    /// length is returned. The key is searched in the copy (plain memory
    /// the copy just wrote), not in the frame.
    #[inline(always)]
    pub(crate) fn push_leaf(&mut self, b: &FrameBuf, key_off: usize, key_len: usize, value_len: usize, from: usize, delimiter: Option<u8>) -> Option<usize> {
        let start = self.copy(b, key_off, key_len + value_len);
        if let Some(at) = delimiter.and_then(|d| find_in_copy(&self.bytes, start + from, start + key_len, d)) {
            let len = from + at + 1;
            // The group's words end no later than the leaf's.
            self.used = (start + len).next_multiple_of(8);
            self.spans.push(Span { start, key_len: len as u32, value_len: GROUP });
            return Some(len);
        }
        self.spans.push(Span { start, key_len: key_len as u32, value_len: value_len as u32 });
        None
    }

    /// Append a group: the `len` bytes at `off` of frame `b`.
    pub(crate) fn push_group(&mut self, b: &FrameBuf, off: usize, len: usize) {
        let start = self.copy(b, off, len);
        self.spans.push(Span { start, key_len: len as u32, value_len: GROUP });
    }

    /// Copy the words holding bytes `off..off + len` of `b` to `used`;
    /// returns where byte `off` landed.
    #[inline(always)]
    fn copy(&mut self, b: &FrameBuf, off: usize, len: usize) -> usize {
        let need = ((off & 7) + len).div_ceil(8) * 8;
        let end = self.used + need;
        if end > self.bytes.len() {
            self.bytes.resize(end.max(2 * self.bytes.len()), 0);
        }
        b.copy_words(off, &mut self.bytes[self.used..end]);
        let start = self.used + (off & 7);
        self.used = end;
        start
    }
}

/// Index (from `lo`) of the first `byte` among `bytes[lo..hi]`, if any,
/// sixteen bytes a compare (SSE2, which every x86_64 CPU has) while the
/// buffer holds sixteen bytes from the search's position, then
/// `find_in_words`. An empty or reversed range finds nothing.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn find_in_copy(bytes: &[u8], lo: usize, hi: usize, byte: u8) -> Option<usize> {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut at = lo;
    while at < hi {
        let Some(chunk) = bytes.get(at..at + 16) else {
            return find_in_words(bytes, at, hi, byte).map(|i| at - lo + i);
        };
        // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned
        // load reads exactly the sixteen bytes of `chunk`.
        let hits = unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(chunk.as_ptr().cast()), _mm_set1_epi8(byte as i8))) } as u32;
        // Bytes past `hi` do not count.
        let hits = if hi - at < 16 { hits & ((1 << (hi - at)) - 1) } else { hits };
        if hits != 0 {
            return Some(at - lo + hits.trailing_zeros() as usize);
        }
        at += 16;
    }
    None
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn find_in_copy(bytes: &[u8], lo: usize, hi: usize, byte: u8) -> Option<usize> {
    find_in_words(bytes, lo, hi, byte)
}

/// `find_in_copy` eight bytes a load. `bytes` holds the whole words around
/// the range (a copy's: `Hits::copy`), so every word from `lo` rounded
/// down to 8 up to `hi` can be read whole.
#[inline(always)]
fn find_in_words(bytes: &[u8], lo: usize, hi: usize, byte: u8) -> Option<usize> {
    let pattern = repeat_byte(byte);
    let mut w = lo & !7;
    // The first word's bytes before `lo` become 0xFF after the xor: never
    // a match, and no borrow into the bytes above them.
    let mut before = (1u64 << ((lo - w) * 8)) - 1;
    while w < hi {
        let word = u64::from_le_bytes(bytes[w..w + 8].try_into().expect("8-byte slice"));
        // Zero bytes of the xor are matches (`zero_byte_flags`).
        let flags = zero_byte_flags((word ^ pattern) | before);
        if flags != 0 {
            let at = w + (flags.trailing_zeros() / 8) as usize;
            return (at < hi).then(|| at - lo);
        }
        before = 0;
        w += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_in_order_and_truncate_drops_their_bytes() {
        let b = FrameBuf::zeroed();
        b.write(100, b"key-one\0value-one");
        b.write(96, b"pad!");
        b.write(301, b"grp/rest");
        let mut hits = Hits::default();
        hits.push_leaf(&b, 100, 7, 10, 0, None);
        hits.push_group(&b, 301, 4);
        hits.push_leaf(&b, 100, 3, 0, 0, None);
        assert_eq!(hits.len(), 3);
        assert_eq!(hits.get(0), HitRef::Key { key: b"key-one", value: b"\0value-one" });
        assert_eq!(hits.get(1), HitRef::Group(b"grp/"));
        assert_eq!(hits.last(), Some(HitRef::Key { key: b"key", value: b"" }));
        assert_eq!(hits.bytes_len(), 24 + 16 + 8, "whole words: 96..120, 296..312, 96..104");
        hits.truncate(1);
        assert_eq!((hits.len(), hits.bytes_len()), (1, 24));
        hits.push_group(&b, 301, 4);
        assert_eq!(hits.get(1), HitRef::Group(b"grp/"), "bytes written again over truncated ones");
        hits.truncate(5);
        assert_eq!(hits.len(), 2, "truncating past the end keeps everything");
        hits.clear();
        assert!(hits.is_empty() && hits.last().is_none());
    }

    /// A leaf becomes its group exactly when the delimiter occurs in its
    /// key past `from`: at every alignment of the key, every key length,
    /// every `from` (past the key's end too) and every position of the
    /// delimiter, with delimiters just outside the searched bytes (before
    /// `from`, in the value) that must not count.
    #[test]
    fn a_leaf_is_its_group_exactly_when_its_key_holds_the_delimiter_past_from() {
        for align in 0..8 {
            for key_len in 0..20 {
                for from in 0..=key_len + 1 {
                    for slash in (0..key_len).map(Some).chain([None]) {
                        let mut leaf: Vec<u8> = (0..key_len).map(|i| b'a' + i as u8).collect();
                        leaf.extend_from_slice(b"/val/");
                        if let Some(at) = slash {
                            leaf[at] = b'/';
                        }
                        let b = FrameBuf::zeroed();
                        b.write(64 + align, &leaf);
                        b.write(56 + align, b"////////");
                        let mut hits = Hits::default();
                        let got = hits.push_leaf(&b, 64 + align, key_len, 5, from, Some(b'/'));
                        let want = slash.filter(|&at| at >= from).map(|at| at + 1);
                        assert_eq!(got, want, "align {align} key {key_len} from {from} slash {slash:?}");
                        let entry = match want {
                            Some(len) => HitRef::Group(&leaf[..len]),
                            None => HitRef::Key { key: &leaf[..key_len], value: &leaf[key_len..] },
                        };
                        assert_eq!(hits.last(), Some(entry));
                        assert_eq!(hits.bytes_len() % 8, 0);
                        assert_eq!(hits.push_leaf(&b, 64 + align, key_len, 5, from, None), None);
                        assert_eq!(hits.get(1), HitRef::Key { key: &leaf[..key_len], value: &leaf[key_len..] });
                    }
                }
            }
        }
    }
}
