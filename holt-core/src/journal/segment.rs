//! Segment files: naming, creation, and the scan that classifies a segment's
//! bytes into valid records, a cut-off tail, or corruption.
//!
//! Tail rule (DESIGN §2.5): bad bytes after the last valid record of a
//! segment — torn, zero-filled or garbage — end its records. Bad bytes are
//! corruption when a valid record after them proves they had been durable
//! (its `synced_lsn` covers them). A torn header is a lost creation unless
//! a record claims the segment durable (`torn_header`). Whether a tail ends
//! the whole log is the reader's call: a sealed segment's tail is either
//! space its seal cut and a power loss restored (its successor continues
//! its LSNs) or the end of a seal whose fdatasync never completed
//! (`reader`).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::active::ActiveSegment;
use super::codec::{
    self, HeaderError, RecordRead, FORMAT_VERSION, MARKER_LSN, RECORD_HEADER_BYTES, RECORD_MAGIC, SEGMENT_HEADER_BYTES,
};
use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::store::vfs::{FileIo, Vfs};

const SEGMENT_NAME_PREFIX: &str = "wal-";
const SEGMENT_NAME_SUFFIX: &str = ".log";
/// Digits of the first LSN in a segment name: every u64 fits, and names sort
/// in LSN order.
const SEGMENT_NAME_LSN_DIGITS: usize = 20;

/// `dir/wal-<first lsn as 20 digits>.log`.
pub(crate) fn segment_path(dir: &Path, first: Lsn) -> PathBuf {
    dir.join(format!("{SEGMENT_NAME_PREFIX}{:0width$}{SEGMENT_NAME_SUFFIX}", first.0, width = SEGMENT_NAME_LSN_DIGITS))
}

/// The first LSN named by a segment file name; `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(SEGMENT_NAME_PREFIX)?.strip_suffix(SEGMENT_NAME_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// Segment files of `dir` as (first LSN, path), in LSN order. Other files are
/// ignored: the directory may hold the rest of the store.
pub(crate) fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let entries = vfs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut segs: Vec<(Lsn, PathBuf)> = entries
        .into_iter()
        .filter_map(|path| {
            let first = parse_segment_name(path.file_name()?.to_str()?)?;
            Some((first, path))
        })
        .collect();
    segs.sort();
    Ok(segs)
}

/// A segment no longer appended to; its name is durable, its data once its
/// seal's fdatasync completed (`Journal::sync_seals`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SealedSegment {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// Last LSN held; `first_lsn - 1` for a segment with no record.
    pub last_lsn: Lsn,
    pub bytes: u64,
}

/// Create (or reset) the segment starting at `first` and make its header
/// durable before any record is written to it, so a record never sits
/// behind a lost header. The name is not made durable here.
pub(crate) fn create_segment(vfs: &dyn Vfs, dir: &Path, first: Lsn) -> Result<ActiveSegment> {
    let path = segment_path(dir, first);
    let file = vfs.open(&path, true).map_err(|e| Error::io("create", &path, e))?;
    write_header(&*file, &path, first)?;
    Ok(ActiveSegment::new(file, path, first, SEGMENT_HEADER_BYTES as u64))
}

/// Replace the file's content with a fresh header (durable on return).
pub(crate) fn write_header(file: &dyn FileIo, path: &Path, first: Lsn) -> Result<()> {
    file.set_len(0).map_err(|e| Error::io("truncate", path, e))?;
    file.write_at(&codec::encode_segment_header(first), 0).map_err(|e| Error::io("write", path, e))?;
    file.sync_data().map_err(|e| Error::io("fdatasync", path, e))
}

/// The whole content of a segment file.
pub(crate) fn read_all(file: &dyn FileIo, path: &Path) -> Result<Vec<u8>> {
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    let len = usize::try_from(len).map_err(|_| Error::corrupted(path, 0, "segment larger than memory"))?;
    let mut buf = vec![0u8; len];
    let n = file.read_at(&mut buf, 0).map_err(|e| Error::io("read", path, e))?;
    buf.truncate(n);
    Ok(buf)
}

/// What a scan found in one segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// False when a last segment's header is torn or garbage (and no valid
    /// record follows): the segment is empty and its header must be rewritten.
    pub header_valid: bool,
    /// Valid op records in order, LSNs contiguous from the segment's first LSN.
    pub records: Vec<(Lsn, Range<usize>)>,
    /// Largest `synced_lsn` claimed by a valid record or marker.
    pub synced_claimed: Lsn,
    /// End of the last valid record. `< bytes.len()` means a tail: cut off
    /// in the last segment; in a sealed one, see `reader`.
    pub valid_end: usize,
}

/// Classify `bytes`, the content of the segment named for `first`.
/// Errors: `UnsupportedFormat` for a well-formed header or record of another
/// version; `Corrupted` (path and offset) for damage that is not a tail
/// (see `check_tail`) or a record out of LSN sequence.
pub(crate) fn scan_segment(bytes: &[u8], first: Lsn, path: &Path) -> Result<SegmentScan> {
    match codec::decode_segment_header(bytes) {
        Ok(lsn) if lsn == first => {}
        Ok(lsn) => {
            let what = format!("segment header names first lsn {} but the file name {}", lsn.0, first.0);
            return Err(Error::corrupted(path, 0, what));
        }
        Err(HeaderError::Version(found)) => {
            return Err(Error::UnsupportedFormat { path: path.into(), found, supported: FORMAT_VERSION })
        }
        Err(HeaderError::Invalid(why)) => return torn_header(bytes, first, path, why),
    }
    scan_records(bytes, first, path)
}

/// A segment whose header does not check out. The header is written
/// before any record and is durable once any record is (the same file's
/// fdatasync), so a record claiming one of this segment's LSNs durable
/// proves the header was durable: damage. Without such a claim the
/// header's write was lost with every record behind it unsynced (a
/// rotation that adopted a spare does not sync the header): a torn
/// creation, which empties the segment.
fn torn_header(bytes: &[u8], first: Lsn, path: &Path, why: &str) -> Result<SegmentScan> {
    let unsynced = match unsynced_records_from(bytes, 0, first) {
        Ok(n) => n,
        Err(valid) => {
            let what = format!("{why}, but the record at offset {} shows lsn {} was durable", valid.offset, first.0);
            return Err(Error::corrupted(path, 0, what));
        }
    };
    if unsynced > 0 {
        log::warn!("{}: {why}; {unsynced} unsynced record(s) behind it discarded", path.display());
    }
    Ok(SegmentScan { header_valid: false, records: Vec::new(), synced_claimed: Lsn(0), valid_end: 0 })
}

/// Count the valid records at or after `from`, or return the first that
/// claims `lsn` durable.
pub(super) fn unsynced_records_from(bytes: &[u8], from: usize, lsn: Lsn) -> std::result::Result<usize, FoundRecord> {
    let (mut count, mut from) = (0, from);
    while let Some(valid) = next_valid_record(bytes, from) {
        if valid.synced >= lsn {
            return Err(valid);
        }
        count += 1;
        from = valid.offset + valid.bytes;
    }
    Ok(count)
}

/// Walk the records after a valid segment header.
fn scan_records(bytes: &[u8], first: Lsn, path: &Path) -> Result<SegmentScan> {
    let mut scan = SegmentScan { header_valid: true, records: Vec::new(), synced_claimed: Lsn(0), valid_end: 0 };
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut expected = first;
    while pos < bytes.len() {
        match codec::read_record(&bytes[pos..]) {
            RecordRead::Valid { version, .. } if version != FORMAT_VERSION => {
                return Err(Error::UnsupportedFormat { path: path.into(), found: version, supported: FORMAT_VERSION });
            }
            RecordRead::Valid { lsn, synced, bytes: n, .. } => {
                check_sequence(lsn, synced, n, expected).map_err(|what| Error::corrupted(path, pos as u64, what))?;
                if lsn != MARKER_LSN {
                    scan.records.push((lsn, pos..pos + n));
                    expected = expected.next();
                }
                scan.synced_claimed = scan.synced_claimed.max(synced);
                pos += n;
            }
            RecordRead::Invalid(why) => {
                check_tail(bytes, pos, expected, why, path)?;
                break;
            }
        }
    }
    scan.valid_end = pos;
    Ok(scan)
}

/// A valid record must be the next LSN and claim durability only of LSNs
/// before it; a marker has no payload and claims only LSNs already seen.
fn check_sequence(lsn: Lsn, synced: Lsn, bytes: usize, expected: Lsn) -> std::result::Result<(), String> {
    if lsn == MARKER_LSN {
        if bytes != RECORD_HEADER_BYTES {
            return Err("sync marker with a payload".into());
        }
        if synced >= expected {
            return Err(format!("sync marker claims lsn {} durable before lsn {} was written", synced.0, expected.0));
        }
        return Ok(());
    }
    if lsn != expected {
        return Err(format!("record has lsn {} where lsn {} was expected", lsn.0, expected.0));
    }
    if synced >= lsn {
        return Err(format!("record {} claims lsn {} durable before it was written", lsn.0, synced.0));
    }
    Ok(())
}

/// The bytes at `pos` (where lsn `expected` should start) are not a record:
/// they end the segment's records — unless a later valid record claims
/// `expected` was already durable when it was written: then the bad bytes
/// were durable too, and are corruption. Without such a claim, valid
/// records after the bad bytes are unsynced writes a power failure kept
/// while losing earlier ones; nothing among them was acknowledged as
/// durable (a sync covering them would have covered `expected`).
fn check_tail(bytes: &[u8], pos: usize, expected: Lsn, why: &str, path: &Path) -> Result<()> {
    let discarded = unsynced_records_from(bytes, pos + 1, expected).map_err(|valid| {
        let what = format!("{why}, but the record at offset {} shows lsn {} was durable", valid.offset, expected.0);
        Error::corrupted(path, pos as u64, what)
    })?;
    if discarded > 0 {
        log::warn!(
            "{}: {why} at offset {pos}; {discarded} later unsynced record(s) discarded with the tail",
            path.display()
        );
    }
    Ok(())
}

/// A valid record found by scanning.
pub(crate) struct FoundRecord {
    pub offset: usize,
    pub synced: Lsn,
    pub bytes: usize,
}

/// The first position at or after `from` where a record with a valid magic,
/// length and CRC starts.
pub(crate) fn next_valid_record(bytes: &[u8], from: usize) -> Option<FoundRecord> {
    let last_start = bytes.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last_start).find_map(|offset| {
        if bytes[offset..offset + RECORD_MAGIC.len()] != RECORD_MAGIC {
            return None;
        }
        match codec::read_record(&bytes[offset..]) {
            RecordRead::Valid { synced, bytes, .. } => Some(FoundRecord { offset, synced, bytes }),
            RecordRead::Invalid(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::LogOp;

    fn put(i: u64) -> Vec<LogOp> {
        vec![LogOp::Put { key: i.to_be_bytes().to_vec(), value: vec![i as u8; 100] }]
    }

    /// A segment starting at lsn 1 holding records 1..=n, each claiming
    /// `synced(lsn)` durable.
    fn segment_bytes(n: u64, synced: impl Fn(u64) -> u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = codec::encode_segment_header(Lsn(1)).to_vec();
        let mut starts = Vec::new();
        for lsn in 1..=n {
            starts.push(bytes.len());
            codec::encode_record(&mut bytes, Lsn(lsn), Lsn(synced(lsn)), &put(lsn));
        }
        (bytes, starts)
    }

    fn path() -> PathBuf {
        PathBuf::from("/wal/wal-00000000000000000001.log")
    }

    fn scan(bytes: &[u8]) -> Result<SegmentScan> {
        scan_segment(bytes, Lsn(1), &path())
    }

    fn corrupted_at(r: Result<SegmentScan>) -> u64 {
        match r {
            Err(Error::Corrupted { path: p, offset, .. }) if p == path() => offset,
            other => panic!("expected Corrupted in {}, got {other:?}", path().display()),
        }
    }

    #[test]
    fn names_round_trip_and_other_files_are_not_segments() {
        let p = segment_path(Path::new("/d"), Lsn(17));
        assert_eq!(p, PathBuf::from("/d/wal-00000000000000000017.log"));
        assert_eq!(parse_segment_name("wal-00000000000000000017.log"), Some(Lsn(17)));
        assert_eq!(parse_segment_name(&format!("wal-{}.log", u64::MAX)), Some(Lsn(u64::MAX)));
        for other in [
            "wal-17.log",
            "wal-0000000000000000001x.log",
            "wal-00000000000000000017.tmp",
            "manifest",
            "wal-+0000000000000000017.log",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn clean_segment_scans_every_record() {
        let (bytes, starts) = segment_bytes(5, |l| l - 1);
        let s = scan(&bytes).unwrap();
        assert!(s.header_valid);
        assert_eq!(s.valid_end, bytes.len());
        assert_eq!(s.synced_claimed, Lsn(4));
        let lsns: Vec<_> = s.records.iter().map(|r| (r.0, r.1.start)).collect();
        assert_eq!(lsns, (1..=5).map(Lsn).zip(starts).collect::<Vec<_>>());
    }

    #[test]
    fn zero_garbage_and_cut_tails_end_the_last_segment() {
        let (good, starts) = segment_bytes(3, |_| 0);
        let tails: [Vec<u8>; 3] = [vec![0; 5000], (0..777u32).map(|i| (i * 31 % 251) as u8).collect(), Vec::new()];
        for tail in tails {
            let bytes = [&good[..], &tail[..]].concat();
            let s = scan(&bytes).unwrap();
            assert_eq!((s.records.len(), s.valid_end), (3, good.len()));
        }
        let cut = &good[..starts[2] + 40];
        let s = scan(cut).unwrap();
        assert_eq!((s.records.len(), s.valid_end), (2, starts[2]));
    }

    #[test]
    fn bad_crc_followed_by_a_record_proving_it_durable_is_corruption() {
        // Record 3 claims records up to 2 were durable; record 2 is damaged.
        let (mut bytes, starts) = segment_bytes(4, |l| l - 1);
        bytes[starts[1] + RECORD_HEADER_BYTES + 10] ^= 0x40;
        assert_eq!(corrupted_at(scan(&bytes)), starts[1] as u64);
    }

    #[test]
    fn close_marker_proves_the_last_records_durable() {
        let (mut bytes, starts) = segment_bytes(3, |_| 0);
        codec::encode_marker(&mut bytes, Lsn(3));
        let s = scan(&bytes).unwrap();
        assert_eq!((s.records.len(), s.valid_end, s.synced_claimed), (3, bytes.len(), Lsn(3)));
        bytes[starts[2] + RECORD_HEADER_BYTES] ^= 1;
        assert_eq!(corrupted_at(scan(&bytes)), starts[2] as u64);
    }

    /// Power loss keeps a random subset of unsynced sectors: a zeroed hole
    /// followed by records that claim nothing past it is a lost tail.
    #[test]
    fn hole_followed_by_unsynced_records_is_a_tail() {
        let (mut bytes, starts) = segment_bytes(6, |l| l.min(2) - 1);
        bytes[starts[2]..starts[3]].fill(0);
        let s = scan(&bytes).unwrap();
        assert_eq!((s.records.len(), s.valid_end), (2, starts[2]));
    }

    #[test]
    fn record_out_of_sequence_is_corruption() {
        let mut bytes = codec::encode_segment_header(Lsn(1)).to_vec();
        codec::encode_record(&mut bytes, Lsn(1), Lsn(0), &put(1));
        let second = bytes.len();
        codec::encode_record(&mut bytes, Lsn(3), Lsn(0), &put(3));
        assert_eq!(corrupted_at(scan(&bytes)), second as u64);
    }

    #[test]
    fn record_claiming_its_own_durability_is_corruption() {
        let mut bytes = codec::encode_segment_header(Lsn(1)).to_vec();
        codec::encode_marker(&mut bytes, Lsn(1));
        assert_eq!(corrupted_at(scan(&bytes)), SEGMENT_HEADER_BYTES as u64);
    }

    #[test]
    fn header_named_for_another_lsn_is_corruption() {
        let bytes = codec::encode_segment_header(Lsn(2));
        assert_eq!(corrupted_at(scan(&bytes)), 0);
    }

    #[test]
    fn torn_header_without_records_is_an_empty_segment() {
        for bytes in [Vec::new(), vec![0u8; 24], b"HOLTW".to_vec()] {
            let s = scan(&bytes).unwrap();
            assert_eq!((s.header_valid, s.records.len(), s.valid_end), (false, 0, 0));
        }
    }

    /// A rotation that adopted a spare writes the header unsynced: lost
    /// with unsynced records behind it, it is a torn creation; behind a
    /// record that claims the segment durable, it is damage.
    #[test]
    fn torn_header_is_damage_only_when_a_record_claims_the_segment_durable() {
        let (mut bytes, _) = segment_bytes(3, |_| 0);
        bytes[..SEGMENT_HEADER_BYTES].fill(0);
        let s = scan(&bytes).unwrap();
        assert_eq!((s.header_valid, s.records.len(), s.valid_end), (false, 0, 0));
        let (mut bytes, _) = segment_bytes(3, |l| l.min(2) - 1);
        bytes[..SEGMENT_HEADER_BYTES].fill(0);
        assert_eq!(corrupted_at(scan(&bytes)), 0, "record 2 claims lsn 1 durable");
    }

    #[test]
    fn record_of_other_version_is_unsupported() {
        let (mut bytes, starts) = segment_bytes(2, |_| 0);
        let rec = &mut bytes[starts[1]..];
        rec[codec::REC_VERSION.offset..codec::REC_VERSION.offset + 4].copy_from_slice(&9u32.to_le_bytes());
        let crc = crc32c::crc32c(&rec[codec::REC_VERSION.offset..]);
        rec[codec::REC_CRC.offset..codec::REC_CRC.offset + 4].copy_from_slice(&crc.to_le_bytes());
        match scan(&bytes) {
            Err(Error::UnsupportedFormat { found: 9, supported: FORMAT_VERSION, .. }) => {}
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }
}
