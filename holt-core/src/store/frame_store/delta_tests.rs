//! Images written as deltas over the published image (`delta.rs`): read
//! back whole and by pages, their base kept from reuse while named, a
//! delta over anything but the published image written whole, and a
//! power loss at every step reopening the old or the new mapping.

use super::stage_tests::crash_before_every_step_checked;
use super::tests::{dir, gen_of, image, meta, open_mem, Model};
use super::*;
use crate::store::frame_file::{PageMask, PAGE_BYTES};
use crate::store::frame_source::Over;
use crate::store::mem_vfs::{CrashMode, MemVfs};

/// Frame `id`'s image at `gen`: `image(id, 0)` with page `gen % 100 + 1`
/// filled and `gen` in its first bytes, so two generations differ in
/// pages 0 and their own pages only.
fn paged_image(id: u64, gen: u64) -> Vec<u8> {
    let mut b = image(id, 0);
    b[8..16].copy_from_slice(&gen.to_le_bytes());
    if gen > 0 {
        let p = page_of(gen);
        b[p * PAGE_BYTES..(p + 1) * PAGE_BYTES].fill(gen as u8 ^ 0xA5);
    }
    b
}

fn page_of(gen: u64) -> usize {
    gen as usize % 100 + 1
}

/// The pages `paged_image(id, gen)` differs in from generation 0.
fn pages_of(gen: u64) -> PageMask {
    1 | 1 << page_of(gen)
}

fn check(store: &FrameStore, model: &Model) {
    store.check_invariants();
    for (&id, &gen) in &model.frames {
        let mut want = paged_image(id, gen);
        crate::layout::seal_image(&mut want);
        assert!(store.read_frame(FrameId(id)).unwrap() == want, "frame {id} gen {gen}");
    }
}

/// Commit frames 1..=n at generation 0, whole, as checkpoint 1.
fn store_with_paged(vfs: &MemVfs, n: u64) -> (FrameStore, Model) {
    let (store, _) = open_mem(vfs);
    let mut txn = store.begin_checkpoint().unwrap();
    for id in 1..=n {
        txn.seal_and_write(FrameId(id), &mut paged_image(id, 0), None).unwrap();
    }
    txn.commit(meta(1)).unwrap();
    (store, Model { frames: (1..=n).map(|id| (id, 0)).collect(), meta: Some(meta(1)) })
}

/// Write generation `gen` of each frame in `ids` over its published image.
fn checkpoint_deltas(store: &FrameStore, ids: &[u64], gen: u64, n: u64) {
    let mut txn = store.begin_checkpoint().unwrap();
    for &id in ids {
        let base = Over { slot: store.delta_base(FrameId(id)).unwrap(), pages: pages_of(gen) };
        txn.seal_and_write(FrameId(id), &mut paged_image(id, gen), Some(base)).unwrap();
    }
    txn.commit(meta(n)).unwrap();
}

fn published(store: &FrameStore, id: u64) -> SlotRef {
    store.published.read().manifest.frames[&FrameId(id)]
}

#[test]
fn a_delta_reads_back_whole_and_keeps_its_base_until_a_whole_image_replaces_it() {
    let vfs = MemVfs::new();
    let (store, mut model) = store_with_paged(&vfs, 3);
    let base = published(&store, 2).slot;
    checkpoint_deltas(&store, &[2], 7, 2);
    model.frames.insert(2, 7);
    model.meta = Some(meta(2));
    let r = published(&store, 2);
    assert_eq!(r.base, Some(Base { slot: base, pages: pages_of(7), packed: true }));
    assert_eq!(store.delta_base(FrameId(2)), Some(base), "the next delta goes over the same base");
    check(&store, &model);
    // A delta over the base again replaces the first delta only.
    checkpoint_deltas(&store, &[2], 9, 3);
    model.frames.insert(2, 9);
    model.meta = Some(meta(3));
    assert_eq!(published(&store, 2).base.map(|b| b.slot), Some(base));
    check(&store, &model);
    let (reopened, found) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    assert_eq!(found, model.meta);
    check(&reopened, &model);
    // A whole image frees the delta and its base.
    let mut txn = store.begin_checkpoint().unwrap();
    txn.seal_and_write(FrameId(2), &mut paged_image(2, 0), None).unwrap();
    txn.commit(meta(4)).unwrap();
    assert_eq!(published(&store, 2).base, None);
    assert!(store.published.read().free.contains(&base), "the base slot is free again");
    model.frames.insert(2, 0);
    check(&store, &model);
}

/// `vfs`'s manifest rewritten as a version 2 manifest wrote it: every
/// layout word 0 (deltas in place).
fn as_version_2(vfs: &MemVfs) {
    use crate::store::manifest::{ENTRY_BYTES, MANIFEST_HEADER_BYTES, MANIFEST_NAME};
    let path = dir().join(MANIFEST_NAME);
    let mut b = vfs.file_bytes(&path).unwrap();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let entries = u64::from_le_bytes(b[56..64].try_into().unwrap()) as usize;
    for i in 0..entries {
        let at = MANIFEST_HEADER_BYTES + i * ENTRY_BYTES + 20;
        b[at..at + 4].fill(0);
    }
    let body = b.len() - 4;
    let crc = crc32c::crc32c(&b[..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
    vfs.corrupt(&path, 0, &b).unwrap();
}

/// A store as builds writing version 2 manifests left it (a delta's pages
/// each at its own offset) reads back; its delta keeps that layout through
/// later checkpoints, which write version 3, until a packed delta
/// replaces it.
#[test]
fn a_delta_in_place_from_a_version_2_manifest_reads_back_until_a_packed_one_replaces_it() {
    let vfs = MemVfs::new();
    let (store, mut model) = store_with_paged(&vfs, 3);
    checkpoint_deltas(&store, &[2], 7, 2);
    model.frames.insert(2, 7);
    model.meta = Some(meta(2));
    let r = published(&store, 2);
    let mut img = paged_image(2, 7);
    let sealed = store.file.seal(FrameId(2), &mut img);
    store.file.write_delta_in_place(r.slot, &img, &sealed, r.base.unwrap().pages);
    store.file.sync().unwrap();
    drop(store);
    as_version_2(&vfs);
    let (store, found) = open_mem(&vfs);
    assert_eq!(found, model.meta);
    assert_eq!(published(&store, 2).base.map(|b| b.packed), Some(false));
    check(&store, &model);
    // A checkpoint of another frame's delta: version 3, frame 2's kept in place.
    checkpoint_deltas(&store, &[3], 4, 3);
    model.frames.insert(3, 4);
    model.meta = Some(meta(3));
    let version = |vfs: &MemVfs| u32::from_le_bytes(vfs.file_bytes(&dir().join(crate::store::manifest::MANIFEST_NAME)).unwrap()[8..12].try_into().unwrap());
    assert_eq!(version(&vfs), crate::store::manifest::MANIFEST_VERSION);
    assert_eq!(published(&store, 2).base.map(|b| b.packed), Some(false));
    assert_eq!(published(&store, 3).base.map(|b| b.packed), Some(true));
    let (reopened, _) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    check(&reopened, &model);
    // A new delta of frame 2, over the same base, is packed.
    checkpoint_deltas(&store, &[2], 9, 4);
    model.frames.insert(2, 9);
    model.meta = Some(meta(4));
    assert_eq!(published(&store, 2).base.map(|b| b.packed), Some(true));
    let (reopened, _) = open_mem(&vfs.crash(CrashMode::DropUnsynced));
    check(&reopened, &model);
}

#[test]
fn a_delta_over_an_image_not_published_is_written_whole() {
    let vfs = MemVfs::new();
    let (store, _) = store_with_paged(&vfs, 2);
    let stale = published(&store, 1).slot;
    let mut txn = store.try_stage().unwrap().unwrap();
    txn.seal_and_stage(FrameId(1), &mut paged_image(1, 3), None).unwrap();
    let staged = store.published.read().staged[&FrameId(1)].slot;
    // Over the staged image: not published, so whole.
    txn.seal_and_stage(FrameId(1), &mut paged_image(1, 4), Some(Over { slot: staged, pages: pages_of(4) })).unwrap();
    assert_eq!(store.published.read().staged[&FrameId(1)].base, None);
    // Over the published image: a delta, staged.
    txn.seal_and_stage(FrameId(2), &mut paged_image(2, 5), Some(Over { slot: published(&store, 2).slot, pages: pages_of(5) })).unwrap();
    drop(txn);
    assert!(store.published.read().staged[&FrameId(2)].base.is_some());
    assert_eq!(gen_of(&store.read_frame(FrameId(1)).unwrap()), 4);
    assert_eq!(gen_of(&store.read_frame(FrameId(2)).unwrap()), 5);
    let mut txn = store.begin_checkpoint().unwrap();
    // A stale base (no longer the published one) is written whole too.
    let not_base = stale + 100;
    txn.seal_and_write(FrameId(1), &mut paged_image(1, 6), Some(Over { slot: not_base, pages: pages_of(6) })).unwrap();
    txn.commit(meta(2)).unwrap();
    assert_eq!(published(&store, 1).base, None);
    check(&store, &Model { frames: [(1, 6), (2, 5)].into_iter().collect(), meta: None });
}

/// A power loss before any disk operation of a checkpoint writing deltas
/// (and a staged delta it publishes), of the give-back after it and of a
/// staging after that, reopens the mapping before or after the
/// checkpoint, each read back whole.
#[test]
fn a_crash_at_every_step_of_writing_deltas_reopens_the_old_or_the_new_mapping() {
    let run = |vfs: &MemVfs| {
        let (store, old) = store_with_paged(vfs, 4);
        let from = vfs.ops_count();
        let mut txn = store.try_stage().unwrap().unwrap();
        let base = Over { slot: store.delta_base(FrameId(4)).unwrap(), pages: pages_of(2) };
        txn.seal_and_stage(FrameId(4), &mut paged_image(4, 2), Some(base)).unwrap();
        drop(txn);
        checkpoint_deltas(&store, &[1, 3], 5, 2);
        store.give_back_kept();
        // Disk operations after the publication: a staged image the
        // reopened store never sees.
        let mut txn = store.try_stage().unwrap().unwrap();
        txn.seal_and_stage(FrameId(2), &mut paged_image(2, 8), None).unwrap();
        drop(txn);
        let mut new = old.clone();
        new.frames.extend([(1, 5), (3, 5), (4, 2)]);
        new.meta = Some(meta(2));
        (old, new, from..vfs.ops_count())
    };
    crash_before_every_step_checked(run, check);
}
