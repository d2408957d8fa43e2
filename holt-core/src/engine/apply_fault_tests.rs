//! A batch that fails after its WAL record was staged (an apply step made to
//! fail through `fault`, as an I/O error or a corrupt frame would): the
//! failing call gets that error, the tree refuses reads and writes from then
//! on, no checkpoint publishes any part of the batch, and recovery, after a
//! power loss or a plain reopen, finds the batch wholly absent or wholly
//! present and every acknowledged op before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fault::{self, Step};
use super::power_loss_tests::contents;
use crate::store::splitmix::SplitMix64;
use crate::testing::{CrashMode, SimDisk};
use crate::{Error, Result, Tree, TreeBuilder};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Ops a run may take to reach its armed step.
const OPS_MAX: usize = 3000;

#[derive(Copy, Clone, Debug)]
enum Kind {
    /// `Tree::put` (the single-op path).
    Put,
    /// `Tree::delete` of a present key (the single-op path).
    Delete,
    /// `Tree::rename` (the batch path, two keys).
    Rename,
    /// `Tree::txn` of puts, deletes and a rename (the batch path).
    Txn,
}

/// What the armed fault broke.
struct Failure {
    err: Error,
    /// The model before the failed call: every acknowledged op.
    before: Model,
    /// The model had the failed call applied whole.
    after: Model,
}

fn builder(checkpoint_every: Option<Duration>) -> TreeBuilder {
    TreeBuilder::new("/store").wal_sync_on_commit(true).checkpoint_interval(checkpoint_every).buffer_pool_size(16)
}

fn new_key(rng: &mut SplitMix64) -> Vec<u8> {
    format!("d{}/k{:04}", rng.below(8), rng.below(2000)).into_bytes()
}

/// Values big enough that frames fill and spill every few dozen puts.
fn new_value(rng: &mut SplitMix64) -> Vec<u8> {
    vec![rng.next_u64() as u8; 1000 + rng.below(6000) as usize]
}

fn present_key(model: &Model, rng: &mut SplitMix64) -> Vec<u8> {
    let n = rng.below(model.len() as u64) as usize;
    model.keys().nth(n).expect("the model holds keys").clone()
}

/// One call of `kind`: its result, and the model as it is if the call applies whole.
fn call(tree: &Tree, model: &Model, kind: Kind, rng: &mut SplitMix64) -> (Result<()>, Model) {
    let mut next = model.clone();
    let r = match kind {
        Kind::Put => {
            let (k, v) = (new_key(rng), new_value(rng));
            next.insert(k.clone(), v.clone());
            tree.put(&k, &v)
        }
        Kind::Delete => {
            let k = present_key(model, rng);
            next.remove(&k);
            tree.delete(&k).map(|_| ())
        }
        Kind::Rename => {
            let (src, dst) = (present_key(model, rng), new_key(rng));
            let value = next.remove(&src).expect("present");
            next.insert(dst.clone(), value);
            tree.rename(&src, &dst, true)
        }
        Kind::Txn => {
            let (p1, v1, p2, v2) = (new_key(rng), new_value(rng), new_key(rng), new_value(rng));
            let (gone, src, dst) = (present_key(model, rng), present_key(model, rng), new_key(rng));
            // In the batch's order; a rename whose source the batch itself
            // removed is left out (it would fail before the journal).
            next.insert(p1.clone(), v1.clone());
            next.remove(&gone);
            next.insert(p2.clone(), v2.clone());
            let moved = next.remove(&src);
            tree.txn(|b| {
                b.put(&p1, &v1).delete(&gone).put(&p2, &v2);
                if let Some(value) = moved {
                    next.insert(dst.clone(), value);
                    b.rename(&src, &dst, true);
                }
            })
        }
    };
    (r, next)
}

/// Fill the tree (acknowledged, partly checkpointed) and return its model.
fn populate(tree: &Tree, rng: &mut SplitMix64) -> Model {
    let mut model = Model::new();
    for i in 0..150 {
        let (k, v) = (new_key(rng), new_value(rng));
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
        if i == 100 {
            tree.checkpoint().unwrap();
        }
    }
    model
}

/// Run calls of `kind` until the fault armed at `step` (after `skip`
/// passes) fails one.
fn run_until_fault(tree: &Tree, model: &mut Model, kind: Kind, step: Step, skip: u64, rng: &mut SplitMix64) -> Failure {
    fault::arm(step, skip);
    for _ in 0..OPS_MAX {
        let (r, after) = call(tree, model, kind, rng);
        match r {
            Ok(()) => *model = after,
            Err(err) => {
                assert!(!fault::disarm(), "{kind:?} failed before {step:?} fired: {err}");
                return Failure { err, before: model.clone(), after };
            }
        }
    }
    panic!("{kind:?} never reached {step:?} in {OPS_MAX} calls");
}

fn is_poisoned<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Poisoned { .. }))
}

/// The failing call got the fault's own error; everything after is refused.
fn assert_refuses_everything(tree: &Tree, f: &Failure, ctx: &str) {
    assert!(f.err.to_string().contains("injected fault"), "{ctx}: the failing call returns its cause: {}", f.err);
    let k = f.before.keys().next().expect("populated").clone();
    assert!(is_poisoned(tree.put(b"later", b"x")), "{ctx}: put after the failure");
    assert!(is_poisoned(tree.delete(&k)), "{ctx}: delete after the failure");
    assert!(is_poisoned(tree.rename(&k, b"elsewhere", true)), "{ctx}: rename after the failure");
    assert!(is_poisoned(tree.txn(|b| {
        b.put(b"a", b"1").delete(&k);
    })), "{ctx}: txn after the failure");
    assert!(is_poisoned(tree.atomic(|b| {
        b.assert_absent(b"a").put(b"a", b"1");
    })), "{ctx}: atomic after the failure");
    assert!(is_poisoned(tree.get(&k)), "{ctx}: a read could see part of the batch");
    let first = tree.range().into_iter().next().expect("a poisoned scan reports its error");
    assert!(is_poisoned(first), "{ctx}: a scan could see part of the batch");
    assert!(is_poisoned(tree.checkpoint()), "{ctx}: a checkpoint could publish part of the batch");
    assert!(is_poisoned(tree.sync()), "{ctx}: the journal must refuse to write the staged record");
}

/// Reopened with the default cache: in a 16-frame pool that replay left
/// mostly dirty, with no checkpointer to clean it, a scan chunk spanning
/// more clean frames than the rest of the budget evicts its own frames on
/// every attempt and never validates (a buffer-manager limit of its own).
fn reopened_contents(disk: &SimDisk, ctx: &str) -> Model {
    let reopen = TreeBuilder::new("/store").checkpoint_interval(None);
    let tree = disk.open_tree(reopen).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    tree.check_invariants().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    contents(&tree)
}

/// Power loss now (dropped and torn unsynced writes), and a plain reopen
/// after the poisoned tree is dropped: the batch is wholly absent or wholly
/// present, never in part; with `absent`, wholly absent.
fn assert_recovers_whole(disk: &SimDisk, tree: Tree, f: &Failure, absent: bool, ctx: &str) {
    let images = [disk.crash(CrashMode::DropUnsynced), disk.crash(CrashMode::Torn { seed: 7 })];
    drop(tree);
    let reopens = images.iter().chain(std::iter::once(disk));
    for (i, image) in reopens.enumerate() {
        let got = reopened_contents(image, &format!("{ctx}, reopen {i}"));
        if absent {
            assert!(got == f.before, "{ctx}, reopen {i}: the abandoned record was written, or an ack was lost");
        } else {
            assert!(got == f.before || got == f.after, "{ctx}, reopen {i}: recovered part of the failed batch");
        }
    }
}

/// Each step `kind` passes through, failed on a fresh store, with and
/// without a background checkpointer racing the failure.
fn check_kind(kind: Kind, steps: &[(Step, u64)]) {
    for (i, &(step, skip)) in steps.iter().enumerate() {
        for background in [false, true] {
            let ctx = format!("{kind:?} failing at {step:?} (skip {skip}, background checkpoints {background})");
            let disk = SimDisk::new();
            let every = background.then_some(Duration::from_millis(1));
            let tree = disk.open_tree(builder(every)).unwrap();
            let mut rng = SplitMix64::new(i as u64 * 2 + u64::from(background));
            let mut model = populate(&tree, &mut rng);
            let failure = run_until_fault(&tree, &mut model, kind, step, skip, &mut rng);
            assert_refuses_everything(&tree, &failure, &ctx);
            // Alone, nothing writes the abandoned record; a racing
            // checkpoint's WAL sync may have written it whole.
            assert_recovers_whole(&disk, tree, &failure, !background, &ctx);
        }
    }
}

#[test]
fn single_put_failing_after_append_poisons_and_recovers_whole() {
    check_kind(Kind::Put, &[(Step::BeforeOp, 3), (Step::AfterSpill, 0), (Step::BeforeFinish, 5)]);
}

#[test]
fn single_delete_failing_after_append_poisons_and_recovers_whole() {
    check_kind(Kind::Delete, &[(Step::BeforeOp, 2), (Step::BeforeFinish, 4)]);
}

/// (Renames alone never spill: each frees what it adds. A rename's insert
/// is the `put` the other kinds spill in, and `Txn` holds renames.)
#[test]
fn rename_failing_after_append_poisons_and_recovers_whole() {
    check_kind(Kind::Rename, &[(Step::BeforeOp, 1), (Step::RenameHalfDone, 2), (Step::BeforeFinish, 3)]);
}

#[test]
fn batch_failing_after_append_poisons_and_recovers_whole() {
    let mid_batch = [(Step::BeforeOp, 4), (Step::BeforeOp, 5), (Step::BeforeOp, 6), (Step::BeforeOp, 7)];
    check_kind(Kind::Txn, &mid_batch);
    let steps = [(Step::RenameHalfDone, 1), (Step::AfterSpill, 1), (Step::BeforeFinish, 2)];
    check_kind(Kind::Txn, &steps);
}

/// A batch past the staging flush is written (and synced) by its own
/// append, before it is applied: recovery replays it whole.
#[test]
fn apply_failure_after_record_was_written_recovers_batch_whole() {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder(None)).unwrap();
    let mut rng = SplitMix64::new(11);
    let before = populate(&tree, &mut rng);
    let mut after = before.clone();
    let big: Vec<(Vec<u8>, Vec<u8>)> =
        (0..36u32).map(|i| (format!("big/{i:02}").into_bytes(), vec![i as u8; crate::VALUE_BYTES_MAX])).collect();
    after.extend(big.iter().cloned());
    fault::arm(Step::BeforeOp, 20);
    let err = tree
        .txn(|b| {
            for (k, v) in &big {
                b.put(k, v);
            }
        })
        .unwrap_err();
    assert!(!fault::disarm(), "the fault fired");
    let failure = Failure { err, before, after };
    assert_refuses_everything(&tree, &failure, "batch over the flush size");
    let images = [disk.crash(CrashMode::DropUnsynced), disk.crash(CrashMode::Torn { seed: 3 })];
    drop(tree);
    for (i, image) in images.iter().chain(std::iter::once(&disk)).enumerate() {
        let got = reopened_contents(image, &format!("reopen {i}"));
        assert!(got == failure.after, "reopen {i}: the written record must replay whole");
    }
}

/// Writers on other threads and a checkpointer running every millisecond
/// (making room ahead of the writers too) while one batch fails half
/// applied: every writer is refused from then on, and recovery keeps each
/// writer's acknowledged keys and all or none of the failed batch.
#[test]
fn concurrent_writers_and_checkpoints_never_publish_half_a_failed_batch() {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder(Some(Duration::from_millis(1))).make_room_ahead(true)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (tree, stop) = (tree.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match tree.put(format!("t{t}/{acked:06}").as_bytes(), &[t as u8; 3000]) {
                        Ok(()) => acked += 1,
                        Err(e) => {
                            assert!(matches!(e, Error::Poisoned { .. }), "writer {t}: {e}");
                            break;
                        }
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let batch: Vec<Vec<u8>> = (0..8).map(|i| format!("m/{i}").into_bytes()).collect();
    fault::arm(Step::BeforeOp, 4);
    tree.txn(|b| {
        for k in &batch {
            b.put(k, &[0xEE; 2000]);
        }
    })
    .unwrap_err();
    assert!(!fault::disarm(), "the fault fired");
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<u32> = writers.into_iter().map(|w| w.join().expect("writer")).collect();
    let images = [disk.crash(CrashMode::DropUnsynced), disk.crash(CrashMode::Torn { seed: 5 })];
    drop(tree);
    for (i, image) in images.iter().chain(std::iter::once(&disk)).enumerate() {
        let got = reopened_contents(image, &format!("reopen {i}"));
        let of_batch = batch.iter().filter(|k| got.contains_key(*k)).count();
        assert!(of_batch == 0 || of_batch == batch.len(), "reopen {i}: {of_batch} of the batch's keys recovered");
        for (t, &n) in acked.iter().enumerate() {
            let kept = (0..n).all(|j| got.contains_key(format!("t{t}/{j:06}").as_bytes()));
            assert!(kept, "reopen {i}: writer {t} lost an acknowledged key (acked {n})");
        }
    }
}

#[test]
fn apply_failure_in_memory_mode_refuses_reads_and_writes() {
    let tree = TreeBuilder::new("unused").memory().open().unwrap();
    let mut rng = SplitMix64::new(5);
    let mut model = populate(&tree, &mut rng);
    let failure = run_until_fault(&tree, &mut model, Kind::Txn, Step::BeforeOp, 6, &mut rng);
    assert!(failure.err.to_string().contains("injected fault"), "{}", failure.err);
    assert!(is_poisoned(tree.put(b"later", b"x")));
    assert!(is_poisoned(tree.get(b"later")));
    assert!(is_poisoned(tree.range().into_iter().next().expect("an error")));
}

/// Errors found before the journal append (a missing rename source, an
/// existing destination, a failed guard) change nothing and poison nothing.
#[test]
fn error_before_journal_append_leaves_tree_usable() {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder(None)).unwrap();
    tree.put(b"a", b"1").unwrap();
    tree.put(b"b", b"2").unwrap();
    assert!(matches!(tree.rename(b"absent", b"c", false), Err(Error::NotFound)));
    assert!(matches!(tree.rename(b"a", b"b", false), Err(Error::DstExists)));
    assert!(!tree.atomic(|b| {
        b.assert_absent(b"a").put(b"c", b"3");
    })
    .unwrap());
    tree.put(b"c", b"3").unwrap();
    assert_eq!(tree.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    tree.checkpoint().unwrap();
    drop(tree);
    let got = reopened_contents(&disk, "reopen");
    assert_eq!(got.len(), 3);
}
