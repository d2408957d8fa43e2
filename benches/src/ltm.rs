//! Larger than memory (`--ltm DIR`): holt-core, persistent, with a
//! buffer pool a fraction of the tree (1/8 by default, `--ltm-share`), so
//! most operations miss the cache; or LMDB (`--ltm-engine lmdb`), which
//! caches through the page cache. With `--ltm-cap` the process runs the
//! cells under a cgroup memory limit of that budget (`cgroup.rs`), page
//! cache included, and the cold cells start with the page cache dropped:
//! the two engines then get the same memory (holt-core's pool is half of
//! it: `CAP_POOL_SHARE`), and misses go to the disk. A process that
//! goes over the cap is killed by the kernel (`dmesg`: "Memory cgroup out
//! of memory"), its rows so far on stderr. Each cell reports its rate and what the
//! misses cost: hit ratio, frames loaded per operation, frames read per
//! miss, and bytes read per operation, as the engine counts them
//! (`TreeCounters::frames_read`, feature `read-counters`) and as the kernel counts the
//! process's reads (`rchar` of /proc/self/io: page-cache hits included, so
//! it measures the engine's reads, not the disk's), bytes written
//! (`wchar`: checkpoints' frame writes; not WAL appends through its mapping),
//! bytes the disk read (`read_bytes`: what the page cache did not hold),
//! requests the device holding the store completed per operation (reads
//! and writes of /sys/dev/block/MAJ:MIN/stat: the whole device's, so run
//! it alone; on this VM each request costs ~25 µs before its first byte,
//! benches/RESULTS.md runs 51-54) and CPU time per operation (all
//! threads), which a loaded machine's waits do not inflate as they do the
//! rate.
//!
//! Cells: bulk load in creation order (an untar), checkpoint, then after a
//! clean close and reopen (cold cache): uniform random gets, Zipfian gets
//! (YCSB's constant 0.99, hot keys scattered over the key space), listings
//! of random directories, gets of absent names in existing directories,
//! and fresh inserts into random directories. The cells run after a
//! second close and reopen: the first open after the load builds
//! holt-core's miss filter for every key (the one its close saved was
//! built while the load ran, for fewer keys), the second takes the filter
//! that open's close saved, as a store mounted before does; each open
//! waits until the filter answers and is sized for the keys
//! (`await_miss_filter`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cgroup::{drop_caches, MemoryCap};
use crate::engines::{Core, Durability, Kv, Res};
use crate::harness::secs;
use crate::peers::store::Store;
use crate::report::human;
use crate::workload::{inode_value, Dataset, Rng};
use crate::Opts;

const PROBE_SEED: u64 = 21;
const ZIPF_SEED: u64 = 22;
const LIST_SEED: u64 = 23;
const INSERT_SEED: u64 = 24;
const ABSENT_SEED: u64 = 25;
/// YCSB's Zipfian constant.
const ZIPF_THETA: f64 = 0.99;
/// The calibration tree holds every this-many-th key (memory mode).
const CALIBRATION_STRIDE: usize = 8;

/// What one cell measured.
pub struct Row {
    name: String,
    /// The rate's unit ("keys/s"); `None`: show the time taken instead.
    unit: Option<&'static str>,
    ops: u64,
    secs: f64,
    delta: Reads,
}

/// Counters sampled around a cell.
#[derive(Clone, Copy, Default)]
struct Reads {
    hits: u64,
    misses: u64,
    /// Frames and bytes the engine read (`None` where it cannot say).
    engine: Option<(u64, u64)>,
    rchar: u64,
    wchar: u64,
    /// Bytes the storage below the page cache read for the process.
    disk: u64,
    /// Requests the store's device completed (`None`: no block device).
    requests: Option<u64>,
    /// CPU time of every thread of the process (checkpointer included), in
    /// clock ticks: the work a cell cost, whatever it waited for.
    cpu_ticks: u64,
}

impl Reads {
    fn sample(t: &Engine) -> Res<Reads> {
        let (rchar, wchar, disk) = io_bytes()?;
        let (hits, misses, engine) = match t {
            Engine::Core(t) => {
                let c = t.0.counters();
                (c.cache_hits, c.cache_misses, engine_reads(t))
            }
            Engine::Other(_) => (0, 0, None),
        };
        Ok(Reads { hits, misses, engine, rchar, wchar, disk, requests: device_requests(), cpu_ticks: cpu_ticks()? })
    }

    fn since(self, before: Reads) -> Reads {
        let engine = match (self.engine, before.engine) {
            (Some((f, b)), Some((f0, b0))) => Some((f - f0, b - b0)),
            _ => None,
        };
        Reads {
            hits: self.hits - before.hits,
            misses: self.misses - before.misses,
            engine,
            rchar: self.rchar - before.rchar,
            wchar: self.wchar - before.wchar,
            disk: self.disk - before.disk,
            requests: self.requests.zip(before.requests).map(|(r, r0)| r - r0),
            cpu_ticks: self.cpu_ticks - before.cpu_ticks,
        }
    }
}

#[cfg(feature = "read-counters")]
fn engine_reads(t: &Core) -> Option<(u64, u64)> {
    let c = t.0.counters();
    Some((c.frames_read, c.frame_bytes_read))
}

/// Built against a holt-core whose counters lack frame reads (a "before" binary).
#[cfg(not(feature = "read-counters"))]
fn engine_reads(_: &Core) -> Option<(u64, u64)> {
    None
}

/// Bytes this process has read and written through read(2)- and
/// write(2)-like calls (WAL appends through its mapping do not count), and
/// bytes the storage read for it (faults of mapped files included).
fn io_bytes() -> Res<(u64, u64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io").map_err(|e| format!("/proc/self/io: {e}"))?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/self/io"))
    };
    Ok((field("rchar:")?, field("wchar:")?, field("read_bytes:")?))
}

/// The block device statistics of the device holding the run's store,
/// set once by `run`; `None` where the store is on no block device.
static DEVICE_STAT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The statistics file of the block device `dir` lives on, if it has one.
fn device_stat_of(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let path = PathBuf::from(format!("/sys/dev/block/{}:{}/stat", libc::major(dev), libc::minor(dev)));
    path.exists().then_some(path)
}

/// Reads plus writes the store's device has completed since boot
/// (fields 1 and 5 of its `stat`: Documentation/block/stat.rst).
fn device_requests() -> Option<u64> {
    let path = DEVICE_STAT.get()?.as_ref()?;
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<u64> = stat.split_whitespace().map_while(|f| f.parse().ok()).collect();
    Some(fields.first()? + fields.get(4)?)
}

/// Clock ticks per second of /proc times (USER_HZ: 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of this process so far, in clock ticks.
fn cpu_ticks() -> Res<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| "no ')' in /proc/self/stat".to_string())?;
    let field = |n: usize| rest.split_whitespace().nth(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).zip(field(15)).map(|(u, s)| u + s).ok_or_else(|| "no utime/stime in /proc/self/stat".to_string())
}

/// The engine the cells drive.
enum Engine {
    Core(Core),
    /// An engine of the peer run (LMDB): no cache counters of its own.
    Other(Box<dyn Store>),
}

impl Engine {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
        match self {
            Engine::Core(t) => Kv::get(t, key),
            Engine::Other(s) => s.get(key),
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        match self {
            Engine::Core(t) => Kv::put(t, key, value),
            Engine::Other(s) => s.put(key, value),
        }
    }

    /// Entries of a delimiter listing of `prefix`.
    fn list(&self, prefix: &[u8]) -> Res<usize> {
        match self {
            Engine::Core(t) => Kv::list_dir(t, prefix).map(|(n, _)| n),
            Engine::Other(s) => s.list(prefix).map(|(n, _)| n),
        }
    }

    fn settle(&self) -> Res<()> {
        match self {
            Engine::Core(t) => Kv::checkpoint(t),
            Engine::Other(s) => s.settle(),
        }
    }

    fn shape(&self) -> String {
        match self {
            Engine::Core(t) => Kv::shape(t),
            Engine::Other(s) => s.shape(),
        }
    }
}

/// Run `work` (returning its operation count) on `t` and measure it.
fn measure(t: &Engine, name: String, unit: Option<&'static str>, work: impl FnOnce() -> Res<u64>) -> Res<Row> {
    let before = Reads::sample(t)?;
    let start = Instant::now();
    let ops = work()?;
    let secs = secs(start.elapsed());
    let delta = Reads::sample(t)?.since(before);
    let row = Row { name, unit, ops, secs, delta };
    eprintln!("ltm: {}", row_line(&row));
    Ok(row)
}

/// Zipfian ranks in `0..n` (Gray et al., "Quickly generating billion-record
/// synthetic databases", as YCSB draws them): rank 0 is the hottest.
struct Zipf {
    n: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let zeta = |k: usize| (1..=k).map(|i| 1.0 / (i as f64).powf(ZIPF_THETA)).sum::<f64>();
        let (zetan, zeta2) = (zeta(n), zeta(2));
        let nf = n as f64;
        let eta = (1.0 - (2.0 / nf).powf(1.0 - ZIPF_THETA)) / (1.0 - zeta2 / zetan);
        Zipf { n: nf, alpha: 1.0 / (1.0 - ZIPF_THETA), zetan, eta }
    }

    fn next(&self, rng: &mut Rng) -> usize {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(ZIPF_THETA) {
            return 1;
        }
        let rank = self.n * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (rank as usize).min(self.n as usize - 1)
    }
}

/// Frames the whole data set will take, from a memory tree holding every
/// `CALIBRATION_STRIDE`-th key, and the pool that is `share` of it.
fn pool_for(ds: &Dataset, share: usize) -> Res<(u64, usize)> {
    let t = Core::memory(1 << 20)?;
    for i in (0..ds.keys.len()).step_by(CALIBRATION_STRIDE) {
        Kv::put(&t, &ds.keys[i], &ds.values[i])?;
    }
    let frames = t.0.stats().map_err(|e| e.to_string())?.frames * CALIBRATION_STRIDE as u64;
    Ok((frames, (frames as usize / share).max(holt_core::POOL_FRAMES_MIN)))
}

fn gets(t: &Engine, ds: &Dataset, indices: impl Iterator<Item = usize>) -> Res<u64> {
    let mut n = 0;
    for i in indices {
        match t.get(&ds.keys[i])? {
            Some(v) if v == ds.values[i] => n += 1,
            _ => return Err(format!("key {:?} missing or wrong", ds.keys[i])),
        }
    }
    Ok(n)
}

fn lists(t: &Engine, ds: &Dataset, count: usize) -> Res<u64> {
    let mut rng = Rng::new(LIST_SEED);
    for _ in 0..count {
        let dir = &ds.dirs[rng.below(ds.dirs.len())];
        let n = t.list(&dir.prefix)?;
        if n != dir.len {
            return Err(format!("list_dir {:?}: {n} entries, expected {}", dir.prefix, dir.len));
        }
    }
    Ok(count as u64)
}

/// A name no store holds, in a random existing directory.
fn absent_name(ds: &Dataset, rng: &mut Rng, i: usize) -> Vec<u8> {
    ds.in_random_dir(rng, &format!("ltm-absent-{i:08}"))
}

fn misses(t: &Engine, ds: &Dataset, count: usize) -> Res<u64> {
    let mut rng = Rng::new(ABSENT_SEED);
    for i in 0..count {
        let key = absent_name(ds, &mut rng, i);
        if t.get(&key)?.is_some() {
            return Err(format!("absent key {key:?} found"));
        }
    }
    Ok(count as u64)
}

/// How long the run waits for holt-core's miss filter after a reopen.
const FILTER_WAIT: Duration = Duration::from_secs(300);

/// holt-core takes the filter its last clean close saved, or builds one
/// of every key in the background after open (for a tree larger than its
/// cache, from a snapshot read around the cache), and builds again while
/// the one it has is sized for fewer keys than the tree holds: wait until
/// it answers misses and until it is sized for the keys, at most
/// `FILTER_WAIT`, and say how long after `opened` each was (a mounted
/// filesystem's lookups of absent names cost a walk, and here a read,
/// until the first; a build reads the whole frame file until the second).
fn await_miss_filter(t: &Engine, ds: &Dataset, opened: Instant) -> Res<()> {
    let Engine::Core(c) = t else { return Ok(()) };
    let mut rng = Rng::new(ABSENT_SEED ^ 1);
    let probes: Vec<Vec<u8>> = (0..8).map(|i| absent_name(ds, &mut rng, i)).collect();
    let mut answered = false;
    loop {
        let before = c.0.counters().miss_filter_answers;
        for key in &probes {
            Kv::get(c, key)?;
        }
        if !answered && c.0.counters().miss_filter_answers > before {
            println!("ltm: holt-core's miss filter answered {:.1} s after the reopen", secs(opened.elapsed()));
            answered = true;
        }
        let counters = c.0.counters();
        if answered && counters.miss_filter_capacity >= counters.keys {
            let at = secs(opened.elapsed());
            println!("ltm: ... sized for its {} keys {at:.1} s after the reopen", counters.keys);
            return Ok(());
        }
        if opened.elapsed() > FILTER_WAIT {
            println!("ltm: holt-core had no miss filter for its keys {FILTER_WAIT:?} after the reopen");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inserts(t: &Engine, ds: &Dataset, count: usize) -> Res<u64> {
    let mut rng = Rng::new(INSERT_SEED);
    for i in 0..count {
        let key = ds.in_random_dir(&mut rng, &format!("ltm-new-{i:08}"));
        t.put(&key, &inode_value(&mut rng, i as u64))?;
    }
    Ok(count as u64)
}

/// Pool frames holt-core gets of a memory budget under `--ltm-cap`. The
/// engine holds its cache within the pool and an eighth while writes go
/// on, a checkpoint's images within the pool's unused room and a few
/// spares, and warm free buffers within a sixteenth of the pool; the rest
/// is the engine's fixed memory (spare images, the WAL's mapping,
/// threads), this program's own arrays (a probe order of every key) and
/// the files' pages. With a third of the budget before the engine kept
/// those bounds the load peaked at the cap, and with half of it the
/// cgroup killed it in 11 of 14 runs; with half of it now the 2M-key run
/// peaks at 43-46 of 61 MiB (benches/RESULTS.md run 50).
const CAP_POOL_SHARE: (usize, usize) = (1, 2);

/// Opens the run's engine in `dir` with a budget of `pool` frames.
fn opener(opts: &Opts, dir: &Path, pool: usize) -> Res<impl Fn() -> Res<Engine>> {
    let core_pool = if opts.ltm_cap { (pool * CAP_POOL_SHARE.0 / CAP_POOL_SHARE.1).max(holt_core::POOL_FRAMES_MIN) } else { pool };
    let lmdb = match opts.ltm_engine.as_str() {
        "holt-core" => false,
        "lmdb" => true,
        other => return Err(format!("--ltm-engine {other}: holt-core or lmdb")),
    };
    let (dir, capped) = (dir.to_path_buf(), opts.ltm_cap);
    // Under the cap the page cache counts against the same budget as the
    // pool: holt-core reads around it, as holt-fs does under a limit.
    Ok(move || match lmdb {
        true => crate::peers::lmdb::open_larger_than_memory(&dir, Durability::Ack).map(Engine::Other),
        false => Core::persistent_reading(&dir, core_pool, Durability::Ack, capped).map(Engine::Core),
    })
}

/// Every cell, in order, on a fresh store in `root/<engine>-ltm`.
pub fn run(ds: &Dataset, opts: &Opts, root: &Path) -> Res<Vec<Row>> {
    let (frames_est, pool) = pool_for(ds, opts.ltm_share)?;
    let dir = root.join(format!("{}-ltm", opts.ltm_engine));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    DEVICE_STAT.get_or_init(|| device_stat_of(&dir));
    let budget = pool as u64 * (holt_core::FRAME_BYTES as u64);
    let cap = opts.ltm_cap.then(|| MemoryCap::enter(budget)).transpose()?;
    let open = opener(opts, &dir, pool)?;
    let mut rows = Vec::new();
    let t = open()?;
    let creation = |t: &Engine| -> Res<u64> {
        for (k, v) in ds.keys.iter().zip(&ds.values) {
            t.put(k, v)?;
        }
        Ok(ds.keys.len() as u64)
    };
    rows.push(measure(&t, "bulk load (creation order, like an untar)".into(), Some("keys/s"), || creation(&t))?);
    rows.push(measure(&t, "checkpoint after the load".into(), None, || t.settle().map(|()| 1))?);
    let on_disk = dir_bytes(&dir)?;
    println!(
        "ltm: {}: budget {pool} frames ({} MiB{}) for a tree of {frames_est} frames (estimated), 1/{:.1}; files {} MiB",
        opts.ltm_engine,
        budget >> 20,
        if opts.ltm_cap { ", a cgroup cap" } else { "" },
        frames_est as f64 / pool as f64,
        on_disk >> 20
    );
    // The cells measure the tree as it serves once its filter is built:
    // the build's scan (from a snapshot, around the cache) reads the whole
    // frame file, and cells running beside it would count its reads and
    // CPU as theirs (RESULTS run 37 measures them side by side).
    let mut t = t;
    for _ in 0..2 {
        drop(t);
        if cap.is_some() {
            drop_caches()?;
        }
        t = open()?;
        await_miss_filter(&t, ds, Instant::now())?;
    }
    let ops = opts.ltm_ops;
    let probe = ds.order(PROBE_SEED);
    let uniform = probe.iter().cycle().take(ops).map(|&i| i as usize);
    let name = "get, uniform random (cold cache after reopen)".to_string();
    rows.push(measure(&t, name, Some("ops/s"), || gets(&t, ds, uniform))?);
    let zipf = Zipf::new(ds.keys.len());
    let mut rng = Rng::new(ZIPF_SEED);
    let skewed: Vec<usize> = (0..ops).map(|_| probe[zipf.next(&mut rng)] as usize).collect();
    rows.push(measure(&t, format!("get, Zipfian {ZIPF_THETA}"), Some("ops/s"), || gets(&t, ds, skewed.into_iter()))?);
    rows.push(measure(&t, "list_dir of a random directory".into(), Some("dirs/s"), || lists(&t, ds, ops / 10))?);
    let name = "get, absent name in an existing directory".to_string();
    rows.push(measure(&t, name, Some("ops/s"), || misses(&t, ds, ops))?);
    let name = "insert fresh into random directories".to_string();
    rows.push(measure(&t, name, Some("keys/s"), || inserts(&t, ds, ops / 10))?);
    eprintln!("ltm: after the cells: {}", t.shape());
    if let Some(cap) = &cap {
        println!("ltm: the cap's peak use {} MiB of {} MiB", cap.peak_bytes()? >> 20, budget >> 20);
    }
    Ok(rows)
}

/// Bytes of the files under `dir` (one level of subdirectories deep).
fn dir_bytes(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let meta = e.metadata().map_err(|e| e.to_string())?;
        total += if meta.is_dir() { dir_bytes(&e.path())? } else { meta.len() };
    }
    Ok(total)
}

fn per_op(x: u64, ops: u64) -> f64 {
    x as f64 / ops.max(1) as f64
}

fn row_line(r: &Row) -> String {
    let d = &r.delta;
    let lookups = d.hits + d.misses;
    let hit = if lookups == 0 { 1.0 } else { d.hits as f64 / lookups as f64 };
    let (per_miss, engine_bytes) = match d.engine {
        Some((frames, bytes)) => (format!("{:.2}", per_op(frames, d.misses)), human(per_op(bytes, r.ops))),
        None => ("n/a".into(), "n/a".into()),
    };
    let rate = match r.unit {
        Some(unit) => format!("{} {unit}", human(r.ops as f64 / r.secs)),
        None => format!("{:.0} ms", r.secs * 1e3),
    };
    let cpu_us = d.cpu_ticks as f64 / TICKS_PER_SEC * 1e6 / r.ops.max(1) as f64;
    format!(
        "| {} | {} | {} | {} | {:.3} | {:.2} | {} | {} | {} | {} | {} | {} |",
        r.name,
        r.ops,
        rate,
        human(cpu_us),
        hit,
        per_op(d.misses, r.ops),
        per_miss,
        engine_bytes,
        human(per_op(d.rchar, r.ops)),
        human(per_op(d.wchar, r.ops)),
        human(per_op(d.disk, r.ops)),
        d.requests.map_or("n/a".into(), |n| format!("{:.2}", per_op(n, r.ops))),
    )
}

/// The Markdown table of the cells, as it goes into RESULTS.md.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| cell | ops | rate | CPU µs / op | hit ratio | frames loaded / op | frames read / miss \
         | bytes read / op (engine) | bytes read / op (rchar) | bytes written / op (wchar) | disk bytes read / op \
         | device requests / op |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &row_line(r);
        s.push('\n');
    }
    s
}
