//! What of the frame file's slots is a hole, and which free slots are
//! kept unpunched for the images that follow.
//!
//! A punch is a synchronous discard of ~0.5 ms on a file system mounted
//! with `discard`, and a tree larger than the cache frees a scattered slot
//! for most images it writes (a write-out's earlier image, a checkpoint's
//! superseded ones) only to fill as many again in the next cycle. So free
//! slots are kept as they are, as many as the last cycle wrote images
//! (single slots first: a run of adjacent ones costs one punch whatever
//! its length), and an image goes into the kept slot whose hole already
//! covers most of its free gap (images' gaps are punched or never
//! written, so a slot's last image left its gap a hole; of a slot written
//! before this open, the file system says where its hole is when it is
//! freed): often nothing is left to punch (benches/RESULTS.md run 49). A
//! checkpoint a caller waits for gives them back
//! (`FrameStore::give_back_kept`).
//!
//! Only disk space depends on any of this: the bytes of an image's free
//! gap are never read from the disk (`FrameFile::write_slot`), so a gap
//! left holding an earlier image's bytes reads as zeros all the same.
//! Guarded by the checkpoint mutex, like every write, punch and
//! truncation of slots.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use crate::layout::FRAME_BYTES;

/// Free slots kept unpunched: as many as images were written between
/// the last two commits (the file held both those images and the ones
/// they superseded just before the last commit: kept, the superseded
/// slots keep it at that size, no larger), and at least one in
/// `KEPT_SHARE` of the live frames.
const KEPT_SHARE: usize = 16;

/// How many kept slots an image's slot is chosen among: a checkpoint of
/// a tree of 10^8 keys keeps tens of thousands, and a search of them all
/// for each image would cost their square; a search of 64 punched 15%
/// more than a full one in the capped cell (benches/RESULTS.md run 49).
const KEPT_SEARCH: usize = 1024;

/// Less of an image's gap than this left to punch is left as it is: the
/// slot then holds up to this many bytes of an earlier image where the
/// new one has its gap, against a discard saved.
pub(super) const LEAST_PUNCH: usize = 32 << 10;

/// What of each slot is known to be a hole, and the free slots kept.
pub(super) struct Holes {
    /// Free slots punched whole since they were last written.
    pub(super) punched: BTreeSet<u32>,
    /// No write since open reached this slot or any after it.
    pub(super) written_end: u32,
    /// Slots written since open: the part of the image (offsets in it,
    /// whole blocks) their last write left a hole.
    gaps: HashMap<u32, Range<u32>>,
    /// Free slots whose space is kept for the images that follow rather
    /// than punched (`FrameStore::release_slots`). Handed out before any
    /// other free slot, and given back by `FrameStore::give_back_kept`.
    /// Invariant: each is free in the published mapping.
    pub(super) kept: BTreeSet<u32>,
    /// Images written into slots since the last commit.
    written_since_commit: usize,
    /// Images written into slots between the last two commits.
    written_last_cycle: usize,
}

/// What writing an image into a slot punches, and what of the image is
/// a hole after it.
#[derive(Debug, PartialEq)]
pub(super) struct Plan {
    pub(super) punch: Vec<Range<usize>>,
    pub(super) hole_after: Range<usize>,
}

impl Holes {
    pub(super) fn new(written_end: u32) -> Holes {
        let (gaps, kept) = (HashMap::new(), BTreeSet::new());
        Holes { punched: BTreeSet::new(), written_end, gaps, kept, written_since_commit: 0, written_last_cycle: 0 }
    }

    /// How many free slots may be kept unpunched beside `live` frames
    /// (`KEPT_SHARE`): writes since the last commit count too, so that a
    /// re-staged image's slot is kept while its cycle runs.
    pub(super) fn kept_cap(&self, live: usize) -> usize {
        (live / KEPT_SHARE).max(self.written_last_cycle).max(self.written_since_commit)
    }

    /// A commit published: the writes since the last one are the last
    /// cycle's.
    pub(super) fn committed(&mut self) {
        self.written_last_cycle = std::mem::take(&mut self.written_since_commit);
    }

    /// The part of `slot`'s image known to be a hole, if what of it is a
    /// hole is known at all (written or punched since open, or learnt).
    fn known_hole(&self, slot: u32) -> Option<Range<usize>> {
        if slot >= self.written_end || self.punched.contains(&slot) {
            return Some(0..FRAME_BYTES);
        }
        self.gaps.get(&slot).map(|g| g.start as usize..g.end as usize)
    }

    /// The part of `slot`'s image known to be a hole (empty if unknown).
    fn hole_of(&self, slot: u32) -> Range<usize> {
        self.known_hole(slot).unwrap_or(0..0)
    }

    /// Whether what of `slot` is a hole is known.
    pub(super) fn knows(&self, slot: u32) -> bool {
        self.known_hole(slot).is_some()
    }

    /// What to punch writing an image whose free gap's whole blocks are
    /// `gap` into `slot`: the parts of `gap` not a hole yet, unless they
    /// come to less than `LEAST_PUNCH`.
    pub(super) fn plan(&self, slot: u32, gap: &Range<usize>) -> Plan {
        let hole = self.hole_of(slot);
        let missing = minus(gap, &hole);
        match missing.iter().map(Range::len).sum::<usize>() >= LEAST_PUNCH {
            true => Plan { punch: missing, hole_after: gap.clone() },
            false => Plan { punch: Vec::new(), hole_after: within(gap, &hole) },
        }
    }

    /// `slot` is being written: nothing of it is known to be a hole until
    /// `hole_is` says what is.
    pub(super) fn writing(&mut self, slot: u32) {
        self.punched.remove(&slot);
        self.kept.remove(&slot);
        self.gaps.remove(&slot);
        self.written_end = self.written_end.max(slot + 1);
        self.written_since_commit += 1;
    }

    /// `hole` of the image in `slot` is a hole: its last write left it
    /// one, or the file system says so of a slot written before this
    /// open (`FrameFile::image_hole`).
    pub(super) fn hole_is(&mut self, slot: u32, hole: Range<usize>) {
        if !hole.is_empty() {
            self.gaps.insert(slot, hole.start as u32..hole.end as u32);
        }
    }

    /// The run of slots `run` was punched whole.
    pub(super) fn punched_whole(&mut self, run: Range<u32>) {
        for slot in run {
            self.kept.remove(&slot);
            self.gaps.remove(&slot);
            self.punched.insert(slot);
        }
    }

    /// Of the lowest `KEPT_SEARCH` kept slots, the one that leaves the
    /// least of `gap` to punch (the lowest of equals), no longer kept.
    pub(super) fn take_kept(&mut self, gap: &Range<usize>) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        for &slot in self.kept.iter().take(KEPT_SEARCH) {
            let left = minus(gap, &self.hole_of(slot)).iter().map(Range::len).sum();
            if best.is_none_or(|(b, _)| left < b) {
                best = Some((left, slot));
            }
            if left == 0 {
                break;
            }
        }
        let (_, slot) = best?;
        self.kept.remove(&slot);
        Some(slot)
    }

    pub(super) fn truncated(&mut self, slots: u32) {
        self.written_end = self.written_end.min(slots);
        self.punched.retain(|&s| s < slots);
        self.kept.retain(|&s| s < slots);
        self.gaps.retain(|&s, _| s < slots);
    }
}

/// The part of `a` inside `b` (empty if none).
fn within(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let (start, end) = (a.start.max(b.start), a.end.min(b.end));
    if start < end { start..end } else { 0..0 }
}

/// The parts of `a` outside `b`: none, one or two ranges.
fn minus(a: &Range<usize>, b: &Range<usize>) -> Vec<Range<usize>> {
    if b.is_empty() || b.end <= a.start || b.start >= a.end {
        return if a.is_empty() { Vec::new() } else { vec![a.clone()] };
    }
    [a.start..b.start.min(a.end), b.end.max(a.start)..a.end].into_iter().filter(|r| !r.is_empty()).collect()
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init, reason = "lists of ranges that hold one")]
mod tests {
    use super::*;

    const K: usize = 4096;

    #[test]
    fn minus_leaves_the_parts_outside() {
        assert_eq!(minus(&(10..20), &(0..5)), [10..20]);
        assert_eq!(minus(&(10..20), &(12..15)), [10..12, 15..20]);
        assert_eq!(minus(&(10..20), &(5..15)), [15..20]);
        assert_eq!(minus(&(10..20), &(15..25)), [10..15]);
        assert_eq!(minus(&(10..20), &(0..30)), Vec::<Range<usize>>::new());
        assert_eq!(minus(&(10..10), &(0..5)), Vec::<Range<usize>>::new());
        assert_eq!(minus(&(10..20), &(0..0)), [10..20]);
    }

    /// A write punches what of its gap is not a hole yet, unless that is
    /// under `LEAST_PUNCH`; either way what it records as a hole is one.
    #[test]
    fn a_write_punches_only_what_of_its_gap_is_not_a_hole_yet() {
        let mut h = Holes::new(10);
        let gap = 64 * K..100 * K;
        assert_eq!(h.plan(12, &gap), Plan { punch: vec![], hole_after: gap.clone() }, "never written: a hole");
        assert_eq!(h.plan(3, &gap), Plan { punch: vec![gap.clone()], hole_after: gap.clone() }, "unknown: punch it all");
        h.writing(3);
        h.hole_is(3, 60 * K..90 * K);
        // 10 blocks left: punched.
        assert_eq!(h.plan(3, &gap), Plan { punch: vec![90 * K..100 * K], hole_after: gap.clone() });
        // 4 blocks left: kept as they are; only the covered part is a hole.
        assert_eq!(h.plan(3, &(56 * K..90 * K)), Plan { punch: vec![], hole_after: 60 * K..90 * K });
        assert_eq!(h.plan(3, &(70 * K..80 * K)).punch, Vec::<Range<usize>>::new());
        // Disjoint and small: nothing of the gap is a hole after.
        assert!(h.plan(3, &(0..4 * K)).hole_after.is_empty());
        h.punched_whole(3..4);
        assert_eq!(h.plan(3, &gap).punch, Vec::<Range<usize>>::new(), "punched whole");
    }

    #[test]
    fn an_image_chooses_among_the_lowest_kept_slots_only() {
        let (past, within) = (KEPT_SEARCH as u32, KEPT_SEARCH as u32 / 2);
        let mut h = Holes::new(past + 10);
        for slot in 0..=past {
            h.writing(slot);
            h.kept.insert(slot);
        }
        h.punched_whole(past..past + 1);
        h.kept.insert(past);
        assert_eq!(h.take_kept(&(64 * K..100 * K)), Some(0), "slot {past} would cover it, but lies past the search");
        h.punched_whole(within..within + 1);
        h.kept.insert(within);
        assert_eq!(h.take_kept(&(64 * K..100 * K)), Some(within), "covered within the search");
    }

    #[test]
    fn the_kept_slot_taken_is_the_one_that_leaves_least_to_punch() {
        let mut h = Holes::new(10);
        for (slot, hole) in [(1, 80 * K..100 * K), (2, 40 * K..120 * K), (3, 50 * K..110 * K)] {
            h.writing(slot);
            h.hole_is(slot, hole);
            h.kept.insert(slot);
        }
        assert_eq!(h.take_kept(&(60 * K..100 * K)), Some(2), "covered by 2 and 3: the lowest");
        assert_eq!(h.take_kept(&(30 * K..100 * K)), Some(3), "20 blocks left against 50");
        assert_eq!(h.take_kept(&(0..0)), Some(1));
        assert_eq!(h.take_kept(&(0..0)), None);
    }
}
