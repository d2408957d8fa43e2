//! Byte formats of a blob frame and the ART nodes inside it. Pure: no I/O,
//! no latches. Every offset here is documented in `doc/FORMAT.md`, and a test
//! checks the table against these constants.
//!
//! A frame is a 64-byte header, a data area growing up from byte 64, and a
//! slot table growing down from the end. A slot is a 4-byte handle to one
//! node: moving or resizing a node rewrites only its slot entry, so the
//! node's parent never changes. An entry node (named by a link from
//! another frame, or the root) keeps its slot for life; a tidy
//! (`tree::tidy`) renumbers the others, rewriting their parents in the same
//! frame under the same latch.

mod arena;
mod buf;
pub(crate) mod mapped;
pub(crate) mod node;
pub(crate) mod space;

pub(crate) use arena::keep_spares as keep_spare_chunks;
pub(crate) use buf::{repeat_byte, zero_byte_flags, FrameBuf};

use crate::ids::{FrameId, Lsn};

/// Size of one blob frame in memory and on disk.
pub(crate) const FRAME_BYTES: usize = 512 * 1024;
/// "HOLF" little-endian.
pub(crate) const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"HOLF");
/// Version 2 frames may hold child fields carrying distances
/// (`layout::node::field_hint`), which version 1 readers would take for
/// slots; version 3 frames may lay a tidy's upper nodes out before the
/// runs (`HDR_RUNS_FROM`), which version 2 readers would scan as one
/// preorder. Older versions are read as they are.
pub(crate) const FRAME_VERSION: u16 = 3;
/// The oldest frame version read.
pub(crate) const FRAME_VERSION_MIN: u16 = 1;

pub(crate) const HDR_MAGIC: usize = 0;
pub(crate) const HDR_VERSION: usize = 4;
pub(crate) const HDR_FLAGS: usize = 6;
/// `flags` bit: the data area is exactly a tidy's preorder layout (see
/// doc/FORMAT.md); set by a tidy, cleared by any other change of layout.
pub(crate) const FLAG_PREORDER: u16 = 1;
pub(crate) const HDR_FRAME_ID: usize = 8;
pub(crate) const HDR_LSN: usize = 16;
pub(crate) const HDR_CHECKSUM: usize = 24;
pub(crate) const HDR_SLOT_COUNT: usize = 28;
pub(crate) const HDR_DATA_END: usize = 32;
pub(crate) const HDR_DEAD_BYTES: usize = 36;
pub(crate) const HDR_FREE_SLOT: usize = 40;
pub(crate) const HDR_LIVE_SLOTS: usize = 44;
pub(crate) const HDR_LIVE_BYTES: usize = 48;
pub(crate) const HDR_PLACED: usize = 52;
/// In a tidy frame, where its runs start (`FrameBuf::runs_from`).
pub(crate) const HDR_RUNS_FROM: usize = 56;
#[cfg(test)]
pub(crate) const HDR_RESERVED: usize = 60;
pub(crate) const HEADER_BYTES: usize = 64;

/// The header byte table (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const HEADER_FIELDS: &[(&str, usize, usize)] = &[
    ("magic", HDR_MAGIC, 4),
    ("version", HDR_VERSION, 2),
    ("flags", HDR_FLAGS, 2),
    ("frame_id", HDR_FRAME_ID, 8),
    ("lsn", HDR_LSN, 8),
    ("checksum", HDR_CHECKSUM, 4),
    ("slot_count", HDR_SLOT_COUNT, 4),
    ("data_end", HDR_DATA_END, 4),
    ("dead_bytes", HDR_DEAD_BYTES, 4),
    ("free_slot", HDR_FREE_SLOT, 4),
    ("live_slots", HDR_LIVE_SLOTS, 4),
    ("live_bytes", HDR_LIVE_BYTES, 4),
    ("placed", HDR_PLACED, 4),
    ("runs_from", HDR_RUNS_FROM, 4),
    ("reserved", HDR_RESERVED, HEADER_BYTES - HDR_RESERVED),
];

/// Bytes per slot-table entry.
pub(crate) const SLOT_BYTES: usize = 4;
/// Marks a free slot-table entry; the low bits link the free list.
pub(crate) const SLOT_FREE_BIT: u32 = 0x8000_0000;
/// "No slot": end of the free list, absent child, absent end leaf.
pub(crate) const NIL: u32 = 0xFFFF_FFFF;

/// Slot index within one frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Slot(pub u32);

/// Offset of slot `s`'s table entry.
#[inline]
pub(crate) fn slot_entry_offset(s: Slot) -> usize {
    FRAME_BYTES - SLOT_BYTES * (s.0 as usize + 1)
}

/// Typed access to the header fields of a frame image.
impl FrameBuf {
    pub(crate) fn frame_id(&self) -> FrameId {
        FrameId(self.u64(HDR_FRAME_ID))
    }

    pub(crate) fn set_lsn(&self, lsn: Lsn) {
        self.set_u64(HDR_LSN, lsn.0);
    }

    #[inline]
    pub(crate) fn slot_count(&self) -> u32 {
        self.u32(HDR_SLOT_COUNT)
    }

    /// Whether the data area is a tidy's preorder (`FLAG_PREORDER`).
    #[inline]
    pub(crate) fn in_preorder(&self) -> bool {
        self.u16(HDR_FLAGS) & FLAG_PREORDER != 0
    }

    /// Mark the layout as a tidy's preorder, or as anything else. Caller
    /// holds the frame exclusively.
    pub(crate) fn set_preorder(&self, on: bool) {
        let flags = self.u16(HDR_FLAGS);
        let want = if on { flags | FLAG_PREORDER } else { flags & !FLAG_PREORDER };
        if want != flags {
            self.set_u16(HDR_FLAGS, want);
        }
    }

    /// In a frame `in_preorder`, the offset from which every node's
    /// subtree lies whole and in preorder right after it (a run may read it
    /// front to back); the nodes before it are a tidy's upper nodes, in
    /// preorder among themselves. `0` (frames tidied before the field
    /// existed) reads as the data area's start: every subtree is whole.
    #[inline]
    pub(crate) fn runs_from(&self) -> usize {
        (self.u32(HDR_RUNS_FROM) as usize).max(HEADER_BYTES)
    }

    pub(crate) fn data_end(&self) -> usize {
        self.u32(HDR_DATA_END) as usize
    }

    pub(crate) fn dead_bytes(&self) -> usize {
        self.u32(HDR_DEAD_BYTES) as usize
    }

    pub(crate) fn live_slots(&self) -> u32 {
        self.u32(HDR_LIVE_SLOTS)
    }

    pub(crate) fn live_bytes(&self) -> usize {
        self.u32(HDR_LIVE_BYTES) as usize
    }

    /// Nodes placed at the end of the data area since the frame was last
    /// laid out in key order (`tree::tidy`).
    pub(crate) fn placed(&self) -> u32 {
        self.u32(HDR_PLACED)
    }

    /// Raw table entry of slot `s` (an offset, or a free-list link).
    #[inline]
    pub(crate) fn slot_entry(&self, s: Slot) -> u32 {
        if s.0 >= self.slot_count() {
            return SLOT_FREE_BIT | NIL;
        }
        self.u32(slot_entry_offset(s))
    }

    /// Offset of the node in slot `s`, or `None` for a free or unknown slot.
    #[inline]
    pub(crate) fn node_offset(&self, s: Slot) -> Option<usize> {
        let e = self.slot_entry(s);
        (e & SLOT_FREE_BIT == 0).then_some(e as usize)
    }

    /// `free_gap` of this frame.
    pub(crate) fn free_gap(&self) -> std::ops::Range<usize> {
        gap_between(self.data_end(), self.slot_count() as usize)
    }

    /// Initialise an empty frame with the given identity.
    pub(crate) fn format(&self, id: FrameId) {
        self.write(0, &[0u8; HEADER_BYTES]);
        self.set_u32(HDR_MAGIC, FRAME_MAGIC);
        self.set_u16(HDR_VERSION, FRAME_VERSION);
        self.set_u64(HDR_FRAME_ID, id.0);
        self.set_u32(HDR_DATA_END, HEADER_BYTES as u32);
        self.set_u32(HDR_FREE_SLOT, NIL);
    }

    /// CRC32C of the image with the checksum field taken as zero: the
    /// frame checksum's definition, which checkpoints compute in one pass
    /// with the slot checksum (`frame_file::seal_with_slot_crc`, tested
    /// against this).
    #[cfg(test)]
    pub(crate) fn compute_checksum(image: &[u8]) -> u32 {
        let crc = crc32c::crc32c(&image[..HDR_CHECKSUM]);
        let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
        crc32c::crc32c_append(crc, &image[HDR_CHECKSUM + 4..])
    }

}

/// The unused bytes between the data area and the slot table, as the
/// image's own header states them; empty when the header is inconsistent.
/// Invariant: a captured image holds zeros here (`FrameBuf::to_image`), so
/// a reader may zero this range of a slot read back from disk (a hole, or
/// stale bytes from the slot's earlier use) and still match the checksums.
pub(crate) fn free_gap(image: &[u8]) -> std::ops::Range<usize> {
    if image.len() != FRAME_BYTES {
        return 0..0;
    }
    gap_between(image_u32(image, HDR_DATA_END) as usize, image_u32(image, HDR_SLOT_COUNT) as usize)
}

/// The 4-byte header field at `off` of a frame image.
pub(crate) fn image_u32(image: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(image[off..off + 4].try_into().expect("4 bytes"))
}

/// Set the 4-byte header field at `off` of a frame image.
pub(crate) fn set_image_u32(image: &mut [u8], off: usize, v: u32) {
    image[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// The free gap of a frame whose data area ends at `data_end` and whose
/// slot table has `slots` entries.
fn gap_between(data_end: usize, slots: usize) -> std::ops::Range<usize> {
    let end = FRAME_BYTES.saturating_sub(slots.saturating_mul(SLOT_BYTES));
    if data_end < HEADER_BYTES || data_end >= end {
        return 0..0;
    }
    data_end..end
}

/// Fill in the checksum of a captured frame image (checkpoints seal with
/// `frame_file::seal_with_slot_crc`, which tests hold to this).
#[cfg(test)]
pub(crate) fn seal_image(img: &mut [u8]) {
    let crc = FrameBuf::compute_checksum(img);
    img[HDR_CHECKSUM..HDR_CHECKSUM + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Why a frame image read from a store is unusable, judged by its header
/// alone (size, magic, version, identity). The caller has already checked
/// a checksum covering every byte of the image (the manifest's); the
/// frame's own checksum field would repeat that check.
pub(crate) fn verify_header(image: &[u8], expect: FrameId) -> Result<(), String> {
    if image.len() != FRAME_BYTES {
        return Err(format!("frame image is {} bytes, expected {FRAME_BYTES}", image.len()));
    }
    let field = |off: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&image[off..off + n]);
        u64::from_le_bytes(b)
    };
    if field(HDR_MAGIC, 4) as u32 != FRAME_MAGIC {
        return Err("bad frame magic".into());
    }
    if !(FRAME_VERSION_MIN..=FRAME_VERSION).contains(&(field(HDR_VERSION, 2) as u16)) {
        return Err(format!("unknown frame version {}", field(HDR_VERSION, 2)));
    }
    if field(HDR_FRAME_ID, 8) != expect.0 {
        return Err(format!("frame holds id {}, expected {}", field(HDR_FRAME_ID, 8), expect.0));
    }
    Ok(())
}

/// `verify_header` plus the frame's own checksum (images with no other
/// checksum: tools and tests).
#[cfg(test)]
pub(crate) fn verify_image(image: &[u8], expect: FrameId) -> Result<(), String> {
    verify_header(image, expect)?;
    if image_u32(image, HDR_CHECKSUM) != FrameBuf::compute_checksum(image) {
        return Err("frame checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_image_verifies_and_any_damage_is_named() {
        let b = FrameBuf::zeroed();
        b.format(FrameId(7));
        let mut img = b.to_image();
        seal_image(&mut img);
        assert_eq!(verify_image(&img, FrameId(7)), Ok(()));
        assert!(verify_header(&img, FrameId(8)).unwrap_err().contains("id 7"));
        let mut bad = img.clone();
        bad[FRAME_BYTES / 2] ^= 1;
        assert_eq!(verify_header(&bad, FrameId(7)), Ok(()), "the header check leaves the body to the caller's checksum");
        assert_eq!(verify_image(&bad, FrameId(7)), Err("frame checksum mismatch".into()));
        bad[HDR_MAGIC] ^= 1;
        assert_eq!(verify_header(&bad, FrameId(7)), Err("bad frame magic".into()));
    }

    /// Version 1 frames (no child field carries a distance) are still
    /// read; a version past this build's is refused by name.
    #[test]
    fn frames_of_every_version_read_are_accepted_and_a_newer_one_is_not() {
        let b = FrameBuf::zeroed();
        b.format(FrameId(3));
        assert_eq!(b.u16(HDR_VERSION), FRAME_VERSION);
        let mut img = b.to_image();
        for v in FRAME_VERSION_MIN..=FRAME_VERSION {
            img[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&v.to_le_bytes());
            assert_eq!(verify_header(&img, FrameId(3)), Ok(()), "version {v}");
        }
        img[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&(FRAME_VERSION + 1).to_le_bytes());
        assert_eq!(verify_header(&img, FrameId(3)), Err(format!("unknown frame version {}", FRAME_VERSION + 1)));
    }
}
