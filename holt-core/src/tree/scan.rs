//! Ordered scan: collect up to `limit` keys `>= lower` that start with
//! `prefix`, in one optimistic pass over every frame it touches. Any frame
//! that changes during the pass invalidates the whole chunk, which is then
//! collected again, so a chunk is always a consistent cut of the keys it
//! covers.

use std::cmp::Ordering;

use super::descend::{corrupt_frame, enter, follow, retry, FrameView};
use super::{Owned, Step, ROOT_FRAME, ROOT_SLOT};
use crate::error::Result;
use crate::ids::FrameId;
use crate::layout::node::{link_target, InnerAt, LeafAt, KIND_LEAF, KIND_LINK};
use crate::layout::{Slot, NIL};
use crate::store::pool::Pool;

/// Nodes visited between two validations of every frame read so far; bounds
/// the work done on bytes torn by a concurrent writer.
const STEPS_PER_CHECK: usize = 256;
/// A scan visiting more nodes than this without finishing reports corruption.
const STEPS_MAX: usize = 1 << 30;

enum Task {
    /// Visit the node in `slot` of frame `f` (index into the views), whose
    /// keys all share the first `depth` bytes; `bounded` means they also
    /// share them with `lower`, so `lower` still constrains this subtree.
    Node { f: usize, slot: Slot, depth: usize, bounded: bool },
    /// Visit the children of an inner node from byte `from`; its prefix ends
    /// at `depth`. Only the child under `tight` stays bounded.
    Children { f: usize, slot: Slot, depth: usize, from: u16, tight: Option<u8> },
}

pub(crate) struct Scan<'a> {
    pub lower: &'a [u8],
    pub prefix: &'a [u8],
    pub limit: usize,
}

/// What a scan found, and the frames (in visit order, with the versions it
/// read) that its answer depends on.
pub(crate) struct ScanResult {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub frames: Vec<(FrameId, Option<u64>)>,
}

pub(crate) fn scan(pool: &Pool, owned: &Owned<'_>, q: &Scan<'_>) -> Result<ScanResult> {
    retry(pool, || try_scan(pool, owned, q))
}

fn all_valid(views: &[FrameView<'_>]) -> bool {
    views.iter().all(|v| v.valid())
}

fn finish(views: &[FrameView<'_>], entries: Vec<(Vec<u8>, Vec<u8>)>) -> Step<ScanResult> {
    if !all_valid(views) {
        return Step::Restart;
    }
    let frames = views.iter().map(|v| (v.id, v.version)).collect();
    Step::Done(ScanResult { entries, frames })
}

fn try_scan(pool: &Pool, owned: &Owned<'_>, q: &Scan<'_>) -> Result<Step<ScanResult>> {
    let Step::Done(root) = enter(pool, owned, ROOT_FRAME)? else { return Ok(Step::Restart) };
    let mut views = vec![root];
    let mut out = Vec::new();
    let mut stack = vec![Task::Node { f: 0, slot: ROOT_SLOT, depth: 0, bounded: true }];
    let mut steps = 0usize;
    while let Some(task) = stack.pop() {
        steps += 1;
        if steps % STEPS_PER_CHECK == 0 && !all_valid(&views) {
            return Ok(Step::Restart);
        }
        if steps > STEPS_MAX {
            return Err(corrupt_frame(views[0].id, "scan never terminates"));
        }
        let (f, slot, depth, bounded) = match task {
            Task::Node { f, slot, depth, bounded } => (f, slot, depth, bounded),
            Task::Children { f, slot, depth, from, tight } => {
                let b = views[f].buf;
                let Some(off) = b.node_offset(slot) else { return Ok(Step::Restart) };
                if let Some((byte, child)) = InnerAt(off).child_at_or_after(b, from) {
                    stack.push(Task::Children { f, slot, depth, from: byte as u16 + 1, tight });
                    let bounded = tight == Some(byte);
                    stack.push(Task::Node { f, slot: Slot(child), depth: depth + 1, bounded });
                }
                continue;
            }
        };
        let view = views[f];
        let b = view.buf;
        let Some(off) = b.node_offset(slot) else {
            return Ok(if view.valid() { Err(corrupt_frame(view.id, "dangling slot"))? } else { Step::Restart });
        };
        match b.u8(off) {
            KIND_LINK => {
                let (id, s) = link_target(b, off);
                let Step::Done(next) = follow(pool, owned, &view, id)? else { return Ok(Step::Restart) };
                views.push(next);
                stack.push(Task::Node { f: views.len() - 1, slot: s, depth, bounded });
            }
            KIND_LEAF => {
                let leaf = LeafAt(off);
                let klen = leaf.key_len(b);
                if b.cmp_bytes(leaf.key_off(), klen, q.lower) == Ordering::Less {
                    continue;
                }
                let plen = q.prefix.len();
                if klen < plen || b.cmp_bytes(leaf.key_off(), plen, q.prefix) != Ordering::Equal {
                    return Ok(finish(&views, out));
                }
                out.push((leaf.key(b), leaf.value(b)));
                if out.len() >= q.limit {
                    return Ok(finish(&views, out));
                }
            }
            2..=5 => {
                let n = InnerAt(off);
                let plen = n.prefix_len(b);
                let mut bounded = bounded;
                if bounded {
                    let lower_rest = q.lower.get(depth..).unwrap_or(&[]);
                    let cut = plen.min(lower_rest.len());
                    match b.cmp_bytes(n.prefix_off(), cut, &lower_rest[..cut]) {
                        Ordering::Less => continue,
                        Ordering::Greater => bounded = false,
                        Ordering::Equal if lower_rest.len() <= plen => bounded = false,
                        Ordering::Equal => {}
                    }
                }
                let d = depth + plen;
                if bounded {
                    let tight = q.lower[d];
                    stack.push(Task::Children { f, slot, depth: d, from: tight as u16, tight: Some(tight) });
                } else {
                    stack.push(Task::Children { f, slot, depth: d, from: 0, tight: None });
                    let end = n.end(b);
                    if end != NIL {
                        stack.push(Task::Node { f, slot: Slot(end), depth: d, bounded: false });
                    }
                }
            }
            _ if view.valid() => return Err(corrupt_frame(view.id, "unknown node kind")),
            _ => return Ok(Step::Restart),
        }
    }
    Ok(finish(&views, out))
}
