//! Images written as deltas: the pages of a frame that differ from the
//! whole image its published entry holds (`frame_file::delta`).
//!
//! Invariant: a delta's base is the whole image the PUBLISHED manifest
//! holds for the frame (its slot, or the base of its published delta).
//! That slot is published, so no checkpoint or staging writes it, and
//! every mapping that names the delta (staged, written by the checkpoint
//! under way, published by its commit) keeps the base from reuse
//! (`SlotRef::slots`). A delta over a staged image, or over one this
//! checkpoint wrote, could outlive it: such a frame is written whole.
//! The caller vouches that the pages outside `pages` equal the base's;
//! a page that does not fails its checksum when read, never returns
//! wrong bytes.

use super::FrameStore;
use crate::ids::FrameId;
use crate::store::frame_source::Over;
use crate::store::manifest::Base;

impl FrameStore {
    /// The slot a delta of frame `id` may name as its base (see the
    /// module), if the store has published an image of it; never in a
    /// version 1 frame file, whose slots are read whole.
    pub(crate) fn delta_base(&self, id: FrameId) -> Option<u32> {
        if !self.paged() {
            return None;
        }
        let p = self.published.read();
        p.manifest.frames.get(&id).map(|r| r.base.map_or(r.slot, |b| b.slot))
    }

    /// The base a delta over `over` records, if one is allowed now, else
    /// `None` (write whole); a delta is written packed, page 0 in it.
    /// Callers hold the checkpoint mutex, so the published mapping stays.
    pub(super) fn allowed(&self, id: FrameId, over: Option<Over>) -> Option<Base> {
        over.filter(|o| self.delta_base(id) == Some(o.slot)).map(|o| Base { slot: o.slot, pages: o.pages | 1, packed: true })
    }
}
