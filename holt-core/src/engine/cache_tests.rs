//! The buffer pool under pressure, through the whole engine on a simulated
//! disk: a tree many times larger than the pool, a pool mostly held by
//! dirty frames, and operations whose working set is larger than what the
//! pool can keep clean. Every operation must finish (no restart loop may
//! spin forever) and agree with a `BTreeMap` model.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use crate::store::splitmix::SplitMix64;
use crate::testing::{CrashMode, SimDisk};
use super::power_loss_tests::contents;
use crate::{Tree, TreeBuilder};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const POOL_FRAMES: usize = 16;
/// Long enough for the slowest CI run of these tests; a livelock never ends.
const PATIENCE: Duration = Duration::from_secs(60);

fn builder() -> TreeBuilder {
    TreeBuilder::new("/store").checkpoint_interval(None).buffer_pool_size(POOL_FRAMES)
}

fn key(i: u64) -> Vec<u8> {
    format!("k/{:03}/{i:07}", i % 97).into_bytes()
}

/// 4 KiB values: about 120 keys fill a frame, so the 512-entry chunks of a
/// long scan cross five or more frames.
fn value(i: u64, round: u8) -> Vec<u8> {
    vec![(i as u8) ^ round; 4096]
}

/// Run `f` on another thread; fail the test if it has not finished within
/// `PATIENCE` (the thread is left spinning: the test binary exits anyway),
/// showing `tree`'s counters (a livelock shows as restarts and misses).
fn finishes<T: Send + 'static>(what: &str, tree: &Tree, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(t) => t,
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {PATIENCE:?}: livelock? {:?}", tree.counters())
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked (see above)"),
    }
}

/// Put keys `0..n` and checkpoint; returns the model.
fn load(tree: &Tree, n: u64) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        tree.put(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
    }
    tree.checkpoint().unwrap();
    model
}

/// Regression: reopening a store whose WAL replay dirtied most of a 16-frame
/// pool, a full scan restarted forever (each chunk's frame loads evicted the
/// few clean frames the chunk had already read, so it never validated).
#[test]
fn scan_after_reopen_with_a_mostly_dirty_pool_finishes() {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder()).unwrap();
    let n = 16_000;
    let mut model = load(&tree, n);
    assert!(tree.stats().unwrap().frames >= 8 * POOL_FRAMES as u64, "{:?}", tree.stats());
    // One update in each of a dozen frames far apart, durable in the WAL only.
    for j in 0..12 {
        let i = j * (n / 12);
        tree.put(&key(i), &value(i, 1)).unwrap();
        model.insert(key(i), value(i, 1));
    }
    tree.sync().unwrap();
    let crashed = disk.crash(CrashMode::DropUnsynced);
    std::mem::forget(tree);
    let tree = crashed.open_tree(builder()).unwrap();
    let dirty = tree.stats().unwrap().frames_dirty;
    assert!(dirty >= 12, "replay dirtied most of the pool: {dirty}");
    let scanner = tree.clone();
    let got = finishes("a full scan", &tree, move || contents(&scanner));
    assert!(got == model, "the scan after reopen differs from the model");
}

fn random_key(rng: &mut SplitMix64) -> Vec<u8> {
    format!("d/{:02}/{:05}", rng.below(40), rng.below(40_000)).into_bytes()
}

/// Entries of `range` under `prefix` (rolled up at '/' if `delimited`), as
/// the model says they must come out.
fn model_listing(model: &Model, prefix: &[u8], delimited: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for k in model.keys().filter(|k| k.starts_with(prefix)) {
        let rest = &k[prefix.len()..];
        let entry = match rest.iter().position(|&b| b == b'/') {
            Some(at) if delimited => k[..prefix.len() + at + 1].to_vec(),
            _ => k.clone(),
        };
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out
}

fn listing(tree: &Tree, prefix: &[u8], delimited: bool) -> Vec<Vec<u8>> {
    let range = tree.scan_prefix(prefix);
    let range = if delimited { range.delimiter(b'/') } else { range };
    range.into_iter().map(|e| e.expect("listing").key().to_vec()).collect()
}

/// One random operation on tree and model, checked where it reads.
fn random_step(tree: &Tree, model: &mut Model, rng: &mut SplitMix64) {
    let k = random_key(rng);
    match rng.below(10) {
        0..=3 => {
            let v = vec![rng.next_u64() as u8; 1500 + rng.below(1000) as usize];
            tree.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        4 => assert_eq!(tree.delete(&k).unwrap(), model.remove(&k).is_some()),
        5 => {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..32).map(|_| (random_key(rng), vec![7; 1800])).collect();
            tree.txn(|b| {
                for (k, v) in &pairs {
                    b.put(k, v);
                }
            })
            .unwrap();
            model.extend(pairs);
        }
        6..=8 => assert!(tree.get(&k).unwrap() == model.get(&k).cloned(), "get {k:?}"),
        _ => {
            let prefix = format!("d/{:02}/", rng.below(40)).into_bytes();
            assert_eq!(listing(tree, &prefix, false), model_listing(model, &prefix, false));
        }
    }
}

/// A tree eight times the pool: random gets, puts, deletes, batches and
/// listings all agree with the model while frames are evicted and read
/// back, the cache stays near its budget, and a reopen finds everything.
/// Both ways of reading evicted frames back: through the page cache, and
/// around it once the pool is full (`direct_frame_reads`: on a simulated
/// disk every such read is checked for direct I/O's alignment).
#[test]
fn tree_eight_times_the_pool_agrees_with_the_model() {
    tree_eight_times_the_pool(false);
    tree_eight_times_the_pool(true);
}

fn tree_eight_times_the_pool(direct: bool) {
    let builder = || builder().direct_frame_reads(direct);
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder()).unwrap();
    let mut rng = SplitMix64::new(0x8f00);
    let mut model = Model::new();
    let mut steps = 0u64;
    while tree.stats().unwrap().frames < 8 * POOL_FRAMES as u64 || steps < 3_000 {
        random_step(&tree, &mut model, &mut rng);
        steps += 1;
        let p = tree.counters();
        // Writers clean past an eighth over the budget (at least 4
        // frames); pins add a chunk's frames.
        assert!(p.frames_cached <= 2 * POOL_FRAMES as u64, "step {steps}: {p:?}");
    }
    assert_eq!(listing(&tree, b"", true), model_listing(&model, b"", true));
    assert_eq!(listing(&tree, b"d/", true), model_listing(&model, b"d/", true));
    assert!(contents(&tree) == model, "full scan differs from the model");
    let p = tree.counters();
    eprintln!("{steps} steps, {} keys, {:?}, {p:?}", model.len(), tree.stats().unwrap());
    assert!(p.evictions > 1000 && p.cache_misses > 1000, "the pool was exercised: {p:?}");
    // Each miss reads a whole frame, or a page (a lookup's, `store::pages`).
    assert!(p.frames_read + p.pages_read >= p.cache_misses && p.frame_bytes_read > 0, "{p:?}");
    assert!(p.pages_read > 0, "lookups into the full cache read pages: {p:?}");
    let pool = tree.engine().pool();
    assert_eq!(pool.live_frame_count(), pool.live_ids().len(), "the live-frame count follows spills and merges");
    tree.check_invariants().unwrap();
    drop(tree);
    let tree = disk.open_tree(builder()).unwrap();
    let pool = tree.engine().pool();
    assert_eq!(pool.live_frame_count(), pool.live_ids().len(), "the live-frame count after a reopen");
    assert!(contents(&tree) == model, "contents after reopen differ from the model");
    tree.check_invariants().unwrap();
}

/// Readers and a writer racing through a pool an eighth of the tree: every
/// read of a key nobody changes finds its value, every listing of a prefix
/// nobody changes is whole, and all of it finishes (eviction under one
/// thread's reads never starves another's).
#[test]
fn readers_and_a_writer_share_a_small_pool_without_starving() {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder()).unwrap();
    let n = 16_000;
    let model = Arc::new(load(&tree, n));
    assert!(tree.stats().unwrap().frames >= 8 * POOL_FRAMES as u64);
    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (tree, model) = (tree.clone(), model.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = SplitMix64::new(t);
            for round in 0..2_000 {
                let i = rng.below(n);
                assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0)), "thread {t}: key {i}");
                if round % 100 == 0 {
                    let prefix = format!("k/{:03}/", rng.below(97)).into_bytes();
                    assert_eq!(listing(&tree, &prefix, false), model_listing(&model, &prefix, false));
                }
            }
        }));
    }
    let writer = tree.clone();
    threads.push(std::thread::spawn(move || {
        for i in 0..3_000u64 {
            writer.put(format!("w/{i:05}").as_bytes(), &[9; 3000]).unwrap();
        }
    }));
    finishes("readers and a writer", &tree, move || threads.into_iter().for_each(|t| t.join().unwrap()));
    tree.check_invariants().unwrap();
}
