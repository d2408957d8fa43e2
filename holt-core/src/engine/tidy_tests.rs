//! Tidies (`tree::tidy`) as the engine runs them: before each checkpoint's
//! cut, on frames that readers and writers use meanwhile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::capture_tests::{frames_only, open_on};
use super::checkpoint::Start;
use super::maintenance::tidy_resident;
use super::power_loss_tests::contents;
use crate::store::mem_vfs::MemVfs;
use crate::store::splitmix::SplitMix64;
use crate::tree::tidy::wants_tidy;
use crate::{Tree, TreeBuilder};

/// Key `i` of directory `d`, and the one value it ever holds.
fn key(d: u64, i: u64) -> Vec<u8> {
    format!("dir-{d:03}/entry-{:012x}", i.wrapping_mul(0x9E37_79B9)).into_bytes()
}

fn value_of(key: &[u8]) -> Vec<u8> {
    let sum = key.iter().fold(7u8, |a, &b| a.wrapping_mul(31).wrapping_add(b));
    vec![sum; 40 + key.len() % 30]
}

/// Put `n` keys in random order over 200 directories, recording them.
fn put_random(tree: &Tree, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, rng: &mut SplitMix64, n: usize) {
    for _ in 0..n {
        let k = key(rng.below(200), rng.next_u64());
        tree.put(&k, &value_of(&k)).unwrap();
        model.insert(k.clone(), value_of(&k));
    }
}

fn frames_wanting_tidy(tree: &Tree) -> usize {
    let pool = &tree.engine().pool;
    pool.live_ids().into_iter().filter(|&id| pool.cell(id).and_then(|c| c.buf()).is_some_and(wants_tidy)).count()
}

/// A store on a simulated disk holding 30k keys put in random order (their
/// frames want a tidy), and its model.
fn scattered_store(seed: u64) -> (MemVfs, Tree, BTreeMap<Vec<u8>, Vec<u8>>) {
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let (mut model, mut rng) = (BTreeMap::new(), SplitMix64::new(seed));
    put_random(&tree, &mut model, &mut rng, 30_000);
    (vfs, tree, model)
}

/// Resident frames whose layout is not a tidy's preorder.
fn frames_out_of_preorder(tree: &Tree) -> usize {
    let pool = &tree.engine().pool;
    pool.live_ids().into_iter().filter(|&id| pool.cell(id).and_then(|c| c.buf()).is_some_and(|b| !b.in_preorder())).count()
}

/// An asked-for checkpoint tidies every frame that wants it, and every
/// other dirty one out of preorder (scans read those as runs after).
#[test]
fn a_checkpoint_publishes_frames_laid_out_in_key_order() {
    let (vfs, tree, model) = scattered_store(11);
    let (wanting, out_of_order) = (frames_wanting_tidy(&tree), frames_out_of_preorder(&tree));
    assert!(wanting > 0 && out_of_order >= wanting, "random inserts scatter nodes");
    tree.checkpoint().unwrap();
    assert_eq!(tree.engine().pool.counters.tidies.get(), out_of_order as u64);
    assert_eq!((frames_wanting_tidy(&tree), frames_out_of_preorder(&tree)), (0, 0));
    // The frames as published, without the WAL: tidy, and the same tree.
    let published = open_on(&frames_only(&vfs));
    published.engine().check_invariants().unwrap();
    assert_eq!(contents(&published), model);
    assert_eq!(frames_wanting_tidy(&published), 0);
}

/// Checkpoints a bound forces (a writer over the WAL or cache bound, or
/// the checkpointer woken by a mark) capture at once and leave the frames
/// in memory as they are, but what they write is in key order
/// (`tidy::tidy_image`); asked-for ones, and those only the timer made due,
/// tidy the frames in memory first.
#[test]
fn only_checkpoints_no_bound_presses_tidy_first() {
    let (vfs, tree, model) = scattered_store(12);
    let engine = tree.engine();
    assert_eq!(engine.checkpoint_due(false), None, "no mark reached, timer not due");
    assert_eq!(engine.checkpoint_due(true), Some(Start::Tidy));
    let wanting = frames_wanting_tidy(&tree);
    engine.checkpoint_now(Start::Now).unwrap();
    assert_eq!((engine.pool().counters.tidies.get(), frames_wanting_tidy(&tree)), (wanting as u64, wanting));
    let published = open_on(&frames_only(&vfs));
    published.engine().check_invariants().unwrap();
    assert_eq!((contents(&published), frames_wanting_tidy(&published)), (model.clone(), 0), "written in key order");
    drop(published);
    assert_eq!(engine.checkpoint_due(true), None, "nothing dirty");
    tree.checkpoint().unwrap();
    assert_eq!(engine.pool().counters.tidies.get(), 2 * wanting as u64, "clean frames left untidy are tidied too");
    assert_eq!(frames_wanting_tidy(&tree), 0);
    let published = open_on(&frames_only(&vfs));
    assert_eq!((contents(&published), frames_wanting_tidy(&published)), (model, 0));
}

/// Readers check every answer against the one value a key ever holds,
/// and that scans return their directory's first keys in order, while a
/// writer adds keys and the main thread tidies whatever is dirty.
#[test]
fn tidies_under_readers_and_writers_change_no_answer() {
    let tree = TreeBuilder::new("tidy").memory().open().unwrap();
    let (mut model, mut rng) = (BTreeMap::new(), SplitMix64::new(5));
    put_random(&tree, &mut model, &mut rng, 20_000);
    let first: Arc<Vec<Vec<u8>>> = Arc::new(model.keys().cloned().collect());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (tree, first, stop) = (tree.clone(), first.clone(), stop.clone());
            std::thread::spawn(move || read_until(&tree, &first, &stop, r))
        })
        .collect();
    let writer = {
        let tree = tree.clone();
        std::thread::spawn(move || {
            let (mut added, mut rng) = (BTreeMap::new(), SplitMix64::new(6));
            put_random(&tree, &mut added, &mut rng, 20_000);
            added
        })
    };
    let pool = &tree.engine().pool;
    while !writer.is_finished() {
        tidy_resident(pool);
    }
    tidy_resident(pool);
    stop.store(true, Ordering::Relaxed);
    model.extend(writer.join().unwrap());
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(pool.counters.tidies.get() > 0 && reads > 0);
    tree.engine().check_invariants().unwrap();
    assert_eq!(contents(&tree), model);
}

/// Gets and directory scans until `stop`; returns how many.
fn read_until(tree: &Tree, first: &[Vec<u8>], stop: &AtomicBool, seed: u64) -> u64 {
    let mut rng = SplitMix64::new(seed);
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let k = &first[rng.below(first.len() as u64) as usize];
        assert_eq!(tree.get(k).unwrap(), Some(value_of(k)));
        let dir = &k[..8];
        let mut cursor = tree.scan_prefix(dir).cursor();
        let mut last: Option<Vec<u8>> = None;
        let mut seen = 0;
        while let Some(e) = cursor.next_entry().unwrap() {
            assert_eq!(e.value(), value_of(e.key()).as_slice());
            assert!(last.as_deref().is_none_or(|l| l < e.key()), "keys in order");
            seen += usize::from(first.binary_search_by(|f| f.as_slice().cmp(e.key())).is_ok());
            last = Some(e.key().to_vec());
        }
        let expect = first.iter().filter(|f| f.starts_with(dir)).count();
        assert_eq!(seen, expect, "every first key of {dir:?}");
        reads += 1;
    }
    reads
}
