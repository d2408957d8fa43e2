//! Rotations with the flusher's work interleaved (`ahead`): what a
//! rotation costs the writer, and what a crash before any disk operation of
//! the protocol leaves.

use std::path::Path;
use std::sync::Arc;

use super::ahead::{MAP_AHEAD_BYTES, SPARE_NAME};
use super::writer::tests::{cfg, commit_puts, open, put};
use super::{segment, Journal, JournalConfig};
use crate::ids::Lsn;
use crate::journal::fault_vfs::FaultVfs;
use crate::store::mem_vfs::{CrashMode, MemVfs};
use crate::store::splitmix::SplitMix64;
use crate::store::reserve::SpaceReserve;
use crate::store::std_vfs::StdVfs;

const WAL: &str = "/wal";
/// Small segments: a rotation every ten or so records.
const SIM_CFG: JournalConfig = JournalConfig { segment_bytes_max: 1024, sync_on_commit: false };

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    segment::list_segments(&StdVfs, dir).unwrap().into_iter().map(|s| s.1).collect()
}

/// Commit one-put records until the active segment holds 600 KiB (more
/// than one writeback step); returns the records committed.
fn fill_600k(j: &Journal) -> usize {
    let mut records = 0;
    while j.io.lock().active.len < 600 << 10 {
        commit_puts(j, 0, 1, |_| false);
        records += 1;
    }
    records
}

/// With a spare ready, a rotation makes no fdatasync on the writer's path:
/// the new segment is the spare renamed, its header unsynced, and the
/// sealed segment's fdatasync is the flusher's; a sync waits for it.
#[test]
fn rotation_with_a_spare_leaves_the_seal_to_the_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = Arc::new(FaultVfs::default());
    let (j, _) = open(vfs.clone(), dir.path(), cfg(1024, false));
    commit_puts(&j, 0, 5, |_| false);
    j.work_ahead();
    assert!(dir.path().join(SPARE_NAME).exists(), "the flusher prepared a spare");
    assert_eq!(segment::parse_segment_name(SPARE_NAME), None, "open never reads the spare");
    assert!(!j.io.lock().dir_dirty, "the active segment's name is synced ahead");
    let (syncs0, dir_syncs0, segs0) = (vfs.counters.syncs(), vfs.counters.dir_syncs(), segments(dir.path()).len());
    commit_puts(&j, 1, 20, |_| false);
    assert_eq!(segments(dir.path()).len(), segs0 + 1, "one rotation");
    assert_eq!(vfs.counters.syncs(), syncs0, "no fdatasync on the writer's path");
    assert_eq!(vfs.counters.dir_syncs(), dir_syncs0, "its name was durable already");
    assert!(!dir.path().join(SPARE_NAME).exists(), "the spare became the segment");
    let synced = j.synced_lsn.load(std::sync::atomic::Ordering::Acquire);
    j.work_ahead();
    assert_eq!(vfs.counters.syncs() - syncs0, 1, "the flusher synced the seal");
    let sealed_last = j.sealed.lock().back().unwrap().last_lsn.0;
    assert!(synced < sealed_last && j.synced_lsn.load(std::sync::atomic::Ordering::Acquire) == sealed_last);
    commit_puts(&j, 2, 20, |_| false);
    assert_eq!(vfs.counters.syncs() - syncs0, 1, "a second rotation, to the spare the flusher made again");
    j.sync().unwrap();
    assert_eq!(vfs.counters.syncs() - syncs0, 3, "a sync runs the pending seal, then the active segment");
    drop(j);
    let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(1024, false));
    assert_eq!(replay.len(), 45);
}

/// The flusher keeps the active segment's space reserved a few MiB past
/// the log's end, so the writer's appends allocate nothing themselves (a
/// reservation can wait on the disk); a seal short of the segment's size
/// still cuts the file to its records, and leaves the unmapping to the
/// flusher.
#[test]
fn the_flusher_reserves_space_ahead_and_a_seal_still_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
    let i = fill_600k(&j);
    j.work_ahead();
    let (path, len, reserved) = {
        let io = j.io.lock();
        (io.active.path.clone(), io.active.len, io.active.reserved())
    };
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(reserved >= len + (3 << 20) && on_disk >= reserved, "reserved {reserved}, file {on_disk}, log {len}");
    j.seal_active().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "the sealed segment ends at its last record");
    assert!(j.ahead.has_retired_map(), "the cut segment's mapping is handed back, not unmapped by the writer");
    j.work_ahead();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "and nothing reserves it again");
    drop(j);
    let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
    assert_eq!(replay.len(), i);
}

/// At each writeback step the flusher maps the pages just past the log's
/// end writable in the writer's mapping, and the spare's first pages in
/// its own, so the writer's first store to each takes no fault.
#[test]
fn the_flusher_maps_pages_ahead_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
    let records = fill_600k(&j);
    j.work_ahead();
    let (map, len) = {
        let io = j.io.lock();
        (io.active.mapping().expect("the segment is mapped"), io.active.len as usize)
    };
    let (from, ahead) = (len / 4096 * 4096, MAP_AHEAD_BYTES as usize);
    assert_eq!(map.mapped_pages(from, ahead), ahead / 4096, "pages past the log's end at {len}");
    assert_eq!(map.mapped_pages(from + 2 * ahead, ahead), 0, "and no further");
    let spare = j.ahead.spare.lock().as_ref().and_then(|s| s.mapping()).expect("a mapped spare");
    assert_eq!(spare.mapped_pages(0, ahead), ahead / 4096, "the spare's first pages");
    drop((map, spare, j));
    let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
    assert_eq!(replay.len(), records, "the log reads back whole");
}

/// The flusher maps pages ahead of the writer while seals cut segments
/// short of their size under it (each cut truncates the file past the
/// pages it may be mapping) and full segments rotate: no signal, and
/// every record replays.
#[test]
fn pages_mapped_ahead_while_seals_cut_segments_keep_the_log_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(1 << 20, false));
    let j = Arc::new(j);
    j.start_flusher();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let nudger = {
        let (j, stop) = (Arc::clone(&j), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                j.ahead.nudge();
                std::thread::yield_now();
            }
        })
    };
    let (rounds, per_round) = (24, 40_000);
    for round in 0..rounds {
        commit_puts(&j, round, per_round, |_| false);
        j.seal_active().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    nudger.join().unwrap();
    j.stop_flusher();
    assert!(j.sealed.lock().len() as u64 > rounds, "full segments rotated too");
    drop(j);
    let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(1 << 20, false));
    assert_eq!(replay.len() as u64, rounds * per_round);
}

/// While the store's space reserve is spent the flusher reserves no space
/// (neither ahead of the log nor for the spare), so that freed space goes
/// to the reserve first; once the reserve is whole it reserves ahead again.
#[test]
fn the_flusher_reserves_nothing_while_the_space_reserve_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let vfs: Arc<dyn crate::store::vfs::Vfs> = Arc::new(StdVfs);
    let reserve = Arc::new(SpaceReserve::new(vfs.clone(), dir.path(), 1 << 20));
    reserve.establish_at_open();
    let (j, _) = open(vfs, &dir.path().join("wal"), cfg(16 << 20, false));
    let j = j.with_space_reserve(Arc::clone(&reserve));
    reserve.release(&"a test");
    let before = j.io.lock().active.reserved();
    fill_600k(&j);
    j.work_ahead();
    let (len, reserved) = {
        let io = j.io.lock();
        (io.active.len, io.active.reserved())
    };
    assert!(reserved < len + (1 << 20), "nothing reserved ahead: reserved {reserved} (was {before}), log {len}");
    let spare = dir.path().join("wal").join(SPARE_NAME);
    assert_eq!(std::fs::metadata(&spare).unwrap().len(), 0, "the spare has no space");
    assert!(reserve.establish());
    commit_puts(&j, 1, 1, |_| false);
    j.work_ahead();
    let (len, reserved) = {
        let io = j.io.lock();
        (io.active.len, io.active.reserved())
    };
    assert!(reserved >= len + (3 << 20), "reserved ahead again: reserved {reserved}, log {len}");
}

/// A seal the flusher fails to sync leaves that segment's durability
/// unknown: the journal is poisoned, and no later sync acknowledges
/// anything.
#[test]
fn a_failed_seal_sync_on_the_flusher_poisons_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = Arc::new(FaultVfs::default());
    let (j, _) = open(vfs.clone(), dir.path(), cfg(1024, false));
    commit_puts(&j, 0, 20, |_| false);
    assert!(!j.sealed.lock().is_empty(), "the log rotated");
    vfs.counters.fail_syncs.store(true, std::sync::atomic::Ordering::SeqCst);
    j.work_ahead();
    vfs.counters.fail_syncs.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(j.sync(), Err(crate::Error::Poisoned { .. })));
    assert!(matches!(j.append(&put(0, 99)), Err(crate::Error::Poisoned { .. })));
}

/// The flusher's steps leave the log as the writer alone would: every
/// record reads back, sealed segments end at their last record, and no
/// spare is left after a clean close.
#[test]
fn work_ahead_between_writes_keeps_the_log_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(64 << 10, false));
    for i in 0..4000 {
        commit_puts(&j, i, 1, |_| i % 700 == 0);
        if i % 37 == 0 {
            j.work_ahead();
        }
    }
    let sealed = j.sealed.lock().clone();
    assert!(sealed.len() >= 3, "the log rotated");
    for seg in &sealed {
        assert_eq!(std::fs::metadata(&seg.path).unwrap().len(), seg.bytes);
    }
    assert!(j.rotation_nanos_max() > 0);
    drop(j);
    assert!(!dir.path().join(SPARE_NAME).exists(), "close removes an unused spare");
    let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(64 << 10, false));
    assert_eq!(replay.len(), 4000);
}

/// A segment filled to its size already ends at its last record (space
/// past the size is reserved only to the log's end): sealing it cuts
/// nothing and leaves its mapping for the flusher to unmap.
#[test]
fn a_full_segment_seals_without_a_cut_and_the_flusher_unmaps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(1 << 20, false));
    let mut i = 0;
    while j.sealed.lock().is_empty() {
        commit_puts(&j, i, 1, |_| false);
        i += 1;
    }
    let sealed = j.sealed.lock()[0].clone();
    assert!(sealed.bytes > 1 << 20);
    assert_eq!(std::fs::metadata(&sealed.path).unwrap().len(), sealed.bytes);
    assert!(j.ahead.has_retired_map(), "the mapping was handed back, not unmapped");
    j.work_ahead();
    assert!(!j.ahead.has_retired_map());
}

/// The flusher thread runs beside writers and stops with the journal.
#[test]
fn flusher_thread_serves_writers_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(256 << 10, false));
    let j = Arc::new(j);
    j.start_flusher();
    commit_puts(&j, 0, 20_000, |i| i % 5000 == 0);
    j.stop_flusher();
    assert!(j.sealed.lock().len() >= 3);
    drop(j);
    let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(256 << 10, false));
    assert_eq!(replay.len(), 20_000);
}

/// What a scripted run promised at each disk operation: the simulated
/// op count once a commit returned, and the LSNs then written and synced.
struct Promise {
    at_op: u64,
    written: u64,
    synced: u64,
}

/// Appends and commits `records` puts, syncing some, with the flusher's
/// work run at seeded points between them (and so between rotations'
/// steps: a rotation may find a spare or not, a new name synced or not).
/// Also returns how many rotations adopted a spare and how many created
/// their segment.
fn scripted_run(vfs: &MemVfs, seed: u64, records: u64) -> (Vec<Promise>, [u32; 2]) {
    let (j, _) = Journal::open(Arc::new(vfs.clone()), Path::new(WAL), Lsn(0), SIM_CFG).unwrap();
    let mut rng = SplitMix64::new(seed);
    let (mut promises, mut rotations) = (Vec::new(), [0, 0]);
    for i in 1..=records {
        let lsn = j.append(&put(0, i)).unwrap();
        let (spare, sealed) = (j.ahead.has_spare(), j.sealed.lock().len());
        j.commit(lsn, rng.below(6) == 0).unwrap();
        if j.sealed.lock().len() > sealed {
            rotations[usize::from(!spare)] += 1;
        }
        promises.push(Promise {
            at_op: vfs.ops_count(),
            written: j.written_lsn.load(std::sync::atomic::Ordering::Acquire),
            synced: j.synced_lsn.load(std::sync::atomic::Ordering::Acquire),
        });
        // Odd seeds run the flusher rarely: rotations then create their
        // segment, or find a spare without a synced name.
        if rng.below(if seed.is_multiple_of(2) { 4 } else { 30 }) == 0 {
            j.work_ahead();
        }
    }
    (promises, rotations)
}

/// Open the crashed image: the records must be `1..=n` as appended, with
/// `n` at least what was promised before the crash point (synced, or
/// written for a killed process), and the log must take appends again.
/// Returns whether the log ended in a sealed segment (a torn seal: open
/// removed the segments after it).
fn check_recovery(image: &MemVfs, promises: &[Promise], crash_at: u64, mode: CrashMode, ctx: &str) -> bool {
    let listed = || segment::list_segments(image, Path::new(WAL)).map(|s| s.len()).unwrap_or(0);
    let before = listed();
    let (j, replay) = Journal::open(Arc::new(image.clone()), Path::new(WAL), Lsn(0), SIM_CFG)
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let torn_seal = listed() < before;
    for (n, (lsn, ops)) in replay.iter().enumerate() {
        assert_eq!((*lsn, ops), (Lsn(n as u64 + 1), &put(0, n as u64 + 1)), "{ctx}: replay is a prefix");
    }
    let kept = replay.len() as u64;
    let promised = promises.iter().rev().find(|p| p.at_op <= crash_at);
    let floor = promised.map_or(0, |p| if mode == CrashMode::KillProcess { p.written } else { p.synced });
    assert!(kept >= floor, "{ctx}: {kept} records recovered, {floor} were promised");
    let lsn = j.append(&put(0, kept + 1)).unwrap();
    j.commit(lsn, true).unwrap();
    drop(j);
    let (_, again) = Journal::open(Arc::new(image.clone()), Path::new(WAL), Lsn(0), SIM_CFG).unwrap();
    assert_eq!(again.len() as u64, kept + 1, "{ctx}: the recovered log takes appends");
    torn_seal
}

/// A power loss or kill before any disk operation of a run that rotates
/// many times (writeback, spare creation, rename, header write, directory
/// fsyncs, and the flusher's seal syncs, which may run long after their
/// rotation) keeps every promised record and a prefix of the rest, and
/// the log reopens — among them images whose log ends in a sealed segment
/// whose seal the crash tore.
#[test]
fn crash_before_any_rotation_step_keeps_promised_records() {
    const RECORDS: u64 = 80;
    let (mut rotations, mut torn_seals) = ([0, 0], 0);
    for seed in 0..4u64 {
        let total = {
            let vfs = MemVfs::new();
            let (_, r) = scripted_run(&vfs, seed, RECORDS);
            rotations = [rotations[0] + r[0], rotations[1] + r[1]];
            vfs.ops_count()
        };
        for crash_at in 0..total {
            for mode in
                [CrashMode::DropUnsynced, CrashMode::Torn { seed: seed * 1000 + crash_at }, CrashMode::KillProcess]
            {
                let vfs = MemVfs::new();
                vfs.crash_before_op(crash_at, mode);
                let (promises, _) = scripted_run(&vfs, seed, RECORDS);
                let image = vfs.take_crash_image().expect("the crash point is reached");
                let ctx = format!("seed {seed} {mode:?} before op {crash_at}");
                torn_seals += usize::from(check_recovery(&image, &promises, crash_at, mode, &ctx));
            }
        }
    }
    let [adopted, created] = rotations;
    assert!(adopted >= 4 && created >= 3, "both kinds of rotation ran: {adopted} adopted a spare, {created} created");
    assert!(torn_seals > 0, "some crash images ended the log in a sealed segment");
}
