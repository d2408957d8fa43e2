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
use crate::layout::{FrameBuf, Slot, NIL};
use crate::store::pool::Pool;

/// Nodes visited between two validations of every frame read so far; bounds
/// the work done on bytes torn by a concurrent writer.
const STEPS_PER_CHECK: usize = 256;
/// A scan visiting more nodes than this without finishing reports corruption.
const STEPS_MAX: usize = 1 << 30;

/// A node to visit: slot `slot` of frame `f` (index into the views), whose
/// keys all share their first `depth` bytes; `bounded` means they share them
/// with `lower` too, so `lower` still constrains the subtree.
#[derive(Clone, Copy)]
struct Task {
    f: usize,
    slot: Slot,
    depth: usize,
    bounded: bool,
}

/// Children prefetched ahead of the visit: their slot entries when pushed,
/// the node bytes of the next few when a task is popped, so the dependent
/// loads of consecutive siblings overlap instead of queueing.
const PREFETCH_CHILDREN: usize = 8;
/// Upcoming tasks whose nodes are prefetched (see `prefetch_ahead`).
const PREFETCH_NODES: usize = 3;

pub(crate) struct Scan<'a> {
    pub lower: &'a [u8],
    pub prefix: &'a [u8],
    pub limit: usize,
}

/// Buffers a scan reuses from one chunk to the next (an iterator keeps
/// one), so listing a directory allocates only the keys and values it returns.
#[derive(Default)]
pub(crate) struct ScanScratch {
    stack: Vec<Task>,
    kids: Vec<(u8, u32)>,
}

/// The frames (in visit order, with the versions read) a scan's answer
/// depends on.
pub(crate) type ScanFrames = Vec<(FrameId, Option<u64>)>;

/// Append to `out` up to `q.limit` entries; returns the frames read.
pub(crate) fn scan(
    pool: &Pool,
    owned: &Owned<'_>,
    q: &Scan<'_>,
    scratch: &mut ScanScratch,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<ScanFrames> {
    let start = out.len();
    retry(pool, || {
        out.truncate(start);
        try_scan(pool, owned, q, scratch, out)
    })
}

fn all_valid(views: &[FrameView<'_>]) -> bool {
    views.iter().all(|v| v.valid())
}

fn finish(views: &[FrameView<'_>]) -> Step<ScanFrames> {
    if !all_valid(views) {
        return Step::Restart;
    }
    Step::Done(views.iter().map(|v| (v.id, v.version)).collect())
}

fn try_scan(
    pool: &Pool,
    owned: &Owned<'_>,
    q: &Scan<'_>,
    scratch: &mut ScanScratch,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Step<ScanFrames>> {
    let Step::Done(root) = enter(pool, owned, ROOT_FRAME)? else { return Ok(Step::Restart) };
    let mut views = vec![root];
    let want = out.len() + q.limit;
    let ScanScratch { stack, kids } = scratch;
    stack.clear();
    stack.push(Task { f: 0, slot: ROOT_SLOT, depth: 0, bounded: true });
    let mut steps = 0usize;
    while let Some(task) = stack.pop() {
        steps += 1;
        if steps % STEPS_PER_CHECK == 0 && !all_valid(&views) {
            return Ok(Step::Restart);
        }
        if steps > STEPS_MAX {
            return Err(corrupt_frame(views[0].id, "scan never terminates"));
        }
        prefetch_ahead(&views, stack);
        let view = views[task.f];
        let b = view.buf;
        let Some(off) = b.node_offset(task.slot) else {
            return Ok(if view.valid() { Err(corrupt_frame(view.id, "dangling slot"))? } else { Step::Restart });
        };
        match b.u8(off) {
            KIND_LINK => {
                let (id, s) = link_target(b, off);
                let Step::Done(next) = follow(pool, owned, &view, id)? else { return Ok(Step::Restart) };
                views.push(next);
                stack.push(Task { f: views.len() - 1, slot: s, ..task });
            }
            KIND_LEAF => {
                // A leaf's key extends the path that led to it, so the path
                // already proves `>= lower` (unbounded subtree) and the
                // prefix (path at least as long); only the rest is compared.
                let leaf = LeafAt(off);
                let klen = leaf.key_len(b);
                if task.bounded && b.cmp_bytes(leaf.key_off(), klen, q.lower) == Ordering::Less {
                    continue;
                }
                let plen = q.prefix.len();
                let unproven = task.depth < plen;
                if unproven && (klen < plen || b.cmp_bytes(leaf.key_off(), plen, q.prefix) != Ordering::Equal) {
                    return Ok(finish(&views));
                }
                out.push((leaf.key(b), leaf.value(b)));
                if out.len() >= want {
                    return Ok(finish(&views));
                }
            }
            2..=5 => expand(b, off, task, q, kids, stack),
            _ if view.valid() => return Err(corrupt_frame(view.id, "unknown node kind")),
            _ => return Ok(Step::Restart),
        }
    }
    Ok(finish(&views))
}

/// Keep the loads of upcoming siblings in flight: the first two cache
/// lines (a leaf's key and value) of the nodes of the next
/// `PREFETCH_NODES` tasks (their slot entries were fetched earlier), and
/// the slot entry of the task `PREFETCH_CHILDREN` further down. Visiting a
/// leaf takes about one memory latency, so one task ahead is too late.
fn prefetch_ahead(views: &[FrameView<'_>], stack: &[Task]) {
    for next in stack.iter().rev().take(PREFETCH_NODES) {
        let b = views[next.f].buf;
        if let Some(off) = b.node_offset(next.slot) {
            b.prefetch(off);
            b.prefetch(off + 64);
        }
    }
    if let Some(far) = stack.len().checked_sub(PREFETCH_CHILDREN).and_then(|i| stack.get(i)) {
        views[far.f].buf.prefetch(crate::layout::slot_entry_offset(far.slot));
    }
}

/// Push the children of the inner node at `off` that may hold keys
/// `>= lower` starting with `prefix`, so that they pop in key order (end
/// leaf first). While the node sits above the end of `prefix`, only the
/// child on the prefix's path can match, so nothing else is pushed: listing
/// a small directory costs one path plus its entries.
fn expand(b: &FrameBuf, off: usize, task: Task, q: &Scan<'_>, kids: &mut Vec<(u8, u32)>, stack: &mut Vec<Task>) {
    let n = InnerAt(off);
    let plen = n.prefix_len(b);
    let d = task.depth + plen;
    let want = q.prefix.get(task.depth..).unwrap_or(&[]);
    let overlap = plen.min(want.len());
    if b.cmp_bytes(n.prefix_off(), overlap, &want[..overlap]) != Ordering::Equal {
        return;
    }
    let mut bounded = task.bounded;
    if bounded {
        let lower_rest = q.lower.get(task.depth..).unwrap_or(&[]);
        let cut = plen.min(lower_rest.len());
        match b.cmp_bytes(n.prefix_off(), cut, &lower_rest[..cut]) {
            Ordering::Less => return,
            Ordering::Greater => bounded = false,
            Ordering::Equal if lower_rest.len() <= plen => bounded = false,
            Ordering::Equal => {}
        }
    }
    let tight = bounded.then(|| q.lower[d]);
    kids.clear();
    match q.prefix.get(d) {
        Some(&only) => {
            let child = n.find_child(b, only);
            if child != NIL && tight.is_none_or(|t| only >= t) {
                kids.push((only, child));
            }
        }
        None => n.children_from(b, tight.map_or(0, u16::from), kids),
    }
    for &(byte, child) in kids.iter().rev() {
        stack.push(Task { f: task.f, slot: Slot(child), depth: d + 1, bounded: tight == Some(byte) });
    }
    let end = n.end(b);
    if !bounded && end != NIL && d >= q.prefix.len() {
        stack.push(Task { f: task.f, slot: Slot(end), depth: d, bounded: false });
    }
    for t in stack.iter().rev().take(PREFETCH_CHILDREN).filter(|t| t.f == task.f) {
        b.prefetch(crate::layout::slot_entry_offset(t.slot));
    }
}
