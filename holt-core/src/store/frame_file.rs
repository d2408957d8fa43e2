//! `frames.dat`: a fixed header, then an array of slots, one frame each.
//!
//! Invariants:
//! - Slot `i` spans `[HEADER_BYTES + i * stride, HEADER_BYTES + (i+1) * stride)`;
//!   slots are aligned to 4096 bytes so direct or io_uring I/O can be used.
//! - Version 2 files (`SlotFormat::Paged`, what this build creates) put a
//!   4 KiB block of page checksums before each image: one CRC32C per 4 KiB
//!   page, so a read of a few pages checks just what it read. Version 1
//!   files (`SlotFormat::Whole`) hold the image alone; they stay version 1
//!   and are read whole.
//! - A slot is only trusted through the published manifest: its entry
//!   carries the slot checksum (version 1: over the image; version 2: over
//!   the page checksums, which cover the image), bound to the frame id, so
//!   a stale or torn slot fails the check.
//! - This module never decides which slot is free; the frame store does.
//! - Slots are sparse: a frame's free gap (`layout::free_gap`) is zeros in
//!   every image written, so it is not written but punched out, and a read
//!   zeroes the gap its header names before checking. Whether the disk holds
//!   a hole, zeros or a stale image there never changes what a read returns.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::image_buf::{ImageBuf, Via, DIRECT_ALIGN};
use super::le::{put_u32, put_u64, u32_at, u64_at};
use super::vfs::{FileIo, Vfs};
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::{free_gap, HDR_CHECKSUM};

mod delta;
pub(crate) use delta::{PageMask, Source};
use delta::Place;

/// Size of one frame image: one slot holds exactly one frame.
pub(crate) use crate::layout::FRAME_BYTES;
pub(crate) const FRAME_FILE_NAME: &str = "frames.dat";
/// The version this build creates; it reads version 1 too.
pub(crate) const FRAME_FILE_VERSION: u32 = 2;
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

/// One slot of a version 2 file. doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const SLOT_FIELDS: &[(&str, usize, usize)] = &[
    ("page_crc32c", 0, PAGE_TABLE_USED),
    ("reserved", PAGE_TABLE_USED, PAGE_TABLE_BYTES - PAGE_TABLE_USED),
    ("frame", PAGE_TABLE_BYTES, FRAME_BYTES),
];

/// One slot of a version 1 file: the frame image, nothing else.
#[cfg(test)]
pub(crate) const SLOT_V1_FIELDS: &[(&str, usize, usize)] = &[("frame", 0, FRAME_BYTES)];

/// Granularity of holes: file systems free whole blocks only.
const HOLE_ALIGN: usize = 4096;

/// The whole blocks of `image`'s free gap: what a write of it leaves
/// out of its slot (`FrameFile::write_slot`).
pub(crate) fn gap_blocks(image: &[u8]) -> Range<usize> {
    let gap = free_gap(image);
    gap.start.next_multiple_of(HOLE_ALIGN)..gap.end / HOLE_ALIGN * HOLE_ALIGN
}

/// A page: the unit a paged slot checksums and a partial load reads.
pub(crate) const PAGE_BYTES: usize = 4096;
/// Pages in one frame image.
pub(crate) const PAGES: usize = FRAME_BYTES / PAGE_BYTES;
/// The block of page checksums before each image of a paged slot.
pub(crate) const PAGE_TABLE_BYTES: usize = 4096;
/// Bytes of that block in use: `PAGES` little-endian CRC32Cs; the rest is
/// zeros, written and not read.
const PAGE_TABLE_USED: usize = PAGES * 4;

/// The page checksums of one image.
pub(crate) type PageCrcs = [u32; PAGES];

/// What a reader of some pages of an image knows of it already: its page
/// checksums (`FrameFile::read_head`) and its free gap (from its header).
#[derive(Clone, Copy)]
pub(crate) struct Known<'a> {
    pub(crate) crcs: &'a PageCrcs,
    pub(crate) gap: &'a Range<usize>,
}

/// How a slot holds its frame, by the file's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotFormat {
    /// Version 1: the image alone, read and checked whole.
    Whole,
    /// Version 2: a block of page checksums, then the image.
    Paged,
}

impl SlotFormat {
    fn version(self) -> u32 {
        match self {
            SlotFormat::Whole => 1,
            SlotFormat::Paged => 2,
        }
    }

    /// Bytes from one slot to the next.
    fn stride(self) -> u64 {
        match self {
            SlotFormat::Whole => FRAME_BYTES as u64,
            SlotFormat::Paged => (PAGE_TABLE_BYTES + FRAME_BYTES) as u64,
        }
    }

    /// Byte offset of `slot` in a file of this format.
    pub(crate) fn offset(self, slot: u32) -> u64 {
        HEADER_BYTES as u64 + u64::from(slot) * self.stride()
    }

    /// Where the image starts inside a slot.
    pub(crate) fn image_at(self) -> u64 {
        match self {
            SlotFormat::Whole => 0,
            SlotFormat::Paged => PAGE_TABLE_BYTES as u64,
        }
    }
}

/// What a checkpoint writes beside an image: the slot checksum the
/// manifest records and, in a paged file, the block of page checksums.
pub(crate) struct Sealed {
    pub(crate) crc: u32,
    table: Option<Box<[u8; PAGE_TABLE_BYTES]>>,
}

/// Checksum of a frame image as recorded in the manifest: CRC32C over the
/// frame id (8 bytes, little-endian) followed by the image, so a slot holding
/// another frame's valid image still fails.
pub(crate) fn frame_crc(id: FrameId, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&id.0.to_le_bytes()), bytes)
}

/// Bytes of an image after its checksum field.
const PAST_CHECKSUM: usize = FRAME_BYTES - HDR_CHECKSUM - 4;

/// A CRC advanced over `N` zero bytes, as `crc32c_combine(c, 0, N)`
/// computes it: a linear map of `c`'s bits, whose 32 columns are computed
/// once per length. `crc(a ++ b) = advance(crc(a), b.len()) ^ crc(b)`.
struct Advance<const N: usize>;

impl<const N: usize> Advance<N> {
    fn columns(cell: &'static OnceLock<[u32; 32]>) -> &'static [u32; 32] {
        cell.get_or_init(|| std::array::from_fn(|i| crc32c::crc32c_combine(1 << i, 0, N)))
    }

    fn apply(columns: &[u32; 32], c: u32) -> u32 {
        (0..32).filter(|&i| c >> i & 1 == 1).fold(0, |acc, i| acc ^ columns[i])
    }
}

fn over_past_checksum(c: u32) -> u32 {
    static COLUMNS: OnceLock<[u32; 32]> = OnceLock::new();
    Advance::<PAST_CHECKSUM>::apply(Advance::<PAST_CHECKSUM>::columns(&COLUMNS), c)
}

fn over_a_page(c: u32) -> u32 {
    static COLUMNS: OnceLock<[u32; 32]> = OnceLock::new();
    Advance::<PAGE_BYTES>::apply(Advance::<PAGE_BYTES>::columns(&COLUMNS), c)
}

/// CRC32C of a page of zeros: the checksum of every page inside a free gap.
fn zero_page_crc() -> u32 {
    static CRC: OnceLock<u32> = OnceLock::new();
    *CRC.get_or_init(|| crc32c::crc32c(&[0u8; PAGE_BYTES]))
}

/// The whole blocks of an image, past its first, before and after its
/// free gap `gap`: what a read by parts reads after the first block.
fn blocks_around(gap: &Range<usize>) -> (Range<usize>, Range<usize>) {
    let past_head = |at: usize| at.max(FRAME_HEAD_READ_BYTES);
    let before_end = past_head(gap.start.next_multiple_of(DIRECT_ALIGN));
    let after_start = past_head(gap.end / DIRECT_ALIGN * DIRECT_ALIGN).max(before_end);
    (FRAME_HEAD_READ_BYTES..before_end, after_start..FRAME_BYTES)
}

/// The image bytes of page `p`.
fn page_range(p: usize) -> Range<usize> {
    p * PAGE_BYTES..(p + 1) * PAGE_BYTES
}

/// Whether page `p` lies wholly inside `gap` (and so is zeros).
pub(crate) fn page_in_gap(p: usize, gap: &Range<usize>) -> bool {
    let r = page_range(p);
    gap.start <= r.start && r.end <= gap.end
}

/// Checksums of pages `from..` of `img`; pages in its free gap (zeros by
/// the image invariant) are not read.
fn page_crcs_from(img: &[u8], from: usize, crcs: &mut PageCrcs) {
    let gap = free_gap(img);
    for (p, crc) in crcs.iter_mut().enumerate().skip(from) {
        *crc = if page_in_gap(p, &gap) { zero_page_crc() } else { crc32c::crc32c(&img[page_range(p)]) };
    }
}

/// The block of page checksums and the slot checksum over it, bound to `id`.
fn table_of(id: FrameId, crcs: &PageCrcs) -> Sealed {
    let mut table = Box::new([0u8; PAGE_TABLE_BYTES]);
    for (p, crc) in crcs.iter().enumerate() {
        put_u32(&mut table[..], p * 4, *crc);
    }
    Sealed { crc: table_crc(id, &table[..PAGE_TABLE_USED]), table: Some(table) }
}

/// The slot checksum of a paged slot: CRC32C over the frame id (8 bytes,
/// little-endian) and the page checksums.
fn table_crc(id: FrameId, used: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&id.0.to_le_bytes()), used)
}

/// Seal frame `id`'s image for a paged slot: fill in its own checksum and
/// take its page checksums in one pass over its bytes. The own checksum
/// (`layout::seal_image`) is the CRC of the image with the field taken as
/// zero: the CRC of the header's first bytes, advanced over the rest and
/// combined with the rest's CRC, which is chained from the pages' CRCs.
fn seal_paged(id: FrameId, img: &mut [u8]) -> Sealed {
    let mut crcs = [0u32; PAGES];
    page_crcs_from(img, 1, &mut crcs);
    let rest = crcs[1..].iter().fold(crc32c::crc32c(&img[HDR_CHECKSUM + 4..PAGE_BYTES]), |acc, &c| over_a_page(acc) ^ c);
    let head = crc32c::crc32c_append(crc32c::crc32c(&img[..HDR_CHECKSUM]), &[0; 4]);
    let own = over_past_checksum(head) ^ rest;
    img[HDR_CHECKSUM..HDR_CHECKSUM + 4].copy_from_slice(&own.to_le_bytes());
    crcs[0] = crc32c::crc32c(&img[page_range(0)]);
    table_of(id, &crcs)
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
    format: SlotFormat,
    /// The same file opened for direct reads (see `image_buf`), if the
    /// file system has them; frame reads go through it until it refuses
    /// one (`direct_refused`).
    direct: Option<Arc<dyn FileIo>>,
    direct_refused: AtomicBool,
    path: PathBuf,
    /// The file system refused a hole once; stop asking.
    no_holes: AtomicBool,
    /// Holes punched since open (`punches`).
    punched: AtomicU64,
}

impl FrameFile {
    /// Frames are read in no order, whole or a page at a time: the
    /// kernel's readahead past what was asked only doubles what a miss
    /// reads from the disk (852 KB against 429 KB per whole-frame miss,
    /// benches/RESULTS.md run 20).
    fn new(vfs: &dyn Vfs, file: Arc<dyn FileIo>, path: &Path, format: SlotFormat) -> FrameFile {
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
        let (direct_refused, no_holes) = (AtomicBool::new(false), AtomicBool::new(false));
        let punched = AtomicU64::new(0);
        FrameFile { file, format, direct, direct_refused, path: path.to_path_buf(), no_holes, punched }
    }

    /// Create (or reset) the file: header only, synced, in this build's
    /// format. The caller syncs the directory.
    pub(crate) fn create(vfs: &dyn Vfs, path: &Path, store_id: u64) -> Result<FrameFile> {
        Self::create_in(vfs, path, store_id, SlotFormat::Paged)
    }

    /// `create` in a given format (tests of version 1 files).
    pub(crate) fn create_in(vfs: &dyn Vfs, path: &Path, store_id: u64, format: SlotFormat) -> Result<FrameFile> {
        let file = vfs.open(path, true).map_err(|e| Error::io("create", path, e))?;
        let ff = FrameFile::new(vfs, file, path, format);
        ff.file.set_len(0).map_err(|e| ff.io_err("truncate", e))?;
        ff.file.write_at(&encode_header(store_id, format), 0).map_err(|e| ff.io_err("write", e))?;
        ff.sync()?;
        Ok(ff)
    }

    /// Open an existing file and check its header; returns the store id.
    pub(crate) fn open(vfs: &dyn Vfs, path: &Path) -> Result<(FrameFile, u64)> {
        let file = vfs.open(path, false).map_err(|e| Error::io("open", path, e))?;
        let mut header = vec![0u8; HEADER_BYTES];
        let n = file.read_at(&mut header, 0).map_err(|e| Error::io("read", path, e))?;
        let (store_id, format) = decode_header(&header[..n], path)?;
        Ok((FrameFile::new(vfs, file, path, format), store_id))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn format(&self) -> SlotFormat {
        self.format
    }

    /// Byte offset of `slot` in the file.
    pub(crate) fn slot_offset(&self, slot: u32) -> u64 {
        self.format.offset(slot)
    }

    /// Byte offset of the image in `slot`.
    fn image_offset(&self, slot: u32) -> u64 {
        self.slot_offset(slot) + self.format.image_at()
    }

    /// Whole slots in the file; a partial slot at the end (an interrupted
    /// extension) does not count and is overwritten when that slot is used.
    pub(crate) fn slots_in_file(&self) -> Result<u32> {
        let len = self.file.len().map_err(|e| self.io_err("stat", e))?;
        let slots = len.saturating_sub(HEADER_BYTES as u64) / self.format.stride();
        u32::try_from(slots).map_err(|_| Error::corrupted(&self.path, len, "frame file larger than 2^32 slots"))
    }

    /// Seal frame `id`'s image for this file (fill in its own checksum)
    /// and return what `write_slot` writes beside it.
    pub(crate) fn seal(&self, id: FrameId, img: &mut [u8]) -> Sealed {
        match self.format {
            SlotFormat::Whole => Sealed { crc: seal_with_slot_crc(id, img), table: None },
            SlotFormat::Paged => seal_paged(id, img),
        }
    }

    /// The checksums of an image without sealing it (tests write images
    /// they compare with what they read back).
    #[cfg(test)]
    pub(crate) fn checksums(&self, id: FrameId, img: &[u8]) -> Sealed {
        match self.format {
            SlotFormat::Whole => Sealed { crc: frame_crc(id, img), table: None },
            SlotFormat::Paged => {
                let mut crcs = [0u32; PAGES];
                page_crcs_from(img, 0, &mut crcs);
                table_of(id, &crcs)
            }
        }
    }

    /// Read `slot` into `buf`, `via` the page cache or around it, and
    /// verify it against the manifest's checksum for `id`; a caller loading
    /// many frames reuses one buffer. Returns the bytes of the slot outside
    /// the free gap's whole blocks (what the disk reads where the gap is a
    /// hole). On `Err` the contents are unspecified, never to be used.
    pub(crate) fn read_slot_into(&self, slot: u32, id: FrameId, crc_expected: u32, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        if via == Via::Direct && self.direct_reader().is_some() && !self.no_holes.load(Ordering::Relaxed) {
            return self.read_slot_at_once(slot, id, crc_expected, buf);
        }
        // The first block holds the frame header, which names the free gap;
        // the gap is zeros by definition, so only the blocks around it are
        // read (whole blocks, as direct reads want: the gap's bytes among
        // them are zeroed below).
        let crcs = match self.format {
            SlotFormat::Whole => {
                self.read_range(slot, id, buf, 0..FRAME_HEAD_READ_BYTES, via)?;
                None
            }
            SlotFormat::Paged => Some(self.read_head(slot, id, crc_expected, buf, via)?),
        };
        let gap = free_gap(buf);
        let (before, after) = blocks_around(&gap);
        self.read_range(slot, id, buf, before, via)?;
        self.read_range(slot, id, buf, after, via)?;
        self.check_image(slot, id, crc_expected, buf, crcs.as_ref())?;
        Ok(self.bytes_outside_gap(&gap))
    }

    /// `read_slot_into` around the page cache, in one request for the
    /// whole slot: every image written punches its gap's whole blocks out
    /// of the file (`write_slot`), and a direct read of a hole is zeros
    /// the file system fills in without reading the disk, so the disk
    /// reads what the three requests of a read by parts would, and the
    /// loader waits once instead of three times (each wait was ~130 µs of
    /// a larger-than-memory insert's ~2 ms, benches/RESULTS.md run 32).
    /// Whatever the gap holds is zeroed before the checks, as there.
    fn read_slot_at_once(&self, slot: u32, id: FrameId, crc_expected: u32, buf: &mut ImageBuf) -> Result<u64> {
        let at = self.slot_offset(slot);
        let slot_bytes = match self.format {
            SlotFormat::Whole => &mut buf[..],
            SlotFormat::Paged => &mut buf.with_front()[..PAGE_TABLE_BYTES + FRAME_BYTES],
        };
        self.read_exact(slot, id, &mut [slot_bytes], at, Via::Direct)?;
        let crcs = match self.format {
            SlotFormat::Whole => None,
            SlotFormat::Paged => Some(self.check_head(slot, id, crc_expected, buf)?),
        };
        let gap = self.check_image(slot, id, crc_expected, buf, crcs.as_ref())?;
        Ok(self.bytes_outside_gap(&gap))
    }

    /// Zero the free gap of the image in `buf` (its header read and, in a
    /// paged slot, checked) and check the image: whole against the
    /// manifest's checksum, or every page but the first against `crcs`.
    /// Returns the gap.
    fn check_image(&self, slot: u32, id: FrameId, crc_expected: u32, buf: &mut [u8], crcs: Option<&PageCrcs>) -> Result<Range<usize>> {
        let gap = free_gap(buf);
        buf[gap.clone()].fill(0);
        match crcs {
            None => self.check_whole(slot, id, buf, crc_expected)?,
            Some(crcs) => (1..PAGES).try_for_each(|p| self.check_page((slot, p), id, p, &buf[page_range(p)], &gap, crcs[p]))?,
        }
        Ok(gap)
    }

    /// Bytes of a slot whose image has free gap `gap` outside the gap's
    /// whole blocks: the page checksums, the first block, and the blocks
    /// around the gap.
    fn bytes_outside_gap(&self, gap: &Range<usize>) -> u64 {
        let (before, after) = blocks_around(gap);
        (self.format.image_at() as usize + FRAME_HEAD_READ_BYTES + before.len() + after.len()) as u64
    }

    fn check_whole(&self, slot: u32, id: FrameId, img: &[u8], crc_expected: u32) -> Result<()> {
        let crc = frame_crc(id, img);
        if crc != crc_expected {
            let what = format!("frame {} in slot {slot}: checksum {crc:#010x}, manifest says {crc_expected:#010x}", id.0);
            return Err(Error::corrupted(&self.path, self.slot_offset(slot), what));
        }
        Ok(())
    }

    /// Read the page checksums of the paged `slot` and the image's first
    /// page (its header) in one request, into `buf`'s front block and
    /// first page, and check both: the checksums against the manifest's
    /// `crc_expected` for `id`, the page against its checksum.
    pub(crate) fn read_head(&self, slot: u32, id: FrameId, crc_expected: u32, buf: &mut ImageBuf, via: Via) -> Result<PageCrcs> {
        assert_eq!(self.format, SlotFormat::Paged, "only a paged slot has page checksums");
        let at = self.slot_offset(slot);
        self.read_exact(slot, id, &mut [&mut buf.with_front()[..PAGE_TABLE_BYTES + PAGE_BYTES]], at, via)?;
        self.check_head(slot, id, crc_expected, buf)
    }

    /// Check the page checksums in `buf`'s front block against the
    /// manifest's `crc_expected` for `id`, and the image's first page
    /// against its checksum; the checksums, once they hold.
    fn check_head(&self, slot: u32, id: FrameId, crc_expected: u32, buf: &ImageBuf) -> Result<PageCrcs> {
        let used = &buf.front()[..PAGE_TABLE_USED];
        let crc = table_crc(id, used);
        if crc != crc_expected {
            let what = format!("frame {} in slot {slot}: page checksums {crc:#010x}, manifest says {crc_expected:#010x}", id.0);
            return Err(Error::corrupted(&self.path, self.slot_offset(slot), what));
        }
        let crcs: PageCrcs = std::array::from_fn(|p| u32_at(used, p * 4));
        self.check_page((slot, 0), id, 0, &buf[page_range(0)], &(0..0), crcs[0])?;
        Ok(crcs)
    }

    /// Check image page `page`, read from `at` (its slot, and the page
    /// of that slot's image area it was read from), against its checksum.
    fn check_page(&self, at: Place, id: FrameId, page: usize, bytes: &[u8], gap: &Range<usize>, crc_expected: u32) -> Result<()> {
        let crc = if page_in_gap(page, gap) { zero_page_crc() } else { crc32c::crc32c(bytes) };
        if crc != crc_expected {
            let slot = at.0;
            let what = format!("frame {} in slot {slot}, page {page}: checksum {crc:#010x}, expected {crc_expected:#010x}", id.0);
            return Err(Error::corrupted(&self.path, self.page_offset(at), what));
        }
        Ok(())
    }

    /// Byte offset of the page at `at` in the file.
    fn page_offset(&self, at: Place) -> u64 {
        self.image_offset(at.0) + (at.1 * PAGE_BYTES) as u64
    }

    /// Read `range` of the image in `slot` into the same range of `buf`.
    fn read_range(&self, slot: u32, id: FrameId, buf: &mut [u8], range: Range<usize>, via: Via) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let at = self.image_offset(slot) + range.start as u64;
        self.read_exact(slot, id, &mut [&mut buf[range]], at, via)
    }

    /// Fill `bufs`, one after another, from byte `at` of the file, in one
    /// request; reading less (the file ends) is corruption of `slot`.
    fn read_exact(&self, slot: u32, id: FrameId, bufs: &mut [&mut [u8]], at: u64, via: Via) -> Result<()> {
        let want: usize = bufs.iter().map(|b| b.len()).sum();
        let n = self.read_at(bufs, at, via).map_err(|e| self.io_err("read", e))?;
        if n != want {
            return Err(Error::corrupted(&self.path, at + n as u64, format!("slot {slot} of frame {} truncated", id.0)));
        }
        Ok(())
    }

    /// Read into `bufs`, one after another, in one request, `via` the
    /// direct reader while the file system takes direct reads; the first
    /// it refuses (EINVAL: a logical block larger than `DIRECT_ALIGN`)
    /// turns them off for this file, and the read goes through the page
    /// cache like every later one.
    fn read_at(&self, bufs: &mut [&mut [u8]], at: u64, via: Via) -> io::Result<usize> {
        if let Some(direct) = self.direct_reader().filter(|_| via == Via::Direct) {
            match direct.read_vectored_at(bufs, at) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    if !self.direct_refused.swap(true, Ordering::Relaxed) {
                        log::warn!("{}: direct read refused ({e}); frame loads go through the page cache", self.path.display());
                    }
                }
                other => return other,
            }
        }
        self.file.read_vectored_at(bufs, at)
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

    /// Write a whole frame image into `slot`, with its page checksums in a
    /// paged file (`sealed`, from `seal`): everything but the whole blocks
    /// of its free gap (`gap_blocks`), of which the ranges in `punch`
    /// (offsets in the image, whole blocks) are punched out of the slot;
    /// the caller knows the rest of the gap is a hole already, or lets it
    /// hold what it held (never read: a read zeros the gap). The slot's
    /// writeback starts at once: a checkpoint writes its frames one after
    /// another, then syncs, and the disk works on the first while it
    /// copies and writes the next (a hint: nothing counts on it).
    pub(crate) fn write_slot(&self, slot: u32, bytes: &[u8], sealed: &Sealed, punch: &[Range<usize>]) -> Result<()> {
        assert_eq!(bytes.len(), FRAME_BYTES, "a slot holds exactly one frame image");
        assert_eq!(sealed.table.is_some(), self.format == SlotFormat::Paged, "page checksums go with paged slots only");
        debug_assert!(bytes[free_gap(bytes)].iter().all(|&b| b == 0), "an image's free gap is zeros");
        let gap_blocks = gap_blocks(bytes);
        debug_assert!(punch.iter().all(|r| r.start >= gap_blocks.start && r.end <= gap_blocks.end), "punches inside the gap");
        // The page checksums (none in a version 1 slot) lie right before
        // the image: they and the image's front go in one request.
        let (at, base) = (self.slot_offset(slot), self.image_offset(slot));
        let table = sealed.table.as_deref().map_or(&[][..], |t| &t[..]);
        let front = if gap_blocks.is_empty() { bytes } else { &bytes[..gap_blocks.start] };
        self.file.write_all_vectored_at(&[table, front], at).map_err(|e| self.io_err("write", e))?;
        if !gap_blocks.is_empty() {
            self.file.write_at(&bytes[gap_blocks.end..], base + gap_blocks.end as u64).map_err(|e| self.io_err("write", e))?;
            for r in punch {
                self.punch(base + r.start as u64, r.len() as u64)?;
            }
        }
        if gap_blocks.end == FRAME_BYTES {
            // Nothing follows the gap (an image without a slot table).
            self.span_slot(slot)?;
        }
        if let Err(e) = self.file.start_writeback(at, self.format.stride()) {
            log::debug!("{}: no early writeback of slot {slot}: {e}", self.path.display());
        }
        Ok(())
    }

    /// Extend the file to the end of `slot`, whose last bytes were not
    /// written: a slot must span its stride, or it would neither count as
    /// a slot of the file (`slots_in_file`) nor read back whole.
    fn span_slot(&self, slot: u32) -> Result<()> {
        let end = self.slot_offset(slot) + self.format.stride();
        if self.file.len().map_err(|e| self.io_err("stat", e))? < end {
            self.file.set_len(end).map_err(|e| self.io_err("extend", e))?;
        }
        Ok(())
    }

    /// Free the disk space of the slots in `slots`, which no manifest
    /// references: one punch for the whole run (on a file system mounted
    /// with `discard` each punch is a synchronous discard of ~0.6 ms here,
    /// whatever its length; benches/RESULTS.md run 43).
    pub(crate) fn release_slots(&self, slots: std::ops::Range<u32>) -> Result<()> {
        let at = self.slot_offset(slots.start);
        self.punch(at, self.slot_offset(slots.end) - at)
    }

    /// Punch a hole; a file system without holes only costs space.
    fn punch(&self, offset: u64, len: u64) -> Result<()> {
        if self.no_holes.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.punched.fetch_add(1, Ordering::Relaxed);
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

    /// The first hole inside the image area of `slot`, in whole blocks
    /// (offsets in the image); `None` if there is none, or the file system
    /// cannot tell (a failure to ask only costs a punch later).
    pub(crate) fn image_hole(&self, slot: u32) -> Option<Range<usize>> {
        let base = self.image_offset(slot);
        let hole = self.file.first_hole(base, base + FRAME_BYTES as u64).ok()??;
        let (start, end) = ((hole.start - base) as usize, (hole.end - base) as usize);
        let blocks = start.next_multiple_of(HOLE_ALIGN)..end / HOLE_ALIGN * HOLE_ALIGN;
        (blocks.start < blocks.end).then_some(blocks)
    }

    /// Holes asked of the file system since open (free slots' runs,
    /// images' free gaps): on a file system mounted with `discard` each is
    /// a synchronous discard, the cost `FrameStore`'s kept slots save.
    pub(crate) fn punches(&self) -> u64 {
        self.punched.load(Ordering::Relaxed)
    }

    /// Drop slots at and past `slots`. Only for slots no manifest references.
    pub(crate) fn truncate_slots(&self, slots: u32) -> Result<()> {
        self.file.set_len(self.slot_offset(slots)).map_err(|e| self.io_err("truncate", e))
    }

    /// Write the pages of `slots` back and wait for them
    /// (`FileIo::wait_writeback`): bounds the dirty page cache, makes
    /// nothing durable.
    pub(crate) fn wait_slots_written(&self, slots: std::ops::Range<u32>) -> Result<()> {
        let at = self.slot_offset(slots.start);
        self.file.wait_writeback(at, self.slot_offset(slots.end) - at).map_err(|e| self.io_err("sync_file_range", e))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.io_err("fdatasync", e))
    }

    fn io_err(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::io(op, &self.path, e)
    }
}

fn encode_header(store_id: u64, format: SlotFormat) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES];
    h[HEADER_MAGIC_OFF..HEADER_MAGIC_OFF + 8].copy_from_slice(&FRAME_FILE_MAGIC);
    put_u32(&mut h, HEADER_VERSION_OFF, format.version());
    put_u32(&mut h, HEADER_FRAME_BYTES_OFF, FRAME_BYTES as u32);
    put_u64(&mut h, HEADER_STORE_ID_OFF, store_id);
    put_u64(&mut h, HEADER_SLOTS_OFFSET_OFF, HEADER_BYTES as u64);
    let crc = crc32c::crc32c(&h[..HEADER_CRC_OFF]);
    put_u32(&mut h, HEADER_CRC_OFF, crc);
    h
}

/// Check order: length, magic, checksum, then version (so a flipped bit is
/// `Corrupted`, a newer file is `UnsupportedFormat`), then the fields.
fn decode_header(h: &[u8], path: &Path) -> Result<(u64, SlotFormat)> {
    if h.len() < HEADER_PADDING_OFF {
        return Err(Error::corrupted(path, h.len() as u64, "frame file header truncated"));
    }
    if h[HEADER_MAGIC_OFF..HEADER_MAGIC_OFF + 8] != FRAME_FILE_MAGIC {
        return Err(Error::corrupted(path, HEADER_MAGIC_OFF as u64, "not a holt frame file (bad magic)"));
    }
    if crc32c::crc32c(&h[..HEADER_CRC_OFF]) != u32_at(h, HEADER_CRC_OFF) {
        return Err(Error::corrupted(path, HEADER_CRC_OFF as u64, "frame file header checksum mismatch"));
    }
    let format = match u32_at(h, HEADER_VERSION_OFF) {
        1 => SlotFormat::Whole,
        2 => SlotFormat::Paged,
        found => return Err(Error::UnsupportedFormat { path: path.into(), found, supported: FRAME_FILE_VERSION }),
    };
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
    Ok((u64_at(h, HEADER_STORE_ID_OFF), format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupted_at(r: Result<(u64, SlotFormat)>) -> u64 {
        match r {
            Err(Error::Corrupted { offset, .. }) => offset,
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    #[test]
    fn header_round_trips() {
        for format in [SlotFormat::Whole, SlotFormat::Paged] {
            let h = encode_header(0xDEAD_BEEF, format);
            assert_eq!(decode_header(&h, Path::new("f")).unwrap(), (0xDEAD_BEEF, format));
        }
    }

    #[test]
    fn every_flipped_header_bit_is_detected() {
        let h = encode_header(7, SlotFormat::Paged);
        for bit in 0..HEADER_PADDING_OFF * 8 {
            let mut bad = h.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&bad, Path::new("f")).is_err(), "bit {bit} flipped undetected");
        }
    }

    #[test]
    fn newer_version_is_unsupported_not_corrupted() {
        let mut h = encode_header(7, SlotFormat::Paged);
        put_u32(&mut h, HEADER_VERSION_OFF, 3);
        let crc = crc32c::crc32c(&h[..HEADER_CRC_OFF]);
        put_u32(&mut h, HEADER_CRC_OFF, crc);
        match decode_header(&h, Path::new("f")) {
            Err(Error::UnsupportedFormat { found: 3, supported: 2, .. }) => {}
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    #[test]
    fn short_or_foreign_header_is_corrupted() {
        assert_eq!(corrupted_at(decode_header(&[], Path::new("f"))), 0);
        assert_eq!(corrupted_at(decode_header(&encode_header(1, SlotFormat::Paged)[..63], Path::new("f"))), 63);
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
        for (format, stride) in [(SlotFormat::Whole, FRAME_BYTES), (SlotFormat::Paged, PAGE_TABLE_BYTES + FRAME_BYTES)] {
            assert_eq!(format.stride(), stride as u64);
            assert_eq!(format.stride() % 4096, 0);
            assert_eq!(format.image_at() % 4096, 0);
        }
        assert_eq!(HEADER_BYTES % 4096, 0);
    }

    /// A sealed image with data on both sides of a free gap.
    pub(super) fn sample_image(rng: &mut crate::store::splitmix::SplitMix64) -> Vec<u8> {
        let mut img = vec![0u8; FRAME_BYTES];
        img.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let (data_end, slots) = (5 * PAGE_BYTES + 100, 700usize);
        put_u32(&mut img, crate::layout::HDR_DATA_END, data_end as u32);
        put_u32(&mut img, crate::layout::HDR_SLOT_COUNT, slots as u32);
        let gap = free_gap(&img);
        img[gap].fill(0);
        img
    }

    #[test]
    fn paged_seal_gives_the_own_checksum_and_every_page_s_checksum() {
        let mut rng = crate::store::splitmix::SplitMix64::new(0x9a9e);
        for round in 0..4u64 {
            let mut img = sample_image(&mut rng);
            img[HDR_CHECKSUM..HDR_CHECKSUM + 4].fill(0xAA);
            let id = FrameId(1 + round);
            let mut two_pass = img.clone();
            crate::layout::seal_image(&mut two_pass);
            let sealed = seal_paged(id, &mut img);
            assert!(img == two_pass, "round {round}: the image's own checksum");
            let table = sealed.table.as_ref().expect("a paged seal has page checksums");
            for p in 0..PAGES {
                assert_eq!(u32_at(&table[..], p * 4), crc32c::crc32c(&img[page_range(p)]), "round {round}, page {p}");
            }
            assert!(table[PAGE_TABLE_USED..].iter().all(|&b| b == 0));
            let mut bound = id.0.to_le_bytes().to_vec();
            bound.extend_from_slice(&table[..PAGE_TABLE_USED]);
            assert_eq!(sealed.crc, crc32c::crc32c(&bound), "the slot checksum covers the id and the page checksums");
        }
    }

    fn temp_file(format: SlotFormat) -> (Arc<dyn Vfs>, FrameFile) {
        let vfs: Arc<dyn Vfs> = Arc::new(crate::store::mem_vfs::MemVfs::new());
        vfs.create_dir_all(Path::new("/s")).unwrap();
        let ff = FrameFile::create_in(&*vfs, Path::new("/s/frames.dat"), 1, format).unwrap();
        (vfs, ff)
    }

    /// A paged file holding a sealed `sample_image` of frame `id` in `slot`.
    pub(super) fn written(seed: u64, slot: u32, id: FrameId) -> (Arc<dyn Vfs>, FrameFile, Vec<u8>, Sealed) {
        let (vfs, ff) = temp_file(SlotFormat::Paged);
        let mut img = sample_image(&mut crate::store::splitmix::SplitMix64::new(seed));
        let sealed = ff.seal(id, &mut img);
        ff.write_slot(slot, &img, &sealed, &[gap_blocks(&img)]).unwrap();
        (vfs, ff, img, sealed)
    }

    #[test]
    fn pages_read_one_at_a_time_match_the_image_and_gap_pages_are_not_read() {
        let id = FrameId(9);
        let (_vfs, ff, img, sealed) = written(0x9a9f, 2, id);
        let mut buf = ImageBuf::zeroed();
        let crcs = ff.read_head(2, id, sealed.crc, &mut buf, Via::Direct).unwrap();
        assert_eq!(buf[page_range(0)], img[page_range(0)]);
        let gap = free_gap(&buf);
        assert_eq!(gap, free_gap(&img));
        for p in 1..PAGES {
            buf[page_range(p)].fill(0x55);
            ff.read_pages_from(Source { slot: 2, base: None }, id, p..p + 1, Known { crcs: &crcs, gap: &gap }, &mut buf, Via::Direct).unwrap();
            assert_eq!(buf[page_range(p)], img[page_range(p)], "page {p}");
        }
        // Runs across the gap's edges: one request per run of data pages.
        let (first_gap, last_gap) = (gap.start.div_ceil(PAGE_BYTES), gap.end / PAGE_BYTES - 1);
        for run in [1..first_gap + 2, last_gap - 1..PAGES, 0..PAGES] {
            buf[run.start * PAGE_BYTES..run.end * PAGE_BYTES].fill(0x55);
            ff.read_pages_from(Source { slot: 2, base: None }, id, run.clone(), Known { crcs: &crcs, gap: &gap }, &mut buf, Via::Direct).unwrap();
            assert!(buf[run.start * PAGE_BYTES..run.end * PAGE_BYTES] == img[run.start * PAGE_BYTES..run.end * PAGE_BYTES], "{run:?}");
        }
        assert!(matches!(ff.read_head(2, FrameId(8), sealed.crc, &mut buf, Via::Direct), Err(Error::Corrupted { .. })), "another frame's slot");
        let mut whole = ImageBuf::zeroed();
        ff.read_slot_into(2, id, sealed.crc, &mut whole, Via::Direct).unwrap();
        assert!(whole[..] == img[..]);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_paged_slot_fails_the_read_that_covers_it() {
        let id = FrameId(4);
        let (vfs, ff, img, sealed) = written(0x9aa0, 0, id);
        let gap = free_gap(&img);
        let raw = vfs.open(Path::new("/s/frames.dat"), false).unwrap();
        // Bits in the used part of the page checksums, the header page, a
        // data page, a slot-table page (gap pages are not read: a flip
        // there changes nothing a reader sees).
        for at in [17, PAGE_TABLE_BYTES + 40, PAGE_TABLE_BYTES + 3 * PAGE_BYTES + 7, PAGE_TABLE_BYTES + FRAME_BYTES - 5] {
            let at = ff.slot_offset(0) + at as u64;
            let mut byte = [0u8];
            raw.read_at(&mut byte, at).unwrap();
            raw.write_at(&[byte[0] ^ 0x10], at).unwrap();
            let mut buf = ImageBuf::zeroed();
            let whole = ff.read_slot_into(0, id, sealed.crc, &mut buf, Via::PageCache);
            assert!(matches!(whole, Err(Error::Corrupted { .. })), "whole read by parts, flip at {at}");
            let at_once = ff.read_slot_into(0, id, sealed.crc, &mut buf, Via::Direct);
            assert!(matches!(at_once, Err(Error::Corrupted { .. })), "whole read at once, flip at {at}");
            let paged = ff.read_head(0, id, sealed.crc, &mut buf, Via::PageCache).and_then(|crcs| {
                ff.read_pages_from(Source { slot: 0, base: None }, id, 1..PAGES, Known { crcs: &crcs, gap: &gap }, &mut buf, Via::PageCache)
            });
            assert!(matches!(paged, Err(Error::Corrupted { .. })), "paged read, flip at {at}");
            raw.write_at(&byte, at).unwrap();
        }
    }

    #[test]
    fn a_whole_slot_read_at_once_or_by_parts_zeroes_whatever_its_gap_holds() {
        for format in [SlotFormat::Paged, SlotFormat::Whole] {
            let (vfs, ff) = temp_file(format);
            let id = FrameId(6);
            let mut img = sample_image(&mut crate::store::splitmix::SplitMix64::new(0x9aa2));
            let sealed = ff.seal(id, &mut img);
            ff.write_slot(3, &img, &sealed, &[gap_blocks(&img)]).unwrap();
            // What a file system without holes, or a lost punch, leaves there.
            let gap = free_gap(&img);
            let raw = vfs.open(Path::new("/s/frames.dat"), false).unwrap();
            let image_at = ff.slot_offset(3) + format.image_at();
            raw.write_at(&vec![0xA5; gap.len()], image_at + gap.start as u64).unwrap();
            for via in [Via::Direct, Via::PageCache] {
                let mut buf = ImageBuf::zeroed();
                buf.fill(0x5A);
                let read = ff.read_slot_into(3, id, sealed.crc, &mut buf, via).unwrap();
                assert!(buf[..] == img[..], "{format:?} {via:?}");
                assert_eq!(read, ff.bytes_outside_gap(&gap), "{format:?} {via:?}: the same bytes either way");
            }
        }
    }

    #[test]
    fn a_version_1_file_is_read_and_written_whole() {
        let mut rng = crate::store::splitmix::SplitMix64::new(0x9aa1);
        let (vfs, ff) = temp_file(SlotFormat::Whole);
        let mut img = sample_image(&mut rng);
        let sealed = ff.seal(FrameId(3), &mut img);
        assert!(sealed.table.is_none());
        ff.write_slot(1, &img, &sealed, &[gap_blocks(&img)]).unwrap();
        assert_eq!(ff.slots_in_file().unwrap(), 2);
        assert_eq!(sealed.crc, frame_crc(FrameId(3), &img));
        let (ff, store_id) = FrameFile::open(&*vfs, Path::new("/s/frames.dat")).unwrap();
        assert_eq!((store_id, ff.format()), (1, SlotFormat::Whole));
        let mut buf = ImageBuf::zeroed();
        ff.read_slot_into(1, FrameId(3), sealed.crc, &mut buf, Via::Direct).unwrap();
        assert!(buf[..] == img[..]);
    }
}
