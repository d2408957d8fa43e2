use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::ids::Lsn;
use crate::store::frame_file::SlotFormat;

/// Where slot `slot` starts in a store this build creates.
fn slot_offset(slot: u32) -> u64 {
    SlotFormat::Paged.offset(slot)
}
use crate::store::manifest::MANIFEST_TMP_NAME;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::splitmix::SplitMix64;
use crate::store::std_vfs::StdVfs;

/// A recognisable frame image: (id, generation) in the first 16 bytes, a
/// fill byte derived from both elsewhere.
pub(super) fn image(id: u64, gen: u64) -> Vec<u8> {
    let mut b = vec![(id.wrapping_mul(13) ^ gen.wrapping_mul(7)) as u8; FRAME_BYTES];
    b[..8].copy_from_slice(&id.to_le_bytes());
    b[8..16].copy_from_slice(&gen.to_le_bytes());
    b
}

pub(super) fn gen_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[8..16].try_into().unwrap())
}

pub(super) fn meta(n: u64) -> ManifestMeta {
    ManifestMeta { checkpoint_lsn: Lsn(n * 10), next_frame_id: 1000 + n, root: FrameId(1), user: vec![n as u8; 3] }
}

#[derive(Copy, Clone, Debug)]
pub(super) enum Step {
    Write(u64, u64),
    Drop(u64),
}

/// What the store must hold after a checkpoint: frame -> generation.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Model {
    pub(super) frames: BTreeMap<u64, u64>,
    pub(super) meta: Option<ManifestMeta>,
}

impl Model {
    pub(super) fn apply(&self, steps: &[Step], n: u64) -> Model {
        let mut next = self.clone();
        for s in steps {
            match *s {
                Step::Write(id, gen) => next.frames.insert(id, gen),
                Step::Drop(id) => next.frames.remove(&id),
            };
        }
        next.meta = Some(meta(n));
        next
    }
}

pub(super) fn checkpoint(store: &FrameStore, steps: &[Step], n: u64) -> Result<()> {
    let mut txn = store.begin_checkpoint()?;
    for s in steps {
        match *s {
            Step::Write(id, gen) => txn.write_frame(FrameId(id), &image(id, gen))?,
            Step::Drop(id) => txn.drop_frame(FrameId(id)),
        }
    }
    txn.commit(meta(n))
}

pub(super) fn verify(store: &FrameStore, model: &Model) {
    store.check_invariants();
    let ids: Vec<u64> = store.frame_ids().iter().map(|f| f.0).collect();
    assert_eq!(ids, model.frames.keys().copied().collect::<Vec<_>>());
    for (&id, &gen) in &model.frames {
        assert!(store.contains(FrameId(id)));
        assert!(store.read_frame(FrameId(id)).unwrap() == image(id, gen), "frame {id} gen {gen}");
    }
}

pub(super) fn dir() -> PathBuf {
    PathBuf::from("/store")
}

pub(super) fn open_mem(vfs: &MemVfs) -> (FrameStore, Option<ManifestMeta>) {
    FrameStore::open(Arc::new(vfs.clone()), &dir()).unwrap()
}

fn open_err(vfs: &MemVfs) -> Error {
    match FrameStore::open(Arc::new(vfs.clone()), &dir()) {
        Ok(_) => panic!("open should fail"),
        Err(e) => e,
    }
}

fn corrupted_at(e: Error) -> (PathBuf, u64) {
    match e {
        Error::Corrupted { path, offset, .. } => (path, offset),
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

/// Creates a store and commits `frames` 1..=n at generation 0 as checkpoint 1.
pub(super) fn store_with(vfs: &MemVfs, n: u64) -> (FrameStore, Model) {
    let (store, meta0) = open_mem(vfs);
    assert!(meta0.is_none());
    let steps: Vec<Step> = (1..=n).map(|id| Step::Write(id, 0)).collect();
    checkpoint(&store, &steps, 1).unwrap();
    (store, Model::default().apply(&steps, 1))
}

#[test]
fn fresh_store_reopens_empty() {
    let vfs = MemVfs::new();
    let (store, meta) = open_mem(&vfs);
    assert!(meta.is_none());
    verify(&store, &Model::default());
    drop(store);
    let (store, meta) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    assert!(meta.is_none(), "creation is durable when open returns");
    assert_eq!(store.slot_count(), 0);
}

#[test]
fn many_frames_round_trip_through_std_files() {
    round_trip_on(Arc::new(StdVfs));
}

#[cfg(feature = "io-uring")]
#[test]
fn many_frames_round_trip_through_io_uring() {
    round_trip_on(Arc::new(crate::store::uring_vfs::UringVfs::new().unwrap()));
}

fn round_trip_on(vfs: Arc<dyn Vfs>) {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = FrameStore::open(Arc::clone(&vfs), tmp.path()).unwrap();
    let mut model = Model::default();
    let plans: [Vec<Step>; 3] = [
        (1..=64).map(|i| Step::Write(i, 0)).collect(),
        (1..=64).step_by(3).map(|i| Step::Write(i, 1)).chain((60..=64).map(Step::Drop)).collect(),
        (65..=70).map(|i| Step::Write(i, 2)).collect(),
    ];
    for (n, steps) in plans.iter().enumerate() {
        checkpoint(&store, steps, n as u64 + 1).unwrap();
        model = model.apply(steps, n as u64 + 1);
        verify(&store, &model);
    }
    drop(store);
    let (store, meta) = FrameStore::open(vfs, tmp.path()).unwrap();
    assert_eq!(meta, model.meta);
    verify(&store, &model);
}

/// The scenario every crash test runs: creation, then checkpoints that
/// rewrite, drop, add, and reuse slots freed by earlier ones, and last one
/// writing more images than a sync covers (`SYNC_EVERY_IMAGES`), so a
/// crash lands before and after a sync in the middle of the writes too.
fn scenario() -> Vec<Vec<Step>> {
    use Step::*;
    let many = (10..11 + SYNC_EVERY_IMAGES as u64).map(|id| Write(id, 5)).collect();
    vec![
        vec![Write(1, 0), Write(2, 0), Write(3, 0), Write(4, 0)],
        vec![Write(1, 1), Write(2, 1), Drop(4), Write(5, 1)],
        vec![Write(1, 2), Write(3, 2), Write(5, 2), Write(5, 3), Write(6, 2), Drop(6)],
        vec![Drop(1), Drop(2), Write(3, 4)],
        many,
    ]
}

/// Runs the scenario on `vfs`; returns the models (index 0: fresh store)
/// and the op count at which each one had been durably published.
fn run_scenario(vfs: &MemVfs) -> (Vec<Model>, Vec<u64>) {
    let (store, _) = open_mem(vfs);
    let mut models = vec![Model::default()];
    let mut durable_at = vec![vfs.ops_count()];
    for (i, steps) in scenario().iter().enumerate() {
        checkpoint(&store, steps, i as u64 + 1).unwrap();
        models.push(models[i].apply(steps, i as u64 + 1));
        durable_at.push(vfs.ops_count());
    }
    (models, durable_at)
}

/// Returns whether the image holds the checkpoint that was in flight.
fn check_crash_image(image: &MemVfs, op: u64, models: &[Model], durable_at: &[u64], mode: CrashMode) -> bool {
    let (store, found) = open_mem(image);
    let Some(k) = models.iter().position(|m| m.meta == found) else {
        panic!("op {op} {mode:?}: reopened to unknown metadata {found:?}");
    };
    let last_durable = durable_at.iter().rposition(|&at| at <= op).unwrap_or(0);
    assert!(k == last_durable || k == last_durable + 1, "op {op} {mode:?}: model {k}, last durable {last_durable}");
    verify(&store, &models[k]);
    // The recovered store takes the next checkpoint and keeps it.
    checkpoint(&store, &[Step::Write(9, 9)], 50).unwrap();
    drop(store);
    let (store, reopened) = open_mem(image);
    assert_eq!(reopened, Some(meta(50)));
    verify(&store, &models[k].apply(&[Step::Write(9, 9)], 50));
    k > last_durable
}

#[test]
fn crash_at_every_step_reopens_old_or_new_mapping() {
    let (_, durable_at) = run_scenario(&MemVfs::new());
    let ops_total = *durable_at.last().unwrap();
    let mut rng = SplitMix64::new(0xC0FFEE);
    let mut outcomes = [0u32; 2];
    for op in 0..ops_total {
        let mut modes = vec![CrashMode::DropUnsynced];
        modes.extend((0..4).map(|_| CrashMode::Torn { seed: rng.next_u64() }));
        for mode in modes {
            let vfs = MemVfs::new();
            vfs.crash_before_op(op, mode);
            let (models, at) = run_scenario(&vfs);
            assert_eq!(at, durable_at, "the scenario is deterministic");
            let image = vfs.take_crash_image().expect("op inside the scenario");
            outcomes[usize::from(check_crash_image(&image, op, &models, &durable_at, mode))] += 1;
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "crashes land both before and after publication: {outcomes:?}");
}

#[test]
fn an_abandoned_checkpoint_publishes_nothing_and_leaves_its_images_staged() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 3);
    let mut txn = store.begin_checkpoint().unwrap();
    txn.write_frame(FrameId(1), &image(1, 7)).unwrap();
    txn.drop_frame(FrameId(2));
    assert_eq!(gen_of(&store.read_frame(FrameId(1)).unwrap()), 7, "readers see the image written");
    assert!(store.contains(FrameId(2)), "dropped at the commit only");
    drop(txn);
    assert_old_mapping_survives(&vfs, &store, &model, &[Step::Write(1, 7)]);
    checkpoint(&store, &[Step::Write(1, 8)], 2).unwrap();
    verify(&store, &model.apply(&[Step::Write(1, 8)], 2));
}

#[test]
fn concurrent_readers_see_whole_published_images() {
    concurrent_readers_on(Arc::new(StdVfs));
}

#[cfg(feature = "io-uring")]
#[test]
fn concurrent_readers_through_io_uring() {
    concurrent_readers_on(Arc::new(crate::store::uring_vfs::UringVfs::new().unwrap()));
}

fn concurrent_readers_on(vfs: Arc<dyn Vfs>) {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = FrameStore::open(vfs, tmp.path()).unwrap();
    let store = Arc::new(store);
    let ids = [1u64, 2, 3, 4];
    checkpoint(&store, &ids.map(|i| Step::Write(i, 0)), 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for id in ids {
                        let bytes = store.read_frame(FrameId(id)).expect("published frames always read");
                        assert!(bytes == image(id, gen_of(&bytes)), "frame {id} image is whole");
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    for n in 2..20 {
        checkpoint(&store, &ids.map(|i| Step::Write(i, n)), n).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(store.slot_count() <= 8, "slots reused: {}", store.slot_count());
}

#[test]
fn second_checkpoint_waits_for_the_first() {
    let vfs = MemVfs::new();
    let (store, _) = open_mem(&vfs);
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let txn = store.begin_checkpoint().unwrap();
        let waiter = s.spawn(|| {
            let txn = store.begin_checkpoint().unwrap();
            started.store(true, Ordering::SeqCst);
            txn.commit(meta(2)).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!started.load(Ordering::SeqCst), "one checkpoint at a time");
        txn.commit(meta(1)).unwrap();
        waiter.join().unwrap();
    });
    drop(store);
    assert_eq!(open_mem(&vfs).1, Some(meta(2)));
}

#[test]
fn slot_reuse_bounds_the_file() {
    let vfs = MemVfs::new();
    let (store, mut model) = store_with(&vfs, 8);
    let mut rng = SplitMix64::new(77);
    for n in 2..120u64 {
        let live_before = model.frames.len() as u32;
        let mut steps: Vec<Step> =
            model.frames.keys().filter(|_| rng.below(3) != 0).map(|&id| Step::Write(id, n)).collect();
        match rng.below(4) {
            0 if live_before > 4 => steps.push(Step::Drop(*model.frames.keys().next().unwrap())),
            1 => steps.push(Step::Write(100 + n, n)),
            _ => {}
        }
        checkpoint(&store, &steps, n).unwrap();
        model = model.apply(&steps, n);
        let live_max = live_before.max(model.frames.len() as u32);
        assert!(store.slot_count() <= 2 * live_max, "checkpoint {n}: {} slots for {live_max} live", store.slot_count());
    }
    verify(&store, &model);
    let len = vfs.file_bytes(&dir().join(FRAME_FILE_NAME)).unwrap().len() as u64;
    assert_eq!(len, slot_offset(store.slot_count()), "free tail slots are cut off the file");
    drop(store);
    verify(&open_mem(&vfs).0, &model);
}

#[test]
fn flipped_bit_in_a_slot_is_corrupted_at_the_slot() {
    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 3);
    let slot = store.slot_of(FrameId(2)).unwrap();
    let path = dir().join(FRAME_FILE_NAME);
    for pos in [0u64, 9, 4096, FRAME_BYTES as u64 / 2, FRAME_BYTES as u64 - 1] {
        let at = slot_offset(slot) + pos;
        let byte = vfs.file_bytes(&path).unwrap()[at as usize];
        vfs.corrupt(&path, at, &[byte ^ 0x10]).unwrap();
        let (p, offset) = corrupted_at(store.read_frame(FrameId(2)).unwrap_err());
        // The block the flip is in: the page checksums, or the image's page.
        assert_eq!((p, offset), (path.clone(), slot_offset(slot) + pos / 4096 * 4096), "flip at {pos}");
        assert_eq!(gen_of(&store.read_frame(FrameId(1)).unwrap()), 0, "other frames unaffected");
        vfs.corrupt(&path, at, &[byte]).unwrap();
        assert!(store.read_frame(FrameId(2)).is_ok());
    }
}

#[test]
fn flipped_bit_in_the_manifest_is_corrupted() {
    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 3);
    drop(store);
    let path = dir().join(MANIFEST_NAME);
    let good = vfs.file_bytes(&path).unwrap();
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        vfs.corrupt(&path, 0, &bad).unwrap();
        assert_eq!(corrupted_at(open_err(&vfs)).0, path, "bit {bit}");
    }
    vfs.corrupt(&path, 0, &good).unwrap();
    assert!(open_mem(&vfs).1.is_some());
}

#[test]
fn stale_manifest_tmp_is_ignored_and_removed() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 2);
    drop(store);
    let tmp = dir().join(MANIFEST_TMP_NAME);
    let f = vfs.open(&tmp, true).unwrap();
    f.write_at(b"HOLTMANF torn", 0).unwrap();
    f.sync_data().unwrap();
    vfs.sync_dir(&dir()).unwrap();
    let (store, meta) = open_mem(&vfs);
    assert_eq!(meta, model.meta);
    verify(&store, &model);
    assert!(vfs.file_bytes(&tmp).is_none());
}

#[test]
fn lost_or_mismatched_files_are_corrupted() {
    let vfs = MemVfs::new();
    store_with(&vfs, 2);
    let other = PathBuf::from("/other");
    FrameStore::open(Arc::new(vfs.clone()), &other).unwrap();
    let (man, frames) = (dir().join(MANIFEST_NAME), dir().join(FRAME_FILE_NAME));
    let good_manifest = vfs.file_bytes(&man).unwrap();

    let foreign = vfs.file_bytes(&other.join(MANIFEST_NAME)).unwrap();
    vfs.corrupt(&man, 0, &foreign).unwrap();
    vfs.open(&man, false).unwrap().set_len(foreign.len() as u64).unwrap();
    assert_eq!(corrupted_at(open_err(&vfs)), (man.clone(), manifest::H_STORE_ID as u64));

    vfs.open(&man, false).unwrap().write_at(&good_manifest, 0).unwrap();
    let f = vfs.open(&frames, false).unwrap();
    f.set_len(slot_offset(1)).unwrap();
    assert_eq!(corrupted_at(open_err(&vfs)), (frames.clone(), slot_offset(1)), "frame 2 lies past the end");

    vfs.remove(&frames).unwrap();
    assert_eq!(corrupted_at(open_err(&vfs)).0, frames);
    vfs.rename(&other.join(FRAME_FILE_NAME), &frames).unwrap();
    vfs.remove(&man).unwrap();
    assert!(open_mem(&vfs).1.is_none(), "header-only frame file without manifest: interrupted creation");
}

#[test]
fn manifest_missing_beside_slots_is_corrupted() {
    let vfs = MemVfs::new();
    store_with(&vfs, 2);
    vfs.remove(&dir().join(MANIFEST_NAME)).unwrap();
    assert_eq!(corrupted_at(open_err(&vfs)), (dir().join(MANIFEST_NAME), 0));
}

#[test]
fn newer_manifest_version_is_unsupported() {
    let vfs = MemVfs::new();
    store_with(&vfs, 1);
    let path = dir().join(MANIFEST_NAME);
    let mut b = vfs.file_bytes(&path).unwrap();
    b[8..12].copy_from_slice(&4u32.to_le_bytes());
    let body = b.len() - 4;
    let crc = crc32c::crc32c(&b[..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
    vfs.corrupt(&path, 0, &b).unwrap();
    assert!(matches!(open_err(&vfs), Error::UnsupportedFormat { found: 4, supported: 3, .. }));
}

#[test]
fn bad_write_arguments_are_rejected() {
    let vfs = MemVfs::new();
    let (store, _) = open_mem(&vfs);
    let mut txn = store.begin_checkpoint().unwrap();
    assert!(matches!(txn.write_frame(FrameId(0), &image(0, 0)), Err(Error::InvalidArgument(_))));
    assert!(matches!(txn.write_frame(FrameId(1), &[0u8; 10]), Err(Error::InvalidArgument(_))));
}

fn io_errno(e: Error) -> i32 {
    match e {
        Error::Io { source, .. } => source.raw_os_error().expect("injected errno"),
        other => panic!("expected Io, got {other:?}"),
    }
}

/// After a failed checkpoint: the old mapping reads back now, and after a
/// power loss.
/// The store publishes `model` and reads it with `staged` applied (the
/// images an abandoned checkpoint left staged); an open after a power
/// loss finds `model`.
fn assert_old_mapping_survives(vfs: &MemVfs, store: &FrameStore, model: &Model, staged: &[Step]) {
    store.check_invariants();
    assert_eq!(store.frame_ids().iter().map(|f| f.0).collect::<Vec<_>>(), model.frames.keys().copied().collect::<Vec<_>>());
    for (&id, &gen) in &model.apply(staged, 0).frames {
        assert!(store.read_frame(FrameId(id)).unwrap() == image(id, gen), "frame {id} gen {gen}");
    }
    for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: 5 }] {
        let (after, meta) = open_mem(&vfs.crash(mode));
        assert_eq!(meta, model.meta);
        verify(&after, model);
    }
}

#[test]
fn enospc_on_frame_write_keeps_old_mapping() {
    let vfs = MemVfs::new();
    let (store, model) = store_with(&vfs, 3);
    // A frame without a free gap is two writes: its page checksums, its image.
    vfs.fail_write_after_with(2, libc::ENOSPC);
    let mut txn = store.begin_checkpoint().unwrap();
    txn.write_frame(FrameId(1), &image(1, 1)).unwrap();
    assert_eq!(io_errno(txn.write_frame(FrameId(2), &image(2, 1)).unwrap_err()), libc::ENOSPC);
    assert!(matches!(txn.commit(meta(2)), Err(Error::InvalidArgument(_))), "a checkpoint missing a frame never commits");
    assert_old_mapping_survives(&vfs, &store, &model, &[Step::Write(1, 1)]);
    vfs.clear_faults();
    checkpoint(&store, &[Step::Write(2, 1)], 2).unwrap();
    verify(&store, &model.apply(&[Step::Write(1, 1), Step::Write(2, 1)], 2));
}

#[test]
fn write_error_on_manifest_keeps_old_mapping_and_store_usable() {
    for errno in [libc::ENOSPC, libc::EIO, libc::EACCES] {
        let vfs = MemVfs::new();
        let (store, model) = store_with(&vfs, 3);
        let mut txn = store.begin_checkpoint().unwrap();
        txn.write_frame(FrameId(1), &image(1, 1)).unwrap();
        vfs.fail_write_after_with(0, errno);
        let err = txn.commit(meta(2)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(errno), "{err}");
        assert_old_mapping_survives(&vfs, &store, &model, &[Step::Write(1, 1)]);
        vfs.clear_faults();
        checkpoint(&store, &[Step::Write(1, 2)], 2).unwrap();
        verify(&store, &model.apply(&[Step::Write(1, 2)], 2));
    }
}

#[test]
fn failed_sync_poisons_but_reads_go_on() {
    // Syncs in a commit: frame file, MANIFEST.tmp, directory.
    for syncs_ok in 0..3 {
        let vfs = MemVfs::new();
        let (store, model) = store_with(&vfs, 3);
        let mut txn = store.begin_checkpoint().unwrap();
        txn.write_frame(FrameId(1), &image(1, 1)).unwrap();
        txn.write_frame(FrameId(4), &image(4, 1)).unwrap();
        vfs.fail_sync_after(syncs_ok);
        assert_eq!(io_errno(txn.commit(meta(2)).unwrap_err()), libc::EIO);
        vfs.clear_faults();
        assert!(matches!(store.begin_checkpoint(), Err(Error::Poisoned { .. })), "syncs_ok {syncs_ok}");
        assert_old_mapping_survives(&vfs, &store, &model, &[Step::Write(1, 1), Step::Write(4, 1)]);
    }
}

/// A checkpoint syncs the frame file after every `SYNC_EVERY_IMAGES`
/// images it writes, not only at the commit (one burst of a whole
/// checkpoint's writeback stalled writers, see the constant); a failed
/// sync there fails the checkpoint and poisons the store as the commit's
/// does, and the published mapping stays readable.
#[test]
fn a_checkpoint_syncs_every_few_images_and_a_failed_sync_fails_it() {
    let n = 2 * SYNC_EVERY_IMAGES as u64 + 3;
    let vfs = MemVfs::new();
    let (store, _) = store_with(&vfs, 1);
    let mut txn = store.begin_checkpoint().unwrap();
    let syncs = vfs.syncs_count();
    for id in 1..=n {
        txn.write_frame(FrameId(id), &image(id, 1)).unwrap();
        assert_eq!(vfs.syncs_count() - syncs, id / SYNC_EVERY_IMAGES as u64, "after {id} images");
    }
    txn.commit(meta(2)).unwrap();

    let vfs = MemVfs::new();
    let (store2, model2) = store_with(&vfs, 3);
    let mut txn = store2.begin_checkpoint().unwrap();
    vfs.fail_sync_after(0);
    let failed = (1..=n).map(|id| txn.write_frame(FrameId(id), &image(id, 2))).find_map(Result::err);
    assert_eq!(io_errno(failed.expect("the sync after the 16th image fails")), libc::EIO);
    assert!(txn.commit(meta(2)).is_err(), "a checkpoint whose sync failed does not commit");
    vfs.clear_faults();
    assert!(matches!(store2.begin_checkpoint(), Err(Error::Poisoned { .. })));
    // Written up to the 16th image, whose sync failed: staged, not published.
    let staged: Vec<Step> = (1..=SYNC_EVERY_IMAGES as u64).map(|id| Step::Write(id, 2)).collect();
    assert_old_mapping_survives(&vfs, &store2, &model2, &staged);
}

/// `image(id, gen)` with a frame header naming `used` bytes of data area
/// and `slots` table entries, and zeros in the free gap between them.
fn sparse_image(id: u64, gen: u64, used: usize, slots: u32) -> Vec<u8> {
    use crate::layout::{HDR_DATA_END, HDR_SLOT_COUNT};
    let mut b = image(id, gen);
    b[used..FRAME_BYTES - slots as usize * 4].fill(0);
    b[HDR_SLOT_COUNT..HDR_SLOT_COUNT + 4].copy_from_slice(&slots.to_le_bytes());
    b[HDR_DATA_END..HDR_DATA_END + 4].copy_from_slice(&(used as u32).to_le_bytes());
    b
}

#[test]
fn bytes_in_the_free_gap_on_disk_never_matter() {
    let vfs = MemVfs::new();
    let (store, _) = open_mem(&vfs);
    let img = sparse_image(5, 1, 20_000, 100);
    let mut txn = store.begin_checkpoint().unwrap();
    txn.write_frame(FrameId(5), &img).unwrap();
    txn.commit(meta(1)).unwrap();
    let path = dir().join(FRAME_FILE_NAME);
    let base = slot_offset(store.slot_of(FrameId(5)).unwrap()) + SlotFormat::Paged.image_at();
    // Stale bytes where the gap is (as a file system without holes, or a
    // reused slot, leaves them) read back as the zeros the image holds.
    for pos in [20_000u64, 20_001, 200_000, FRAME_BYTES as u64 - 401] {
        vfs.corrupt(&path, base + pos, &[0xAB; 1]).unwrap();
    }
    assert!(store.read_frame(FrameId(5)).unwrap() == img);
    // Outside the gap (data, slot table, the header bounds) every flip counts.
    for pos in [19_999u64, FRAME_BYTES as u64 - 400, crate::layout::HDR_DATA_END as u64 + 1] {
        let byte = vfs.file_bytes(&path).unwrap()[(base + pos) as usize];
        vfs.corrupt(&path, base + pos, &[byte ^ 0x04]).unwrap();
        assert_eq!(corrupted_at(store.read_frame(FrameId(5)).unwrap_err()).1, base + pos / 4096 * 4096, "flip at {pos}");
        vfs.corrupt(&path, base + pos, &[byte]).unwrap();
    }
    assert!(store.read_frame(FrameId(5)).unwrap() == img);
}

/// A write into a slot known to be a hole (past the file's end, or
/// punched whole when it was freed) leaves its gap as it is; a slot an
/// abandoned checkpoint filled is no hole, so a later image's gap is
/// punched out of it all the same.
#[test]
fn the_slots_an_abandoned_checkpoint_filled_give_their_space_back_once_superseded() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    let (frames, used, slots) = (8u64, 40_000usize, 500u32);
    let mut txn = store.begin_checkpoint().unwrap();
    for id in 1..=frames {
        txn.write_frame(FrameId(id), &sparse_image(id, 1, 500_000, slots)).unwrap();
    }
    drop(txn);
    let mut txn = store.begin_checkpoint().unwrap();
    for id in 1..=frames {
        txn.write_frame(FrameId(id), &sparse_image(id, 2, used, slots)).unwrap();
    }
    txn.commit(meta(1)).unwrap();
    // The staged images the commit superseded are kept free for the next
    // images until an asked checkpoint gives them back.
    store.give_back_kept();
    let allocated = std::fs::metadata(tmp.path().join(FRAME_FILE_NAME)).unwrap().blocks() * 512;
    let live = frames * (used.next_multiple_of(4096) + (slots as usize * 4).next_multiple_of(4096) + 4096) as u64;
    assert!(allocated <= 4096 + live + live / 4, "{allocated} bytes allocated for {live} live");
    for id in 1..=frames {
        assert!(store.read_frame(FrameId(id)).unwrap() == sparse_image(id, 2, used, slots));
    }
}

/// An image whose free gap runs to its end (no slot table) written as
/// the file's last slot leaves nothing to write past its data: the slot
/// still counts whole on reopen and reads back, at once and by parts.
#[test]
fn a_last_slot_whose_gap_runs_to_the_end_reads_back_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    let img = sparse_image(3, 1, 20_000, 0);
    let mut txn = store.begin_checkpoint().unwrap();
    txn.write_frame(FrameId(3), &img).unwrap();
    txn.commit(meta(1)).unwrap();
    assert!(store.read_frame(FrameId(3)).unwrap() == img);
    drop(store);
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    assert!(store.read_frame(FrameId(3)).unwrap() == img, "read at once");
    let mut buf = ImageBuf::zeroed();
    store.read_frame_into(FrameId(3), &mut buf, Via::PageCache).unwrap();
    assert!(buf[..] == img[..], "read by parts");
}

#[test]
fn free_gaps_and_free_slots_give_their_space_back() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    let (frames, used, slots) = (16u64, 40_000usize, 500u32);
    for n in 1..=4u64 {
        let mut txn = store.begin_checkpoint().unwrap();
        for id in 1..=frames {
            txn.write_frame(FrameId(id), &sparse_image(id, n, used, slots)).unwrap();
        }
        txn.commit(meta(n)).unwrap();
    }
    assert!(store.slot_count() as u64 > frames, "rewrites moved frames to shadow slots");
    let m = std::fs::metadata(tmp.path().join(FRAME_FILE_NAME)).unwrap();
    let allocated = m.blocks() * 512;
    // Each live frame keeps its data area and slot table (block-rounded);
    // free slots and gaps hold nothing. Slack covers file-system metadata.
    let live = frames * (used.next_multiple_of(4096) + (slots as usize * 4).next_multiple_of(4096)) as u64;
    // The slots the last commit freed are kept for the next images: at
    // most as many as it wrote, each holding one image's data at most.
    assert_eq!(store.kept_slots(), frames as usize);
    assert!(allocated <= 4096 + 2 * live + live / 4, "{allocated} bytes allocated for {live} live ({} apparent)", m.len());
    store.give_back_kept();
    let allocated = std::fs::metadata(tmp.path().join(FRAME_FILE_NAME)).unwrap().blocks() * 512;
    assert!(allocated <= 4096 + live + live / 4, "{allocated} bytes allocated for {live} live after the kept went back");
    for id in 1..=frames {
        assert!(store.read_frame(FrameId(id)).unwrap() == sparse_image(id, 4, used, slots));
    }
    // A crash between a publication and its punches leaves a free slot
    // allocated: the first commit after the next open gives it back.
    let used_slots: Vec<u32> = (1..=frames).map(|id| store.slot_of(FrameId(id)).unwrap()).collect();
    let free = (0..store.slot_count()).find(|s| !used_slots.contains(s)).expect("a free slot below the end");
    drop(store);
    let path = tmp.path().join(FRAME_FILE_NAME);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xEE; FRAME_BYTES], slot_offset(free)).unwrap();
    f.sync_all().unwrap();
    let blocks = || std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(blocks() >= allocated + FRAME_BYTES as u64 / 2);
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    checkpoint(&store, &[], 5).unwrap();
    assert!(blocks() <= 4096 + live + live / 4, "{} bytes allocated after the sweep", blocks());
}

/// Frame loads read `frames.dat` with direct I/O where the file system has
/// it: the bytes come back exact (gaps of every block phase, zeroed), and
/// none of the slots' pages is left in the page cache. Run in the build's
/// target directory, on the disk of the checkout (the system's temporary
/// directory may be a tmpfs, which has no direct I/O).
#[test]
fn frame_loads_bypass_the_page_cache() {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let tmp = tempfile::tempdir_in(&target).expect("a temporary directory in the target directory");
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    let shapes = [(64, 0), (4095, 1), (4097, 1023), (40_001, 501), (300_000, 1)];
    let mut txn = store.begin_checkpoint().unwrap();
    for (id, &(used, slots)) in (1u64..).zip(&shapes) {
        txn.write_frame(FrameId(id), &sparse_image(id, 1, used, slots)).unwrap();
    }
    txn.commit(meta(1)).unwrap();
    let path = tmp.path().join(FRAME_FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let raw = std::fs::File::open(&path).unwrap();
    crate::store::std_vfs::advise(&raw, 0, 0, libc::POSIX_FADV_DONTNEED).unwrap();
    let cached = || crate::store::std_vfs::tests::cached_pages(&path, len);
    assert_eq!(cached(), 0, "the committed frames' pages are clean and dropped");
    assert!(store.file.has_direct_reads(), "the file system under {} has no direct I/O", target.display());
    for (id, &(used, slots)) in (1u64..).zip(&shapes) {
        assert!(store.read_frame(FrameId(id)).unwrap() == sparse_image(id, 1, used, slots), "frame {id}");
    }
    assert_eq!(cached(), 0, "frame loads left pages in the page cache");
    assert!(store.file.has_direct_reads(), "no direct read was refused");
}

/// A direct read the file system refuses (EINVAL) is read again through
/// the page cache, and so is every later one.
#[test]
fn a_refused_direct_read_falls_back_to_the_page_cache() {
    let vfs = MemVfs::new();
    let (mut store, _) = open_mem(&vfs);
    let img = sparse_image(5, 1, 20_000, 100);
    let mut txn = store.begin_checkpoint().unwrap();
    txn.write_frame(FrameId(5), &img).unwrap();
    txn.commit(meta(1)).unwrap();
    store.file.refuse_direct_reads_for_test();
    assert!(store.file.has_direct_reads());
    assert!(store.read_frame(FrameId(5)).unwrap() == img);
    assert!(!store.file.has_direct_reads(), "the refusal turned direct reads off");
    assert!(store.read_frame(FrameId(5)).unwrap() == img);
}

/// The slots a checkpoint replaces go back in one punch per run of
/// adjacent slots (a punch is a synchronous discard on a file system
/// mounted with `discard`): a commit replacing 32 frames written side by
/// side, and the slots it kept given back, make as many writes as for 4.
#[test]
fn a_commit_gives_back_adjacent_free_slots_in_one_punch() {
    let commit_writes = |frames: u64| {
        let vfs = MemVfs::new();
        let (store, _) = open_mem(&vfs);
        for n in 1..=2 {
            let mut txn = store.begin_checkpoint().unwrap();
            for id in 1..=frames {
                txn.write_frame(FrameId(id), &image(id, n)).unwrap();
            }
            let before = vfs.writes_count();
            txn.commit(meta(n)).unwrap();
            // The freed slots are kept (as many as the commit wrote) until
            // given back.
            assert_eq!(store.kept_slots(), if n == 2 { frames as usize } else { 0 });
            store.give_back_kept();
            if n == 2 {
                return vfs.writes_count() - before;
            }
        }
        unreachable!()
    };
    assert_eq!(commit_writes(32), commit_writes(4));
    assert_eq!(slot_runs([7, 3, 4, 5, 9, 8, 1, 4].into_iter()), [1..2, 3..6, 7..10]);
    assert!(slot_runs(std::iter::empty()).is_empty());
}

/// The slots a checkpoint frees are kept unpunched for the images that
/// follow: as many as images were written in the cycle the commit ends,
/// and at least one in `KEPT_SHARE` of the live frames; single slots
/// before runs (a run costs one punch whatever its length). The next
/// images go into them before any other slot; `give_back_kept` punches
/// them.
#[test]
fn freed_slots_are_kept_for_the_next_images_as_many_as_the_last_cycle_wrote() {
    let vfs = MemVfs::new();
    let (store, mut model) = store_with(&vfs, 64);
    let mut n = 1;
    let mut rewrite = |ids: &[u64]| {
        n += 1;
        let steps: Vec<Step> = ids.iter().map(|&id| Step::Write(id, n)).collect();
        let punches = store.punches();
        checkpoint(&store, &steps, n).unwrap();
        model = model.apply(&steps, n);
        verify(&store, &model);
        (store.punches() - punches, store.kept_slots(), store.slot_count())
    };
    // Slots 0, 16, 32, 48 alone and 56..64 in a run: 12 written, 12 kept.
    let ids: Vec<u64> = [1, 17, 33, 49].into_iter().chain(57..=64).collect();
    assert_eq!(rewrite(&ids), (0, 12, 76));
    // Four written into kept slots; of their four single slots and the
    // run of eight, four fit (at least 64 / 16): the run is punched.
    assert_eq!(rewrite(&[2, 18, 34, 50]), (1, 4, 76));
    // Four into the kept slots, four into the punched run; the eight
    // single slots freed all kept.
    assert_eq!(rewrite(&[3, 5, 7, 9, 11, 13, 15, 19]), (0, 8, 76));
    // One written: the kept shrink to four again.
    let (punched, kept, slots) = rewrite(&[21]);
    assert!(punched > 0 && (kept, slots) == (4, 76), "{punched} punches, {kept} kept, {slots} slots");
    let punches = store.punches();
    store.give_back_kept();
    assert!(store.punches() > punches);
    assert_eq!(store.kept_slots(), 0);
    store.check_invariants();
    let (reopened, found) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    assert_eq!(found, model.meta);
    verify(&reopened, &model);
}

/// A slot written before this open has no recorded hole: once freed and
/// kept (the first commit after the open keeps what it frees), the file
/// system says where its hole is (`FrameFile::image_hole`), so an image
/// whose gap lies within it goes in without a punch.
#[test]
fn the_holes_of_slots_written_before_an_open_are_learnt_when_they_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (used, table) = (40_000usize, 500u32);
    let write = |store: &FrameStore, ids: &[u64], n: u64| {
        let mut txn = store.begin_checkpoint().unwrap();
        for &id in ids {
            txn.write_frame(FrameId(id), &sparse_image(id, n, used, table)).unwrap();
        }
        txn.commit(meta(n)).unwrap();
    };
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    write(&store, &[1, 2, 3, 4], 1);
    assert!(store.file.image_hole(0).is_some_and(|h| h.start <= used.next_multiple_of(4096)), "{:?}", store.file.image_hole(0));
    drop(store);
    let (store, _) = FrameStore::open(Arc::new(StdVfs), tmp.path()).unwrap();
    // The first commit after the open punches the slots free before it,
    // not slots 0 and 2, which it frees and keeps.
    write(&store, &[1, 3], 2);
    assert_eq!(store.kept_slots(), 2);
    let punches = store.punches();
    write(&store, &[2, 4], 3); // into slots 0 and 2; slots 1 and 3 kept in turn
    assert_eq!(store.punches() - punches, 0, "the gaps fell in the learnt holes");
    for (id, gen) in [(1, 2), (2, 3), (3, 2), (4, 3)] {
        assert!(store.read_frame(FrameId(id)).unwrap() == sparse_image(id, gen, used, table), "frame {id}");
    }
}
