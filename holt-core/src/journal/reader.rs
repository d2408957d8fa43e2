//! Recovery: read every segment at open, check that LSNs run without a gap
//! past the checkpoint, find where the log ends (the last segment, or a
//! sealed one whose seal a crash tore), cut the tail there, and hand back
//! the records to replay together with the segment the writer continues.
//!
//! Reads one segment into memory at a time (memory: the largest segment plus
//! the decoded records returned for replay).

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec;
use super::active::ActiveSegment;
use super::segment::{self, SealedSegment, SegmentScan};
use super::Replay;
use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::op::LogOp;
use crate::store::vfs::{FileIo, Vfs};

/// The state of the log after open.
pub(crate) struct Recovered {
    /// Records with lsn > the checkpoint LSN, in LSN order, contiguous.
    pub records: Vec<(Lsn, Vec<LogOp>)>,
    /// Segments before the active one, in LSN order.
    pub sealed: VecDeque<SealedSegment>,
    /// The last segment, its tail cut off; appends continue at its end.
    pub active: ActiveSegment,
    /// LSN of the last valid record (the checkpoint LSN when there is none).
    /// Every record up to it is durable, data and segment names.
    pub last_lsn: Lsn,
    /// Largest `synced_lsn` claimed in the active segment.
    pub synced_claimed: Lsn,
    /// False when open did not fsync the directory: the active segment's
    /// name may not be durable yet, and the first sync must make it so.
    pub name_durable: bool,
}

/// Open the log in `dir` for a store whose checkpoint covers every LSN up to
/// `after`.
pub(crate) fn recover(vfs: &dyn Vfs, dir: &Path, after: Lsn) -> Result<Recovered> {
    vfs.create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let segs = segment::list_segments(vfs, dir)?;
    if segs.is_empty() {
        return start_fresh(vfs, dir, after);
    }
    let log = read_log(vfs, &segs, after)?;
    let (first, path, loaded) = log.end;
    if !log.orphans.is_empty() {
        remove_orphans(vfs, dir, &log.orphans, &path)?;
    }
    let len = cut_tail(&*loaded.file, &path, first, &loaded)?;
    let synced_claimed = loaded.scan.synced_claimed;
    // What a crashed process wrote may sit only in the page cache: make it
    // durable so the writer can claim it (sealed segments already are, or
    // their tail was cut with the segment after them).
    // Records a later record or marker claims durable already are (a
    // clean close leaves such a claim), so the common reopen syncs nothing.
    let name_durable = synced_claimed < loaded.last;
    if name_durable {
        loaded.file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    let active = ActiveSegment::new(loaded.file, path, first, len);
    let sealed = log.sealed;
    Ok(Recovered { records: log.records, sealed, active, last_lsn: loaded.last, synced_claimed, name_durable })
}

/// The records past `after` for a read-only open, checked as `recover`
/// checks them, with nothing written: a torn tail is left in place (no
/// record past it is read), nothing is synced, no segment is created or
/// removed.
pub(crate) fn read_records(vfs: &dyn Vfs, dir: &Path, after: Lsn) -> Result<Replay> {
    let segs = segment::list_segments(vfs, dir)?;
    if segs.is_empty() && after != Lsn(0) {
        let what = format!("no WAL segment although the checkpoint is at lsn {}", after.0);
        return Err(Error::corrupted(dir, 0, what));
    }
    if segs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(read_log(vfs, &segs, after)?.records)
}

/// The log as read at open.
struct Log {
    /// Records with lsn > the checkpoint LSN, in LSN order, contiguous.
    records: Vec<(Lsn, Vec<LogOp>)>,
    /// Segments before the one the log ends in, in LSN order.
    sealed: VecDeque<SealedSegment>,
    /// The segment the log ends in: its first LSN, path and content.
    end: (Lsn, PathBuf, Loaded),
    /// Segments after the end: left by a rotation whose seal was torn.
    orphans: Vec<PathBuf>,
}

/// Read the segments `segs` (in LSN order, at least one) and find where
/// the log ends. A sealed segment's records end where its successor's
/// begin; a tail after them is space its seal cut that a power loss
/// restored. A sealed segment whose records end before its successor's
/// first LSN (a gap the checkpoint does not cover) was sealed without its
/// fdatasync completing (a rotation leaves that to the flusher), its last
/// records lost with the power: the log ends there, and the later
/// segments hold only records no sync acknowledged (every sync waits for
/// the seals before it). It is corruption when one of their records
/// claims a lost LSN durable: then the lost records had been durable (a
/// deleted or truncated segment).
fn read_log(vfs: &dyn Vfs, segs: &[(Lsn, PathBuf)], after: Lsn) -> Result<Log> {
    let mut records = Vec::new();
    let mut sealed = VecDeque::new();
    // Next LSN the log must hold; `None` before the first segment.
    let mut expected: Option<Lsn> = None;
    for (i, (first, path)) in segs.iter().enumerate() {
        let loaded = load_segment(vfs, path, *first, expected, after, &mut records)?;
        let next = loaded.last.next();
        let gap = segs.get(i + 1).is_none_or(|(f, _)| *f > next && *f > after.next());
        if gap {
            if loaded.last < after {
                let what = format!("log ends at lsn {} before the checkpoint lsn {}", loaded.last.0, after.0);
                return Err(Error::corrupted(path, loaded.scan.valid_end as u64, what));
            }
            let orphans: Vec<PathBuf> = segs[i + 1..].iter().map(|s| s.1.clone()).collect();
            check_unclaimed(vfs, &orphans, next, path)?;
            return Ok(Log { records, sealed, end: (*first, path.clone(), loaded), orphans });
        }
        expected = Some(next);
        let bytes = loaded.bytes.len() as u64;
        sealed.push_back(SealedSegment { path: path.clone(), first_lsn: *first, last_lsn: loaded.last, bytes });
    }
    unreachable!("the last segment always ends the log")
}

/// No record in the segments at `paths` may claim `lsn` durable: the log
/// ends before it (in the segment at `end`).
fn check_unclaimed(vfs: &dyn Vfs, paths: &[PathBuf], lsn: Lsn, end: &Path) -> Result<()> {
    for path in paths {
        let file = vfs.open(path, false).map_err(|e| Error::io("open", path, e))?;
        let bytes = segment::read_all(&*file, path)?;
        if let Err(found) = segment::unsynced_records_from(&bytes, 0, lsn) {
            let what = format!(
                "the log ends in {} before lsn {}, but this record shows it was durable",
                end.display(),
                lsn.0
            );
            return Err(Error::corrupted(path, found.offset as u64, what));
        }
    }
    Ok(())
}

/// Remove the segments after a torn seal, durably, before the log
/// continues in the segment at `end` (new segments may take their names).
fn remove_orphans(vfs: &dyn Vfs, dir: &Path, orphans: &[PathBuf], end: &Path) -> Result<()> {
    for path in orphans {
        log::warn!(
            "{}: removed, with its unsynced records: the log ends in {}, whose seal a crash tore",
            path.display(),
            end.display()
        );
        vfs.remove(path).map_err(|e| Error::io("remove", path, e))?;
    }
    vfs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))
}

/// One segment read and scanned.
struct Loaded {
    file: Arc<dyn FileIo>,
    bytes: Vec<u8>,
    scan: SegmentScan,
    /// Last LSN held; `first - 1` when the segment holds no record.
    last: Lsn,
}

/// Read and check the segment at `path`, appending its records past `after`
/// to `out`.
fn load_segment(
    vfs: &dyn Vfs,
    path: &Path,
    first: Lsn,
    expected: Option<Lsn>,
    after: Lsn,
    out: &mut Vec<(Lsn, Vec<LogOp>)>,
) -> Result<Loaded> {
    check_segment_start(first, expected, after, path)?;
    let file = vfs.open(path, false).map_err(|e| Error::io("open", path, e))?;
    let bytes = segment::read_all(&*file, path)?;
    let scan = segment::scan_segment(&bytes, first, path)?;
    decode_after(&bytes, &scan.records, after, path, out)?;
    let last = scan.records.last().map_or(Lsn(first.0.saturating_sub(1)), |r| r.0);
    Ok(Loaded { file, bytes, scan, last })
}

/// An empty directory: a new store (checkpoint LSN 0) gets its first segment.
/// A checkpoint past 0 with no log means the log was lost.
fn start_fresh(vfs: &dyn Vfs, dir: &Path, after: Lsn) -> Result<Recovered> {
    if after != Lsn(0) {
        let what = format!("no WAL segment although the checkpoint is at lsn {}", after.0);
        return Err(Error::corrupted(dir, 0, what));
    }
    let active = segment::create_segment(vfs, dir, after.next())?;
    vfs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    let (records, sealed) = (Vec::new(), VecDeque::new());
    Ok(Recovered { records, sealed, active, last_lsn: after, synced_claimed: Lsn(0), name_durable: true })
}

/// Segments must continue the LSN sequence. A gap reaches here only where
/// the checkpoint covers every missing LSN (a trimmed segment whose removal
/// a crash undid, while a later removal survived): any other ended the log
/// (`read_log`). What is left to refuse: a segment overlapping the one
/// before, or a first segment starting past the checkpoint.
fn check_segment_start(first: Lsn, expected: Option<Lsn>, after: Lsn, path: &Path) -> Result<()> {
    if first == Lsn(0) {
        return Err(Error::corrupted(path, 0, "segment named for lsn 0, which no record has"));
    }
    let covered = first <= after.next();
    match expected {
        None if covered => Ok(()),
        None => {
            let what = format!("log starts at lsn {} but the checkpoint covers only up to lsn {}", first.0, after.0);
            Err(Error::corrupted(path, 0, what))
        }
        Some(e) if first == e || (first > e && covered) => Ok(()),
        Some(e) => {
            let what = format!("segment starts at lsn {} where lsn {} was expected", first.0, e.0);
            Err(Error::corrupted(path, 0, what))
        }
    }
}

/// Decode the ops of every record past `after` into `out`.
fn decode_after(
    bytes: &[u8],
    records: &[(Lsn, Range<usize>)],
    after: Lsn,
    path: &Path,
    out: &mut Vec<(Lsn, Vec<LogOp>)>,
) -> Result<()> {
    for (lsn, range) in records.iter().filter(|r| r.0 > after) {
        // A record passed its CRC, so a payload that does not decode was
        // written wrong, not torn: corruption, never a tail.
        let ops =
            codec::decode_ops(&bytes[range.clone()]).map_err(|why| Error::corrupted(path, range.start as u64, why))?;
        out.push((*lsn, ops));
    }
    Ok(())
}

/// Make the last segment end at its last valid record, durably, so later
/// appends never sit behind garbage. Returns the segment's new length.
fn cut_tail(file: &dyn FileIo, path: &Path, first: Lsn, loaded: &Loaded) -> Result<u64> {
    let (bytes, valid_end) = (&loaded.bytes, loaded.scan.valid_end);
    if !loaded.scan.header_valid {
        log::warn!("{}: torn segment header rewritten (the segment holds no record)", path.display());
        segment::write_header(file, path, first)?;
        return Ok(codec::SEGMENT_HEADER_BYTES as u64);
    }
    if valid_end < bytes.len() {
        let cut = bytes.len() - valid_end;
        if bytes[valid_end..].iter().all(|&b| b == 0) {
            // Space a writer reserved ahead of the log (see `active`), or
            // an unwritten extension: the ordinary end of a crashed log.
            log::info!("{}: cut {cut} zero bytes after the last record at offset {valid_end}", path.display());
        } else {
            log::warn!("{}: cut {cut} bytes of torn or garbage tail at offset {valid_end}", path.display());
        }
        file.set_len(valid_end as u64).map_err(|e| Error::io("truncate", path, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync", path, e))?;
    }
    Ok(valid_end as u64)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::journal::{Journal, JournalConfig, Replay};
    use crate::store::mem_vfs::{CrashMode, MemVfs};
    use crate::store::splitmix::SplitMix64;
    use crate::store::std_vfs::StdVfs;

    const CFG: JournalConfig = JournalConfig { segment_bytes_max: 16 << 20, sync_on_commit: false };

    fn put(i: u64) -> Vec<LogOp> {
        vec![LogOp::Put { key: i.to_be_bytes().to_vec(), value: vec![i as u8; 50] }]
    }

    /// Offset of record `lsn` in a single-segment log of `put` records.
    fn record_offset(lsn: u64) -> u64 {
        let rec = (codec::RECORD_HEADER_BYTES + codec::payload_len(&put(0))) as u64;
        codec::SEGMENT_HEADER_BYTES as u64 + (lsn - 1) * rec
    }

    fn open_std(dir: &Path, after: Lsn) -> Result<(Journal, Replay)> {
        Journal::open(Arc::new(StdVfs), dir, after, CFG)
    }

    /// Append `n` records committed to the OS; `sync` makes them durable.
    fn append_n(j: &Journal, n: u64, sync: bool) {
        for _ in 0..n {
            let lsn = j.append(&put(j.last_lsn().0 + 1)).unwrap();
            j.commit(lsn, false).unwrap();
        }
        if sync {
            j.sync().unwrap();
        }
    }

    fn first_segment(dir: &Path) -> PathBuf {
        segment::segment_path(dir, Lsn(1))
    }

    fn lsns(replay: &Replay) -> Vec<u64> {
        replay.iter().map(|r| r.0 .0).collect()
    }

    fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// A tail that `damage` appends or makes is cut at `valid_end`, and the
    /// log continues there, across another reopen.
    fn tail_is_cut(damage: impl Fn(&Path, u64), records_kept: u64) {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open_std(dir.path(), Lsn(0)).unwrap();
        append_n(&j, 5, false);
        drop(j);
        let seg = first_segment(dir.path());
        damage(&seg, file_len(&seg));
        let (j, replay) = open_std(dir.path(), Lsn(0)).unwrap();
        assert_eq!(lsns(&replay), (1..=records_kept).collect::<Vec<_>>());
        assert_eq!(file_len(&seg), record_offset(records_kept + 1), "tail truncated");
        append_n(&j, 2, true);
        drop(j);
        let (j, replay) = open_std(dir.path(), Lsn(0)).unwrap();
        assert_eq!(lsns(&replay), (1..=records_kept + 2).collect::<Vec<_>>());
        assert_eq!(j.last_lsn(), Lsn(records_kept + 2));
    }

    #[test]
    fn zero_filled_tail_is_cut() {
        tail_is_cut(|p, len| write_at(p, len, &vec![0; 10_000]), 5);
    }

    #[test]
    fn garbage_tail_is_cut() {
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        tail_is_cut(move |p, len| write_at(p, len, &garbage), 5);
    }

    #[test]
    fn record_cut_midway_is_cut() {
        tail_is_cut(
            |p, _| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(record_offset(5) + 30).unwrap(),
            4,
        );
    }

    #[test]
    fn bad_crc_before_records_written_after_a_sync_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open_std(dir.path(), Lsn(0)).unwrap();
        append_n(&j, 5, true);
        append_n(&j, 5, false);
        drop(j);
        let seg = first_segment(dir.path());
        write_at(&seg, record_offset(3) + 40, b"\xFF");
        match open_std(dir.path(), Lsn(0)) {
            Err(Error::Corrupted { path, offset, .. }) => assert_eq!((path, offset), (seg, record_offset(3))),
            other => panic!("expected Corrupted, got {:?}", other.err()),
        }
    }

    #[test]
    fn bad_crc_in_a_cleanly_closed_log_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open_std(dir.path(), Lsn(0)).unwrap();
        append_n(&j, 5, true);
        drop(j);
        let seg = first_segment(dir.path());
        write_at(&seg, record_offset(5) + 40, b"\xFF");
        let err = open_std(dir.path(), Lsn(0)).err().expect("the close marker proves record 5 was durable");
        assert!(matches!(err, Error::Corrupted { offset, .. } if offset == record_offset(5)), "{err}");
        assert!(err.to_string().contains(&seg.display().to_string()), "{err}");
    }

    /// Documented limit: damage to records no later record proves durable
    /// (a crash before any sync) is indistinguishable from a lost tail.
    #[test]
    fn damage_to_records_never_proven_durable_is_a_tail() {
        tail_is_cut(|p, _| write_at(p, record_offset(3) + 40, b"\xFF"), 2);
    }

    #[test]
    fn reopen_without_writes_keeps_one_close_marker() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open_std(dir.path(), Lsn(0)).unwrap();
        append_n(&j, 3, true);
        drop(j);
        let seg = first_segment(dir.path());
        let closed = file_len(&seg);
        assert_eq!(closed, record_offset(4) + codec::RECORD_HEADER_BYTES as u64, "one marker");
        for _ in 0..3 {
            drop(open_std(dir.path(), Lsn(0)).unwrap());
        }
        assert_eq!(file_len(&seg), closed);
    }

    /// 40 records in segments of a few each, synced every 5: later
    /// records claim the earlier ones durable.
    fn rotated_log(dir: &Path) -> Vec<PathBuf> {
        let cfg = JournalConfig { segment_bytes_max: 512, ..CFG };
        let (j, _) = Journal::open(Arc::new(StdVfs), dir, Lsn(0), cfg).unwrap();
        for _ in 0..8 {
            append_n(&j, 5, true);
        }
        drop(j);
        segment::list_segments(&StdVfs, dir).unwrap().into_iter().map(|s| s.1).collect()
    }

    #[test]
    fn missing_segment_is_corruption_unless_the_checkpoint_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let segs = rotated_log(dir.path());
        assert!(segs.len() >= 4);
        std::fs::remove_file(&segs[1]).unwrap();
        // Later records claim the lost ones durable: not a torn seal.
        let after_gap = segs[2..].to_vec();
        assert!(matches!(open_std(dir.path(), Lsn(0)), Err(Error::Corrupted { path, .. }) if after_gap.contains(&path)));
        let third_first = segment::parse_segment_name(segs[2].file_name().unwrap().to_str().unwrap()).unwrap();
        let (_, replay) = open_std(dir.path(), Lsn(third_first.0 - 1)).unwrap();
        assert_eq!(lsns(&replay), (third_first.0..=40).collect::<Vec<_>>());
    }

    #[test]
    fn damage_in_a_sealed_segment_is_corruption_when_later_records_claim_it_durable() {
        let dir = tempfile::tempdir().unwrap();
        let segs = rotated_log(dir.path());
        let len = file_len(&segs[0]);
        std::fs::OpenOptions::new().write(true).open(&segs[0]).unwrap().set_len(len - 5).unwrap();
        assert!(matches!(open_std(dir.path(), Lsn(0)), Err(Error::Corrupted { path, .. }) if segs[1..].contains(&path)));
    }

    /// A rotation leaves the sealed segment's fdatasync to the flusher: a
    /// power loss before it can lose the segment's last records while its
    /// successor's survive. No record claims them durable (a sync waits
    /// for the seal), so the log ends at the tear, and open removes the
    /// later segments before appends take their LSNs again.
    #[test]
    fn a_torn_seal_ends_the_log_and_its_successors_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig { segment_bytes_max: 512, ..CFG };
        let (j, _) = Journal::open(Arc::new(StdVfs), dir.path(), Lsn(0), cfg).unwrap();
        append_n(&j, 3, true);
        append_n(&j, 30, false);
        drop(j);
        let segs = segment::list_segments(&StdVfs, dir.path()).unwrap();
        assert!(segs.len() >= 4);
        let (second_first, torn) = (segs[1].0 .0, &segs[1].1);
        let torn_len = file_len(torn);
        std::fs::OpenOptions::new().write(true).open(torn).unwrap().set_len(torn_len - 5).unwrap();
        let (j, replay) = open_std(dir.path(), Lsn(0)).unwrap();
        let kept = replay.len() as u64;
        assert!(kept >= 3 && kept < segs[2].0 .0 - 1, "the log ends inside the torn segment: {kept}");
        assert_eq!(lsns(&replay), (1..=kept).collect::<Vec<_>>());
        let left: Vec<_> = segment::list_segments(&StdVfs, dir.path()).unwrap().into_iter().map(|s| s.0 .0).collect();
        assert_eq!(left, [1, second_first], "the segments after the tear are gone");
        append_n(&j, 40, true);
        drop(j);
        let (_, replay) = open_std(dir.path(), Lsn(0)).unwrap();
        assert_eq!(lsns(&replay), (1..=kept + 40).collect::<Vec<_>>(), "appends continue at the tear");
    }

    #[test]
    fn log_ending_before_the_checkpoint_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(open_std(dir.path(), Lsn(3)), Err(Error::Corrupted { .. })), "no log at all");
        let (j, _) = open_std(dir.path(), Lsn(0)).unwrap();
        append_n(&j, 3, true);
        drop(j);
        assert!(open_std(dir.path(), Lsn(3)).is_ok());
        assert!(matches!(open_std(dir.path(), Lsn(4)), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn segment_of_unknown_version_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_std(dir.path(), Lsn(0)).unwrap());
        let seg = first_segment(dir.path());
        let mut h = codec::encode_segment_header(Lsn(1));
        h[codec::SEG_VERSION.offset..codec::SEG_VERSION.offset + 4].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&h[codec::SEG_VERSION.offset..]);
        h[codec::SEG_CRC.offset..codec::SEG_CRC.offset + 4].copy_from_slice(&crc.to_le_bytes());
        write_at(&seg, 0, &h);
        match open_std(dir.path(), Lsn(0)) {
            Err(Error::UnsupportedFormat { path, found: 2, supported: 1 }) => assert_eq!(path, seg),
            other => panic!("expected UnsupportedFormat, got {:?}", other.err()),
        }
    }

    #[test]
    fn torn_header_of_a_new_segment_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_std(dir.path(), Lsn(0)).unwrap());
        let seg = first_segment(dir.path());
        std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(7).unwrap();
        let (j, replay) = open_std(dir.path(), Lsn(0)).unwrap();
        assert!(replay.is_empty());
        append_n(&j, 1, true);
        drop(j);
        assert_eq!(lsns(&open_std(dir.path(), Lsn(0)).unwrap().1), vec![1]);
    }

    /// A cleanly closed log proves its records durable, so open syncs
    /// nothing; the active segment's name may then still be unsynced (the
    /// close sealed into a new segment), and the first sync after the
    /// reopen must make it durable with the record it acknowledges.
    #[test]
    fn reopen_without_open_syncs_still_makes_the_next_synced_record_durable() {
        let vfs = MemVfs::new();
        let dir = Path::new("/store/wal");
        let cfg = JournalConfig { segment_bytes_max: 1 << 20, sync_on_commit: false };
        let (j, _) = Journal::open(Arc::new(vfs.clone()), dir, Lsn(0), cfg).unwrap();
        append_n(&j, 3, true);
        j.seal_active().unwrap();
        drop(j);
        let syncs = vfs.syncs_count();
        let (j, replay) = Journal::open(Arc::new(vfs.clone()), dir, Lsn(0), cfg).unwrap();
        assert_eq!(lsns(&replay), vec![1, 2, 3]);
        assert_eq!(vfs.syncs_count(), syncs, "a cleanly closed log needs no sync at open");
        let lsn = j.append(&put(4)).unwrap();
        j.commit(lsn, true).unwrap();
        let after = Arc::new(vfs.crash(CrashMode::DropUnsynced));
        drop(j);
        let (_, replay) = Journal::open(after, dir, Lsn(0), cfg).unwrap();
        assert_eq!(lsns(&replay), vec![1, 2, 3, 4], "the synced record survives with its segment's name");
    }

    /// Power loss under the crate's medium model: unsynced writes dropped or
    /// torn at sector granularity, unsynced names forgotten. Every record
    /// acknowledged as durable must come back, in order, with its ops, and
    /// the log must keep working. Replayable from the printed seed.
    #[test]
    fn power_loss_keeps_every_synced_record() {
        for seed in 0..150u64 {
            let mut rng = SplitMix64::new(seed);
            let cfg = JournalConfig { segment_bytes_max: 256 + rng.below(2048), sync_on_commit: rng.coin() };
            let vfs = MemVfs::new();
            let dir = Path::new("/store/wal");
            let (j, _) = Journal::open(Arc::new(vfs.clone()), dir, Lsn(0), cfg).unwrap();
            let mut durable = 0;
            for i in 1..=rng.below(120) {
                let ops =
                    vec![LogOp::Put { key: i.to_be_bytes().to_vec(), value: vec![i as u8; rng.below(700) as usize] }];
                let lsn = j.append(&ops).unwrap();
                j.commit(lsn, rng.below(8) == 0).unwrap();
                if cfg.sync_on_commit || j.synced_lsn.load(std::sync::atomic::Ordering::Acquire) >= lsn.0 {
                    durable = lsn.0;
                }
            }
            let mode = if rng.coin() { CrashMode::Torn { seed } } else { CrashMode::DropUnsynced };
            let after = Arc::new(vfs.crash(mode));
            drop(j);
            let (j, replay) = Journal::open(after.clone(), dir, Lsn(0), cfg)
                .unwrap_or_else(|e| panic!("seed {seed}: reopen after {mode:?} failed: {e}"));
            assert!(replay.len() as u64 >= durable, "seed {seed}: lost synced records");
            for (n, (lsn, ops)) in replay.iter().enumerate() {
                assert_eq!(lsn.0, n as u64 + 1, "seed {seed}");
                let LogOp::Put { key, value } = &ops[0] else { panic!("seed {seed}: not a put") };
                assert_eq!(key.as_slice(), &lsn.0.to_be_bytes()[..], "seed {seed}");
                assert!(value.iter().all(|&b| b == lsn.0 as u8), "seed {seed}: value of lsn {}", lsn.0);
            }
            append_n(&j, 3, true);
            drop(j);
            let (_, replay2) = Journal::open(after, dir, Lsn(0), cfg).unwrap();
            assert_eq!(replay2.len(), replay.len() + 3, "seed {seed}: appends after recovery");
        }
    }
}
