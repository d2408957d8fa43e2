//! holt-core: an embedded adaptive radix tree for path-shaped keys, laid out
//! in 512 KiB blob frames.
//!
//! ```
//! use holt_core::{TreeBuilder, RangeEntry};
//! let tree = TreeBuilder::new("unused").memory().open().unwrap();
//! tree.put(b"dir/a", b"1").unwrap();
//! tree.put(b"dir/sub/b", b"2").unwrap();
//! let names: Vec<_> = tree.scan_prefix(b"dir/").delimiter(b'/').into_iter()
//!     .map(|e| e.unwrap().key().to_vec()).collect();
//! assert_eq!(names, vec![b"dir/a".to_vec(), b"dir/sub/".to_vec()]);
//! ```

mod api;
mod counter;
mod engine;
mod error;
#[cfg(test)]
mod format_doc;
mod ids;
mod journal;
mod latch;
mod layout;
mod op;
mod stats;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tree;

pub use api::{
    AtomicBatch, Batch, RangeBuilder, RangeCursor, RangeEntry, RangeEntryRef, RangeIter, Record, Tree, TreeBuilder, TreeCounters,
    TreeStats,
};
pub use error::{Error, Result};

/// Longest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 8 * 1024;
/// Longest value accepted, in bytes (at least Linux's 64 KiB xattr maximum).
pub const VALUE_BYTES_MAX: usize = 128 * 1024;
/// Smallest accepted `buffer_pool_size`, in frames.
pub const POOL_FRAMES_MIN: usize = 8;
/// Bytes of one frame, the unit of `buffer_pool_size` (a cache of N bytes
/// is `N / FRAME_BYTES` frames).
pub const FRAME_BYTES: usize = layout::FRAME_BYTES;
