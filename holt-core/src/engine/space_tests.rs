//! A full disk: the engine's own writes (WAL appends, checkpoints) spend
//! the space reserve and go on, the tree says it is low on space, nothing
//! is poisoned, and a reopen finds every acknowledged write. Only with the
//! reserve spent too does a write fail, as it did before the reserve.

use std::collections::BTreeMap;
use std::path::Path;

use crate::testing::{CrashMode, SimDisk};
use crate::{Error, Tree, TreeBuilder};

const RESERVE_BYTES: u64 = 2 << 20;
const VALUE_BYTES: usize = 1000;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn builder(reserve: u64) -> TreeBuilder {
    TreeBuilder::new("/store").checkpoint_interval(None).buffer_pool_size(64).space_reserve_bytes(reserve)
}

fn reserve_len(disk: &SimDisk) -> u64 {
    disk.open(Path::new("/store/RESERVE"), false).map_or(0, |f| f.len().unwrap())
}

fn key(i: u32) -> Vec<u8> {
    format!("dir/{i:06}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    vec![i as u8; VALUE_BYTES]
}

/// Put keys `from..` until `stop` says so (at most `limit`; returns the
/// next key); every put must succeed.
fn put_until(tree: &Tree, model: &mut Model, from: u32, limit: u32, stop: impl Fn(&Tree) -> bool) -> u32 {
    for i in from..from + limit {
        tree.put(&key(i), &value(i)).unwrap_or_else(|e| panic!("put {i} on a full disk: {e}"));
        model.insert(key(i), value(i));
        if stop(tree) {
            return i + 1;
        }
    }
    from + limit
}

fn assert_holds(tree: &Tree, model: &Model) {
    let got = super::power_loss_tests::contents(tree);
    assert_eq!(got.len(), model.len(), "key count");
    assert!(got == *model, "contents differ from the acknowledged writes");
    tree.check_invariants().unwrap();
}

/// A tree with some checkpointed keys on a disk that then has `room`
/// bytes left.
fn nearly_full(reserve: u64, room: u64) -> (SimDisk, Tree, Model, u32) {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder(reserve)).unwrap();
    let mut model = Model::new();
    let next = put_until(&tree, &mut model, 0, 100, |_| false);
    tree.checkpoint().unwrap();
    disk.set_capacity(Some(disk.used_bytes() + room));
    (disk, tree, model, next)
}

#[test]
fn full_disk_during_appends_releases_the_reserve_and_loses_nothing() {
    let (disk, tree, mut model, next) = nearly_full(RESERVE_BYTES, 4096);
    assert_eq!(reserve_len(&disk), RESERVE_BYTES);
    assert!(!tree.space_low());
    // The WAL's reserved step runs out: reserving the next one finds the
    // disk full, releases the reserve and goes on.
    let next = put_until(&tree, &mut model, next, 3000, Tree::space_low);
    assert!(tree.space_low(), "the disk filled");
    assert_eq!(reserve_len(&disk), 0, "the reserve was released");
    put_until(&tree, &mut model, next, 200, |_| false);
    tree.delete(&key(0)).unwrap();
    model.remove(&key(0));
    assert!(tree.space_low());
    assert_holds(&tree, &model);

    let killed = disk.crash(CrashMode::KillProcess);
    drop(tree);
    let tree = disk.open_tree(builder(RESERVE_BYTES)).unwrap();
    assert_holds(&tree, &model);
    assert!(tree.space_low(), "the disk is still too full to make the reserve again");
    drop(tree);
    let tree = killed.open_tree(builder(RESERVE_BYTES)).unwrap();
    assert_holds(&tree, &model);
    assert!(!tree.space_low(), "a disk with room re-creates the reserve at open");
}

#[test]
fn full_disk_during_a_checkpoint_releases_the_reserve() {
    let (disk, tree, mut model, next) = nearly_full(RESERVE_BYTES, 64 << 10);
    // Dirty frames to write, while the WAL's reserved step still has room.
    put_until(&tree, &mut model, next, 40, |_| false);
    assert!(!tree.space_low());
    tree.checkpoint().expect("the checkpoint spends the reserve and succeeds");
    assert!(tree.space_low());
    assert_eq!(reserve_len(&disk), 0);
    assert_holds(&tree, &model);
    let image = disk.crash(CrashMode::DropUnsynced);
    drop(tree);
    let tree = image.open_tree(builder(RESERVE_BYTES)).unwrap();
    assert_holds(&tree, &model);
}

#[test]
fn space_coming_back_lets_a_checkpoint_restore_the_reserve() {
    let (disk, tree, mut model, next) = nearly_full(RESERVE_BYTES, 4096);
    let next = put_until(&tree, &mut model, next, 3000, Tree::space_low);
    assert!(tree.space_low(), "the disk filled");
    assert!(!tree.restore_space_reserve(), "no room for the reserve yet");
    // Room for the reserve but not for the quarter more that growing it
    // asks: still low, so the reserve is not made of the last free bytes.
    disk.set_capacity(Some(disk.used_bytes() + RESERVE_BYTES + RESERVE_BYTES / 8));
    assert!(!tree.restore_space_reserve());
    assert_eq!(reserve_len(&disk), 0, "a failed attempt leaves nothing behind");
    disk.set_capacity(None);
    put_until(&tree, &mut model, next, 1, |_| false);
    tree.checkpoint().unwrap();
    assert!(!tree.space_low(), "the checkpoint re-created the reserve");
    assert_eq!(reserve_len(&disk), RESERVE_BYTES);
    assert_holds(&tree, &model);
}

#[test]
fn full_disk_with_the_reserve_spent_too_fails_the_write_and_poisons() {
    // A reserve smaller than the WAL's reservation step cannot save it;
    // the log goes on with write(2) until that fails too. Then the batch
    // is in memory but not in the log, so the tree refuses writes.
    let (disk, tree, mut model, next) = nearly_full(64 << 10, 4096);
    let mut failed = None;
    for i in next..next + 1000 {
        match tree.put(&key(i), &value(i)) {
            Ok(()) => {
                model.insert(key(i), value(i));
            }
            Err(e) => {
                assert!(e.is_no_space(), "put {i}: {e}");
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
                failed = Some(i);
                break;
            }
        }
    }
    let failed = failed.expect("the disk filled");
    assert!(tree.space_low());
    assert!(matches!(tree.put(b"after", b"x"), Err(Error::Poisoned { .. })));
    let image = disk.crash(CrashMode::KillProcess);
    std::mem::forget(tree);
    let tree = image.open_tree(builder(64 << 10)).unwrap();
    let got = super::power_loss_tests::contents(&tree);
    let mut with_failed = model.clone();
    with_failed.insert(key(failed), value(failed));
    assert!(got == model || got == with_failed, "recovered state is not the acknowledged one");
}

#[test]
fn reopen_on_a_full_disk_spends_the_reserve_to_delete() {
    let (disk, tree, mut model, _) = nearly_full(RESERVE_BYTES, 0);
    drop(tree);
    disk.set_capacity(Some(disk.used_bytes()));
    let tree = disk.open_tree(builder(RESERVE_BYTES)).unwrap();
    assert!(!tree.space_low(), "the reserve kept from the last open is in place");
    for i in 0..50 {
        assert!(tree.delete(&key(i)).unwrap());
        model.remove(&key(i));
    }
    assert!(tree.space_low());
    assert_holds(&tree, &model);
}

#[test]
fn a_failed_checkpoint_after_a_commit_does_not_fail_the_write() {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder(RESERVE_BYTES).wal_bytes_target(64 << 10)).unwrap();
    let mut model = Model::new();
    // Past twice the WAL target every write runs a checkpoint itself.
    let next = put_until(&tree, &mut model, 0, 400, |t| t.stats().unwrap().wal_bytes >= 128 << 10);
    disk.fail_syncs_after(0, libc::EIO);
    let checkpoints = tree.stats().unwrap().checkpoints;
    tree.put(&key(next), &value(next)).expect("the write was committed before its checkpoint failed");
    assert_eq!(tree.stats().unwrap().checkpoints, checkpoints, "the write's own checkpoint failed");
    model.insert(key(next), value(next));
    assert_eq!(tree.get(&key(next)).unwrap(), Some(value(next)));
    assert!(matches!(tree.put(b"after", b"x"), Err(Error::Poisoned { .. })), "the failed sync poisons");
    let image = disk.crash(CrashMode::KillProcess);
    std::mem::forget(tree);
    let tree = image.open_tree(builder(RESERVE_BYTES)).unwrap();
    assert_holds(&tree, &model);
}

#[test]
fn reserve_file_follows_the_configured_size_on_a_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("RESERVE");
    let open =
        |bytes| TreeBuilder::new(dir.path()).checkpoint_interval(None).space_reserve_bytes(bytes).open().unwrap();
    let tree = TreeBuilder::new(dir.path()).checkpoint_interval(None).open().unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 16 << 20, "16 MiB by default");
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= 16 << 20, "the space is allocated");
    assert!(!tree.space_low());
    drop(tree);
    let tree = open(1 << 20);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    drop(tree);
    let tree = open(0);
    assert!(!path.exists(), "no reserve configured: the file goes");
    assert!(!tree.space_low());
    assert!(!TreeBuilder::new("unused").memory().open().unwrap().space_low());
}
