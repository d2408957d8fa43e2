//! Model-based tests: random operation sequences checked against a
//! `BTreeMap` after every operation.

use std::collections::BTreeMap;

use holt_core::{AtomicBatch, Batch, RangeEntry, Tree, TreeBuilder};

use crate::rng::Rng;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys from a tiny alphabet with NUL, '/' and 0xFF so that prefixes,
/// shared paths and keys that are prefixes of each other are common.
const ALPHABET: &[u8] = &[0x00, b'/', b'a', b'b', 0xFF];

pub fn memory_tree() -> Tree {
    TreeBuilder::new("unused").memory().open().expect("memory tree opens")
}

/// What a range scan must return, computed from the model.
pub fn model_range(model: &Model, prefix: &[u8], after: Option<&[u8]>, delim: Option<u8>) -> Vec<RangeEntry> {
    let mut out: Vec<RangeEntry> = Vec::new();
    for (k, v) in model.range(prefix.to_vec()..) {
        if !k.starts_with(prefix) {
            break;
        }
        if after.is_some_and(|a| k.as_slice() <= a) {
            continue;
        }
        let cut = delim.and_then(|d| k[prefix.len()..].iter().position(|&b| b == d));
        match cut {
            Some(i) => {
                let cp = k[..prefix.len() + i + 1].to_vec();
                if after.is_some_and(|a| cp.as_slice() <= a) {
                    continue;
                }
                if out.last().is_some_and(|e| e.key() == cp.as_slice()) {
                    continue;
                }
                out.push(RangeEntry::CommonPrefix(cp));
            }
            None => out.push(RangeEntry::Key { key: k.clone(), value: v.clone() }),
        }
    }
    out
}

pub fn tree_range(tree: &Tree, prefix: &[u8], after: Option<&[u8]>, delim: Option<u8>) -> Vec<RangeEntry> {
    tree_range_with(tree, prefix, after, delim, false)
}

pub fn tree_range_with(tree: &Tree, prefix: &[u8], after: Option<&[u8]>, delim: Option<u8>, keys_only: bool) -> Vec<RangeEntry> {
    let mut b = tree.scan_prefix(prefix);
    if let Some(a) = after {
        b = b.start_after(a);
    }
    if let Some(d) = delim {
        b = b.delimiter(d);
    }
    if keys_only {
        b = b.keys_only();
    }
    b.into_iter().collect::<Result<_, _>>().expect("scan succeeds")
}

/// A keys-only scan's view of an entry.
pub fn without_value(e: RangeEntry) -> RangeEntry {
    match e {
        RangeEntry::Key { key, .. } => RangeEntry::Key { key, value: Vec::new() },
        group => group,
    }
}

pub fn assert_same(tree: &Tree, model: &Model, seed: u64, step: usize) {
    let all = tree_range(tree, b"", None, None);
    let expect = model_range(model, b"", None, None);
    assert_eq!(all.len(), expect.len(), "seed {seed} step {step}: key count");
    assert!(all == expect, "seed {seed} step {step}: full scan differs");
    tree.check_invariants().unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(2) { 1000 + rng.below(64 * 1024 - 1000) } else { rng.below(24) };
    let fill = rng.next() as u8;
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// One random operation applied to both the tree and the model.
pub fn random_op(tree: &Tree, model: &mut Model, rng: &mut Rng, seed: u64, step: usize) {
    let key = rng.bytes(ALPHABET, 7);
    let ctx = |what: &str| format!("seed {seed} step {step}: {what} {key:?}");
    match rng.below(11) {
        0 | 1 => {
            let v = value(rng);
            tree.put(&key, &v).unwrap();
            model.insert(key.clone(), v);
        }
        2 => {
            let v = value(rng);
            assert_eq!(tree.insert(&key, &v).unwrap(), model.insert(key.clone(), v), "{}", ctx("insert"));
        }
        3 => assert_eq!(tree.delete(&key).unwrap(), model.remove(&key).is_some(), "{}", ctx("delete")),
        4 => assert_eq!(tree.remove(&key).unwrap(), model.remove(&key), "{}", ctx("remove")),
        5 => rename(tree, model, rng, &key, &ctx("rename")),
        6 => txn(tree, model, rng, &ctx("txn")),
        7 => atomic(tree, model, rng, &ctx("atomic")),
        8 | 9 => {
            let after = rng.chance(50).then(|| rng.bytes(ALPHABET, 5));
            let delim = rng.chance(60).then(|| ALPHABET[[0, 1, 1, 4][rng.below(4) as usize]]);
            let prefix = &key[..key.len().min(rng.below(3) as usize)];
            let keys_only = rng.chance(20);
            let got = tree_range_with(tree, prefix, after.as_deref(), delim, keys_only);
            let mut want = model_range(model, prefix, after.as_deref(), delim);
            if keys_only {
                want = want.into_iter().map(without_value).collect();
            }
            assert!(got == want, "{} prefix {prefix:?} after {after:?} delim {delim:?}", ctx("range"));
        }
        _ => assert_eq!(tree.get(&key).unwrap().as_ref(), model.get(&key), "{}", ctx("get")),
    }
}

fn rename(tree: &Tree, model: &mut Model, rng: &mut Rng, src: &[u8], ctx: &str) {
    let dst = rng.bytes(ALPHABET, 7);
    let force = rng.chance(50);
    let expect = match (model.get(src).cloned(), model.contains_key(&dst)) {
        (None, _) => Err("not found"),
        (Some(_), true) if !force && src != dst.as_slice() => Err("exists"),
        (Some(v), _) => {
            model.remove(src);
            model.insert(dst.clone(), v);
            Ok(())
        }
    };
    match (tree.rename(src, &dst, force), expect) {
        (Ok(()), Ok(())) => {}
        (Err(holt_core::Error::NotFound), Err("not found")) => {}
        (Err(holt_core::Error::DstExists), Err("exists")) => {}
        (got, want) => panic!("{ctx}: rename to {dst:?} force {force}: got {got:?}, want {want:?}"),
    }
}

fn txn(tree: &Tree, model: &mut Model, rng: &mut Rng, ctx: &str) {
    let mut after = model.clone();
    let mut ok = true;
    let mut ops = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let k = rng.bytes(ALPHABET, 6);
        match rng.below(3) {
            0 => {
                let v = value(rng);
                after.insert(k.clone(), v.clone());
                ops.push((0, k, v));
            }
            1 => {
                after.remove(&k);
                ops.push((1, k, vec![]));
            }
            _ => {
                let d = rng.bytes(ALPHABET, 6);
                match after.remove(&k) {
                    Some(v) => {
                        after.insert(d.clone(), v);
                    }
                    None => ok = false,
                }
                ops.push((2, k, d));
            }
        }
    }
    let r = tree.txn(|b| {
        for (kind, k, v) in &ops {
            match kind {
                0 => b.put(k, v),
                1 => b.delete(k),
                _ => b.rename(k, v, true),
            };
        }
    });
    assert_eq!(r.is_ok(), ok, "{ctx}: {ops:?} gave {r:?}");
    if ok {
        *model = after;
    }
}

fn atomic(tree: &Tree, model: &mut Model, rng: &mut Rng, ctx: &str) {
    let k = rng.bytes(ALPHABET, 6);
    let other = rng.bytes(ALPHABET, 6);
    let prefix = rng.bytes(ALPHABET, 2);
    let version = tree.get_record(&k).unwrap().map(|r| r.version);
    let stale = rng.chance(30);
    let guard_kind = rng.below(5);
    let holds = match guard_kind {
        0 => !model.contains_key(&k),
        1 => model.contains_key(&k),
        2 => model.range(prefix.clone()..).next().is_none_or(|(x, _)| !x.starts_with(&prefix)),
        3 => version.is_some() && !stale,
        _ => !model.contains_key(&k),
    };
    let v = value(rng);
    let applied = tree
        .atomic(|b| {
            match guard_kind {
                0 => b.assert_absent(&k).put(&other, &v),
                1 => b.assert_exists(&k).delete(&k).put(&other, &v),
                2 => b.assert_prefix_empty(&prefix).put(&other, &v),
                3 => b.compare_and_put(&k, version.unwrap_or(0) + u64::from(stale), &v),
                _ => b.put_if_absent(&k, &v),
            };
        })
        .unwrap();
    assert_eq!(applied, holds, "{ctx}: guard {guard_kind}");
    if holds {
        match guard_kind {
            0 | 2 => {
                model.insert(other, v);
            }
            1 => {
                model.remove(&k);
                model.insert(other, v);
            }
            _ => {
                model.insert(k, v);
            }
        }
    }
}

#[test]
fn random_ops_match_btreemap() {
    let (mut rng, seed) = Rng::from_env("random_ops_match_btreemap");
    for round in 0..4 {
        let tree = memory_tree();
        let mut model = Model::new();
        if round >= 2 {
            // Preload enough 2 KiB values to spread the keys over many frames,
            // so ops cross links, spill and land in different frames.
            for _ in 0..20_000 {
                let k = rng.bytes(ALPHABET, 7);
                let v = vec![rng.next() as u8; 2048];
                tree.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            assert!(tree.stats().unwrap().frames > 20, "seed {seed}: preload spans many frames");
        }
        for step in 0..3000 {
            random_op(&tree, &mut model, &mut rng, seed, round * 10_000 + step);
            if step % 250 == 0 {
                assert_same(&tree, &model, seed, step);
            }
        }
        assert_same(&tree, &model, seed, usize::MAX);
    }
}

/// Filesystem-shaped keys: `D/<parent>/<name>` style, many per directory.
fn fs_key(dir: u64, name: u64) -> Vec<u8> {
    let mut k = b"D/".to_vec();
    k.extend_from_slice(&dir.to_be_bytes());
    k.push(b'/');
    k.extend_from_slice(format!("file-{name:06}.txt").as_bytes());
    k
}

#[test]
fn many_frames_with_large_values_spill_compact_and_merge() {
    let (mut rng, seed) = Rng::from_env("many_frames_with_large_values");
    let tree = memory_tree();
    let mut model = Model::new();
    for i in 0..200_000u64 {
        let k = fs_key(i % 997, i);
        let v = (i as u32).to_le_bytes().repeat(1 + (i % 8) as usize);
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    // Many 64 KiB values under one hot prefix: the case that made the
    // original engine fail with "no subtree to migrate".
    for i in 0..600u64 {
        let k = format!("hot/{:05}", rng.below(100_000)).into_bytes();
        let v = vec![(i % 251) as u8; 64 * 1024];
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    assert_same(&tree, &model, seed, 1);
    let grown = tree.stats().unwrap();
    eprintln!("after load: {grown:?}");
    assert!(grown.frames > 100, "expected many frames, got {grown:?}");
    assert!(grown.spills > 0, "{grown:?}");
    let keys: Vec<_> = model.keys().cloned().collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 10 != 0 {
            assert!(tree.delete(k).unwrap());
            model.remove(k);
        }
    }
    for _ in 0..200 {
        tree.compact().unwrap();
    }
    assert_same(&tree, &model, seed, 2);
    let shrunk = tree.stats().unwrap();
    eprintln!("after deletes and compaction: {shrunk:?}");
    assert!(shrunk.merges > 0 && shrunk.compactions > 0, "{shrunk:?}");
    assert!(shrunk.frames < grown.frames, "merges free frames: {grown:?} -> {shrunk:?}");
    for (k, v) in &model {
        assert_eq!(tree.get(k).unwrap().as_ref(), Some(v));
    }
}

#[test]
fn keys_that_prefix_each_other_coexist() {
    let tree = memory_tree();
    let keys: [&[u8]; 6] = [b"", b"a", b"a\0", b"a\0b", b"ab", b"a\0\0"];
    for (i, k) in keys.iter().enumerate() {
        tree.put(k, &[i as u8]).unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(tree.get(k).unwrap(), Some(vec![i as u8]), "{k:?}");
    }
    let order: Vec<_> = tree_range(&tree, b"", None, None).iter().map(|e| e.key().to_vec()).collect();
    let mut sorted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    sorted.sort();
    assert_eq!(order, sorted);
    tree.check_invariants().unwrap();
}

/// Rollup listings of object-store-shaped keys spread over many frames
/// (2 KiB values), through creates and deletes of whole groups and of
/// single keys, with `start_after` before, at and inside groups; every
/// listing checked against the model.
#[test]
fn rollup_listings_over_many_frames_match_btreemap() {
    let (mut rng, seed) = Rng::from_env("rollup_listings_over_many_frames_match_btreemap");
    let tree = memory_tree();
    let mut model = Model::new();
    let path = |rng: &mut Rng| {
        let (top, sub) = (rng.below(4), rng.below(40));
        let file = rng.below(300);
        match rng.below(10) {
            0 => format!("t{top}/s{sub:02}").into_bytes(),
            1 => format!("t{top}/s{sub:02}/").into_bytes(),
            2 => format!("t{top}/s{sub:02}\0{file}").into_bytes(),
            3 => format!("t{top}/s{sub:02}/{file:03}/deeper/{file}").into_bytes(),
            _ => format!("t{top}/s{sub:02}/{file:03}").into_bytes(),
        }
    };
    for _ in 0..12_000 {
        let k = path(&mut rng);
        let v = vec![rng.next() as u8; 2048];
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    assert!(tree.stats().unwrap().frames > 30, "seed {seed}: the groups span many frames");
    for step in 0..400 {
        match rng.below(4) {
            0 => {
                // Empty one subdirectory (its frames keep empty entries).
                let dir = format!("t{}/s{:02}/", rng.below(4), rng.below(40)).into_bytes();
                let doomed: Vec<_> = model.range(dir.clone()..).take_while(|(k, _)| k.starts_with(&dir)).map(|(k, _)| k.clone()).collect();
                for k in doomed {
                    assert!(tree.delete(&k).unwrap());
                    model.remove(&k);
                }
            }
            1 => {
                let k = path(&mut rng);
                tree.put(&k, b"v").unwrap();
                model.insert(k, b"v".to_vec());
            }
            _ => {}
        }
        let prefix = [&b""[..], b"t1/", b"t2/s1", b"t3/s05/"][rng.below(4) as usize];
        let after = match rng.below(4) {
            0 => None,
            1 => Some(path(&mut rng)),
            2 => model.keys().nth(rng.below(model.len() as u64) as usize).cloned(),
            _ => Some(format!("t{}/s{:02}/", rng.below(4), rng.below(40)).into_bytes()),
        };
        let delim = Some([b'/', 0][rng.below(2) as usize]);
        let got = tree_range(&tree, prefix, after.as_deref(), delim);
        let want = model_range(&model, prefix, after.as_deref(), delim);
        assert!(got == want, "seed {seed} step {step}: prefix {prefix:?} after {after:?} delim {delim:?}");
    }
    assert_same(&tree, &model, seed, usize::MAX);
}

/// A batch's ops, each (0 put, 1 delete or 2 rename; the key or the
/// source; the value or the destination).
type BatchOps = Vec<(u8, Vec<u8>, Vec<u8>)>;

/// How `random_batch` draws each op: a key from `key`, values of 1 to
/// `value_max` bytes, and out of `of` draws `deletes` deletes, one put of
/// a key the batch wrote earlier, one rename of the next key present (when
/// `renames`), puts of the key drawn otherwise.
struct Mix<'k> {
    key: &'k dyn Fn(&mut Rng) -> Vec<u8>,
    value_max: u64,
    deletes: u64,
    of: u64,
    renames: bool,
}

/// `size` ops drawn as `mix` says, applied one by one to `after`.
fn random_batch(rng: &mut Rng, after: &mut Model, size: usize, mix: &Mix<'_>) -> BatchOps {
    let mut ops: BatchOps = Vec::with_capacity(size);
    for _ in 0..size {
        let k = (mix.key)(rng);
        let draw = rng.below(mix.of);
        if draw < mix.deletes {
            after.remove(&k);
            ops.push((1, k, Vec::new()));
        } else if draw == mix.deletes && !ops.is_empty() {
            let (_, again, _) = ops[rng.below(ops.len() as u64) as usize].clone();
            let v = vec![rng.next() as u8; 1 + rng.below(mix.value_max) as usize];
            after.insert(again.clone(), v.clone());
            ops.push((0, again, v));
        } else if draw == mix.deletes + 1 && mix.renames {
            if let Some(src) = after.range(k.clone()..).next().map(|(s, _)| s.clone()) {
                let dst = (mix.key)(rng);
                let v = after.remove(&src).expect("src is in the model");
                after.insert(dst.clone(), v);
                ops.push((2, src, dst));
            }
        } else {
            let v = vec![rng.next() as u8; 1 + rng.below(mix.value_max) as usize];
            after.insert(k.clone(), v.clone());
            ops.push((0, k, v));
        }
    }
    ops
}

/// The batches under construction `add_ops` fills: plain and guarded.
trait Builds {
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn delete(&mut self, key: &[u8]);
    fn rename(&mut self, src: &[u8], dst: &[u8]);
}

/// `Builds` through the type's own methods of the same names.
macro_rules! builds {
    ($t:ty) => {
        impl Builds for $t {
            fn put(&mut self, key: &[u8], value: &[u8]) {
                <$t>::put(self, key, value);
            }
            fn delete(&mut self, key: &[u8]) {
                <$t>::delete(self, key);
            }
            fn rename(&mut self, src: &[u8], dst: &[u8]) {
                <$t>::rename(self, src, dst, true);
            }
        }
    };
}
builds!(Batch);
builds!(AtomicBatch);

fn add_ops(b: &mut impl Builds, ops: &BatchOps) {
    for (kind, k, v) in ops {
        match kind {
            0 => b.put(k, v),
            1 => b.delete(k),
            _ => b.rename(k, v),
        }
    }
}

/// Batches of 64 to 400 ops, at and above the size from which a batch is
/// applied in key order (`write::KEY_ORDER_OPS_MIN`): each op lands through
/// its key's rank among the footprint's keys, so a key written twice,
/// a delete of an absent key (resolved away: no log op, so later ops'
/// ranks must still line up), a guard on a key the batch also writes,
/// and a rename (the whole batch in op order) must all come out as if
/// applied one by one. Values up to 2000 bytes spread the keys over tens
/// of frames, so a key landing through another key's hint goes wrong.
#[test]
fn key_ordered_small_batches_with_guards_match_btreemap() {
    let (mut rng, seed) = Rng::from_env("key_ordered_small_batches_with_guards_match_btreemap");
    let tree = memory_tree();
    let mut model = Model::new();
    let key = |rng: &mut Rng| format!("D/{:02}/f{:04}", rng.below(40), rng.below(400)).into_bytes();
    for round in 0..200 {
        let size = 64 + rng.below(337) as usize;
        let mut after = model.clone();
        let mix = Mix { key: &key, value_max: 2000, deletes: 2, of: 8, renames: round % 5 == 4 };
        let ops = random_batch(&mut rng, &mut after, size, &mix);
        // Every other round, a guard on a key some op of the batch
        // writes (present before the batch, where one is): it holds
        // exactly when the key is present.
        let guarded = (round % 2 == 1).then(|| {
            let present = ops.iter().find(|(_, k, _)| model.contains_key(k));
            present.unwrap_or(&ops[0]).1.clone()
        });
        let holds = guarded.as_ref().is_none_or(|k| model.contains_key(k));
        let applied = tree
            .atomic(|b| {
                if let Some(k) = &guarded {
                    b.assert_exists(k);
                }
                add_ops(b, &ops);
            })
            .unwrap_or_else(|e| panic!("seed {seed}: round {round}: {e}"));
        assert_eq!(applied, holds, "seed {seed}: round {round}: the guard on {guarded:?}");
        if applied {
            model = after;
        }
        assert_same(&tree, &model, seed, round);
    }
}

/// Batches of 10k and 50k ops (puts over new and existing keys, deletes,
/// the same key several times, with and without renames) apply whole, as
/// if in op order: the tree matches a model that applied them one by one.
/// Batches without renames are applied in key order (`write::key_order`).
/// Each op finds its hint through its key's rank from the footprint's
/// sort, with no per-op search, so these run in the time of that sort.
#[test]
fn batches_of_10k_and_50k_ops_match_btreemap() {
    let (mut rng, seed) = Rng::from_env("batches_of_10k_and_50k_ops_match_btreemap");
    let tree = memory_tree();
    let mut model = Model::new();
    let key = |rng: &mut Rng| format!("D/{:04}/f{:06}", rng.below(500), rng.below(60_000)).into_bytes();
    for (size, renames) in [(10_000usize, false), (50_000, true), (10_000, true), (50_000, false)] {
        let mut after = model.clone();
        let mix = Mix { key: &key, value_max: 100, deletes: 1, of: 10, renames };
        let ops = random_batch(&mut rng, &mut after, size, &mix);
        tree.txn(|b| add_ops(b, &ops)).unwrap_or_else(|e| panic!("seed {seed}: batch of {size}: {e}"));
        model = after;
        assert_same(&tree, &model, seed, size);
    }
    // A guarded batch of 10k: a failed guard applies none of it.
    let present = model.keys().next().cloned().expect("the model holds keys");
    let applied = tree
        .atomic(|b| {
            b.assert_absent(&present);
            for i in 0..10_000u32 {
                b.put(format!("new/{i:05}").as_bytes(), b"x");
            }
        })
        .unwrap();
    assert!(!applied, "seed {seed}: the guard fails");
    assert_same(&tree, &model, seed, 1);
}
