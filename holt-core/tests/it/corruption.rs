//! Damaged store files, through the public API: each damage gives the outcome
//! doc/FORMAT.md documents, never a panic and never a wrong answer.
//!
//! Each test closes (or crash-copies) a store, damages the files of the
//! copy, and reopens it. Offsets come from the byte tables in doc/FORMAT.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use holt_core::{Error, Tree};

use crate::durability::{contents, copy_store, crash_copy, open_quiet, reseal_manifest};
use crate::model::assert_same;
use crate::rng::Rng;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const SEGMENT_HEADER_BYTES: usize = 24;
const RECORD_HEADER_BYTES: usize = 32;
const FRAME_FILE_HEADER_BYTES: u64 = 4096;
const FRAME_BYTES: u64 = 512 << 10;
/// A slot: a block of page checksums (the first 512 bytes used), then the image.
const PAGE_TABLE_BYTES: u64 = 4096;
const PAGE_TABLE_USED: u64 = 512;
const SLOT_BYTES: u64 = PAGE_TABLE_BYTES + FRAME_BYTES;
const MANIFEST_HEADER_BYTES: usize = 80;
const MANIFEST_ENTRY_BYTES: usize = 40;
const MANIFEST_VERSION_OFFSET: usize = 8;
const MANIFEST_ENTRY_COUNT_OFFSET: usize = 56;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The last WAL segment of `store` (names sort in LSN order).
fn last_segment(store: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(store.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
        .collect();
    segs.sort();
    segs.pop().expect("the store has a WAL segment")
}

/// One WAL record: its byte range in the segment and its LSN.
#[derive(Debug)]
struct WalRecord {
    start: usize,
    end: usize,
    lsn: u64,
}

/// The records of a segment, walked by their headers (magic `HREC`,
/// `payload_len` at 12, `lsn` at 16), up to the first that does not fit.
fn wal_records(seg: &Path) -> Vec<WalRecord> {
    let b = std::fs::read(seg).unwrap();
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + RECORD_HEADER_BYTES <= b.len() && &b[at..at + 4] == b"HREC" {
        let end = at + RECORD_HEADER_BYTES + u32_at(&b, at + 12) as usize;
        if end > b.len() {
            break;
        }
        out.push(WalRecord { start: at, end, lsn: u64_at(&b, at + 16) });
        at = end;
    }
    out
}

fn modify(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    edit(&mut b);
    std::fs::write(path, &b).unwrap();
}

fn flip_bit(path: &Path, byte: u64, bit: u64) {
    modify(path, |b| b[byte as usize] ^= 1 << bit);
}

fn key(i: u64) -> Vec<u8> {
    format!("f/{:03}/{i:06}", i % 97).into_bytes()
}

/// A store killed after `sync()`: part of its data in a checkpoint, the
/// rest (puts, deletes, a rename) only in the WAL, ending with a put of
/// `z/last`. Returns the crash copy and the model of every acknowledged op.
fn crashed_store(root: &Path, rng: &mut Rng) -> (PathBuf, Model) {
    let live = root.join("live");
    let tree = open_quiet(&live).unwrap();
    let mut model = Model::new();
    for i in 0..1_500u64 {
        let v = vec![rng.next() as u8; 100 + rng.below(900) as usize];
        tree.put(&key(i), &v).unwrap();
        model.insert(key(i), v);
        if i == 600 {
            tree.checkpoint().unwrap();
        }
        if i % 10 == 3 {
            let gone = key(rng.below(i));
            tree.delete(&gone).unwrap();
            model.remove(&gone);
        }
    }
    tree.rename(&key(1_499), b"moved", true).unwrap();
    let v = model.remove(&key(1_499)).unwrap();
    model.insert(b"moved".to_vec(), v);
    tree.put(b"z/last", b"tail").unwrap();
    model.insert(b"z/last".to_vec(), b"tail".to_vec());
    let crashed = root.join("crashed");
    crash_copy(&tree, &live, &crashed);
    drop(tree);
    (crashed, model)
}

/// A fresh copy of `src` named `name` under `root`.
fn damaged(root: &Path, src: &Path, name: &str) -> PathBuf {
    let dst = root.join(name);
    copy_store(src, &dst);
    dst
}

/// Open after damage to the WAL tail: the store opens with exactly
/// `expect`, and keeps working across another write and reopen.
fn opens_with(store: &Path, expect: &Model, seed: u64) {
    let tree = open_quiet(store).unwrap_or_else(|e| panic!("seed {seed}: {}: open failed: {e}", store.display()));
    assert_same(&tree, expect, seed, 0);
    tree.put(b"after", b"reopen").unwrap();
    drop(tree);
    let tree = open_quiet(store).unwrap();
    let mut expect = expect.clone();
    expect.insert(b"after".to_vec(), b"reopen".to_vec());
    assert_same(&tree, &expect, seed, 1);
}

#[test]
fn wal_tail_zero_filled_is_cut_and_keeps_acknowledged_data() {
    let (mut rng, seed) = Rng::from_env("wal_tail_zero_filled");
    let root = tempfile::tempdir().unwrap();
    let (crashed, model) = crashed_store(root.path(), &mut rng);
    let store = damaged(root.path(), &crashed, "zeros");
    let seg = last_segment(&store);
    let len = std::fs::metadata(&seg).unwrap().len();
    modify(&seg, |b| b.resize(b.len() + 1 + rng.below(64 << 10) as usize, 0));
    opens_with(&store, &model, seed);
    // The clean close after the reopen retires the segment altogether.
    let cut = std::fs::metadata(&seg).map_or(true, |m| m.len() < len + 1024);
    assert!(cut, "the zero tail was cut");
}

#[test]
fn wal_tail_garbage_is_cut_and_keeps_acknowledged_data() {
    let (mut rng, seed) = Rng::from_env("wal_tail_garbage");
    let root = tempfile::tempdir().unwrap();
    let (crashed, model) = crashed_store(root.path(), &mut rng);
    for round in 0..4 {
        let store = damaged(root.path(), &crashed, &format!("garbage-{round}"));
        let garbage: Vec<u8> = (0..1 + rng.below(20_000)).map(|_| rng.next() as u8).collect();
        modify(&last_segment(&store), |b| b.extend_from_slice(&garbage));
        opens_with(&store, &model, seed);
    }
}

#[test]
fn wal_cut_inside_the_last_record_loses_only_that_record() {
    let (mut rng, seed) = Rng::from_env("wal_cut_mid_record");
    let root = tempfile::tempdir().unwrap();
    let (crashed, model) = crashed_store(root.path(), &mut rng);
    let last = wal_records(&last_segment(&crashed)).pop().expect("the crash copy holds records");
    let mut without_last = model.clone();
    without_last.remove(b"z/last".as_slice());
    for cut in
        [last.start + 1, last.start + RECORD_HEADER_BYTES - 1, last.start + RECORD_HEADER_BYTES + 3, last.end - 1]
    {
        let store = damaged(root.path(), &crashed, &format!("cut-{cut}"));
        let seg = last_segment(&store);
        std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut as u64).unwrap();
        let tree = open_quiet(&store).unwrap_or_else(|e| panic!("seed {seed}: cut at {cut}: {e}"));
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), last.start as u64, "cut back to the last whole record");
        assert_same(&tree, &without_last, seed, cut);
        drop(tree);
        opens_with(&store, &without_last, seed);
    }
}

#[test]
fn wal_bad_crc_before_later_synced_records_is_corruption_naming_segment_and_offset() {
    let (mut rng, seed) = Rng::from_env("wal_bad_crc_mid_segment");
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let tree = open_quiet(&live).unwrap();
    for i in 0..400u64 {
        tree.put(&key(i), &vec![i as u8; 300]).unwrap();
        if i == 199 {
            tree.sync().unwrap();
        }
    }
    let crashed = root.path().join("crashed");
    crash_copy(&tree, &live, &crashed);
    drop(tree);
    let records = wal_records(&last_segment(&crashed));
    assert_eq!(records.len(), 400, "one record per put");
    // Records 1..=200 were synced before record 201 was written, which says
    // so in its header: damage to any of them is not a lost tail.
    let victim = &records[rng.below(200) as usize];
    let store = damaged(root.path(), &crashed, "bad-crc");
    let seg = last_segment(&store);
    let at = victim.start
        + RECORD_HEADER_BYTES
        + rng.below((victim.end - victim.start - RECORD_HEADER_BYTES) as u64) as usize;
    flip_bit(&seg, at as u64, rng.below(8));
    match open_quiet(&store) {
        Err(e @ Error::Corrupted { .. }) => {
            let Error::Corrupted { ref path, offset, .. } = e else { unreachable!() };
            assert_eq!(path, &seg, "seed {seed}: {e}");
            assert!(
                (victim.start as u64..victim.end as u64).contains(&offset),
                "seed {seed}: offset {offset} outside record lsn {} at {}..{}: {e}",
                victim.lsn,
                victim.start,
                victim.end
            );
            assert!(e.to_string().contains(&seg.display().to_string()), "seed {seed}: {e}");
            eprintln!(
                "seed {seed}: record lsn {} at {}..{} damaged at {at}: {e}",
                victim.lsn, victim.start, victim.end
            );
        }
        other => panic!("seed {seed}: expected Corrupted, got {:?}", other.map(|t| contents(&t).len())),
    }
}

/// A cleanly closed store spanning many frames, and its model.
fn closed_store(dir: &Path, rng: &mut Rng) -> Model {
    let tree = open_quiet(dir).unwrap();
    let mut model = Model::new();
    for i in 0..4_000u64 {
        let v = vec![rng.next() as u8; 1000 + rng.below(1000) as usize];
        tree.put(&key(i), &v).unwrap();
        model.insert(key(i), v);
    }
    assert!(tree.stats().unwrap().frames >= 8, "{:?}", tree.stats().unwrap());
    model
}

/// `(frame_id, slot)` of every MANIFEST entry (doc/FORMAT.md, Manifest).
fn manifest_slots(store: &Path) -> Vec<(u64, u32)> {
    let m = std::fs::read(store.join("MANIFEST")).unwrap();
    let count = u64_at(&m, MANIFEST_ENTRY_COUNT_OFFSET) as usize;
    (0..count)
        .map(|i| MANIFEST_HEADER_BYTES + i * MANIFEST_ENTRY_BYTES)
        .map(|at| (u64_at(&m, at), u32_at(&m, at + 8)))
        .collect()
}

fn is_corrupted_in(e: &Error, file: &str) -> bool {
    let named = matches!(e, Error::Corrupted { path, .. } if path.ends_with(file));
    named && e.to_string().contains(file)
}

/// Every read of `tree` gives the model's value or `Corrupted` naming
/// `frames.dat`; returns how many reads failed (the scan counts as one).
fn reads_are_right_or_corrupted(tree: &Tree, model: &Model, ctx: &str) -> usize {
    let mut failed = 0;
    for (k, v) in model {
        match tree.get(k) {
            Ok(got) => assert!(got.as_ref() == Some(v), "{ctx}: wrong value for {k:?}"),
            Err(e) => {
                assert!(is_corrupted_in(&e, "frames.dat"), "{ctx}: {e}");
                failed += 1;
            }
        }
    }
    let scan: Result<Vec<_>, _> = tree.scan_prefix(b"").into_iter().collect();
    match scan {
        Ok(entries) => assert_eq!(entries.len(), model.len(), "{ctx}: a full scan that succeeds sees every key"),
        Err(e) => {
            assert!(is_corrupted_in(&e, "frames.dat"), "{ctx}: {e}");
            failed += 1;
        }
    }
    failed
}

#[test]
fn flipped_bit_in_a_frame_slot_is_corruption_never_a_wrong_value() {
    let (mut rng, seed) = Rng::from_env("flipped_bit_in_frame");
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let model = closed_store(&clean, &mut rng);
    let slots = manifest_slots(&clean);
    for round in 0..12 {
        let (id, slot) = slots[rng.below(slots.len() as u64) as usize];
        let store = damaged(root.path(), &clean, &format!("flip-{round}"));
        let base = FRAME_FILE_HEADER_BYTES + u64::from(slot) * SLOT_BYTES;
        let gap = free_gap(&store.join("frames.dat"), base + PAGE_TABLE_BYTES);
        // A third of the rounds hit the free gap, which holds no data, a
        // third the page checksums; offsets count from the slot's start.
        let at = match round % 3 {
            0 if !gap.is_empty() => PAGE_TABLE_BYTES + gap.start + rng.below(gap.end - gap.start),
            1 => rng.below(PAGE_TABLE_USED),
            _ => PAGE_TABLE_BYTES + used_byte(&gap, &mut rng),
        };
        flip_bit(&store.join("frames.dat"), base + at, rng.below(8));
        let ctx = format!("seed {seed}: frame {id} slot {slot} byte {at} of the slot, free gap {gap:?} of the image");
        let in_gap = at >= PAGE_TABLE_BYTES && gap.contains(&(at - PAGE_TABLE_BYTES));
        match open_quiet(&store) {
            Err(e) => assert!(!in_gap && is_corrupted_in(&e, "frames.dat"), "{ctx}: {e}"),
            Ok(tree) => {
                let failed = reads_are_right_or_corrupted(&tree, &model, &ctx);
                match in_gap {
                    true => assert_eq!(failed, 0, "{ctx}: a flip in the free gap broke a read"),
                    false => assert!(failed > 0, "{ctx}: no read noticed the damaged frame"),
                }
            }
        }
    }
}

/// The free gap of the frame image at `base` (between its data area and its
/// slot table, doc/FORMAT.md "Blob frame"), as offsets within the image.
fn free_gap(frames: &Path, base: u64) -> std::ops::Range<u64> {
    let bytes = std::fs::read(frames).unwrap();
    let field = |off: u64| u64::from(u32::from_le_bytes(bytes[(base + off) as usize..][..4].try_into().unwrap()));
    let (data_end, slot_count) = (field(32), field(28));
    data_end..FRAME_BYTES - 4 * slot_count
}

/// A random slot offset outside `gap`.
fn used_byte(gap: &std::ops::Range<u64>, rng: &mut Rng) -> u64 {
    let at = rng.below(FRAME_BYTES - (gap.end - gap.start));
    if at < gap.start { at } else { at + (gap.end - gap.start) }
}

#[test]
fn flipped_bit_in_frame_file_header_is_corruption() {
    let (mut rng, seed) = Rng::from_env("flipped_bit_in_frame_header");
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    closed_store(&clean, &mut rng);
    let store = damaged(root.path(), &clean, "flip");
    // Bytes 0..64 are checked (64.. is unchecked padding).
    flip_bit(&store.join("frames.dat"), rng.below(64), rng.below(8));
    let e = open_quiet(&store).err().unwrap_or_else(|| panic!("seed {seed}: opened a damaged frame file"));
    assert!(is_corrupted_in(&e, "frames.dat"), "seed {seed}: {e}");
}

#[test]
fn flipped_bit_in_manifest_is_corruption_naming_it() {
    let (mut rng, seed) = Rng::from_env("flipped_bit_in_manifest");
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    let model = closed_store(&store, &mut rng);
    let path = store.join("MANIFEST");
    let bits = std::fs::metadata(&path).unwrap().len() * 8;
    for _ in 0..48 {
        let bit = rng.below(bits);
        flip_bit(&path, bit / 8, bit % 8);
        let e = open_quiet(&store).err().unwrap_or_else(|| panic!("seed {seed}: bit {bit}: opened"));
        assert!(is_corrupted_in(&e, "MANIFEST"), "seed {seed}: bit {bit}: {e}");
        flip_bit(&path, bit / 8, bit % 8);
    }
    assert_same(&open_quiet(&store).unwrap(), &model, seed, 0);
}

#[test]
fn manifest_of_unknown_version_is_unsupported_format() {
    let (mut rng, seed) = Rng::from_env("manifest_unknown_version");
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    closed_store(&clean, &mut rng);
    let mut bytes = std::fs::read(clean.join("MANIFEST")).unwrap();
    let stored_crc = u32_at(&bytes, bytes.len() - 4);
    reseal_manifest(&mut bytes);
    assert_eq!(u32_at(&bytes, bytes.len() - 4), stored_crc, "trailer CRC as doc/FORMAT.md describes it");
    bytes[MANIFEST_VERSION_OFFSET..][..4].copy_from_slice(&4u32.to_le_bytes());

    // With a valid checksum the version is read: UnsupportedFormat.
    let resealed = damaged(root.path(), &clean, "resealed");
    let mut good_crc = bytes.clone();
    reseal_manifest(&mut good_crc);
    std::fs::write(resealed.join("MANIFEST"), &good_crc).unwrap();
    match open_quiet(&resealed) {
        Err(e @ Error::UnsupportedFormat { found: 4, supported: 3, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("MANIFEST") && msg.contains("version 4"), "seed {seed}: {msg}");
        }
        other => panic!("seed {seed}: expected UnsupportedFormat, got {:?}", other.err()),
    }

    // Without fixing the checksum the patch is damage: Corrupted at the trailer.
    let unsealed = damaged(root.path(), &clean, "unsealed");
    std::fs::write(unsealed.join("MANIFEST"), &bytes).unwrap();
    match open_quiet(&unsealed) {
        Err(e @ Error::Corrupted { offset, .. }) => {
            assert_eq!(offset, bytes.len() as u64 - 4, "seed {seed}: {e}");
            assert!(is_corrupted_in(&e, "MANIFEST"), "seed {seed}: {e}");
        }
        other => panic!("seed {seed}: expected Corrupted, got {:?}", other.err()),
    }
}

#[test]
fn missing_or_truncated_files_are_clear_errors() {
    let (mut rng, seed) = Rng::from_env("missing_files");
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    closed_store(&clean, &mut rng);

    let store = damaged(root.path(), &clean, "no-frames");
    std::fs::remove_file(store.join("frames.dat")).unwrap();
    let e = open_quiet(&store).expect_err("opened without frames.dat");
    assert!(is_corrupted_in(&e, "frames.dat"), "seed {seed}: {e}");

    let store = damaged(root.path(), &clean, "no-manifest");
    std::fs::remove_file(store.join("MANIFEST")).unwrap();
    let e = open_quiet(&store).expect_err("opened without MANIFEST beside a full frames.dat");
    assert!(is_corrupted_in(&e, "MANIFEST"), "seed {seed}: {e}");

    let store = damaged(root.path(), &clean, "no-wal");
    std::fs::remove_dir_all(store.join("wal")).unwrap();
    let e = open_quiet(&store).expect_err("opened without the WAL a checkpoint points into");
    assert!(matches!(e, Error::Corrupted { .. }) && e.to_string().contains("wal"), "seed {seed}: {e}");

    let store = damaged(root.path(), &clean, "short-frames");
    let slot_max = manifest_slots(&store).iter().map(|s| s.1).max().unwrap();
    let cut = FRAME_FILE_HEADER_BYTES + u64::from(slot_max) * SLOT_BYTES + SLOT_BYTES / 2;
    std::fs::OpenOptions::new().write(true).open(store.join("frames.dat")).unwrap().set_len(cut).unwrap();
    let e = open_quiet(&store).expect_err("opened with a slot cut off");
    assert!(is_corrupted_in(&e, "frames.dat"), "seed {seed}: {e}");
}
