//! The public surface of holt-core: everything a caller names lives here.

mod batch;
mod builder;
mod cursor;
mod range;
mod tree;

pub use batch::{AtomicBatch, Batch};
pub use builder::TreeBuilder;
pub use cursor::RangeCursor;
pub use range::{RangeBuilder, RangeEntry, RangeEntryRef, RangeIter};
pub use crate::stats::{TreeCounters, TreeStats};
pub use tree::{Record, Tree};
