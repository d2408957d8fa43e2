//! A power loss before any disk operation of a checkpoint, of either
//! start (`Start::Tidy` streams its images into shadow slots before the
//! WAL sync; `Start::Now` writes them after the copies it may hold, here
//! every one), leaves a store
//! that reopens consistent with every acknowledged write, whatever part of
//! the checkpoint reached the disk. The same holds where the background
//! made room ahead of the writers (`maintenance::spill_ahead`): the frames
//! it spilled and compacted are written like any writer's.

use super::capture_tests::{delete, open_with, put, Model};
use super::checkpoint::Start;
use super::power_loss_tests::contents;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::Tree;

/// Every commit synced, no background thread: the disk operations of a
/// run come in the same order every time, so an operation's index names
/// the same step in every run.
fn open_alone(vfs: &MemVfs) -> Tree {
    open_with(vfs, |cfg| {
        cfg.wal_sync_on_commit = true;
        cfg.checkpoint_interval = None;
        cfg.wal_flusher = false;
    })
}

/// A checkpointed tree, then changes in most of its frames (updates,
/// creates that spill, deletes), then the checkpoint under test. Returns
/// the tree's content and the disk operations that checkpoint made. With
/// `ahead`, room is made ahead after every put and more is created, so
/// frames spilled ahead after the first checkpoint are in the second.
fn scenario(vfs: &MemVfs, start: Start, ahead: bool) -> (Model, std::ops::Range<u64>) {
    let tree = open_alone(vfs);
    if ahead {
        tree.engine().pool().ahead.enable();
    }
    let mut model = Model::new();
    let mut write = |i, round| {
        put(&tree, &mut model, i, round);
        if ahead {
            tree.engine().spill_ahead();
        }
    };
    (0..12_000).for_each(|i| write(i, 0));
    tree.checkpoint().unwrap();
    let spills = tree.engine().pool().counters.spills_ahead.get();
    (0..12_000).step_by(3).for_each(|i| write(i, 1));
    (12_000..16_000).for_each(|i| write(i, 2));
    if ahead {
        (16_000..24_000).for_each(|i| write(i, 2));
        let c = &tree.engine().pool().counters;
        assert!(c.spills_ahead.get() > spills, "the creates after the first checkpoint spilled ahead");
        assert_eq!(c.spills.get(), c.spills_ahead.get(), "no writer spilled");
    }
    (0..12_000).step_by(7).for_each(|i| delete(&tree, &mut model, i));
    let from = vfs.ops_count();
    tree.engine().checkpoint_now(start).unwrap();
    let to = vfs.ops_count();
    // Closed, not leaked (a leaked tree per crash point held ~10 GB by the
    // end): a crash image was taken before, if one was asked.
    drop(tree);
    (model, from..to)
}

#[test]
fn a_crash_before_any_step_of_a_checkpoint_keeps_every_acknowledged_write() {
    for (start, ahead) in [(Start::Tidy, false), (Start::Now, false), (Start::Tidy, true)] {
        let (model, steps) = scenario(&MemVfs::new(), start, ahead);
        assert!(steps.end - steps.start > 20, "{start:?}: the checkpoint writes frames: {steps:?}");
        for op in steps.clone() {
            for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: op }] {
                let vfs = MemVfs::new();
                vfs.crash_before_op(op, mode);
                let (again, at) = scenario(&vfs, start, ahead);
                assert_eq!((&again, &at), (&model, &steps), "the run is deterministic");
                let image = vfs.take_crash_image().expect("the crash point is reached");
                let tree = open_alone(&image);
                tree.engine().check_invariants().unwrap();
                assert_eq!(contents(&tree), model, "{start:?} ahead {ahead} {mode:?} before op {op}");
            }
        }
    }
}
