//! Delta slots: an image stored as the pages that differ from a base
//! image in another slot.
//!
//! A delta slot is a paged slot whose block of page checksums holds the
//! checksums of the whole (logical) image, exactly as a whole image's
//! does; after it come only the pages the manifest entry names
//! (`manifest::Base::pages`; page 0 always), packed in ascending order
//! (`Base::packed`), or, in deltas written by version 2 manifests' builds,
//! each at its own offset. Every other page is read from the base slot,
//! which holds a whole image of the same frame. The entry's checksum
//! covers the frame id and the page checksums, the manifest's the page
//! mask, and each page, wherever it is read from, is checked against its
//! checksum: a page left out of the mask, a base holding another image, or
//! a stale delta block fails (`Error::Corrupted`), never returns wrong
//! bytes.
//!
//! Packed, a delta is one write (the block and its pages) and, read whole,
//! two requests (the base's pages, then the delta's block and pages)
//! however its pages scatter over the image: each request
//! costs a device round trip (~25 µs here) for the first byte and
//! little for the next, so it is the requests that are counted.
//!
//! Invariants:
//! - Page 0 (the header, which names the free gap) is always in the delta,
//!   first: its head read is a whole image's.
//! - Pages inside the logical image's free gap are zeros, read from
//!   nowhere.

use std::ops::Range;

use super::{page_in_gap, page_range, FrameFile, Known, PageCrcs, Sealed, SlotFormat, PAGES, PAGE_BYTES};
use crate::error::Result;
use crate::ids::FrameId;
use crate::layout::free_gap;
use crate::store::image_buf::{ImageBuf, Via};
use crate::store::manifest::{Base, SlotRef};

/// Pages of an image, bit `p` for page `p`.
pub(crate) type PageMask = u128;

/// Where a page of an image lies: a slot, and the page of that slot's
/// image area.
pub(super) type Place = (u32, usize);

/// Where the pages of a frame's image are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// The slot the manifest names (a whole image or a delta).
    pub slot: u32,
    /// For a delta: its base and the pages the delta holds.
    pub base: Option<Base>,
}

impl From<&SlotRef> for Source {
    fn from(r: &SlotRef) -> Source {
        Source { slot: r.slot, base: r.base }
    }
}

impl Source {
    /// Where image page `p` is read from.
    pub(super) fn place(&self, p: usize) -> Place {
        match self.base {
            Some(b) if !masked(b.pages, p) => (b.slot, p),
            Some(b) if b.packed => (self.slot, rank(b.pages, p)),
            _ => (self.slot, p),
        }
    }

    /// Whether image page `q` lies right after image page `p`'s place.
    fn follows(&self, p: usize, q: usize) -> bool {
        let (slot, at) = self.place(p);
        self.place(q) == (slot, at + 1)
    }
}

/// Whether page `p` is in `mask`.
pub(crate) fn masked(mask: PageMask, p: usize) -> bool {
    mask >> p & 1 == 1
}

/// How many pages of `mask` come before page `p`.
fn rank(mask: PageMask, p: usize) -> usize {
    (mask & ((1u128 << p) - 1)).count_ones() as usize
}

impl FrameFile {
    /// Write the pages of `mask` (page 0 among them) of the sealed image
    /// `bytes` into `slot`, packed behind its block of checksums, in one
    /// request. The rest of the slot is left as it is: never read.
    pub(crate) fn write_delta(&self, slot: u32, bytes: &[u8], sealed: &Sealed, mask: PageMask) -> Result<()> {
        assert_eq!(self.format, SlotFormat::Paged, "a delta lives in a paged file");
        assert!(masked(mask, 0), "page 0 is always in a delta");
        let table = sealed.table.as_deref().expect("a paged seal has a block of checksums");
        let gap = free_gap(bytes);
        debug_assert!((0..PAGES).all(|p| !masked(mask, p) || !page_in_gap(p, &gap)), "a masked page in the gap");
        let mut parts: Vec<&[u8]> = vec![&table[..]];
        parts.extend(mask_runs(mask).into_iter().map(|r| &bytes[r.start * PAGE_BYTES..r.end * PAGE_BYTES]));
        self.file.write_all_vectored_at(&parts, self.slot_offset(slot)).map_err(|e| self.io_err("write", e))?;
        if mask == PageMask::MAX {
            Ok(())
        } else {
            self.span_slot(slot)
        }
    }

    /// Read the whole image of the delta `src` into `buf`, checked
    /// against the manifest's `crc_expected` for `id`. Packed, in two
    /// requests: the base's pages up to the last the delta does not hold
    /// (the free gap's among them: a hole the disk does not read, zeroed
    /// here), then the delta's block and pages, each page into its place,
    /// over them. In place, the head first, then `read_delta_rest`.
    /// Returns the bytes read.
    pub(crate) fn read_delta(&self, src: Source, id: FrameId, crc_expected: u32, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        let base = src.base.expect("a delta has a base");
        if !base.packed {
            let crcs = self.read_head(src.slot, id, crc_expected, buf, via)?;
            return self.read_delta_rest(src, id, &crcs, buf, via);
        }
        let last = (1..PAGES).rev().find(|&p| !masked(base.pages, p));
        if let Some(last) = last {
            self.read_range(base.slot, id, buf, PAGE_BYTES..(last + 1) * PAGE_BYTES, via)?;
        }
        let (front, image) = buf.with_front().split_at_mut(super::PAGE_TABLE_BYTES);
        let mut into: Vec<&mut [u8]> = vec![front];
        into.extend(image.chunks_mut(PAGE_BYTES).enumerate().filter(|(p, _)| masked(base.pages, *p)).map(|(_, page)| page));
        self.read_exact(src.slot, id, &mut into, self.slot_offset(src.slot), via)?;
        let crcs = self.check_head(src.slot, id, crc_expected, buf)?;
        let gap = free_gap(buf);
        buf[gap.clone()].fill(0);
        self.check_pages(src, id, 1..PAGES, Known { crcs: &crcs, gap: &gap }, buf)?;
        let from_base = last.map_or(0, |last| (1..=last).filter(|&p| !page_in_gap(p, &gap)).count());
        Ok((super::PAGE_TABLE_BYTES + (from_base + base.pages.count_ones() as usize) * PAGE_BYTES) as u64)
    }

    /// Read the whole image of a delta (`src`, with its head already in
    /// `buf` from `read_head` of its slot; `read_delta`'s way for a delta
    /// in place, which needs the head's free gap) into `buf`: the base's pages
    /// in one request from the first to the last it holds (the delta's
    /// pages among them read over next), the delta's other pages in one
    /// request a run of places, every page checked, the gap zeroed.
    /// Returns the bytes read.
    fn read_delta_rest(&self, src: Source, id: FrameId, crcs: &PageCrcs, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        let base = src.base.expect("a delta has a base");
        let gap = free_gap(buf);
        let used = |p: usize| !page_in_gap(p, &gap);
        let mut bytes = (super::PAGE_TABLE_BYTES + PAGE_BYTES) as u64;
        let from_base: Vec<usize> = (1..PAGES).filter(|&p| used(p) && !masked(base.pages, p)).collect();
        if let (Some(&first), Some(&last)) = (from_base.first(), from_base.last()) {
            self.read_range(base.slot, id, buf, first * PAGE_BYTES..(last + 1) * PAGE_BYTES, via)?;
            // The free gap's pages among them are holes the disk does not read.
            bytes += ((first..=last).filter(|&p| used(p)).count() * PAGE_BYTES) as u64;
        }
        let own: Vec<usize> = (1..PAGES).filter(|&p| used(p) && masked(base.pages, p)).collect();
        let mut pages: Vec<Option<&mut [u8]>> = buf.chunks_mut(PAGE_BYTES).map(Some).collect();
        for run in own.chunk_by(|&p, &q| src.follows(p, q)) {
            let mut into: Vec<&mut [u8]> = run.iter().map(|&p| pages[p].take().expect("each page once")).collect();
            self.read_exact(src.slot, id, &mut into, self.page_offset(src.place(run[0])), via)?;
            bytes += (run.len() * PAGE_BYTES) as u64;
        }
        buf[gap.clone()].fill(0);
        self.check_pages(src, id, 1..PAGES, Known { crcs, gap: &gap }, buf)?;
        Ok(bytes)
    }

    /// Read `pages` of the image `src` names into the same pages of `buf`
    /// and check each against its checksum. Pages inside the image's free
    /// gap are zeros, not read: the disk may hold a hole or stale bytes
    /// there; the others are read in one request per run of adjacent
    /// places.
    pub(crate) fn read_pages_from(&self, src: Source, id: FrameId, pages: Range<usize>, known: Known<'_>, buf: &mut ImageBuf, via: Via) -> Result<()> {
        assert_eq!(self.format, SlotFormat::Paged, "only a paged slot is read a page at a time");
        let gap = known.gap;
        let mut p = pages.start;
        while p < pages.end {
            if page_in_gap(p, gap) {
                buf[page_range(p)].fill(0);
                p += 1;
                continue;
            }
            let run_end = (p + 1..pages.end).find(|&q| page_in_gap(q, gap) || !src.follows(q - 1, q)).unwrap_or(pages.end);
            let at = self.page_offset(src.place(p));
            self.read_exact(src.place(p).0, id, &mut [&mut buf[p * PAGE_BYTES..run_end * PAGE_BYTES]], at, via)?;
            p = run_end;
        }
        self.check_pages(src, id, pages, known, buf)
    }

    /// Check `pages` of the image `src` names, in `buf`, against their
    /// checksums; an error names the place each was read from.
    fn check_pages(&self, src: Source, id: FrameId, pages: Range<usize>, known: Known<'_>, buf: &[u8]) -> Result<()> {
        let Known { crcs, gap } = known;
        pages.into_iter().try_for_each(|p| self.check_page(src.place(p), id, p, &buf[page_range(p)], gap, crcs[p]))
    }
}

impl FrameFile {
    /// A delta as builds writing version 2 manifests wrote it: each page
    /// at its own offset, one request a run, over a slot of zeros (so no
    /// bytes a packed delta left there can stand in for a page).
    #[cfg(test)]
    pub(crate) fn write_delta_in_place(&self, slot: u32, bytes: &[u8], sealed: &Sealed, mask: PageMask) {
        self.file.write_at(&vec![0; self.format.stride() as usize], self.slot_offset(slot)).unwrap();
        let table = sealed.table.as_deref().expect("a paged seal");
        let mut runs = mask_runs(mask).into_iter();
        let head = runs.next().expect("page 0");
        self.file.write_all_vectored_at(&[&table[..], &bytes[..head.end * PAGE_BYTES]], self.slot_offset(slot)).unwrap();
        for run in runs {
            let at = self.image_offset(slot) + (run.start * PAGE_BYTES) as u64;
            self.file.write_at(&bytes[run.start * PAGE_BYTES..run.end * PAGE_BYTES], at).unwrap();
        }
        self.span_slot(slot).unwrap();
    }
}

/// The runs of adjacent pages in `mask`, ascending.
fn mask_runs(mask: PageMask) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut p = 0;
    while p < PAGES {
        if !masked(mask, p) {
            p += 1;
            continue;
        }
        let end = (p..PAGES).find(|&q| !masked(mask, q)).unwrap_or(PAGES);
        runs.push(p..end);
        p = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::super::tests::{sample_image, written};
    use crate::error::Error;
    use crate::store::vfs::FileIo;
    use super::*;

    fn packed(slot: u32, mask: PageMask) -> Option<Base> {
        Some(Base { slot, pages: mask, packed: true })
    }

    /// The file under a frame file, counting the requests made of it.
    struct Counted {
        inner: Arc<dyn FileIo>,
        reads: AtomicUsize,
        writes: AtomicUsize,
    }

    impl FileIo for Counted {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_at(buf, offset)
        }
        fn read_vectored_at(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_vectored_at(bufs, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.inner.write_at(buf, offset)
        }
        fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.inner.write_all_vectored_at(bufs, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.inner.sync_data()
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
            self.inner.punch_hole(offset, len)
        }
    }

    /// `img` with bytes of the used pages in `pages` changed (its free
    /// gap stays zeros, as every image's).
    fn changed(img: &[u8], pages: &[usize], seed: u8) -> Vec<u8> {
        let mut next = img.to_vec();
        let gap = free_gap(img);
        for &p in pages {
            let bytes = page_range(p).skip(64).step_by(97).filter(|b| !gap.contains(b));
            bytes.for_each(|b| next[b] ^= seed | 1);
        }
        next
    }

    #[test]
    fn a_delta_reads_back_as_its_whole_image_and_by_pages() {
        let id = FrameId(9);
        let (_vfs, ff, base_img, _) = written(0xde17a, 2, id);
        let mut img = changed(&base_img, &[0, 3, 4, 127], 0x5a);
        let sealed = ff.seal(id, &mut img);
        let mask = 1 | 1 << 3 | 1 << 4 | 1 << 127;
        // Packed (what this build writes) in slot 5, in place (version 2
        // manifests) in slot 6.
        ff.write_delta(5, &img, &sealed, mask).unwrap();
        ff.write_delta_in_place(6, &img, &sealed, mask);
        for src in [Source { slot: 5, base: packed(2, mask) }, Source { slot: 6, base: Some(Base { slot: 2, pages: mask, packed: false }) }] {
            let mut buf = ImageBuf::zeroed();
            ff.read_delta(src, id, sealed.crc, &mut buf, Via::Direct).unwrap();
            assert!(buf[..] == img[..], "whole image at once, {src:?}");
            let mut buf = ImageBuf::zeroed();
            let crcs = ff.read_head(src.slot, id, sealed.crc, &mut buf, Via::Direct).unwrap();
            ff.read_delta_rest(src, id, &crcs, &mut buf, Via::PageCache).unwrap();
            assert!(buf[..] == img[..], "whole image after its head, {src:?}");
            let gap = free_gap(&img);
            for p in 1..PAGES {
                buf[page_range(p)].fill(0x55);
                ff.read_pages_from(src, id, p..p + 1, Known { crcs: &crcs, gap: &gap }, &mut buf, Via::Direct).unwrap();
                assert_eq!(buf[page_range(p)], img[page_range(p)], "page {p}, {src:?}");
            }
            // Runs of pages that cross from the delta to the base and back.
            for run in [1..6, 2..5, 4..PAGES] {
                buf[run.start * PAGE_BYTES..run.end * PAGE_BYTES].fill(0x55);
                ff.read_pages_from(src, id, run.clone(), Known { crcs: &crcs, gap: &gap }, &mut buf, Via::Direct).unwrap();
                assert!(buf[run.start * PAGE_BYTES..run.end * PAGE_BYTES] == img[run.start * PAGE_BYTES..run.end * PAGE_BYTES], "{run:?}, {src:?}");
            }
        }
    }

    #[test]
    fn a_packed_delta_is_one_write_and_two_reads_however_its_pages_scatter() {
        let id = FrameId(9);
        let (_vfs, mut ff, base_img, _) = written(0xde17c, 2, id);
        let counted = Arc::new(Counted { inner: Arc::clone(&ff.file), reads: AtomicUsize::new(0), writes: AtomicUsize::new(0) });
        ff.file = counted.clone();
        ff.direct = None;
        let pages = [0, 2, 4, 127];
        let mut img = changed(&base_img, &pages, 0x33);
        let sealed = ff.seal(id, &mut img);
        let mask = pages.iter().fold(0, |m, &p| m | 1 << p);
        ff.write_delta(5, &img, &sealed, mask).unwrap();
        assert_eq!(counted.writes.load(Ordering::Relaxed), 1, "the block and every page in one request");
        let mut buf = ImageBuf::zeroed();
        ff.read_delta(Source { slot: 5, base: packed(2, mask) }, id, sealed.crc, &mut buf, Via::PageCache).unwrap();
        assert!(buf[..] == img[..]);
        assert_eq!(counted.reads.load(Ordering::Relaxed), 2, "the base's pages, the delta's");
        // In place: the head, the base's pages, and each run of the delta's.
        ff.write_delta_in_place(6, &img, &sealed, mask);
        counted.reads.store(0, Ordering::Relaxed);
        let mut buf = ImageBuf::zeroed();
        ff.read_delta(Source { slot: 6, base: Some(Base { slot: 2, pages: mask, packed: false }) }, id, sealed.crc, &mut buf, Via::PageCache).unwrap();
        assert!(buf[..] == img[..]);
        assert_eq!(counted.reads.load(Ordering::Relaxed), 5, "head, the base's pages, the delta's three runs");
    }

    #[test]
    fn a_page_left_out_of_the_mask_or_a_wrong_base_is_corrupted_never_returned() {
        let id = FrameId(9);
        let (_vfs, ff, base_img, _) = written(0xde17b, 2, id);
        // Page 3 changed but not masked: read from the base, it fails its checksum.
        let mut img = changed(&base_img, &[0, 3], 0x21);
        let (sealed, mask) = (ff.seal(id, &mut img), 1);
        ff.write_delta(5, &img, &sealed, mask).unwrap();
        let mut buf = ImageBuf::zeroed();
        let crcs = ff.read_head(5, id, sealed.crc, &mut buf, Via::Direct).unwrap();
        let src = Source { slot: 5, base: packed(2, mask) };
        let page3 = ff.image_offset(2) + 3 * PAGE_BYTES as u64;
        assert!(matches!(ff.read_delta_rest(src, id, &crcs, &mut buf, Via::Direct), Err(Error::Corrupted { offset, .. }) if offset == page3));
        // A base holding another image: its first page that differs fails.
        let mut other = sample_image(&mut crate::store::splitmix::SplitMix64::new(77));
        let other_sealed = ff.seal(FrameId(10), &mut other);
        ff.write_slot(7, &other, &other_sealed, &[]).unwrap();
        let src = Source { slot: 5, base: packed(7, mask) };
        assert!(matches!(ff.read_delta_rest(src, id, &crcs, &mut buf, Via::Direct), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn mask_runs_cover_the_mask() {
        assert_eq!(mask_runs(1 | 1 << 2 | 1 << 3 | 1 << 127), vec![0..1, 2..4, 127..128]);
        assert_eq!(mask_runs(PageMask::MAX), vec![0..PAGES]);
        assert!(mask_runs(0).is_empty());
    }
}
