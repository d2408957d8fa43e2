//! `holt-bench --tail DIR`: holt-core's write latency under a sustained
//! single-put load with its checkpoints running, each put timed together
//! with its thread's context switches and CPU time, so the tail can be
//! told apart: a put the scheduler preempted (an involuntary switch:
//! another thread or process had the core), one that blocked in the engine
//! (a voluntary switch: a lock, a sync), one whose thread was on the CPU
//! for less than half of it with no switch (the virtual CPU itself was not
//! running: the hypervisor's steal time, which the guest cannot see as a
//! switch), and one on the CPU (work in the put itself). The engine's own
//! tail is the longest CPU time of a put.
//!
//! Two phases on one fresh store, reported apart: the load of the data set
//! (one put per key, random order), then as many puts over random existing
//! keys (same length, changed bytes), which keep every frame dirtying and
//! the checkpointer busy. Acknowledged at `write(2)`, as the `ack` cells.

use std::path::Path;
use std::time::Instant;

use holt_core::TreeCounters;

use crate::engines::{Core, Durability, Res};
use crate::workload::Dataset;
use crate::Opts;

const LOAD_ORDER_SEED: u64 = 41;
const UPDATE_ORDER_SEED: u64 = 42;
/// A put slower than this counts in the tail's breakdown.
const SLOW_NS: u64 = 1_000_000;

/// One put: nanoseconds, the thread's CPU time during it, and whether it
/// made voluntary or involuntary context switches.
#[derive(Clone, Copy)]
struct Put {
    ns: u64,
    cpu_ns: u64,
    blocked: bool,
    preempted: bool,
}

impl Put {
    /// Neither switched nor on the CPU for half its time: the hypervisor
    /// did not run this virtual CPU.
    fn stolen(&self) -> bool {
        !self.blocked && !self.preempted && self.cpu_ns * 2 < self.ns
    }
}

/// This thread's (voluntary, involuntary) context switches so far.
fn switches() -> (i64, i64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    (u.ru_nvcsw, u.ru_nivcsw)
}

/// This thread's CPU time so far, in nanoseconds (`getrusage`'s times
/// move in scheduler ticks here, 4 ms apart).
fn cpu_ns() -> u64 {
    // SAFETY: clock_gettime fills the zeroed struct it is given.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn timed_puts(t: &Core, pairs: impl ExactSizeIterator<Item = (Vec<u8>, Vec<u8>)>) -> Res<Vec<Put>> {
    // Sized up front: growing it would `mremap` tens of MiB between two
    // timed puts, which can wait on the process's `mmap_lock` (the
    // engine's flusher maps and unmaps) and show as a slow put.
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let (before, cpu_before) = (switches(), cpu_ns());
        let start = Instant::now();
        t.0.put(&k, &v).map_err(|e| e.to_string())?;
        let ns = start.elapsed().as_nanos() as u64;
        let (cpu, after) = (cpu_ns() - cpu_before, switches());
        out.push(Put { ns, cpu_ns: cpu, blocked: after.0 > before.0, preempted: after.1 > before.1 });
    }
    Ok(out)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// One line: percentiles, the max of puts neither preempted nor stolen,
/// the longest CPU time of a put, the slow puts by cause, the checkpoints
/// the phase ran and what they cost writers.
fn report(phase: &str, mut puts: Vec<Put>, c: &TreeCounters, checkpoints: u64) {
    let slow = |f: &dyn Fn(&Put) -> bool| puts.iter().filter(|p| p.ns > SLOW_NS && f(p)).count();
    let (preempted, blocked) = (slow(&|p| p.preempted), slow(&|p| p.blocked && !p.preempted));
    let (stolen, on_cpu) = (slow(&|p| p.stolen()), slow(&|p| !p.blocked && !p.preempted && !p.stolen()));
    let max_of = |f: &dyn Fn(&Put) -> bool| puts.iter().filter(|p| f(p)).map(|p| p.ns).max().unwrap_or(0);
    let quiet_max = max_of(&|p| !p.preempted && !p.stolen());
    let blocked_max = max_of(&|p| p.blocked && !p.preempted);
    let cpu_max = puts.iter().map(|p| p.cpu_ns).max().unwrap_or(0);
    puts.sort_unstable_by_key(|p| p.ns);
    let at = |q: f64| puts[((puts.len() as f64 * q) as usize).min(puts.len() - 1)].ns;
    println!(
        "{phase}: {} puts, {checkpoints} checkpoints; latency p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs; \
         max neither preempted nor stolen {:.1} µs (blocked in the engine: {:.1} µs); longest CPU time of a put {:.1} µs; \
         puts over 1 ms: {preempted} preempted, {blocked} blocked, {stolen} stolen by the host, {on_cpu} on the CPU; \
         longest checkpoint cut so far {:.1} µs, longest frame copy {:.1} µs, frames copied by writers {}; longest WAL rotation so far {:.1} µs; spills so far {} ({} made ahead of the writer; mean {:.1} µs, longest {:.1} µs)",
        puts.len(),
        us(at(0.99)),
        us(at(0.999)),
        us(puts.last().map_or(0, |p| p.ns)),
        us(quiet_max),
        us(blocked_max),
        us(cpu_max),
        us(c.checkpoint_cut_nanos_max),
        us(c.checkpoint_frame_copy_nanos_max),
        c.checkpoint_copies_on_write,
        us(c.wal_rotation_nanos_max),
        c.spills,
        c.spills_ahead,
        us(c.spill_nanos.checked_div(c.spills).unwrap_or(0)),
        us(c.spill_nanos_max),
    );
}

pub fn run(ds: &Dataset, opts: &Opts, dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    let t = Core::persistent_ahead(dir, opts.pool_frames, Durability::Ack, opts.room_ahead)?;
    let load =
        ds.order(LOAD_ORDER_SEED).into_iter().map(|i| (ds.keys[i as usize].clone(), ds.values[i as usize].clone()));
    let puts = timed_puts(&t, load)?;
    let loaded = t.0.counters();
    report("load", puts, &loaded, loaded.checkpoints);
    let updates = ds.order(UPDATE_ORDER_SEED).into_iter().map(|i| {
        let mut v = ds.values[i as usize].clone();
        v[8] ^= 0x5a;
        (ds.keys[i as usize].clone(), v)
    });
    let puts = timed_puts(&t, updates)?;
    let updated = t.0.counters();
    report("updates", puts, &updated, updated.checkpoints - loaded.checkpoints);
    drop(t);
    std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))
}
