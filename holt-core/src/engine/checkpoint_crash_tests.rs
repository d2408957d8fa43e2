//! A power loss before any disk operation of a checkpoint, of either
//! start (`Start::Tidy` streams its images into shadow slots before the
//! WAL sync; `Start::Now` writes them after the copies it may hold, here
//! every one), leaves a store
//! that reopens consistent with every acknowledged write, whatever part of
//! the checkpoint reached the disk.

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
/// the tree's content and the disk operations that checkpoint made.
fn scenario(vfs: &MemVfs, start: Start) -> (Model, std::ops::Range<u64>) {
    let tree = open_alone(vfs);
    let mut model = Model::new();
    (0..12_000).for_each(|i| put(&tree, &mut model, i, 0));
    tree.checkpoint().unwrap();
    (0..12_000).step_by(3).for_each(|i| put(&tree, &mut model, i, 1));
    (12_000..16_000).for_each(|i| put(&tree, &mut model, i, 2));
    (0..12_000).step_by(7).for_each(|i| delete(&tree, &mut model, i));
    let from = vfs.ops_count();
    tree.engine().checkpoint_now(start).unwrap();
    let to = vfs.ops_count();
    std::mem::forget(tree);
    (model, from..to)
}

#[test]
fn a_crash_before_any_step_of_a_checkpoint_keeps_every_acknowledged_write() {
    for start in [Start::Tidy, Start::Now] {
        let (model, steps) = scenario(&MemVfs::new(), start);
        assert!(steps.end - steps.start > 20, "{start:?}: the checkpoint writes frames: {steps:?}");
        for op in steps.clone() {
            for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: op }] {
                let vfs = MemVfs::new();
                vfs.crash_before_op(op, mode);
                let (again, at) = scenario(&vfs, start);
                assert_eq!((&again, &at), (&model, &steps), "the run is deterministic");
                let image = vfs.take_crash_image().expect("the crash point is reached");
                let tree = open_alone(&image);
                tree.engine().check_invariants().unwrap();
                assert_eq!(contents(&tree), model, "{start:?} {mode:?} before op {op}");
            }
        }
    }
}
