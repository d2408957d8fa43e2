//! `RangeCursor`: a range scan that lends each entry's bytes.
//!
//! The cursor never holds a latch between calls. It asks the engine for a
//! chunk of entries at or after a lower bound (`Hits`: every key and
//! value copied once into one reused buffer), lends them one by one, then
//! moves the bound past the last entry of the chunk: past the last key, or
//! past every key of the last group. Because every refill restarts from a
//! key rather than a position, a key present for the whole scan is lent
//! exactly once, and a group once, however the tree changes underneath;
//! each chunk is a consistent cut of the keys it covers. The rollup itself
//! happens in the tree walk (`tree::scan`), which steps over each group's
//! keys.

use std::sync::Arc;

use super::range::RangeEntryRef;
use super::tree::Handle;
use crate::engine::{HitRef, Hits, Scan, ScanScratch};
use crate::error::{Error, Result};

/// Entries fetched by a scan's first refill; each full refill doubles the
/// next up to `CHUNK_KEYS_MAX`. Every refill descends again to its lower
/// bound, so a long scan (a big directory) wants few of them, while a
/// short one (a typical directory) should not collect far ahead.
pub(crate) const CHUNK_KEYS_MIN: usize = 128;
const CHUNK_KEYS_MAX: usize = 2048;
/// Bytes of keys and values one chunk collects at most (past one entry):
/// the buffer stays in the CPU's cache between being filled and read, and
/// a scan's memory stays bounded whatever the values' size.
pub(crate) const CHUNK_BYTES_MAX: usize = 128 * 1024;

/// A range scan that lends every entry (key and value, or common prefix)
/// as slices of its own buffer, valid until the next call: no allocation
/// per entry. Made by [`RangeBuilder::cursor`](super::RangeBuilder::cursor);
/// yields exactly what the [`RangeIter`](super::RangeIter) of the same
/// builder would.
///
/// ```
/// # let tree = holt_core::TreeBuilder::new("doc").memory().open()?;
/// tree.put(b"d/a", b"1")?;
/// tree.put(b"d/b/c", b"2")?;
/// let mut cursor = tree.scan_prefix(b"d/").delimiter(b'/').cursor();
/// let mut names = Vec::new();
/// while let Some(entry) = cursor.next_entry()? {
///     names.push(entry.key().to_vec());
/// }
/// assert_eq!(names, [b"d/a".to_vec(), b"d/b/".to_vec()]);
/// # Ok::<(), holt_core::Error>(())
/// ```
pub struct RangeCursor {
    engine: Arc<Handle>,
    prefix: Vec<u8>,
    delimiter: Option<u8>,
    keys_only: bool,
    /// Inclusive lower bound of the next refill, unless `done`. A group is
    /// emitted only if its bytes are `>= lower`, so a `start_after` inside
    /// a group skips that group.
    lower: Vec<u8>,
    done: bool,
    hits: Hits,
    /// The next entry of `hits` to lend.
    pos: usize,
    /// Entries the next refill asks for.
    chunk_limit: usize,
    pub(crate) scratch: ScanScratch,
}

/// The buffers a cursor reuses from chunk to chunk.
type Buffers = (Hits, ScanScratch, Vec<u8>);

thread_local! {
    /// The buffers of the thread's last finished scan. A directory listing
    /// is one short scan: allocating its buffers afresh each time is a
    /// large allocation, which makes glibc consolidate every small chunk
    /// the previous listing freed (a tenth of list time).
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
    /// The prefix buffer of the thread's last finished scan: a listing's
    /// prefix is copied into it rather than into a new allocation.
    static SPARE_PREFIX: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

fn take_buffers() -> Buffers {
    SPARE.with(|s| s.take()).unwrap_or_default()
}

/// `prefix` in the thread's spare prefix buffer (a new one if there is
/// none), for a scan to own.
pub(crate) fn owned_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut v = SPARE_PREFIX.try_with(std::cell::Cell::take).unwrap_or_default();
    v.clear();
    v.extend_from_slice(prefix);
    v
}

impl Drop for RangeCursor {
    fn drop(&mut self) {
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let spare = (hits, std::mem::take(&mut self.scratch), std::mem::take(&mut self.lower));
        // `try_with`: a scan dropped while its thread exits just frees.
        let _ = SPARE.try_with(|s| s.set(Some(spare)));
        if self.prefix.capacity() > 0 {
            let _ = SPARE_PREFIX.try_with(|s| s.set(std::mem::take(&mut self.prefix)));
        }
    }
}

impl RangeCursor {
    pub(crate) fn new(engine: Arc<Handle>, prefix: Vec<u8>, start_after: Option<&[u8]>, delimiter: Option<u8>, keys_only: bool) -> Self {
        let (hits, scratch, mut lower) = take_buffers();
        lower.clear();
        match start_after {
            // Smallest key strictly greater than `after` is `after` + 0x00.
            Some(after) if after >= prefix.as_slice() => {
                lower.extend_from_slice(after);
                lower.push(0);
            }
            _ => lower.extend_from_slice(&prefix),
        }
        RangeCursor {
            engine,
            prefix,
            delimiter,
            keys_only,
            lower,
            done: false,
            hits,
            pos: 0,
            chunk_limit: CHUNK_KEYS_MIN,
            scratch,
        }
    }

    /// The next entry in key order, or `None` once the scan is over. After
    /// an error the scan is over.
    #[inline]
    pub fn next_entry(&mut self) -> Result<Option<RangeEntryRef<'_>>> {
        // Inlined into the caller's loop: all but one entry a chunk are
        // lent from the buffer without a call.
        if self.pos == self.hits.len() {
            self.refill_or_end()?;
            if self.hits.is_empty() {
                return Ok(None);
            }
        }
        let i = self.pos;
        self.pos += 1;
        Ok(Some(self.hits.get(i).into()))
    }

    /// `refill`, ending the scan on an error.
    #[inline(never)]
    fn refill_or_end(&mut self) -> Result<()> {
        let r = self.refill();
        if r.is_err() {
            self.done = true;
            self.hits.clear();
            self.pos = 0;
        }
        r
    }

    /// Collect the next chunk at or after `lower`; an empty one ends the
    /// scan.
    fn refill(&mut self) -> Result<()> {
        self.hits.clear();
        self.pos = 0;
        if self.done {
            return Ok(());
        }
        let limit = self.chunk_limit;
        let q = Scan {
            lower: &self.lower,
            prefix: &self.prefix,
            limit,
            bytes_max: CHUNK_BYTES_MAX,
            delimiter: self.delimiter,
            keys_only: self.keys_only,
        };
        self.engine.scan(&q, &mut self.scratch, &mut self.hits)?;
        // A chunk the walk did not cut short ends the scan.
        self.done = self.hits.len() < limit && self.hits.bytes_len() < CHUNK_BYTES_MAX;
        if !self.done {
            check_progress(self.hits.last(), &self.lower)?;
            self.done = !past_last(self.hits.last(), &mut self.lower);
            self.chunk_limit = (limit * 2).min(CHUNK_KEYS_MAX);
        }
        Ok(())
    }
}

/// A walk returns entries at or after the bound it was asked from, so the
/// bound past a chunk's last entry is strictly above the old one: every
/// refill makes progress. A last entry below the bound means the walk
/// went wrong (a damaged frame); refilling would then loop forever.
fn check_progress(last: Option<HitRef<'_>>, lower: &[u8]) -> Result<()> {
    match last {
        Some(last) if last.key() < lower => {
            Err(Error::corrupted("frames", 0, "a range scan's chunk ended below the key it started from"))
        }
        _ => Ok(()),
    }
}

/// Set `lower` to the first key past `last`: past the key (`key + 0x00`),
/// or past every key of the group (its bytes with trailing 0xFF bytes
/// dropped and the last byte left incremented). False when nothing is
/// past it (a group of only 0xFF bytes).
fn past_last(last: Option<HitRef<'_>>, lower: &mut Vec<u8>) -> bool {
    let Some(last) = last else { return false };
    lower.clear();
    lower.extend_from_slice(last.key());
    if let HitRef::Key { .. } = last {
        lower.push(0);
        return true;
    }
    while let Some(byte) = lower.pop() {
        if byte < 0xFF {
            lower.push(byte + 1);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &[u8]) -> Option<HitRef<'_>> {
        Some(HitRef::Key { key: k, value: b"" })
    }

    #[test]
    fn a_chunk_ending_below_its_bound_is_corruption_not_another_refill() {
        let lower = b"d/m\0".as_slice();
        assert!(check_progress(key(b"d/m\0"), lower).is_ok());
        assert!(check_progress(key(b"d/z"), lower).is_ok());
        assert!(check_progress(Some(HitRef::Group(b"d/n/")), lower).is_ok());
        assert!(check_progress(None, lower).is_ok());
        for last in [key(b"d/a"), key(b"d/m"), Some(HitRef::Group(b"d/b/"))] {
            let err = check_progress(last, lower).unwrap_err();
            assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
        }
    }

    #[test]
    fn the_bound_past_a_chunk_is_above_every_entry_of_it() {
        let mut lower = Vec::new();
        assert!(past_last(key(b"d/a"), &mut lower));
        assert_eq!(lower, b"d/a\0");
        assert!(past_last(Some(HitRef::Group(b"d/b/")), &mut lower));
        assert_eq!(lower, b"d/b0");
        assert!(past_last(Some(HitRef::Group(b"d/\xff/")), &mut lower));
        assert_eq!(lower, b"d/\xff0");
        assert!(!past_last(Some(HitRef::Group(b"\xff\xff")), &mut lower));
    }
}
