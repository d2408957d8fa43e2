//! The public surface of holt-core: everything a caller names lives here.

mod batch;
mod builder;
mod range;
mod tree;

pub use batch::{AtomicBatch, Batch};
pub use builder::TreeBuilder;
pub use range::{RangeBuilder, RangeEntry, RangeIter};
pub use crate::stats::{TreeCounters, TreeStats};
pub use tree::{Record, Tree};
