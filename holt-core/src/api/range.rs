//! Ordered range scans with prefix, start_after and delimiter rollup: the
//! builder, and the owned-entry iterator over a [`RangeCursor`] (which
//! says how a scan moves through a changing tree).

use std::sync::Arc;

use super::cursor::RangeCursor;
use super::tree::Handle;
use crate::engine::HitRef;
use crate::error::Result;

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

/// One item of a range scan, lent by a [`RangeCursor`]: valid until the
/// cursor's next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeEntryRef<'a> {
    /// A key and its value.
    Key { key: &'a [u8], value: &'a [u8] },
    /// Keys rolled up by the delimiter: the shared prefix including the delimiter.
    CommonPrefix(&'a [u8]),
}

impl<'a> RangeEntryRef<'a> {
    /// The key, or the common prefix.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            RangeEntryRef::Key { key, .. } => key,
            RangeEntryRef::CommonPrefix(p) => p,
        }
    }

    /// The value of a key; empty for a common prefix.
    pub fn value(&self) -> &'a [u8] {
        match *self {
            RangeEntryRef::Key { value, .. } => value,
            RangeEntryRef::CommonPrefix(_) => &[],
        }
    }

    /// The entry with its bytes copied out.
    pub fn to_entry(&self) -> RangeEntry {
        match *self {
            RangeEntryRef::Key { key, value } => RangeEntry::Key { key: key.to_vec(), value: value.to_vec() },
            RangeEntryRef::CommonPrefix(p) => RangeEntry::CommonPrefix(p.to_vec()),
        }
    }
}

impl<'a> From<HitRef<'a>> for RangeEntryRef<'a> {
    #[inline]
    fn from(hit: HitRef<'a>) -> Self {
        match hit {
            HitRef::Key { key, value } => RangeEntryRef::Key { key, value },
            HitRef::Group(p) => RangeEntryRef::CommonPrefix(p),
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
        self.prefix = super::cursor::owned_prefix(prefix);
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

impl RangeBuilder {
    /// Run the scan as a cursor that lends each entry's bytes instead of
    /// allocating them: the fast way through many entries.
    pub fn cursor(self) -> RangeCursor {
        RangeCursor::new(self.engine, self.prefix, self.start_after.as_deref(), self.delimiter, self.keys_only)
    }
}

impl IntoIterator for RangeBuilder {
    type Item = Result<RangeEntry>;
    type IntoIter = RangeIter;

    fn into_iter(self) -> RangeIter {
        RangeIter { cursor: self.cursor() }
    }
}

/// The iterator behind [`RangeBuilder`]: a [`RangeCursor`] whose entries
/// are copied into owned vectors.
pub struct RangeIter {
    pub(crate) cursor: RangeCursor,
}

impl Iterator for RangeIter {
    type Item = Result<RangeEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.next_entry().map(|e| e.map(|e| e.to_entry())).transpose()
    }
}

#[cfg(test)]
#[path = "range_tests.rs"]
mod tests;
