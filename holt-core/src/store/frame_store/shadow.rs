//! A checkpoint's images, readable as soon as they are written.
//!
//! A checkpoint captures every frame dirty at its cut; until its commit the
//! published image of such a frame is stale, so the frame had to stay in
//! memory, pinned, for the whole checkpoint. With the tree larger than the
//! cache that is up to half the cache held past its budget while the
//! checkpoint writes and syncs. So each image is read in place of the
//! frame's staged and published ones from its write on (`Published::shadow`,
//! looked up first by `slot_of`), and the copier lets the frame go once its
//! image is written (`Pool::copy_pending`): a later load reads the image
//! this checkpoint wrote, which is the frame's state (it is clean, or a
//! writer has latched it since and it stays in memory, dirty).
//!
//! What a crash leaves is unchanged: these images are in slots no manifest
//! names, and an open reads only the manifest. A commit publishes them
//! (`replaced_by` empties the map). A checkpoint that ends without one
//! (a failed write or sync, one that gave way to a caller's, a failed
//! publication) leaves each of them staged (`Drop`): it is its frame's
//! state, or older than a frame that is dirty again, which the next cut
//! writes anew, exactly as a write-out's staged image (`stage.rs`); the
//! next commit publishes it. A frame the copier let go may be gone from
//! memory by then, with that image its only copy outside the WAL.

use std::sync::atomic::Ordering;

use super::CheckpointTxn;
use crate::ids::FrameId;
use crate::store::manifest::SlotRef;

impl CheckpointTxn<'_> {
    /// Make `r` frame `id`'s image in this checkpoint, read from now on,
    /// or with `None` give it none. A slot this replaces is handed
    /// out again only after the swap, which takes the mapping's write
    /// lock, and written only once no read registered before the swap
    /// still reads it (`readers.rs`).
    pub(super) fn shadow(&mut self, id: FrameId, r: Option<SlotRef>) {
        let mut p = self.store.published.write();
        let replaced = match r {
            Some(r) => p.shadow.insert(id, r),
            None => p.shadow.remove(&id),
        };
        drop(p);
        self.released.extend(replaced.map(|old| old.slot));
    }
}

impl Drop for CheckpointTxn<'_> {
    /// Without a commit, the images written stay readable as staged ones
    /// (see the module); slots taken past the end of the file join the
    /// mapping, free unless staged.
    fn drop(&mut self) {
        let mut p = self.store.published.write();
        let written = std::mem::take(&mut p.shadow);
        if written.is_empty() {
            return;
        }
        let (from, end) = (p.slots_total, self.slots_ext_next.max(p.slots_total));
        p.free.extend(from..end);
        p.slots_total = end;
        let mut replaced = Vec::new();
        for (&id, &r) in &written {
            p.free.remove(&r.slot);
            if let Some(old) = p.staged.insert(id, r) {
                p.free.insert(old.slot);
                replaced.push(old.slot);
            }
        }
        let cap = self.holes.kept_cap(p.manifest.frames.len());
        drop(p);
        self.store.staged_since_commit.fetch_add(written.len(), Ordering::Relaxed);
        self.store.release_slots(replaced.into_iter(), &mut self.holes, cap);
    }
}
