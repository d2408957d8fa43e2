//! The miss filter saved at a clean close (`engine::filter_saved`): the
//! next open takes it, and whatever happens after (writes replayed after
//! a crash, a checkpoint that makes it stale, a power loss at any step of
//! the close that saves it again, a damaged file) no key written is ever
//! answered absent.

use std::ops::Range;
use std::path::Path;

use super::capture_tests::{open_with, Model};
use crate::store::filter_file::{self, FILTER_NAME};
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::vfs::Vfs;
use crate::Tree;

const DIR: &str = "/store";
const KEYS: u32 = 20_000;
/// A capacity the builder thread never picks (it builds for twice the
/// keys): a filter of this capacity after an open came from the file.
const SAVED_CAPACITY: u64 = 5 * KEYS as u64;

fn key(i: u32) -> Vec<u8> {
    format!("/vol/d{:03}/entry-{i:08}", i % 89).into_bytes()
}

/// Every commit synced and no background thread but the filter's keeper:
/// a run's disk operations come in the same order every time.
fn open(vfs: &MemVfs) -> Tree {
    open_with(vfs, |cfg| {
        cfg.wal_sync_on_commit = true;
        cfg.checkpoint_interval = None;
        cfg.wal_flusher = false;
    })
}

/// The current filter's capacity once a filter saved at the last close
/// is read in (the keeper's first work, done here if it has not yet).
fn capacity(tree: &Tree) -> u64 {
    let engine = tree.engine();
    {
        let _one_at_a_time = engine.filter_keeper.build.lock();
        engine.finish_saved_filter();
    }
    engine.filter.as_ref().expect("the filter is on").capacity()
}

fn put(tree: &Tree, model: &mut Model, i: u32) {
    let value = vec![(i % 251) as u8; 40 + (i % 60) as usize];
    tree.put(&key(i), &value).unwrap();
    model.insert(key(i), value);
}

/// A store of `KEYS` keys closed cleanly with a filter of
/// `SAVED_CAPACITY` keys, every file synced.
fn saved_store() -> (MemVfs, Model) {
    let vfs = MemVfs::new();
    let tree = open(&vfs);
    let mut model = Model::new();
    (0..KEYS).for_each(|i| put(&tree, &mut model, i));
    tree.engine().build_filter(SAVED_CAPACITY);
    assert_eq!(capacity(&tree), SAVED_CAPACITY);
    drop(tree);
    (vfs.crash(CrashMode::DropUnsynced), model)
}

/// Every key of `model` is found with its value, and no absent one is.
/// Each get of a present key follows one of an absent key: a thread
/// whose lookups keep finding their keys stops probing the filter
/// (`miss_filter::MISS_SCORE`), and these gets must each probe it.
fn assert_holds(tree: &Tree, model: &Model, what: &str) {
    for (k, v) in model {
        let mut absent = k.clone();
        absent.push(b'~');
        assert_eq!(tree.get(&absent).unwrap(), None, "{what}");
        assert_eq!(tree.get(k).unwrap().as_ref(), Some(v), "{what}: key {}", String::from_utf8_lossy(k));
    }
}

fn filter_file_exists(vfs: &MemVfs) -> bool {
    vfs.open(&Path::new(DIR).join(FILTER_NAME), false).is_ok()
}

#[test]
fn a_clean_close_saves_the_filter_and_the_next_open_takes_it() {
    let (vfs, mut model) = saved_store();
    assert!(filter_file_exists(&vfs), "saved, and synced with its directory");
    let tree = open(&vfs);
    {
        // Keys put while the keeper has yet to read the file in (it waits
        // for this lock, unless it was first) set their bits in the
        // registered build, which the file's words are or-ed into.
        let _keeper_waits = tree.engine().filter_keeper.build.lock();
        (KEYS..KEYS + 500).for_each(|i| put(&tree, &mut model, i));
    }
    assert_eq!(capacity(&tree), SAVED_CAPACITY, "taken from the file");
    let before = tree.counters().miss_filter_answers;
    assert_holds(&tree, &model, "reopened");
    let answered = tree.counters().miss_filter_answers - before;
    assert!(answered > KEYS as u64 * 8 / 10, "the taken filter answers most misses: {answered} of {KEYS}");
}

/// The session after the open that took the filter: creates, deletes
/// and updates, each synced, then the clean close that saves it again.
/// Returns the disk operations of the session's writes and of its close.
fn session(vfs: &MemVfs, model: &mut Model) -> (Range<u64>, Range<u64>) {
    let tree = open(vfs);
    assert_eq!(capacity(&tree), SAVED_CAPACITY);
    let first = vfs.ops_count();
    (KEYS..KEYS + 300).for_each(|i| put(&tree, model, i));
    for i in (0..KEYS).step_by(97) {
        tree.delete(&key(i)).unwrap();
        model.remove(&key(i));
    }
    (1..KEYS).step_by(101).filter(|i| i % 97 != 0).for_each(|i| put(&tree, model, i));
    let close = vfs.ops_count();
    drop(tree);
    (first..close, close..vfs.ops_count())
}

/// A power loss at every step of the session's close (the checkpoint,
/// the WAL's retirement, the filter's save) and at every 29th of its
/// writes: the store that reopens finds every key, whether it took the
/// filter saved before the session (the WAL's keys then set their bits
/// as they are replayed), the one saved at its close, or neither.
#[test]
fn a_power_loss_at_any_step_after_the_open_that_took_it_keeps_every_key() {
    let (base, model) = saved_store();
    let mut after = model.clone();
    let (writes, close) = session(&base.crash(CrashMode::DropUnsynced), &mut after);
    assert!(close.end - close.start > 10, "the close checkpoints and saves: {close:?}");
    let (mut taken, mut not_taken) = (0, 0);
    for op in writes.clone().step_by(29).chain(close.clone()) {
        for mode in [CrashMode::DropUnsynced, CrashMode::Torn { seed: op }] {
            let vfs = base.crash(CrashMode::DropUnsynced);
            vfs.crash_before_op(op, mode);
            let mut again = model.clone();
            assert_eq!(session(&vfs, &mut again), (writes.clone(), close.clone()), "the run is deterministic");
            let image = vfs.take_crash_image().expect("the crash point is reached");
            let tree = open(&image);
            if capacity(&tree) == SAVED_CAPACITY {
                taken += 1;
            } else {
                not_taken += 1;
            }
            tree.engine().check_invariants().unwrap();
            let what = format!("{mode:?} before op {op} (writes {writes:?}, close {close:?})");
            assert_holds(&tree, &contents_at(&tree, &model, &after), &what);
        }
    }
    assert!(taken > 100 && not_taken > 0, "both paths ran: {taken} images took a saved filter, {not_taken} did not");
}

/// What a crash image holds: each key of the session as before or after
/// it (the session's writes are each synced, so a prefix of them), read
/// from the tree by a scan, which never consults the filter; checked to
/// be one or the other, then used as the model every get must match.
fn contents_at(tree: &Tree, before: &Model, after: &Model) -> Model {
    let seen = super::power_loss_tests::contents(tree);
    for k in before.keys().chain(after.keys()) {
        let (s, b, a) = (seen.get(k), before.get(k), after.get(k));
        assert!(s == b || s == a, "key {} is neither as before nor as after the session", String::from_utf8_lossy(k));
    }
    seen
}

#[test]
fn a_checkpoint_after_the_open_makes_the_saved_filter_stale() {
    let (vfs, mut model) = saved_store();
    let tree = open(&vfs);
    (KEYS..KEYS + 200).for_each(|i| put(&tree, &mut model, i));
    tree.checkpoint().unwrap();
    (KEYS + 200..KEYS + 400).for_each(|i| put(&tree, &mut model, i));
    let image = vfs.crash(CrashMode::DropUnsynced);
    std::mem::forget(tree);
    assert!(filter_file_exists(&image));
    let tree = open(&image);
    assert_ne!(capacity(&tree), SAVED_CAPACITY, "the file names the checkpoint before the published one");
    assert!(!filter_file_exists(&image), "a stale file is removed");
    assert_holds(&tree, &model, "after a checkpoint and a crash");
}

#[test]
fn a_damaged_or_foreign_saved_filter_is_ignored_and_removed() {
    let (vfs, model) = saved_store();
    let path = Path::new(DIR).join(FILTER_NAME);
    let file = vfs.open(&path, false).unwrap();
    let len = file.len().unwrap();
    file.write_at(&[0x5a], len / 2).unwrap();
    let tree = open(&vfs);
    assert_ne!(capacity(&tree), SAVED_CAPACITY, "a damaged file is not taken");
    assert!(!filter_file_exists(&vfs));
    assert_holds(&tree, &model, "damaged filter file");
    drop(tree);

    // A header that vouches for itself but sizes a filter no build would
    // (a capacity whose bits overflow): refused, no panic.
    let (vfs, model) = saved_store();
    let file = vfs.open(&path, false).unwrap();
    let mut header = [0u8; filter_file::HEADER_BYTES];
    file.read_at(&mut header, 0).unwrap();
    let (at, crc_at) = (filter_file::H_CAPACITY, filter_file::H_CRC);
    header[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&header[..crc_at]);
    header[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    file.write_at(&header, 0).unwrap();
    let tree = open(&vfs);
    assert_ne!(capacity(&tree), u64::MAX, "an absurd capacity is not taken");
    assert!(!filter_file_exists(&vfs));
    assert_holds(&tree, &model, "absurd capacity");
    drop(tree);

    // Another store's file, saved after the same number of checkpoints.
    let (other, _) = saved_store();
    let bytes = {
        let f = other.open(&path, false).unwrap();
        let mut b = vec![0u8; f.len().unwrap() as usize];
        f.read_at(&mut b, 0).unwrap();
        b
    };
    let (vfs, model) = saved_store();
    vfs.open(&path, false).unwrap().write_at(&bytes, 0).unwrap();
    let tree = open(&vfs);
    assert_ne!(capacity(&tree), SAVED_CAPACITY, "another store's file is not taken");
    assert_holds(&tree, &model, "foreign filter file");
}

/// A close on a disk that filled (the space reserve released to let the
/// closing checkpoint through) leaves the room to the store's own files.
#[test]
fn a_close_on_a_disk_that_filled_saves_no_filter() {
    let vfs = MemVfs::new();
    let tree = open(&vfs);
    let mut model = Model::new();
    (0..KEYS).for_each(|i| put(&tree, &mut model, i));
    tree.engine().build_filter(SAVED_CAPACITY);
    vfs.set_capacity(Some(vfs.used_bytes() + (256 << 10)));
    drop(tree);
    assert!(!filter_file_exists(&vfs), "no filter saved on a full disk");
    vfs.set_capacity(None);
    let tree = open(&vfs);
    assert_holds(&tree, &model, "after a close on a full disk");
}
