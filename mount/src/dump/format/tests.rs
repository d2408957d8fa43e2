//! The stream codec alone: every record round-trips, and damage of any
//! kind (a flipped bit anywhere, a cut at any byte, records swapped,
//! dropped or repeated, trailing bytes) is an error, never a record.

use super::*;

fn t(sec: i64, nsec: u32) -> Timespec {
    Timespec { sec, nsec }
}

fn inode(id: u64, kind: FileKind, name: &[u8], target: &[u8]) -> InodeRecord {
    InodeRecord {
        id,
        kind,
        perm: 0o4755,
        uid: 1000,
        gid: 100,
        rdev: 0x0801,
        nlink: 2,
        size: 1 << 40,
        atime: t(-5, 1),
        mtime: t(1_700_000_000, 999_999_999),
        ctime: t(0, 0),
        name: name.to_vec(),
        target: target.to_vec(),
    }
}

/// One record of every kind, odd names included.
fn sample() -> Vec<Record> {
    vec![
        Record::Header { flags: FLAG_NO_CTIME },
        Record::Inode(inode(1, FileKind::Dir, b"", b"")),
        Record::Xattr { name: b"user.k".to_vec(), value: vec![0, 255, 10] },
        Record::Inode(inode(2, FileKind::File, b"new\nline \xff", b"")),
        Record::Data { offset: 4096, bytes: vec![7; 5000] },
        Record::Inode(inode(3, FileKind::Symlink, &[b'n'; 255], b"/a/b")),
        Record::Link { id: 2, name: b"second".to_vec() },
        Record::End,
        Record::Trailer(Totals { inodes: 3, names: 3, data_bytes: 5000 }),
    ]
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new()).unwrap();
    for r in records {
        w.write(r).unwrap();
    }
    assert_eq!(w.bytes() as usize, w.out.len());
    w.into_inner()
}

/// Every record of `bytes`, or the first error; the end must follow the trailer.
fn decode(bytes: &[u8]) -> Result<Vec<Record>, StreamError> {
    let mut r = StreamReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec);
    }
    if !matches!(out.last(), Some(Record::Trailer(_))) {
        return Err(StreamError::Truncated { offset: r.offset() });
    }
    r.expect_end()?;
    Ok(out)
}

#[test]
fn every_record_round_trips() {
    let records = sample();
    let bytes = encode(&records);
    assert_eq!(&bytes[..8], b"HOLTDUMP");
    assert_eq!(decode(&bytes).unwrap(), records);
}

#[test]
fn any_flipped_bit_is_refused() {
    let bytes = encode(&sample());
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            assert!(decode(&bad).is_err(), "a flip of bit {bit:#x} at byte {i} went unnoticed");
        }
    }
}

#[test]
fn a_cut_at_any_byte_is_truncation() {
    let bytes = encode(&sample());
    for cut in 0..bytes.len() {
        match decode(&bytes[..cut]) {
            Err(StreamError::Truncated { .. }) => {}
            Err(StreamError::NotADump) if cut < MAGIC.len() => {}
            other => panic!("a stream cut at byte {cut} gave {other:?}"),
        }
    }
}

#[test]
fn dropped_repeated_or_swapped_records_are_refused() {
    let records = sample();
    let mut dropped = records.clone();
    dropped.remove(4);
    let mut repeated = records.clone();
    repeated.insert(2, records[2].clone());
    let mut swapped = records.clone();
    swapped.swap(5, 6);
    for damaged in [dropped, repeated, swapped] {
        // Spliced from a good stream: each record keeps its original checksum.
        let good = encode(&records);
        let spans = record_spans(&good);
        let order: Vec<usize> = damaged.iter().map(|r| records.iter().position(|o| o == r).unwrap()).collect();
        let mut spliced = good[..PREAMBLE_BYTES].to_vec();
        for i in order {
            spliced.extend_from_slice(&good[spans[i].clone()]);
        }
        let err = decode(&spliced).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}

/// The byte range of each record of a good stream.
fn record_spans(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut pos = PREAMBLE_BYTES;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 1..pos + 5].try_into().unwrap()) as usize;
        let end = pos + RECORD_HEAD_BYTES + len + RECORD_CRC_BYTES;
        spans.push(pos..end);
        pos = end;
    }
    spans
}

#[test]
fn wrong_magic_version_trailing_bytes_and_huge_lengths_are_refused() {
    let bytes = encode(&sample());
    assert!(matches!(decode(b"GARBAGE!xxxxxxxx"), Err(StreamError::NotADump)));
    let mut newer = bytes.clone();
    newer[8] = 2;
    assert!(matches!(decode(&newer), Err(StreamError::UnsupportedVersion(2))));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(decode(&trailing).unwrap_err().to_string().contains("after the trailer"));
    let mut huge = bytes[..PREAMBLE_BYTES].to_vec();
    huge.extend_from_slice(&[TAG_HEADER, 0xff, 0xff, 0xff, 0x7f]);
    assert!(decode(&huge).unwrap_err().to_string().contains("over the"), "no allocation of a corrupt length");
}

#[test]
fn records_break_no_rule_of_the_format() {
    let bad_name = Record::Link { id: 1, name: b"a/b".to_vec() };
    let no_header = encode(&[Record::End]);
    assert!(decode(&no_header).unwrap_err().to_string().contains("does not open with a header"));
    let bytes = encode(&[Record::Header { flags: 0 }, bad_name]);
    assert!(decode(&bytes).unwrap_err().to_string().contains("bad entry name"));
    let unknown_flag = encode(&[Record::Header { flags: 0x100 }]);
    assert!(decode(&unknown_flag).unwrap_err().to_string().contains("unknown header flags"));
    let target_on_file = Record::Inode(inode(2, FileKind::File, b"f", b"x"));
    assert!(decode(&encode(&[Record::Header { flags: 0 }, target_on_file])).is_err());
}

#[test]
fn an_abort_record_ends_the_stream_with_its_message() {
    let bytes = encode(&[Record::Header { flags: 0 }, Record::Abort { message: "disk on fire".into() }]);
    match decode(&bytes) {
        Err(StreamError::Aborted { message }) => assert_eq!(message, "disk on fire"),
        other => panic!("{other:?}"),
    }
}
