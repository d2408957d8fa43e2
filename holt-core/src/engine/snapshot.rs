//! Snapshots (`Tree::snapshot`): a read-only engine over the tree's frames
//! as of one moment, for consistent scans (backups) of a live tree.
//!
//! - Persistent: a checkpoint (writers wait only for its cut, as for
//!   any checkpoint), then the published mapping is pinned in the frame
//!   store before any other checkpoint can publish (`checkpoint_serial` is
//!   held across both). The snapshot reads those images from `frames.dat`,
//!   verified by their manifest checksums; the pin keeps their slots from
//!   being rewritten, punched or cut off until the snapshot is dropped. So
//!   it costs no memory beyond its own small cache, and disk only for the
//!   frames that checkpoints rewrite while it lives.
//! - Memory: every live frame is copied under the exclusive commit gate
//!   (writers wait for the copy: memory trees are small and fast to copy).
//! - Read-only: the tree never changes in this process, so it is its own
//!   snapshot (`Tree::snapshot` hands back a clone).
//!
//! A snapshot engine has no `Durable` part and a sink that refuses every
//! batch, like a read-only open. Its frame source holds a handle to the
//! tree it was taken from, dropped only after the pin is released: so the
//! origin is closed (its lock released) only after the snapshot has
//! stopped touching the store.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::checkpoint::{Owner, Start};
use super::durable::{decode_user, Durable};
use super::sink::RefusingSink;
use super::Engine;
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::FRAME_BYTES;
use crate::store::frame_store::FrameStore;
use crate::store::image_buf::{ImageBuf, Via};
use crate::store::manifest::{SlotRef, MANIFEST_NAME};
use crate::store::pool::{FrameSource, Loaded, Pool};
use crate::tree::ROOT_FRAME;

/// Frames a snapshot caches: a scan visits each frame about once, so a
/// small cache serves it, and it adds little to the tree's own.
const SNAPSHOT_POOL_FRAMES: usize = 64;

/// The frames of a pinned published mapping; dropping it unpins them,
/// then lets the origin go (fields drop after `Drop::drop`).
struct PinnedFrames {
    store: Arc<FrameStore>,
    pin: u64,
    frames: BTreeMap<FrameId, SlotRef>,
    _origin: Box<dyn Any + Send + Sync>,
}

impl FrameSource for PinnedFrames {
    fn read_frame(&self, id: FrameId, into: &mut ImageBuf, via: Via) -> Result<Loaded> {
        let r = self.frames.get(&id).ok_or_else(|| {
            Error::corrupted(MANIFEST_NAME, 0, format!("frame {} is not in the snapshot's mapping", id.0))
        })?;
        Ok(Loaded { bytes: self.store.read_pinned(id, *r, into, via)?, base: None })
    }
}

impl Drop for PinnedFrames {
    fn drop(&mut self) {
        self.store.unpin(self.pin);
    }
}

/// Frame images copied from a memory tree.
struct CopiedFrames {
    images: HashMap<FrameId, Vec<u8>>,
}

impl FrameSource for CopiedFrames {
    fn read_frame(&self, id: FrameId, into: &mut ImageBuf, _via: Via) -> Result<Loaded> {
        let image = self.images.get(&id).ok_or_else(|| {
            Error::corrupted("frames", id.0, format!("frame {} is not in the snapshot", id.0))
        })?;
        into.copy_from_slice(image);
        Ok(Loaded { bytes: image.len() as u64, base: None })
    }
}

impl Engine {
    /// A read-only engine holding this one's contents as of now; a
    /// persistent one keeps `origin` (a handle to this engine) until it
    /// is dropped (a memory one has no store to keep).
    pub(crate) fn snapshot(&self, origin: Box<dyn Any + Send + Sync>) -> Result<Arc<Engine>> {
        self.snapshot_cached(origin, SNAPSHOT_POOL_FRAMES, self.cfg.direct_frame_reads)
    }

    /// `snapshot`, its cache at most `pool_frames` frames (no fewer than
    /// `POOL_FRAMES_MIN`), reading around the page cache once that cache is
    /// full if `direct_reads` (`TreeBuilder::direct_frame_reads`).
    pub(crate) fn snapshot_cached(
        &self,
        origin: Box<dyn Any + Send + Sync>,
        pool_frames: usize,
        direct_reads: bool,
    ) -> Result<Arc<Engine>> {
        self.poison.check_reads()?;
        let (source, ids, keys) = match &self.durable {
            Some(d) => self.pin_checkpoint(d, origin)?,
            None if self.cfg.memory => self.copy_frames()?,
            None => return Err(Error::InvalidArgument("a read-only tree is its own snapshot".into())),
        };
        let mut cfg = self.cfg.clone();
        cfg.read_only = true;
        cfg.memory = false;
        cfg.checkpoint_interval = None;
        cfg.pool_frames_max = pool_frames.min(cfg.pool_frames_max).max(crate::POOL_FRAMES_MIN);
        cfg.direct_frame_reads = direct_reads;
        let pool = Pool::new(cfg.pool_frames_max, Some(source)).with_direct_reads(cfg.direct_frame_reads);
        for id in ids {
            pool.register_stored(id);
        }
        if pool.cell(ROOT_FRAME).is_none_or(|c| !c.is_live()) {
            return Err(Error::corrupted(MANIFEST_NAME, 0, "the snapshot holds no root frame"));
        }
        let engine = Self::assemble(cfg, pool, Box::new(RefusingSink { _keep: Box::new(()) }), None);
        engine.recover(keys, &Vec::new())?;
        Ok(Arc::new(engine))
    }

    /// Checkpoint, then pin what was published, with no checkpoint between.
    fn pin_checkpoint(
        &self,
        d: &Durable,
        origin: Box<dyn Any + Send + Sync>,
    ) -> Result<(Arc<dyn FrameSource>, Vec<FrameId>, u64)> {
        let _serial = d.serial_for_asked();
        self.checkpoint_locked(d, Start::Now, Owner::Caller)?;
        let pinned = d.store.pin_published();
        let source =
            PinnedFrames { store: Arc::clone(&d.store), pin: pinned.id, frames: pinned.frames, _origin: origin };
        let Some(meta) = pinned.meta else {
            return Err(Error::corrupted(self.cfg.dir.join(MANIFEST_NAME), 0, "no checkpoint after a checkpoint"));
        };
        let keys = decode_user(&meta, &self.cfg.dir)?;
        let ids = source.frames.keys().copied().collect();
        Ok((Arc::new(source), ids, keys))
    }

    /// Copy every live frame under the exclusive commit gate.
    fn copy_frames(&self) -> Result<(Arc<dyn FrameSource>, Vec<FrameId>, u64)> {
        let _cut = self.gate.write();
        self.check_poison()?;
        let mut images = HashMap::new();
        for id in self.pool.live_ids() {
            let cell = self.pool.cell(id).expect("a live frame has a cell");
            let buf = cell.buf().expect("a memory tree keeps every frame resident");
            let mut image = vec![0u8; FRAME_BYTES];
            buf.image_into(&mut image);
            images.insert(id, image);
        }
        let ids = images.keys().copied().collect();
        Ok((Arc::new(CopiedFrames { images }), ids, self.key_count()))
    }
}

#[cfg(test)]
mod tests {
    use crate::api::TreeBuilder;
    use crate::error::Error;
    use crate::Tree;

    fn fill(t: &Tree, from: u32, to: u32, value: &[u8]) {
        for i in from..to {
            t.put(format!("k/{i:06}").as_bytes(), value).unwrap();
        }
    }

    fn count(t: &Tree) -> usize {
        t.scan_prefix(b"k/").into_iter().inspect(|e| assert!(e.is_ok(), "{e:?}")).count()
    }

    /// A snapshot keeps the tree of its moment while the origin changes
    /// (many frames rewritten and checkpointed, keys deleted), and the
    /// frame file's slots it held are freed once it is dropped.
    #[test]
    fn persistent_snapshot_survives_checkpoints_and_frees_its_slots() {
        let dir = tempfile::tempdir().unwrap();
        let t = TreeBuilder::new(dir.path()).checkpoint_interval(None).buffer_pool_size(16).open().unwrap();
        fill(&t, 0, 30_000, b"old");
        let snap = t.snapshot().unwrap();
        for round in 0..3 {
            fill(&t, 0, 30_000, format!("new{round}").as_bytes());
            for i in (0..30_000).step_by(3) {
                t.delete(format!("k/{i:06}").as_bytes()).unwrap();
            }
            t.checkpoint().unwrap();
            t.engine().durable.as_ref().unwrap().store.check_invariants();
        }
        assert_eq!(count(&snap), 30_000, "the snapshot sees every key of its moment");
        let old = |e: crate::Result<crate::RangeEntry>| matches!(e, Ok(crate::RangeEntry::Key { value, .. }) if value == b"old");
        assert!(snap.scan_prefix(b"k/").into_iter().all(old));
        assert_eq!(snap.get(b"k/000000").unwrap().as_deref(), Some(&b"old"[..]));
        assert!(matches!(snap.put(b"x", b"y"), Err(Error::ReadOnly)));
        assert_eq!(count(&t), 20_000);
        let frames = dir.path().join("frames.dat");
        let allocated = || std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&frames).unwrap());
        let held = allocated();
        drop(snap);
        t.engine().durable.as_ref().unwrap().store.check_invariants();
        assert!(allocated() < held, "the slots only the snapshot held are punched out");
        fill(&t, 40_000, 40_010, b"after");
        t.checkpoint().unwrap();
        drop(t);
        let t = TreeBuilder::new(dir.path()).open().unwrap();
        assert_eq!(count(&t), 20_010, "the store reopens whole");
    }

    #[test]
    fn memory_snapshot_is_a_copy_of_its_moment() {
        let t = TreeBuilder::new("m").memory().open().unwrap();
        fill(&t, 0, 5_000, b"a");
        let snap = t.snapshot().unwrap();
        fill(&t, 0, 6_000, b"b");
        assert_eq!(count(&snap), 5_000);
        assert_eq!(snap.get(b"k/004999").unwrap().as_deref(), Some(&b"a"[..]));
        snap.check_invariants().unwrap();
        assert_eq!(snap.stats().unwrap().keys, 5_000);
    }

    /// The origin stays open (its lock held) until its snapshot is dropped.
    #[test]
    fn snapshot_keeps_its_origin_open() {
        let dir = tempfile::tempdir().unwrap();
        let t = TreeBuilder::new(dir.path()).open().unwrap();
        fill(&t, 0, 100, b"v");
        let snap = t.snapshot().unwrap();
        drop(t);
        assert!(matches!(TreeBuilder::new(dir.path()).open(), Err(Error::Locked { .. })));
        assert_eq!(count(&snap), 100);
        drop(snap);
        assert_eq!(count(&TreeBuilder::new(dir.path()).open().unwrap()), 100);
    }

    #[test]
    fn read_only_tree_is_its_own_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        fill(&TreeBuilder::new(dir.path()).open().unwrap(), 0, 10, b"v");
        let ro = TreeBuilder::new(dir.path()).read_only(true).open().unwrap();
        assert_eq!(count(&ro.snapshot().unwrap()), 10);
    }
}
