//! Tidies (`tree::tidy`) as the engine runs them: before each checkpoint's
//! cut, on frames that readers and writers use meanwhile.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
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
/// the checkpointer woken by a mark) capture at once, without tidying the
/// frames in memory first (writers would wait), but what they write is in
/// key order (`tidy::tidy_image`), and each frame no writer touched since
/// its copy takes that layout (`adopt_layout`), staying clean: the next
/// asked-for checkpoint has nothing to tidy and nothing to write. Asked-for
/// ones, and those only the timer made due, tidy the frames in memory
/// first.
#[test]
fn only_checkpoints_no_bound_presses_tidy_first() {
    let (vfs, tree, model) = scattered_store(12);
    let engine = tree.engine();
    assert_eq!(engine.checkpoint_due(false), None, "no mark reached, timer not due");
    assert_eq!(engine.checkpoint_due(true), Some(Start::Tidy));
    let wanting = frames_wanting_tidy(&tree);
    engine.checkpoint_now(Start::Now).unwrap();
    let counters = &engine.pool().counters;
    assert_eq!((counters.tidies.get(), counters.layouts_adopted.get()), (wanting as u64, wanting as u64));
    assert_eq!(frames_wanting_tidy(&tree), 0, "the frames took their images' layout");
    assert_eq!(engine.pool().dirty_count(), 0, "and stayed clean");
    engine.check_invariants().unwrap();
    assert_eq!(contents(&tree), model);
    let published = open_on(&frames_only(&vfs));
    published.engine().check_invariants().unwrap();
    assert_eq!((contents(&published), frames_wanting_tidy(&published)), (model.clone(), 0), "written in key order");
    drop(published);
    assert_eq!(engine.checkpoint_due(true), None, "nothing dirty");
    let checkpoints = engine.checkpoints_published();
    tree.checkpoint().unwrap();
    assert_eq!(counters.tidies.get(), wanting as u64, "no frame is laid out twice");
    assert_eq!(engine.checkpoints_published(), checkpoints, "nothing written again");
    let published = open_on(&frames_only(&vfs));
    assert_eq!((contents(&published), frames_wanting_tidy(&published)), (model, 0));
}

/// A frame a writer changes between the copier's claim and the write of
/// its image keeps its own layout and its change (the image holds the
/// frame at the cut, no longer its content); the frames no writer touched
/// take their images' layout. Everything reads as written, and the
/// published frames are the tree at the cut.
#[test]
fn a_frame_changed_after_its_claim_keeps_its_layout() {
    let (vfs, tree, model) = scattered_store(13);
    let engine = tree.engine();
    let wanting = frames_wanting_tidy(&tree) as u64;
    let after = Rc::new(RefCell::new(model.clone()));
    let (writer, written) = (tree.clone(), after.clone());
    let mut copies = 0;
    crate::store::pool::on_unheld_copies(move || {
        copies += 1;
        if copies < wanting / 2 {
            return true;
        }
        // Half the frames are claimed and none written (a pressed
        // checkpoint holds its images): change a key in the first three
        // directories (a frame or two).
        for d in 0..3 {
            let k = key(d, 1 << 40);
            writer.put(&k, b"changed after the claim").unwrap();
            written.borrow_mut().insert(k, b"changed after the claim".to_vec());
        }
        false
    });
    engine.checkpoint_now(Start::Now).unwrap();
    crate::store::pool::on_unheld_copies(|| false);
    let adopted = engine.pool().counters.layouts_adopted.get();
    assert!(adopted > 0 && adopted < wanting, "{adopted} of {wanting} frames took their images' layout");
    assert!(frames_wanting_tidy(&tree) > 0, "the changed ones did not");
    engine.check_invariants().unwrap();
    assert!(contents(&tree) == *after.borrow(), "every write reads back");
    let published = open_on(&frames_only(&vfs));
    published.engine().check_invariants().unwrap();
    assert!(contents(&published) == model, "the published frames are the tree at the cut");
    drop(published);
    tree.checkpoint().unwrap();
    assert!(contents(&open_on(&frames_only(&vfs))) == *after.borrow());
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
