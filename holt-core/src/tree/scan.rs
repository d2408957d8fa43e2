//! Ordered scan: collect up to `limit` entries `>= lower` that start with
//! `prefix`, in one optimistic pass over every frame it touches. Any frame
//! that changes during the pass invalidates the whole chunk, which is then
//! collected again, so a chunk is always a consistent cut of the keys it
//! covers. The path down to the prefix's end is followed first as a
//! lookup would (`seek_prefix`); the walk with its stack of tasks starts
//! where the prefix ends.
//!
//! With a delimiter, the keys that contain it past `prefix` are rolled up
//! inside the walk: where a node's path reaches the delimiter (in a leaf's
//! key, an inner node's compressed prefix, or the child byte), everything
//! under that node is one group, emitted as a group hit after a descent to
//! its first leaf proves it non-empty (an entry node emptied by removals
//! holds no key). The group's other nodes are never visited, so a listing
//! costs O(groups x depth) nodes, not O(keys).

use std::cmp::Ordering;

use super::descend::{corrupt_frame, enter_for, ensure_node, ensure_slot_table, follow_for, retry, FrameView, Reads};
use super::hits::Hits;
use super::scan_run::{can_run, run, Open, RunEnd, Stacks};
use super::{Owned, Step, ROOT_FRAME, ROOT_SLOT};
use crate::error::Result;
use crate::ids::FrameId;
use crate::layout::node::{field_slot, hinted_child, link_target, InnerAt, InnerHead, LeafAt, KIND_LEAF, KIND_LINK};
use crate::layout::{FrameBuf, Slot, NIL};
use crate::store::pool::Pool;

/// Nodes visited between two validations of every frame read so far; bounds
/// the work done on bytes torn by a concurrent writer.
const STEPS_PER_CHECK: usize = 256;
/// A scan visiting more nodes than this without finishing reports corruption.
const STEPS_MAX: usize = 1 << 30;

/// A node to visit: the node at offset `off` of frame `f` (index into
/// the views; `DANGLING` if its slot was free when read), whose keys all
/// share their first `depth` bytes; `bounded` means they share them with
/// `lower` too, so `lower` still constrains the subtree. A non-zero
/// `group_len` means the node's keys are one rolled-up group: their first
/// `group_len` bytes (ending with the delimiter) are emitted once, if the
/// subtree holds any key. The offset is read when the task is pushed, so
/// the node can be prefetched well before it is visited; like every byte
/// an optimistic walk reads, it counts only once the frame validates.
/// `may_run` allows reading the subtree as a run (`scan_run`); a node a
/// run handed back is visited as a node.
#[derive(Clone, Copy)]
pub(super) struct Task {
    pub f: usize,
    pub off: usize,
    pub group_len: u32,
    pub depth: usize,
    pub bounded: bool,
    pub may_run: bool,
}

/// `Task::off` of a slot that holds no node.
pub(super) const DANGLING: usize = usize::MAX;

/// The offset of the node in `slot`, or `DANGLING`.
#[inline]
fn node_at(b: &FrameBuf, slot: Slot) -> usize {
    b.node_offset(slot).unwrap_or(DANGLING)
}

/// The offset of the child that `field` of the node at `parent` names:
/// from the distance the field carries when `hinted` (the frame is a
/// tidy's layout, where it is exact), else from the slot table.
#[inline]
pub(super) fn child_at(b: &FrameBuf, parent: usize, field: u32, hinted: bool) -> usize {
    hinted_child(parent, field, hinted).unwrap_or_else(|| node_at(b, Slot(field_slot(field))))
}

/// How many tasks ahead of the visit a node's first cache lines are
/// prefetched: an inner node's first children when it is expanded, then
/// the task this far down the stack at each visit. Visiting a leaf costs
/// far less than a memory latency, so the loads of the next several
/// siblings must be in flight at once.
const PREFETCH_DISTANCE: usize = 8;

pub(crate) struct Scan<'a> {
    pub lower: &'a [u8],
    pub prefix: &'a [u8],
    /// Most entries (keys and groups) to append.
    pub limit: usize,
    /// Stop appending once the entries appended hold this many bytes (at
    /// least one entry is appended if there is one).
    pub bytes_max: usize,
    /// Roll keys containing this byte past `prefix` up into groups.
    pub delimiter: Option<u8>,
    /// Append keys with empty values: no value is copied.
    pub keys_only: bool,
}

impl<'a> Scan<'a> {
    /// The first key starting with `prefix`, without its value (a prefix
    /// guard and its footprint only ask whether there is one).
    pub(crate) fn first_key(prefix: &'a [u8]) -> Self {
        Scan { lower: prefix, prefix, limit: 1, bytes_max: usize::MAX, delimiter: None, keys_only: true }
    }
}

/// Buffers a scan reuses from one chunk to the next (an iterator keeps
/// one), so listing a directory allocates only the entries it returns.
#[derive(Default)]
pub(crate) struct ScanScratch {
    stack: Vec<Task>,
    /// The pending nodes of a group's first-leaf descent: frame index,
    /// node offset, and the next edge to try (0: the end leaf; `1 + b`: the
    /// children from byte `b`).
    probe: Vec<(usize, usize, u16)>,
    /// The inner nodes a run is inside.
    open: Vec<Open>,
    /// The frames (in visit order, with the versions read) the last
    /// chunk's answer depends on.
    pub frames: ScanFrames,
    /// Nodes visited by every scan run with this scratch, restarts
    /// included (tests and benchmarks read it; costs one add per chunk).
    pub visits: u64,
    /// Subtrees read as runs (`scan_run`) by those scans.
    pub runs: u64,
}

/// The frames (in visit order, with the versions read) a scan's answer
/// depends on.
pub(crate) type ScanFrames = Vec<(FrameId, Option<u64>)>;

/// Append to `out` up to `q.limit` entries; `scratch.frames` names the
/// frames read.
pub(crate) fn scan<'p>(pool: &'p Pool, owned: &Owned<'p>, q: &Scan<'_>, scratch: &mut ScanScratch, out: &mut Hits) -> Result<()> {
    let start = out.len();
    retry(owned, || {
        out.truncate(start);
        try_scan(pool, owned, q, scratch, out)
    })
}

fn all_valid(views: &[FrameView<'_>]) -> bool {
    views.iter().all(|v| v.valid())
}

fn finish(views: &[FrameView<'_>], frames: &mut ScanFrames) -> Step<()> {
    if !all_valid(views) {
        return Step::Restart;
    }
    frames.clear();
    frames.extend(views.iter().map(|v| (v.id, v.version)));
    Step::Done(())
}

/// Count one visited node. `Ok(false)`: a periodic validation failed.
/// Inlined: every node a scan visits passes here, and all but one in
/// `STEPS_PER_CHECK` only add and test.
#[inline(always)]
pub(super) fn tick(steps: &mut usize, views: &[FrameView<'_>]) -> Result<bool> {
    *steps += 1;
    if steps.is_multiple_of(STEPS_PER_CHECK) {
        return check_steps(*steps, views);
    }
    Ok(true)
}

/// The periodic part of `tick`: a scan past `STEPS_MAX` fails within
/// `STEPS_PER_CHECK` more steps.
#[cold]
#[inline(never)]
fn check_steps(steps: usize, views: &[FrameView<'_>]) -> Result<bool> {
    if steps > STEPS_MAX {
        return Err(corrupt_frame(views[0].id, "scan never terminates"));
    }
    Ok(all_valid(views))
}

/// What unreadable bytes mean: corruption if everything read validates,
/// else a concurrent writer (restart).
pub(super) fn unreadable<T>(views: &[FrameView<'_>], at: &FrameView<'_>, what: &str) -> Result<Step<T>> {
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
    out: &mut Hits,
) -> Result<Step<()>> {
    let Step::Done(root) = enter_paged(pool, owned, None, ROOT_FRAME)? else { return Ok(Step::Restart) };
    // Room for the frames a small listing crosses without growing (a
    // grow from one to two was ~4% of a 10-entry listing's instructions).
    let mut views = Vec::with_capacity(8);
    views.push(root);
    let mut steps = 0;
    let r = walk(pool, owned, q, scratch, &mut views, &mut steps, out);
    scratch.visits += steps as u64;
    r
}

/// Enter frame `id` (crossing a link from `from`, if given) for a scan: a
/// frame resident in part is taken as it is, its whole slot table read
/// (each child a node pushes is found through it), and each node's pages
/// as it is visited (`ensure_node`).
fn enter_paged<'p>(pool: &'p Pool, owned: &Owned<'p>, from: Option<&FrameView<'p>>, id: FrameId) -> Result<Step<FrameView<'p>>> {
    let entered = match from {
        Some(from) => follow_for(pool, owned, from, id, Reads::Pages)?,
        None => enter_for(pool, owned, id, Reads::Pages)?,
    };
    let Step::Done(view) = entered else { return Ok(Step::Restart) };
    if view.pages.is_some() && matches!(ensure_slot_table(pool, &view)?, Step::Restart) {
        return Ok(Step::Restart);
    }
    Ok(Step::Done(view))
}

/// Visit nodes in key order from the root until `out` has `q.limit` more
/// entries (or `q.bytes_max` more bytes), a leaf passes the prefix, or no
/// node is left.
fn walk<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    q: &Scan<'_>,
    scratch: &mut ScanScratch,
    views: &mut Vec<FrameView<'p>>,
    steps: &mut usize,
    out: &mut Hits,
) -> Result<Step<()>> {
    let (want, bytes_want) = (out.len() + q.limit, out.bytes_len().saturating_add(q.bytes_max));
    let full = |out: &Hits| out.len() >= want || out.bytes_len() >= bytes_want;
    let ScanScratch { stack, probe, open, frames, runs, .. } = scratch;
    // Usual (a chunk starts at the prefix or past a key under it): `expand`
    // then need not compare again what it compared with the prefix.
    let lower_extends_prefix = q.lower.starts_with(q.prefix);
    let first = match first_task(pool, owned, q, lower_extends_prefix, views, steps)? {
        Step::Restart => return Ok(Step::Restart),
        Step::Done(None) => return Ok(finish(views, frames)),
        Step::Done(Some(task)) => task,
    };
    stack.clear();
    stack.push(first);
    while let Some(task) = stack.pop() {
        if !tick(steps, views)? {
            return Ok(Step::Restart);
        }
        if let Some(ahead) = stack.len().checked_sub(PREFETCH_DISTANCE).map(|i| stack[i]) {
            prefetch_node(views[ahead.f].buf, ahead.off);
        }
        if task.group_len != 0 {
            let Step::Done(()) = group_hit(pool, owned, views, task, probe, steps, out)? else {
                return Ok(Step::Restart);
            };
        } else {
            let (view, off) = (views[task.f], task.off);
            let b = view.buf;
            if off == DANGLING {
                return unreadable(views, &view, "dangling slot");
            }
            if view.pages.is_some() && matches!(ensure_node(pool, &view, off)?, Step::Restart) {
                return Ok(Step::Restart);
            }
            let head = b.u64(off);
            match head as u8 {
                KIND_LINK => {
                    let (id, s) = link_target(b, off);
                    let Step::Done(next) = enter_paged(pool, owned, Some(&view), id)? else { return Ok(Step::Restart) };
                    views.push(next);
                    stack.push(Task { f: views.len() - 1, off: node_at(next.buf, s), may_run: true, ..task });
                }
                KIND_LEAF => {
                    if !leaf_hit(b, off, head, task, q, out) {
                        return Ok(finish(views, frames));
                    }
                }
                2..=5 if can_run(&view, &task, head, q) => {
                    *runs += 1;
                    match run(views, task, q, Stacks { tasks: stack, open }, steps, out, full)? {
                        Step::Restart => return Ok(Step::Restart),
                        Step::Done(RunEnd::Full) => return Ok(finish(views, frames)),
                        Step::Done(RunEnd::Next) => {}
                    }
                }
                2..=5 => {
                    if let Some(group_len) = expand(b, off, InnerHead::of(head), task, q, lower_extends_prefix, stack) {
                        stack.push(Task { group_len, ..task });
                    }
                }
                _ => return unreadable(views, &view, "unknown node kind"),
            }
        }
        if full(out) {
            return Ok(finish(views, frames));
        }
    }
    Ok(finish(views, frames))
}

/// The task a chunk's walk starts from: the root, or where the prefix
/// ends (`seek_prefix`) when `lower` extends the prefix; `None` when no
/// key has the prefix.
fn first_task<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    q: &Scan<'_>,
    lower_extends_prefix: bool,
    views: &mut Vec<FrameView<'p>>,
    steps: &mut usize,
) -> Result<Step<Option<Task>>> {
    let root = Task { f: 0, off: node_at(views[0].buf, ROOT_SLOT), group_len: 0, depth: 0, bounded: true, may_run: true };
    if !lower_extends_prefix || q.prefix.is_empty() {
        return Ok(Step::Done(Some(root)));
    }
    seek_prefix(pool, owned, q, views, steps, root)
}

/// Follow `q.prefix` down from `task` (the root) through the inner nodes
/// that lie wholly above the prefix's end, and the links between them,
/// doing what the walk would do there without its stack: such a node has
/// one child that can hold keys under the prefix, the one under the
/// prefix's next byte, and, `lower` extending the prefix (the caller
/// checks), that child stays bounded by `lower`. Returns the task the walk
/// takes over from (a node that reaches the prefix's end, a leaf, anything
/// unreadable), or `None` when no key has the prefix. What it read counts
/// once the frames in `views` validate, as for the walk.
fn seek_prefix<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    q: &Scan<'_>,
    views: &mut Vec<FrameView<'p>>,
    steps: &mut usize,
    mut task: Task,
) -> Result<Step<Option<Task>>> {
    loop {
        let (view, off) = (views[task.f], task.off);
        if off == DANGLING {
            return Ok(Step::Done(Some(task)));
        }
        if view.pages.is_some() && matches!(ensure_node(pool, &view, off)?, Step::Restart) {
            return Ok(Step::Restart);
        }
        let b = view.buf;
        let head = b.u64(off);
        if !matches!(head as u8, KIND_LINK | 2..=5) {
            return Ok(Step::Done(Some(task)));
        }
        if !tick(steps, views)? {
            return Ok(Step::Restart);
        }
        if head as u8 == KIND_LINK {
            let (id, s) = link_target(b, off);
            let Step::Done(next) = enter_paged(pool, owned, Some(&view), id)? else { return Ok(Step::Restart) };
            views.push(next);
            task = Task { f: views.len() - 1, off: node_at(next.buf, s), ..task };
            continue;
        }
        let (n, h) = (InnerAt(off), InnerHead::of(head));
        let d = task.depth + h.prefix_len;
        let Some(&byte) = q.prefix.get(d) else { return Ok(Step::Done(Some(task))) };
        if b.common_prefix(n.prefix_off(), h.prefix_len, &q.prefix[task.depth..d]) < h.prefix_len {
            return Ok(Step::Done(None));
        }
        let field = n.find_child_field(b, h, byte);
        if field == NIL {
            return Ok(Step::Done(None));
        }
        task = Task { off: child_at(b, off, field, b.in_preorder()), depth: d + 1, ..task };
    }
}

/// Append what the leaf at `off` (whose first eight bytes are `head`)
/// contributes to the answer: nothing when
/// it is below `lower` (or `lower` falls inside its group), else its key
/// and value or its group. Returns false when the leaf does not start
/// with the prefix: neither does anything after it.
#[inline]
fn leaf_hit(b: &FrameBuf, off: usize, head: u64, task: Task, q: &Scan<'_>, out: &mut Hits) -> bool {
    // A leaf's key extends the path that led to it, so the path already
    // proves `>= lower` (unbounded subtree), the prefix (path at least as
    // long) and the absence of the delimiter before `depth` (`expand`
    // looked there); only the rest is compared.
    let (key_off, (klen, value_len)) = (LeafAt(off).key_off(), LeafAt::lens(head));
    if task.bounded && b.cmp_bytes(key_off, klen, q.lower) == Ordering::Less {
        return true;
    }
    let plen = q.prefix.len();
    if task.depth < plen && (klen < plen || b.cmp_bytes(key_off, plen, q.prefix) != Ordering::Equal) {
        return false;
    }
    let kept = out.len();
    let value_len = if q.keys_only { 0 } else { value_len };
    if let Some(len) = out.push_leaf(b, key_off, klen, value_len, task.depth.max(plen), q.delimiter) {
        // A group before `lower` holds `lower`: it is not after it.
        if task.bounded && b.cmp_bytes(key_off, len, q.lower) == Ordering::Less {
            out.truncate(kept);
        }
    }
    true
}

/// Append the group of a group task, if its subtree holds a key: its
/// bytes are the first `group_len` bytes of the subtree's first leaf.
fn group_hit<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    views: &mut Vec<FrameView<'p>>,
    task: Task,
    probe: &mut Vec<(usize, usize, u16)>,
    steps: &mut usize,
    out: &mut Hits,
) -> Result<Step<()>> {
    let Step::Done(first) = first_leaf(pool, owned, views, task, probe, steps)? else { return Ok(Step::Restart) };
    let Some((f, off)) = first else { return Ok(Step::Done(())) };
    let (b, leaf, len) = (views[f].buf, LeafAt(off), task.group_len as usize);
    if leaf.key_len(b) < len {
        return unreadable(views, &views[f], "leaf key shorter than its path");
    }
    out.push_group(b, leaf.key_off(), len);
    Ok(Step::Done(()))
}

/// The first leaf in key order under the task's node (frame index and
/// offset), crossing links; `None` if the subtree holds no key. Usually
/// one path down: only an empty entry node sends it to a next sibling.
fn first_leaf<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    views: &mut Vec<FrameView<'p>>,
    task: Task,
    probe: &mut Vec<(usize, usize, u16)>,
    steps: &mut usize,
) -> Result<Step<Option<(usize, usize)>>> {
    probe.clear();
    probe.push((task.f, task.off, 0));
    while let Some((f, off, next)) = probe.pop() {
        if !tick(steps, views)? {
            return Ok(Step::Restart);
        }
        let view = views[f];
        let b = view.buf;
        if off == DANGLING {
            return unreadable(views, &view, "dangling slot");
        }
        if view.pages.is_some() && matches!(ensure_node(pool, &view, off)?, Step::Restart) {
            return Ok(Step::Restart);
        }
        match b.u8(off) {
            KIND_LEAF => return Ok(Step::Done(Some((f, off)))),
            KIND_LINK => {
                let (id, s) = link_target(b, off);
                let Step::Done(target) = enter_paged(pool, owned, Some(&view), id)? else { return Ok(Step::Restart) };
                views.push(target);
                probe.push((views.len() - 1, node_at(target.buf, s), 0));
            }
            2..=5 => {
                let n = InnerAt(off);
                let end = n.end(b);
                if next == 0 && end != NIL {
                    probe.push((f, off, 1));
                    probe.push((f, node_at(b, Slot(end)), 0));
                } else if let Some((byte, child)) = n.child_at_or_after(b, next.saturating_sub(1)) {
                    probe.push((f, off, u16::from(byte) + 2));
                    probe.push((f, node_at(b, Slot(child)), 0));
                }
            }
            _ => return unreadable(views, &view, "unknown node kind"),
        }
    }
    Ok(Step::Done(None))
}

/// Start loading the first three cache lines of the node at `off` (a
/// leaf's header, key and value, unless they are long).
#[inline]
fn prefetch_node(b: &FrameBuf, off: usize) {
    if off != DANGLING {
        b.prefetch(off);
        b.prefetch(off + 64);
        b.prefetch(off + 128);
    }
}

/// Push the children of the inner node at `off` (header `h`) that may
/// hold entries `>= lower` starting with `prefix`, so that they pop in key
/// order (end leaf first); `lower_extends_prefix`: `lower` starts with
/// `prefix`. While the node sits above the end of `prefix`, only the child
/// on the prefix's path can match, so nothing else is pushed: listing a
/// small directory costs one path plus its entries. A child under the
/// delimiter byte is pushed as a group task. Returns the group length when
/// the node's own compressed prefix holds the delimiter: the whole node is
/// one group (nothing is pushed).
fn expand(b: &FrameBuf, off: usize, h: InnerHead, task: Task, q: &Scan<'_>, lower_extends_prefix: bool, stack: &mut Vec<Task>) -> Option<u32> {
    let n = InnerAt(off);
    let plen = h.prefix_len;
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
        // A `lower` that extends `prefix` agrees with the node over the
        // `overlap` just compared (then `overlap <= cut`).
        let same = if lower_extends_prefix { overlap } else { 0 };
        match b.cmp_bytes(n.prefix_off() + same, cut - same, &lower_rest[same..cut]) {
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
    let base = stack.len();
    let hinted = b.in_preorder();
    // Children are pushed last key first, so that they pop in key order.
    let mut push = |byte: u8, field: u32, group_byte: Option<u8>| {
        let on_lower = tight == Some(byte);
        let mut group_len = 0;
        if group_byte == Some(byte) {
            // `lower` extending the group's bytes lies inside the group,
            // which is then not after it.
            if on_lower && q.lower.len() > d + 1 {
                return;
            }
            group_len = (d + 1) as u32;
        }
        let bounded = on_lower && group_len == 0;
        stack.push(Task { f: task.f, off: child_at(b, off, field, hinted), group_len, depth: d + 1, bounded, may_run: true });
    };
    match q.prefix.get(d) {
        Some(&only) => {
            let field = n.find_child_field(b, h, only);
            if field != NIL && tight.is_none_or(|t| only >= t) {
                push(only, field, None);
            }
        }
        None => n.child_fields_rev_from(b, h, tight.map_or(0, u16::from), |byte, field| push(byte, field, q.delimiter)),
    }
    let end = n.end_field(b);
    if !bounded && end != NIL && d >= q.prefix.len() {
        stack.push(Task { f: task.f, off: child_at(b, off, end, hinted), group_len: 0, depth: d, bounded: false, may_run: true });
    }
    let first = stack.len().saturating_sub(PREFETCH_DISTANCE).max(base);
    stack[first..].iter().for_each(|t| prefetch_node(b, t.off));
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
