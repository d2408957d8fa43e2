//! The check after a remount: each thread's directory must be exactly its
//! model (every acknowledged operation, nothing removed coming back), or
//! exactly its model with the in-flight operation applied, as far as a
//! kill can have applied it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::model::{Content, Kind, Model, NodeId, PAGE_BYTES};
use crate::observe::{self, Seen, SeenKind};
use crate::op::Op;
use crate::rng::fnv;

/// Differences listed for one candidate at most.
const DIFFS_MAX: usize = 12;

/// Which state of its thread the filesystem showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// No operation was in flight.
    Acked,
    /// The in-flight operation had not happened (or, for a write, no page of it landed).
    Before,
    /// The in-flight operation had happened.
    After,
    /// The in-flight write had landed in part: some of its pages, not all.
    Partial,
}

/// Check `model.root` against `model`, widened by `in_flight`; on success
/// `model` becomes the state found.
pub fn thread(mount: &Path, model: &mut Model, in_flight: Option<&Op>) -> Result<Found, String> {
    let seen = observe::walk(mount, &model.root)?;
    let before = differences(model, &seen);
    if before.is_empty() {
        return Ok(if in_flight.is_some() { Found::Before } else { Found::Acked });
    }
    let Some(op) = in_flight else {
        return Err(format!("no operation in flight; differences:\n  {}", before.join("\n  ")));
    };
    let mut after = model.clone();
    op.apply_in_flight(&mut after);
    let after_diffs = differences(&after, &seen);
    if after_diffs.is_empty() {
        after.settle(&|path: &str| seen[path].bytes.clone());
        let mut whole = model.clone();
        op.apply(&mut whole);
        let found = if let Op::Write { path, .. } = op {
            if whole.node(path).kind == after.node(path).kind {
                Found::After
            } else {
                Found::Partial
            }
        } else {
            Found::After
        };
        *model = after;
        return Ok(found);
    }
    Err(format!(
        "in flight: {op}\n differences from the state before it:\n  {}\n differences from the state after it:\n  {}",
        before.join("\n  "),
        after_diffs.join("\n  ")
    ))
}

/// How `seen` departs from `model`, at most `DIFFS_MAX` lines.
pub fn differences(model: &Model, seen: &BTreeMap<String, Seen>) -> Vec<String> {
    let mut out = Vec::new();
    let mut inos = Inos::default();
    for (path, &id) in &model.paths {
        match seen.get(path) {
            None => out.push(format!("{path}: missing (acknowledged, {})", kind_name(&model.nodes[&id].kind))),
            Some(s) => {
                if let Err(e) = inos.pair(id, s.ino) {
                    out.push(format!("{path}: {e}"));
                }
                entry(model, path, id, s, &mut out);
            }
        }
    }
    for path in seen.keys().filter(|p| !model.paths.contains_key(*p)) {
        out.push(format!("{path}: present, but no acknowledged operation left this name"));
    }
    out.truncate(DIFFS_MAX);
    out
}

/// Model nodes and inode numbers must correspond one to one.
#[derive(Default)]
struct Inos {
    ino_of: HashMap<NodeId, u64>,
    node_of: HashMap<u64, NodeId>,
}

impl Inos {
    fn pair(&mut self, id: NodeId, ino: u64) -> Result<(), String> {
        let ino_was = *self.ino_of.entry(id).or_insert(ino);
        let id_was = *self.node_of.entry(ino).or_insert(id);
        if ino_was != ino {
            return Err(format!("inode {ino}, but a hard link of the same file has inode {ino_was}"));
        }
        if id_was != id {
            return Err(format!("inode {ino} is shared with a different file"));
        }
        Ok(())
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Dir => "directory",
        Kind::File(_) => "file",
        Kind::Symlink(_) => "symlink",
    }
}

/// One name's facts.
fn entry(model: &Model, path: &str, id: NodeId, s: &Seen, out: &mut Vec<String>) {
    let node = &model.nodes[&id];
    let mut bad = |what: String| out.push(format!("{path}: {what}"));
    match (&node.kind, s.kind) {
        (Kind::Dir, SeenKind::Dir) => {
            let subdirs = model.children(path).filter(|c| model.node(c).kind == Kind::Dir).count() as u64;
            if s.nlink != 2 + subdirs {
                bad(format!("directory nlink {} but the model has {subdirs} subdirectories", s.nlink));
            }
        }
        (Kind::File(content), SeenKind::File) => {
            let links = model.links(id) as u64;
            if s.nlink != links {
                bad(format!("nlink {} but the file has {links} names", s.nlink));
            }
            if let Err(e) = contents(content, &s.bytes, s.size) {
                bad(e);
            }
        }
        (Kind::Symlink(target), SeenKind::Symlink) => {
            if *target != s.bytes {
                bad(format!(
                    "symlink to {:?}, expected {:?}",
                    String::from_utf8_lossy(&s.bytes),
                    String::from_utf8_lossy(target)
                ));
            }
            return;
        }
        (want, got) => return bad(format!("is a {got:?}, expected a {}", kind_name(want))),
    }
    if s.mode != node.mode {
        bad(format!("mode {:o}, expected {:o}", s.mode, node.mode));
    }
    if node.mtime.is_some_and(|t| t != s.mtime) {
        let t = node.mtime.expect("just checked");
        bad(format!("mtime {}.{:09}, expected {}.{:09} (set by utimens)", s.mtime.sec, s.mtime.nsec, t.sec, t.nsec));
    }
    if s.xattrs != node.xattrs {
        let names = |x: &BTreeMap<Vec<u8>, Vec<u8>>| {
            x.iter().map(|(k, v)| format!("{}={:016x}", String::from_utf8_lossy(k), fnv(v))).collect::<Vec<_>>()
        };
        bad(format!("xattrs {:?}, expected {:?}", names(&s.xattrs), names(&node.xattrs)));
    }
}

/// A file's bytes (and its stat size) against what the model allows.
pub fn contents(want: &Content, got: &[u8], size: u64) -> Result<(), String> {
    if size != got.len() as u64 {
        return Err(format!("stat size {size} but {} bytes read", got.len()));
    }
    match want {
        Content::Exact(bytes) if bytes == got => Ok(()),
        Content::Exact(bytes) => {
            let first = bytes.iter().zip(got).position(|(a, b)| a != b).unwrap_or(bytes.len().min(got.len()));
            Err(format!(
                "contents: {} bytes (fnv {:016x}), expected {} bytes (fnv {:016x}); first difference at byte {first}",
                got.len(),
                fnv(got),
                bytes.len(),
                fnv(bytes)
            ))
        }
        Content::Torn { old, off, new } => torn(old, *off, new, got),
    }
}

/// An in-flight write of `new` at `off` over `old`, as a kill may leave it:
/// bytes outside the write unchanged, each page of the write all old or all
/// new, and a size that grew only to the end of a page of the write that
/// landed (or to the write's end).
fn torn(old: &[u8], off: usize, new: &[u8], got: &[u8]) -> Result<(), String> {
    let end = off + new.len();
    let old_at = |i: usize| old.get(i).copied().unwrap_or(0);
    let size = got.len();
    let grew = size > old.len();
    if size < old.len() || (grew && (size <= off || size > end || (size != end && !size.is_multiple_of(PAGE_BYTES)))) {
        return Err(format!("size {size} after an in-flight write of [{off}, {end}) to a file of {} bytes", old.len()));
    }
    if let Some(i) = (0..size).find(|&i| (i < off || i >= end) && got[i] != old_at(i)) {
        return Err(format!("byte {i}, outside the in-flight write [{off}, {end}), changed"));
    }
    let mut start = off;
    while start < end.min(size) {
        let stop = ((start / PAGE_BYTES + 1) * PAGE_BYTES).min(end).min(size);
        let is_new = got[start..stop] == new[start - off..stop - off];
        let is_old = (start..stop).all(|i| got[i] == old_at(i));
        if !is_new && !is_old {
            return Err(format!(
                "bytes [{start}, {stop}) of the in-flight write [{off}, {end}) are neither all old nor all new"
            ));
        }
        if grew && stop == size && !is_new {
            return Err(format!("size grew to {size} but the write's page ending there did not land"));
        }
        start = stop;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_write_accepts_each_page_old_or_new_and_nothing_else() {
        let old = vec![1u8; 5000];
        let new = vec![2u8; 8000];
        let mut got = old.clone();
        assert!(torn(&old, 3000, &new, &got).is_ok(), "nothing landed");
        got.resize(8192, 0);
        got[4096..8192].fill(2);
        assert!(torn(&old, 3000, &new, &got).is_ok(), "the second page landed, the first not");
        got[3000..4096].fill(2);
        got[4000] = 1;
        assert!(torn(&old, 3000, &new, &got).is_err(), "a page half old, half new");
        let mut short = old.clone();
        short.resize(6000, 0);
        assert!(torn(&old, 3000, &new, &short).is_err(), "a size that is no page end");
        let mut grew_old = old.clone();
        grew_old.resize(8192, 0);
        assert!(torn(&old, 3000, &new, &grew_old).is_err(), "a size that grew with its page not landed");
    }

    #[test]
    fn torn_write_past_the_end_keeps_the_hole_zero() {
        let old = vec![1u8; 100];
        let new = vec![2u8; 10];
        let mut got = old.clone();
        got.resize(210, 0);
        got[200..].fill(2);
        assert!(torn(&old, 200, &new, &got).is_ok());
        got[150] = 9;
        assert!(torn(&old, 200, &new, &got).is_err());
    }
}
