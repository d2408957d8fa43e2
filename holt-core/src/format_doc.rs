//! Ties every byte table of doc/FORMAT.md to the layout constants the code
//! encodes with: one parser, one test per section.

use std::collections::BTreeMap;

use crate::journal::codec::{RECORD_HEADER_BYTES, RECORD_HEADER_FIELDS, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_FIELDS};
use crate::layout::{self, node};
use crate::store::{filter_file, frame_file, manifest};

const FORMAT_MD: &str = include_str!("../../doc/FORMAT.md");

type Table = Vec<(String, usize, usize)>;

/// Tables of the `## {section}` section, keyed by their `### ` heading. A
/// row counts when its first two cells are numbers: `| offset | size | field | ... |`.
pub(crate) fn section_tables(section: &str) -> BTreeMap<String, Table> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut inside = false;
    let mut heading = String::new();
    for line in FORMAT_MD.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            inside = title.trim() == section;
        } else if let Some(title) = line.strip_prefix("### ") {
            heading = title.trim().to_string();
        } else if inside && line.starts_with('|') {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if let (Some(Ok(offset)), Some(Ok(size)), Some(field)) =
                (cells.get(1).map(|c| c.parse()), cells.get(2).map(|c| c.parse()), cells.get(3))
            {
                tables.entry(heading.clone()).or_default().push((field.trim_matches('`').to_string(), offset, size));
            }
        }
    }
    tables
}

fn owned(fields: &[(&str, usize, usize)]) -> Table {
    fields.iter().map(|&(name, offset, size)| (name.to_string(), offset, size)).collect()
}

/// Fields follow each other without gaps or overlaps and fill `total` bytes.
pub(crate) fn assert_tiles(fields: &[(&str, usize, usize)], total: usize) {
    let mut end = 0;
    for &(name, offset, size) in fields {
        assert_eq!(offset, end, "field {name} does not start where the previous one ends");
        end = offset + size;
    }
    assert_eq!(end, total, "fields do not fill the structure");
}

#[test]
fn frame_file_tables_match_code() {
    let tables = section_tables("Frame file");
    assert_eq!(tables.get("Header"), Some(&owned(frame_file::HEADER_FIELDS)));
    assert_eq!(tables.get("Slot"), Some(&owned(frame_file::SLOT_FIELDS)));
    assert_eq!(tables.get("Slot, version 1"), Some(&owned(frame_file::SLOT_V1_FIELDS)));
    assert_eq!(tables.len(), 3, "unexpected tables: {:?}", tables.keys());
    assert_tiles(frame_file::HEADER_FIELDS, frame_file::HEADER_BYTES);
    assert_tiles(frame_file::SLOT_FIELDS, frame_file::PAGE_TABLE_BYTES + frame_file::FRAME_BYTES);
    assert_tiles(frame_file::SLOT_V1_FIELDS, frame_file::FRAME_BYTES);
}

#[test]
fn manifest_tables_match_code() {
    let tables = section_tables("Manifest");
    assert_eq!(tables.get("Header"), Some(&owned(manifest::HEADER_FIELDS)));
    assert_eq!(tables.get("Entry"), Some(&owned(manifest::ENTRY_FIELDS)));
    assert_eq!(tables.get("Trailer"), Some(&owned(manifest::TRAILER_FIELDS)));
    assert_eq!(tables.len(), 3, "unexpected tables: {:?}", tables.keys());
    assert_tiles(manifest::HEADER_FIELDS, manifest::MANIFEST_HEADER_BYTES);
    assert_tiles(manifest::ENTRY_FIELDS, manifest::ENTRY_BYTES);
    assert_tiles(manifest::TRAILER_FIELDS, manifest::TRAILER_BYTES);
}

#[test]
fn filter_file_tables_match_code() {
    let tables = section_tables("Miss filter file");
    assert_eq!(tables.get("Header"), Some(&owned(filter_file::HEADER_FIELDS)));
    assert_eq!(tables.len(), 1, "unexpected tables: {:?}", tables.keys());
    assert_tiles(filter_file::HEADER_FIELDS, filter_file::HEADER_BYTES);
}

#[test]
fn wal_tables_match_code() {
    let tables = section_tables("WAL");
    let as_rows = |fields: &[crate::journal::codec::Field]| -> Table {
        fields.iter().map(|f| (f.name.to_string(), f.offset, f.size)).collect()
    };
    assert_eq!(tables.get("Segment header"), Some(&as_rows(&SEGMENT_HEADER_FIELDS)));
    assert_eq!(tables.get("Record header"), Some(&as_rows(&RECORD_HEADER_FIELDS)));
    let tiles = |fields: &[crate::journal::codec::Field]| -> Vec<(&'static str, usize, usize)> {
        fields.iter().map(|f| (f.name, f.offset, f.size)).collect()
    };
    assert_tiles(&tiles(&SEGMENT_HEADER_FIELDS), SEGMENT_HEADER_BYTES);
    assert_tiles(&tiles(&RECORD_HEADER_FIELDS), RECORD_HEADER_BYTES);
}

#[test]
fn blob_frame_tables_match_code() {
    let tables = section_tables("Blob frame");
    assert_eq!(tables.get("Frame header"), Some(&owned(layout::HEADER_FIELDS)));
    assert_eq!(tables.get("Leaf node"), Some(&owned(node::LEAF_FIELDS)));
    assert_eq!(tables.get("Inner node"), Some(&owned(node::INNER_FIELDS)));
    assert_eq!(tables.get("Link node"), Some(&owned(node::LINK_FIELDS)));
    assert_eq!(tables.get("Child field"), Some(&owned(node::CHILD_FIELD_BITS)));
    assert_eq!(tables.len(), 5, "unexpected tables: {:?}", tables.keys());
    assert_tiles(node::CHILD_FIELD_BITS, 32);
    assert_tiles(layout::HEADER_FIELDS, layout::HEADER_BYTES);
    assert_tiles(node::LEAF_FIELDS, node::LEAF_HEADER_BYTES);
    assert_tiles(node::INNER_FIELDS, node::INNER_HEADER_BYTES);
    assert_tiles(node::LINK_FIELDS, node::LINK_BYTES);
    let text = &FORMAT_MD[FORMAT_MD.find("## Blob frame").expect("section")..];
    for (kind, name) in [(node::KIND_LEAF, "leaf"), (node::KIND_N4, "Node4"), (node::KIND_N16, "Node16"),
        (node::KIND_N48, "Node48"), (node::KIND_N256, "Node256"), (node::KIND_LINK, "link")] {
        assert!(text.contains(&format!("| {kind} | {name} |")), "kind {kind} ({name}) documented");
    }
    assert!(text.contains(&format!("{} bytes", layout::FRAME_BYTES)));
}
