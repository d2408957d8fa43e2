//! Persistent mode through the public API: reopen, clean close, locking,
//! and crash tests that SIGKILL a child process mid-workload.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holt_core::{Error, Tree, TreeBuilder};

use crate::model::{assert_same, tree_range};
use crate::rng::Rng;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn open(dir: &Path, sync: bool) -> Tree {
    TreeBuilder::new(dir)
        .wal_sync_on_commit(sync)
        .checkpoint_interval(Some(Duration::from_millis(20)))
        .checkpoint_dirty_frames(8)
        .buffer_pool_size(16)
        .open()
        .expect("store opens")
}

fn contents(tree: &Tree) -> Model {
    tree_range(tree, b"", None, None)
        .into_iter()
        .map(|e| match e {
            holt_core::RangeEntry::Key { key, value } => (key, value),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn reopen_after_clean_close_keeps_everything_and_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let tree = open(dir.path(), false);
        for i in 0..30_000u32 {
            let k = format!("D/{:04}/name-{i}", i % 300).into_bytes();
            let v = vec![(i % 251) as u8; 10 + (i % 1000) as usize];
            tree.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        tree.rename(b"D/0000/name-0", b"D/0001/moved", false).unwrap();
        let v = model.remove(b"D/0000/name-0".as_slice()).unwrap();
        model.insert(b"D/0001/moved".to_vec(), v);
    }
    let tree = open(dir.path(), false);
    let s = tree.stats().unwrap();
    assert_eq!(s.keys, model.len() as u64);
    assert!(s.frames > 16, "tree larger than the pool: {s:?}");
    assert_same(&tree, &model, 0, 0);
    assert!(s.wal_bytes < 64 << 20);
}

#[test]
fn second_open_of_a_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), false);
    match TreeBuilder::new(dir.path()).open() {
        Err(Error::Locked { path }) => assert!(path.starts_with(dir.path())),
        other => panic!("expected Locked, got {other:?}"),
    }
}

/// The deterministic workload both the crashing child and the checking
/// parent run: op `i` of seed `s` is the same in both.
fn workload_op(rng: &mut Rng, tree: Option<&Tree>, model: &mut Model) {
    let key = |rng: &mut Rng| format!("k/{:03}/{:05}", rng.below(40), rng.below(20_000)).into_bytes();
    let k = key(rng);
    let v: Vec<u8> = vec![rng.next() as u8; rng.below(1500) as usize];
    match rng.below(6) {
        0 | 1 => {
            if let Some(t) = tree {
                t.put(&k, &v).unwrap();
            }
            model.insert(k, v);
        }
        2 => {
            if let Some(t) = tree {
                t.delete(&k).unwrap();
            }
            model.remove(&k);
        }
        3 => {
            let dst = key(rng);
            let r = tree.map(|t| t.rename(&k, &dst, true));
            match model.remove(&k) {
                Some(val) => {
                    assert!(r.is_none_or(|r| r.is_ok()));
                    model.insert(dst, val);
                }
                None => assert!(r.is_none_or(|r| matches!(r, Err(Error::NotFound)))),
            }
        }
        4 => {
            let k2 = key(rng);
            if let Some(t) = tree {
                t.txn(|b| {
                    b.put(&k, &v).delete(&k2);
                })
                .unwrap();
            }
            model.insert(k.clone(), v);
            model.remove(&k2);
        }
        _ => {
            let fresh = !model.contains_key(&k);
            if let Some(t) = tree {
                assert_eq!(t.atomic(|b| { b.put_if_absent(&k, &v); }).unwrap(), fresh);
            }
            if fresh {
                model.insert(k, v);
            }
        }
    }
}

/// Child side: run the workload forever, printing the count of
/// acknowledged ops after each one.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("HOLT_CRASH_DIR") else { return };
    let seed: u64 = std::env::var("HOLT_CRASH_SEED").unwrap().parse().unwrap();
    let sync = std::env::var("HOLT_CRASH_SYNC").unwrap() == "1";
    let tree = open(Path::new(&dir), sync);
    let mut model = contents(&tree);
    let mut rng = Rng::new(seed);
    let mut out = std::io::stdout().lock();
    for i in 1u64.. {
        workload_op(&mut rng, Some(&tree), &mut model);
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

fn run_child_and_kill(dir: &Path, seed: u64, sync: bool, after: Duration) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "persist::crash_child", "--nocapture", "--test-threads=1"])
        .env("HOLT_CRASH_DIR", dir)
        .env("HOLT_CRASH_SEED", seed.to_string())
        .env("HOLT_CRASH_SYNC", if sync { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.with_extension("child-stderr")).unwrap())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                acked = n.parse().unwrap();
            }
        }
        acked
    });
    let start = Instant::now();
    while start.elapsed() < after {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    reader.join().unwrap()
}

fn crash_rounds(sync: bool) {
    let (mut rng, seed) = Rng::from_env(if sync { "crash_rounds_sync" } else { "crash_rounds_ack_to_os" });
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    for round in 0..6 {
        let child_seed = rng.next();
        let acked = run_child_and_kill(dir.path(), child_seed, sync, Duration::from_millis(300 + rng.below(700)));
        let mut ops = Rng::new(child_seed);
        for _ in 0..acked {
            workload_op(&mut ops, None, &mut model);
        }
        let mut in_flight = model.clone();
        workload_op(&mut ops, None, &mut in_flight);
        let tree = match TreeBuilder::new(dir.path()).wal_sync_on_commit(sync).buffer_pool_size(16).open() {
            Ok(t) => t,
            Err(e) => {
                let kept = dir.keep();
                panic!("seed {seed} round {round}: reopen failed: {e} (store kept at {})", kept.display());
            }
        };
        let got = contents(&tree);
        let ctx = format!("seed {seed} round {round} ({acked} acked)");
        if got == in_flight && got != model {
            model = in_flight;
        }
        assert!(got == model, "{ctx}: recovered state differs from every acknowledged op");
        tree.check_invariants().unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let log = std::fs::read_to_string(dir.path().with_extension("child-stderr")).unwrap_or_default();
        assert!(acked > 0, "{ctx}: the child acknowledged nothing; its stderr:\n{log}");
    }
}

#[test]
fn sigkill_loses_no_acknowledged_op_when_acks_wait_for_the_os() {
    crash_rounds(false);
}

#[test]
fn sigkill_loses_no_acknowledged_op_when_acks_wait_for_fsync() {
    crash_rounds(true);
}
