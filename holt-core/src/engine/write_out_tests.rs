//! Dirty frames written out between checkpoints (`engine::write_out`):
//! they leave memory without a checkpoint, are read back from the slots
//! they were staged in, and the next checkpoint publishes exactly the
//! tree at its cut; a power loss at any step keeps every acknowledged
//! write.

use std::sync::Arc;
use std::thread;

use super::capture_tests::{delete, frames_only, open_on, open_with, put, Model};
use super::checkpoint::Start;
use super::power_loss_tests::contents;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::pool::on_unheld_copies;
use crate::Tree;

/// Synced commits, no background thread (no miss filter either: its
/// builder reads frames after an open, so a run would not replay the same
/// disk operations), and write-outs that clean every dirty frame (a dirty
/// mark of 1: `write_out_dirty` stops at half of it).
fn open_writing_out(vfs: &MemVfs) -> Tree {
    open_with(vfs, |cfg| {
        cfg.wal_sync_on_commit = true;
        cfg.checkpoint_interval = None;
        cfg.wal_flusher = false;
        cfg.miss_filter = false;
        cfg.pool_frames_max = 4096;
        cfg.checkpoint_dirty_frames = Some(1);
    })
}

/// Frames the store holds a staged image of.
fn staged(tree: &Tree) -> usize {
    tree.engine().durable.as_ref().expect("a durable tree").store.staged_count()
}

/// `open_writing_out` with keys 0..12 000 put and checkpointed.
fn checkpointed(vfs: &MemVfs) -> (Tree, Model) {
    let tree = open_writing_out(vfs);
    let mut model = Model::new();
    (0..12_000).for_each(|i| put(&tree, &mut model, i, 0));
    tree.checkpoint().unwrap();
    (tree, model)
}

/// Keys of the first `dirs` of the 97 directories `put` spreads keys over.
fn in_dirs(i: &u32, dirs: u32) -> bool {
    i % 97 < dirs
}

#[test]
fn staged_frames_are_published_as_the_tree_at_the_next_cut() {
    let vfs = MemVfs::new();
    let (tree, mut model) = checkpointed(&vfs);
    (0..12_000).step_by(5).for_each(|i| put(&tree, &mut model, i, 1));
    let pool = tree.engine().pool();
    let cleaned = tree.engine().write_out_dirty(false).unwrap();
    assert!(cleaned > 3, "the updates dirtied several frames: {cleaned} written out");
    assert_eq!((pool.dirty_count(), staged(&tree)), (0, cleaned), "every dirty frame staged and clean");
    assert_eq!(contents(&tree), model, "the frames are as they were");
    // Changes before the cut: some staged frames dirty again, new keys.
    (0..12_000).filter(|i| in_dirs(i, 6)).for_each(|i| put(&tree, &mut model, i, 2));
    (12_000..12_500).filter(|i| in_dirs(i, 6)).for_each(|i| put(&tree, &mut model, i, 2));
    assert!(pool.dirty_count() < staged(&tree), "some staged images are the frames' state at the cut");
    let at_cut = model.clone();
    tree.engine().checkpoint_now(Start::Now).unwrap();
    assert_eq!(staged(&tree), 0, "the checkpoint published or superseded every staged image");
    // Changes after the cut, to frames staged and published.
    (0..12_000).step_by(3).for_each(|i| put(&tree, &mut model, i, 3));
    let frames = frames_only(&vfs);
    assert_eq!(contents(&open_on(&frames)), at_cut, "the published frames alone are the tree at the cut");
    drop(tree);
    assert_eq!(contents(&open_on(&vfs.crash(CrashMode::DropUnsynced))), model);
}

/// Disk operations of one step of `scenario`, and the tree's content
/// while it ran (no write came during it).
type Phase = (std::ops::Range<u64>, Model);

/// Run `step`, recording its disk operations with `model`.
fn phase(vfs: &MemVfs, phases: &mut Vec<Phase>, model: &Model, step: impl FnOnce()) {
    let from = vfs.ops_count();
    step();
    phases.push((from..vfs.ops_count(), model.clone()));
}

/// A checkpointed tree, changes in most of its frames, write-outs, more
/// changes (to frames written out and others) and write-outs again, more
/// changes, then a checkpoint. Returns the disk operations of each
/// write-out and of the checkpoint, with the tree's content meanwhile.
fn scenario(vfs: &MemVfs) -> Vec<Phase> {
    let (tree, mut model) = checkpointed(vfs);
    let mut phases = Vec::new();
    (0..12_000).step_by(4).for_each(|i| put(&tree, &mut model, i, 1));
    phase(vfs, &mut phases, &model, || assert!(tree.engine().write_out_dirty(false).unwrap() > 3));
    (0..12_000).filter(|i| in_dirs(i, 10)).for_each(|i| put(&tree, &mut model, i, 2));
    (12_000..13_000).for_each(|i| put(&tree, &mut model, i, 2));
    (0..12_000).step_by(11).for_each(|i| delete(&tree, &mut model, i));
    phase(vfs, &mut phases, &model, || assert!(tree.engine().write_out_dirty(false).unwrap() > 0));
    (0..12_000).filter(|i| in_dirs(i, 3)).for_each(|i| put(&tree, &mut model, i, 3));
    phase(vfs, &mut phases, &model, || tree.engine().checkpoint_now(Start::Now).unwrap());
    // Closed, not leaked: a crash image was taken before, if one was asked.
    drop(tree);
    phases
}

#[test]
fn a_crash_before_any_step_of_write_outs_and_their_checkpoint_keeps_every_acknowledged_write() {
    crash_before_every_op(scenario);
}

/// `scenario` on a tree reopened after its checkpoint, so that each frame
/// comes back from the store, with a few keys changed in each: write-outs
/// and the checkpoint write most of them as deltas over the published
/// images (`store::frame_store::delta`).
fn scenario_deltas(vfs: &MemVfs) -> Vec<Phase> {
    let (tree, mut model) = checkpointed(vfs);
    drop(tree);
    let tree = open_writing_out(vfs);
    let deltas = || tree.engine().counters().frame_deltas;
    let mut phases = Vec::new();
    (0..12_000).step_by(397).for_each(|i| put(&tree, &mut model, i, 1));
    phase(vfs, &mut phases, &model, || assert!(tree.engine().write_out_dirty(false).unwrap() > 2));
    assert!(deltas() > 2, "write-outs of frames with a few keys changed are deltas: {}", deltas());
    (0..12_000).step_by(353).for_each(|i| put(&tree, &mut model, i, 2));
    (0..12_000).step_by(1009).for_each(|i| delete(&tree, &mut model, i));
    let before = deltas();
    phase(vfs, &mut phases, &model, || tree.engine().checkpoint_now(Start::Now).unwrap());
    assert!(deltas() > before, "the checkpoint writes deltas too");
    assert!(contents(&open_on(&frames_only(vfs))) == model, "the published frames, deltas among them, alone are the tree");
    drop(tree);
    // Read back from their deltas, the frames count the deltas' pages as
    // changed: the next deltas over the same bases hold them too.
    let tree = open_writing_out(vfs);
    (0..12_000).step_by(331).for_each(|i| put(&tree, &mut model, i, 3));
    let before = tree.engine().counters().frame_deltas;
    phase(vfs, &mut phases, &model, || tree.engine().checkpoint_now(Start::Now).unwrap());
    assert!(tree.engine().counters().frame_deltas > before, "deltas over the same bases");
    assert!(contents(&open_on(&frames_only(vfs))) == model, "deltas of frames read from deltas");
    drop(tree);
    phases
}

#[test]
fn a_crash_before_any_step_of_delta_write_outs_and_their_checkpoint_keeps_every_acknowledged_write() {
    crash_before_every_op(scenario_deltas);
}

/// Run `scenario` once, then again with a power loss (dropped and torn)
/// before each of its disk operations: the reopened tree holds what the
/// tree held while that operation's step ran.
fn crash_before_every_op(scenario: impl Fn(&MemVfs) -> Vec<Phase>) {
    let phases = scenario(&MemVfs::new());
    let steps: u64 = phases.iter().map(|(ops, _)| ops.end - ops.start).sum();
    assert!(steps > 20, "write-outs and a checkpoint: {steps} disk operations");
    for (ops, model) in &phases {
        for op in ops.clone() {
            for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: op }] {
                let vfs = MemVfs::new();
                vfs.crash_before_op(op, mode);
                let again = scenario(&vfs);
                assert!(again.iter().map(|p| &p.0).eq(phases.iter().map(|p| &p.0)), "the run is deterministic");
                let image = vfs.take_crash_image().expect("the crash point is reached");
                let tree = open_writing_out(&image);
                tree.engine().check_invariants().unwrap();
                assert!(contents(&tree) == *model, "{mode:?} before op {op} of {ops:?}");
            }
        }
    }
}

/// A tree eight times its cache, on real files, written by two threads
/// while the background checkpointer runs: the cache bound is kept by
/// writing dirty frames out, not by checkpointing, and evicted frames come
/// back from their staged slots as they were.
#[test]
fn a_tree_larger_than_its_cache_writes_dirty_frames_out_instead_of_checkpointing() {
    let tmp = tempfile::tempdir().unwrap();
    let open = || {
        crate::TreeBuilder::new(tmp.path())
            .buffer_pool_size(crate::POOL_FRAMES_MIN)
            .checkpoint_interval(Some(std::time::Duration::from_secs(3600)))
            .open()
            .unwrap()
    };
    let tree = Arc::new(open());
    let mut model = Model::new();
    (0..60_000).for_each(|i| put(&tree, &mut model, i, 0));
    tree.checkpoint().unwrap();
    assert!(tree.engine().pool().tree_outgrows_cache(), "{} frames", tree.engine().pool().live_ids().len());
    let before = tree.counters();
    let writers: Vec<_> = (0..2u32)
        .map(|t| {
            let tree = Arc::clone(&tree);
            thread::spawn(move || {
                let mut mine = Model::new();
                (0..60_000).filter(|i| i % 2 == t && i % 5 != 0).for_each(|i| put(&tree, &mut mine, i, 1 + t as u8));
                mine
            })
        })
        .collect();
    writers.into_iter().for_each(|w| model.extend(w.join().unwrap()));
    let after = tree.counters();
    assert!(after.frames_written_out > before.frames_written_out, "{after:?}");
    assert!(after.evictions > before.evictions && after.frames_read > before.frames_read, "{after:?}");
    assert!(after.checkpoints - before.checkpoints < after.frames_written_out - before.frames_written_out, "{after:?}");
    assert_eq!(contents(&tree), model);
    tree.engine().check_invariants().unwrap();
    drop(Arc::into_inner(tree).expect("the writers are done"));
    assert_eq!(contents(&open()), model, "reopened after a clean close");
}

/// A write that lands between a write-out's copy and its clean keeps the
/// frame dirty: the staged image lacks it, so the next checkpoint writes
/// the frame anew and the published frames hold the write.
#[test]
fn a_frame_written_after_its_copy_stays_dirty_and_the_checkpoint_writes_it_anew() {
    let vfs = MemVfs::new();
    let (tree, model) = checkpointed(&vfs);
    let (tree, model) = (Arc::new(tree), Arc::new(std::sync::Mutex::new(model)));
    (0..12_000).filter(|i| in_dirs(i, 1)).for_each(|i| put(&tree, &mut model.lock().unwrap(), i, 1));
    let (t, m) = (Arc::clone(&tree), Arc::clone(&model));
    on_unheld_copies(move || {
        put(&t, &mut m.lock().unwrap(), 97 * 5, 9);
        false
    });
    let cleaned = tree.engine().write_out_dirty(false).unwrap();
    assert!(staged(&tree) > cleaned, "{} staged, {cleaned} cleaned", staged(&tree));
    assert!(tree.engine().pool().dirty_count() > 0, "the frame written after its copy is dirty");
    tree.engine().checkpoint_now(Start::Now).unwrap();
    let at_cut = model.lock().unwrap().clone();
    assert_eq!(contents(&open_on(&frames_only(&vfs))), at_cut);
}

/// A frame written out is the clock's first choice: the uses its writers
/// gave it are forgotten (a lookup or writer coming back raises them
/// again), so the frames every walk crosses outlast it.
#[test]
fn a_frame_written_out_forgets_its_writers_uses() {
    let vfs = MemVfs::new();
    let (tree, mut model) = checkpointed(&vfs);
    (0..12_000).filter(|i| in_dirs(i, 3)).for_each(|i| put(&tree, &mut model, i, 1));
    let pool = tree.engine().pool();
    let dirty: Vec<_> = pool.dirtied_ids().into_iter().filter(|&id| pool.cell(id).is_some_and(|c| c.is_dirty())).collect();
    assert!(dirty.iter().any(|&id| pool.cell(id).unwrap().uses() > 0), "writers use the frames they change");
    let cleaned = tree.engine().write_out_dirty(false).unwrap();
    let clean: Vec<_> = dirty.iter().filter(|&&id| !pool.cell(id).unwrap().is_dirty()).collect();
    assert!(cleaned > 0 && !clean.is_empty(), "{cleaned} cleaned");
    for &&id in &clean {
        assert_eq!(pool.cell(id).unwrap().uses(), 0, "frame {} written out", id.0);
    }
    assert_eq!(contents(&tree), model);
}

/// A checkpoint nobody waits for keeps slots it frees unpunched for the
/// images that follow (`frame_store::holes`); one a caller asks for gives
/// their space back. Neither changes what a reopen finds.
#[test]
fn an_asked_checkpoint_gives_back_the_slots_kept_for_later_images() {
    let vfs = MemVfs::new();
    let tree = open_with(&vfs, |cfg| {
        cfg.checkpoint_interval = None;
        cfg.pool_frames_max = 4096;
    });
    let mut model = Model::new();
    (0..150_000).for_each(|i| put(&tree, &mut model, i, 0));
    tree.checkpoint().unwrap();
    let store = &tree.engine().durable.as_ref().expect("a durable tree").store;
    assert!(store.frame_ids().len() >= 32, "{} frames keep fewer than 2 slots", store.frame_ids().len());
    assert_eq!(store.kept_slots(), 0);
    // Three directories' frames rewritten: their slots are scattered.
    (0..150_000).filter(|i| [3, 50, 90].contains(&(i % 97))).for_each(|i| put(&tree, &mut model, i, 1));
    tree.engine().checkpoint_now(Start::Now).unwrap();
    assert!(store.kept_slots() > 0, "the background checkpoint kept the slots it freed");
    let punches = store.punches();
    (0..150_000).filter(|i| [4, 51].contains(&(i % 97))).for_each(|i| put(&tree, &mut model, i, 2));
    tree.checkpoint().unwrap();
    assert_eq!(store.kept_slots(), 0, "the asked checkpoint gave them back");
    assert!(store.punches() > punches);
    drop(tree);
    assert_eq!(contents(&open_on(&vfs.crash(CrashMode::DropUnsynced))), model);
}
