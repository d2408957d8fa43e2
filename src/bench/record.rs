//! Timing of single operations and the statistics of a phase.
//!
//! A phase's wall time runs from the earliest first-op start to the latest
//! last-op end over its threads, so work a phase does before its first or
//! after its last timed op (building path lists, removing a scratch file)
//! is not counted.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Times each operation of one thread in one phase.
pub struct Recorder<'a> {
    latencies_ns: Vec<u64>,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    /// Set by the signal thread: the next op fails with `Interrupted`.
    stop: &'a AtomicBool,
}

impl<'a> Recorder<'a> {
    pub fn new(stop: &'a AtomicBool) -> Recorder<'a> {
        Recorder { latencies_ns: Vec::new(), first_start: None, last_end: None, stop }
    }

    /// Run `op` once, timing it as one operation.
    pub fn op<T>(&mut self, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.timed(op, |_| true)
    }

    /// Run `op`, timing it as an operation when it returns `Some` (a
    /// directory read that found an entry); `None` counts in the wall time only.
    pub fn op_if_some<T>(&mut self, op: impl FnOnce() -> io::Result<Option<T>>) -> io::Result<Option<T>> {
        self.timed(op, Option::is_some)
    }

    /// Run work that belongs to the phase's wall time but is not one of its
    /// operations (opening the file a sequential phase then writes).
    pub fn step<T>(&mut self, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.timed(op, |_| false)
    }

    fn timed<T>(&mut self, op: impl FnOnce() -> io::Result<T>, is_op: impl Fn(&T) -> bool) -> io::Result<T> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted by a signal"));
        }
        let start = Instant::now();
        let out = op()?;
        let end = Instant::now();
        self.first_start.get_or_insert(start);
        self.last_end = Some(end);
        if is_op(&out) {
            let ns = u64::try_from(end.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
            self.latencies_ns.push(ns);
        }
        Ok(out)
    }
}

/// One phase at one thread count: what the report prints.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseStats {
    pub ops: u64,
    pub wall: Duration,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl PhaseStats {
    /// Merge the recorders of all threads of one phase.
    pub fn merge(recorders: Vec<Recorder<'_>>) -> PhaseStats {
        let first = recorders.iter().filter_map(|r| r.first_start).min();
        let last = recorders.iter().filter_map(|r| r.last_end).max();
        let wall = match (first, last) {
            (Some(a), Some(b)) => b.duration_since(a),
            _ => Duration::ZERO,
        };
        let mut all_ns: Vec<u64> = recorders.into_iter().flat_map(|r| r.latencies_ns).collect();
        all_ns.sort_unstable();
        PhaseStats {
            ops: all_ns.len() as u64,
            wall,
            p50_ns: percentile(&all_ns, 50.0),
            p99_ns: percentile(&all_ns, 99.0),
            max_ns: all_ns.last().copied().unwrap_or(0),
        }
    }

    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "percentile needs sorted input");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn merge_counts_every_thread_and_spans_their_ops() {
        let stop = AtomicBool::new(false);
        let mut a = Recorder::new(&stop);
        let mut b = Recorder::new(&stop);
        for _ in 0..3 {
            a.op(|| Ok(())).unwrap();
        }
        b.op(|| {
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        })
        .unwrap();
        b.step(|| Ok(())).unwrap();
        assert_eq!(b.op_if_some(|| Ok(None::<()>)).unwrap(), None);
        let s = PhaseStats::merge(vec![a, b]);
        assert_eq!(s.ops, 4, "steps and empty reads are not operations");
        assert!(s.max_ns >= 2_000_000 && s.wall >= Duration::from_millis(2));
        assert!(s.p50_ns <= s.p99_ns && s.p99_ns <= s.max_ns);
    }

    #[test]
    fn a_stopped_recorder_refuses_the_next_op() {
        let stop = AtomicBool::new(true);
        let mut r = Recorder::new(&stop);
        let err = r.op(|| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }
}
