//! Runs: a scan reads a subtree of a tidy frame front to back.
//!
//! A tidy (`tree::tidy`) lays a frame's nodes out in key order: its upper
//! nodes first, then every other subtree in preorder, each in one
//! contiguous stretch of the data area (from `FrameBuf::runs_from`), and
//! sets the frame's `FLAG_PREORDER`; every other change of layout (a node
//! placed, appended, freed or shrunk, a compaction) clears it
//! (`layout::space`). While it is set, a scan may visit a subtree's nodes
//! in the order they lie, leaves emitted as met, without the stack task
//! and slot-table read each child costs the walk (`tree::scan`). Like
//! every byte an optimistic scan reads, the flag counts only once the
//! frame validates.
//!
//! A run starts at a node whose keys all belong in the answer (past
//! `lower`, inside the prefix, not inside a group) and tracks each node's
//! depth on a stack of the inner nodes it is inside. It hands the rest of
//! the subtree back to the walk, as ordinary tasks, at a node it does not
//! handle: a link (another frame) or, with a delimiter, an inner node where
//! a group starts (the delimiter in its compressed prefix, or a child under
//! the delimiter byte). A leaf that holds the delimiter is a group of its
//! own, as in the walk.

use super::descend::FrameView;
use super::hits::Hits;
use super::scan::{child_at, tick, unreadable, Scan, Task};
use super::Step;
use crate::error::Result;
use crate::layout::node::{inner_bytes, leaf_bytes, InnerAt, InnerHead, LeafAt, KIND_LEAF, KIND_LINK};
use crate::layout::{FrameBuf, NIL};

/// How far ahead of the node it reads a run prefetches: a few nodes.
const RUN_PREFETCH_BYTES: usize = 768;

/// An inner node the run is inside: where it lies, the depth of its
/// children, and how many of its items (end leaf, then children) are still
/// to come.
#[derive(Clone, Copy)]
pub(super) struct Open {
    off: usize,
    child_depth: usize,
    left: usize,
}

/// Whether the walk may read `task`'s subtree as a run: an inner node of
/// a whole, tidy frame, not one of its upper nodes (their subtrees are not
/// contiguous), whose keys all belong in the answer: below the prefix's
/// end, past `lower` (unbounded, or `lower` is the prefix itself) and
/// starting no group, or the node where the prefix ends
/// (`holds_prefix_end`). `head`: the node's first eight bytes.
pub(super) fn can_run(view: &FrameView<'_>, task: &Task, head: u64, q: &Scan<'_>) -> bool {
    let b = view.buf;
    // The frame's layout first: the node's own bytes only where it allows a run.
    if !(task.may_run && task.group_len == 0 && view.pages.is_none() && b.in_preorder() && task.off >= b.runs_from()) {
        return false;
    }
    let h = InnerHead::of(head);
    if task.depth >= q.prefix.len() {
        (!task.bounded || q.lower == q.prefix) && !starts_group(b, task.off, h, 0, q)
    } else {
        holds_prefix_end(b, task, h, q)
    }
}

/// Whether every key under the inner node of `task` (header `h`), which
/// starts above the prefix's end, belongs in the answer as a key or in a
/// group below the node: the prefix ends inside or right after the node's
/// compressed prefix, which agrees with it; `lower` is the prefix itself
/// (so it bounds nothing under the node); and no group starts in the node
/// past the prefix's end. A listing's first chunk then reads the whole
/// directory as one run.
fn holds_prefix_end(b: &FrameBuf, task: &Task, h: InnerHead, q: &Scan<'_>) -> bool {
    let inside = q.prefix.len() - task.depth;
    let n = InnerAt(task.off);
    h.prefix_len >= inside
        && q.lower == q.prefix
        && b.common_prefix(n.prefix_off(), inside, &q.prefix[task.depth..]) == inside
        && !starts_group(b, task.off, h, inside, q)
}

/// Whether a group starts at the inner node at `off` (header `h`): the
/// delimiter in its compressed prefix past its first `from` bytes, or a
/// child under the delimiter byte.
#[inline]
fn starts_group(b: &FrameBuf, off: usize, h: InnerHead, from: usize, q: &Scan<'_>) -> bool {
    q.delimiter.is_some_and(|d| InnerAt(off).prefix_or_child_has(b, h, from, d))
}

/// What a run ended with.
pub(super) enum RunEnd {
    /// The subtree is done, or handed back to the walk as tasks.
    Next,
    /// The answer is full.
    Full,
}

/// The walk's task stack, and the run's stack of inner nodes it is inside
/// (kept by the walk's scratch, so a run allocates nothing).
pub(super) struct Stacks<'s> {
    pub tasks: &'s mut Vec<Task>,
    pub open: &'s mut Vec<Open>,
}

/// Read the subtree of `task` (see `can_run`) in layout order, appending
/// its entries to `out` until `full` says the answer is complete.
pub(super) fn run(
    views: &[FrameView<'_>],
    task: Task,
    q: &Scan<'_>,
    Stacks { tasks, open }: Stacks<'_>,
    steps: &mut usize,
    out: &mut Hits,
    full: impl Fn(&Hits) -> bool,
) -> Result<Step<RunEnd>> {
    let view = &views[task.f];
    let b = view.buf;
    let data_end = b.data_end();
    if task.off >= data_end {
        return unreadable(views, view, "node past the data area");
    }
    if !tick(steps, views)? {
        return Ok(Step::Restart);
    }
    // The innermost node the run is inside, kept out of `open` (which
    // holds the outer ones that still have items to come): the leaves of
    // a node, most of a run, touch no stack.
    let head = b.u64(task.off);
    let mut top = open_node(b, task.off, head, task.depth);
    let mut p = task.off + inner_bytes(head as u8, InnerHead::of(head).prefix_len);
    open.clear();
    loop {
        // Preorder: the subtree ends where its root's last item does.
        if top.left == 0 {
            match open.pop() {
                Some(o) => top = o,
                None => return Ok(Step::Done(RunEnd::Next)),
            }
        }
        top.left -= 1;
        let depth = top.child_depth;
        if p >= data_end {
            return unreadable(views, view, "node past the data area");
        }
        if !tick(steps, views)? {
            return Ok(Step::Restart);
        }
        // A run's reads go forward through memory: start the loads a few
        // nodes ahead.
        b.prefetch(p + RUN_PREFETCH_BYTES);
        b.prefetch(p + RUN_PREFETCH_BYTES + 64);
        let head = b.u64(p);
        // Each arm sizes its node (never 0: every kind has a header).
        p += match head as u8 {
            KIND_LEAF => {
                let bytes = leaf_entry(b, p, head, depth, q, out);
                if full(out) {
                    return Ok(Step::Done(RunEnd::Full));
                }
                bytes
            }
            KIND_LINK => {
                open.push(top);
                return hand_back(b, task, open, tasks, p, depth);
            }
            kind @ 2..=5 => {
                let h = InnerHead::of(head);
                if starts_group(b, p, h, 0, q) {
                    open.push(top);
                    return hand_back(b, task, open, tasks, p, depth);
                }
                if top.left > 0 {
                    open.push(top);
                }
                top = open_node(b, p, head, depth);
                inner_bytes(kind, h.prefix_len)
            }
            _ => return unreadable(views, view, "unknown node kind"),
        };
    }
}

/// The run entering the inner node at `off` (first eight bytes `head`,
/// depth `depth`): its items, the end leaf and then the children, are to
/// come.
#[inline]
fn open_node(b: &FrameBuf, off: usize, head: u64, depth: usize) -> Open {
    let h = InnerHead::of(head);
    let items = usize::from(InnerAt(off).end(b) != NIL) + h.count;
    Open { off, child_depth: depth + h.prefix_len + 1, left: items }
}

/// Append the leaf at `off` (whose first eight bytes are `head`) of a
/// run: its key and value, or its group if its key holds the delimiter
/// past its first `depth` bytes, the depth it hangs at (`tree::scan::leaf_hit`
/// for a node whose keys all belong in the answer: nothing before `depth`
/// needs a look, since `can_run` and the run checked every prefix and key
/// byte above it with `starts_group`). Returns the leaf's size.
#[inline]
fn leaf_entry(b: &FrameBuf, off: usize, head: u64, depth: usize, q: &Scan<'_>, out: &mut Hits) -> usize {
    let (key_off, (klen, value_len)) = (LeafAt(off).key_off(), LeafAt::lens(head));
    out.push_leaf(b, key_off, klen, if q.keys_only { 0 } else { value_len }, depth, q.delimiter);
    leaf_bytes(klen, value_len)
}

/// Give the walk what is left of the run at the node at `at` (of depth
/// `depth`), which the run does not read itself: the items still to come
/// of every node the run is inside, then that node, as tasks that pop in
/// key order.
fn hand_back(b: &FrameBuf, task: Task, open: &[Open], stack: &mut Vec<Task>, at: usize, depth: usize) -> Result<Step<RunEnd>> {
    // Only children are ever left: a node's end leaf comes before them.
    let hinted = b.in_preorder();
    for o in open {
        let mut left = o.left;
        let n = InnerAt(o.off);
        n.child_fields_rev_from(b, n.head(b), 0, |_, field| {
            if left > 0 {
                left -= 1;
                let off = child_at(b, o.off, field, hinted);
                stack.push(Task { off, depth: o.child_depth, bounded: false, may_run: true, ..task });
            }
        });
    }
    stack.push(Task { off: at, depth, bounded: false, may_run: false, ..task });
    Ok(Step::Done(RunEnd::Next))
}
