//! The stats report: every counter of a serving daemon as one plain
//! value, the body of the control socket's `stats` answer and the source
//! of the Prometheus text. Field names are stable (doc/FORMAT.md, "Stats
//! report"). Building one reads atomics only: no lock, no walk of the
//! tree (`Tree::counters`, not `Tree::stats`).

use std::collections::BTreeMap;

use holt_core::TreeCounters;
use serde::{Deserialize, Serialize};

use super::errno;
use super::histogram;
use super::requests::{OpTotals, RequestTotals};

/// What `stats` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The daemon's process id.
    pub pid: u32,
    /// When the filesystem was mounted, seconds since the Unix epoch.
    pub started_sec: u64,
    /// Seconds since then, as the daemon's monotonic clock has it.
    pub uptime_sec: f64,
    /// Whether the kernel reads and writes file data directly (FUSE
    /// passthrough), so that data never reaches the daemon.
    pub passthrough: bool,
    /// Bytes the daemon returned to READ requests.
    pub read_bytes: u64,
    /// Bytes the daemon took from WRITE requests.
    pub write_bytes: u64,
    /// Operations re-run because another changed what they read first.
    pub txn_conflicts: u64,
    /// Upper bounds of the latency buckets, in nanoseconds; every
    /// request's `buckets` has one more entry, for slower ones.
    pub latency_bounds_ns: Vec<u64>,
    /// One entry per FUSE opcode the daemon counts, zeros included.
    pub requests: Vec<OpStats>,
    pub engine: EngineStats,
}

/// One opcode's counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStats {
    pub op: String,
    /// Requests answered.
    pub count: u64,
    /// Error replies by errno name (`ENOENT`), only those seen.
    pub errors: BTreeMap<String, u64>,
    /// Latencies summed, in nanoseconds.
    pub duration_ns: u64,
    /// Requests per latency bucket, not cumulative.
    pub buckets: Vec<u64>,
}

/// The engine's activity (holt-core `TreeCounters`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub keys: u64,
    pub frames_cached: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub frames_loaded: u64,
    pub frames_evicted: u64,
    /// Bytes read for loaded frames and pages (absent from older daemons).
    #[serde(default)]
    pub frame_bytes_loaded: u64,
    /// Pages read for frames the cache holds in part: lookups and scans
    /// into a full cache read a frame's pages, not all of it (absent from
    /// older daemons).
    #[serde(default)]
    pub frame_pages_loaded: u64,
    /// The cache budget, in frames.
    #[serde(default)]
    pub cache_capacity_frames: u64,
    /// Frames modified since the last checkpoint.
    #[serde(default)]
    pub frames_dirty: u64,
    /// Operations that lost a loaded frame to eviction and went on pinning.
    #[serde(default)]
    pub pinned_retries: u64,
    pub optimistic_restarts: u64,
    pub spills: u64,
    /// Of `spills`, those made ahead of writers (absent from older daemons).
    #[serde(default)]
    pub spills_ahead: u64,
    /// Wall time of all spills, and of the longest (absent from older daemons).
    #[serde(default)]
    pub spill_ns: u64,
    #[serde(default)]
    pub spill_max_ns: u64,
    pub merges: u64,
    pub compactions: u64,
    /// Frames laid out again in key order (absent from older daemons).
    #[serde(default)]
    pub tidies: u64,
    /// Dirty frames written out between checkpoints so that they could
    /// be evicted (absent from older daemons).
    #[serde(default)]
    pub frames_written_out: u64,
    /// Holes punched in the engine's frame file (absent from older daemons).
    #[serde(default)]
    pub frame_punches: u64,
    /// Frame images written as deltas (absent from older daemons).
    #[serde(default)]
    pub frame_deltas: u64,
    pub wal_bytes: u64,
    pub wal_bytes_written: u64,
    pub wal_syncs: u64,
    pub checkpoints: u64,
    /// Checkpoints nobody waited for that stopped for an asked one
    /// (absent from older daemons).
    #[serde(default)]
    pub checkpoints_stopped: u64,
    pub checkpoint_ns: u64,
    pub checkpoint_last_ns: u64,
    /// The longest a checkpoint's cut held writers out (absent from older daemons).
    #[serde(default)]
    pub checkpoint_cut_max_ns: u64,
    /// Frames writers copied for a running checkpoint before changing them.
    #[serde(default)]
    pub checkpoint_copies_on_write: u64,
    /// The longest one frame's copy for a checkpoint took.
    #[serde(default)]
    pub checkpoint_frame_copy_max_ns: u64,
    /// Lookups of absent names the engine's miss filter answered.
    #[serde(default)]
    pub miss_filter_answers: u64,
    /// Memory the miss filter holds.
    #[serde(default)]
    pub miss_filter_bytes: u64,
    /// Keys the current miss filter was sized for; 0 while none is current.
    #[serde(default)]
    pub miss_filter_capacity: u64,
}

impl From<TreeCounters> for EngineStats {
    fn from(c: TreeCounters) -> Self {
        EngineStats {
            keys: c.keys,
            frames_cached: c.frames_cached,
            cache_hits: c.cache_hits,
            cache_misses: c.cache_misses,
            // Images read: one per miss, plus reads that lost a race to
            // load the same frame.
            frames_loaded: c.frames_read,
            frames_evicted: c.evictions,
            frame_bytes_loaded: c.frame_bytes_read,
            frame_pages_loaded: c.pages_read,
            cache_capacity_frames: c.cache_capacity_frames,
            frames_dirty: c.frames_dirty,
            pinned_retries: c.pinned_retries,
            optimistic_restarts: c.optimistic_restarts,
            spills: c.spills,
            spills_ahead: c.spills_ahead,
            spill_ns: c.spill_nanos,
            spill_max_ns: c.spill_nanos_max,
            merges: c.merges,
            compactions: c.compactions,
            tidies: c.tidies,
            frames_written_out: c.frames_written_out,
            frame_punches: c.frame_punches,
            frame_deltas: c.frame_deltas,
            wal_bytes: c.wal_bytes,
            wal_bytes_written: c.wal_bytes_written,
            wal_syncs: c.wal_syncs,
            checkpoints: c.checkpoints,
            checkpoints_stopped: c.checkpoints_stopped,
            checkpoint_ns: c.checkpoint_nanos,
            checkpoint_last_ns: c.checkpoint_last_nanos,
            checkpoint_cut_max_ns: c.checkpoint_cut_nanos_max,
            checkpoint_copies_on_write: c.checkpoint_copies_on_write,
            checkpoint_frame_copy_max_ns: c.checkpoint_frame_copy_nanos_max,
            miss_filter_answers: c.miss_filter_answers,
            miss_filter_bytes: c.miss_filter_bytes,
            miss_filter_capacity: c.miss_filter_capacity,
        }
    }
}

impl From<&OpTotals> for OpStats {
    fn from(t: &OpTotals) -> Self {
        OpStats {
            op: t.op.name().to_string(),
            count: t.count(),
            errors: t.errors.iter().map(|&(slot, n)| (errno::name(slot).to_string(), n)).collect(),
            duration_ns: t.nanos,
            buckets: t.buckets.to_vec(),
        }
    }
}

/// What the report takes besides the counters.
pub struct Daemon {
    pub pid: u32,
    pub started_sec: u64,
    pub uptime_sec: f64,
    pub passthrough: bool,
    pub txn_conflicts: u64,
}

impl StatsReport {
    pub fn new(daemon: Daemon, requests: &RequestTotals, engine: TreeCounters) -> StatsReport {
        StatsReport {
            pid: daemon.pid,
            started_sec: daemon.started_sec,
            uptime_sec: daemon.uptime_sec,
            passthrough: daemon.passthrough,
            read_bytes: requests.read_bytes,
            write_bytes: requests.write_bytes,
            txn_conflicts: daemon.txn_conflicts,
            latency_bounds_ns: histogram::bounds_ns(),
            requests: requests.ops.iter().map(OpStats::from).collect(),
            engine: engine.into(),
        }
    }

    /// The entry of opcode `op`, if the daemon counts it.
    pub fn op(&self, op: &str) -> Option<&OpStats> {
        self.requests.iter().find(|r| r.op == op)
    }

    /// Requests of every opcode.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().map(|r| r.count).sum()
    }
}
