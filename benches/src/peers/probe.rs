//! `holt-bench --peers DIR --probe CELLS`: the read cells alone, on a
//! store kept across runs, reported per entry. Made for profiling and for
//! comparing two builds of one engine, where a whole peer run is too long
//! and too noisy: each engine's store is loaded once (the peer run's data
//! set, load order and extra directories) into `DIR/<engine>-probe-<keys>`
//! and reused by every later probe with the same `--keys`, so builds alternate
//! on the same bytes on disk. `--probe-passes N` fixes the work instead of
//! the time (for instruction counts under callgrind).

use std::path::Path;
use std::time::{Duration, Instant};

use super::child::{absent_names, LOAD_ORDER_SEED, PROBE_ORDER_SEED};
use super::data::{Extra, LIST_SIZES};
use super::store::{Durability, Res, Store};
use super::{EngineDef, PeerOpts};
use crate::harness::secs;
use crate::workload::Dataset;

/// Puts per commit while building a probe store (untimed).
const LOAD_BATCH: usize = 1000;
/// Gets per pass of the `get` and `miss` probes.
const GETS_PER_PASS: usize = 100_000;
/// The cells `--probe` takes.
pub const PROBE_CELLS: &str = "list10,list1k,list100k,rollup,scan,get,miss";

/// What the probes read, made before any clock starts.
struct Data {
    ds: Dataset,
    extra: Extra,
    /// The keys of one `get` pass.
    gets: Vec<u32>,
    /// The names of one `miss` pass: absent, each in an existing directory.
    misses: Vec<Vec<u8>>,
}

/// How long, or how many passes, each probe cell runs.
#[derive(Clone, Copy)]
pub enum Work {
    Secs(f64),
    Passes(u64),
}

/// Runs the `--probe` cells on every engine of `o`, one after the
/// other; 0 on success.
pub fn run(o: &PeerOpts) -> i32 {
    let ds = Dataset::generate(o.keys);
    let gets: Vec<u32> = ds.order(PROBE_ORDER_SEED).into_iter().take(GETS_PER_PASS).collect();
    let misses = absent_names(&ds, GETS_PER_PASS);
    let data = Data { ds, extra: Extra::generate(), gets, misses };
    for e in &o.engines {
        if let Err(err) = probe_engine(o, e, &data) {
            eprintln!("probe {}: {err}", e.slug);
            return 1;
        }
    }
    0
}

fn probe_engine(o: &PeerOpts, e: &EngineDef, data: &Data) -> Res<()> {
    let open = e.open.ok_or(format!("{} is not compiled in", e.slug))?;
    let dir = o.dir.join(format!("{}-probe-{}", e.slug, o.keys));
    let fresh = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(|err| format!("create {}: {err}", dir.display()))?;
    let s = open(&dir, Durability::Ack)?;
    if fresh {
        if let Err(err) = build(&*s, &data.ds, &data.extra, &dir) {
            // A store built in part must not pass for a whole one later.
            drop(s);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
    }
    for cell in &o.probe {
        let (entries, passes, elapsed) = measure(o.probe_work, || pass(&*s, data, cell))?;
        println!(
            "{} {cell}: {:.1} ns/entry ({entries} entries in {passes} passes, {:.2} s)",
            e.slug,
            secs(elapsed) * 1e9 / entries.max(1) as f64,
            secs(elapsed)
        );
    }
    Ok(())
}

/// Loads the data set and the extra keys, then settles (untimed).
fn build(s: &dyn Store, ds: &Dataset, extra: &Extra, dir: &Path) -> Res<()> {
    let start = Instant::now();
    let order = ds.order(LOAD_ORDER_SEED);
    for chunk in order.chunks(LOAD_BATCH) {
        s.put_batch(&super::cells::pairs(ds, chunk))?;
    }
    extra.load(s)?;
    s.settle()?;
    eprintln!("built {} in {:.1} s", dir.display(), secs(start.elapsed()));
    Ok(())
}

/// Repeats `one` (which returns the entries it read) for `work`.
fn measure(work: Work, mut one: impl FnMut() -> Res<u64>) -> Res<(u64, u64, Duration)> {
    let start = Instant::now();
    let (mut entries, mut passes) = (0, 0);
    loop {
        entries += one()?;
        passes += 1;
        let done = match work {
            Work::Secs(s) => secs(start.elapsed()) >= s,
            Work::Passes(n) => passes >= n,
        };
        if done {
            return Ok((entries, passes, start.elapsed()));
        }
    }
}

/// One pass of `cell`: the entries it read (gets count one each).
fn pass(s: &dyn Store, data: &Data, cell: &str) -> Res<u64> {
    let Data { ds, extra, gets, misses } = data;
    let list_row = LIST_SIZES.iter().position(|(tag, _, _)| *tag == cell);
    let mut entries = 0;
    match cell {
        _ if list_row.is_some() => {
            for d in &extra.lists[list_row.expect("matched")] {
                entries += s.list(&d.prefix)?.0;
            }
        }
        "rollup" => {
            for top in &extra.tops {
                entries += s.list(top)?.0;
            }
        }
        "scan" => entries = s.scan_all()?.0,
        "get" => {
            for &i in gets {
                s.get(&ds.keys[i as usize])?.ok_or("get: a loaded key is missing")?;
                entries += 1;
            }
        }
        "miss" => {
            for k in misses {
                if s.get(k)?.is_some() {
                    return Err(format!("miss: absent key {k:?} found"));
                }
                entries += 1;
            }
        }
        other => return Err(format!("unknown probe cell {other} (cells: {PROBE_CELLS})")),
    }
    Ok(entries as u64)
}
