//! Optimistic descent: from the root, through links, to the frame where a
//! key lands, and point lookups on top of it.

use std::cell::Cell;

use super::{Owned, Step, RESTARTS_MAX, ROOT_FRAME, ROOT_SLOT};
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::node::{field_slot, hinted_child, link_target, node_bytes, InnerAt, InnerHead, LeafAt, KIND_LEAF, KIND_LINK};
use crate::layout::{slot_entry_offset, FrameBuf, Slot, FRAME_BYTES, NIL, SLOT_BYTES};
use crate::store::miss_filter::Probe;
use crate::store::pages::PageState;
use crate::store::pool::{FrameCell, Pool};
use crate::Record;

/// Most frames one descent may cross before the chain is declared a cycle.
pub(crate) const FRAME_HOPS_MAX: usize = 4096;
/// Loads of one frame `enter` tries before restarting the whole walk.
const LOADS_PER_ENTER_MAX: usize = 4;

/// A frame as seen by one walk: read optimistically at `version`, or owned.
#[derive(Clone, Copy)]
pub(crate) struct FrameView<'p> {
    pub id: FrameId,
    pub cell: &'p FrameCell,
    pub buf: &'p FrameBuf,
    /// `None` when the walking thread holds the frame exclusively.
    pub version: Option<u64>,
    /// For a frame resident in part (`Reads::Pages` only): which pages
    /// `buf` holds. A walk reads no other (see `ensure`).
    pub pages: Option<&'p PageState>,
}

/// What a walk may do with a frame it finds resident only in part.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Read all of it: maintenance and replay, which latch the frames
    /// they walk, and every reader that does not check pages.
    Whole,
    /// Read the pages it needs (`store::pages`): point lookups (`lookup`)
    /// and scans (`tree::scan`), which check each read with `ensure`.
    Pages,
    /// A writer's walk (`try_locate_paged`): a frame resident in part is
    /// read by pages, and a miss reads by pages a frame a walk was seen
    /// to leave by a link (`FrameCell::links_out`), else the whole frame:
    /// the walk most likely ends there, and the writer would then read it
    /// whole anyway, after the pages.
    PagesAbove,
}

impl Reads {
    /// Whether a frame resident in part is read as it is.
    fn takes_part(self) -> bool {
        self != Reads::Whole
    }

    /// Whether a miss on `cell` loads it in part (where the pool loads
    /// pages at all).
    fn loads_part(self, cell: &FrameCell) -> bool {
        match self {
            Reads::Whole => false,
            Reads::Pages => true,
            Reads::PagesAbove => cell.links_out(),
        }
    }
}

impl FrameView<'_> {
    /// Whether everything read from this frame so far is consistent.
    pub(crate) fn valid(&self) -> bool {
        self.version.is_none_or(|v| self.cell.latch.validate(v))
    }
}

/// Start reading frame `id`: directly if owned, else optimistically. A frame
/// that is latched or not resident makes this attempt restart (after
/// waiting for the writer or loading the frame).
pub(crate) fn enter<'p>(pool: &'p Pool, owned: &Owned<'p>, id: FrameId) -> Result<Step<FrameView<'p>>> {
    enter_for(pool, owned, id, Reads::Whole)
}

/// `enter`, taking a frame resident in part as it is if `reads` allows.
pub(crate) fn enter_for<'p>(pool: &'p Pool, owned: &Owned<'p>, id: FrameId, reads: Reads) -> Result<Step<FrameView<'p>>> {
    if let Some(cell) = owned.get(id) {
        let buf = cell.buf().expect("an owned frame is resident");
        return Ok(Step::Done(FrameView { id, cell, buf, version: None, pages: None }));
    }
    let cell = pool.cell(id).filter(|c| c.is_live());
    let Some(cell) = cell else {
        // Only an error if the link that led here validates (see `follow`).
        return Err(corrupt_frame(id, "link to a frame that does not exist"));
    };
    // Pinned before its version is read: a frame pinned and then loaded stays.
    owned.pins.enter(id, cell);
    // A frame just read from the store is used at once rather than after a
    // restart, so a descent through a small cache usually makes progress
    // even when each load evicts another frame (and always once it pins).
    for _ in 0..LOADS_PER_ENTER_MAX {
        let Some(version) = cell.latch.optimistic() else {
            // Waiting while holding latches could deadlock with a writer
            // that waits for ours: a batch backs off instead, through an
            // error its engine loop recognises by `was_contended` (and
            // that reads as starvation should any other path return it).
            if !owned.is_empty() {
                owned.set_contended();
                return Err(Error::Starved { what: "a batch's read of a frame another writer holds", restarts: 0 });
            }
            cell.latch.wait_unlocked();
            return Ok(Step::Restart);
        };
        // The buffer pointer is read after the version, so an eviction in
        // between is caught by validation.
        let view = |buf, pages| FrameView { id, cell, buf, version: Some(version), pages };
        if let Some(buf) = cell.buf() {
            pool.counters.hits.add(1);
            cell.touch();
            return Ok(Step::Done(view(buf, None)));
        }
        if let (true, Some(buf)) = (reads.takes_part(), cell.part()) {
            pool.counters.hits.add(1);
            cell.touch();
            return Ok(Step::Done(view(buf, cell.page_state())));
        }
        owned.pins.note_miss();
        if reads.loads_part(cell) && cell.part().is_none() && pool.loads_pages() {
            pool.load_head(id, cell)?;
        } else {
            pool.load(id, cell)?;
        }
    }
    Ok(Step::Restart)
}

/// Cross the link read from `from` into frame `to`. Errors count only if
/// `from` still validates (a torn read can name any frame); and `from` is
/// validated after entering `to`, so the link was real when we crossed.
pub(crate) fn follow<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    from: &FrameView<'p>,
    to: FrameId,
) -> Result<Step<FrameView<'p>>> {
    follow_for(pool, owned, from, to, Reads::Whole)
}

pub(crate) fn follow_for<'p>(
    pool: &'p Pool,
    owned: &Owned<'p>,
    from: &FrameView<'p>,
    to: FrameId,
    reads: Reads,
) -> Result<Step<FrameView<'p>>> {
    match enter_for(pool, owned, to, reads) {
        Err(_) | Ok(Step::Done(_)) if !from.valid() => Ok(Step::Restart),
        r => r,
    }
}

/// Where a walk inside one frame ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The key's leaf, at this offset.
    Leaf(usize),
    /// The key is absent; an insert would change this frame.
    Miss,
    /// The key continues in another frame, at this slot and key depth.
    Link(FrameId, Slot, usize),
    /// The bytes read make no sense: torn by a writer, or corrupt.
    Torn,
}

/// What a walk may read of its frame.
pub(crate) trait Pages {
    /// Whether `need` does anything: a walk of a whole frame compiles
    /// without its calls.
    const PARTIAL: bool;
    /// Make the `len` bytes at `off` readable; false if they cannot be
    /// (the walk stops as if torn, and its caller asks the pager why).
    fn need(&self, off: usize, len: usize) -> bool;
}

/// A whole frame: every byte is there.
pub(crate) struct Whole;

impl Pages for Whole {
    const PARTIAL: bool = false;
    #[inline(always)]
    fn need(&self, _off: usize, _len: usize) -> bool {
        true
    }
}

/// Why a walk of a frame resident in part stopped short.
enum Fault {
    /// The frame changed since the view's version: restart.
    Stale,
    /// A page could not be read (I/O error, checksum mismatch).
    Failed(Error),
}

/// A frame resident in part: pages are read as the walk reaches them.
struct Faulting<'a, 'p> {
    pool: &'p Pool,
    view: &'a FrameView<'p>,
    fault: Cell<Option<Fault>>,
}

impl Pages for Faulting<'_, '_> {
    const PARTIAL: bool = true;
    fn need(&self, off: usize, len: usize) -> bool {
        match ensure(self.pool, self.view, off, len, 1) {
            Ok(Step::Done(())) => true,
            Ok(Step::Restart) => {
                self.fault.set(Some(Fault::Stale));
                false
            }
            Err(e) => {
                self.fault.set(Some(Fault::Failed(e)));
                false
            }
        }
    }
}

/// Pages a scan reads at once in a frame resident in part: a directory's
/// entries lie together in key order, and one request for 16 KiB costs
/// little more than one for 4 (a listing's reads fell from 2645 to 3590
/// dirs/s against 1-page reads, where point lookups, whose paths jump
/// through a frame, only read more: benches/RESULTS.md run 23).
pub(crate) const SCAN_BLOCK_PAGES: usize = 4;

/// Make the `len` bytes at `off` of `view` readable: they are, in a whole
/// frame; in a frame resident in part, the pages it lacks are read first,
/// in aligned blocks of `block` pages (bytes past the frame read as zeros
/// and need nothing). `Restart`: the frame changed since the view's
/// version.
pub(crate) fn ensure<'p>(pool: &'p Pool, view: &FrameView<'p>, off: usize, len: usize, block: usize) -> Result<Step<()>> {
    let Some(state) = view.pages else { return Ok(Step::Done(())) };
    let Some(span) = PageState::span(off, len.min(FRAME_BYTES.saturating_sub(off))) else { return Ok(Step::Done(())) };
    if state.has_all(span.clone()) {
        return Ok(Step::Done(()));
    }
    let version = view.version.expect("a part buffer is read optimistically");
    Ok(if pool.fault_pages(view.id, view.cell, version, span, block)? { Step::Done(()) } else { Step::Restart })
}

/// `ensure` the node at `off` for a scan: its first eight bytes, which
/// size it, then all of it. Kept out of line: scans of whole frames (every scan of a
/// tree the cache holds) never call it, and their loop stays tight.
#[cold]
#[inline(never)]
pub(crate) fn ensure_node<'p>(pool: &'p Pool, view: &FrameView<'p>, off: usize) -> Result<Step<()>> {
    if view.pages.is_none() {
        return Ok(Step::Done(()));
    }
    match ensure(pool, view, off, 8, SCAN_BLOCK_PAGES)? {
        Step::Done(()) => ensure(pool, view, off, node_bytes(view.buf, off), SCAN_BLOCK_PAGES),
        restart => Ok(restart),
    }
}

/// `ensure` the frame's whole slot table (a scan reads the slots of every
/// child it pushes).
#[cold]
#[inline(never)]
pub(crate) fn ensure_slot_table<'p>(pool: &'p Pool, view: &FrameView<'p>) -> Result<Step<()>> {
    let len = (view.buf.slot_count() as usize).saturating_mul(SLOT_BYTES).min(FRAME_BYTES);
    ensure(pool, view, FRAME_BYTES - len, len, SCAN_BLOCK_PAGES)
}

/// Follow `key` inside one frame from `slot` at key depth `depth`.
#[inline]
pub(crate) fn walk_frame(b: &FrameBuf, slot: Slot, depth: usize, key: &[u8]) -> Walk {
    walk_frame_at(b, &Whole, slot, depth, key).0
}

/// `walk_frame`, also returning the slot of the node the walk stopped at
/// (for `Walk::Link`, the link node's own slot); it reads what `pages`
/// makes readable first. In a frame laid out by a tidy, a child field's
/// distance gives the child's offset without its slot-table entry (one
/// memory access, or page, fewer a step).
#[inline(always)]
pub(crate) fn walk_frame_at<P: Pages>(b: &FrameBuf, pages: &P, mut slot: Slot, mut depth: usize, key: &[u8]) -> (Walk, Slot) {
    let hinted = b.in_preorder();
    // The next node's offset when its field carried it, else 0.
    let mut hint = 0usize;
    for _ in 0..key.len() + 3 {
        let off = if hint != 0 {
            hint
        } else {
            if P::PARTIAL && slot.0 < b.slot_count() && !pages.need(slot_entry_offset(slot), SLOT_BYTES) {
                return (Walk::Torn, slot);
            }
            let Some(off) = b.node_offset(slot) else { return (Walk::Torn, slot) };
            off
        };
        // A node's first eight bytes hold every length that sizes it.
        if P::PARTIAL && !(pages.need(off, 8) && pages.need(off, node_bytes(b, off))) {
            return (Walk::Torn, slot);
        }
        let head = b.u64(off);
        match head as u8 {
            KIND_LINK => {
                let (f, s) = link_target(b, off);
                return (Walk::Link(f, s, depth), slot);
            }
            KIND_LEAF => {
                let walk = if LeafAt(off).key_is(b, key) { Walk::Leaf(off) } else { Walk::Miss };
                return (walk, slot);
            }
            2..=5 => {
                let (n, h) = (InnerAt(off), InnerHead::of(head));
                let plen = h.prefix_len;
                let Some(rest) = key.get(depth..) else { return (Walk::Torn, slot) };
                if b.common_prefix(n.prefix_off(), plen, rest) < plen {
                    return (Walk::Miss, slot);
                }
                depth += plen;
                let field = match key.get(depth) {
                    None => n.end_field(b),
                    Some(&byte) => {
                        depth += 1;
                        n.find_child_field(b, h, byte)
                    }
                };
                let next = field_slot(field);
                if next == NIL {
                    return (Walk::Miss, slot);
                }
                slot = Slot(next);
                hint = hinted_child(off, field, hinted).unwrap_or(0);
            }
            _ => return (Walk::Torn, slot),
        }
    }
    (Walk::Torn, slot)
}

/// The frame where `key` lands, the walk's result there, and the slot and
/// depth at which the walk entered that frame.
pub(crate) struct Landing<'p> {
    pub view: FrameView<'p>,
    pub walk: Walk,
    pub entry: (Slot, usize),
}

pub(crate) fn corrupt_frame(id: FrameId, what: &str) -> Error {
    Error::corrupted("frames", id.0, format!("frame {}: {what}", id.0))
}

/// One optimistic attempt to find where `key` lands.
pub(crate) fn try_locate<'p>(pool: &'p Pool, owned: &Owned<'p>, key: &[u8]) -> Result<Step<Landing<'p>>> {
    try_locate_for(pool, owned, key, Reads::Whole, None)
}

/// `try_locate` for a writer: the frames it only passes through are read
/// by pages (`Reads::PagesAbove`), as a lookup reads them; the landing
/// frame may be resident in part, and the writer makes it whole once it
/// holds it (`Pool::make_whole`; the version is the same either way).
/// Where the tree outgrows the cache, a writer's descent through an inner
/// frame the cache let go costs a few pages, not the frame.
pub(crate) fn try_locate_paged<'p>(pool: &'p Pool, owned: &Owned<'p>, key: &[u8]) -> Result<Step<Landing<'p>>> {
    try_locate_for(pool, owned, key, Reads::PagesAbove, None)
}

/// `try_locate`, landing in a frame resident in part if `reads` allows.
/// With a miss filter's `probe`, a walk about to leave the root frame
/// lands as a miss there if the filter knows the key is absent: the root
/// frame's walk hid the probe's cache miss, and the frames below, colder,
/// are not read.
fn try_locate_for<'p>(pool: &'p Pool, owned: &Owned<'p>, key: &[u8], reads: Reads, probe: Option<&Probe<'_>>) -> Result<Step<Landing<'p>>> {
    let Step::Done(mut view) = enter_for(pool, owned, ROOT_FRAME, reads)? else { return Ok(Step::Restart) };
    let (mut slot, mut depth) = (ROOT_SLOT, 0);
    for _ in 0..FRAME_HOPS_MAX {
        let walk = match view.pages {
            None => walk_frame(view.buf, slot, depth, key),
            Some(_) => {
                let pager = Faulting { pool, view: &view, fault: Cell::new(None) };
                match (walk_frame_at(view.buf, &pager, slot, depth, key).0, pager.fault.take()) {
                    (_, Some(Fault::Stale)) => return Ok(Step::Restart),
                    (_, Some(Fault::Failed(e))) => return Err(e),
                    (walk, None) => walk,
                }
            }
        };
        match walk {
            Walk::Link(..) if view.id == ROOT_FRAME && probe.is_some_and(Probe::absent) => {
                return Ok(Step::Done(Landing { view, walk: Walk::Miss, entry: (slot, depth) }));
            }
            Walk::Link(f, s, d) => {
                view.cell.note_links_out();
                let Step::Done(next) = follow_for(pool, owned, &view, f, reads)? else { return Ok(Step::Restart) };
                (view, slot, depth) = (next, s, d);
            }
            Walk::Torn if view.valid() => return Err(corrupt_frame(view.id, "unreadable node")),
            Walk::Torn => return Ok(Step::Restart),
            walk => return Ok(Step::Done(Landing { view, walk, entry: (slot, depth) })),
        }
    }
    if view.valid() {
        return Err(corrupt_frame(view.id, "link chain too long (cycle?)"));
    }
    Ok(Step::Restart)
}

/// Run `attempt`, whose walks use `owned`, until it completes, counting
/// restarts. An attempt that restarted after loading a frame makes the next
/// ones pin what they read (`store::pins`), so the loop ends: each restart
/// after that is a writer's change.
pub(crate) fn retry<T>(owned: &Owned<'_>, mut attempt: impl FnMut() -> Result<Step<T>>) -> Result<T> {
    for _ in 0..RESTARTS_MAX {
        match attempt()? {
            Step::Done(t) => return Ok(t),
            Step::Restart => {
                owned.pool().counters.restarts.add(1);
                owned.pins.after_restart();
            }
        }
    }
    Err(Error::Starved { what: "a read", restarts: RESTARTS_MAX })
}

/// The record stored at `key`.
pub(crate) fn lookup<'p>(pool: &'p Pool, owned: &Owned<'p>, key: &[u8], probe: Option<&Probe<'_>>) -> Result<Option<Record>> {
    retry(owned, || {
        let Step::Done(land) = try_locate_for(pool, owned, key, Reads::Pages, probe)? else { return Ok(Step::Restart) };
        let b = land.view.buf;
        let rec = match land.walk {
            Walk::Leaf(off) => {
                let leaf = LeafAt(off);
                Some(Record { value: leaf.value(b), version: leaf.version(b) })
            }
            _ => None,
        };
        Ok(if land.view.valid() { Step::Done(rec) } else { Step::Restart })
    })
}
