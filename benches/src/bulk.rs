//! Memory-mode cells on their own trees: bulk loads in atomic batches
//! (`txn`) of 1, 1k and 10k puts, and listings of directories whose
//! children are all directories (each listing rolls up every key it covers).

use crate::cells::{interleave, Better, Cell};
use crate::engines::{Core, Holt03, Kv, Res};
use crate::harness::rate;
use crate::workload::{inode_value, Dataset, Rng};
use crate::Opts;

/// The insert cell's order, so the batch-of-1 row repeats that cell.
const BATCH_ORDER_SEED: u64 = 1;
/// Batch sizes and their tags; a batch of one is a plain `put`.
const BATCHES: [(&str, usize); 3] = [("batch1", 1), ("batch1k", 1_000), ("batch10k", 10_000)];

/// Rollup data: `ROLLUP_TOPS` directories, each holding `ROLLUP_SUBDIRS`
/// subdirectories of `ROLLUP_ENTRIES` entries, keyed by full path
/// (object-store style), so listing a top directory with delimiter `/`
/// returns `ROLLUP_SUBDIRS` common prefixes.
const ROLLUP_TOPS: usize = 100;
const ROLLUP_SUBDIRS: usize = 10;
const ROLLUP_ENTRIES: usize = 300;
/// Listings of every top directory per repetition (`--rollup-rounds`).
pub const ROLLUP_ROUNDS_DEFAULT: usize = 200;
const ROLLUP_SEED: u64 = 5;

fn load_batched<K: Kv>(t: &K, ds: &Dataset, order: &[u32], size: usize) -> Res<u64> {
    if size == 1 {
        return crate::cells::load(t, ds, order);
    }
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::with_capacity(size);
    for chunk in order.chunks(size) {
        pairs.clear();
        pairs.extend(chunk.iter().map(|&i| (ds.keys[i as usize].as_slice(), ds.values[i as usize].as_slice())));
        t.put_batch(&pairs)?;
    }
    Ok(order.len() as u64)
}

/// One cell per batch size wanted: a fresh tree per repetition, loaded with
/// every key of the data set in a random order.
pub fn run_batches(ds: &Dataset, opts: &Opts, out: &mut Vec<Cell>) {
    let order = ds.order(BATCH_ORDER_SEED);
    for (tag, size) in BATCHES.into_iter().filter(|(tag, _)| opts.wants(tag)) {
        let (c, h) = interleave(
            tag,
            opts.reps,
            |_| {
                let t = Core::memory(opts.pool_frames)?;
                rate(|| load_batched(&t, ds, &order, size))
            },
            |_| {
                let t = Holt03::memory(opts.pool_frames)?;
                rate(|| load_batched(&t, ds, &order, size))
            },
        );
        let how = if size == 1 { "single puts".to_string() } else { format!("txn batches of {size}") };
        let name = format!("bulk load, {how} (random order)");
        out.push(Cell { name, threads: 1, unit: "keys/s", better: Better::Higher, core: c, holt: h });
    }
}

fn rollup_prefix(top: usize) -> Vec<u8> {
    format!("O/{top:05}/").into_bytes()
}

fn rollup_load<K: Kv>(t: &K) -> Res<()> {
    let mut rng = Rng::new(ROLLUP_SEED);
    for top in 0..ROLLUP_TOPS {
        for sub in 0..ROLLUP_SUBDIRS {
            for e in 0..ROLLUP_ENTRIES {
                let mut k = rollup_prefix(top);
                k.extend_from_slice(format!("subdir-{sub:02}/file_{e:04}.dat").as_bytes());
                t.put(&k, &inode_value(&mut rng, (top * 10_000 + sub * 1000 + e) as u64))?;
            }
        }
    }
    Ok(())
}

fn rollup_lists<K: Kv>(t: &K, rounds: usize) -> Res<u64> {
    for _ in 0..rounds {
        for top in 0..ROLLUP_TOPS {
            let (n, _) = t.list_dir(&rollup_prefix(top))?;
            if n != ROLLUP_SUBDIRS {
                return Err(format!("rollup listing of top {top}: {n} entries, expected {ROLLUP_SUBDIRS}"));
            }
        }
    }
    Ok((rounds * ROLLUP_TOPS) as u64)
}

/// Listing directories whose children are directories (untimed load).
pub fn run_rollup(opts: &Opts, out: &mut Vec<Cell>) -> Res<()> {
    if !opts.wants("rollup") {
        return Ok(());
    }
    let core = Core::memory(opts.pool_frames)?;
    rollup_load(&core).map_err(|e| format!("holt-core: {e}"))?;
    let holt = Holt03::memory(opts.pool_frames)?;
    rollup_load(&holt).map_err(|e| format!("holt 0.3.0: {e}"))?;
    let (c, h) = interleave(
        "rollup",
        opts.reps,
        |_| rate(|| rollup_lists(&core, opts.rollup_rounds)),
        |_| rate(|| rollup_lists(&holt, opts.rollup_rounds)),
    );
    let name = format!("list_dir rollup: dir of {ROLLUP_SUBDIRS} subdirs x {ROLLUP_ENTRIES} entries");
    out.push(Cell { name, threads: 1, unit: "dirs/s", better: Better::Higher, core: c, holt: h });
    Ok(())
}
