//! Ordered range scans with prefix, start_after and delimiter rollup.
//!
//! The iterator never holds a latch between calls. It asks the engine for a
//! chunk of entries at or after a lower bound, then moves the bound past the
//! last entry it emitted: past the last key, or past every key of the last
//! group. Because every refill restarts from a key rather than a position, a
//! key present for the whole scan is emitted exactly once, and a group once,
//! however the tree changes underneath. The rollup itself happens in the
//! tree walk (`tree::scan`), which steps over each group's keys.

use std::sync::Arc;

use super::tree::Handle;
use crate::engine::{Scan, ScanScratch};
use crate::error::Result;
use crate::tree::scan::Hit;

/// Entries fetched by a scan's first refill; each full refill doubles the next
/// up to `CHUNK_KEYS_MAX`. Every refill descends again to its lower bound,
/// so a long scan (a big directory) wants few of them, while a short one
/// (a typical directory) should not buffer far ahead.
const CHUNK_KEYS_MIN: usize = 128;
const CHUNK_KEYS_MAX: usize = 512;

/// One item of a range scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeEntry {
    /// A key and its value.
    Key { key: Vec<u8>, value: Vec<u8> },
    /// Keys rolled up by the delimiter: the shared prefix including the delimiter.
    CommonPrefix(Vec<u8>),
}

impl RangeEntry {
    /// The key, or the common prefix.
    pub fn key(&self) -> &[u8] {
        match self {
            RangeEntry::Key { key, .. } => key,
            RangeEntry::CommonPrefix(p) => p,
        }
    }
}

impl From<Hit> for RangeEntry {
    fn from(hit: Hit) -> Self {
        match hit {
            Hit::Key { key, value } => RangeEntry::Key { key, value },
            Hit::Group(p) => RangeEntry::CommonPrefix(p),
        }
    }
}

/// Configures a range scan; iterate it to run.
pub struct RangeBuilder {
    engine: Arc<Handle>,
    prefix: Vec<u8>,
    start_after: Option<Vec<u8>>,
    delimiter: Option<u8>,
    keys_only: bool,
}

impl RangeBuilder {
    pub(crate) fn new(engine: Arc<Handle>) -> Self {
        RangeBuilder { engine, prefix: Vec::new(), start_after: None, delimiter: None, keys_only: false }
    }

    /// Only keys that start with `prefix`.
    pub fn prefix(mut self, prefix: &[u8]) -> Self {
        self.prefix = prefix.to_vec();
        self
    }

    /// Only keys (and common prefixes) strictly greater than `key`.
    pub fn start_after(mut self, key: &[u8]) -> Self {
        self.start_after = Some(key.to_vec());
        self
    }

    /// Roll keys that contain `delim` after the prefix up into one
    /// [`RangeEntry::CommonPrefix`] each: the key up to and including the
    /// first `delim` past the prefix. The scan steps over each group by a
    /// descent (O(depth)) without visiting its keys.
    pub fn delimiter(mut self, delim: u8) -> Self {
        self.delimiter = Some(delim);
        self
    }

    /// Yield keys without their values: every [`RangeEntry::Key`] has an
    /// empty `value`, and no value is read or copied (for listings that
    /// need names only, such as readdir). Common prefixes are unchanged.
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
}

impl IntoIterator for RangeBuilder {
    type Item = Result<RangeEntry>;
    type IntoIter = RangeIter;

    fn into_iter(self) -> RangeIter {
        let mut lower = self.prefix.clone();
        if let Some(after) = &self.start_after {
            // Smallest key strictly greater than `after` is `after` + 0x00.
            let mut succ = after.clone();
            succ.push(0);
            if succ > lower {
                lower = succ;
            }
        }
        let (chunk, scratch) = take_buffers();
        RangeIter {
            engine: self.engine,
            prefix: self.prefix,
            delimiter: self.delimiter,
            keys_only: self.keys_only,
            lower: Some(lower),
            chunk,
            chunk_pos: 0,
            chunk_limit: CHUNK_KEYS_MIN,
            scratch,
        }
    }
}

type Chunk = Vec<Hit>;

thread_local! {
    /// The buffers of the thread's last finished scan. A directory listing
    /// is one short scan: allocating its chunk afresh each time is a large
    /// allocation, which makes glibc consolidate every small chunk the
    /// previous listing freed (a tenth of list time).
    static SPARE: std::cell::Cell<Option<(Chunk, ScanScratch)>> = const { std::cell::Cell::new(None) };
}

fn take_buffers() -> (Chunk, ScanScratch) {
    SPARE.with(|s| s.take()).unwrap_or_else(|| (Vec::with_capacity(CHUNK_KEYS_MIN), ScanScratch::default()))
}

impl Drop for RangeIter {
    fn drop(&mut self) {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.clear();
        let scratch = std::mem::take(&mut self.scratch);
        // `try_with`: a scan dropped while its thread exits just frees.
        let _ = SPARE.try_with(|s| s.set(Some((chunk, scratch))));
    }
}

/// The iterator behind [`RangeBuilder`].
pub struct RangeIter {
    engine: Arc<Handle>,
    prefix: Vec<u8>,
    delimiter: Option<u8>,
    keys_only: bool,
    /// Inclusive lower bound of the next refill; `None` once exhausted.
    /// A group is emitted only if its bytes are `>= lower`, so a
    /// `start_after` inside a group skips that group.
    lower: Option<Vec<u8>>,
    chunk: Chunk,
    chunk_pos: usize,
    /// Entries the next refill asks for.
    chunk_limit: usize,
    scratch: ScanScratch,
}

/// The smallest byte string greater than every string starting with `p`,
/// or `None` if no such string exists (`p` is empty or all 0xFF).
pub(crate) fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut s = p.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

impl RangeIter {
    fn refill(&mut self) -> Result<bool> {
        let Some(lower) = self.lower.take() else { return Ok(false) };
        self.chunk.clear();
        self.chunk_pos = 0;
        let limit = self.chunk_limit;
        let q = Scan { lower: &lower, prefix: &self.prefix, limit, delimiter: self.delimiter, keys_only: self.keys_only };
        self.engine.scan(&q, &mut self.scratch, &mut self.chunk)?;
        if self.chunk.len() == limit {
            self.lower = match &self.chunk[limit - 1] {
                Hit::Key { key, .. } => {
                    let mut next = Vec::with_capacity(key.len() + 1);
                    next.extend_from_slice(key);
                    next.push(0);
                    Some(next)
                }
                // Past every key of the group (none if it is all 0xFF).
                Hit::Group(p) => prefix_successor(p),
            };
            self.chunk_limit = (limit * 2).min(CHUNK_KEYS_MAX);
        }
        Ok(!self.chunk.is_empty())
    }

    fn next_entry(&mut self) -> Result<Option<RangeEntry>> {
        if self.chunk_pos == self.chunk.len() && !self.refill()? {
            return Ok(None);
        }
        let hit = std::mem::replace(&mut self.chunk[self.chunk_pos], Hit::Group(Vec::new()));
        self.chunk_pos += 1;
        Ok(Some(hit.into()))
    }
}

impl Iterator for RangeIter {
    type Item = Result<RangeEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.lower = None;
                self.chunk.clear();
                self.chunk_pos = 0;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[path = "range_tests.rs"]
mod tests;
