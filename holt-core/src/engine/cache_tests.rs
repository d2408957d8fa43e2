//! The buffer pool under pressure, through the whole engine on a simulated
//! disk: a tree many times larger than the pool, a pool mostly held by
//! dirty frames, and operations whose working set is larger than what the
//! pool can keep clean. Every operation must finish (no restart loop may
//! spin forever) and agree with a `BTreeMap` model.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use crate::testing::{CrashMode, SimDisk};
use crate::{RangeEntry, Tree, TreeBuilder};

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
        Err(_) => panic!("{what} did not finish within {PATIENCE:?}: livelock? {:?}", tree.stats()),
    }
}

fn contents(tree: &Tree) -> Model {
    tree.range()
        .into_iter()
        .map(|e| match e.expect("scan") {
            RangeEntry::Key { key, value } => (key, value),
            RangeEntry::CommonPrefix(p) => panic!("no delimiter, got prefix {p:?}"),
        })
        .collect()
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
