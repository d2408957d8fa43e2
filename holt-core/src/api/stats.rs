//! `TreeStats`: a point-in-time report of the engine's shape and counters.

/// Shape of the tree and activity counters since open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeStats {
    /// Live keys.
    pub keys: u64,
    /// Frames that hold tree nodes.
    pub frames: u64,
    /// Frames currently cached in memory.
    pub frames_cached: u64,
    /// Frames modified since the last checkpoint.
    pub frames_dirty: u64,
    /// Bytes of live nodes across all frames.
    pub live_bytes: u64,
    /// Bytes of dead (reclaimable) node space across all frames.
    pub dead_bytes: u64,
    /// `live_bytes` over the data capacity of all frames, 0.0..=1.0.
    pub fill_factor: f64,
    /// Live slots (nodes) across all frames.
    pub slots: u64,
    /// Subtrees moved into a new child frame.
    pub spills: u64,
    /// Child frames folded back into their parent.
    pub merges: u64,
    /// In-frame compactions of dead space.
    pub compactions: u64,
    /// Frame lookups served from the cache.
    pub cache_hits: u64,
    /// Frame lookups that had to read the store.
    pub cache_misses: u64,
    /// Frames evicted from the cache.
    pub evictions: u64,
    /// Optimistic reads that had to restart after a concurrent change.
    pub optimistic_restarts: u64,
    /// Bytes currently held by the write-ahead log.
    pub wal_bytes: u64,
    /// Checkpoints completed since open.
    pub checkpoints: u64,
}
