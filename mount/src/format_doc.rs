//! Ties the `## holt-fs store` section of doc/FORMAT.md to the code: each
//! byte table to its `*_FIELDS` constant in `schema.rs` and to the bytes the
//! codecs write, the key table to the key families of `schema.rs`, and the
//! directory layout to a store that `Store::open` creates; `ctl` ties the
//! `## holt-fs control socket` section to the protocol's messages, `dump`
//! the `## holt-fs dump stream` section to the stream codec.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use crate::fs::acl;
use crate::schema::{self, Dentry, FileKind, Ino, Inode, OrphanReason, Session, Superblock, Timespec, Usage};

const FORMAT_MD: &str = include_str!("../../doc/FORMAT.md");
const SCHEMA_RS: &str = include_str!("schema.rs");
const SECTION_HEADING: &str = "\n## holt-fs store\n";

type Fields = &'static [(&'static str, usize, usize)];
/// A documented field: name, offset, size.
type Row = (String, usize, usize);
/// What a sample must hold in each field, in table order.
type Expected = Vec<(&'static str, Vec<u8>)>;

/// Every fixed-layout value: its `### ` heading, its table, its length.
const VALUES: &[(&str, Fields, usize)] = &[
    ("Superblock", schema::SUPERBLOCK_FIELDS, schema::SUPERBLOCK_BYTES),
    ("Session", schema::SESSION_FIELDS, schema::SESSION_BYTES),
    ("Inode", schema::INODE_FIELDS, schema::INODE_FIXED_BYTES),
    ("Dentry", schema::DENTRY_FIELDS, schema::DENTRY_BYTES),
    ("Orphan marker", schema::ORPHAN_FIELDS, schema::ORPHAN_BYTES),
    ("Usage counter", schema::USAGE_FIELDS, schema::USAGE_BYTES),
    ("ACL header", acl::HEADER_FIELDS, acl::HEADER_BYTES),
    ("ACL entry", acl::ENTRY_FIELDS, acl::ENTRY_BYTES),
    ("u64 counter", schema::COUNTER_FIELDS, schema::COUNTER_BYTES),
];

/// The section's text, from its heading up to the next `## ` heading.
fn section() -> &'static str {
    section_at(SECTION_HEADING)
}

/// The text of the section under `heading` (`\n## title\n`), up to the next `## ` heading.
fn section_at(heading: &str) -> &'static str {
    let start = FORMAT_MD.find(heading).unwrap_or_else(|| panic!("doc/FORMAT.md has a section {heading:?}")) + 1;
    let body = &FORMAT_MD[start..];
    let end = body[heading.len() - 1..].find("\n## ").map_or(body.len(), |i| i + heading.len() - 1);
    &body[..end]
}

/// The section's lines, each with the `### ` heading it sits under.
fn lines_under_headings() -> impl Iterator<Item = (&'static str, &'static str)> {
    lines_under_headings_of(section())
}

fn lines_under_headings_of(text: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    let mut heading = "";
    text.lines().filter_map(move |line| match line.strip_prefix("### ") {
        Some(title) => {
            heading = title.trim();
            None
        }
        None => Some((heading, line)),
    })
}

/// A table row whose first two cells are numbers: `| offset | size | field | meaning |`.
fn byte_row(line: &str) -> Option<Row> {
    let cells: Vec<&str> = line.strip_prefix('|')?.split('|').map(str::trim).collect();
    let offset = cells.first()?.parse().ok()?;
    let size = cells.get(1)?.parse().ok()?;
    Some((cells.get(2)?.trim_matches('`').to_string(), offset, size))
}

/// The section's byte tables, keyed by heading.
fn byte_tables() -> BTreeMap<&'static str, Vec<Row>> {
    let mut tables: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
    for (heading, line) in lines_under_headings() {
        if let Some(row) = byte_row(line) {
            tables.entry(heading).or_default().push(row);
        }
    }
    tables
}

/// First cells of the `### Keys` table, backticks removed: `I/<ino be64>`, ...
fn documented_keys() -> Vec<&'static str> {
    lines_under_headings()
        .filter(|&(heading, line)| heading == "Keys" && line.starts_with("| `"))
        .filter_map(|(_, line)| line.split('|').nth(1))
        .map(|cell| cell.trim().trim_matches('`'))
        .collect()
}

/// The byte strings of schema.rs's `*_KEY` and `*_PREFIX` constants.
fn schema_key_families() -> Vec<&'static str> {
    let families: Vec<&str> = SCHEMA_RS
        .lines()
        .filter(|line| line.contains("_KEY: &[u8] = b\"") || line.contains("_PREFIX: &[u8] = b\""))
        .filter_map(|line| line.split('"').nth(1))
        .collect();
    assert!(families.len() >= 8, "found the key family constants of schema.rs: {families:?}");
    families
}

fn owned(fields: Fields) -> Vec<Row> {
    fields.iter().map(|&(name, offset, size)| (name.to_string(), offset, size)).collect()
}

/// Fields follow each other without gaps or overlaps and fill `total` bytes.
fn assert_tiles(heading: &str, fields: Fields, total: usize) {
    let mut end = 0;
    for &(name, offset, size) in fields {
        assert_eq!(offset, end, "{heading}: {name} does not start where the field before it ends");
        end = offset + size;
    }
    assert_eq!(end, total, "{heading}: fields do not fill the value");
}

/// `encoded` holds each field's expected bytes at the field's offset.
fn assert_fields_at(heading: &str, encoded: &[u8], expected: &Expected) {
    let &(_, fields, total) = VALUES.iter().find(|v| v.0 == heading).expect("sample of a documented value");
    assert_eq!(encoded.len(), total, "{heading}: encoded length");
    let names: Vec<&str> = fields.iter().map(|f| f.0).collect();
    let expected_names: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(names, expected_names, "{heading}: the sample names every field in table order");
    for (&(name, offset, size), (_, bytes)) in fields.iter().zip(expected) {
        assert_eq!(bytes.len(), size, "{heading}: {name} is {size} bytes");
        assert_eq!(&encoded[offset..offset + size], &bytes[..], "{heading}: {name} at offset {offset}");
    }
}

/// No two multi-byte fields of a sample hold the same bytes, so swapped
/// fields show. One-byte fields (version, kind, flag) have too few legal
/// values to keep apart; `reserved` fields are zero.
fn assert_distinct(heading: &str, expected: &Expected) {
    let wide: Vec<_> = expected.iter().filter(|(name, b)| b.len() > 1 && !name.starts_with("reserved")).collect();
    for (i, a) in wide.iter().enumerate() {
        for b in &wide[i + 1..] {
            assert_ne!(a.1, b.1, "{heading}: sample fields {} and {} hold the same bytes", a.0, b.0);
        }
    }
}

fn le(bytes: impl AsRef<[u8]>) -> Vec<u8> {
    bytes.as_ref().to_vec()
}

/// A time whose 12 bytes differ from other samples' (`first` up to 0xf0);
/// the nanoseconds stay below 10^9.
fn time(first: u8) -> Timespec {
    let sec: [u8; 8] = std::array::from_fn(|i| first + i as u8);
    Timespec { sec: i64::from_be_bytes(sec), nsec: u32::from_be_bytes([0x0b, first + 8, first + 9, first + 10]) }
}

fn time_fields(sec: &'static str, nsec: &'static str, t: Timespec) -> Expected {
    vec![(sec, le(t.sec.to_le_bytes())), (nsec, le(t.nsec.to_le_bytes()))]
}

fn superblock_sample() -> (Vec<u8>, Expected) {
    let sb = Superblock { format: 0x1122_3344, uuid: *b"uuid-0123456789a", created: time(0x40) };
    assert_eq!(Superblock::decode(schema::SUPERBLOCK_KEY, &sb.encode()).expect("sample decodes"), sb);
    let mut expected = vec![("version", vec![1]), ("format", le(sb.format.to_le_bytes())), ("uuid", le(sb.uuid))];
    expected.extend(time_fields("created_sec", "created_nsec", sb.created));
    (sb.encode(), expected)
}

fn session_sample() -> (Vec<u8>, Expected) {
    let session = Session { boot_id: *b"boot-0123456789a", clean: true, mounted: time(0x50) };
    assert_eq!(Session::decode(schema::SESSION_KEY, &session.encode()).expect("sample decodes"), session);
    let mut expected = vec![("version", vec![1]), ("boot_id", le(session.boot_id)), ("clean", vec![1])];
    expected.extend(time_fields("mounted_sec", "mounted_nsec", session.mounted));
    (session.encode().to_vec(), expected)
}

/// A directory inode (so that `parent` is set) with every field distinct.
fn inode_value() -> Inode {
    Inode {
        kind: FileKind::Dir,
        perm: 0o1755,
        uid: 0x1122_3344,
        gid: 0x5566_7788,
        rdev: 0x99aa_bbcc,
        nlink: 0x0d0e_0f10,
        size: 0x2122_2324_2526_2728,
        blocks: 0x3132_3334_3536_3738,
        atime: time(0x60),
        mtime: time(0x70),
        ctime: time(0x80),
        crtime: time(0x90),
        flags: 0x0102_0304,
        parent: Ino(0xc1c2_c3c4_c5c6_c7c8),
        target: Vec::new(),
    }
}

fn inode_sample() -> (Vec<u8>, Expected) {
    let i = inode_value();
    let key = schema::inode_key(Ino(9));
    assert_eq!(Inode::decode(&key, &i.encode()).expect("sample decodes"), i);
    let mut expected = vec![("version", vec![1]), ("kind", vec![2]), ("perm", le(i.perm.to_le_bytes()))];
    for (name, x) in [("uid", i.uid), ("gid", i.gid), ("rdev", i.rdev), ("nlink", i.nlink), ("flags", i.flags)] {
        expected.push((name, le(x.to_le_bytes())));
    }
    expected.push(("size", le(i.size.to_le_bytes())));
    expected.push(("blocks", le(i.blocks.to_le_bytes())));
    expected.extend(time_fields("atime_sec", "atime_nsec", i.atime));
    expected.extend(time_fields("mtime_sec", "mtime_nsec", i.mtime));
    expected.extend(time_fields("ctime_sec", "ctime_nsec", i.ctime));
    expected.extend(time_fields("crtime_sec", "crtime_nsec", i.crtime));
    expected.push(("reserved", vec![0; 4]));
    expected.push(("parent", le(i.parent.0.to_le_bytes())));
    expected.push(("target_len", vec![0, 0]));
    (i.encode(), expected)
}

fn dentry_sample() -> (Vec<u8>, Expected) {
    let d = Dentry { ino: Ino(0x0102_0304_0506_0708), kind: FileKind::Socket };
    assert_eq!(Dentry::decode(b"D/", &d.encode()).expect("sample decodes"), d);
    (d.encode().to_vec(), vec![("version", vec![1]), ("kind", vec![5]), ("ino", le(d.ino.0.to_le_bytes()))])
}

/// The one reason is `1`, like the version byte: the value has nothing to swap.
fn orphan_sample() -> (Vec<u8>, Expected) {
    (OrphanReason::Unlinked.encode().to_vec(), vec![("version", vec![1]), ("reason", vec![1])])
}

fn usage_sample() -> (Vec<u8>, Expected) {
    let u = Usage { inodes: -0x0102_0304_0506_0708 };
    assert_eq!(Usage::decode(b"C/used/\x03", &u.encode()).expect("sample decodes"), u);
    (u.encode().to_vec(), vec![("version", vec![1]), ("inodes", le(u.inodes.to_le_bytes())), ("reserved", vec![0; 8])])
}

/// A valid ACL whose first entry is a named user, as the kernel encodes it.
fn acl_encoded() -> Vec<u8> {
    let mut bytes = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [(acl::USER, 6u16, 0x0102_0304u32), (acl::USER_OBJ, 7, u32::MAX), (0x04, 4, u32::MAX), (0x10, 6, u32::MAX), (0x20, 0, u32::MAX)] {
        bytes.extend_from_slice(&tag.to_le_bytes());
        bytes.extend_from_slice(&perm.to_le_bytes());
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    let decoded = acl::Acl::decode(&bytes).expect("sample decodes");
    assert_eq!(decoded.encode(), bytes);
    bytes
}

fn acl_header_sample() -> (Vec<u8>, Expected) {
    (acl_encoded()[..acl::HEADER_BYTES].to_vec(), vec![("version", le(2u32.to_le_bytes()))])
}

fn acl_entry_sample() -> (Vec<u8>, Expected) {
    let first = acl_encoded()[acl::HEADER_BYTES..acl::HEADER_BYTES + acl::ENTRY_BYTES].to_vec();
    let expected = vec![("tag", vec![2, 0]), ("perm", vec![6, 0]), ("id", le(0x0102_0304u32.to_le_bytes()))];
    (first, expected)
}

fn counter_sample() -> (Vec<u8>, Expected) {
    let x = 0x0102_0304_0506_0708u64;
    assert_eq!(schema::decode_u64(schema::NEXT_INO_KEY, &schema::encode_u64(x)).expect("sample decodes"), x);
    (schema::encode_u64(x).to_vec(), vec![("value", le(x.to_le_bytes()))])
}

#[test]
fn every_value_table_matches_its_fields_constant_and_fills_the_value() {
    let tables = byte_tables();
    for &(heading, fields, total) in VALUES {
        assert_eq!(tables.get(heading), Some(&owned(fields)), "doc/FORMAT.md table {heading}");
        assert_tiles(heading, fields, total);
        let text = &section()[section().find(&format!("### {heading}\n")).expect("heading")..];
        let first_paragraph = text.split_once("\n\n").expect("a paragraph follows the heading").1;
        assert!(first_paragraph.starts_with(&format!("{total} bytes")), "{heading}: the doc opens with its length");
    }
    assert_eq!(tables.len(), VALUES.len(), "unexpected tables: {:?}", tables.keys());
}

#[test]
fn encoded_values_hold_each_field_at_its_documented_offset() {
    let samples = [
        ("Superblock", superblock_sample()),
        ("Session", session_sample()),
        ("Inode", inode_sample()),
        ("Dentry", dentry_sample()),
        ("Orphan marker", orphan_sample()),
        ("Usage counter", usage_sample()),
        ("ACL header", acl_header_sample()),
        ("ACL entry", acl_entry_sample()),
        ("u64 counter", counter_sample()),
    ];
    assert_eq!(samples.len(), VALUES.len(), "one sample per documented value");
    for (heading, (encoded, expected)) in &samples {
        assert_distinct(heading, expected);
        assert_fields_at(heading, encoded, expected);
    }
}

#[test]
fn symlink_target_follows_the_fixed_part_of_an_inode() {
    let mut link = Inode::new(FileKind::Symlink, 0o777, 1, 2, time(0x10));
    link.target = b"/some/where".to_vec();
    let v = link.encode();
    let &(_, offset, size) = schema::INODE_FIELDS.iter().find(|f| f.0 == "target_len").expect("target_len field");
    assert_eq!(v[offset..offset + size], (link.target.len() as u16).to_le_bytes());
    assert_eq!(v[schema::INODE_FIXED_BYTES..], link.target[..]);
}

#[test]
fn doc_names_every_key_family_of_the_schema_and_no_other() {
    let families = schema_key_families();
    let documented = documented_keys();
    for family in &families {
        assert!(documented.iter().any(|k| k.starts_with(family)), "key family {family} is documented");
    }
    for key in &documented {
        let fixed = key.split('<').next().expect("split yields one part");
        assert!(families.contains(&fixed), "documented key {key} is a family of schema.rs");
    }
    assert_eq!(documented.len(), families.len(), "one row per family: {documented:?}");
}

#[test]
fn key_builders_follow_the_documented_layout() {
    let ino = Ino(0x0102_0304_0506_0708);
    let be = ino.0.to_be_bytes();
    assert_eq!(schema::inode_key(ino), [&b"I/"[..], &be].concat());
    assert_eq!(schema::orphan_key(ino), [&b"R/"[..], &be].concat());
    assert_eq!(schema::dentry_key(ino, b"name"), [&b"D/"[..], &be, b"/", b"name"].concat());
    assert_eq!(schema::xattr_key(ino, b"user.x"), [&b"X/"[..], &be, b"/", b"user.x"].concat());
    assert_eq!(schema::usage_key(15), b"C/used/\x0f");
}

#[test]
fn doc_lists_the_byte_of_every_file_kind() {
    let kinds = [
        (FileKind::File, "regular file"),
        (FileKind::Dir, "directory"),
        (FileKind::Symlink, "symlink"),
        (FileKind::Fifo, "FIFO"),
        (FileKind::Socket, "socket"),
        (FileKind::CharDev, "character device"),
        (FileKind::BlockDev, "block device"),
    ];
    for (kind, name) in kinds {
        let byte = Dentry { ino: Ino::ROOT, kind }.encode()[1];
        assert!(section().contains(&format!("\n| {byte} | {name} |\n")), "kind byte {byte} ({name}) documented");
    }
}

#[test]
fn store_directory_matches_the_documented_layout() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path().join("store");
    let store = crate::Store::open(&dir, &crate::StoreOptions::default()).expect("a new store opens");
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).expect("path exists").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let lock = std::fs::read_to_string(dir.join("lock")).expect("lock file");
    assert_eq!(lock, format!("{}\n", std::process::id()), "lock holds the daemon's pid and a newline");
    for name in ["LOCK", "frames.dat", "MANIFEST", "wal"] {
        assert!(dir.join("meta").join(name).exists(), "meta/{name} exists");
        assert!(section().contains(name), "meta/{name} is documented");
    }
    store.data.write(Ino(0x1a2b), 0, b"x").expect("object write");
    let object = dir.join("data/2b/0000000000001a2b");
    assert!(section().contains("`data/2b/0000000000001a2b`"));
    assert!(std::fs::symlink_metadata(&object).expect("object at its documented path").is_file());
    assert_eq!(mode(&object), 0o600);
    std::os::unix::fs::symlink(&object, dir.join("data/2b/0000000000002a2b")).expect("plant a symlink");
    let mut buf = [0u8; 1];
    assert!(store.data.read(Ino(0x2a2b), 0, &mut buf).is_err(), "an object symlink is refused, not followed");
}

mod ctl;
mod dump;
