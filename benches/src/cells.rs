//! The memory-mode cells: fresh inserts, get, update, list_dir (small and big
//! directories). Both engines run every cell on the same data in one process.

use std::hint::black_box;

use crate::engines::{Core, Holt03, Kv, Res};
use crate::harness::{parallel, profiled, rate, Rates};
use crate::workload::Dataset;
use crate::Opts;

/// Seeds of the operation orders (the data set has its own).
const INSERT_ORDER_SEED: u64 = 1;
const PROBE_ORDER_SEED: u64 = 2;
const LIST_ORDER_SEED: u64 = 3;
/// Listings of each big directory per repetition: a listing takes ~4 ms,
/// so a repetition must hold many for scheduler noise to average out.
const BIG_LISTS_PER_REP: usize = 40;

/// Whether a bigger number is the better one (rates) or a smaller (bytes, ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One row of the results table.
pub struct Cell {
    pub name: String,
    pub threads: usize,
    pub unit: &'static str,
    pub better: Better,
    pub core: Res<Rates>,
    pub holt: Res<Rates>,
}

/// Runs `reps` repetitions of a cell with the engines interleaved. An engine
/// that fails stops there; its error goes into the table.
pub fn interleave(
    tag: &str,
    reps: usize,
    mut core: impl FnMut(usize) -> Res<f64>,
    mut holt: impl FnMut(usize) -> Res<f64>,
) -> (Res<Rates>, Res<Rates>) {
    let (mut c, mut h) = (Ok(Rates::default()), Ok(Rates::default()));
    for rep in 0..reps {
        record(&mut c, || profiled(tag, "core", || core(rep)));
        record(&mut h, || profiled(tag, "holt", || holt(rep)));
    }
    (c, h)
}

/// Adds one repetition's rate, or turns the slot into the engine's error.
pub fn record(slot: &mut Res<Rates>, run: impl FnOnce() -> Res<f64>) {
    if let Ok(r) = slot {
        match run() {
            Ok(x) => r.0.push(x),
            Err(e) => *slot = Err(e),
        }
    }
}

pub fn load<K: Kv>(t: &K, ds: &Dataset, order: &[u32]) -> Res<u64> {
    for &i in order {
        let i = i as usize;
        t.put(&ds.keys[i], &ds.values[i])?;
    }
    Ok(order.len() as u64)
}

/// Untimed: every key reads back its value. Doubles as the get warm-up.
pub fn verify<K: Kv>(t: &K, ds: &Dataset) -> Res<()> {
    for (k, v) in ds.keys.iter().zip(&ds.values) {
        match t.get(k)? {
            Some(got) if got == *v => {}
            Some(_) => return Err(format!("wrong value for key {k:?}")),
            None => return Err(format!("key {k:?} missing after load")),
        }
    }
    Ok(())
}

pub fn gets_checked<K: Kv>(t: &K, ds: &Dataset, part: &[u32]) -> Res<u64> {
    let mut bytes = 0usize;
    for &i in part {
        match t.get(&ds.keys[i as usize])? {
            Some(v) => bytes += v.len(),
            None => return Err(format!("key {:?} missing", ds.keys[i as usize])),
        }
    }
    black_box(bytes);
    Ok(part.len() as u64)
}

/// Put over existing keys: same length, changed bytes (as a setattr would).
fn updates<K: Kv>(t: &K, ds: &Dataset, part: &[u32], rep: usize) -> Res<u64> {
    let mut buf = Vec::with_capacity(128);
    for &i in part {
        let v = &ds.values[i as usize];
        buf.clear();
        buf.extend_from_slice(v);
        let last = buf.len() - 1;
        buf[last] ^= rep as u8 + 1;
        buf[8] = buf[8].wrapping_add(1);
        t.put(&ds.keys[i as usize], &buf)?;
    }
    Ok(part.len() as u64)
}

fn lists<K: Kv>(t: &K, ds: &Dataset, part: &[u32]) -> Res<u64> {
    for &d in part {
        let dir = &ds.dirs[d as usize];
        let (n, bytes) = t.list_dir(&dir.prefix)?;
        if n != dir.len {
            return Err(format!("list_dir {:?}: {n} entries, expected {}", dir.prefix, dir.len));
        }
        black_box(bytes);
    }
    Ok(part.len() as u64)
}

/// Fresh trees per repetition; the last ones stay loaded for the next cells.
fn insert_cell(ds: &Dataset, opts: &Opts, out: &mut Vec<Cell>) -> Res<(Core, Holt03)> {
    let order = ds.order(INSERT_ORDER_SEED);
    let (mut core, mut holt) = (None, None);
    let (c, h) = interleave(
        "insert",
        if opts.wants("insert") { opts.reps } else { 1 },
        |_| {
            core = None;
            let t = Core::memory(opts.pool_frames)?;
            let r = rate(|| load(&t, ds, &order))?;
            core = Some(t);
            Ok(r)
        },
        |_| {
            holt = None;
            let t = Holt03::memory(opts.pool_frames)?;
            let r = rate(|| load(&t, ds, &order))?;
            holt = Some(t);
            Ok(r)
        },
    );
    let failed = format!("core: {:?} holt: {:?}", c.as_ref().err(), h.as_ref().err());
    if opts.wants("insert") {
        out.push(Cell { name: "insert fresh (put, random order)".into(), threads: 1, unit: "keys/s", better: Better::Higher, core: c, holt: h });
    }
    match (core, holt) {
        (Some(c), Some(h)) => Ok((c, h)),
        _ => Err(format!("cannot continue without both loaded trees: {failed}")),
    }
}

pub fn run(ds: &Dataset, opts: &Opts, out: &mut Vec<Cell>) -> Res<(Core, Holt03)> {
    let (core, holt) = insert_cell(ds, opts, out)?;
    verify(&core, ds).map_err(|e| format!("holt-core: {e}"))?;
    verify(&holt, ds).map_err(|e| format!("holt 0.3.0: {e}"))?;
    eprintln!("after load: holt-core {}", core.shape());
    eprintln!("after load: holt 0.3.0 {}", holt.shape());

    let probe = ds.order(PROBE_ORDER_SEED);
    for threads in [1, 2].into_iter().filter(|t| opts.wants(&format!("get{t}"))) {
        let (c, h) = interleave(
            &format!("get{threads}"),
            opts.reps,
            |_| parallel(threads, &probe, |_, p| gets_checked(&core, ds, p)),
            |_| parallel(threads, &probe, |_, p| gets_checked(&holt, ds, p)),
        );
        out.push(Cell { name: "get existing (random)".into(), threads, unit: "ops/s", better: Better::Higher, core: c, holt: h });
    }

    if opts.wants("update") {
        let (c, h) = interleave(
            "update",
            opts.reps,
            |rep| rate(|| updates(&core, ds, &probe, rep)),
            |rep| rate(|| updates(&holt, ds, &probe, rep)),
        );
        out.push(Cell { name: "update (put over existing)".into(), threads: 1, unit: "ops/s", better: Better::Higher, core: c, holt: h });
    }

    let mut small: Vec<u32> = (0..ds.dirs.len() as u32).filter(|&d| !ds.dirs[d as usize].big).collect();
    crate::workload::Rng::new(LIST_ORDER_SEED).shuffle(&mut small);
    let mean = ds.keys.len() as f64 / ds.dirs.len() as f64;
    for threads in [1, 2].into_iter().filter(|t| opts.wants(&format!("list{t}"))) {
        let (c, h) = interleave(
            &format!("list{threads}"),
            opts.reps,
            |_| parallel(threads, &small, |_, p| lists(&core, ds, p)),
            |_| parallel(threads, &small, |_, p| lists(&holt, ds, p)),
        );
        let name = format!("list_dir, {} dirs of ~{mean:.0} entries", small.len());
        out.push(Cell { name, threads, unit: "dirs/s", better: Better::Higher, core: c, holt: h });
    }

    let big: Vec<u32> = (0..ds.dirs.len() as u32).filter(|&d| ds.dirs[d as usize].big).collect();
    if let Some(&b) = big.first().filter(|_| opts.wants("big")) {
        let reps_big: Vec<u32> = big.iter().copied().cycle().take(big.len() * BIG_LISTS_PER_REP).collect();
        let (c, h) = interleave(
            "big",
            opts.reps,
            |_| rate(|| lists(&core, ds, &reps_big)),
            |_| rate(|| lists(&holt, ds, &reps_big)),
        );
        let name = format!("list_dir, big dir of {} entries", ds.dirs[b as usize].len);
        out.push(Cell { name, threads: 1, unit: "dirs/s", better: Better::Higher, core: c, holt: h });
    }
    Ok((core, holt))
}
