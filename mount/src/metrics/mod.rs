//! What a serving daemon counts, and the two ways it is read: the
//! control socket's `stats` request (`holt-fs stats`) and, when asked for
//! with `--metrics ADDR`, a Prometheus text endpoint over HTTP.
//!
//! - `op`: the FUSE opcodes counted; `errno`: names for the errno label;
//! - `histogram`: log2 latency buckets;
//! - `requests`: the per-thread-sharded counters the FUSE adapter bumps;
//! - `report`: [`StatsReport`], every counter as one value (engine ones
//!   from holt-core's O(1) `Tree::counters`);
//! - `prometheus`: the report in the text exposition format;
//! - `http`: a minimal HTTP/1.1 responder serving it.
//!
//! Invariants:
//! - Counting a request takes no lock, allocates nothing and shares no
//!   cache line with another FUSE thread (`requests`).
//! - Reading never blocks a request and never walks the tree or the
//!   frames: a report is atomic loads only, whatever the store's size.
//! - Nothing here names fuser types; `fuse/adapter.rs` decides what a
//!   request is and when it is answered.

mod errno;
mod histogram;
pub mod http;
mod op;
pub mod prometheus;
pub(crate) mod report;
mod requests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use op::Op;
pub use report::{EngineStats, OpStats, StatsReport};
pub use requests::Requests;

use crate::Fs;

/// Everything a report reads, for the threads that serve reports.
#[derive(Clone)]
pub struct StatsSource {
    fs: Arc<Fs>,
    requests: Arc<Requests>,
    /// The adapter's flag: passthrough granted and still in use.
    passthrough: Arc<AtomicBool>,
    started: Instant,
    started_sec: u64,
}

impl StatsSource {
    pub(crate) fn new(fs: Arc<Fs>, requests: Arc<Requests>, passthrough: Arc<AtomicBool>) -> StatsSource {
        let started_sec = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        StatsSource { fs, requests, passthrough, started: Instant::now(), started_sec }
    }

    /// Every counter now.
    pub fn report(&self) -> StatsReport {
        let daemon = report::Daemon {
            pid: std::process::id(),
            started_sec: self.started_sec,
            uptime_sec: self.started.elapsed().as_secs_f64(),
            passthrough: self.passthrough.load(Ordering::Relaxed),
            txn_conflicts: self.fs.txn_conflicts(),
        };
        StatsReport::new(daemon, &self.requests.totals(), self.fs.meta().counters())
    }
}
