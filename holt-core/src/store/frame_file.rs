//! `frames.dat`: a fixed header, then an array of frame-sized slots.
//!
//! Invariants:
//! - Slot `i` spans `[HEADER_BYTES + i * FRAME_BYTES, HEADER_BYTES + (i+1) * FRAME_BYTES)`;
//!   slots are aligned to 4096 bytes so direct or io_uring I/O can be used.
//! - The file holds no integrity data per slot: the manifest entry that maps a
//!   frame to a slot carries the slot's checksum, so a slot is only trusted
//!   through the published manifest (a stale or torn slot fails the check).
//! - This module never decides which slot is free; the frame store does.
//! - Slots are sparse: a frame's free gap (`layout::free_gap`) is zeros in
//!   every image written, so it is not written but punched out, and a read
//!   zeroes the gap its header names before checking. Whether the disk holds
//!   a hole, zeros or a stale image there never changes what a read returns.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::image_buf::{ImageBuf, Via, DIRECT_ALIGN};
use super::le::{put_u32, put_u64, u32_at, u64_at};
use super::vfs::{FileIo, Vfs};
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::{free_gap, HDR_CHECKSUM};

/// Size of one frame image: one slot holds exactly one frame.
pub(crate) use crate::layout::FRAME_BYTES;
pub(crate) const FRAME_FILE_NAME: &str = "frames.dat";
pub(crate) const FRAME_FILE_VERSION: u32 = 1;
const FRAME_FILE_MAGIC: [u8; 8] = *b"HOLTFRMS";

/// A frame read starts with this many bytes (one block, the frame header
/// in it) to learn which bytes are its free gap.
const FRAME_HEAD_READ_BYTES: usize = 4096;
/// Bytes before slot 0; the header proper is the first `HEADER_CRC_OFF + 4`.
pub(crate) const HEADER_BYTES: usize = 4096;
const HEADER_MAGIC_OFF: usize = 0;
const HEADER_VERSION_OFF: usize = 8;
const HEADER_FRAME_BYTES_OFF: usize = 12;
const HEADER_STORE_ID_OFF: usize = 16;
const HEADER_SLOTS_OFFSET_OFF: usize = 24;
const HEADER_RESERVED_OFF: usize = 32;
/// Fixed for every format version, so a checksum failure is told apart from
/// an unknown version.
const HEADER_CRC_OFF: usize = 60;
const HEADER_PADDING_OFF: usize = 64;

/// The header byte table: (field, offset, size). doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const HEADER_FIELDS: &[(&str, usize, usize)] = &[
    ("magic", HEADER_MAGIC_OFF, 8),
    ("version", HEADER_VERSION_OFF, 4),
    ("frame_bytes", HEADER_FRAME_BYTES_OFF, 4),
    ("store_id", HEADER_STORE_ID_OFF, 8),
    ("slots_offset", HEADER_SLOTS_OFFSET_OFF, 8),
    ("reserved", HEADER_RESERVED_OFF, HEADER_CRC_OFF - HEADER_RESERVED_OFF),
    ("crc32c", HEADER_CRC_OFF, 4),
    ("padding", HEADER_PADDING_OFF, HEADER_BYTES - HEADER_PADDING_OFF),
];

/// One slot: the frame image, nothing else.
#[cfg(test)]
pub(crate) const SLOT_FIELDS: &[(&str, usize, usize)] = &[("frame", 0, FRAME_BYTES)];

/// Granularity of holes: file systems free whole blocks only.
const HOLE_ALIGN: usize = 4096;

/// Byte offset of `slot` in the frame file.
pub(crate) fn slot_offset(slot: u32) -> u64 {
    HEADER_BYTES as u64 + u64::from(slot) * FRAME_BYTES as u64
}

/// Checksum of a frame image as recorded in the manifest: CRC32C over the
/// frame id (8 bytes, little-endian) followed by the image, so a slot holding
/// another frame's valid image still fails.
pub(crate) fn frame_crc(id: FrameId, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&id.0.to_le_bytes()), bytes)
}

/// Bytes of an image after its checksum field.
const PAST_CHECKSUM: usize = FRAME_BYTES - HDR_CHECKSUM - 4;

/// `c` advanced over `PAST_CHECKSUM` zero bytes, as `crc32c_combine(c, 0,
/// PAST_CHECKSUM)` computes it: a linear map of `c`'s bits, whose 32
/// columns are computed once.
fn over_past_checksum(c: u32) -> u32 {
    static COLUMNS: OnceLock<[u32; 32]> = OnceLock::new();
    let columns = COLUMNS.get_or_init(|| std::array::from_fn(|i| crc32c::crc32c_combine(1 << i, 0, PAST_CHECKSUM)));
    (0..32).filter(|&i| c >> i & 1 == 1).fold(0, |acc, i| acc ^ columns[i])
}

/// Seal frame `id`'s image (fill in its own checksum, `layout::seal_image`)
/// and return its slot checksum (`frame_crc`), in one pass over its bytes
/// instead of two: both checksums end with the same bytes, everything past
/// the checksum field, whose CRC is combined with each one's short prefix.
pub(crate) fn seal_with_slot_crc(id: FrameId, img: &mut [u8]) -> u32 {
    assert_eq!(img.len(), FRAME_BYTES, "a slot holds exactly one frame image");
    let rest = crc32c::crc32c(&img[HDR_CHECKSUM + 4..]);
    let head = crc32c::crc32c_append(crc32c::crc32c(&img[..HDR_CHECKSUM]), &[0; 4]);
    let own = over_past_checksum(head) ^ rest;
    img[HDR_CHECKSUM..HDR_CHECKSUM + 4].copy_from_slice(&own.to_le_bytes());
    let head = crc32c::crc32c_append(crc32c::crc32c(&id.0.to_le_bytes()), &img[..HDR_CHECKSUM + 4]);
    over_past_checksum(head) ^ rest
}

/// The open frame file. Reads and writes take `&self`; the frame store
/// guarantees no two writers touch one slot and no reader reads a slot that
/// is being written.
pub(crate) struct FrameFile {
    file: Arc<dyn FileIo>,
    /// The same file opened for direct reads (see `image_buf`), if the
    /// file system has them; frame reads go through it until it refuses
    /// one (`direct_refused`).
    direct: Option<Arc<dyn FileIo>>,
    direct_refused: AtomicBool,
    path: PathBuf,
    /// The file system refused a hole once; stop asking.
    no_holes: AtomicBool,
}

impl FrameFile {
    /// Frames are read whole, one slot at a time, in no order: the
    /// kernel's readahead past a slot only doubles what a miss reads from
    /// the disk (852 KB against 429 KB per miss, benches/RESULTS.md run 20).
    fn new(vfs: &dyn Vfs, file: Arc<dyn FileIo>, path: &Path) -> FrameFile {
        if let Err(e) = file.random_access() {
            log::debug!("{}: no random-access hint ({e}); the kernel reads ahead of frame loads", path.display());
        }
        let direct = match vfs.open_direct_reader(path) {
            Ok(direct) => direct,
            Err(e) => {
                log::warn!("{}: cannot open for direct reads ({e}); frame loads go through the page cache", path.display());
                None
            }
        };
        if direct.is_none() {
            log::debug!("{}: no direct I/O here; frame loads go through the page cache", path.display());
        }
        FrameFile { file, direct, direct_refused: AtomicBool::new(false), path: path.to_path_buf(), no_holes: AtomicBool::new(false) }
    }

    /// Create (or reset) the file: header only, synced. The caller syncs the
    /// directory.
    pub(crate) fn create(vfs: &dyn Vfs, path: &Path, store_id: u64) -> Result<FrameFile> {
        let file = vfs.open(path, true).map_err(|e| Error::io("create", path, e))?;
        let ff = FrameFile::new(vfs, file, path);
        ff.file.set_len(0).map_err(|e| ff.io_err("truncate", e))?;
        ff.file.write_at(&encode_header(store_id), 0).map_err(|e| ff.io_err("write", e))?;
        ff.sync()?;
        Ok(ff)
    }

    /// Open an existing file and check its header; returns the store id.
    pub(crate) fn open(vfs: &dyn Vfs, path: &Path) -> Result<(FrameFile, u64)> {
        let file = vfs.open(path, false).map_err(|e| Error::io("open", path, e))?;
        let ff = FrameFile::new(vfs, file, path);
        let mut header = vec![0u8; HEADER_BYTES];
        let n = ff.file.read_at(&mut header, 0).map_err(|e| ff.io_err("read", e))?;
        let store_id = decode_header(&header[..n], path)?;
        Ok((ff, store_id))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whole slots in the file; a partial slot at the end (an interrupted
    /// extension) does not count and is overwritten when that slot is used.
    pub(crate) fn slots_in_file(&self) -> Result<u32> {
        let len = self.file.len().map_err(|e| self.io_err("stat", e))?;
        let slots = len.saturating_sub(HEADER_BYTES as u64) / FRAME_BYTES as u64;
        u32::try_from(slots).map_err(|_| Error::corrupted(&self.path, len, "frame file larger than 2^32 slots"))
    }

    /// Read `slot` into `buf`, `via` the page cache or around it, and
    /// verify it against the manifest's checksum for `id`; a caller loading
    /// many frames reuses one buffer. Returns the bytes read from the file
    /// (the free gap's whole blocks are not read). On `Err` the contents are
    /// unspecified, never to be used.
    pub(crate) fn read_slot_into(&self, slot: u32, id: FrameId, crc_expected: u32, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        let offset = slot_offset(slot);
        // The first block holds the frame header, which names the free gap;
        // the gap is zeros by definition, so only the blocks around it are
        // read (whole blocks, as direct reads want: the gap's bytes among
        // them are zeroed below).
        self.read_range(slot, id, buf, 0..FRAME_HEAD_READ_BYTES, via)?;
        let gap = free_gap(buf);
        let past_head = |at: usize| at.max(FRAME_HEAD_READ_BYTES);
        let before_end = past_head(gap.start.next_multiple_of(DIRECT_ALIGN));
        let after_start = past_head(gap.end / DIRECT_ALIGN * DIRECT_ALIGN).max(before_end);
        let (before, after) = (FRAME_HEAD_READ_BYTES..before_end, after_start..FRAME_BYTES);
        let bytes_read = (FRAME_HEAD_READ_BYTES + before.len() + after.len()) as u64;
        self.read_range(slot, id, buf, before, via)?;
        self.read_range(slot, id, buf, after, via)?;
        buf[gap].fill(0);
        let crc = frame_crc(id, buf);
        if crc != crc_expected {
            let what = format!("frame {} in slot {slot}: checksum {crc:#010x}, manifest says {crc_expected:#010x}", id.0);
            return Err(Error::corrupted(&self.path, offset, what));
        }
        Ok(bytes_read)
    }

    /// Read `range` of the image in `slot` into the same range of `buf`.
    fn read_range(&self, slot: u32, id: FrameId, buf: &mut [u8], range: std::ops::Range<usize>, via: Via) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let at = slot_offset(slot) + range.start as u64;
        let want = range.len();
        let n = self.read_at(&mut buf[range], at, via).map_err(|e| self.io_err("read", e))?;
        if n != want {
            return Err(Error::corrupted(&self.path, at + n as u64, format!("slot {slot} of frame {} truncated", id.0)));
        }
        Ok(())
    }

    /// Read `via` the direct reader while the file system takes direct
    /// reads; the first it refuses (EINVAL: a logical block larger than
    /// `DIRECT_ALIGN`) turns them off for this file, and the read goes
    /// through the page cache like every later one.
    fn read_at(&self, buf: &mut [u8], at: u64, via: Via) -> io::Result<usize> {
        if let Some(direct) = self.direct_reader().filter(|_| via == Via::Direct) {
            match direct.read_at(buf, at) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    if !self.direct_refused.swap(true, Ordering::Relaxed) {
                        log::warn!("{}: direct read refused ({e}); frame loads go through the page cache", self.path.display());
                    }
                }
                other => return other,
            }
        }
        self.file.read_at(buf, at)
    }

    /// The direct reader, unless there is none or it refused a read.
    fn direct_reader(&self) -> Option<&Arc<dyn FileIo>> {
        self.direct.as_ref().filter(|_| !self.direct_refused.load(Ordering::Relaxed))
    }

    /// Whether frame reads go through a direct reader.
    #[cfg(test)]
    pub(crate) fn has_direct_reads(&self) -> bool {
        self.direct_reader().is_some()
    }

    /// Make the direct reader refuse every read, as a file system whose
    /// logical blocks are larger than `DIRECT_ALIGN` would.
    #[cfg(test)]
    pub(crate) fn refuse_direct_reads_for_test(&mut self) {
        let file = Arc::clone(self.direct.as_ref().expect("a direct reader to refuse"));
        self.direct = Some(Arc::new(super::image_buf::AlignedReads { file, refuse: true }));
    }

    /// Write a whole frame image into `slot`: everything but the whole
    /// blocks of its free gap, which are punched out of the slot. The
    /// slot's writeback starts at once: a checkpoint writes its frames one
    /// after another, then syncs, and the disk works on the first while it
    /// copies and writes the next (a hint: nothing counts on it).
    pub(crate) fn write_slot(&self, slot: u32, bytes: &[u8]) -> Result<()> {
        assert_eq!(bytes.len(), FRAME_BYTES, "a slot holds exactly one frame image");
        let gap = free_gap(bytes);
        debug_assert!(bytes[gap.clone()].iter().all(|&b| b == 0), "an image's free gap is zeros");
        let hole = gap.start.next_multiple_of(HOLE_ALIGN)..gap.end / HOLE_ALIGN * HOLE_ALIGN;
        let base = slot_offset(slot);
        if hole.is_empty() {
            self.file.write_at(bytes, base).map_err(|e| self.io_err("write", e))?;
        } else {
            self.file.write_at(&bytes[..hole.start], base).map_err(|e| self.io_err("write", e))?;
            self.file.write_at(&bytes[hole.end..], base + hole.end as u64).map_err(|e| self.io_err("write", e))?;
            self.punch(base + hole.start as u64, hole.len() as u64)?;
        }
        if let Err(e) = self.file.start_writeback(base, FRAME_BYTES as u64) {
            log::debug!("{}: no early writeback of slot {slot}: {e}", self.path.display());
        }
        Ok(())
    }

    /// Free the disk space of a slot no manifest references (best effort).
    pub(crate) fn release_slot(&self, slot: u32) -> Result<()> {
        self.punch(slot_offset(slot), FRAME_BYTES as u64)
    }

    /// Punch a hole; a file system without holes only costs space.
    fn punch(&self, offset: u64, len: u64) -> Result<()> {
        if self.no_holes.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.file.punch_hole(offset, len) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                log::warn!("{}: the file system cannot punch holes; free frame space stays allocated", self.path.display());
                self.no_holes.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.io_err("punch hole", e)),
        }
    }

    /// Drop slots at and past `slots`. Only for slots no manifest references.
    pub(crate) fn truncate_slots(&self, slots: u32) -> Result<()> {
        self.file.set_len(slot_offset(slots)).map_err(|e| self.io_err("truncate", e))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.io_err("fdatasync", e))
    }

    fn io_err(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::io(op, &self.path, e)
    }
}

fn encode_header(store_id: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES];
    h[HEADER_MAGIC_OFF..HEADER_MAGIC_OFF + 8].copy_from_slice(&FRAME_FILE_MAGIC);
    put_u32(&mut h, HEADER_VERSION_OFF, FRAME_FILE_VERSION);
    put_u32(&mut h, HEADER_FRAME_BYTES_OFF, FRAME_BYTES as u32);
    put_u64(&mut h, HEADER_STORE_ID_OFF, store_id);
    put_u64(&mut h, HEADER_SLOTS_OFFSET_OFF, HEADER_BYTES as u64);
    let crc = crc32c::crc32c(&h[..HEADER_CRC_OFF]);
    put_u32(&mut h, HEADER_CRC_OFF, crc);
    h
}

/// Check order: length, magic, checksum, then version (so a flipped bit is
/// `Corrupted`, a newer file is `UnsupportedFormat`), then the fields.
fn decode_header(h: &[u8], path: &Path) -> Result<u64> {
    if h.len() < HEADER_PADDING_OFF {
        return Err(Error::corrupted(path, h.len() as u64, "frame file header truncated"));
    }
    if h[HEADER_MAGIC_OFF..HEADER_MAGIC_OFF + 8] != FRAME_FILE_MAGIC {
        return Err(Error::corrupted(path, HEADER_MAGIC_OFF as u64, "not a holt frame file (bad magic)"));
    }
    if crc32c::crc32c(&h[..HEADER_CRC_OFF]) != u32_at(h, HEADER_CRC_OFF) {
        return Err(Error::corrupted(path, HEADER_CRC_OFF as u64, "frame file header checksum mismatch"));
    }
    let version = u32_at(h, HEADER_VERSION_OFF);
    if version != FRAME_FILE_VERSION {
        return Err(Error::UnsupportedFormat { path: path.into(), found: version, supported: FRAME_FILE_VERSION });
    }
    let frame_bytes = u32_at(h, HEADER_FRAME_BYTES_OFF);
    if frame_bytes as usize != FRAME_BYTES {
        let what = format!("frame size {frame_bytes}, this build uses {FRAME_BYTES}");
        return Err(Error::corrupted(path, HEADER_FRAME_BYTES_OFF as u64, what));
    }
    if u64_at(h, HEADER_SLOTS_OFFSET_OFF) != HEADER_BYTES as u64 {
        return Err(Error::corrupted(path, HEADER_SLOTS_OFFSET_OFF as u64, "unexpected first slot offset"));
    }
    if h[HEADER_RESERVED_OFF..HEADER_CRC_OFF].iter().any(|&b| b != 0) {
        return Err(Error::corrupted(path, HEADER_RESERVED_OFF as u64, "reserved header bytes are not zero"));
    }
    Ok(u64_at(h, HEADER_STORE_ID_OFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupted_at(r: Result<u64>) -> u64 {
        match r {
            Err(Error::Corrupted { offset, .. }) => offset,
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    #[test]
    fn header_round_trips() {
        let h = encode_header(0xDEAD_BEEF);
        assert_eq!(decode_header(&h, Path::new("f")).unwrap(), 0xDEAD_BEEF);
    }

    #[test]
    fn every_flipped_header_bit_is_detected() {
        let h = encode_header(7);
        for bit in 0..HEADER_PADDING_OFF * 8 {
            let mut bad = h.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&bad, Path::new("f")).is_err(), "bit {bit} flipped undetected");
        }
    }

    #[test]
    fn newer_version_is_unsupported_not_corrupted() {
        let mut h = encode_header(7);
        put_u32(&mut h, HEADER_VERSION_OFF, 2);
        let crc = crc32c::crc32c(&h[..HEADER_CRC_OFF]);
        put_u32(&mut h, HEADER_CRC_OFF, crc);
        match decode_header(&h, Path::new("f")) {
            Err(Error::UnsupportedFormat { found: 2, supported: 1, .. }) => {}
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    #[test]
    fn short_or_foreign_header_is_corrupted() {
        assert_eq!(corrupted_at(decode_header(&[], Path::new("f"))), 0);
        assert_eq!(corrupted_at(decode_header(&encode_header(1)[..63], Path::new("f"))), 63);
        assert_eq!(corrupted_at(decode_header(&[0xAB; HEADER_BYTES], Path::new("f"))), 0);
    }

    #[test]
    fn frame_crc_binds_the_frame_id() {
        let img = vec![3u8; 64];
        assert_ne!(frame_crc(FrameId(1), &img), frame_crc(FrameId(2), &img));
    }

    #[test]
    fn one_pass_seal_gives_both_checksums_of_two_passes() {
        let mut rng = crate::store::splitmix::SplitMix64::new(0x5ea1);
        for round in 0..8u64 {
            let mut img = vec![0u8; FRAME_BYTES];
            let fill = if round == 0 { 0 } else { FRAME_BYTES };
            img[..fill].iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            img[HDR_CHECKSUM..HDR_CHECKSUM + 4].fill(0xAA);
            let id = FrameId(1 + rng.next_u64() % 1000);
            let mut two_pass = img.clone();
            crate::layout::seal_image(&mut two_pass);
            let crc = seal_with_slot_crc(id, &mut img);
            assert!(img == two_pass, "round {round}: the image's own checksum");
            assert_eq!(crc, frame_crc(id, &two_pass), "round {round}: the slot checksum");
        }
    }

    #[test]
    fn slots_are_page_aligned() {
        assert_eq!(slot_offset(0) % 4096, 0);
        assert_eq!(slot_offset(3), (HEADER_BYTES + 3 * FRAME_BYTES) as u64);
    }
}
