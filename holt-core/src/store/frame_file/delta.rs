//! Delta slots: an image stored as the pages that differ from a base
//! image in another slot.
//!
//! A delta slot is a paged slot whose block of page checksums holds the
//! checksums of the whole (logical) image, exactly as a whole image's
//! does; of its image area only the pages the manifest entry names
//! (`manifest::Base::pages`; page 0 always) are written, each at its own
//! offset. Every other page is read from the base slot, which holds a
//! whole image of the same frame. The entry's checksum covers the frame id
//! and the page checksums, the manifest's the page mask, and each page,
//! wherever it is read from, is checked against its checksum: a page left
//! out of the mask, a base holding another image, or a stale delta block
//! fails (`Error::Corrupted`), never returns wrong bytes.
//!
//! Invariants:
//! - Page 0 (the header, which names the free gap) is always in the delta.
//! - Pages inside the logical image's free gap are zeros, read from
//!   nowhere.

use std::ops::Range;

use super::{page_in_gap, page_range, FrameFile, Known, PageCrcs, Sealed, SlotFormat, PAGES, PAGE_BYTES};
use crate::error::Result;
use crate::ids::FrameId;
use crate::layout::free_gap;
use crate::store::image_buf::{ImageBuf, Via};
use crate::store::manifest::SlotRef;

/// Pages of an image, bit `p` for page `p`.
pub(crate) type PageMask = u128;

/// Where the pages of a frame's image are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// The slot the manifest names (a whole image or a delta).
    pub slot: u32,
    /// For a delta: the base slot and the pages the delta holds.
    pub base: Option<(u32, PageMask)>,
}

impl From<&SlotRef> for Source {
    fn from(r: &SlotRef) -> Source {
        Source { slot: r.slot, base: r.base.map(|b| (b.slot, b.pages)) }
    }
}

impl Source {
    /// The slot page `p` is read from.
    fn slot_of(&self, p: usize) -> u32 {
        match self.base {
            Some((base, mask)) if !masked(mask, p) => base,
            _ => self.slot,
        }
    }
}

/// Whether page `p` is in `mask`.
pub(crate) fn masked(mask: PageMask, p: usize) -> bool {
    mask >> p & 1 == 1
}

impl FrameFile {
    /// Write the pages of `mask` (page 0 among them) of the sealed image
    /// `bytes` into `slot`, with its block of checksums in front: the block
    /// and the run of pages from 0 in one request, every other run of
    /// masked pages in one more each. The rest of the slot is left as it
    /// is: never read.
    pub(crate) fn write_delta(&self, slot: u32, bytes: &[u8], sealed: &Sealed, mask: PageMask) -> Result<()> {
        assert_eq!(self.format, SlotFormat::Paged, "a delta lives in a paged file");
        assert!(masked(mask, 0), "page 0 is always in a delta");
        let table = sealed.table.as_deref().expect("a paged seal has a block of checksums");
        let gap = free_gap(bytes);
        debug_assert!((0..PAGES).all(|p| !masked(mask, p) || !page_in_gap(p, &gap)), "a masked page in the gap");
        let mut runs = mask_runs(mask).into_iter();
        let first = runs.next().expect("page 0 is always in a delta");
        debug_assert_eq!(first.start, 0);
        let head = &bytes[first.start * PAGE_BYTES..first.end * PAGE_BYTES];
        let at = self.slot_offset(slot);
        self.file.write_all_vectored_at(&[&table[..], head], at).map_err(|e| self.io_err("write", e))?;
        for run in runs {
            let image = &bytes[run.start * PAGE_BYTES..run.end * PAGE_BYTES];
            self.file.write_at(image, self.image_offset(slot) + (run.start * PAGE_BYTES) as u64).map_err(|e| self.io_err("write", e))?;
        }
        if masked(mask, PAGES - 1) {
            Ok(())
        } else {
            self.span_slot(slot)
        }
    }

    /// Read the whole image of a delta (`src`, with its head already in
    /// `buf` from `read_head` of its slot) into `buf`: each run of pages outside
    /// the free gap from the slot that holds it, every page checked, the gap
    /// zeroed. Returns the bytes read.
    pub(crate) fn read_delta_rest(&self, src: Source, id: FrameId, crcs: &PageCrcs, buf: &mut ImageBuf, via: Via) -> Result<u64> {
        let gap = free_gap(buf);
        self.read_pages_from(src, id, 1..PAGES, Known { crcs, gap: &gap }, buf, via)?;
        let pages = 1 + (1..PAGES).filter(|&p| !page_in_gap(p, &gap)).count();
        Ok((super::PAGE_TABLE_BYTES + pages * PAGE_BYTES) as u64)
    }

    /// Read `pages` of the image `src` names into the same pages of `buf`
    /// and check each against its checksum. Pages inside the image's free
    /// gap are zeros, not read: the disk may hold a hole or stale bytes
    /// there; the others are read in one request per run, cut where the
    /// slot that holds them changes.
    pub(crate) fn read_pages_from(&self, src: Source, id: FrameId, pages: Range<usize>, known: Known<'_>, buf: &mut ImageBuf, via: Via) -> Result<()> {
        assert_eq!(self.format, SlotFormat::Paged, "only a paged slot is read a page at a time");
        let Known { crcs, gap } = known;
        let mut p = pages.start;
        while p < pages.end {
            if page_in_gap(p, gap) {
                buf[page_range(p)].fill(0);
                p += 1;
                continue;
            }
            let slot = src.slot_of(p);
            let run_end = (p..pages.end).find(|&q| page_in_gap(q, gap) || src.slot_of(q) != slot).unwrap_or(pages.end);
            self.read_range(slot, id, buf, p * PAGE_BYTES..run_end * PAGE_BYTES, via)?;
            p = run_end;
        }
        pages.into_iter().try_for_each(|p| self.check_page(src.slot_of(p), id, p, &buf[page_range(p)], gap, crcs[p]))
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
    use super::super::tests::{sample_image, written};
    use crate::error::Error;
    use super::*;

    /// `img` with the bytes of the used pages in `pages` changed.
    fn changed(img: &[u8], pages: &[usize], seed: u8) -> Vec<u8> {
        let mut next = img.to_vec();
        for &p in pages {
            next[page_range(p)].iter_mut().skip(64).step_by(97).for_each(|b| *b ^= seed | 1);
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
        ff.write_delta(5, &img, &sealed, mask).unwrap();
        let src = Source { slot: 5, base: Some((2, mask)) };
        let mut buf = ImageBuf::zeroed();
        let crcs = ff.read_head(5, id, sealed.crc, &mut buf, Via::Direct).unwrap();
        ff.read_delta_rest(src, id, &crcs, &mut buf, Via::PageCache).unwrap();
        assert!(buf[..] == img[..], "whole image");
        let gap = free_gap(&img);
        for p in 1..PAGES {
            buf[page_range(p)].fill(0x55);
            ff.read_pages_from(src, id, p..p + 1, Known { crcs: &crcs, gap: &gap }, &mut buf, Via::Direct).unwrap();
            assert_eq!(buf[page_range(p)], img[page_range(p)], "page {p}");
        }
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
        let src = Source { slot: 5, base: Some((2, mask)) };
        let page3 = ff.image_offset(2) + 3 * PAGE_BYTES as u64;
        assert!(matches!(ff.read_delta_rest(src, id, &crcs, &mut buf, Via::Direct), Err(Error::Corrupted { offset, .. }) if offset == page3));
        // A base holding another image: its first page that differs fails.
        let mut other = sample_image(&mut crate::store::splitmix::SplitMix64::new(77));
        let other_sealed = ff.seal(FrameId(10), &mut other);
        ff.write_slot(7, &other, &other_sealed, &[]).unwrap();
        let src = Source { slot: 5, base: Some((7, mask)) };
        assert!(matches!(ff.read_delta_rest(src, id, &crcs, &mut buf, Via::Direct), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn mask_runs_cover_the_mask() {
        assert_eq!(mask_runs(1 | 1 << 2 | 1 << 3 | 1 << 127), vec![0..1, 2..4, 127..128]);
        assert_eq!(mask_runs(PageMask::MAX), vec![0..PAGES]);
        assert!(mask_runs(0).is_empty());
    }
}
