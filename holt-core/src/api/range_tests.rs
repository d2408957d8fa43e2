//! Range scans against a `BTreeMap` oracle: delimiter rollup with prefixes,
//! `start_after` before, at and inside groups, keys that prefix each other,
//! NUL and 0xFF bytes, chunk refills that end on a group, groups spread
//! over many frames; and the cost of a rollup in visited nodes.

use std::collections::BTreeMap;

use super::{RangeBuilder, RangeEntry};
use crate::api::cursor::{RangeCursor, CHUNK_BYTES_MAX, CHUNK_KEYS_MIN};
use crate::api::{Tree, TreeBuilder};
use crate::layout::HEADER_BYTES;
use crate::tree::tidy::Shape;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The smallest byte string greater than every string starting with `p`,
/// or `None` if no such string exists (`p` is empty or all 0xFF).
fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut s = p.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

fn memory_tree() -> Tree {
    TreeBuilder::new("unused").memory().open().expect("memory tree opens")
}

/// What a scan must return: every key `> after` under `prefix`, keys that
/// contain `delim` past the prefix replaced by their group once, a group
/// only if its bytes are `> after`.
fn expected(model: &Model, prefix: &[u8], after: Option<&[u8]>, delim: Option<u8>) -> Vec<RangeEntry> {
    let mut out: Vec<RangeEntry> = Vec::new();
    for (k, v) in model.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
        if after.is_some_and(|a| k.as_slice() <= a) {
            continue;
        }
        match delim.and_then(|d| k[prefix.len()..].iter().position(|&b| b == d)) {
            Some(i) => {
                let group = k[..prefix.len() + i + 1].to_vec();
                let fresh = out.last().is_none_or(|e| e.key() != group.as_slice());
                if fresh && after.is_none_or(|a| group.as_slice() > a) {
                    out.push(RangeEntry::CommonPrefix(group));
                }
            }
            None => out.push(RangeEntry::Key { key: k.clone(), value: v.clone() }),
        }
    }
    out
}

fn builder(tree: &Tree, prefix: &[u8], after: Option<&[u8]>, delim: Option<u8>) -> RangeBuilder {
    let mut b = tree.scan_prefix(prefix);
    if let Some(a) = after {
        b = b.start_after(a);
    }
    if let Some(d) = delim {
        b = b.delimiter(d);
    }
    b
}

/// Every entry a cursor lends, copied out.
fn lent(mut cursor: RangeCursor) -> Vec<RangeEntry> {
    let mut out = Vec::new();
    while let Some(e) = cursor.next_entry().expect("scan succeeds") {
        out.push(e.to_entry());
    }
    out
}

/// The scan through the iterator, checked against the cursor's.
fn scanned(tree: &Tree, prefix: &[u8], after: Option<&[u8]>, delim: Option<u8>) -> Vec<RangeEntry> {
    let got: Vec<RangeEntry> = builder(tree, prefix, after, delim).into_iter().collect::<crate::Result<_>>().expect("scan succeeds");
    assert_eq!(lent(builder(tree, prefix, after, delim).cursor()), got, "the cursor lends what the iterator yields");
    got
}

fn put_all(tree: &Tree, model: &mut Model, keys: impl IntoIterator<Item = Vec<u8>>, value_bytes: usize) {
    for (i, k) in keys.into_iter().enumerate() {
        let v = vec![i as u8; value_bytes];
        tree.put(&k, &v).unwrap();
        model.insert(k, v);
    }
}

/// Every `start_after` worth trying: each key, each group, the bytes just
/// before and after each, and a few strict prefixes of them.
fn interesting_afters(model: &Model, delim: u8) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    for k in model.keys() {
        out.push(k.clone());
        out.push([k.as_slice(), &[0]].concat());
        out.extend(prefix_successor(k));
        if let Some(i) = k.iter().position(|&b| b == delim) {
            out.push(k[..=i].to_vec());
            out.push(k[..i].to_vec());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn check_all(tree: &Tree, model: &Model, prefixes: &[&[u8]], delims: &[u8]) {
    for &prefix in prefixes {
        for &delim in delims {
            for after in interesting_afters(model, delim) {
                for d in [None, Some(delim)] {
                    let got = scanned(tree, prefix, Some(&after), d);
                    let want = expected(model, prefix, Some(&after), d);
                    assert!(got == want, "prefix {prefix:?} after {after:?} delim {d:?}:\n got {got:?}\nwant {want:?}");
                }
            }
            let got = scanned(tree, prefix, None, Some(delim));
            assert_eq!(got, expected(model, prefix, None, Some(delim)), "prefix {prefix:?} delim {delim}");
        }
    }
}

/// A `start_after` that leaves the prefix inside a compressed prefix on
/// the prefix's path, above or below it, and ones that extend the prefix:
/// the walk compares such a bound with every node on the path (it may
/// skip only what it compared with the prefix when the bound extends it).
#[test]
fn start_after_leaving_the_prefix_inside_a_compressed_prefix_matches_model() {
    let tree = memory_tree();
    let mut model = Model::new();
    for k in ["dir-aaaa/x1", "dir-aaaa/x2", "dir-aaaa/y/z", "dir-aaaa/y/zz", "dir-abc", "dir-bbbb/y", "dz"] {
        tree.put(k.as_bytes(), b"v").unwrap();
        model.insert(k.as_bytes().to_vec(), b"v".to_vec());
    }
    let prefixes = ["dir-aaaa/", "dir-aaaa/x", "dir-aa", "dir-a", "dir-aaaa/y/"];
    let afters = ["dir-ab", "dir-aaab", "dir-aaa", "dir-aaaa/", "dir-aaaa/x1", "dir-aaaa/y", "dir-aaaa/y/", "dir-b", "dir-", "d", "e"];
    for prefix in prefixes {
        for after in afters {
            for d in [None, Some(b'/')] {
                let (p, a) = (prefix.as_bytes(), Some(after.as_bytes()));
                assert_eq!(scanned(&tree, p, a, d), expected(&model, p, a, d), "prefix {prefix} after {after} delim {d:?}");
            }
        }
    }
}

/// Prefixes that follow the tree's child bytes but leave it inside a
/// compressed prefix above their own end, or end inside one, or name a
/// missing child: the descent to the prefix's end must compare every
/// compressed prefix on the way (the keys' own checks start below it).
#[test]
fn prefixes_leaving_the_tree_inside_a_compressed_prefix_match_model() {
    let tree = memory_tree();
    let mut model = Model::new();
    for k in ["dir-aaaa/x1/a", "dir-aaaa/x1/b", "dir-aaaa/x2/c", "dir-aaaa/x2/cd/e", "dir-b/x1/a"] {
        tree.put(k.as_bytes(), b"v").unwrap();
        model.insert(k.as_bytes().to_vec(), b"v".to_vec());
    }
    let prefixes = [
        "dir-abaa/x1/", "dir-aaab/x1/", "dir-aaaa/y1/", "dir-aaaa/x1/", "dir-aaaa/x2/c", "dir-aaaa/x2/cd", "dir-aaaa/x3/", "dir-aa",
        "dir-aaaa/x", "dir-c/x1/", "e", "dir-b/x1/a",
    ];
    for prefix in prefixes {
        for after in [None, Some(prefix.as_bytes()), Some(b"dir-aaaa/x1/a".as_slice())] {
            for d in [None, Some(b'/')] {
                let p = prefix.as_bytes();
                assert_eq!(scanned(&tree, p, after, d), expected(&model, p, after, d), "prefix {prefix} after {after:?} delim {d:?}");
            }
        }
    }
}

#[test]
fn rollup_with_start_after_before_at_and_inside_groups_matches_model() {
    let tree = memory_tree();
    let mut model = Model::new();
    let keys: [&[u8]; 22] = [
        b"", b"a", b"a/", b"a/b", b"a/b/", b"a/b/c", b"a/c", b"a\0", b"a\0/", b"a\0/x", b"ab", b"ab/", b"ab/\xff",
        b"b/\xff\xff", b"b/\xff\xff/z", b"b\xff", b"b\xff/", b"b\xff\xff", b"\xff", b"\xff/", b"\xff\xff/", b"\xff\xff\xff",
    ];
    put_all(&tree, &mut model, keys.iter().map(|k| k.to_vec()), 3);
    check_all(&tree, &model, &[b"", b"a", b"a/", b"b", b"\xff", b"\xff\xff", b"zz"], &[b'/', 0, 0xFF]);
}

#[test]
fn keys_that_prefix_each_other_roll_up_once_per_group() {
    let tree = memory_tree();
    let mut model = Model::new();
    // `d`, `d/`, `d/x`, `d/x/`, ... at every depth, with NUL and 0xFF twins.
    let mut keys = Vec::new();
    for stem in [&b"d"[..], b"d\0", b"d\xff"] {
        let mut k = stem.to_vec();
        for part in [&b"/"[..], b"x", b"/", b"\0", b"/", b"\xff"] {
            k.extend_from_slice(part);
            keys.push(k.clone());
        }
    }
    put_all(&tree, &mut model, keys, 1);
    check_all(&tree, &model, &[b"", b"d", b"d/", b"d/x/"], &[b'/', 0, 0xFF]);
}

/// A refill after a full chunk restarts past the chunk's last entry; when
/// that entry is a group, past every key of it (with the 0xFF carry).
#[test]
fn refills_that_end_on_a_group_continue_after_it() {
    for before in CHUNK_KEYS_MIN - 2..=CHUNK_KEYS_MIN + 1 {
        for delim in [b'/', 0xFF, 0] {
            let tree = memory_tree();
            let mut model = Model::new();
            let plain = (0..before).map(|i| format!("k{i:04}").into_bytes());
            let group = |stem: &[u8], i: usize| [stem, &[delim], format!("{i:03}").as_bytes()].concat();
            let grouped = (0..300).flat_map(|i| [group(b"m", i), group(b"m\xff", i), group(b"\xff\xff", i)]);
            put_all(&tree, &mut model, plain.chain(grouped).chain([b"m\xff\xff\xffz".to_vec(), b"n".to_vec()]), 2);
            let got = scanned(&tree, b"", None, Some(delim));
            assert_eq!(got, expected(&model, b"", None, Some(delim)), "{before} keys before, delim {delim}");
        }
    }
}

/// A chunk ends at `CHUNK_BYTES_MAX` of entries, so values near the
/// maximum come a few per chunk: each refill restarts past the last key,
/// and nothing is lost or lent twice, with and without `start_after`.
#[test]
fn chunks_cut_by_their_bytes_continue_after_the_last_key() {
    let tree = memory_tree();
    let mut model = Model::new();
    let value_bytes = CHUNK_BYTES_MAX / 3 + 5;
    put_all(&tree, &mut model, (0..20u32).map(|i| format!("big/{i:02}").into_bytes()), value_bytes);
    put_all(&tree, &mut model, (0..300u32).map(|i| format!("big/{i:02}/small").into_bytes()), 10);
    for after in [None, Some(&b"big/07"[..]), Some(b"big/07/small")] {
        for delim in [None, Some(b'/')] {
            assert_eq!(scanned(&tree, b"big/", after, delim), expected(&model, b"big/", after, delim), "after {after:?} delim {delim:?}");
        }
    }
}

/// Groups of 2 KiB values spill into frames of their own, so a group's
/// first leaf sits behind links and its keys span several frames.
#[test]
fn groups_spread_over_many_frames_match_model() {
    let tree = memory_tree();
    let mut model = Model::new();
    let keys = (0..12u32).flat_map(|g| (0..400u32).map(move |e| format!("top/g{g:02}/e{e:04}").into_bytes()));
    put_all(&tree, &mut model, keys, 2048);
    put_all(&tree, &mut model, ["top/g05".into(), "top/g05\0".into(), "top/h".into(), "top/".into()], 10);
    assert!(tree.stats().unwrap().frames > 12, "the groups span many frames");
    for after in ["", "top/", "top/g00", "top/g03/", "top/g03/e0100", "top/g05", "top/g05/", "top/g05\0", "top/g11/zz", "top/h"] {
        for prefix in ["", "top/", "top/g0"] {
            let after = Some(after.as_bytes());
            let got = scanned(&tree, prefix.as_bytes(), after, Some(b'/'));
            assert_eq!(got, expected(&model, prefix.as_bytes(), after, Some(b'/')), "prefix {prefix} after {after:?}");
        }
    }
}

/// Removing every key of a spilled group leaves its frame's entry as an
/// empty inner node: the group has no key and must not be listed.
#[test]
fn a_group_emptied_by_removals_is_not_listed() {
    let tree = memory_tree();
    let mut model = Model::new();
    let group: Vec<Vec<u8>> = (0..3000u32).map(|e| format!("dir/gone/e{e:05}").into_bytes()).collect();
    put_all(&tree, &mut model, group.iter().cloned(), 1024);
    put_all(&tree, &mut model, ["dir/a/1".into(), "dir/z/1".into()], 10);
    let frames = tree.stats().unwrap().frames;
    for k in &group {
        assert!(tree.delete(k).unwrap());
        model.remove(k);
    }
    assert_eq!(tree.stats().unwrap().frames, frames, "no merge ran: the emptied entries are still linked");
    let got = scanned(&tree, b"dir/", None, Some(b'/'));
    let want = vec![RangeEntry::CommonPrefix(b"dir/a/".to_vec()), RangeEntry::CommonPrefix(b"dir/z/".to_vec())];
    assert_eq!(got, want);
    assert_eq!(got, expected(&model, b"dir/", None, Some(b'/')));
    tree.check_invariants().unwrap();
}

#[test]
fn keys_only_yields_every_key_with_an_empty_value() {
    let tree = memory_tree();
    let mut model = Model::new();
    put_all(&tree, &mut model, (0..1000u32).map(|i| format!("d/{:03}{}", i % 300, if i % 3 == 0 { "/x" } else { "" }).into_bytes()), 50);
    let strip = |e: RangeEntry| match e {
        RangeEntry::Key { key, .. } => RangeEntry::Key { key, value: Vec::new() },
        group => group,
    };
    for delim in [None, Some(b'/')] {
        let mut b = tree.scan_prefix(b"d/").keys_only();
        if let Some(d) = delim {
            b = b.delimiter(d);
        }
        let got: Vec<RangeEntry> = b.into_iter().collect::<crate::Result<_>>().unwrap();
        let want: Vec<RangeEntry> = expected(&model, b"d/", None, delim).into_iter().map(strip).collect();
        assert_eq!(got, want, "delimiter {delim:?}");
    }
}

/// Nodes a full listing of `prefix` visits (restarts included).
fn visits(tree: &Tree, prefix: &[u8], delim: Option<u8>) -> (usize, u64) {
    let mut b = tree.scan_prefix(prefix);
    if let Some(d) = delim {
        b = b.delimiter(d);
    }
    let mut it = b.into_iter();
    // The scratch (and its count) is recycled from the thread's last scan.
    let before = it.cursor.scratch.visits;
    let n = it.by_ref().inspect(|e| assert!(e.is_ok(), "{e:?}")).count();
    (n, it.cursor.scratch.visits - before)
}

/// A directory of 10 subdirectories rolls up in O(groups x depth) visited
/// nodes: the count does not grow with the subdirectories' size, while a
/// listing without delimiter visits every key.
#[test]
fn rollup_visits_groups_times_depth_not_keys() {
    let mut seen = Vec::new();
    for entries in [300u32, 3000] {
        let tree = memory_tree();
        for top in ["a", "b", "c"] {
            for sub in 0..10 {
                for e in 0..entries {
                    tree.put(format!("{top}/sub{sub:02}/file_{e:05}.dat").as_bytes(), &[7; 70]).unwrap();
                }
            }
        }
        let (groups, rolled) = visits(&tree, b"b/", Some(b'/'));
        let (keys, flat) = visits(&tree, b"b/", None);
        assert_eq!((groups, keys), (10, 10 * entries as usize));
        eprintln!("10 subdirs x {entries}: rollup visits {rolled} nodes, flat listing {flat}");
        assert!(rolled <= 10 * 12, "rollup of 10 groups visited {rolled} nodes");
        assert!(flat >= keys as u64);
        seen.push(rolled);
    }
    // Deeper trees add a level or two per group, never a key's worth.
    assert!(seen[1] <= seen[0] + 2 * 10, "visits grew with group size: {seen:?}");
}

/// Subtrees read as runs (`tree::scan_run`) by a full scan of `prefix`.
fn runs(tree: &Tree, prefix: &[u8], delim: Option<u8>) -> u64 {
    let mut it = builder(tree, prefix, None, delim).into_iter();
    let before = it.cursor.scratch.runs;
    assert!(it.by_ref().all(|e| e.is_ok()));
    it.cursor.scratch.runs - before
}

/// Every listing of `prefixes` with and without the delimiter, from the
/// start and from a sample of `start_after`s, against the oracle.
fn check_sampled(tree: &Tree, model: &Model, prefixes: &[&[u8]], every: usize) {
    let afters = interesting_afters(model, b'/');
    for &prefix in prefixes {
        for after in afters.iter().step_by(every).map(Some).chain([None]) {
            for d in [None, Some(b'/')] {
                let got = scanned(tree, prefix, after.map(Vec::as_slice), d);
                let want = expected(model, prefix, after.map(Vec::as_slice), d);
                assert!(got == want, "prefix {prefix:?} after {after:?} delim {d:?}: {} entries, want {}", got.len(), want.len());
            }
        }
    }
}

/// Scans over tidy frames read whole subtrees in layout order (runs); they
/// return what the walk would, for every prefix, delimiter and
/// `start_after`: flat directories, directories of directories, a key
/// that holds the delimiter past a shorter one, lone leaves whose group
/// starts right below the byte they hang under, subtrees spilled to other
/// frames. A spill right after the tidy writes a frame in an order of its
/// own (no run may read it in layout order); then removals, updates and a
/// compaction change the layout of others, and the answers still match.
/// Both shapes of tidy: one run per tree, and upper nodes before runs of a
/// few KiB (`tidy::Shape::Pages`, where a run must not start at an upper
/// node: its subtree is not contiguous).
#[test]
fn scans_over_tidy_frames_match_the_oracle() {
    scans_over_tidy_frames(Shape::Scans);
}

#[test]
fn scans_over_frames_tidied_for_pages_match_the_oracle() {
    scans_over_tidy_frames(Shape::Pages);
}

fn scans_over_tidy_frames(shape: Shape) {
    let tidy = |tree: &Tree| crate::engine::maintenance::tidy_resident_as(tree.engine().pool(), shape);
    let tree = memory_tree();
    let mut model = Model::new();
    let mut keys: Vec<Vec<u8>> = (0..12).flat_map(|d| (0..400).map(move |f| format!("d{d:02}/file_{f:04}.rs").into_bytes())).collect();
    keys.extend((0..2).flat_map(|t| (0..6).flat_map(move |s| (0..80).map(move |f| format!("r{t}/sub{s}/f{f:03}").into_bytes()))));
    keys.extend([b"d05/file_0001.rs/inner".to_vec(), b"d05/file_0001.rs/inner/deeper".to_vec(), b"r1/sub3".to_vec()]);
    // Lone leaves whose delimiter comes right after the byte they hang
    // under: only the leaf's own bytes show the group.
    keys.extend([&b"d05/solo1/x"[..], b"d05/solo2/y", b"d05/solo23/z", b"d05/solo3x/w"].map(<[u8]>::to_vec));
    let mut rng = crate::store::splitmix::SplitMix64::new(5);
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    put_all(&tree, &mut model, keys, 60);
    tidy(&tree);
    assert!(tree.stats().unwrap().frames > 1, "the keys span frames");
    let pool = tree.engine().pool();
    let upper = pool.live_ids().into_iter().filter(|&id| pool.cell(id).unwrap().buf().unwrap().runs_from() > HEADER_BYTES).count();
    assert_eq!(upper > 0, shape == Shape::Pages, "frames with upper nodes: {upper}");
    assert!(runs(&tree, b"", None) > 0 && runs(&tree, b"d07/", Some(b'/')) > 0, "tidy frames are read as runs");
    let prefixes: [&[u8]; 6] = [b"", b"d0", b"d05/", b"d05/file_0001.rs/", b"r1/", b"r1/sub3/"];
    check_sampled(&tree, &model, &prefixes, 97);
    // Removals and a compaction alone: the compacted frames hold their
    // nodes in slot order, and a subtree's root named from another frame
    // keeps its slot number, so slot order is not preorder.
    for k in model.keys().step_by(5).cloned().collect::<Vec<_>>() {
        tree.delete(&k).unwrap();
        model.remove(&k);
    }
    tree.compact().unwrap();
    check_sampled(&tree, &model, &prefixes, 97);
    tidy(&tree);
    let spills = tree.stats().unwrap().spills;
    for i in 0.. {
        let k = format!("d03/more_{i:05}").into_bytes();
        tree.put(&k, &[9; 80]).unwrap();
        model.insert(k, vec![9; 80]);
        if tree.stats().unwrap().spills > spills {
            break;
        }
    }
    check_sampled(&tree, &model, &prefixes, 97);
    for (i, k) in model.keys().cloned().collect::<Vec<_>>().into_iter().enumerate() {
        if i % 7 == 0 {
            tree.delete(&k).unwrap();
            model.remove(&k);
        } else if i % 11 == 0 {
            let v = vec![3; 20 + i % 90];
            tree.put(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    put_all(&tree, &mut model, (0..300).map(|i| format!("d08/new_{i:03}/x").into_bytes()), 30);
    check_sampled(&tree, &model, &prefixes, 89);
    tree.compact().unwrap();
    tidy(&tree);
    check_sampled(&tree, &model, &prefixes, 89);
}

/// A listing's first chunk reads the node where its prefix ends as one run
/// when that node's compressed prefix agrees with the prefix and starts no
/// group past its end: prefixes cut at every byte of long compressed
/// prefixes (with the delimiter before, at and after the cut), and ones
/// that part from the tree inside them, over tidy frames, with and
/// without the delimiter and `start_after`, against the oracle.
#[test]
fn listings_from_inside_a_compressed_prefix_over_tidy_frames_match_the_oracle() {
    let tree = memory_tree();
    let mut model = Model::new();
    let mut keys: Vec<Vec<u8>> = (0..100).map(|i| format!("t/abcdefgh/f{i:03}").into_bytes()).collect();
    keys.extend((0..40).map(|i| format!("u/abc/defgh/x{i:02}/y").into_bytes()));
    keys.extend((0..40).map(|i| format!("u/abc/defgh/z{i:02}").into_bytes()));
    keys.extend([&b"t/abcdefgh"[..], b"u/abc/d", b"v/a/b/c"].map(<[u8]>::to_vec));
    put_all(&tree, &mut model, keys, 24);
    crate::engine::maintenance::tidy_resident_as(tree.engine().pool(), Shape::Scans);
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    for full in [&b"t/abcdefgh/f0"[..], b"u/abc/defgh/x", b"v/a/b/c"] {
        prefixes.extend((0..=full.len()).map(|n| full[..n].to_vec()));
    }
    prefixes.extend([&b"t/abcX"[..], b"t/abcdefgX", b"u/abc/defgX", b"u/abd"].map(<[u8]>::to_vec));
    for prefix in &prefixes {
        for after in [None, Some(prefix.as_slice()), Some(b"t/abcdefgh/f050".as_slice()), Some(b"u/abc/defgh/x20/y")] {
            for d in [None, Some(b'/')] {
                let got = scanned(&tree, prefix, after, d);
                assert!(got == expected(&model, prefix, after, d), "prefix {prefix:?} after {after:?} delim {d:?}: {got:?}");
            }
        }
    }
    assert_eq!(runs(&tree, b"t/abcdefgh/", Some(b'/')), 1, "one run reads the directory from where its prefix ends");
    assert_eq!(runs(&tree, b"t/abcd", None), 1, "and from inside the compressed prefix, without the delimiter");
}
