//! The miss filter through the engine: absent keys answered at the first
//! frame link, and no key a caller saw written ever answered absent, while
//! filters are rebuilt under concurrent puts, batches and renames.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::filter::Source;
use crate::store::splitmix::SplitMix64;
use crate::{Tree, TreeBuilder};

/// Enough keys that the root frame links to others (lookups cross a link).
const KEYS: u64 = 60_000;
const HOUR: Duration = Duration::from_secs(3600);

fn key(i: u64) -> Vec<u8> {
    format!("/vol/d{:03}/entry-{i:09}", i % 211).into_bytes()
}

/// Absent, and sharing all of `key(i)`: its walk goes as deep as a hit's.
fn absent_key(i: u64) -> Vec<u8> {
    let mut k = key(i);
    k.extend_from_slice(b".tmp");
    k
}

/// Put `key(i)` for every `i` below `n`, a thousand a batch.
fn put_keys(tree: &Tree, n: u64, value: impl Fn(u64) -> Vec<u8>) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        tree.txn(|b| chunk.iter().for_each(|&i| {
            b.put(&key(i), &value(i));
        }))
        .unwrap();
    }
}

fn loaded(builder: TreeBuilder) -> Tree {
    let tree = builder.open().unwrap();
    put_keys(&tree, KEYS, |i| i.to_le_bytes().to_vec());
    tree
}

/// Whether a filter is current (`miss_filter_bytes` counts one being
/// built too).
fn published(tree: &Tree) -> bool {
    tree.engine().filter.as_ref().unwrap().capacity() > 0
}

/// Of `n` gets of absent keys (each must miss), those the filter answered.
fn misses_answered(tree: &Tree, n: u64) -> u64 {
    let before = tree.counters().miss_filter_answers;
    assert!((0..n).all(|i| tree.get(&absent_key(i)).unwrap().is_none()));
    tree.counters().miss_filter_answers - before
}

/// Wait (for the builder thread) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: not within 60 s");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn absent_keys_stop_at_the_first_link_and_present_ones_are_found() {
    let tree = loaded(TreeBuilder::new("mem").memory());
    tree.engine().build_filter(2 * KEYS);
    let answered = misses_answered(&tree, 10_000);
    // About a tenth of the keys live in the root frame: their misses end
    // there, before any link, and need no filter.
    assert!(answered > 8_000, "the filter answered {answered} of 10000 misses");
    assert!((0..KEYS).all(|i| tree.get(&key(i)).unwrap() == Some(i.to_le_bytes().to_vec())));
    assert!(tree.counters().miss_filter_bytes > 0);

    let off = loaded(TreeBuilder::new("mem").memory().miss_filter(false));
    assert!((0..1000).all(|i| off.get(&absent_key(i)).unwrap().is_none()));
    let c = off.counters();
    assert_eq!((c.miss_filter_answers, c.miss_filter_bytes), (0, 0), "turned off: no filter");
}

#[test]
fn the_builder_thread_builds_after_open_and_again_as_the_keys_outgrow_the_filter() {
    let tree = TreeBuilder::new("mem").memory().open().unwrap();
    eventually("a first filter", || published(&tree));
    let first = tree.engine().filter.as_ref().unwrap().capacity();
    let more = first + 1000;
    put_keys(&tree, more, |_| vec![1]);
    eventually("a filter for the grown tree", || tree.engine().filter.as_ref().unwrap().capacity() >= 2 * more);
    assert!(misses_answered(&tree, 1000) > 800);
}

#[test]
fn a_reopened_store_builds_its_filter_from_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    drop(loaded(TreeBuilder::new(dir.path())));
    let tree = TreeBuilder::new(dir.path()).open().unwrap();
    eventually("the filter of the reopened tree", || published(&tree));
    assert!((0..KEYS).step_by(7).all(|i| tree.get(&key(i)).unwrap().is_some()), "no key of the scan is missed");
    assert!(misses_answered(&tree, 1000) > 800);
}

/// A persistent tree with a cache of `POOL_FRAMES_MIN` frames, which
/// `KEYS` keys outgrow: a filter for it is read from a snapshot (its timer
/// checkpoints on, if rare: with them off it takes no checkpoint, and so
/// no snapshot, it was not asked for).
fn larger_than_its_cache(dir: &std::path::Path) -> Tree {
    let tree = TreeBuilder::new(dir).buffer_pool_size(crate::POOL_FRAMES_MIN).checkpoint_interval(Some(HOUR)).open().unwrap();
    put_keys(&tree, KEYS, |_| vec![7; 100]);
    assert!(!tree.engine().pool().could_hold_tree());
    tree
}

#[test]
fn a_tree_larger_than_half_the_cache_builds_from_a_snapshot_around_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let tree = larger_than_its_cache(dir.path());
    // The builder thread may have built one on the way: this build's
    // capacity is one it would not choose (and then not due).
    let capacity = 3 * KEYS;
    assert_eq!(tree.engine().filter_source(capacity), Some(Source::Snapshot));
    let read = tree.counters().frames_read;
    tree.engine().build_filter(capacity);
    assert_eq!(tree.engine().filter.as_ref().unwrap().capacity(), capacity, "built and published");
    assert_eq!(tree.counters().frames_read, read, "the build read nothing through the tree's cache");
    assert!(misses_answered(&tree, 1000) > 800);
    assert!((0..KEYS).step_by(7).all(|i| tree.get(&key(i)).unwrap().is_some()), "no key of the snapshot is missed");
    drop(tree);
    let reopen = || TreeBuilder::new(dir.path()).buffer_pool_size(crate::POOL_FRAMES_MIN).open().unwrap();
    let tree = reopen();
    let taken = || tree.engine().filter.as_ref().unwrap().capacity() == capacity;
    eventually("the reopened tree takes the filter its close saved (engine::filter_saved)", taken);
    assert!(misses_answered(&tree, 1000) > 800);
    drop(tree);
    std::fs::remove_file(dir.path().join(crate::store::filter_file::FILTER_NAME)).unwrap();
    let tree = reopen();
    eventually("the reopened tree's filter, from a snapshot", || published(&tree));
    assert!(misses_answered(&tree, 1000) > 800);
    drop(tree);
    let quiet = TreeBuilder::new(dir.path()).buffer_pool_size(crate::POOL_FRAMES_MIN).checkpoint_interval(None);
    let tree = quiet.open().unwrap();
    assert_eq!(tree.engine().filter_source(2 * KEYS), None, "timer checkpoints off: no snapshot either");
}

/// A filter over a quarter of the cache is not built: a tree whose keys
/// need one keeps the filter it has until they outgrow it, then has none.
#[test]
fn a_filter_the_tree_outgrew_is_retired_when_no_other_fits_the_cache() {
    let tree = TreeBuilder::new("mem").memory().buffer_pool_size(crate::POOL_FRAMES_MIN).open().unwrap();
    eventually("the first filter, for the empty tree", || published(&tree));
    // No rebuild from here on but the one asked for below (a stopped
    // builder's scans give up).
    tree.engine().filter_keeper.stop();
    let capacity = tree.engine().filter.as_ref().unwrap().capacity();
    // Twice 530 k keys is a filter of 1 MiB, in 2 MiB huge pages: over a
    // quarter of the 4 MiB cache.
    put_keys(&tree, 530_000, |_| vec![7; 20]);
    assert!(tree.engine().filter_build_due().is_none(), "no filter of twice the keys fits a quarter of the cache");
    tree.engine().filter_upkeep();
    let c = tree.counters();
    assert_eq!((c.miss_filter_bytes, tree.engine().filter.as_ref().unwrap().capacity()), (0, 0), "retired");
    assert!(tree.get(&absent_key(1)).unwrap().is_none());
    assert!((0..capacity * 3).step_by(101).all(|i| tree.get(&key(i)).unwrap().is_some()));
    assert_eq!(tree.counters().miss_filter_answers, c.miss_filter_answers, "nothing answers once retired");
}

/// Ops of the writer in the race below: each makes `key(i)` present.
fn write(tree: &Tree, i: u64) {
    match i % 4 {
        0 => tree.put(&key(i), b"p").unwrap(),
        1 => tree.txn(|b| { b.put(&key(i), b"t").delete(&absent_key(i)); }).unwrap(),
        2 => {
            tree.put(&absent_key(i), b"r").unwrap();
            tree.rename(&absent_key(i), &key(i), false).unwrap();
        }
        _ => {
            tree.put(&key(i), b"x").unwrap();
            tree.delete(&key(i)).unwrap();
            tree.put(&key(i), b"y").unwrap();
        }
    }
}

#[test]
fn no_key_written_is_answered_absent_while_filters_are_rebuilt() {
    let tree = loaded(TreeBuilder::new("mem").memory().miss_filter(true));
    assert_eq!(tree.engine().filter_source(2 * KEYS), Some(Source::Tree));
    race_writer_reader_and_rebuilds(&tree);
}

/// The same race with every filter read from a snapshot: a key written
/// after the registration is set by its writer, one before it is in the
/// checkpoint the snapshot takes after it.
#[test]
fn no_key_written_is_answered_absent_while_filters_are_rebuilt_from_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let tree = larger_than_its_cache(dir.path());
    assert_eq!(tree.engine().filter_source(2 * KEYS), Some(Source::Snapshot));
    race_writer_reader_and_rebuilds(&tree);
}

/// A writer writes keys past `KEYS` for three seconds (and at least 2000)
/// while another thread rebuilds filters and a reader keeps probing: no
/// key a writer finished writing may read as absent.
fn race_writer_reader_and_rebuilds(tree: &Tree) {
    tree.engine().build_filter(2 * KEYS);
    let written = Arc::new(AtomicU64::new(KEYS));
    let stop = Arc::new(AtomicBool::new(false));
    let rebuilds = {
        let (tree, stop) = (tree.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                // Small and large filters alike: a stale one only costs walks.
                tree.engine().build_filter([KEYS, 4 * KEYS][n as usize % 2]);
                n += 1;
            }
            n
        })
    };
    let reader = {
        let (tree, written, stop) = (tree.clone(), written.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = SplitMix64::new(7);
            while !stop.load(Ordering::Acquire) {
                // A miss first: it keeps this thread probing the filter.
                assert!(tree.get(&absent_key(rng.next_u64() % KEYS)).unwrap().is_none());
                let upto = written.load(Ordering::Acquire);
                let i = KEYS + rng.next_u64() % (upto - KEYS + 1);
                let i = if i == upto { rng.next_u64() % KEYS } else { i };
                assert!(tree.get(&key(i)).unwrap().is_some(), "key {i} was written (up to {upto}) but read as absent");
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = KEYS;
    while Instant::now() < deadline || i < KEYS + 2000 {
        write(tree, i);
        assert!(tree.get(&key(i)).unwrap().is_some(), "key {i} read back absent by its writer");
        written.store(i + 1, Ordering::Release);
        i += 1;
    }
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    let rebuilt = rebuilds.join().unwrap();
    assert!(rebuilt >= 3, "only {rebuilt} rebuilds raced the writer");
    assert!((0..i).all(|i| tree.get(&key(i)).unwrap().is_some()));
}


/// Nice values of this process's threads named `name` (`/proc`).
fn nice_of_threads(name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, nice 19.
        if comm.trim() == name {
            if let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) {
                out.push(after.split_whitespace().nth(16).unwrap().parse().unwrap());
            }
        }
    }
    out
}

#[test]
fn the_builder_thread_runs_at_a_lower_priority() {
    let _tree = TreeBuilder::new("mem").memory().open().unwrap();
    let mut nice = Vec::new();
    eventually("the builder's priority", || {
        nice = nice_of_threads("holt-filter");
        !nice.is_empty() && nice.iter().all(|&n| n > 0)
    });
    assert!(nice.iter().all(|&n| n == 10), "{nice:?}");
}
