//! Options the engine is opened with (set through `TreeBuilder`).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub dir: PathBuf,
    pub memory: bool,
    pub pool_frames_max: usize,
    pub wal_sync_on_commit: bool,
    pub checkpoint_interval: Option<Duration>,
    pub checkpoint_dirty_frames: usize,
    pub wal_bytes_target: u64,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Config {
            dir,
            memory: false,
            pool_frames_max: 1024,
            wal_sync_on_commit: false,
            checkpoint_interval: Some(Duration::from_secs(5)),
            checkpoint_dirty_frames: 256,
            wal_bytes_target: 64 << 20,
        }
    }
}
