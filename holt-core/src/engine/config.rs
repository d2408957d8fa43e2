//! Options the engine is opened with (set through `TreeBuilder`).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub dir: PathBuf,
    pub memory: bool,
    /// Replay in memory and write nothing (`TreeBuilder::read_only`).
    pub read_only: bool,
    pub pool_frames_max: usize,
    pub wal_sync_on_commit: bool,
    pub checkpoint_interval: Option<Duration>,
    /// `None`: half the cache budget.
    pub checkpoint_dirty_frames: Option<usize>,
    pub wal_bytes_target: u64,
    /// Disk space held in `RESERVE` for the engine's own use when the disk
    /// fills (see `store::reserve`); 0: none.
    pub space_reserve_bytes: u64,
    /// Run the WAL flusher thread (`journal::ahead`): writeback ahead of
    /// rotations, the next segment prepared. Off only in tests that count
    /// disk operations.
    pub wal_flusher: bool,
    /// Read frames around the page cache once the cache is full
    /// (`TreeBuilder::direct_frame_reads`).
    pub direct_frame_reads: bool,
    /// Let the background checkpointer make room in nearly full frames
    /// ahead of the writers (`TreeBuilder::make_room_ahead`).
    pub make_room_ahead: bool,
    /// Keep a Bloom filter of the keys for lookups of absent ones
    /// (`TreeBuilder::miss_filter`).
    pub miss_filter: bool,
}

/// Default `space_reserve_bytes`.
pub(crate) const SPACE_RESERVE_BYTES_DEFAULT: u64 = 16 << 20;

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Config {
            dir,
            memory: false,
            read_only: false,
            pool_frames_max: 1024,
            wal_sync_on_commit: false,
            checkpoint_interval: Some(Duration::from_secs(5)),
            checkpoint_dirty_frames: None,
            wal_bytes_target: 64 << 20,
            space_reserve_bytes: SPACE_RESERVE_BYTES_DEFAULT,
            wal_flusher: true,
            direct_frame_reads: false,
            make_room_ahead: false,
            miss_filter: true,
        }
    }

    /// Dirty frames that start a checkpoint early. Half the cache by
    /// default: the other half stays evictable, and a write burst that
    /// dirties every frame of a small tree does not checkpoint back to back
    /// (the WAL target and the interval still bound the log and its replay).
    pub fn dirty_frames_mark(&self) -> usize {
        self.checkpoint_dirty_frames.unwrap_or(self.pool_frames_max / 2)
    }
}
