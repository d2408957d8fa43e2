//! Ties the `## holt-fs dump stream` section of doc/FORMAT.md to the
//! stream codec: each byte table to its `fields` constant, each field to
//! the bytes the writer puts at its offset, the tag table to the tags.

use std::collections::BTreeMap;

use super::{byte_row, le, lines_under_headings_of, section_at, time, Row};
use crate::dump::format::{self, fields, InodeRecord, Record, StreamWriter, Totals};
use crate::schema::FileKind;

const SECTION_HEADING: &str = "\n## holt-fs dump stream\n";

fn section() -> &'static str {
    section_at(SECTION_HEADING)
}

/// Every byte table: its heading, its fields, and the bytes of the fixed
/// part it describes (`None`: the length is stated elsewhere).
const TABLES: &[(&str, fields::Fields, usize)] = &[
    ("Preamble", fields::PREAMBLE, format::PREAMBLE_BYTES),
    ("Record", fields::RECORD, format::RECORD_HEAD_BYTES),
    ("Header record", fields::HEADER, 4),
    ("Inode record", fields::INODE, format::INODE_FIXED_BYTES),
    ("Link record", fields::LINK, 9),
    ("Xattr record", fields::XATTR, 1),
    ("Data record", fields::DATA, 8),
    ("Trailer record", fields::TRAILER, 24),
];

fn byte_tables() -> BTreeMap<&'static str, Vec<Row>> {
    let mut tables: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
    for (heading, line) in lines_under_headings_of(section()) {
        if let Some(row) = byte_row(line) {
            tables.entry(heading).or_default().push(row);
        }
    }
    tables
}

#[test]
fn every_byte_table_matches_its_fields_and_states_its_length() {
    let tables = byte_tables();
    for &(heading, fields, total) in TABLES {
        let owned: Vec<Row> = fields.iter().map(|&(n, o, s)| (n.to_string(), o, s)).collect();
        assert_eq!(tables.get(heading), Some(&owned), "doc/FORMAT.md table {heading}");
        let end = fields.iter().fold(0, |end, &(name, offset, size)| {
            assert_eq!(offset, end, "{heading}: {name} starts where the field before it ends");
            offset + size
        });
        assert_eq!(end, total, "{heading}: the fields fill its fixed part");
        if !matches!(heading, "Preamble" | "Record") {
            let text = &section()[section().find(&format!("### {heading}\n")).expect("heading")..];
            let first = text.split_once("\n\n").expect("a paragraph follows").1;
            let unit = if total == 1 { "byte" } else { "bytes" };
            assert!(first.starts_with(&format!("{total} {unit}")), "{heading}: the doc opens with its length");
        }
    }
    assert_eq!(tables.len(), TABLES.len(), "unexpected tables: {:?}", tables.keys());
    assert!(section().contains(&format!("at most {}", format::BODY_BYTES_MAX)), "the body limit is documented");
}

#[test]
fn record_tags_are_listed_exactly() {
    let tags = [
        (format::TAG_HEADER, "Header"),
        (format::TAG_INODE, "Inode"),
        (format::TAG_LINK, "Link"),
        (format::TAG_XATTR, "Xattr"),
        (format::TAG_DATA, "Data"),
        (format::TAG_END, "End"),
        (format::TAG_TRAILER, "Trailer"),
        (format::TAG_ABORT, "Abort"),
    ];
    let rows: Vec<&str> = lines_under_headings_of(section())
        .filter(|&(h, line)| h == "Record tags" && line.starts_with("| ") && !line.starts_with("| tag"))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(rows.len(), tags.len(), "one row per tag: {rows:?}");
    for (tag, name) in tags {
        assert!(rows.iter().any(|r| r.starts_with(&format!("| {tag} | {name} |"))), "tag {tag} ({name}) documented");
    }
}

/// The bytes of `record` as the writer puts them, head and checksum cut off.
fn body_of(record: &Record) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new()).expect("writes to memory");
    w.write(record).expect("writes to memory");
    let bytes = w.into_inner();
    let head = &bytes[format::PREAMBLE_BYTES..format::PREAMBLE_BYTES + format::RECORD_HEAD_BYTES];
    assert_eq!(head[0], record.tag());
    let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
    let start = format::PREAMBLE_BYTES + format::RECORD_HEAD_BYTES;
    assert_eq!(bytes.len(), start + len + format::RECORD_CRC_BYTES, "head, body, checksum");
    bytes[start..start + len].to_vec()
}

/// `body` holds each named field's bytes at its documented offset.
fn assert_at(heading: &str, body: &[u8], expected: &[(&str, Vec<u8>)]) {
    let &(_, fields, _) = TABLES.iter().find(|t| t.0 == heading).expect("a documented table");
    let names: Vec<&str> = fields.iter().map(|f| f.0).collect();
    let sample: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(names, sample, "{heading}: the sample names every field in order");
    for (&(name, offset, size), (_, bytes)) in fields.iter().zip(expected) {
        assert_eq!(&body[offset..offset + size], &bytes[..], "{heading}: {name} at offset {offset}");
    }
}

#[test]
fn the_writer_puts_each_field_at_its_documented_offset() {
    let preamble = StreamWriter::new(Vec::new()).expect("writes").into_inner();
    assert_at("Preamble", &preamble, &[("magic", le(b"HOLTDUMP")), ("version", le(1u32.to_le_bytes()))]);
    assert_at("Header record", &body_of(&Record::Header { flags: 3 }), &[("flags", le(3u32.to_le_bytes()))]);
    let i = InodeRecord {
        id: 0x0102_0304_0506_0708,
        kind: FileKind::Symlink,
        perm: 0o1755,
        uid: 0x1122_3344,
        gid: 0x5566_7788,
        rdev: 0x99aa_bbcc,
        nlink: 0x0d0e_0f10,
        size: 0x2122_2324_2526_2728,
        atime: time(0x30),
        mtime: time(0x40),
        ctime: time(0x50),
        name: b"name".to_vec(),
        target: b"target".to_vec(),
    };
    let body = body_of(&Record::Inode(i.clone()));
    let mut expected = vec![("id", le(i.id.to_le_bytes())), ("kind", vec![3]), ("perm", le(i.perm.to_le_bytes()))];
    for (name, x) in [("uid", i.uid), ("gid", i.gid), ("rdev", i.rdev), ("nlink", i.nlink)] {
        expected.push((name, le(x.to_le_bytes())));
    }
    expected.push(("size", le(i.size.to_le_bytes())));
    for (sec, nsec, t) in [("atime_sec", "atime_nsec", i.atime), ("mtime_sec", "mtime_nsec", i.mtime), ("ctime_sec", "ctime_nsec", i.ctime)] {
        expected.push((sec, le(t.sec.to_le_bytes())));
        expected.push((nsec, le(t.nsec.to_le_bytes())));
    }
    expected.extend([("name_len", vec![4]), ("target_len", le(6u16.to_le_bytes()))]);
    assert_at("Inode record", &body, &expected);
    assert_eq!(&body[format::INODE_FIXED_BYTES..], b"nametarget", "name, then target, after the fixed part");
    let link = body_of(&Record::Link { id: 0x0807_0605_0403_0201, name: b"ln".to_vec() });
    assert_at("Link record", &link, &[("id", le(0x0807_0605_0403_0201u64.to_le_bytes())), ("name_len", vec![2])]);
    assert_eq!(&link[9..], b"ln");
    let xattr = body_of(&Record::Xattr { name: b"user.k".to_vec(), value: b"v\0".to_vec() });
    assert_at("Xattr record", &xattr, &[("name_len", vec![6])]);
    assert_eq!(&xattr[1..], b"user.kv\0");
    let data = body_of(&Record::Data { offset: 0x1000, bytes: b"abc".to_vec() });
    assert_at("Data record", &data, &[("offset", le(0x1000u64.to_le_bytes()))]);
    assert_eq!(&data[8..], b"abc");
    let t = Totals { inodes: 0x11, names: 0x2222, data_bytes: 0x33_3333 };
    let expected = [("inodes", le(t.inodes.to_le_bytes())), ("names", le(t.names.to_le_bytes())), ("data_bytes", le(t.data_bytes.to_le_bytes()))];
    assert_at("Trailer record", &body_of(&Record::Trailer(t)), &expected);
    assert!(body_of(&Record::End).is_empty());
}

#[test]
fn the_header_flags_are_documented_by_bit() {
    let row = lines_under_headings_of(section()).find(|&(h, l)| h == "Header record" && l.contains("`flags`"));
    let row = row.expect("the flags row").1;
    assert_eq!((format::FLAG_META_ONLY, format::FLAG_NO_CTIME), (1, 2));
    assert!(row.contains("bit 0 `meta_only`") && row.contains("bit 1 `no_ctime`"), "{row}");
}
