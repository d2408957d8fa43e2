//! Byte formats of the write-ahead log: segment header, record header and
//! record payload. Pure: no I/O, no locks. Every decoder bounds-checks each
//! length against the bytes it was given and returns an error, never panics.
//!
//! All integers are little-endian. `doc/FORMAT.md` (section "WAL") documents
//! each byte; a test below parses that table and compares it with the field
//! constants here, which the encoders and decoders use directly.

use crate::ids::Lsn;
use crate::op::LogOp;

/// A fixed-position field of a header: the single source of its offset and
/// size, shared by the codec and the documentation test.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

impl Field {
    const fn new(name: &'static str, offset: usize, size: usize) -> Field {
        Field { name, offset, size }
    }

    fn end(self) -> usize {
        self.offset + self.size
    }
}

/// The format version this build writes and reads, for segments and records.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"HOLTWAL\0";
pub(crate) const SEG_MAGIC: Field = Field::new("magic", 0, 8);
/// CRC32C of header bytes `[SEG_VERSION.offset, SEGMENT_HEADER_BYTES)`.
pub(crate) const SEG_CRC: Field = Field::new("crc", 8, 4);
pub(crate) const SEG_VERSION: Field = Field::new("version", 12, 4);
pub(crate) const SEG_FIRST_LSN: Field = Field::new("first_lsn", 16, 8);
pub(crate) const SEGMENT_HEADER_BYTES: usize = 24;
/// The segment header table of doc/FORMAT.md (checked by `format_doc`).
#[cfg(test)]
pub(crate) const SEGMENT_HEADER_FIELDS: [Field; 4] = [SEG_MAGIC, SEG_CRC, SEG_VERSION, SEG_FIRST_LSN];

/// First bytes of every record.
pub(crate) const RECORD_MAGIC: [u8; 4] = *b"HREC";
pub(crate) const REC_MAGIC: Field = Field::new("magic", 0, 4);
/// CRC32C of record bytes `[REC_VERSION.offset, RECORD_HEADER_BYTES + payload_len)`:
/// the rest of the header and the whole payload.
pub(crate) const REC_CRC: Field = Field::new("crc", 4, 4);
pub(crate) const REC_VERSION: Field = Field::new("version", 8, 4);
pub(crate) const REC_PAYLOAD_LEN: Field = Field::new("payload_len", 12, 4);
/// The record's LSN; `MARKER_LSN` for a sync marker.
pub(crate) const REC_LSN: Field = Field::new("lsn", 16, 8);
/// Every record with an LSN up to this one was durable (data and segment
/// name) before this record was encoded. Recovery uses it to tell lost
/// unsynced writes (a tail) from damage to durable records (corruption).
pub(crate) const REC_SYNCED_LSN: Field = Field::new("synced_lsn", 24, 8);
pub(crate) const RECORD_HEADER_BYTES: usize = 32;
/// The record header table of doc/FORMAT.md (checked by `format_doc`).
#[cfg(test)]
pub(crate) const RECORD_HEADER_FIELDS: [Field; 6] =
    [REC_MAGIC, REC_CRC, REC_VERSION, REC_PAYLOAD_LEN, REC_LSN, REC_SYNCED_LSN];

/// LSN field of a sync marker: a record with an empty payload that takes no
/// LSN and only carries `synced_lsn` (written at close, when no later record
/// would carry it).
pub(crate) const MARKER_LSN: Lsn = Lsn(0);

/// Largest payload of one record (one batch of ops). Bounds what a decoder
/// allocates for a length read from disk, and what one append may stage.
pub(crate) const RECORD_PAYLOAD_BYTES_MAX: usize = 64 << 20;

/// Op tags of the payload.
pub(crate) const TAG_PUT: u8 = 1;
pub(crate) const TAG_DELETE: u8 = 2;
pub(crate) const TAG_RENAME: u8 = 3;
/// Bytes of the op count at the start of a payload.
pub(crate) const OP_COUNT_BYTES: usize = 4;
/// Bytes of each length prefix inside an op.
pub(crate) const OP_LEN_BYTES: usize = 4;
/// Smallest encoded op (a Delete of an empty key): bounds the op count a
/// payload of a given length can claim.
const OP_BYTES_MIN: usize = 1 + OP_LEN_BYTES;

fn put_u32(buf: &mut [u8], field: Field, v: u32) {
    debug_assert_eq!(field.size, 4);
    buf[field.offset..field.end()].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], field: Field, v: u64) {
    debug_assert_eq!(field.size, 8);
    buf[field.offset..field.end()].copy_from_slice(&v.to_le_bytes());
}

/// Callers pass a slice of at least the header size (checked by them).
fn get_u32(buf: &[u8], field: Field) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[field.offset..field.end()]);
    u32::from_le_bytes(b)
}

fn get_u64(buf: &[u8], field: Field) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[field.offset..field.end()]);
    u64::from_le_bytes(b)
}

/// Why a segment header does not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer bytes than a header, wrong magic or wrong CRC: not a header.
    Invalid(&'static str),
    /// A well-formed header of a version this build does not read.
    Version(u32),
}

pub(crate) fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[SEG_MAGIC.offset..SEG_MAGIC.end()].copy_from_slice(&SEGMENT_MAGIC);
    put_u32(&mut h, SEG_VERSION, FORMAT_VERSION);
    put_u64(&mut h, SEG_FIRST_LSN, first_lsn.0);
    let crc = crc32c::crc32c(&h[SEG_VERSION.offset..]);
    put_u32(&mut h, SEG_CRC, crc);
    h
}

/// Decode the header at the start of `bytes`; returns the segment's first LSN.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<Lsn, HeaderError> {
    let Some(h) = bytes.get(..SEGMENT_HEADER_BYTES) else {
        return Err(HeaderError::Invalid("segment header cut short"));
    };
    if h[SEG_MAGIC.offset..SEG_MAGIC.end()] != SEGMENT_MAGIC {
        return Err(HeaderError::Invalid("bad segment magic"));
    }
    if crc32c::crc32c(&h[SEG_VERSION.offset..]) != get_u32(h, SEG_CRC) {
        return Err(HeaderError::Invalid("segment header CRC mismatch"));
    }
    let version = get_u32(h, SEG_VERSION);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(Lsn(get_u64(h, SEG_FIRST_LSN)))
}

/// Exact payload bytes of `ops`.
pub(crate) fn payload_len(ops: &[LogOp]) -> usize {
    let field = |b: &Vec<u8>| OP_LEN_BYTES + b.len();
    OP_COUNT_BYTES
        + ops
            .iter()
            .map(|op| {
                1 + match op {
                    LogOp::Put { key, value } => field(key) + field(value),
                    LogOp::Delete { key } => field(key),
                    LogOp::Rename { src, dst, value } => field(src) + field(dst) + field(value),
                }
            })
            .sum::<usize>()
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Fits: the caller checked the whole payload against RECORD_PAYLOAD_BYTES_MAX < u32::MAX.
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Append one encoded record to `out`. `synced` is the durable LSN when
/// encoding (see `REC_SYNCED_LSN`); it is below `lsn`. The caller has
/// checked `payload_len(ops) <= RECORD_PAYLOAD_BYTES_MAX`.
pub(crate) fn encode_record(out: &mut Vec<u8>, lsn: Lsn, synced: Lsn, ops: &[LogOp]) {
    assert!(lsn != MARKER_LSN && synced < lsn, "an op record has a real LSN, durable only after it");
    let len = payload_len(ops);
    assert!(len <= RECORD_PAYLOAD_BYTES_MAX, "caller checks the payload limit");
    let start = out.len();
    out.reserve(RECORD_HEADER_BYTES + len);
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            LogOp::Put { key, value } => {
                out.push(TAG_PUT);
                push_bytes(out, key);
                push_bytes(out, value);
            }
            LogOp::Delete { key } => {
                out.push(TAG_DELETE);
                push_bytes(out, key);
            }
            LogOp::Rename { src, dst, value } => {
                out.push(TAG_RENAME);
                push_bytes(out, src);
                push_bytes(out, dst);
                push_bytes(out, value);
            }
        }
    }
    debug_assert_eq!(out.len() - start, RECORD_HEADER_BYTES + len);
    seal_header(&mut out[start..], lsn, synced);
}

/// Append a sync marker claiming every LSN up to `synced` durable.
pub(crate) fn encode_marker(out: &mut Vec<u8>, synced: Lsn) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    seal_header(&mut out[start..], MARKER_LSN, synced);
}

/// Fill in the header of `rec` (header and payload, header zeroed).
fn seal_header(rec: &mut [u8], lsn: Lsn, synced: Lsn) {
    let len = rec.len() - RECORD_HEADER_BYTES;
    rec[REC_MAGIC.offset..REC_MAGIC.end()].copy_from_slice(&RECORD_MAGIC);
    put_u32(rec, REC_VERSION, FORMAT_VERSION);
    put_u32(rec, REC_PAYLOAD_LEN, len as u32);
    put_u64(rec, REC_LSN, lsn.0);
    put_u64(rec, REC_SYNCED_LSN, synced.0);
    let crc = crc32c::crc32c(&rec[REC_VERSION.offset..]);
    put_u32(rec, REC_CRC, crc);
}

/// Outcome of reading the bytes at one position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordRead {
    /// A record whose magic, length and CRC check out; `bytes` is its total
    /// encoded size (header and payload).
    Valid { lsn: Lsn, synced: Lsn, version: u32, bytes: usize },
    /// Not a record: torn, zeroed, garbage or failing its CRC.
    Invalid(&'static str),
}

/// Check the record starting at `bytes[0]` without decoding its ops.
pub(crate) fn read_record(bytes: &[u8]) -> RecordRead {
    let Some(h) = bytes.get(..RECORD_HEADER_BYTES) else {
        return RecordRead::Invalid("record header cut short");
    };
    if h[REC_MAGIC.offset..REC_MAGIC.end()] != RECORD_MAGIC {
        return RecordRead::Invalid("bad record magic");
    }
    let len = get_u32(h, REC_PAYLOAD_LEN) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return RecordRead::Invalid("record length exceeds the maximum");
    }
    let Some(rec) = bytes.get(..RECORD_HEADER_BYTES + len) else {
        return RecordRead::Invalid("record cut short");
    };
    if crc32c::crc32c(&rec[REC_VERSION.offset..]) != get_u32(h, REC_CRC) {
        return RecordRead::Invalid("record CRC mismatch");
    }
    RecordRead::Valid {
        lsn: Lsn(get_u64(h, REC_LSN)),
        synced: Lsn(get_u64(h, REC_SYNCED_LSN)),
        version: get_u32(h, REC_VERSION),
        bytes: rec.len(),
    }
}

/// A bounds-checked reader over a payload.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.rest.len() {
            return Err("op field runs past the payload");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, &'static str> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Decode the payload of a record that `read_record` found valid.
/// `record` is the whole record (header and payload).
pub(crate) fn decode_ops(record: &[u8]) -> Result<Vec<LogOp>, &'static str> {
    let payload = record.get(RECORD_HEADER_BYTES..).ok_or("record header cut short")?;
    let mut cur = Cursor { rest: payload };
    let count = cur.u32()? as usize;
    if count > payload.len() / OP_BYTES_MIN {
        return Err("op count exceeds what the payload can hold");
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op = match cur.u8()? {
            TAG_PUT => LogOp::Put { key: cur.bytes()?, value: cur.bytes()? },
            TAG_DELETE => LogOp::Delete { key: cur.bytes()? },
            TAG_RENAME => LogOp::Rename { src: cur.bytes()?, dst: cur.bytes()?, value: cur.bytes()? },
            _ => return Err("unknown op tag"),
        };
        ops.push(op);
    }
    if !cur.rest.is_empty() {
        return Err("trailing bytes after the last op");
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::splitmix::SplitMix64;

    fn all_kinds() -> Vec<LogOp> {
        vec![
            LogOp::Put { key: Vec::new(), value: Vec::new() },
            LogOp::Put { key: b"a\0b".to_vec(), value: vec![0xAB; 128 * 1024] },
            LogOp::Delete { key: Vec::new() },
            LogOp::Delete { key: b"\0\0".to_vec() },
            LogOp::Rename { src: b"s\0".to_vec(), dst: Vec::new(), value: vec![0; 128 * 1024] },
            LogOp::Rename { src: b"a".to_vec(), dst: b"a\0".to_vec(), value: b"v".to_vec() },
        ]
    }

    fn decode_one(rec: &[u8]) -> (Lsn, Lsn, Vec<LogOp>) {
        match read_record(rec) {
            RecordRead::Valid { lsn, synced, version, bytes } => {
                assert_eq!(version, FORMAT_VERSION);
                assert_eq!(bytes, rec.len());
                (lsn, synced, decode_ops(rec).expect("valid payload"))
            }
            RecordRead::Invalid(why) => panic!("record does not read back: {why}"),
        }
    }

    #[test]
    fn record_round_trips_every_op_kind() {
        let ops = all_kinds();
        let mut buf = Vec::new();
        encode_record(&mut buf, Lsn(7), Lsn(3), &ops);
        assert_eq!(buf.len(), RECORD_HEADER_BYTES + payload_len(&ops));
        assert_eq!(decode_one(&buf), (Lsn(7), Lsn(3), ops));
    }

    #[test]
    fn empty_batch_and_marker_round_trip() {
        let mut buf = Vec::new();
        encode_record(&mut buf, Lsn(1), Lsn(0), &[]);
        assert_eq!(decode_one(&buf), (Lsn(1), Lsn(0), Vec::new()));
        let mut marker = Vec::new();
        encode_marker(&mut marker, Lsn(9));
        assert_eq!(marker.len(), RECORD_HEADER_BYTES);
        let read = read_record(&marker);
        assert_eq!(
            read,
            RecordRead::Valid { lsn: MARKER_LSN, synced: Lsn(9), version: FORMAT_VERSION, bytes: marker.len() }
        );
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = encode_segment_header(Lsn(42));
        assert_eq!(decode_segment_header(&h), Ok(Lsn(42)));
        assert!(matches!(decode_segment_header(&h[..10]), Err(HeaderError::Invalid(_))));
        assert!(matches!(decode_segment_header(&[0u8; 24]), Err(HeaderError::Invalid(_))));
        let mut bad = h;
        bad[SEG_FIRST_LSN.offset] ^= 1;
        assert!(matches!(decode_segment_header(&bad), Err(HeaderError::Invalid(_))));
    }

    #[test]
    fn segment_header_of_other_version_is_reported_as_such() {
        let mut h = encode_segment_header(Lsn(1));
        put_u32(&mut h, SEG_VERSION, 2);
        let crc = crc32c::crc32c(&h[SEG_VERSION.offset..]);
        put_u32(&mut h, SEG_CRC, crc);
        assert_eq!(decode_segment_header(&h), Err(HeaderError::Version(2)));
    }

    #[test]
    fn every_truncation_of_a_record_is_invalid() {
        let mut buf = Vec::new();
        encode_record(&mut buf, Lsn(1), Lsn(0), &all_kinds()[2..4]);
        for cut in 0..buf.len() {
            assert!(matches!(read_record(&buf[..cut]), RecordRead::Invalid(_)), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_reading() {
        let mut buf = Vec::new();
        encode_record(&mut buf, Lsn(1), Lsn(0), &[]);
        put_u32(&mut buf, REC_PAYLOAD_LEN, u32::MAX);
        assert_eq!(read_record(&buf), RecordRead::Invalid("record length exceeds the maximum"));
    }

    /// Payloads with a valid CRC but lying lengths or counts must fail to
    /// decode, not panic or allocate what they claim.
    #[test]
    fn lying_payloads_fail_to_decode() {
        let header = [0u8; RECORD_HEADER_BYTES];
        let cases: [&[u8]; 6] = [
            &[],
            &[0xFF, 0xFF, 0xFF, 0xFF],
            &[1, 0, 0, 0, TAG_PUT, 0xFF, 0xFF, 0xFF, 0xFF],
            &[1, 0, 0, 0, 9, 0, 0, 0, 0],
            &[1, 0, 0, 0, TAG_DELETE, 0, 0, 0, 0, 7],
            &[2, 0, 0, 0, TAG_DELETE, 0, 0, 0, 0],
        ];
        for payload in cases {
            let rec = [&header[..], payload].concat();
            assert!(decode_ops(&rec).is_err(), "payload {payload:?} decoded");
        }
    }

    /// Seeded fuzz: random bytes and bit flips never panic the decoders.
    #[test]
    fn decoders_never_panic_on_random_bytes() {
        let mut rng = SplitMix64::new(0x5EED_0001);
        let mut good = Vec::new();
        encode_record(&mut good, Lsn(5), Lsn(4), &all_kinds()[2..]);
        for round in 0..2000 {
            let mut bytes =
                if round % 2 == 0 { good.clone() } else { (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect() };
            for _ in 0..=rng.below(4) {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            let _ = read_record(&bytes);
            let _ = decode_ops(&bytes);
            let _ = decode_segment_header(&bytes);
        }
    }

    #[test]
    fn format_doc_states_codec_constants() {
        let doc = include_str!("../../../doc/FORMAT.md");
        let wal = &doc[doc.find("\n## WAL\n").expect("FORMAT.md has a WAL section")..];
        assert!(wal.contains(&format!("{SEGMENT_HEADER_BYTES} bytes at offset 0")));
        assert!(wal.contains(&format!("{RECORD_HEADER_BYTES} bytes, followed by")));
        assert!(wal.contains(&format!("format version, `{FORMAT_VERSION}`")));
        assert!(wal.contains(&format!("`{}`", String::from_utf8_lossy(&RECORD_MAGIC))));
        assert!(wal.contains("`HOLTWAL\\0`") && SEGMENT_MAGIC == *b"HOLTWAL\0");
        assert!(wal.contains(&format!("at most {} MiB", RECORD_PAYLOAD_BYTES_MAX >> 20)));
        assert!(wal.contains(&format!("| 0 | {OP_COUNT_BYTES} | `op_count` |")));
        for (tag, name) in [(TAG_PUT, "Put"), (TAG_DELETE, "Delete"), (TAG_RENAME, "Rename")] {
            assert!(wal.contains(&format!("| {tag} | `{name}` |")), "tag {tag} of {name}");
        }
    }
}
