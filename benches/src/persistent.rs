//! Persistent-mode cells (`--persistent DIR`): fresh inserts acknowledged to
//! the OS, warm gets, checkpoint, on-disk bytes per entry, reopen time, and
//! updates with an fsync per commit (1 and 2 threads, so group commit shows).
//! An engine whose persistent mode fails to open reports
//! "persistent mode unavailable: <error>" in its column instead of failing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cells::{gets_checked, load, Better, Cell};
use crate::engines::{Core, Durability, Holt03, Kv, Res};
use crate::harness::{parallel, profiled, rate, secs, Rates};
use crate::workload::Dataset;
use crate::Opts;

const INSERT_ORDER_SEED: u64 = 11;
const PROBE_ORDER_SEED: u64 = 12;
/// Clean close + reopen cycles timed (the cell reports their median).
const REOPENS: usize = 5;
/// Keys read back after reopen to check the store survived the close.
const REOPEN_CHECK_KEYS: usize = 10_000;
/// Wall time of each fsync-per-commit cell.
const FSYNC_CELL_TIME: Duration = Duration::from_secs(3);

/// The measurements of one engine, each an error string where unavailable.
struct Measured {
    insert: Res<Vec<f64>>,
    get: Res<f64>,
    checkpoint_ms: Res<Vec<f64>>,
    bytes_per_entry: Res<f64>,
    apparent_per_entry: Res<f64>,
    reopen_ms: Res<Vec<f64>>,
    fsync: [Res<f64>; 2],
}

impl Measured {
    fn failed(why: &str) -> Self {
        let e = || Err(why.to_string());
        Measured {
            insert: Err(why.to_string()),
            get: e(),
            checkpoint_ms: Err(why.to_string()),
            bytes_per_entry: e(),
            apparent_per_entry: e(),
            reopen_ms: Err(why.to_string()),
            fsync: [e(), e()],
        }
    }
}

/// Bytes of every file under `dir`: (allocated on disk as `du` counts
/// them, apparent length as `ls -l` shows it). They differ for sparse files.
/// holt-core's `RESERVE` is left out: free space held for a full disk, the
/// same 16 MiB whatever the data, not bytes the entries take.
pub fn dir_bytes(dir: &Path) -> Res<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut allocated, mut apparent) = (0, 0);
    for e in std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_name() == "RESERVE" {
            continue;
        }
        let m = e.metadata().map_err(|e| e.to_string())?;
        let (al, ap) = if m.is_dir() { dir_bytes(&e.path())? } else { (m.blocks() * 512, m.len()) };
        allocated += al;
        apparent += ap;
    }
    Ok((allocated, apparent))
}

fn fresh_dir(root: &Path, slug: &str) -> Res<PathBuf> {
    let dir = root.join(slug);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Times `REOPENS` clean close + open + first get cycles, then checks that
/// the last reopened store still holds what was loaded.
fn reopens<K: Kv>(open: &impl Fn(&Path, Durability) -> Res<K>, dir: &Path, ds: &Dataset, probe: &[u32]) -> Res<Vec<f64>> {
    let mut times = Vec::with_capacity(REOPENS);
    for i in 0..REOPENS {
        let start = Instant::now();
        let t = open(dir, Durability::Ack).map_err(|e| format!("reopen: {e}"))?;
        t.get(&ds.keys[probe[i] as usize]).map_err(|e| format!("get after reopen: {e}"))?;
        times.push(secs(start.elapsed()) * 1e3);
        if i + 1 == REOPENS {
            gets_checked(&t, ds, &probe[..probe.len().min(REOPEN_CHECK_KEYS)])?;
        }
    }
    Ok(times)
}

/// Updates until the deadline; the rate counts only what committed.
fn fsync_updates<K: Kv>(t: &K, ds: &Dataset, probe: &[u32], threads: usize) -> Res<f64> {
    parallel(threads, probe, |_, part| {
        let deadline = Instant::now() + FSYNC_CELL_TIME;
        let mut done = 0;
        for &i in part {
            if Instant::now() >= deadline {
                break;
            }
            let mut v = ds.values[i as usize].clone();
            v[8] ^= 0x5a;
            t.put(&ds.keys[i as usize], &v)?;
            done += 1;
        }
        Ok(done)
    })
}

/// Load rates and the checkpoint right after each load (ms), per rep, and
/// the store of the last rep, still open.
type Loaded<K> = Res<(Vec<f64>, Vec<f64>, K)>;

/// How to open an engine's store, where, and its tag ("core" or "holt").
type Engine<'a, K> = (&'a dyn Fn(&Path, Durability) -> Res<K>, &'a Path, &'static str);

/// One load of a fresh, emptied store in `dir`, then a timed checkpoint
/// (before any background checkpoint can take its work), then `settle`.
/// `engine` names it for the profiling hook (`HOLT_BENCH_PROFILE=pload:core`).
fn load_fresh<K: Kv>(e: &Engine<'_, K>, ds: &Dataset) -> Res<(f64, f64, K)> {
    let (open, dir, engine) = *e;
    std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let t = open(dir, Durability::Ack)?;
    let order = ds.order(INSERT_ORDER_SEED);
    let rate = profiled("pload", engine, || rate(|| load(&t, ds, &order)))?;
    let start = Instant::now();
    t.checkpoint()?;
    let checkpoint_ms = secs(start.elapsed()) * 1e3;
    settle();
    Ok((rate, checkpoint_ms, t))
}

/// Write back every dirty page in the system (untimed), so the writeback
/// one engine's load and checkpoint leave behind (holt 0.3.0's checkpoint
/// dirties ~2 GB) is not done by the kernel during the other engine's load.
fn settle() {
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("sync between persistent loads failed ({e}); loads may overlap writeback");
    }
}

/// `reps` loads of each engine, interleaved (A B A B ...) as the memory
/// cells are, so the writeback and cache state one load leaves behind falls
/// on both engines alike. Each engine's previous store is closed before it
/// is emptied; the last ones stay open for the other cells.
fn loads<A: Kv, B: Kv>(a: &Engine<'_, A>, b: &Engine<'_, B>, ds: &Dataset, reps: usize) -> (Loaded<A>, Loaded<B>) {
    fn next<K: Kv>(acc: Loaded<K>, e: &Engine<'_, K>, ds: &Dataset) -> Loaded<K> {
        let (mut rates, mut checkpoints, previous) = acc?;
        drop(previous);
        let (rate, checkpoint_ms, t) = load_fresh(e, ds)?;
        rates.push(rate);
        checkpoints.push(checkpoint_ms);
        Ok((rates, checkpoints, t))
    }
    fn first<K: Kv>(e: &Engine<'_, K>, ds: &Dataset) -> Loaded<K> {
        load_fresh(e, ds).map(|(rate, checkpoint_ms, t)| (vec![rate], vec![checkpoint_ms], t))
    }
    let (mut ra, mut rb) = (first(a, ds), first(b, ds));
    for _ in 1..reps {
        ra = next(ra, a, ds);
        rb = next(rb, b, ds);
    }
    (ra, rb)
}

/// Every cell after the loads, on the store the last load left open.
fn measure<K: Kv>(
    open: impl Fn(&Path, Durability) -> Res<K>,
    dir: &Path,
    ds: &Dataset,
    loaded: Loaded<K>,
) -> Measured {
    let (insert, checkpoint_ms, t) = match loaded {
        Ok((rates, checkpoints, t)) => (Ok(rates), Ok(checkpoints), t),
        Err(e) => return Measured::failed(&format!("persistent mode unavailable: {e}")),
    };
    let probe = ds.order(PROBE_ORDER_SEED);
    let get = rate(|| gets_checked(&t, ds, &probe));
    let bytes = dir_bytes(dir);
    let per_entry = |b: u64| b as f64 / ds.keys.len() as f64;
    let bytes_per_entry = bytes.clone().map(|(al, _)| per_entry(al));
    let apparent_per_entry = bytes.map(|(_, ap)| per_entry(ap));
    eprintln!("persistent after load: {}", t.shape());
    drop(t);
    let reopen_ms = reopens(&open, dir, ds, &probe);
    let fsync = match open(dir, Durability::Fsync) {
        Ok(t) => [fsync_updates(&t, ds, &probe, 1), fsync_updates(&t, ds, &probe, 2)],
        Err(e) => [Err(e.clone()), Err(e)],
    };
    Measured { insert, get, checkpoint_ms, bytes_per_entry, apparent_per_entry, reopen_ms, fsync }
}

fn cell(name: &str, threads: usize, unit: &'static str, better: Better, c: Res<f64>, h: Res<f64>) -> Cell {
    let one = |r: Res<f64>| r.map(|x| Rates(vec![x]));
    Cell { name: name.into(), threads, unit, better, core: one(c), holt: one(h) }
}

pub fn run(ds: &Dataset, opts: &Opts, root: &Path, out: &mut Vec<Cell>) -> Res<()> {
    let pool = opts.pool_frames;
    let open_c = |d: &Path, dur| Core::persistent(d, pool, dur);
    let open_h = |d: &Path, dur| Holt03::persistent(d, pool, dur);
    let (dir_c, dir_h) = (fresh_dir(root, "holt-core")?, fresh_dir(root, "holt-0.3.0")?);
    let (loaded_c, loaded_h) = loads(&(&open_c, &dir_c, "core"), &(&open_h, &dir_h, "holt"), ds, opts.reps);
    let c = measure(open_c, &dir_c, ds, loaded_c);
    let h = measure(open_h, &dir_h, ds, loaded_h);
    let [cf1, cf2] = c.fsync;
    let [hf1, hf2] = h.fsync;
    let many = |r: Res<Vec<f64>>| r.map(Rates);
    let name = "persistent insert fresh, ack-to-OS";
    out.push(Cell { name: name.into(), threads: 1, unit: "keys/s", better: Better::Higher, core: many(c.insert), holt: many(h.insert) });
    out.push(cell("persistent get existing (warm)", 1, "ops/s", Better::Higher, c.get, h.get));
    let name = "persistent checkpoint after load";
    out.push(Cell { name: name.into(), threads: 1, unit: "ms", better: Better::Lower, core: many(c.checkpoint_ms), holt: many(h.checkpoint_ms) });
    let (name, unit) = ("on-disk bytes per entry after load+checkpoint (allocated, du)", "B/entry");
    out.push(cell(name, 1, unit, Better::Lower, c.bytes_per_entry, h.bytes_per_entry));
    let name = "apparent file bytes per entry (ls -l; holes count)";
    out.push(cell(name, 1, unit, Better::Lower, c.apparent_per_entry, h.apparent_per_entry));
    let name = "reopen after clean close (open + first get)";
    out.push(Cell { name: name.into(), threads: 1, unit: "ms", better: Better::Lower, core: many(c.reopen_ms), holt: many(h.reopen_ms) });
    out.push(cell("persistent update, fsync per commit", 1, "ops/s", Better::Higher, cf1, hf1));
    out.push(cell("persistent update, fsync per commit", 2, "ops/s", Better::Higher, cf2, hf2));
    Ok(())
}
