//! Checkpoints that do not stall writers (`store::capture`): the cut copies
//! nothing, a writer between the cut and the copy copies only the frames it
//! latches, and the published images are exactly the tree at the cut
//! whatever writers did after it (changed, created, emptied and retired
//! frames), with the WAL replaying the rest.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use super::checkpoint::on_next_cut;
use super::power_loss_tests::contents;
use super::{Config, Engine};
use crate::ids::Lsn;
use crate::journal::{create_segment, list_segments};
use crate::store::lock::StoreLock;
use crate::store::manifest;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::vfs::Vfs;
use crate::Tree;

pub(super) type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const DIR: &str = "/store";

/// A store on `vfs` whose every write is synced before it returns, with no
/// background checkpointer and a pool the tests never fill.
pub(super) fn open_on(vfs: &MemVfs) -> Tree {
    open_with(vfs, |cfg| {
        cfg.wal_sync_on_commit = true;
        cfg.checkpoint_interval = None;
        cfg.pool_frames_max = 4096;
    })
}

/// A store on `vfs` with the options `set` makes.
pub(super) fn open_with(vfs: &MemVfs, set: impl FnOnce(&mut Config)) -> Tree {
    let dir = Path::new(DIR);
    let lock = StoreLock::acquire_mem(vfs, dir).unwrap();
    let mut cfg = Config::new(dir.to_path_buf());
    set(&mut cfg);
    Tree::from_engine(Engine::open_durable(cfg, Arc::new(vfs.clone()), lock).unwrap())
}

fn key(i: u32) -> Vec<u8> {
    format!("d/{:04}/name-{i:07}", i % 97).into_bytes()
}

fn value(i: u32, round: u8) -> Vec<u8> {
    vec![round; 60 + (i % 50) as usize]
}

/// Put 60,000 keys of 200,000 in a scattered order: most frames dirty.
fn put_scattered(tree: &Tree, model: &mut Model, round: u8) {
    for i in 0..60_000u32 {
        put(tree, model, i.wrapping_mul(2_654_435_761) % 200_000, round);
    }
}

pub(super) fn put(tree: &Tree, model: &mut Model, i: u32, round: u8) {
    tree.put(&key(i), &value(i, round)).unwrap();
    model.insert(key(i), value(i, round));
}

pub(super) fn delete(tree: &Tree, model: &mut Model, i: u32) {
    tree.delete(&key(i)).unwrap();
    model.remove(&key(i));
}

/// `vfs` after a power loss, its WAL replaced by an empty segment that
/// starts past the published checkpoint: opening it shows the checkpoint's
/// frames alone, no record replayed.
pub(super) fn frames_only(vfs: &MemVfs) -> MemVfs {
    let image = vfs.crash(CrashMode::DropUnsynced);
    let manifest = manifest::read(&image, Path::new(DIR)).unwrap().expect("a published checkpoint");
    let cut = manifest.meta.expect("checkpoint metadata").checkpoint_lsn;
    let wal = Path::new(DIR).join(super::durable::WAL_DIR);
    for (_, path) in list_segments(&image, &wal).unwrap() {
        image.remove(&path).unwrap();
    }
    create_segment(&image, &wal, Lsn(cut.0 + 1)).unwrap();
    image
}

/// The writes a test makes between a cut and its copy: changes in frames
/// dirty at the cut, new keys (spills make new frames), and a deleted
/// range folded away by `compact` (frames emptied and retired).
fn after_cut_writes(tree: &Tree, model: &mut Model, keys: u32) {
    for i in (0..keys).step_by(7) {
        put(tree, model, i, 3);
    }
    for i in keys..keys + keys / 2 {
        put(tree, model, i, 4);
    }
    for i in (0..keys).filter(|i| i % 97 < 40) {
        delete(tree, model, i);
    }
    for _ in 0..8 {
        tree.compact().unwrap();
    }
}

/// A store of `keys` keys, checkpointed, then every `step`th key written
/// again (dirty frames for the next checkpoint), with its model.
fn checkpointed_then_dirtied(keys: u32, step: usize) -> (MemVfs, Tree, Model) {
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let mut model = Model::new();
    for i in 0..keys {
        put(&tree, &mut model, i, 1);
    }
    tree.checkpoint().unwrap();
    for i in (0..keys).step_by(step) {
        put(&tree, &mut model, i, 2);
    }
    (vfs, tree, model)
}

/// A writer changes frames between the cut and their copy: the published
/// images still hold the tree exactly as it was at the cut (a reopen
/// without the WAL finds it), and a reopen with the WAL finds every write
/// after the cut too.
#[test]
fn writes_between_the_cut_and_the_copy_stay_out_of_the_images() {
    let keys = 30_000;
    let (vfs, tree, mut model) = checkpointed_then_dirtied(keys, 3);
    for i in (0..keys).filter(|i| i % 97 >= 90) {
        delete(&tree, &mut model, i);
    }
    tree.compact().unwrap();
    let at_cut = model.clone();
    let after = Rc::new(RefCell::new(model));
    let (writer, written) = (tree.clone(), after.clone());
    let pool_counters = |t: &Tree| {
        let c = &t.engine().pool.counters;
        (c.copies_on_write.get(), c.spills.get(), c.merges.get())
    };
    let before = pool_counters(&tree);
    on_next_cut(move || after_cut_writes(&writer, &mut written.borrow_mut(), keys));
    tree.checkpoint().unwrap();
    let (copies, spills, merges) = pool_counters(&tree);
    assert!(copies > before.0, "writers copied frames pending for the capture");
    assert!(spills > before.1, "writes after the cut made new frames");
    assert!(merges > before.2, "writes after the cut emptied frames that compact folded away");
    assert_eq!(contents(&tree), *after.borrow());
    tree.check_invariants().unwrap();

    let cut = open_on(&frames_only(&vfs));
    cut.check_invariants().unwrap();
    assert!(contents(&cut) == at_cut, "the published frames are the tree at the cut");
    drop(cut);
    let replayed = open_on(&vfs.crash(CrashMode::DropUnsynced));
    replayed.check_invariants().unwrap();
    assert!(contents(&replayed) == *after.borrow(), "the cut plus the WAL is every write");
    drop(replayed);
    // The frames retired after the cut are dropped by the next checkpoint.
    tree.checkpoint().unwrap();
    assert!(contents(&open_on(&frames_only(&vfs))) == *after.borrow());
}

/// The copier reads each frame without keeping writers out; writers that
/// come meanwhile copy the frames themselves, and the copier's buffers,
/// written in, go back to the spares that later writers copy into. The
/// published images must still be the tree at the cut, checksums and all
/// (an image's checksum covers the zeros of the frame's free gap, so a
/// spare must come back zeroed).
#[test]
fn writers_during_the_copiers_reads_leave_the_images_whole() {
    let keys = 120_000;
    let (vfs, tree, model) = checkpointed_then_dirtied(keys, 2);
    let at_cut = model.clone();
    let after = Rc::new(RefCell::new(model));
    let (writer, written) = (tree.clone(), after.clone());
    let mut round = 0u32;
    crate::store::pool::on_unheld_copies(move || {
        // Each round changes the keys of a tenth of the 97 directories: a
        // few frames, sometimes the one being read, the rest copied by the
        // writers from the spares, into which the copier's buffers go back.
        for i in (0..keys).filter(|i| (i % 97) % 10 == round % 10).step_by(7) {
            put(&writer, &mut written.borrow_mut(), i, 3 + (round % 100) as u8);
        }
        round += 1;
        round < 30
    });
    let before = tree.engine().pool.counters.copies_on_write.get();
    tree.checkpoint().unwrap();
    // Drop the hook (and its tree) now, not with the thread's locals.
    crate::store::pool::on_unheld_copies(|| false);
    let copies = tree.engine().pool.counters.copies_on_write.get() - before;
    assert!(copies > 10, "writers copied frames: {copies}");
    assert_eq!(contents(&tree), *after.borrow());
    let cut = open_on(&frames_only(&vfs));
    cut.check_invariants().unwrap();
    assert!(contents(&cut) == at_cut, "the published frames are the tree at the cut");
    drop(cut);
    let replayed = open_on(&vfs.crash(CrashMode::DropUnsynced));
    assert!(contents(&replayed) == *after.borrow(), "the cut plus the WAL is every write");
}

/// How many frames a writer copies right after a cut, and how many were
/// dirty at it, for a tree of `keys` keys all written since the last
/// checkpoint.
fn writer_copies_after_cut(keys: u32) -> (usize, u64) {
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let mut model = Model::new();
    for i in 0..keys {
        put(&tree, &mut model, i, 1);
    }
    let dirty = tree.engine().pool.dirty_count();
    let seen = Rc::new(RefCell::new(None));
    let (writer, copies) = (tree.clone(), seen.clone());
    on_next_cut(move || {
        let pool = &writer.engine().pool;
        assert_eq!(pool.images_taken(), 0, "the cut copied no frame");
        assert_eq!(pool.dirty_count(), dirty, "every frame dirty at the cut is still to copy");
        let before = pool.counters.copies_on_write.get();
        writer.put(&key(keys / 2), b"changed").unwrap();
        *copies.borrow_mut() = Some(pool.counters.copies_on_write.get() - before);
        assert_eq!(pool.images_taken(), 1, "the writer's copy is the only one so far");
    });
    tree.checkpoint().unwrap();
    let copies = seen.borrow().expect("the hook ran");
    (dirty, copies)
}

/// The cut copies nothing, and a write right after it (before the copier
/// has run) copies the one frame it changes, the same with many times more
/// dirty frames: what a writer waits for does not grow with them.
#[test]
fn a_writer_after_the_cut_copies_only_its_own_frame_however_many_are_dirty() {
    let (dirty_small, copies_small) = writer_copies_after_cut(2_000);
    let (dirty_large, copies_large) = writer_copies_after_cut(80_000);
    assert!(dirty_large >= 10 * dirty_small.max(1), "dirty frames {dirty_small} and {dirty_large}");
    assert_eq!((copies_small, copies_large), (1, 1));
}

/// Key `i` of writer `w`: consecutive keys of one writer land in frames far
/// apart, so a cut that mixed frames from before and after it would show
/// a later key without an earlier one.
fn writer_key(w: u32, i: u32) -> Vec<u8> {
    let spread = i.wrapping_mul(2_654_435_761) % 4096;
    format!("{spread:04x}/w{w}/{i:08}").into_bytes()
}

/// For each writer, the keys of it a tree holds must be its first ones
/// (each writer puts its keys in order, one at a time): what a whole cut
/// of a run of writes looks like. Returns how many each has.
fn prefix_per_writer(tree: &Tree, writers: u32) -> Vec<u32> {
    let have = contents(tree);
    (0..writers)
        .map(|w| {
            let n = (0..).take_while(|&i| have.contains_key(&writer_key(w, i))).count() as u32;
            let tag = format!("/w{w}/").into_bytes();
            let all = have.keys().filter(|k| k.windows(tag.len()).any(|x| x == tag)).count();
            assert_eq!(all as u32, n, "writer {w}: keys past its first {n} with one before them missing");
            n
        })
        .collect()
}

/// Writers run on their own threads through checkpoints taken one after
/// another; the frames each checkpoint published, opened without the WAL,
/// are a whole cut (every writer's keys a prefix, the key count right), and
/// the store with its WAL holds every write.
#[test]
fn checkpoints_under_concurrent_writers_publish_whole_cuts() {
    whole_cuts_under_writers(false);
}

/// The same with background checkpoints running back to back beside the
/// asked ones, each asked one stopping the background one under way:
/// every cut published is still whole, and no write is lost.
#[test]
fn checkpoints_that_give_way_under_concurrent_writers_lose_nothing() {
    whole_cuts_under_writers(true);
}

fn whole_cuts_under_writers(background: bool) {
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let writers = 2;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = background.then(|| {
        let (tree, stop) = (tree.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tree.engine().checkpoint_now(super::checkpoint::Start::Now).unwrap();
                std::thread::yield_now();
            }
        })
    });
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (tree, stop) = (tree.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tree.put(&writer_key(w, i), &[w as u8; 90]).unwrap();
                    i += 1;
                }
                i
            })
        })
        .collect();
    let mut cuts = Vec::new();
    // Ten cuts, and with background checkpoints more until one of them
    // has given way (most rounds see one).
    let gave_way = || tree.engine().pool.counters.checkpoints_stopped.get() > 0;
    while cuts.len() < 10 || (background && !gave_way() && cuts.len() < 200) {
        std::thread::sleep(std::time::Duration::from_millis(30));
        tree.checkpoint().unwrap();
        cuts.push(frames_only(&vfs));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    if let Some(h) = checkpointer {
        h.join().unwrap();
    }
    let counters = &tree.engine().pool.counters;
    let (copies, stopped) = (counters.copies_on_write.get(), counters.checkpoints_stopped.get());
    eprintln!("writes {written:?}, frames copied by writers {copies}, checkpoints stopped {stopped}");
    assert_eq!(stopped > 0, background, "background checkpoints gave way to the asked ones");
    let mut last = vec![0; writers as usize];
    for image in &cuts {
        let cut = open_on(image);
        cut.check_invariants().unwrap();
        let have = prefix_per_writer(&cut, writers);
        assert!(have.iter().zip(&last).all(|(h, l)| h >= l), "cuts move forward: {last:?} then {have:?}");
        last = have;
    }
    let all = open_on(&vfs.crash(CrashMode::DropUnsynced));
    all.check_invariants().unwrap();
    assert_eq!(prefix_per_writer(&all, writers), written, "every acknowledged write survives");
}

/// A checkpoint asked for writes each image as it is copied and reuses
/// its buffer: a few buffers, however many frames are dirty. One a bound
/// forces gives every dirty frame a buffer up front (writers may copy
/// most of them before the copier comes), up to a quarter of the cache
/// (`pressed_checkpoint_images_stay_a_fraction_of_a_small_cache`). Both
/// publish the whole cut.
#[test]
fn a_quiet_checkpoint_holds_a_few_images_however_many_frames_are_dirty() {
    use super::checkpoint::Start;
    use crate::store::pool::WRITER_SPARES;
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let mut model = Model::new();
    let pool = &tree.engine().pool;
    for (round, start) in [Start::Tidy, Start::Now].into_iter().enumerate() {
        put_scattered(&tree, &mut model, round as u8);
        let dirty = pool.dirty_count() as u64;
        assert!(dirty > 2 * WRITER_SPARES as u64, "{dirty} dirty frames");
        let made = pool.images_made();
        tree.engine().checkpoint_now(start).unwrap();
        let buffers = pool.images_made() - made;
        match start {
            Start::Tidy => assert!(buffers <= WRITER_SPARES as u64 + 1, "{buffers} buffers for {dirty} dirty frames"),
            Start::Now => assert!(buffers >= dirty, "{buffers} buffers for {dirty} dirty frames"),
        }
        assert_eq!(contents(&open_on(&frames_only(&vfs))), model, "{start:?}: the published cut");
    }
}

/// A checkpoint keeps `SPARES_KEPT` image buffers resident for the next
/// one and releases the rest lazily (the kernel may take their memory):
/// after one that held an image per dirty frame, the next pressed one
/// reuses the released ones, the next quiet one maps no buffer, and the
/// released ones it did not take are unmapped.
#[test]
fn a_checkpoint_keeps_a_quiet_ones_buffers_and_releases_the_rest_lazily() {
    use super::checkpoint::Start;
    use crate::store::pool::SPARES_KEPT;
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let mut model = Model::new();
    let pool = &tree.engine().pool;
    let pressed = |model: &mut Model, round: u8| {
        put_scattered(&tree, model, round);
        let (dirty, made) = (pool.dirty_count() as u64, pool.images_made());
        tree.engine().checkpoint_now(Start::Now).unwrap();
        (dirty, pool.images_made() - made)
    };
    let (dirty, made) = pressed(&mut model, 1);
    assert!(made >= dirty && dirty > 2 * SPARES_KEPT as u64, "an image per dirty frame");
    assert_eq!(pool.spare_images(), (SPARES_KEPT, made as usize - SPARES_KEPT), "the rest released lazily");
    let (dirty, made) = pressed(&mut model, 2);
    assert!(made < dirty / 2, "{made} buffers made for {dirty} dirty frames: the released ones were reused");
    for i in 0..2_000u32 {
        put(&tree, &mut model, i.wrapping_mul(2_654_435_761) % 200_000, 3);
    }
    let made = pool.images_made();
    tree.engine().checkpoint_now(Start::Tidy).unwrap();
    assert_eq!(pool.images_made(), made, "the kept spares served the quiet checkpoint");
    assert_eq!(pool.spare_images(), (SPARES_KEPT, 0), "released buffers it did not take are unmapped");
    assert_eq!(contents(&open_on(&frames_only(&vfs))), model, "the published cut");
}

/// Writers that copy frames for a quiet checkpoint (a random write load
/// touches every frame right after the cut) take the buffers an earlier
/// pressed checkpoint released lazily before they map new ones: a new
/// mapping faults 128 pages on the writer's path.
#[test]
fn writers_copy_into_released_buffers_before_new_ones() {
    use super::checkpoint::Start;
    use crate::store::pool::SPARES_KEPT;
    let vfs = MemVfs::new();
    let tree = open_on(&vfs);
    let mut model = Model::new();
    let pool = &tree.engine().pool;
    put_scattered(&tree, &mut model, 1);
    tree.engine().checkpoint_now(Start::Now).unwrap();
    let (_, released) = pool.spare_images();
    put_scattered(&tree, &mut model, 2);
    let dirty = pool.dirty_count();
    assert!(released >= dirty && dirty > 2 * SPARES_KEPT, "{released} buffers released, {dirty} frames dirty");
    let (made, copies) = (pool.images_made(), pool.counters.copies_on_write.get());
    let after = Rc::new(RefCell::new(model));
    let (writer, written) = (tree.clone(), after.clone());
    on_next_cut(move || put_scattered(&writer, &mut written.borrow_mut(), 3));
    tree.engine().checkpoint_now(Start::Tidy).unwrap();
    let copied = pool.counters.copies_on_write.get() - copies;
    assert!(copied > 2 * SPARES_KEPT as u64, "writers copied {copied} frames");
    assert_eq!(pool.images_made(), made, "no buffer mapped: the spares, then the released ones");
    assert_eq!(contents(&tree), *after.borrow());
}

/// A checkpoint a bound forces holds images in the cache's unused room
/// only: with the cache full of dirty frames, as many as the spares at a
/// time (writing them before it copies more), not an image per dirty
/// frame, nor a share of the cache beyond its budget; it publishes the
/// whole cut.
#[test]
fn a_pressed_checkpoint_of_a_full_cache_holds_images_in_the_spares_only() {
    use super::checkpoint::Start;
    use crate::store::pool::SPARES_KEPT;
    const POOL: usize = 48;
    let vfs = MemVfs::new();
    let tree = open_with(&vfs, |cfg| {
        cfg.checkpoint_interval = None;
        cfg.pool_frames_max = POOL;
        // No checkpoint of its own before the one under test.
        cfg.checkpoint_dirty_frames = Some(2 * POOL);
    });
    let mut model = Model::new();
    let pool = &tree.engine().pool;
    let mut i = 0u32;
    while pool.dirty_count() < POOL {
        put(&tree, &mut model, i.wrapping_mul(2_654_435_761) % 400_000, 1);
        i += 1;
    }
    let (dirty, made) = (pool.dirty_count() as u64, pool.images_made());
    tree.engine().checkpoint_now(Start::Now).unwrap();
    let buffers = pool.images_made() - made;
    // The copier's hold (the spares: the cache has no room) and the spares.
    let held = 2 * SPARES_KEPT as u64;
    assert!(buffers <= held, "{buffers} buffers for {dirty} dirty frames in a full cache of {POOL}");
    assert_eq!(pool.dirty_count(), 0);
    assert_eq!(contents(&open_on(&frames_only(&vfs))), model, "the published cut");
}

/// Start a checkpoint on another thread from inside a cut's hook, and
/// return once it waits for the checkpoint lock: the caller's checkpoint
/// is then between its cut and its first image.
fn ask_for_a_checkpoint_mid_way(tree: &Tree) -> Rc<RefCell<Option<std::thread::JoinHandle<()>>>> {
    let asker = Rc::new(RefCell::new(None));
    let (handle, tree) = (asker.clone(), tree.clone());
    on_next_cut(move || {
        let caller = tree.clone();
        *handle.borrow_mut() = Some(std::thread::spawn(move || caller.checkpoint().unwrap()));
        let durable = tree.engine().durable.as_ref().expect("persistent");
        while !durable.asked_waits() {
            std::thread::yield_now();
        }
    });
    asker
}

/// A checkpoint nobody waits for (the checkpointer's, or a writer's over
/// a bound) gives way to one a caller asks for: once the caller waits it
/// writes no image and publishes nothing, and puts its frames back; the
/// caller's checkpoint then publishes every write, those after the first
/// cut included. A caller's checkpoint gives way to nobody.
#[test]
fn a_background_checkpoint_gives_way_to_an_asked_one() {
    let keys = 30_000;
    let (vfs, tree, mut model) = checkpointed_then_dirtied(keys, 3);
    let engine = tree.engine();
    let (published, stopped) = (engine.checkpoints_published(), || engine.pool.counters.checkpoints_stopped.get());
    let dirty = engine.pool.dirty_count();
    assert!(dirty >= 5, "frames to write: {dirty}");
    let asker = ask_for_a_checkpoint_mid_way(&tree);
    engine.checkpoint_now(super::checkpoint::Start::Now).unwrap();
    assert_eq!(stopped(), 1, "the background checkpoint stopped");
    asker.borrow_mut().take().expect("asked mid-way").join().unwrap();
    assert_eq!(engine.checkpoints_published(), published + 1, "only the asked one published");
    assert_eq!(engine.pool.dirty_count(), 0, "the asked cut took every frame the stopped one put back");
    tree.check_invariants().unwrap();
    let cut = open_on(&frames_only(&vfs));
    cut.check_invariants().unwrap();
    assert!(contents(&cut) == model, "the asked checkpoint's frames hold every write");
    drop(cut);

    for i in (0..keys).step_by(5) {
        put(&tree, &mut model, i, 5);
    }
    let asker = ask_for_a_checkpoint_mid_way(&tree);
    tree.checkpoint().unwrap();
    asker.borrow_mut().take().expect("asked mid-way").join().unwrap();
    assert_eq!(stopped(), 1, "an asked checkpoint runs to its end");
    assert_eq!(engine.checkpoints_published(), published + 2, "the second caller found nothing changed");
    let cut = open_on(&frames_only(&vfs));
    assert!(contents(&cut) == model);
    drop(cut);
    drop(tree);
    assert!(contents(&open_on(&vfs.crash(CrashMode::DropUnsynced))) == model);
}

/// A store whose 48-frame cache is full of dirty frames, with no
/// checkpoint of its own before the one under test, and every write
/// synced.
fn cache_full_of_dirty_frames(vfs: &MemVfs) -> (Tree, Model) {
    const POOL: usize = 48;
    let tree = open_with(vfs, |cfg| {
        cfg.wal_sync_on_commit = true;
        cfg.checkpoint_interval = None;
        cfg.pool_frames_max = POOL;
        cfg.checkpoint_dirty_frames = Some(2 * POOL);
    });
    let mut model = Model::new();
    let mut i = 0u32;
    while tree.engine().pool.dirty_count() < POOL {
        put(&tree, &mut model, i.wrapping_mul(2_654_435_761) % 400_000, 1);
        i += 1;
    }
    (tree, model)
}

/// During the copy of each frame of the cut: evict whatever the clock can
/// and read a few keys back. Returns the most frames of the cut seen
/// evictable at once, and how many frames the copies' hooks evicted.
fn evict_and_read_during_the_copy(tree: &Tree, model: &Model) -> Rc<RefCell<(usize, usize)>> {
    let (tree, model) = (tree.clone(), model.clone());
    let cut = tree.engine().pool.dirtied_ids();
    let seen = Rc::new(RefCell::new((0, 0)));
    let counts = seen.clone();
    crate::store::pool::on_unheld_copies(move || {
        let pool = &tree.engine().pool;
        let let_go = cut.iter().filter(|&&id| pool.is_evictable(id)).count();
        let (mut most, mut evicted) = *counts.borrow();
        most = most.max(let_go);
        for _ in 0..4 * pool.capacity() {
            match pool.hand_step() {
                None => break,
                Some(trimmed) => evicted += usize::from(!trimmed),
            }
        }
        *counts.borrow_mut() = (most, evicted);
        for (k, v) in model.iter().step_by(97) {
            assert_eq!(tree.get(k).unwrap().as_deref(), Some(&v[..]), "read during the copy");
        }
        true
    });
    seen
}

/// A checkpoint lets each frame it captured go once the frame's image is
/// written (`frame_store::shadow`), not at its commit: with the cache full
/// of dirty frames, frames of the cut turn evictable during the copy, and
/// evicted then they read back as the cut left them, during the copy and
/// after the commit; the published cut holds every write.
#[test]
fn a_checkpoint_lets_each_captured_frame_go_once_its_image_is_written() {
    let vfs = MemVfs::new();
    let (tree, model) = cache_full_of_dirty_frames(&vfs);
    let seen = evict_and_read_during_the_copy(&tree, &model);
    tree.engine().checkpoint_now(super::checkpoint::Start::Now).unwrap();
    crate::store::pool::on_unheld_copies(|| false);
    let (let_go, evicted) = *seen.borrow();
    assert!(let_go > 4 && evicted > let_go, "{let_go} frames of the cut let go before the commit, {evicted} evicted");
    assert!(contents(&tree) == model, "every write, read back");
    tree.check_invariants().unwrap();
    assert!(contents(&open_on(&frames_only(&vfs))) == model, "the published cut");
}

/// A checkpoint that fails after it let frames go leaves their images
/// staged: reads go on finding them, and the next checkpoint publishes
/// them; a power loss before that reopens the last checkpoint and the WAL.
#[test]
fn a_checkpoint_that_fails_after_letting_frames_go_leaves_their_images_for_the_next() {
    let vfs = MemVfs::new();
    let (tree, model) = cache_full_of_dirty_frames(&vfs);
    let seen = evict_and_read_during_the_copy(&tree, &model);
    vfs.fail_write_after_with(24, libc::EIO);
    let failed = tree.engine().checkpoint_now(super::checkpoint::Start::Now);
    crate::store::pool::on_unheld_copies(|| false);
    vfs.clear_faults();
    assert!(failed.is_err(), "the checkpoint failed mid-way");
    assert!(seen.borrow().0 > 0, "frames let go before the failure");
    let store = &tree.engine().durable.as_ref().unwrap().store;
    assert!(store.staged_count() > 0, "their images staged");
    assert!(contents(&tree) == model, "every write, read back");
    assert!(contents(&open_on(&vfs.crash(CrashMode::DropUnsynced))) == model, "the WAL replays what no checkpoint holds");
    tree.checkpoint().unwrap();
    assert_eq!(store.staged_count(), 0);
    tree.check_invariants().unwrap();
    assert!(contents(&open_on(&frames_only(&vfs))) == model, "the next checkpoint published them");
}
