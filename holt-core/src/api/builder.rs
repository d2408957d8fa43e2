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

    /// Open an existing store without writing to it: the last checkpoint
    /// plus the WAL replayed in memory, a shared lock on `LOCK` (which must
    /// exist; it is opened for reading, so media mounted read-only work),
    /// no checkpoint, WAL append, manifest or file created. Every write is
    /// refused with [`Error::ReadOnly`]; other read-only openers may share
    /// the store, a writer may not.
    pub fn read_only(mut self, on: bool) -> Self {
        self.cfg.read_only = on;
        self
    }

    /// Cache budget in 512 KiB frames (at least 8).
    pub fn buffer_pool_size(mut self, frames: usize) -> Self {
        self.cfg.pool_frames_max = frames;
        self
    }

    /// Acknowledge a mutation only after its WAL record is on stable storage.
    ///
    /// What it promises is about the caller's acknowledgment, not about
    /// what others see: a mutation is applied to the tree, and so visible
    /// to every reader, before its record is synced (syncs are shared by
    /// the committers waiting for them). A reader may therefore see a write
    /// whose call has not returned yet; if that sync fails, the call
    /// returns the error, the write stays visible, the tree refuses writes
    /// from then on, and a power cut loses the write. Everything a caller
    /// saw acknowledged survives a power cut.
    pub fn wal_sync_on_commit(mut self, on: bool) -> Self {
        self.cfg.wal_sync_on_commit = on;
        self
    }

    /// How long after the last checkpoint the background checkpointer
    /// runs one even though no bound presses (WAL bytes, dirty frames,
    /// cache): while writes stream in it waits for a pause, at most about
    /// 5 s more; `None` turns the checkpointer off.
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

    /// Disk space (default 16 MiB) the store keeps in its `RESERVE` file for
    /// its own use when the disk fills: a WAL append or checkpoint that
    /// finds the disk full releases it and goes on, and [`Tree::space_low`]
    /// turns true until a checkpoint (or [`Tree::restore_space_reserve`])
    /// makes it whole again. 0: no reserve, and a full disk fails such a
    /// step at once. Memory trees have none.
    pub fn space_reserve_bytes(mut self, bytes: u64) -> Self {
        self.cfg.space_reserve_bytes = bytes;
        self
    }

    /// Once the cache is full, read frames back around the kernel's page
    /// cache (`O_DIRECT`, where the file system has it). Worth it where
    /// the page cache counts against the same memory limit as the cache
    /// (a cgroup's): its copy of each frame read only doubles the frames'
    /// memory there, and filling and reclaiming it costs most of a miss's
    /// CPU. Off by default: without such a limit the page cache keeps the
    /// frames the cache evicted, a second level to read them back from.
    /// While the cache has room frames are read through the page cache
    /// either way (after a restart, the last checkpoint's frames are in it).
    pub fn direct_frame_reads(mut self, on: bool) -> Self {
        self.cfg.direct_frame_reads = on;
        self
    }

    /// Let the background checkpointer spill and compact frames that
    /// inserts left nearly full before a writer has to, while the cache
    /// has room for the tree twice over: in a load of 1M keys, writes over
    /// 1 ms fall from 6-56 to 3-20 a run (benches/RESULTS.md run 25). Off
    /// by default: in the peers run (`--engines holt-core,holt-core-ahead`,
    /// run 26) it made loads a few percent faster but the worst write,
    /// the settling checkpoint and the peak RSS worse. Under a cgroup
    /// memory limit it is as safe as off (run 26: no kill in 19 capped
    /// runs with it on).
    pub fn make_room_ahead(mut self, on: bool) -> Self {
        self.cfg.make_room_ahead = on;
        self
    }

    /// Keep a Bloom filter of every key, so a lookup of an absent key
    /// usually stops at the tree's first frame link instead of walking
    /// down to the miss (filesystems look up many names that do not
    /// exist); a thread consults it while its lookups miss often enough
    /// to gain (one in four or more). About 2 bytes a key, counted in the
    /// cache budget (at most a quarter of it), built by a background thread
    /// after open and again as the tree grows: from the tree while the
    /// cache could hold it twice, else from a snapshot read around the
    /// cache (a checkpoint, so only with timer checkpoints on). A clean
    /// close saves it (`FILTER` in the store directory) and the next open
    /// takes it instead of building one. On by default; read-only opens
    /// and snapshots have none.
    pub fn miss_filter(mut self, on: bool) -> Self {
        self.cfg.miss_filter = on;
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
        if self.cfg.memory && self.cfg.read_only {
            return Err(Error::InvalidArgument("a memory tree cannot be read-only: it has nothing to read".into()));
        }
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
