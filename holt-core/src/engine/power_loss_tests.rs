//! Power-loss and fault-injection tests: the engine on a simulated file
//! system that forgets unsynced writes, tears them at 512-byte sectors, or
//! fails the Nth write or sync. Every op acknowledged under
//! `wal_sync_on_commit(true)` must survive; the tree must reopen consistent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::checkpoint::Start;
use super::{Config, Engine};
use crate::store::lock::StoreLock;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::splitmix::SplitMix64;
use crate::{Error, RangeEntry, Tree};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// The model after each acknowledged op, with the disk's op count then.
type History = Vec<(u64, Model)>;

fn open_on(vfs: &MemVfs) -> crate::Result<Tree> {
    open_with(vfs, |_| {})
}

fn open_with(vfs: &MemVfs, set: impl FnOnce(&mut Config)) -> crate::Result<Tree> {
    let dir = Path::new("/store");
    let lock = StoreLock::acquire_mem(vfs, dir)?;
    let mut cfg = Config::new(dir.to_path_buf());
    cfg.wal_sync_on_commit = true;
    cfg.checkpoint_interval = None;
    cfg.pool_frames_max = 16;
    // No thread of its own touches the disk, so a seed replays the same
    // disk operations (the flusher's steps have `journal::ahead_tests`).
    cfg.wal_flusher = false;
    set(&mut cfg);
    Ok(Tree::from_engine(Engine::open_durable(cfg, Arc::new(vfs.clone()), lock)?))
}

/// A tree larger than its pool that loads evicted frames around the page
/// cache (`direct_frame_reads`): a whole-frame load then reads the slot
/// in one request (`FrameFile::read_slot_at_once`).
fn open_direct(vfs: &MemVfs) -> crate::Result<Tree> {
    open_with(vfs, |cfg| {
        cfg.pool_frames_max = crate::POOL_FRAMES_MIN;
        cfg.direct_frame_reads = true;
    })
}

pub(super) fn contents(tree: &Tree) -> Model {
    tree.range()
        .into_iter()
        .map(|e| match e.expect("scan of a recovered tree") {
            RangeEntry::Key { key, value } => (key, value),
            RangeEntry::CommonPrefix(p) => panic!("no delimiter, got prefix {p:?}"),
        })
        .collect()
}

/// One random op on tree and model; Ok(true) if the tree acknowledged it.
fn step(tree: &Tree, model: &mut Model, rng: &mut SplitMix64) -> bool {
    let k = format!("k{:03}", rng.below(400)).into_bytes();
    let v = vec![rng.next_u64() as u8; rng.below(3000) as usize];
    let mut next = model.clone();
    let r = match rng.below(5) {
        0 | 1 => {
            next.insert(k.clone(), v.clone());
            tree.put(&k, &v)
        }
        2 => {
            next.remove(&k);
            tree.delete(&k).map(|_| ())
        }
        3 => {
            let d = format!("k{:03}", rng.below(400)).into_bytes();
            match next.remove(&k) {
                Some(val) => {
                    next.insert(d.clone(), val);
                    tree.rename(&k, &d, true)
                }
                None => return matches!(tree.rename(&k, &d, true), Err(Error::NotFound)),
            }
        }
        _ => {
            let k2 = format!("k{:03}", rng.below(400)).into_bytes();
            next.insert(k.clone(), v.clone());
            next.remove(&k2);
            tree.txn(|b| {
                b.put(&k, &v).delete(&k2);
            })
        }
    };
    if r.is_ok() {
        *model = next;
    }
    r.is_ok()
}

/// Run ops until `ops` are done, checkpointing now and then. Returns the
/// model after each acknowledged op together with the simulated-disk op
/// count at acknowledgement.
fn workload(tree: &Tree, vfs: &MemVfs, rng: &mut SplitMix64, ops: usize) -> History {
    workload_with(tree, vfs, rng, ops, Start::Tidy)
}

/// `workload`, its checkpoints started as `start` says.
fn workload_with(tree: &Tree, vfs: &MemVfs, rng: &mut SplitMix64, ops: usize, start: Start) -> History {
    let mut model = contents(tree);
    let mut history = vec![(vfs.ops_count(), model.clone())];
    for i in 0..ops {
        if step(tree, &mut model, rng) {
            history.push((vfs.ops_count(), model.clone()));
        }
        if i % 40 == 39 && tree.engine().checkpoint_now(start).is_ok() {
            history.push((vfs.ops_count(), model.clone()));
        }
    }
    history
}

/// Arm a power cut before a seed-chosen one of the next 900 disk
/// operations (dropping unsynced writes for even seeds, tearing them for
/// odd ones), run `work`, and return the disk as the cut left it, the
/// history `work` returned and the operation the cut came before.
fn cut_power(vfs: &MemVfs, seed: u64, rng: &mut SplitMix64, work: impl FnOnce(&mut SplitMix64) -> History) -> (MemVfs, History, u64) {
    let crash_at = vfs.ops_count() + rng.below(900);
    let mode = if seed.is_multiple_of(2) { CrashMode::DropUnsynced } else { CrashMode::Torn { seed } };
    vfs.crash_before_op(crash_at, mode);
    let history = work(rng);
    let image = vfs.take_crash_image().unwrap_or_else(|| vfs.crash(mode));
    (image, history, crash_at)
}

/// The recovered state must be the model after some op at or after the
/// last one acknowledged before the crash point.
fn check_recovered(image: &MemVfs, history: &[(u64, Model)], crash_at: u64, ctx: &str) {
    recovered(open_on, image, history, crash_at, ctx);
}

/// `check_recovered` with the tree opened by `open`, which it returns.
fn recovered(open: fn(&MemVfs) -> crate::Result<Tree>, image: &MemVfs, history: &[(u64, Model)], crash_at: u64, ctx: &str) -> Tree {
    let tree = open(image).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    tree.check_invariants().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let got = contents(&tree);
    let acked = history.iter().rposition(|(at, _)| *at <= crash_at).unwrap_or(0);
    assert!(
        history[acked..].iter().any(|(_, m)| *m == got),
        "{ctx}: recovered {} keys, which match no state at or after ack #{acked}",
        got.len()
    );
    tree
}

#[test]
fn power_loss_at_any_step_keeps_every_synced_op() {
    for seed in 0..24u64 {
        let vfs = MemVfs::new();
        let tree = open_on(&vfs).unwrap();
        let mut rng = SplitMix64::new(seed);
        let (image, history, crash_at) = cut_power(&vfs, seed, &mut rng, |rng| workload(&tree, &vfs, rng, 300));
        drop(tree);
        check_recovered(&image, &history, crash_at, &format!("seed {seed} crash at op {crash_at}"));
    }
}

/// As above with checkpoints a bound presses (`Start::Now`), which leave
/// the frames in memory as they are and write them in key order
/// (`tidy::tidy_image`): a power loss at any step of such a checkpoint
/// loses no synced op either.
#[test]
fn power_loss_during_checkpoints_writing_tidied_images_keeps_every_synced_op() {
    let mut tidied = 0;
    for seed in 0..24u64 {
        let vfs = MemVfs::new();
        let tree = open_on(&vfs).unwrap();
        let mut rng = SplitMix64::new(seed + 500);
        let (image, history, crash_at) = cut_power(&vfs, seed, &mut rng, |rng| workload_with(&tree, &vfs, rng, 300, Start::Now));
        tidied += tree.engine().pool().counters.tidies.get();
        drop(tree);
        check_recovered(&image, &history, crash_at, &format!("seed {seed} crash at op {crash_at}"));
    }
    assert!(tidied > 24, "the checkpoints tidied {tidied} images");
}

/// As `power_loss_at_any_step_keeps_every_synced_op`, on a tree several
/// times its pool that reads frames around the page cache: after the
/// crash, rewriting every key makes writers load the recovered frames
/// whole, each slot in one read, and the tree still holds exactly a state
/// at or after the last acknowledged op.
#[test]
fn power_loss_with_frames_read_around_the_page_cache_keeps_every_synced_op() {
    let mut whole_reads = 0;
    for seed in 0..12u64 {
        let vfs = MemVfs::new();
        let tree = open_direct(&vfs).unwrap();
        let mut rng = SplitMix64::new(seed + 3000);
        for i in 0..160u64 {
            tree.put(format!("big{i:03}").as_bytes(), &vec![i as u8; 40_000]).unwrap();
        }
        tree.engine().checkpoint_now(Start::Now).unwrap();
        let (image, history, crash_at) = cut_power(&vfs, seed, &mut rng, |rng| workload(&tree, &vfs, rng, 300));
        drop(tree);
        let ctx = format!("seed {seed} crash at op {crash_at}");
        let tree = recovered(open_direct, &image, &history, crash_at, &ctx);
        let got = contents(&tree);
        for (k, v) in &got {
            tree.put(k, v).unwrap_or_else(|e| panic!("{ctx}: rewrite failed: {e}"));
        }
        assert!(contents(&tree) == got, "{ctx}: rewriting every key changed the contents");
        tree.check_invariants().unwrap_or_else(|e| panic!("{ctx}: {e}"));
        whole_reads += tree.counters().frames_read;
    }
    assert!(whole_reads > 12, "writers loaded {whole_reads} recovered frames whole");
}

#[test]
fn failed_sync_poisons_writes_and_loses_nothing_acknowledged() {
    for seed in 0..12u64 {
        let vfs = MemVfs::new();
        let tree = open_on(&vfs).unwrap();
        let mut rng = SplitMix64::new(seed + 1000);
        vfs.fail_sync_after(rng.below(60));
        let history = workload(&tree, &vfs, &mut rng, 150);
        assert!(
            matches!(tree.put(b"after", b"x"), Err(Error::Poisoned { .. })),
            "seed {seed}: a write after a failed sync must be refused"
        );
        let image = vfs.crash(CrashMode::DropUnsynced);
        std::mem::forget(tree);
        check_recovered(&image, &history, u64::MAX, &format!("seed {seed} failed sync"));
    }
}

#[test]
fn failed_writes_return_errors_and_loses_nothing_acknowledged() {
    for (seed, errno) in [(1u64, libc::ENOSPC), (2, libc::EIO), (3, libc::EACCES), (4, libc::ENOSPC)] {
        let vfs = MemVfs::new();
        let tree = open_on(&vfs).unwrap();
        let mut rng = SplitMix64::new(seed + 2000);
        vfs.fail_write_after_with(20 + rng.below(80), errno);
        let history = workload(&tree, &vfs, &mut rng, 200);
        assert!(tree.put(b"after", b"x").is_err(), "seed {seed}: the failing disk still fails");
        let image = vfs.crash(CrashMode::DropUnsynced);
        std::mem::forget(tree);
        check_recovered(&image, &history, u64::MAX, &format!("seed {seed} errno {errno}"));
    }
}
