//! The engine's O(1) counters ([`TreeCounters`]): sums of sharded
//! counters and single atomics, never a walk over frames, so a monitor
//! can read them once a second on a tree of any size. `stats()` is the
//! O(frames) report of the tree's shape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use super::Engine;
use crate::store::miss_filter::MissFilter;
use crate::stats::TreeCounters;
use crate::counter::Counter;

/// How long checkpoints take. Written only by the checkpoint in progress
/// (callers hold `checkpoint_serial`), so plain stores suffice for the
/// last duration.
#[derive(Default)]
pub(crate) struct CheckpointTime {
    nanos_total: AtomicU64,
    nanos_last: AtomicU64,
    /// The longest cut (commit gate held exclusively), published or not.
    cut_nanos_max: AtomicU64,
}

/// A checkpoint being timed: counted only if it published (the count of
/// published checkpoints moved), so the total stays the time of those.
pub(crate) struct CheckpointTimer<'e> {
    time: &'e CheckpointTime,
    started: Instant,
    published_before: u64,
}

impl CheckpointTime {
    /// A cut that held the commit gate since `taken`.
    pub(crate) fn cut_done(&self, taken: Instant) {
        let nanos = u64::try_from(taken.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.cut_nanos_max.fetch_max(nanos, Relaxed);
    }

    pub(crate) fn start<'e>(&'e self, published: &Counter) -> CheckpointTimer<'e> {
        CheckpointTimer { time: self, started: Instant::now(), published_before: published.get() }
    }
}

impl CheckpointTimer<'_> {
    pub(crate) fn stop(self, published: &Counter) {
        if published.get() == self.published_before {
            return;
        }
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.time.nanos_total.fetch_add(nanos, Relaxed);
        self.time.nanos_last.store(nanos, Relaxed);
    }
}

impl Engine {
    pub fn counters(&self) -> TreeCounters {
        let c = &self.pool.counters;
        let journal = self.durable.as_ref().map(|d| &d.journal);
        TreeCounters {
            keys: self.key_count(),
            frames_cached: self.pool.resident_count() as u64,
            cache_hits: c.hits.get(),
            cache_misses: c.misses.get(),
            frames_read: c.frames_read.get(),
            pages_read: c.pages_read.get(),
            frame_bytes_read: c.bytes_read.get(),
            evictions: c.evictions.get(),
            cache_capacity_frames: self.pool.capacity() as u64,
            frames_dirty: self.pool.dirty_count() as u64,
            pinned_retries: c.pinned_retries.get(),
            optimistic_restarts: c.restarts.get(),
            spills: c.spills.get(),
            spills_ahead: c.spills_ahead.get(),
            spill_nanos: c.spill_nanos.get(),
            spill_nanos_max: c.spill_nanos_max.load(Relaxed),
            merges: c.merges.get(),
            compactions: c.compactions.get(),
            tidies: c.tidies.get(),
            layouts_adopted: c.layouts_adopted.get(),
            frames_written_out: c.write_outs.get(),
            wal_bytes: journal.map_or(0, |j| j.bytes()),
            wal_bytes_written: journal.map_or(0, |j| j.bytes_written()),
            wal_syncs: journal.map_or(0, |j| j.syncs()),
            wal_rotation_nanos_max: journal.map_or(0, |j| j.rotation_nanos_max()),
            checkpoints: self.checkpoints.get(),
            checkpoints_stopped: c.checkpoints_stopped.get(),
            checkpoint_nanos: self.checkpoint_time.nanos_total.load(Relaxed),
            checkpoint_last_nanos: self.checkpoint_time.nanos_last.load(Relaxed),
            checkpoint_cut_nanos_max: self.checkpoint_time.cut_nanos_max.load(Relaxed),
            checkpoint_copies_on_write: c.copies_on_write.get(),
            frame_buffers_released: c.buffers_released.get(),
            frame_punches: self.durable.as_ref().map_or(0, |d| d.store.punches()),
            frame_deltas: self.durable.as_ref().map_or(0, |d| d.store.deltas()),
            checkpoint_frame_copy_nanos_max: self.pool.frame_copy_nanos_max(),
            miss_filter_answers: self.filter.as_ref().map_or(0, |f| f.answered.get()),
            miss_filter_bytes: self.filter.as_ref().map_or(0, MissFilter::bytes),
            miss_filter_capacity: self.filter.as_ref().map_or(0, MissFilter::capacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::TreeBuilder;

    /// Spills are counted and timed: the longest within the total.
    #[test]
    fn spills_are_timed() {
        let tree = TreeBuilder::new("spills").memory().open().unwrap();
        assert_eq!((tree.counters().spills, tree.counters().spill_nanos), (0, 0));
        for i in 0..20_000u32 {
            tree.put(format!("d{:02}/file-{i:06}", i % 50).as_bytes(), &[7; 60]).unwrap();
        }
        let c = tree.counters();
        assert!(c.spills > 0, "{c:?}");
        assert!(c.spill_nanos_max > 0 && c.spill_nanos_max <= c.spill_nanos, "{c:?}");
    }

    #[test]
    fn counters_move_with_writes_syncs_and_checkpoints_and_agree_with_stats() {
        let dir = tempfile::tempdir().unwrap();
        let tree = TreeBuilder::new(dir.path()).checkpoint_interval(None).open().unwrap();
        let before = tree.counters();
        for i in 0..100u32 {
            tree.put(&i.to_be_bytes(), b"value").unwrap();
        }
        tree.sync().unwrap();
        let written = tree.counters();
        assert_eq!(written.keys, 100);
        assert!(written.wal_bytes_written >= before.wal_bytes_written + 100 * 9, "{written:?}");
        assert_eq!(written.wal_syncs, before.wal_syncs + 1, "one sync for the barrier");
        tree.checkpoint().unwrap();
        let after = tree.counters();
        assert_eq!(after.checkpoints, written.checkpoints + 1);
        assert!(after.checkpoint_last_nanos > 0 && after.checkpoint_nanos >= after.checkpoint_last_nanos);
        assert!(after.checkpoint_cut_nanos_max > 0 && after.checkpoint_cut_nanos_max < after.checkpoint_last_nanos);
        assert!(after.checkpoint_frame_copy_nanos_max > 0, "a checkpoint copied its frame");
        tree.checkpoint().unwrap();
        assert_eq!(tree.counters().checkpoint_nanos, after.checkpoint_nanos, "a checkpoint with nothing to publish is not timed");
        let s = tree.stats().unwrap();
        let c = tree.counters();
        assert_eq!((c.keys, c.checkpoints, c.wal_bytes), (s.keys, s.checkpoints, s.wal_bytes));
        assert_eq!((c.cache_hits, c.cache_misses, c.frames_cached), (s.cache_hits, s.cache_misses, s.frames_cached));
    }

    #[test]
    fn a_memory_tree_has_no_wal_to_count() {
        let tree = TreeBuilder::new("unused").memory().open().unwrap();
        tree.put(b"k", b"v").unwrap();
        let c = tree.counters();
        assert_eq!((c.keys, c.wal_bytes, c.wal_bytes_written, c.wal_syncs), (1, 0, 0, 0));
    }
}
