//! Keeps the miss filter (`store::miss_filter`) built: a thread that,
//! after open and whenever the tree outgrew the filter or deletes left it
//! many stale bits, reads every key into a new filter and publishes it.
//! It holds only a weak reference, so it never keeps a closed tree alive.
//!
//! Where the keys come from (`Source`): while the cache could hold the
//! whole tree twice over (`Pool::could_hold_tree`), a scan of the tree
//! itself. A larger persistent tree that checkpoints on its own (timer
//! checkpoints on) is read from a snapshot instead (a
//! checkpoint, then its images read from the frame file through a cache of
//! the snapshot's own, `BUILD_CACHE_FRAMES`): a scan of the tree would
//! evict what its readers use, every rebuild, while its misses are the
//! ones a filter saves most, each a read from disk. Either way the filter
//! is registered, so writers set its bits, before the keys are read: a
//! key is in the scan (present from its start) or in the checkpoint the
//! snapshot pins (the checkpoint's cut follows the registration), or its
//! writer set it.
//!
//! A filter takes at most `1 / CACHE_SHARE_MAX` of the cache budget. A
//! tree whose filter would need more keeps the filter it has (still exact
//! about absences, with more false positives as keys are added) until the
//! keys reach `OUTGROWN_FACTOR` times its capacity, then has none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::filter_saved::Pending;
use super::{Engine, Hits, Scan, ScanScratch};
use crate::layout::FRAME_BYTES;
use crate::op::LogOp;
use crate::store::miss_filter::{bytes_for, CAPACITY_MIN};

/// A filter whose tree holds this many times its capacity is retired
/// (unless rebuilt): it rules out about 68% of absent keys at twice its
/// capacity, 36% at three times, 17% at four.
const OUTGROWN_FACTOR: u64 = 3;
/// How often the thread checks whether a build is due.
const POLL: Duration = Duration::from_millis(200);
/// A filter's memory is at most this fraction of the cache budget (it is
/// set aside from it).
const CACHE_SHARE_MAX: u64 = 4;
/// The cache of the snapshot a build reads a larger tree from, in frames:
/// a scan holds the few frames on its path, and reads each frame once.
const BUILD_CACHE_FRAMES: usize = crate::POOL_FRAMES_MIN;
/// A build from a snapshot reads the whole frame file; it reads at most
/// this many bytes a second, so the tree's own reads keep most of the
/// disk (cold gets beside an unpaced build of a 570 MiB store ran at two
/// thirds of their rate, benches/RESULTS.md run 37).
const SNAPSHOT_READ_BYTES_PER_SEC: u64 = 128 << 20;
/// After a build from a snapshot failed (a checkpoint could not be
/// written, say), the next waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Keys a build scan reads at a time. Small: a chunk a writer changed
/// under it is read again whole, and during a load every frame changes
/// every few microseconds (a 1M-key 1-put load spent about 0.9 s less CPU
/// at 256 than at 4096).
const CHUNK_KEYS: usize = 256;

#[derive(Default)]
struct Stop {
    flag: Mutex<bool>,
    cv: Condvar,
}

/// The builder thread, and what it knows of the filter it last published.
#[derive(Default)]
pub(crate) struct FilterKeeper {
    stop: Arc<Stop>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// `keys_removed` when the current filter's scan started: deletes
    /// past it left bits behind.
    removed_at_build: AtomicU64,
    /// Held through a build: one at a time.
    pub(super) build: Mutex<()>,
    /// When a build from a snapshot last failed.
    failed_at: Mutex<Option<Instant>>,
    /// Stale keys of a filter taken from the last close
    /// (`engine::filter_saved`), until a build replaces it.
    pub(super) stale_at_open: AtomicU64,
    /// The filter saved at the last close, registered at open, until its
    /// words are read in: the first thing the keeper does.
    pub(super) pending: Mutex<Option<Pending>>,
}

/// Where a build reads the tree's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// A scan of the tree (it fits the cache twice over).
    Tree,
    /// A scan of a snapshot, around the tree's cache.
    Snapshot,
}

impl FilterKeeper {
    pub(crate) fn start(engine: &Arc<Engine>) {
        if engine.filter.is_none() {
            return;
        }
        let weak = Arc::downgrade(engine);
        let stop = engine.filter_keeper.stop.clone();
        match thread::Builder::new().name("holt-filter".into()).spawn(move || run(weak, stop)) {
            Ok(h) => *engine.filter_keeper.thread.lock() = Some(h),
            Err(e) => log::warn!("cannot start the miss filter's builder (lookups walk every miss): {e}"),
        }
    }

    /// Stop the thread (an unfinished build is dropped) and wait for it.
    pub(crate) fn stop(&self) {
        *self.stop.flag.lock() = true;
        self.stop.cv.notify_all();
        if let Some(handle) = self.thread.lock().take() {
            if handle.join().is_err() {
                log::error!("the miss filter's builder panicked");
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.flag.lock()
    }

    /// Wait until `bytes` read since `started` are within
    /// `SNAPSHOT_READ_BYTES_PER_SEC`, or the tree is closing.
    fn pace(&self, started: Instant, bytes: u64) {
        let due = Duration::from_secs_f64(bytes as f64 / SNAPSHOT_READ_BYTES_PER_SEC as f64);
        let Some(wait) = due.checked_sub(started.elapsed()) else { return };
        let mut stopped = self.stop.flag.lock();
        if !*stopped {
            self.stop.cv.wait_for(&mut stopped, wait);
        }
    }
}

/// The builder's nice value: its scans are worth doing only with CPU the
/// tree's users leave (a 1M-key load rebuilt the filter five times and
/// its scans took about a tenth of the run's CPU samples).
const NICE: libc::c_int = 10;

fn run(weak: Weak<Engine>, stop: Arc<Stop>) {
    // SAFETY: sets this thread's own priority; lowering it needs no
    // privilege, and a failure only leaves it where it was.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
    loop {
        let Some(engine) = weak.upgrade() else { return };
        engine.filter_upkeep();
        drop(engine);
        let mut stopped = stop.flag.lock();
        if !*stopped {
            stop.cv.wait_for(&mut stopped, POLL);
        }
        if *stopped {
            return;
        }
    }
}

impl Engine {
    /// Build a filter if one is due, or retire one the keys have outgrown
    /// past use while the tree is too large to build another.
    pub(super) fn filter_upkeep(&self) {
        if self.filter_keeper.pending.lock().is_some() {
            let _one_at_a_time = self.filter_keeper.build.lock();
            return self.finish_saved_filter();
        }
        if let Some(capacity) = self.filter_build_due() {
            self.build_filter(capacity);
        } else if self.filter_outgrown() {
            let Some(filter) = self.filter.as_ref() else { return };
            let _one_at_a_time = self.filter_keeper.build.lock();
            {
                let _gate = self.gate.write();
                filter.retire();
            }
            self.pool.set_aside(filter.bytes() as usize);
            log::info!("the miss filter is retired: the tree outgrew it and the cache cannot hold the tree to build another");
        }
    }

    /// Whether the tree outgrew the current filter `OUTGROWN_FACTOR`
    /// times: its words are then nearly full, and probes cost present keys
    /// more than they save absent ones.
    pub(super) fn filter_outgrown(&self) -> bool {
        let capacity = self.filter.as_ref().map_or(0, |f| f.capacity());
        capacity > 0 && self.key_count() > capacity.saturating_mul(OUTGROWN_FACTOR)
    }

    /// The capacity to build a filter with, if one is due: none is current,
    /// the keys outgrew it, or deletes since its build passed half of it
    /// (their bits stay); and there is a `filter_source` for it.
    pub(super) fn filter_build_due(&self) -> Option<u64> {
        let filter = self.filter.as_ref()?;
        let live = self.key_count();
        let capacity = filter.capacity();
        let stale = self.filter_stale_keys();
        let due = capacity == 0 || live > capacity || stale > capacity / 2;
        let new_capacity = live.saturating_mul(2).max(CAPACITY_MIN);
        (due && self.filter_source(new_capacity).is_some()).then_some(new_capacity)
    }

    /// Keys deleted since the current filter's build: their bits stay.
    pub(super) fn filter_stale_keys(&self) -> u64 {
        let keeper = &self.filter_keeper;
        let since_build = self.keys_removed.get().saturating_sub(keeper.removed_at_build.load(Ordering::Acquire));
        since_build.saturating_add(keeper.stale_at_open.load(Ordering::Acquire))
    }

    /// Whether a filter for `capacity` keys is within its share of the
    /// cache budget.
    pub(super) fn filter_fits(&self, capacity: u64) -> bool {
        let budget = (self.pool.capacity() * FRAME_BYTES) as u64;
        bytes_for(capacity) <= budget / CACHE_SHARE_MAX
    }

    /// Where a build of a filter for `capacity` keys would read the keys:
    /// none while the filter would take more than its share of the cache,
    /// or the tree is larger than the cache and may not checkpoint on its
    /// own (a memory tree, or timer checkpoints off: whoever turned them
    /// off expects no checkpoint they did not ask for), or a build from a
    /// snapshot failed under `RETRY_AFTER` ago.
    pub(super) fn filter_source(&self, capacity: u64) -> Option<Source> {
        if !self.filter_fits(capacity) {
            return None;
        }
        if self.pool.could_hold_tree() {
            return Some(Source::Tree);
        }
        let waiting = self.filter_keeper.failed_at.lock().is_some_and(|at| at.elapsed() < RETRY_AFTER);
        let checkpoints_itself = self.durable.is_some() && self.cfg.checkpoint_interval.is_some();
        (checkpoints_itself && !waiting).then_some(Source::Snapshot)
    }

    /// Build a filter for `capacity` keys and make it current. A failure
    /// (memory, a poisoned tree, a failed checkpoint, the tree closing)
    /// leaves the current one.
    pub(super) fn build_filter(&self, capacity: u64) {
        let Some(filter) = self.filter.as_ref() else { return };
        let _one_at_a_time = self.filter_keeper.build.lock();
        // A saved filter registered at open holds the region a build takes.
        self.finish_saved_filter();
        let Some(source) = self.filter_source(capacity) else { return };
        let Some(build) = filter.begin(capacity) else {
            log::warn!("no memory for a miss filter of {capacity} keys; keeping the current one");
            return;
        };
        // The snapshot's cache is memory the budget counts too, while it
        // lives.
        let reading = if source == Source::Snapshot { BUILD_CACHE_FRAMES * FRAME_BYTES } else { 0 };
        self.pool.set_aside(filter.bytes() as usize + reading);
        let removed = {
            let _gate = self.gate.write();
            build.register();
            self.keys_removed.get()
        };
        if self.read_keys(source, |key| build.add(key)) {
            let _gate = self.gate.write();
            build.publish();
            self.filter_keeper.removed_at_build.store(removed, Ordering::Release);
            self.filter_keeper.stale_at_open.store(0, Ordering::Release);
        } else {
            drop(build);
        }
        self.pool.set_aside(filter.bytes() as usize);
    }

    /// Call `add` with every key of the tree, read from `source`; false if
    /// that failed or the tree is closing.
    fn read_keys(&self, source: Source, add: impl FnMut(&[u8])) -> bool {
        match source {
            Source::Tree => self.scan_into(&self.filter_keeper, add, || {}),
            // Every frame once: around the page cache (where the file
            // system allows it), which would otherwise give the whole frame
            // file the room of what it holds for the tree and file data.
            Source::Snapshot => match self.snapshot_cached(Box::new(()), BUILD_CACHE_FRAMES, true) {
                Ok(snapshot) => {
                    let started = Instant::now();
                    let pace = || self.filter_keeper.pace(started, snapshot.pool.counters.bytes_read.get());
                    snapshot.scan_into(&self.filter_keeper, add, pace)
                }
                Err(e) => {
                    log::warn!("the miss filter's snapshot failed (next try in {RETRY_AFTER:?}): {e}");
                    *self.filter_keeper.failed_at.lock() = Some(Instant::now());
                    false
                }
            },
        }
    }

    /// Set the filters' bits of every key `log` puts. The caller holds the
    /// commit gate's shared side and has not released the frames that
    /// will publish these keys.
    pub(super) fn note_puts(&self, log: &[LogOp]) {
        let Some(filter) = &self.filter else { return };
        for op in log {
            match op {
                LogOp::Put { key, .. } | LogOp::Rename { dst: key, .. } => filter.note_put(key),
                LogOp::Delete { .. } => {}
            }
        }
    }

    /// Call `add` with every key of this tree, in chunks, and `pace`
    /// after each; false if the scan failed or `keeper` (the building
    /// tree's) is stopping.
    fn scan_into(&self, keeper: &FilterKeeper, mut add: impl FnMut(&[u8]), mut pace: impl FnMut()) -> bool {
        let (mut hits, mut scratch, mut lower) = (Hits::default(), ScanScratch::default(), Vec::new());
        loop {
            if keeper.stopping() {
                return false;
            }
            hits.clear();
            let q = Scan { lower: &lower, prefix: &[], limit: CHUNK_KEYS, bytes_max: usize::MAX, delimiter: None, keys_only: true };
            if let Err(e) = self.scan(&q, &mut scratch, &mut hits) {
                log::warn!("the miss filter's build scan failed: {e}");
                return false;
            }
            for i in 0..hits.len() {
                add(hits.get(i).key());
            }
            pace();
            let Some(last) = hits.last().filter(|_| hits.len() == CHUNK_KEYS) else { return true };
            lower.clear();
            lower.extend_from_slice(last.key());
            lower.push(0);
        }
    }
}
