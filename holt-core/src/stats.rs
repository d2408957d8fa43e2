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
    /// Resident frames laid out in key order (a tidy's preorder, kept
    /// until the frame's layout next changes): scans read their subtrees
    /// front to back.
    pub frames_in_key_order: u64,
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
    /// Wall time of all spills so far, in nanoseconds (a spill the
    /// scheduler interrupted counts whole), and of the longest: a write
    /// that had to make room waited for its spill (a spill made ahead of
    /// the writers, `TreeBuilder::make_room_ahead`, counts here too).
    pub spill_nanos: u64,
    pub spill_nanos_max: u64,
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

/// Activity counters since open, read in O(1): unlike [`TreeStats`], no
/// frame is visited, so a monitor may read them as often as it likes.
/// Each is a sum of per-thread shards or one atomic, read without a
/// common cut: two counters read together may be a few operations apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeCounters {
    /// Live keys.
    pub keys: u64,
    /// Frames currently cached in memory.
    pub frames_cached: u64,
    /// Frame lookups served from the cache.
    pub cache_hits: u64,
    /// Frame lookups that had to read the store; each loads one frame,
    /// whole or (a point lookup into a full cache) its first page.
    pub cache_misses: u64,
    /// Whole frame images read from the store: misses that loaded a whole
    /// frame, plus reads that lost a race to load the same frame.
    pub frames_read: u64,
    /// Pages read for frames resident in part: point lookups into a full
    /// cache read a frame's page checksums and first page, then each page
    /// their path through it needs.
    pub pages_read: u64,
    /// Bytes read from the store for whole frames and pages (a frame's
    /// free gap is never read).
    pub frame_bytes_read: u64,
    /// Frames evicted from the cache.
    pub evictions: u64,
    /// The cache budget (`buffer_pool_size`), in frames. `frames_cached`
    /// exceeds it while dirty or pinned frames leave nothing to evict.
    pub cache_capacity_frames: u64,
    /// Frames modified since the last checkpoint (they cannot be evicted).
    pub frames_dirty: u64,
    /// Reads and writes that lost a frame they had loaded to eviction and
    /// went on pinning their frames until done (a small pool's cost).
    pub pinned_retries: u64,
    /// Optimistic reads, and batches, that started over after a
    /// concurrent change to a frame they had read.
    pub optimistic_restarts: u64,
    /// Subtrees moved into a new child frame.
    pub spills: u64,
    /// Of `spills`, those the background thread made ahead of writers,
    /// in frames an insert had left nearly full
    /// (`TreeBuilder::make_room_ahead`).
    pub spills_ahead: u64,
    /// Wall time of all spills so far, in nanoseconds (a spill the
    /// scheduler interrupted counts whole), and of the longest: a write
    /// that had to make room waited for its spill (a spill made ahead of
    /// the writers, `TreeBuilder::make_room_ahead`, counts here too).
    pub spill_nanos: u64,
    pub spill_nanos_max: u64,
    /// Child frames folded back into their parent.
    pub merges: u64,
    /// In-frame compactions of dead space.
    pub compactions: u64,
    /// Frames laid out again in key order, before checkpoints and by
    /// `compact()`, or as a checkpoint a bound pressed wrote them, once
    /// inserts had scattered their nodes.
    pub tidies: u64,
    /// Of those, frames a checkpoint laid out as images and whose frames in
    /// memory took that layout (no writer came since their copy).
    pub layouts_adopted: u64,
    /// Dirty frames written out between checkpoints so that they could
    /// be evicted (a tree larger than the cache), published with the next
    /// checkpoint.
    pub frames_written_out: u64,
    /// Bytes the write-ahead log holds now (0 in memory mode).
    pub wal_bytes: u64,
    /// Bytes of WAL records handed to the OS since open.
    pub wal_bytes_written: u64,
    /// fdatasyncs of the WAL since open (one serves every committer waiting).
    pub wal_syncs: u64,
    /// The longest a WAL segment rotation held the writer that filled the
    /// segment, in nanoseconds of wall time (sealing it durably, naming
    /// the next).
    pub wal_rotation_nanos_max: u64,
    /// Checkpoints that published frames since open.
    pub checkpoints: u64,
    /// Checkpoints nobody waited for (the checkpointer's, or a writer's
    /// over a bound) that stopped, publishing nothing, to let one a caller
    /// asked for (`Tree::checkpoint`, a clean close, a snapshot) cut anew.
    pub checkpoints_stopped: u64,
    /// Nanoseconds those checkpoints took, summed (capture, writes, publication, trim).
    pub checkpoint_nanos: u64,
    /// Nanoseconds the last of them took; 0 before the first.
    pub checkpoint_last_nanos: u64,
    /// The longest any checkpoint's cut held writers out (the exclusive
    /// side of the commit gate), in nanoseconds: the cut copies no frame,
    /// so this does not grow with the dirty frames.
    pub checkpoint_cut_nanos_max: u64,
    /// Frames writers copied for a running checkpoint before changing
    /// them (copy-on-write); the checkpoint copied the others itself.
    pub checkpoint_copies_on_write: u64,
    /// Holes punched in the frame file since open: free slots given back
    /// (a run of adjacent ones in one) and images' free gaps. On a file
    /// system mounted with `discard` each is a synchronous discard.
    pub frame_punches: u64,
    /// Frame images written as deltas since open: only the pages that
    /// changed since the whole image the store keeps of the frame, where
    /// few did (a tree larger than the cache).
    pub frame_deltas: u64,
    /// Frame buffers the cache no longer needed whose memory went back to
    /// the kernel (the cache had grown past its budget with dirty or
    /// pinned frames, then shrank).
    pub frame_buffers_released: u64,
    /// The longest one frame's copy for a checkpoint took, in nanoseconds
    /// of wall time (a copy the scheduler interrupted counts whole), by a
    /// writer or the checkpoint: the most a writer waited on a checkpoint
    /// for one frame it latched.
    pub checkpoint_frame_copy_nanos_max: u64,
    /// Lookups of absent keys the miss filter answered at the tree's
    /// first frame link, without walking the frames below
    /// (`TreeBuilder::miss_filter`).
    pub miss_filter_answers: u64,
    /// Memory the miss filter holds, in bytes (counted in the cache
    /// budget); 0 until its first build.
    pub miss_filter_bytes: u64,
    /// Keys the current miss filter was sized for (0 while none is
    /// current): below `keys`, it rules out fewer absent keys and a
    /// rebuild is due.
    pub miss_filter_capacity: u64,
}
