//! Durability through the public API: rename replay over a newer checkpoint,
//! a bounded WAL and bounded reopen time under sustained writes, clean close,
//! a tree far larger than its buffer pool, and the model test with clean and
//! crashed reopens.
//!
//! A "crash" is emulated by copying the store directory while its tree is
//! still open (after `sync()`, with no checkpointer running): the copy holds
//! what a killed process leaves on disk and no lock. Where a background
//! checkpointer must run, a child process is SIGKILLed instead.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holt_core::{Tree, TreeBuilder};

use crate::model::{assert_same, random_op};
use crate::rng::Rng;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// WAL segment size the engine seals at (`SEGMENT_BYTES_MAX_DEFAULT`).
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// A persistent tree with no background checkpointer: frames reach disk only
/// through `checkpoint()` and the clean close, so copies are quiescent.
pub fn open_quiet(dir: &Path) -> holt_core::Result<Tree> {
    TreeBuilder::new(dir).checkpoint_interval(None).open()
}

/// Copy every file under `src` into `dst` (created), recursively.
pub fn copy_store(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_store(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// What a process killed right now would leave: `tree.sync()`, then a copy.
pub fn crash_copy(tree: &Tree, src: &Path, dst: &Path) {
    tree.sync().expect("sync before the crash copy");
    copy_store(src, dst);
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

pub fn contents(tree: &Tree) -> Model {
    tree.scan_prefix(b"")
        .into_iter()
        .map(|e| match e.expect("scan succeeds") {
            holt_core::RangeEntry::Key { key, value } => (key, value),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Rewrite the CRC32C trailer of `MANIFEST` after patching its bytes
/// (doc/FORMAT.md: the last 4 bytes are the CRC of everything before them).
pub fn reseal_manifest(bytes: &mut [u8]) {
    let body = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

const MANIFEST_CHECKPOINT_LSN_OFFSET: usize = 32;

fn checkpoint_lsn(store: &Path) -> u64 {
    let m = std::fs::read(store.join("MANIFEST")).unwrap();
    u64::from_le_bytes(m[MANIFEST_CHECKPOINT_LSN_OFFSET..][..8].try_into().unwrap())
}

fn assert_renamed(store: &Path, state: &str) {
    let tree = open_quiet(store).unwrap_or_else(|e| panic!("{state}: reopen failed: {e}"));
    assert_eq!(tree.get(b"b").unwrap().as_deref(), Some(&b"0"[..]), "{state}: b holds the value renamed from a");
    assert_eq!(tree.get(b"a").unwrap().as_deref(), Some(&b"7"[..]), "{state}: a holds the later put");
    assert_eq!(tree.stats().unwrap().keys, 2, "{state}");
    tree.check_invariants().unwrap_or_else(|e| panic!("{state}: {e}"));
}

/// The original engine re-read a renamed value from the tree at replay, so
/// replaying `rename a->b` over frames that already held `a=7` gave `b=7`.
#[test]
fn rename_replayed_over_newer_frames_keeps_the_renamed_value() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let tree = open_quiet(&live).unwrap();
    tree.put(b"a", b"0").unwrap();
    tree.checkpoint().unwrap();
    tree.rename(b"a", b"b", true).unwrap();
    tree.put(b"a", b"7").unwrap();
    crash_copy(&tree, &live, &root.path().join("wal-only"));
    tree.checkpoint().unwrap();
    crash_copy(&tree, &live, &root.path().join("checkpointed"));
    drop(tree);
    // Frames of the second checkpoint published, but replay starting at the
    // first checkpoint's LSN: the rename and the put run again over frames
    // that already hold them (the state of a checkpoint whose WAL trim, and
    // whose advance of the replay start, were lost).
    let stale = root.path().join("stale-replay-start");
    copy_store(&root.path().join("checkpointed"), &stale);
    let first_lsn = checkpoint_lsn(&root.path().join("wal-only"));
    assert!(first_lsn < checkpoint_lsn(&stale), "the second checkpoint advanced the replay start");
    let mut m = std::fs::read(stale.join("MANIFEST")).unwrap();
    m[MANIFEST_CHECKPOINT_LSN_OFFSET..][..8].copy_from_slice(&first_lsn.to_le_bytes());
    reseal_manifest(&mut m);
    std::fs::write(stale.join("MANIFEST"), &m).unwrap();
    for state in ["wal-only", "checkpointed", "stale-replay-start", "live"] {
        assert_renamed(&root.path().join(state), state);
    }
}

#[test]
fn clean_close_persists_uncheckpointed_writes_and_replays_nothing() {
    let (mut rng, seed) = Rng::from_env("clean_close_replays_nothing");
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let mut model = Model::new();
    let tree = open_quiet(&live).unwrap();
    for i in 0..6_000u64 {
        let k = format!("d/{:03}/{i:06}", rng.below(50)).into_bytes();
        let v = vec![i as u8; 200 + rng.below(1200) as usize];
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    let wal_bytes_written = tree.stats().unwrap().wal_bytes;
    crash_copy(&tree, &live, &root.path().join("crashed"));
    drop(tree);

    let t = Instant::now();
    let crashed = open_quiet(&root.path().join("crashed")).unwrap();
    let crashed_open = t.elapsed();
    assert!(crashed.stats().unwrap().frames_dirty > 0, "seed {seed}: a crash before any checkpoint replays the WAL");
    assert_same(&crashed, &model, seed, 0);
    drop(crashed);

    let t = Instant::now();
    let tree = open_quiet(&live).unwrap();
    let clean_open = t.elapsed();
    let s = tree.stats().unwrap();
    eprintln!("clean open {clean_open:?} (crashed open {crashed_open:?}), wal {wal_bytes_written} -> {}", s.wal_bytes);
    assert_eq!((s.frames_dirty, s.cache_misses), (0, 0), "seed {seed}: open replayed records: {s:?}");
    assert!(s.frames > 1 && s.keys == model.len() as u64, "seed {seed}: {s:?}");
    assert!(s.wal_bytes <= SEGMENT_BYTES + (1 << 20), "seed {seed}: WAL beyond one segment after a clean close: {s:?}");
    assert!(clean_open < Duration::from_secs(1), "seed {seed}: clean open took {clean_open:?}");
    assert_same(&tree, &model, seed, 1);
    // Reads change nothing: closing again publishes no new checkpoint.
    let manifest = std::fs::read(live.join("MANIFEST")).unwrap();
    drop(tree);
    assert!(std::fs::read(live.join("MANIFEST")).unwrap() == manifest, "seed {seed}: an idle close rewrote the manifest");
    assert_same(&open_quiet(&live).unwrap(), &model, seed, 2);
}

fn big_key(i: u64) -> Vec<u8> {
    format!("D/{:04}/file-{i:07}", i / 64).into_bytes()
}

fn big_value(i: u64) -> Vec<u8> {
    let len = 1500 + (i * 7919 % 1500) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// Load a tree of at least `frames_min` frames through a pool of `pool`
/// frames, then read every key back, before and after a reopen.
/// `frames_cached` is sampled after each checkpoint and during the reads and
/// must stay at most `cached_max`.
fn tree_larger_than_pool(pool: usize, frames_min: u64, cached_max: u64) {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        TreeBuilder::new(dir.path())
            .buffer_pool_size(pool)
            .checkpoint_interval(Some(Duration::from_millis(20)))
            .checkpoint_dirty_frames(4)
            .open()
            .unwrap()
    };
    let tree = open();
    let mut n = 0;
    loop {
        for _ in 0..2_000 {
            tree.put(&big_key(n), &big_value(n)).unwrap();
            n += 1;
        }
        tree.checkpoint().unwrap();
        let s = tree.stats().unwrap();
        assert!(s.frames_cached <= cached_max, "pool {pool}: after a checkpoint at {n} keys: {s:?}");
        if s.frames >= frames_min {
            break;
        }
    }
    let check_all = |tree: &Tree, what: &str| {
        for i in 0..n {
            let got = tree.get(&big_key(i)).unwrap_or_else(|e| panic!("{what}: key {i}: {e}"));
            assert!(got == Some(big_value(i)), "{what}: key {i} has a wrong value");
            if i % 1000 == 0 {
                let s = tree.stats().unwrap();
                assert!(s.frames_cached <= cached_max, "pool {pool}: {what}, key {i}: {s:?}");
            }
        }
    };
    check_all(&tree, "before reopen");
    let s = tree.stats().unwrap();
    eprintln!("pool {pool}: {n} keys, {s:?}");
    assert!(s.evictions > 0 && s.cache_misses > 0, "frames went back to disk and were read again: {s:?}");
    drop(tree);
    let tree = open();
    check_all(&tree, "after reopen");
    let s = tree.stats().unwrap();
    assert!(s.frames >= frames_min && s.evictions > 0, "{s:?}");
    tree.check_invariants().unwrap();
}

/// The cache does not grow with the tree. It may exceed the budget by the
/// dirty frames a checkpoint has not written yet, so the bound is loose.
#[test]
fn tree_far_larger_than_the_pool_reads_back_with_bounded_cache() {
    tree_larger_than_pool(16, 200, 3 * 16);
}

/// After checkpoints clean the frames, the cache returns to its budget
/// (plus a few frames in flight), even with the smallest pool.
#[test]
fn cache_returns_to_the_pool_budget_after_checkpoints() {
    let pool = holt_core::POOL_FRAMES_MIN;
    tree_larger_than_pool(pool, 40, pool as u64 + 4);
}

/// Model-checked random ops on a persistent tree, with clean reopens (drop,
/// open) and crashed reopens (sync, copy, forget the old tree, open the copy).
#[test]
fn random_ops_survive_clean_and_crashed_reopens() {
    let (mut rng, seed) = Rng::from_env("random_ops_survive_reopens");
    let root = tempfile::tempdir().unwrap();
    let open = |dir: &Path| {
        TreeBuilder::new(dir).checkpoint_interval(None).buffer_pool_size(16).open().unwrap_or_else(|e| {
            panic!("seed {seed}: open {} failed: {e}", dir.display());
        })
    };
    let mut dir: PathBuf = root.path().join("gen-0");
    let mut tree = open(&dir);
    let mut model = Model::new();
    for _ in 0..4_000 {
        let k = rng.bytes(&[0x00, b'/', b'a', b'b', 0xFF], 7);
        let v = vec![rng.next() as u8; 1024 + rng.below(2048) as usize];
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    let (mut clean, mut crashed) = (0, 0);
    for step in 0..4_000 {
        random_op(&tree, &mut model, &mut rng, seed, step);
        match rng.below(1000) {
            0..=9 => tree.checkpoint().unwrap(),
            10..=14 => {
                drop(tree);
                tree = open(&dir);
                clean += 1;
                assert_same(&tree, &model, seed, step);
            }
            15..=19 => {
                let next = root.path().join(format!("gen-{}", clean + crashed + 1));
                crash_copy(&tree, &dir, &next);
                // The crashed process never closes: its engine (and a thread
                // if any) leak, as they would in a killed process.
                std::mem::forget(tree);
                dir = next;
                tree = open(&dir);
                crashed += 1;
                assert_same(&tree, &model, seed, step);
            }
            _ => {}
        }
    }
    eprintln!("seed {seed}: {clean} clean and {crashed} crashed reopens");
    assert_same(&tree, &model, seed, usize::MAX);
    drop(tree);
    assert_same(&open(&dir), &model, seed, usize::MAX);
}

/// Large batches of puts and deletes are applied in key order but
/// journaled in op order: replay (op order) after a crash and a clean
/// reopen (checkpointed frames) both find what the batches meant.
#[test]
fn key_ordered_batches_replay_to_the_same_tree() {
    let (mut rng, seed) = Rng::from_env("key_ordered_batches_replay_to_the_same_tree");
    let root = tempfile::tempdir().unwrap();
    let (dir, copy) = (root.path().join("live"), root.path().join("crashed"));
    let tree = open_quiet(&dir).unwrap();
    let mut model = Model::new();
    for round in 0..6 {
        let mut ops = Vec::new();
        for _ in 0..5_000 {
            let k = format!("D/{:03}/f{:05}", rng.below(100), rng.below(20_000)).into_bytes();
            let v = (rng.below(5) != 0).then(|| vec![rng.next() as u8; 1 + rng.below(300) as usize]);
            match &v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(&k),
            };
            ops.push((k, v));
        }
        tree.txn(|b| {
            for (k, v) in &ops {
                match v {
                    Some(v) => b.put(k, v),
                    None => b.delete(k),
                };
            }
        })
        .unwrap();
        if round == 2 {
            tree.checkpoint().unwrap();
        }
    }
    assert_same(&tree, &model, seed, 0);
    crash_copy(&tree, &dir, &copy);
    drop(tree);
    assert_same(&open_quiet(&copy).unwrap(), &model, seed, 1);
    assert_same(&open_quiet(&dir).unwrap(), &model, seed, 2);
}

const SUSTAIN_DIR: &str = "HOLT_SUSTAIN_DIR";
const SUSTAIN_MIB: &str = "HOLT_SUSTAIN_MIB";
const SUSTAIN_WAL_TARGET: u64 = 4 << 20;
const SUSTAIN_KEYS: &str = "HOLT_SUSTAIN_KEYS";
const SUSTAIN_KEYS_DEFAULT: u64 = 2048;
const SUSTAIN_VALUE_BYTES: usize = 4096;

/// Child side of the sustained-write test: write `HOLT_SUSTAIN_MIB` MiB of
/// updates over `HOLT_SUSTAIN_KEYS` keys, sampling the WAL size, report the
/// maxima, then keep writing until killed.
#[test]
fn sustained_writes_child() {
    let Ok(dir) = std::env::var(SUSTAIN_DIR) else { return };
    let mib: u64 = std::env::var(SUSTAIN_MIB).unwrap().parse().unwrap();
    let dir = PathBuf::from(dir);
    let keys: u64 = std::env::var(SUSTAIN_KEYS).unwrap().parse().unwrap();
    let tree = TreeBuilder::new(&dir)
        .wal_bytes_target(SUSTAIN_WAL_TARGET)
        .checkpoint_interval(Some(Duration::from_millis(50)))
        .open()
        .unwrap();
    let (mut stats_max, mut dir_max, mut written) = (0, 0, 0u64);
    for i in 0u64.. {
        let mut v = vec![(i % 251) as u8; SUSTAIN_VALUE_BYTES];
        v[..8].copy_from_slice(&i.to_le_bytes());
        tree.put(format!("k/{:05}", i * 7 % keys).as_bytes(), &v).unwrap();
        written += v.len() as u64;
        if i % 32 == 0 {
            stats_max = stats_max.max(tree.stats().unwrap().wal_bytes);
            dir_max = dir_max.max(dir_bytes(&dir.join("wal")));
        }
        if written >= (mib << 20) && written - (v.len() as u64) < (mib << 20) {
            let checkpoints = tree.stats().unwrap().checkpoints;
            println!("MAX {stats_max} {dir_max} {checkpoints}");
            println!("DONE");
        }
    }
}

struct Sustained {
    wal_stats_max: u64,
    wal_dir_max: u64,
    checkpoints: u64,
    reopen: Duration,
}

/// Run the child for `mib` MiB of history over `keys` keys, SIGKILL it while
/// it keeps writing, and time the reopen (which replays what no checkpoint
/// covers): the faster of two opens of copies of the killed store.
fn sustained_run(mib: u64, keys: u64) -> Sustained {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durability::sustained_writes_child", "--nocapture", "--test-threads=1"])
        .env(SUSTAIN_DIR, &dir)
        .env(SUSTAIN_MIB, mib.to_string())
        .env(SUSTAIN_KEYS, keys.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child starts");
    let mut maxima = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest may print "test ... " on the same line before the output.
        if let Some((_, rest)) = line.split_once("MAX ") {
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            maxima = Some((v[0], v[1], v[2]));
        }
        if line.ends_with("DONE") {
            break;
        }
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let (wal_stats_max, wal_dir_max, checkpoints) = maxima.expect("child reported its WAL maxima");
    let mut reopen = Duration::MAX;
    for copy in ["copy-0", "copy-1"] {
        let copy = root.path().join(copy);
        copy_store(&dir, &copy);
        let t = Instant::now();
        let tree = TreeBuilder::new(&copy).open().expect("reopen after SIGKILL");
        reopen = reopen.min(t.elapsed());
        let s = tree.stats().unwrap();
        assert!(s.keys == keys, "every key survives: {s:?}");
    }
    Sustained { wal_stats_max, wal_dir_max, checkpoints, reopen }
}

fn report(mib: u64, r: &Sustained) {
    eprintln!(
        "{mib} MiB: WAL max {} (stats) {} (files), {} checkpoints, reopen {:?}",
        r.wal_stats_max, r.wal_dir_max, r.checkpoints, r.reopen
    );
}

/// The WAL does not grow with history, nor does reopen time. The bound
/// allows one segment more than target + 2 segments: the WAL also holds
/// what writers add while a checkpoint runs (see the next test).
#[test]
fn sustained_writes_keep_the_wal_and_reopen_time_bounded() {
    let bound = SUSTAIN_WAL_TARGET + 3 * SEGMENT_BYTES;
    let short = sustained_run(20, SUSTAIN_KEYS_DEFAULT);
    let long = sustained_run(200, SUSTAIN_KEYS_DEFAULT);
    for (mib, r) in [(20, &short), (200, &long)] {
        report(mib, r);
        assert!(r.wal_stats_max <= bound && r.wal_dir_max <= bound, "{mib} MiB: WAL over {bound} bytes");
    }
    assert!(long.checkpoints > 3, "the checkpointer ran under load");
    let limit = short.reopen * 3 + Duration::from_millis(200);
    assert!(long.reopen < limit, "reopen after 200 MiB took {:?}, after 20 MiB {:?}", long.reopen, short.reopen);
}

/// Slow checkpoints (64 MiB live, ~150 frames each) must not let the WAL
/// outgrow its bound: writers past twice the target wait for a checkpoint.
#[test]
fn wal_stays_near_its_target_when_checkpoints_are_slow() {
    let bound = SUSTAIN_WAL_TARGET + 2 * SEGMENT_BYTES;
    let r = sustained_run(200, 16_384);
    report(200, &r);
    assert!(r.wal_stats_max <= bound && r.wal_dir_max <= bound, "WAL over {bound} bytes");
}
