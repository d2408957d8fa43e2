//! The request counters: per opcode, a latency histogram, the summed
//! latency and the errors by errno; and the data bytes served.
//!
//! Recording is a handful of relaxed atomic adds on the recording
//! thread's own shard: no lock, no allocation, and no cache line shared
//! with another FUSE thread, so counting costs the same at any thread
//! count (`record_cost` measures it). Reading sums the shards; it may
//! run at any time, and sees each shard's counts as of some moment
//! during the read.
//!
//! Invariants:
//! - an op's request count is the sum of its buckets: there is no
//!   separate count to disagree with the histogram;
//! - a reading never shows more errors for an op than requests: a
//!   recorder adds to a bucket before it adds (Release) to the error,
//!   and a reader loads the errors (Acquire) before the buckets.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use super::errno::{self, ERRNO_MAX};
use super::histogram::{bucket_of, BUCKETS};
use super::op::Op;

/// Shards: each FUSE thread gets one of its own up to this many threads.
const SHARDS: usize = 8;

struct OpCells {
    buckets: [AtomicU64; BUCKETS],
    nanos: AtomicU64,
    /// By [`errno::slot`].
    errors: [AtomicU64; ERRNO_MAX + 1],
}

impl OpCells {
    fn zero() -> OpCells {
        OpCells {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            nanos: AtomicU64::new(0),
            errors: [const { AtomicU64::new(0) }; ERRNO_MAX + 1],
        }
    }
}

/// One thread's counters, aligned so no two shards share a cache line.
#[repr(align(128))]
struct Shard {
    ops: [OpCells; Op::COUNT],
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
}

impl Shard {
    fn boxed() -> Box<Shard> {
        let ops = std::array::from_fn(|_| OpCells::zero());
        Box::new(Shard { ops, read_bytes: AtomicU64::new(0), write_bytes: AtomicU64::new(0) })
    }
}

/// The counters of one daemon. `Send + Sync`; share it by `Arc`.
pub struct Requests {
    shards: Box<[Box<Shard>]>,
}

impl Default for Requests {
    fn default() -> Self {
        Requests { shards: (0..SHARDS).map(|_| Shard::boxed()).collect() }
    }
}

/// This thread's shard, assigned round robin at its first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static MINE: Cell<usize> = const { Cell::new(usize::MAX) });
    MINE.with(|m| {
        if m.get() == usize::MAX {
            m.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        m.get()
    })
}

/// One op's counts as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpTotals {
    pub op: Op,
    /// Requests per latency bucket (`histogram`), not cumulative.
    pub buckets: [u64; BUCKETS],
    /// Latencies summed, in nanoseconds.
    pub nanos: u64,
    /// `(errno::slot, count)` for every errno seen, in slot order.
    pub errors: Vec<(usize, u64)>,
}

impl OpTotals {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Every counter as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTotals {
    /// One entry per op, in [`Op::ALL`] order.
    pub ops: Vec<OpTotals>,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl Requests {
    /// Count one request of `op` answered in `ns` nanoseconds, with
    /// `errno` (0: success).
    #[inline]
    pub fn record(&self, op: Op, ns: u64, errno: i32) {
        let cells = &self.shards[shard_index()].ops[op.index()];
        cells.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        cells.nanos.fetch_add(ns, Relaxed);
        if errno != 0 {
            cells.errors[errno::slot(errno)].fetch_add(1, Release);
        }
    }

    /// Bytes returned by a READ request.
    pub fn add_read_bytes(&self, n: u64) {
        self.shards[shard_index()].read_bytes.fetch_add(n, Relaxed);
    }

    /// Bytes taken by a WRITE request.
    pub fn add_write_bytes(&self, n: u64) {
        self.shards[shard_index()].write_bytes.fetch_add(n, Relaxed);
    }

    fn op_totals(&self, op: Op) -> OpTotals {
        let mut errors = [0u64; ERRNO_MAX + 1];
        for shard in self.shards.iter() {
            for (sum, cell) in errors.iter_mut().zip(&shard.ops[op.index()].errors) {
                *sum += cell.load(Acquire);
            }
        }
        let mut t = OpTotals { op, buckets: [0; BUCKETS], nanos: 0, errors: Vec::new() };
        for shard in self.shards.iter() {
            let cells = &shard.ops[op.index()];
            for (sum, cell) in t.buckets.iter_mut().zip(&cells.buckets) {
                *sum += cell.load(Relaxed);
            }
            t.nanos += cells.nanos.load(Relaxed);
        }
        t.errors = errors.iter().enumerate().filter(|(_, &n)| n > 0).map(|(slot, &n)| (slot, n)).collect();
        t
    }

    pub fn totals(&self) -> RequestTotals {
        let sum = |f: fn(&Shard) -> &AtomicU64| self.shards.iter().map(|s| f(s).load(Relaxed)).sum();
        RequestTotals {
            ops: Op::ALL.iter().map(|&op| self.op_totals(op)).collect(),
            read_bytes: sum(|s| &s.read_bytes),
            write_bytes: sum(|s| &s.write_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::metrics::histogram::bound_ns;

    #[test]
    fn counts_land_in_their_op_bucket_and_errno() {
        let r = Requests::default();
        r.record(Op::Lookup, 500, 0);
        r.record(Op::Lookup, 3000, libc::ENOENT);
        r.record(Op::Lookup, 3000, libc::ENOENT);
        r.record(Op::Create, bound_ns(0) + 1, libc::EEXIST);
        r.add_read_bytes(4096);
        r.add_write_bytes(10);
        let t = r.totals();
        let lookup = &t.ops[Op::Lookup.index()];
        assert_eq!((lookup.count(), lookup.nanos), (3, 6500));
        assert_eq!((lookup.buckets[0], lookup.buckets[2]), (1, 2));
        assert_eq!(lookup.errors, [(libc::ENOENT as usize, 2)]);
        assert_eq!(t.ops[Op::Create.index()].buckets[1], 1);
        assert_eq!(t.ops[Op::Getattr.index()].count(), 0);
        assert_eq!((t.read_bytes, t.write_bytes), (4096, 10));
    }

    #[test]
    fn threads_count_into_their_shards_and_reads_sum_them() {
        let r = Arc::new(Requests::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        r.record(Op::Getattr, i, if i % 10 == 0 { libc::EIO } else { 0 });
                    }
                })
            })
            .collect();
        // Read while they count: never more errors than requests.
        while !threads.iter().all(|t| t.is_finished()) {
            let t = r.totals();
            let g = &t.ops[Op::Getattr.index()];
            assert!(g.errors.iter().map(|e| e.1).sum::<u64>() <= g.count());
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        let g = &r.totals().ops[Op::Getattr.index()];
        assert_eq!((g.count(), g.errors.clone()), (12_000, vec![(libc::EIO as usize, 1200)]));
        assert_eq!(g.nanos, 12 * (0..1000).sum::<u64>());
    }

    /// CPU nanoseconds this thread has run.
    fn thread_cpu_ns() -> u64 {
        // SAFETY: clock_gettime fills the timespec we pass.
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Thread CPU nanoseconds per iteration of `f`, on each of `threads`
    /// threads at once (CPU time, so a loaded machine's waits are not in it).
    fn cost_ns(threads: usize, f: &(dyn Fn() + Sync)) -> Vec<f64> {
        const N: u64 = 2_000_000;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let started = thread_cpu_ns();
                        for _ in 0..N {
                            f();
                        }
                        (thread_cpu_ns() - started) as f64 / N as f64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// The cost a request pays for being counted: the two clock reads of
    /// its timer and `record`, apart and together, at 1 to 4 threads all
    /// counting the same op. Run with
    /// `cargo test --release -p holt-mount --lib record_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn record_cost() {
        let r = Requests::default();
        let clock = || {
            std::hint::black_box(Instant::now().elapsed());
        };
        let record = || std::hint::black_box(&r).record(Op::Lookup, std::hint::black_box(5000), 0);
        let both = || {
            let t = Instant::now();
            std::hint::black_box(&r).record(Op::Lookup, t.elapsed().as_nanos() as u64, 0);
        };
        for (what, f) in [("clock reads", &clock as &(dyn Fn() + Sync)), ("record", &record), ("clock + record", &both)] {
            for threads in [1usize, 2, 4] {
                let ns: Vec<String> = cost_ns(threads, f).iter().map(|ns| format!("{ns:.1}")).collect();
                println!("record_cost: {what:<15} {threads} thread(s): {} ns of CPU per request", ns.join(" / "));
            }
        }
        let started = thread_cpu_ns();
        for _ in 0..1000 {
            std::hint::black_box(r.totals());
        }
        println!("record_cost: reading every counter (totals): {:.1} us of CPU", (thread_cpu_ns() - started) as f64 / 1e6);
    }
}
