//! One engine's whole peer run, in a process of its own, so its peak RSS
//! is its own. Before each cell it stops at a gate: it prints `PEERSTEP`
//! and waits for a line on stdin, so the parent can run the engines cell
//! by cell, interleaved (`parent.rs`). Each result goes to stdout as a
//! line: `PEERCELL <tag> ok <value>` or `PEERCELL <tag> error <message>`,
//! tab separated; everything else goes to stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cells::{self, pairs};
use super::data::{Extra, LIST_SIZES};
use super::mix::{self, Model};
use super::store::{Durability, Res, Store};
use super::{EngineDef, Opener, PeerOpts};
use crate::harness::secs;
use crate::persistent::dir_bytes;
use crate::workload::{dentry_prefix, Dataset, Rng};

/// The order the main store is loaded in (`probe.rs` loads its store so).
pub(super) const LOAD_ORDER_SEED: u64 = 31;
/// The order of the get cells' keys (and the probe's).
pub(super) const PROBE_ORDER_SEED: u64 = 32;
const PICK_SEED: u64 = 33;
/// Clean close + open + first get cycles timed; the cell is their median.
const REOPENS: usize = 3;
/// Wall time of each fsync-per-commit cell.
const FSYNC_CELL_TIME: Duration = Duration::from_secs(2);

pub fn emit(tag: &str, r: &Res<f64>) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    match r {
        Ok(x) => println!("PEERCELL\t{tag}\tok\t{x}"),
        Err(e) => println!("PEERCELL\t{tag}\terror\t{}", clean(e)),
    }
}

/// Where the child waits for the parent between cells.
pub struct Gate(std::io::StdinLock<'static>);

impl Gate {
    fn new() -> Self {
        Gate(std::io::stdin().lock())
    }

    /// Ends the step so far and blocks until the parent starts the next.
    fn step(&mut self) -> Res<()> {
        use std::io::BufRead;
        println!("PEERSTEP");
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) => Err("the parent closed the gate".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("gate: {e}")),
        }
    }
}

fn fresh_dir(root: &Path, slug: &str) -> Res<PathBuf> {
    let dir = root.join(slug);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn ms(work: impl FnOnce() -> Res<()>) -> Res<f64> {
    let start = Instant::now();
    work()?;
    Ok(secs(start.elapsed()) * 1e3)
}

/// The keys each write cell touches, made before any clock starts.
struct Keys {
    probe: Vec<u32>,
    misses: Vec<Vec<u8>>,
    creates: Vec<Vec<u8>>,
    renames_in: Vec<(Vec<u8>, Vec<u8>)>,
    renames_across: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A new name, `TAG-I`, in a directory `rng` picks.
fn name_in_dir(ds: &Dataset, rng: &mut Rng, tag: &str, i: usize) -> Vec<u8> {
    ds.in_random_dir(rng, &format!("{tag}-{i}"))
}

/// `n` names no store holds, each in an existing directory: the get-miss
/// cell's keys (the probe's `miss` cell reads the same ones).
pub(super) fn absent_names(ds: &Dataset, n: usize) -> Vec<Vec<u8>> {
    absent_names_from(ds, &mut Rng::new(PICK_SEED), n)
}

fn absent_names_from(ds: &Dataset, rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| name_in_dir(ds, rng, "absent", i)).collect()
}

impl Keys {
    fn new(ds: &Dataset, o: &PeerOpts) -> Self {
        let probe = ds.order(PROBE_ORDER_SEED);
        let mut rng = Rng::new(PICK_SEED);
        let in_dir = |rng: &mut Rng, tag: &str, i: usize| name_in_dir(ds, rng, tag, i);
        let misses = absent_names_from(ds, &mut rng, o.ops);
        let creates = (0..o.write_ops / 2).map(|i| in_dir(&mut rng, "cd", i)).collect();
        let prefix_bytes = dentry_prefix(0).len();
        let movers = |from: usize| probe.iter().cycle().skip(from).take(o.write_ops / 2).map(|&i| &ds.keys[i as usize]);
        let renames_in = movers(0)
            .enumerate()
            .map(|(i, k)| (k.clone(), [&k[..prefix_bytes], format!("rn-{i}").as_bytes()].concat()))
            .collect();
        let renames_across = movers(o.write_ops / 2).enumerate().map(|(i, k)| (k.clone(), in_dir(&mut rng, "mv", i))).collect();
        Keys { probe, misses, creates, renames_in, renames_across }
    }

    fn probe_n(&self, n: usize) -> Vec<u32> {
        self.probe.iter().copied().cycle().take(n).collect()
    }
}

/// The batched loads, each into a store of its own, removed after.
fn batched_loads(g: &mut Gate, open: Opener, root: &Path, ds: &Dataset, order: &[u32]) -> Res<()> {
    for (tag, batch) in [("load1k", 1000), ("load10k", 10_000)] {
        g.step()?;
        let dir = fresh_dir(root, tag)?;
        let s = open(&dir, Durability::Ack)?;
        emit(tag, &cells::load(&*s, ds, order, batch, &mut Vec::new()));
        drop(s);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// The single-put load into the main store, its settle and its size.
fn main_load(open: Opener, dir: &Path, ds: &Dataset, order: &[u32]) -> Res<Box<dyn Store>> {
    let s = open(dir, Durability::Ack)?;
    let mut lat_ns = Vec::with_capacity(order.len());
    let r = cells::load(&*s, ds, order, 1, &mut lat_ns);
    emit("load1", &r);
    r?;
    let lat = cells::p99_max_us(lat_ns);
    emit("lat_p99", &lat.clone().map(|l| l.0));
    emit("lat_max", &lat.map(|l| l.1));
    eprintln!("after the 1-put load: {}", s.shape());
    emit("settle", &ms(|| s.settle()));
    emit("size", &dir_bytes(dir).map(|(allocated, _)| allocated as f64 / ds.keys.len() as f64));
    Ok(s)
}

fn point_cells(g: &mut Gate, s: &dyn Store, ds: &Dataset, k: &Keys, o: &PeerOpts) -> Res<()> {
    let hits = k.probe_n(o.ops);
    let hit_keys: Vec<&[u8]> = pairs(ds, &hits).into_iter().map(|(key, _)| key).collect();
    let updates = k.probe_n(o.write_ops);
    g.step()?;
    emit("get_hit", &cells::gets(s, &hit_keys));
    g.step()?;
    emit("get_miss", &cells::misses(s, &k.misses));
    g.step()?;
    emit("update", &cells::updates(s, ds, &updates));
    settle_step(g, s)?;
    g.step()?;
    emit("create_delete", &cells::create_delete(s, &k.creates, &ds.values[0]));
    settle_step(g, s)?;
    g.step()?;
    emit("rename_in", &cells::renames(s, &k.renames_in));
    settle_step(g, s)?;
    g.step()?;
    emit("rename_across", &cells::renames(s, &k.renames_across));
    Ok(())
}

/// An untimed step of its own that settles the store: the deferred work
/// of the writes before it (flush, compaction, checkpoint) is done before
/// the next timed cell starts, so every cell after a write cell starts
/// from a store at rest and measures what it names. Without it that work,
/// held back while the child was stopped, ran inside the next cells:
/// holt-core's listings measured 4-7x slower at 1M keys, its checkpoint
/// after the update cells spanning several of them. The write cells so
/// leave out their deferred work; the load's is the settle cell.
fn settle_step(g: &mut Gate, s: &dyn Store) -> Res<()> {
    g.step()?;
    s.settle()
}

fn listing_cells(g: &mut Gate, s: &dyn Store, ds: &Dataset, extra: &Extra) -> Res<()> {
    settle_step(g, s)?;
    eprintln!("before the listings: {}", s.shape());
    for ((tag, _, _), dirs) in LIST_SIZES.iter().zip(&extra.lists) {
        g.step()?;
        emit(tag, &cells::lists(s, dirs));
    }
    g.step()?;
    emit("rollup", &cells::rollups(s, &extra.tops));
    g.step()?;
    emit("scan", &cells::scan(s, ds.keys.len() + extra.len()));
    g.step()?;
    let churned = extra.churn(s).and_then(|_| s.settle());
    if let Err(e) = &churned {
        eprintln!("churn failed: {e}");
    }
    g.step()?;
    emit("rollup_churn", &churned.and_then(|_| cells::rollups(s, &extra.tops)));
    Ok(())
}

fn reopens(open: Opener, dir: &Path, probe_key: &[u8]) -> Res<f64> {
    let mut times = Vec::with_capacity(REOPENS);
    for _ in 0..REOPENS {
        let start = Instant::now();
        let s = open(dir, Durability::Ack)?;
        s.get(probe_key)?.ok_or("key missing after reopen")?;
        times.push(secs(start.elapsed()) * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn fsync_cells(g: &mut Gate, open: Opener, dir: &Path, ds: &Dataset) -> Res<()> {
    let s = open(dir, Durability::Fsync)?;
    for threads in [1, 2] {
        g.step()?;
        let prefixes: Vec<Vec<u8>> = ds.dirs[..threads].iter().map(|d| d.prefix.clone()).collect();
        let value = &ds.values[0];
        emit(&format!("fsync{threads}"), &cells::fsync_creates(&*s, &prefixes, value, FSYNC_CELL_TIME));
    }
    Ok(())
}

/// Every cell in order, a gate before each; untimed work (the extra
/// keys, the churn) gets a step of its own so it never overlaps another
/// engine's cell.
fn sequence(g: &mut Gate, e: &EngineDef, open: Opener, o: &PeerOpts, ds: &Dataset, extra: &Extra) -> Res<()> {
    let root = fresh_dir(&o.dir, e.slug)?;
    let order = ds.order(LOAD_ORDER_SEED);
    if !o.load1_only {
        batched_loads(g, open, &root, ds, &order)?;
    }
    let dir = root.join("main");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    g.step()?;
    let s = main_load(open, &dir, ds, &order)?;
    if o.load1_only {
        return Ok(());
    }
    g.step()?;
    extra.load(&*s)?;
    s.settle()?;
    let keys = Keys::new(ds, o);
    point_cells(g, &*s, ds, &keys, o)?;
    listing_cells(g, &*s, ds, extra)?;
    let mut model = Model::new(ds, &extra.tops);
    for threads in [1, 2] {
        settle_step(g, &*s)?;
        g.step()?;
        emit(&format!("mix{threads}"), &mix::run(&*s, ds, &mut model, threads, o.mix_ops));
    }
    g.step()?;
    drop(s);
    emit("reopen", &reopens(open, &dir, extra.first_key()));
    fsync_cells(g, open, &dir, ds)
}

/// Runs every cell on `e`; the exit status says whether it got through.
pub fn run(o: &PeerOpts, e: &EngineDef) -> i32 {
    let Some(open) = e.open else {
        eprintln!("{}: not built in (cargo --features {})", e.name, e.slug);
        return 1;
    };
    let ds = Dataset::generate(o.keys);
    let extra = Extra::generate();
    let base_mib = cells::rss_mib().map(|(_, now)| now).unwrap_or(0.0);
    eprintln!("{}: data set {} + {} keys, {base_mib:.0} MiB resident before opening", e.name, ds.keys.len(), extra.len());
    let mut gate = Gate::new();
    let r = sequence(&mut gate, e, open, o, &ds, &extra);
    emit("rss", &cells::rss_mib().map(|(peak, _)| peak - base_mib));
    match r {
        Ok(()) => 0,
        Err(err) => {
            println!("PEERABORT\t{}", err.replace(['\t', '\n'], " "));
            eprintln!("{}: stopped: {err}", e.name);
            1
        }
    }
}
