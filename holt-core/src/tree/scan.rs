//! Ordered scan: collect up to `limit` entries `>= lower` that start with
//! `prefix`, in one optimistic pass over every frame it touches. Any frame
//! that changes during the pass invalidates the whole chunk, which is then
//! collected again, so a chunk is always a consistent cut of the keys it
//! covers.
//!
//! With a delimiter, the keys that contain it past `prefix` are rolled up
//! inside the walk: where a node's path reaches the delimiter (in a leaf's
//! key, an inner node's compressed prefix, or the child byte), everything
//! under that node is one group, emitted as `Hit::Group` after a descent to
//! its first leaf proves it non-empty (an entry node emptied by removals
//! holds no key). The group's other nodes are never visited, so a listing
//! costs O(groups x depth) nodes, not O(keys).

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
/// with `lower` too, so `lower` still constrains the subtree. A non-zero
/// `group_len` means the node's keys are one rolled-up group: their first
/// `group_len` bytes (ending with the delimiter) are emitted once, if the
/// subtree holds any key.
#[derive(Clone, Copy)]
struct Task {
    f: usize,
    slot: Slot,
    group_len: u32,
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
    /// Most entries (keys and groups) to append.
    pub limit: usize,
    /// Roll keys containing this byte past `prefix` up into groups.
    pub delimiter: Option<u8>,
    /// Append keys with empty values: no value is copied.
    pub keys_only: bool,
}

impl<'a> Scan<'a> {
    /// The first key starting with `prefix`, without its value (a prefix
    /// guard and its footprint only ask whether there is one).
    pub(crate) fn first_key(prefix: &'a [u8]) -> Self {
        Scan { lower: prefix, prefix, limit: 1, delimiter: None, keys_only: true }
    }
}

/// One entry of a scan's answer, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hit {
    Key { key: Vec<u8>, value: Vec<u8> },
    /// Every key starting with these bytes, which end with the delimiter
    /// (its first occurrence past the prefix).
    Group(Vec<u8>),
}

/// Buffers a scan reuses from one chunk to the next (an iterator keeps
/// one), so listing a directory allocates only the entries it returns.
#[derive(Default)]
pub(crate) struct ScanScratch {
    stack: Vec<Task>,
    kids: Vec<(u8, u32)>,
    /// The pending nodes of a group's first-leaf descent: frame index,
    /// slot, and the next edge to try (0: the end leaf; `1 + b`: the
    /// children from byte `b`).
    probe: Vec<(usize, Slot, u16)>,
    /// Nodes visited by every scan run with this scratch, restarts
    /// included (tests and benchmarks read it; costs one add per chunk).
    pub visits: u64,
}

/// The frames (in visit order, with the versions read) a scan's answer
/// depends on.
pub(crate) type ScanFrames = Vec<(FrameId, Option<u64>)>;

/// Append to `out` up to `q.limit` entries; returns the frames read.
pub(crate) fn scan<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    q: &Scan<'_>,
    scratch: &mut ScanScratch,
    out: &mut Vec<Hit>,
) -> Result<ScanFrames> {
    let start = out.len();
    retry(owned, || {
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

/// Count one visited node. `Ok(false)`: a periodic validation failed.
fn tick(steps: &mut usize, views: &[FrameView<'_>]) -> Result<bool> {
    *steps += 1;
    if *steps > STEPS_MAX {
        return Err(corrupt_frame(views[0].id, "scan never terminates"));
    }
    Ok(!steps.is_multiple_of(STEPS_PER_CHECK) || all_valid(views))
}

/// What unreadable bytes mean: corruption if everything read validates,
/// else a concurrent writer (restart).
fn unreadable<T>(views: &[FrameView<'_>], at: &FrameView<'_>, what: &str) -> Result<Step<T>> {
    if all_valid(views) {
        return Err(corrupt_frame(at.id, what));
    }
    Ok(Step::Restart)
}

fn try_scan<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    q: &Scan<'_>,
    scratch: &mut ScanScratch,
    out: &mut Vec<Hit>,
) -> Result<Step<ScanFrames>> {
    let Step::Done(root) = enter(pool, owned, ROOT_FRAME)? else { return Ok(Step::Restart) };
    let mut views = vec![root];
    let mut steps = 0;
    let r = walk(pool, owned, q, scratch, &mut views, &mut steps, out);
    scratch.visits += steps as u64;
    r
}

/// Visit nodes in key order from the root until `out` has `q.limit` more
/// entries, a leaf passes the prefix, or no node is left.
fn walk<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    q: &Scan<'_>,
    scratch: &mut ScanScratch,
    views: &mut Vec<FrameView<'p>>,
    steps: &mut usize,
    out: &mut Vec<Hit>,
) -> Result<Step<ScanFrames>> {
    let want = out.len() + q.limit;
    let ScanScratch { stack, kids, probe, .. } = scratch;
    stack.clear();
    stack.push(Task { f: 0, slot: ROOT_SLOT, group_len: 0, depth: 0, bounded: true });
    while let Some(task) = stack.pop() {
        if !tick(steps, views)? {
            return Ok(Step::Restart);
        }
        prefetch_ahead(views, stack);
        if task.group_len != 0 {
            let Step::Done(group) = group_hit(pool, owned, views, task, probe, steps)? else {
                return Ok(Step::Restart);
            };
            out.extend(group);
            if out.len() >= want {
                return Ok(finish(views));
            }
            continue;
        }
        let view = views[task.f];
        let b = view.buf;
        let Some(off) = b.node_offset(task.slot) else { return unreadable(views, &view, "dangling slot") };
        match b.u8(off) {
            KIND_LINK => {
                let (id, s) = link_target(b, off);
                let Step::Done(next) = follow(pool, owned, &view, id)? else { return Ok(Step::Restart) };
                views.push(next);
                stack.push(Task { f: views.len() - 1, slot: s, ..task });
            }
            KIND_LEAF => match leaf_hit(b, off, task, q) {
                Leaf::Skip => {}
                Leaf::PastPrefix => return Ok(finish(views)),
                Leaf::Hit(hit) => {
                    out.push(hit);
                    if out.len() >= want {
                        return Ok(finish(views));
                    }
                }
            },
            2..=5 => {
                if let Some(group_len) = expand(b, off, task, q, kids, stack) {
                    stack.push(Task { group_len, ..task });
                }
            }
            _ => return unreadable(views, &view, "unknown node kind"),
        }
    }
    Ok(finish(views))
}

/// What a leaf contributes to the answer.
enum Leaf {
    /// Below `lower` (or `lower` falls inside the leaf's group).
    Skip,
    /// The leaf does not start with the prefix: neither does anything after it.
    PastPrefix,
    Hit(Hit),
}

fn leaf_hit(b: &FrameBuf, off: usize, task: Task, q: &Scan<'_>) -> Leaf {
    // A leaf's key extends the path that led to it, so the path already
    // proves `>= lower` (unbounded subtree), the prefix (path at least as
    // long) and the absence of the delimiter before `depth` (`expand`
    // looked there); only the rest is compared.
    let leaf = LeafAt(off);
    let (key_off, klen) = (leaf.key_off(), leaf.key_len(b));
    if task.bounded && b.cmp_bytes(key_off, klen, q.lower) == Ordering::Less {
        return Leaf::Skip;
    }
    let plen = q.prefix.len();
    if task.depth < plen && (klen < plen || b.cmp_bytes(key_off, plen, q.prefix) != Ordering::Equal) {
        return Leaf::PastPrefix;
    }
    let from = task.depth.max(plen);
    if let Some(at) = q.delimiter.and_then(|d| b.find_byte(key_off + from, klen.saturating_sub(from), d)) {
        let len = from + at + 1;
        if task.bounded && b.cmp_bytes(key_off, len, q.lower) == Ordering::Less {
            return Leaf::Skip;
        }
        return Leaf::Hit(Hit::Group(b.read_vec(key_off, len)));
    }
    let value = if q.keys_only { Vec::new() } else { leaf.value(b) };
    Leaf::Hit(Hit::Key { key: leaf.key(b), value })
}

/// The group of a group task, if its subtree holds a key: its bytes are
/// the first `group_len` bytes of the subtree's first leaf.
fn group_hit<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    views: &mut Vec<FrameView<'p>>,
    task: Task,
    probe: &mut Vec<(usize, Slot, u16)>,
    steps: &mut usize,
) -> Result<Step<Option<Hit>>> {
    let Step::Done(first) = first_leaf(pool, owned, views, task, probe, steps)? else { return Ok(Step::Restart) };
    let Some((f, off)) = first else { return Ok(Step::Done(None)) };
    let (b, leaf, len) = (views[f].buf, LeafAt(off), task.group_len as usize);
    if leaf.key_len(b) < len {
        return unreadable(views, &views[f], "leaf key shorter than its path");
    }
    Ok(Step::Done(Some(Hit::Group(b.read_vec(leaf.key_off(), len)))))
}

/// The first leaf in key order under the task's node (frame index and
/// offset), crossing links; `None` if the subtree holds no key. Usually
/// one path down: only an empty entry node sends it to a next sibling.
fn first_leaf<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    views: &mut Vec<FrameView<'p>>,
    task: Task,
    probe: &mut Vec<(usize, Slot, u16)>,
    steps: &mut usize,
) -> Result<Step<Option<(usize, usize)>>> {
    probe.clear();
    probe.push((task.f, task.slot, 0));
    while let Some((f, slot, next)) = probe.pop() {
        if !tick(steps, views)? {
            return Ok(Step::Restart);
        }
        let view = views[f];
        let b = view.buf;
        let Some(off) = b.node_offset(slot) else { return unreadable(views, &view, "dangling slot") };
        match b.u8(off) {
            KIND_LEAF => return Ok(Step::Done(Some((f, off)))),
            KIND_LINK => {
                let (id, s) = link_target(b, off);
                let Step::Done(target) = follow(pool, owned, &view, id)? else { return Ok(Step::Restart) };
                views.push(target);
                probe.push((views.len() - 1, s, 0));
            }
            2..=5 => {
                let n = InnerAt(off);
                let end = n.end(b);
                if next == 0 && end != NIL {
                    probe.push((f, slot, 1));
                    probe.push((f, Slot(end), 0));
                } else if let Some((byte, child)) = n.child_at_or_after(b, next.saturating_sub(1)) {
                    probe.push((f, slot, u16::from(byte) + 2));
                    probe.push((f, Slot(child), 0));
                }
            }
            _ => return unreadable(views, &view, "unknown node kind"),
        }
    }
    Ok(Step::Done(None))
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

/// Push the children of the inner node at `off` that may hold entries
/// `>= lower` starting with `prefix`, so that they pop in key order (end
/// leaf first). While the node sits above the end of `prefix`, only the
/// child on the prefix's path can match, so nothing else is pushed: listing
/// a small directory costs one path plus its entries. A child under the
/// delimiter byte is pushed as a group task. Returns the group length when
/// the node's own compressed prefix holds the delimiter: the whole node is
/// one group (nothing is pushed).
fn expand(b: &FrameBuf, off: usize, task: Task, q: &Scan<'_>, kids: &mut Vec<(u8, u32)>, stack: &mut Vec<Task>) -> Option<u32> {
    let n = InnerAt(off);
    let plen = n.prefix_len(b);
    let d = task.depth + plen;
    let want = q.prefix.get(task.depth..).unwrap_or(&[]);
    let overlap = plen.min(want.len());
    if b.cmp_bytes(n.prefix_off(), overlap, &want[..overlap]) != Ordering::Equal {
        return None;
    }
    let lower_rest = q.lower.get(task.depth..).unwrap_or(&[]);
    let mut bounded = task.bounded;
    if bounded {
        let cut = plen.min(lower_rest.len());
        match b.cmp_bytes(n.prefix_off(), cut, &lower_rest[..cut]) {
            Ordering::Less => return None,
            Ordering::Greater => bounded = false,
            Ordering::Equal if lower_rest.len() <= plen => bounded = false,
            Ordering::Equal => {}
        }
    }
    if let Some(at) = q.delimiter.and_then(|dl| b.find_byte(n.prefix_off() + overlap, plen - overlap, dl)) {
        return prefix_group(b, n, task, lower_rest, overlap + at);
    }
    let tight = bounded.then(|| q.lower[d]);
    kids.clear();
    let group_byte = match q.prefix.get(d) {
        Some(&only) => {
            let child = n.find_child(b, only);
            if child != NIL && tight.is_none_or(|t| only >= t) {
                kids.push((only, child));
            }
            None
        }
        None => {
            n.children_from(b, tight.map_or(0, u16::from), kids);
            q.delimiter
        }
    };
    for &(byte, child) in kids.iter().rev() {
        let on_lower = tight == Some(byte);
        let mut group_len = 0;
        if group_byte == Some(byte) {
            // `lower` extending the group's bytes lies inside the group,
            // which is then not after it.
            if on_lower && q.lower.len() > d + 1 {
                continue;
            }
            group_len = (d + 1) as u32;
        }
        let bounded = on_lower && group_len == 0;
        stack.push(Task { f: task.f, slot: Slot(child), group_len, depth: d + 1, bounded });
    }
    let end = n.end(b);
    if !bounded && end != NIL && d >= q.prefix.len() {
        stack.push(Task { f: task.f, slot: Slot(end), group_len: 0, depth: d, bounded: false });
    }
    for t in stack.iter().rev().take(PREFETCH_CHILDREN).filter(|t| t.f == task.f) {
        b.prefetch(crate::layout::slot_entry_offset(t.slot));
    }
    None
}

/// The length of the group formed by the node `n`, whose compressed
/// prefix holds the delimiter at index `at`; `None` when `lower` lies
/// inside that group (the group is not after it).
fn prefix_group(b: &FrameBuf, n: InnerAt, task: Task, lower_rest: &[u8], at: usize) -> Option<u32> {
    let len = at + 1;
    if task.bounded {
        let m = len.min(lower_rest.len());
        match b.cmp_bytes(n.prefix_off(), m, &lower_rest[..m]) {
            Ordering::Less => return None,
            Ordering::Equal if lower_rest.len() > len => return None,
            _ => {}
        }
    }
    Some((task.depth + len) as u32)
}
