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

/// The buffer pool's counters since open: cheap to read (no walk over the
/// tree), for a hit rate or a cache-size report. Memory mode never misses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The cache budget (`buffer_pool_size`), in frames.
    pub capacity_frames: u64,
    /// Frames cached in memory now (above the budget while dirty or pinned
    /// frames leave nothing to evict).
    pub frames_cached: u64,
    /// Frames modified since the last checkpoint.
    pub frames_dirty: u64,
    /// Frame lookups served from the cache.
    pub hits: u64,
    /// Frames loaded into the cache from the store.
    pub misses: u64,
    /// Frame images read from the store: `misses` plus reads that lost a
    /// race to load the same frame. `frames_read / misses` is the frames
    /// read per miss.
    pub frames_read: u64,
    /// Bytes read from the store for those frames (a frame's free gap is
    /// not read).
    pub bytes_read: u64,
    /// Frames evicted from the cache.
    pub evictions: u64,
    /// Reads and writes that lost a frame they had loaded to eviction and
    /// went on pinning their frames until done.
    pub pinned_retries: u64,
}

impl PoolStats {
    /// Hits over lookups, 0.0..=1.0 (1.0 before any lookup).
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            return 1.0;
        }
        self.hits as f64 / lookups as f64
    }
}
