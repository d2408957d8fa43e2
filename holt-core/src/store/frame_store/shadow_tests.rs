//! A checkpoint's images read as soon as they are written (`shadow.rs`),
//! and left staged by a checkpoint that ends without its commit.

use super::stage_tests::crash_before_every_step;
use super::tests::{checkpoint, gen_of, image, meta, open_mem, store_with, verify, Step};
use super::*;
use crate::store::mem_vfs::{CrashMode, MemVfs};

fn gen_read(store: &FrameStore, id: u64) -> u64 {
    gen_of(&store.read_frame(FrameId(id)).unwrap())
}

fn write(txn: &mut CheckpointTxn<'_>, id: u64, gen: u64) {
    txn.write_frame(FrameId(id), &image(id, gen)).unwrap();
}

#[test]
fn a_checkpoints_image_is_read_from_its_write_on() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 3);
    let mut txn = store.begin_checkpoint().unwrap();
    write(&mut txn, 2, 1);
    assert_eq!((gen_read(&store, 1), gen_read(&store, 2)), (0, 1), "frame 2 from its new image");
    write(&mut txn, 2, 2);
    write(&mut txn, 4, 1);
    assert_eq!((gen_read(&store, 2), gen_read(&store, 4)), (2, 1), "written twice: the second image");
    txn.drop_frame(FrameId(4));
    assert!(!store.contains(FrameId(4)), "dropped: no image left to read");
    // Nothing published: an open sees the last manifest alone.
    let (reopened, found) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    assert_eq!(found, Some(meta(1)));
    verify(&reopened, &model);
    txn.commit(meta(2)).unwrap();
    let published = model.apply(&[Step::Write(2, 2)], 2);
    verify(&store, &published);
    assert!(store.slot_count() <= 5, "{} slots: the rewrite's first slot went back", store.slot_count());
}

#[test]
fn an_abandoned_checkpoint_leaves_its_images_staged_for_the_next_commit() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 3);
    let mut staging = store.try_stage().unwrap().unwrap();
    staging.stage_frame(FrameId(3), &image(3, 7)).unwrap();
    drop(staging);
    let mut txn = store.begin_checkpoint().unwrap();
    write(&mut txn, 1, 1);
    write(&mut txn, 3, 8);
    write(&mut txn, 5, 1);
    drop(txn);
    store.check_invariants();
    assert_eq!(store.staged_count(), 3, "every image written, frame 3's replacing its staged one");
    assert_eq!((gen_read(&store, 1), gen_read(&store, 3), gen_read(&store, 5)), (1, 8, 1));
    assert_eq!(store.frame_ids(), vec![FrameId(1), FrameId(2), FrameId(3)], "none published");
    // A power loss before the next commit reopens the last manifest.
    let (reopened, found) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    assert_eq!(found, Some(meta(1)));
    verify(&reopened, &model);
    checkpoint(&store, &[Step::Write(2, 1)], 2).unwrap();
    let published = model.apply(&[Step::Write(1, 1), Step::Write(3, 8), Step::Write(5, 1), Step::Write(2, 1)], 2);
    verify(&store, &published);
    let (reopened, _) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    verify(&reopened, &published);
}

#[test]
fn a_failed_commit_leaves_its_images_staged() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 2);
    let mut txn = store.begin_checkpoint().unwrap();
    write(&mut txn, 2, 3);
    txn.failed = true;
    assert!(txn.commit(meta(2)).is_err(), "a checkpoint with a failed write does not commit");
    assert_eq!((store.staged_count(), gen_read(&store, 2)), (1, 3));
    checkpoint(&store, &[], 3).unwrap();
    verify(&store, &model.apply(&[Step::Write(2, 3)], 3));
}

/// A power loss before any disk operation of a checkpoint that ends
/// without its commit, and of the commit after it, reopens the mapping
/// before them or the one that commit published with the abandoned
/// images in it.
#[test]
fn a_crash_at_every_step_of_an_abandoned_checkpoint_and_the_next_commit_reopens_the_old_or_the_new_mapping() {
    let run = |vfs: &MemVfs| {
        let (store, old) = store_with(vfs, 3);
        let from = vfs.ops_count();
        let mut txn = store.begin_checkpoint().unwrap();
        write(&mut txn, 1, 2);
        write(&mut txn, 4, 1);
        drop(txn);
        checkpoint(&store, &[Step::Write(2, 2)], 2).unwrap();
        store.give_back_kept();
        let new = old.apply(&[Step::Write(1, 2), Step::Write(4, 1), Step::Write(2, 2)], 2);
        (old, new, from..vfs.ops_count())
    };
    crash_before_every_step(run);
}
