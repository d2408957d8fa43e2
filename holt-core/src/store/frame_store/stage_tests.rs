//! Images staged between checkpoints (`stage.rs`): read in place of the
//! published ones, published by the next commit unless it writes or
//! drops the frame, never seen by an open before that commit, and their
//! slots reused rather than piling up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::tests::{checkpoint, gen_of, image, meta, open_mem, store_with, verify, Model, Step};
use super::*;
use crate::store::mem_vfs::{CrashMode, MemVfs};

fn stage(store: &FrameStore, id: u64, gen: u64) {
    let mut txn = store.try_stage().unwrap().expect("no checkpoint runs");
    txn.stage_frame(FrameId(id), &image(id, gen)).unwrap();
}

/// The store a power loss leaves on `vfs` reopens holding `model`.
fn verify_after_power_loss(vfs: &MemVfs, model: &Model) {
    let (reopened, _) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    verify(&reopened, model);
}

fn gen_read(store: &FrameStore, id: u64) -> u64 {
    gen_of(&store.read_frame(FrameId(id)).unwrap())
}

#[test]
fn a_staged_image_is_read_first_and_published_by_the_next_commit() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 2);
    stage(&store, 1, 5);
    stage(&store, 3, 1);
    store.check_invariants();
    assert_eq!((gen_read(&store, 1), gen_read(&store, 2), gen_read(&store, 3)), (5, 0, 1));
    assert!(store.contains(FrameId(3)), "a frame staged only is held");
    assert_eq!(store.frame_ids(), vec![FrameId(1), FrameId(2)], "published frames only");
    // Not synced, not published: an open sees the last manifest alone.
    for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: 7 }] {
        let (reopened, found) = open_mem(&vfs.crash(mode));
        assert_eq!(found, Some(meta(1)));
        verify(&reopened, &model);
        assert!(!reopened.contains(FrameId(3)));
    }
    let steps = [Step::Write(2, 1)];
    checkpoint(&store, &steps, 2).unwrap();
    let published = model.apply(&[Step::Write(1, 5), Step::Write(3, 1), Step::Write(2, 1)], 2);
    assert_eq!(store.staged_count(), 0);
    verify(&store, &published);
    verify_after_power_loss(&vfs, &published);
}

#[test]
fn a_commit_that_writes_or_drops_a_staged_frame_supersedes_its_image() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 3);
    stage(&store, 1, 4);
    stage(&store, 2, 4);
    stage(&store, 4, 4);
    let steps = [Step::Write(1, 6), Step::Drop(4)];
    checkpoint(&store, &steps, 2).unwrap();
    let published = model.apply(&[Step::Write(2, 4), Step::Write(1, 6)], 2);
    verify(&store, &published);
    assert!(!store.contains(FrameId(4)));
    verify_after_power_loss(&vfs, &published);
}

#[test]
fn restaging_a_frame_frees_its_earlier_slot() {
    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 3);
    let slots = store.slot_count();
    for gen in 1..40 {
        stage(&store, 2, gen);
        store.check_invariants();
        assert_eq!(gen_read(&store, 2), gen);
    }
    assert!(store.slot_count() <= slots + 2, "{} slots for 3 frames, one staged image and the next", store.slot_count());
}

#[test]
fn staging_waits_for_no_checkpoint_and_none_waits_for_it() {
    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 2);
    let txn = store.begin_checkpoint().unwrap();
    assert!(store.try_stage().unwrap().is_none(), "a checkpoint holds the store");
    drop(txn);
    let staging = store.try_stage().unwrap().expect("free again");
    drop(staging);
}

/// Run `run` once per disk operation in the range it returns, with a
/// power loss (dropped and torn) before that operation: the store reopens
/// holding the first model it returns (before the commit) or the second
/// (after), and both happen.
pub(super) fn crash_before_every_step(run: impl Fn(&MemVfs) -> (Model, Model, std::ops::Range<u64>)) {
    crash_before_every_step_checked(run, verify);
}

/// `crash_before_every_step` with `check` for what a reopened store
/// must hold of a model.
pub(super) fn crash_before_every_step_checked(
    run: impl Fn(&MemVfs) -> (Model, Model, std::ops::Range<u64>),
    check: impl Fn(&FrameStore, &Model),
) {
    let (_, _, steps) = run(&MemVfs::new());
    let mut outcomes = [0u32; 2];
    for op in steps {
        for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: op }] {
            let vfs = MemVfs::new();
            vfs.crash_before_op(op, mode);
            let (old, new, _) = run(&vfs);
            let (store, found) = open_mem(&vfs.take_crash_image().expect("the crash point is reached"));
            let is_new = found == new.meta;
            check(&store, if is_new { &new } else { &old });
            outcomes[usize::from(is_new)] += 1;
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "crashes before and after the publication: {outcomes:?}");
}

/// A power loss before any disk operation of staged writes and the
/// commit after them reopens either the mapping before or the one the
/// commit published, never a staged image the commit had not published.
#[test]
fn a_crash_at_every_step_of_staging_reopens_the_old_or_the_new_mapping() {
    let run = |vfs: &MemVfs| {
        let (store, old) = store_with(vfs, 3);
        let from = vfs.ops_count();
        stage(&store, 1, 2);
        stage(&store, 4, 1);
        stage(&store, 1, 3);
        checkpoint(&store, &[Step::Write(2, 2)], 2).unwrap();
        // What an asked checkpoint does after its commit: disk operations
        // after the publication.
        store.give_back_kept();
        let new = old.apply(&[Step::Write(1, 3), Step::Write(4, 1), Step::Write(2, 2)], 2);
        (old, new, from..vfs.ops_count())
    };
    crash_before_every_step(run);
}

#[test]
fn readers_see_whole_images_while_a_frame_is_staged_again_and_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = FrameStore::open(Arc::new(crate::store::std_vfs::StdVfs), tmp.path()).unwrap();
    let store = Arc::new(store);
    checkpoint(&store, &[Step::Write(1, 0), Step::Write(2, 0)], 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let got = store.read_frame(FrameId(1)).expect("a whole image");
                let gen = gen_of(&got);
                assert!(got == image(1, gen) && gen >= last, "generation {gen} after {last}");
                last = gen;
            }
        })
    };
    for gen in 1..200 {
        stage(&store, 1, gen);
        if gen % 50 == 0 {
            checkpoint(&store, &[Step::Write(2, gen)], gen).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
}

/// A frame staged again leaves its earlier slot unpunched, kept for the
/// next image staged: no punch and no new slot either time.
#[test]
fn a_restaged_frames_earlier_slot_is_kept_and_staged_into_next() {
    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 32);
    let (punches, slots) = (store.punches(), store.slot_count());
    stage(&store, 1, 1);
    stage(&store, 1, 2);
    assert_eq!((store.kept_slots(), store.slot_count()), (1, slots + 2));
    stage(&store, 2, 1);
    assert_eq!((store.kept_slots(), store.slot_count()), (0, slots + 2), "the kept slot taken");
    assert_eq!(store.punches(), punches, "nothing punched");
    store.check_invariants();
    assert_eq!((gen_read(&store, 1), gen_read(&store, 2)), (2, 1));
}

/// A power loss before any disk operation of images written into kept
/// slots (staged and checkpointed, the kept slots holding the images a
/// checkpoint superseded) reopens the mapping before them or the one the
/// commit published.
#[test]
fn a_crash_at_every_step_of_writes_into_kept_slots_reopens_the_old_or_the_new_mapping() {
    let run = |vfs: &MemVfs| {
        let (store, first) = store_with(vfs, 32);
        let steps = [Step::Write(1, 1), Step::Write(9, 1), Step::Write(17, 1)];
        checkpoint(&store, &steps, 2).unwrap();
        let old = first.apply(&steps, 2);
        assert_eq!(store.kept_slots(), 3);
        let from = vfs.ops_count();
        stage(&store, 3, 2);
        stage(&store, 3, 3);
        checkpoint(&store, &[Step::Write(1, 3), Step::Write(5, 3)], 3).unwrap();
        store.give_back_kept();
        let new = old.apply(&[Step::Write(3, 3), Step::Write(1, 3), Step::Write(5, 3)], 3);
        (old, new, from..vfs.ops_count())
    };
    crash_before_every_step(run);
}

/// A read held in its I/O neither holds up the mapping's writers (images
/// staged, a commit that frees the slot it reads) nor sees that slot
/// change: an image written into the slot, or a punch of it, waits until
/// the read is done.
#[test]
fn a_read_in_flight_holds_up_only_the_reuse_of_the_slot_it_reads() {
    let (store, slot) = hold_a_read_while(|store| stage(store, 3, 1));
    assert_eq!(store.published.read().slot_of(FrameId(3)).unwrap().slot, slot, "frame 3's image went into the slot read");
    assert_eq!((gen_read(&store, 1), gen_read(&store, 2), gen_read(&store, 3)), (1, 1, 1));
    let (store, _) = hold_a_read_while(|store| store.give_back_kept());
    assert_eq!(store.kept_slots(), 0, "the slot read was punched once the read was done");
}

/// Read frame 1 of a fresh store, holding the read in its I/O while other
/// threads stage frames 1 and 2 and commit (which frees the slot read),
/// then run `change`, which must wait for the read; returns the store and
/// the slot read.
fn hold_a_read_while(change: impl Fn(&FrameStore) + Send + Sync) -> (FrameStore, u32) {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::store::frame_file::SlotFormat;

    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 3);
    let slot = store.published.read().slot_of(FrameId(1)).unwrap().slot;
    let bytes = SlotFormat::Paged.offset(slot)..SlotFormat::Paged.offset(slot + 1);
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (entered_tx, go_rx) = (parking_lot::Mutex::new(entered_tx), parking_lot::Mutex::new(go_rx));
    let armed = AtomicBool::new(true);
    vfs.set_read_hook(Some(Arc::new(move |offset| {
        if bytes.contains(&offset) && armed.swap(false, Ordering::SeqCst) {
            entered_tx.lock().send(()).unwrap();
            let _ = go_rx.lock().recv();
        }
    })));
    let store_ref = &store;
    std::thread::scope(|s| {
        // Owned here: a failed assertion drops it, letting the read go.
        let go = go;
        let reader = s.spawn(|| store_ref.read_frame(FrameId(1)));
        entered.recv_timeout(Duration::from_secs(20)).expect("the read reached frame 1's slot");
        let (done_tx, done) = mpsc::channel();
        s.spawn(move || {
            stage(store_ref, 1, 1);
            stage(store_ref, 2, 1);
            checkpoint(store_ref, &[], 2).unwrap();
            done_tx.send(()).unwrap();
        });
        done.recv_timeout(Duration::from_secs(20)).expect("staging and a commit went on beside a read in flight");
        assert!(store_ref.published.read().free.contains(&slot), "frame 1's old slot is free");
        let changing = s.spawn(|| change(store_ref));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!changing.is_finished(), "the slot changed under its reader");
        go.send(()).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), image(1, 0), "the read saw the image it looked up");
        changing.join().unwrap();
    });
    vfs.set_read_hook(None);
    assert_eq!(store.readers.in_flight(), 0);
    store.check_invariants();
    (store, slot)
}
