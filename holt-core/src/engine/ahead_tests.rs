//! Room made ahead (`store::ahead`, `maintenance::spill_ahead`): frames
//! writers fill are queued once nearly full, the background makes room in
//! them before a writer must, and the tree holds exactly what was written,
//! in memory, after a checkpoint and after reopening.

use std::time::{Duration, Instant};

use super::capture_tests::{open_with, put, Model};
use super::checkpoint::Start;
use super::power_loss_tests::contents;
use super::write::AHEAD_ROOM_BYTES;
use crate::layout::space::free_bytes;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::pins::Held;
use crate::Tree;

/// No background thread: the test drains the queue itself.
fn open_alone(vfs: &MemVfs) -> Tree {
    let tree = open_with(vfs, |cfg| {
        cfg.checkpoint_interval = None;
        cfg.pool_frames_max = 4096;
    });
    tree.engine().pool().ahead.enable();
    tree
}

/// Put keys 0, 1, ... until a frame is queued; returns how many.
fn fill_until_queued(tree: &Tree, model: &mut Model) -> u32 {
    fill_from_until_queued(tree, model, 0)
}

/// Put keys `from`, `from + 1`, ... until a frame is queued; returns the
/// next key.
fn fill_from_until_queued(tree: &Tree, model: &mut Model, from: u32) -> u32 {
    let mut i = from;
    while !tree.engine().pool().ahead.any() {
        put(tree, model, i, 0);
        i += 1;
    }
    i
}

/// `tree` holds `model` and its invariants, and so does the store after a
/// checkpoint and a reopen.
fn holds_after_checkpoint_and_reopen(tree: Tree, vfs: &MemVfs, model: &Model) {
    tree.check_invariants().unwrap();
    assert_eq!(&contents(&tree), model);
    tree.checkpoint().unwrap();
    drop(tree);
    let tree = open_alone(vfs);
    tree.check_invariants().unwrap();
    assert_eq!(&contents(&tree), model, "after a reopen");
}

/// (spills, spills made ahead), as `Tree::counters` reports them.
fn spills(tree: &Tree) -> (u64, u64) {
    let c = tree.counters();
    (c.spills, c.spills_ahead)
}

/// With the queue drained after every put, every spill of a load is made
/// ahead: no writer spills. Reads, a checkpoint and a reopen all find what
/// was written.
#[test]
fn room_made_ahead_after_each_put_leaves_writers_no_spill() {
    let vfs = MemVfs::new();
    let tree = open_alone(&vfs);
    let mut model = Model::new();
    for i in 0..40_000 {
        put(&tree, &mut model, i, 0);
        tree.engine().spill_ahead();
    }
    let (all, ahead) = spills(&tree);
    assert!(ahead >= 8, "the load spilled ahead {ahead} times");
    assert_eq!(all, ahead, "no writer spilled");
    holds_after_checkpoint_and_reopen(tree, &vfs, &model);
}

/// A frame is queued once its free gap falls below the room kept, and
/// leaves the queue with at least that room again; a frame with room is
/// left as it is.
#[test]
fn a_frame_is_queued_when_nearly_full_and_comes_back_with_room() {
    let tree = open_alone(&MemVfs::new());
    let pool = tree.engine().pool();
    let mut model = Model::new();
    fill_until_queued(&tree, &mut model);
    let queued = pool.ahead.queued();
    let free = |id| free_bytes(pool.cell(id).and_then(|c| c.buf()).expect("resident"));
    assert!(queued.iter().all(|&id| free(id) < AHEAD_ROOM_BYTES));
    assert!(tree.engine().spill_ahead() >= 1);
    assert!(queued.iter().all(|&id| free(id) >= AHEAD_ROOM_BYTES), "room made in every queued frame");
    assert!(!pool.ahead.any());
    pool.ahead.want(queued[0]);
    assert_eq!(tree.engine().spill_ahead(), 0, "a frame with room is left alone");
    assert_eq!(contents(&tree), model);
    tree.check_invariants().unwrap();
}

/// With the background thread running, a queued frame gets its room
/// without any further write.
#[test]
fn the_background_thread_makes_room_in_queued_frames() {
    let tree = open_with(&MemVfs::new(), |cfg| {
        cfg.checkpoint_interval = Some(Duration::from_secs(3600));
        cfg.pool_frames_max = 4096;
        cfg.make_room_ahead = true;
    });
    let pool = tree.engine().pool();
    let mut model = Model::new();
    let mut i = 0;
    while spills(&tree).1 == 0 && i < 200_000 {
        put(&tree, &mut model, i, 0);
        i += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while spills(&tree).1 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(spills(&tree).1 > 0, "no room made ahead after {i} puts: {:?}", spills(&tree));
    assert!(pool.ahead.queued().len() <= 64);
    // The background thread may still be making room in other queued
    // frames; the invariant check waits for it (it takes the commit gate).
    assert_eq!(contents(&tree), model);
    tree.check_invariants().unwrap();
}

/// A frame a checkpoint wrote after it was queued is clean when its room
/// is made: the spill dirties it again, and the next checkpoint writes it
/// with the new frame, so the store holds both as they are in memory.
#[test]
fn room_made_in_a_frame_a_checkpoint_cleaned_is_written_by_the_next() {
    let vfs = MemVfs::new();
    let tree = open_alone(&vfs);
    let pool = tree.engine().pool();
    let mut model = Model::new();
    // Laid out and written, then filled until queued again: too few
    // inserts since the layout for the pressed checkpoint below to lay
    // the frame out again (which drops dead bytes and may make its room).
    let next = fill_until_queued(&tree, &mut model);
    tree.checkpoint().unwrap();
    tree.engine().spill_ahead();
    fill_from_until_queued(&tree, &mut model, next);
    // Pressed: the frame is clean after it, still short of room.
    tree.engine().checkpoint_now(Start::Now).unwrap();
    assert_eq!(pool.dirty_count(), 0);
    let queued = pool.ahead.queued();
    let short = |id| free_bytes(pool.cell(id).and_then(|c| c.buf()).expect("resident")) < AHEAD_ROOM_BYTES;
    assert!(queued.iter().all(|&id| short(id)), "the queued frames still lack room");
    assert!(tree.engine().spill_ahead() >= 1 && spills(&tree).1 >= 1, "{:?}", spills(&tree));
    let frames = tree.stats().unwrap().frames;
    // Pressed again, and no closing checkpoint: a tidy could dirty the
    // frame on its own.
    tree.engine().checkpoint_now(Start::Now).unwrap();
    let image = vfs.crash(CrashMode::DropUnsynced);
    std::mem::forget(tree);
    let tree = open_alone(&image);
    tree.check_invariants().unwrap();
    assert_eq!(tree.stats().unwrap().frames, frames, "the spilled frame and its new child are both stored");
    assert_eq!(contents(&tree), model);
    let pool = tree.engine().pool();
    for id in queued {
        let stored = Held::new(pool, id).unwrap();
        assert!(free_bytes(stored.buf()) >= AHEAD_ROOM_BYTES, "frame {id:?} was stored with the room made in it");
    }
}

/// A writer that changes the frame after its copy was taken wins: the
/// room made in the copy is dropped, the new frame retired, and the tree
/// (in memory and as stored) is what the writers wrote.
#[test]
fn room_made_in_a_copy_is_dropped_when_a_writer_changed_the_frame() {
    let vfs = MemVfs::new();
    let tree = open_alone(&vfs);
    let pool = tree.engine().pool();
    let mut model = Model::new();
    let i = fill_until_queued(&tree, &mut model);
    let id = pool.ahead.take()[0];
    let cell = pool.cell(id).unwrap();
    let b = cell.buf().unwrap();
    let version = cell.latch.optimistic().unwrap();
    let copy = crate::layout::FrameBuf::plain();
    copy.copy_from(b);
    // The last key put landed in the queued frame; writing it again
    // changes that frame.
    put(&tree, &mut model, i - 1, 1);
    let (frames, ids) = (tree.stats().unwrap().frames, pool.id_limit());
    assert!(!super::maintenance::make_room(pool, (id, cell, b), version, &copy, AHEAD_ROOM_BYTES));
    assert!(free_bytes(b) < AHEAD_ROOM_BYTES, "the frame kept its layout");
    assert_eq!(pool.id_limit(), ids + 1, "a frame was made for the spill");
    assert_eq!(tree.stats().unwrap().frames, frames, "and retired");
    assert_eq!(spills(&tree), (0, 0));
    holds_after_checkpoint_and_reopen(tree, &vfs, &model);
}
