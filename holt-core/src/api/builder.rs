//! `TreeBuilder`: options, then `open`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Config, Engine};
use crate::error::{Error, Result};
use crate::Tree;

/// Options for opening a [`Tree`].
#[derive(Clone, Debug)]
pub struct TreeBuilder {
    pub(crate) cfg: Config,
}

impl TreeBuilder {
    /// A persistent store in `dir` (created if missing).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        TreeBuilder { cfg: Config::new(dir.as_ref().to_path_buf()) }
    }

    /// Keep everything in memory; no files are touched.
    pub fn memory(mut self) -> Self {
        self.cfg.memory = true;
        self
    }

    /// Cache budget in 512 KiB frames (at least 8).
    pub fn buffer_pool_size(mut self, frames: usize) -> Self {
        self.cfg.pool_frames_max = frames;
        self
    }

    /// Acknowledge a mutation only after its WAL record is on stable storage.
    pub fn wal_sync_on_commit(mut self, on: bool) -> Self {
        self.cfg.wal_sync_on_commit = on;
        self
    }

    /// How often the background checkpointer runs; `None` turns it off.
    pub fn checkpoint_interval(mut self, every: Option<Duration>) -> Self {
        self.cfg.checkpoint_interval = every;
        self
    }

    /// Dirty frames that trigger a checkpoint before the interval elapses
    /// (default: half of `buffer_pool_size`).
    pub fn checkpoint_dirty_frames(mut self, frames: usize) -> Self {
        self.cfg.checkpoint_dirty_frames = Some(frames);
        self
    }

    /// WAL size above which a checkpoint runs so the log can be trimmed.
    pub fn wal_bytes_target(mut self, bytes: u64) -> Self {
        self.cfg.wal_bytes_target = bytes;
        self
    }

    /// The directory this builder opens.
    pub fn dir(&self) -> &PathBuf {
        &self.cfg.dir
    }

    /// Open (or create) the tree.
    pub fn open(self) -> Result<Tree> {
        Ok(Tree::from_engine(Engine::open(self.checked()?)?))
    }

    /// The options, once checked.
    pub(crate) fn checked(self) -> Result<Config> {
        if self.cfg.pool_frames_max < crate::POOL_FRAMES_MIN {
            return Err(Error::InvalidArgument(format!(
                "buffer_pool_size({}) is below the minimum of {} frames",
                self.cfg.pool_frames_max,
                crate::POOL_FRAMES_MIN
            )));
        }
        Ok(self.cfg)
    }
}
