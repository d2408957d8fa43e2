//! `Tree`: the handle callers hold. A thin layer that validates arguments and
//! turns each call into one engine batch.

use std::sync::Arc;

use super::batch::{check_key, check_value, AtomicBatch, Batch};
use super::range::RangeBuilder;
use crate::stats::{TreeCounters, TreeStats};
use crate::engine::{Applied, Engine};
use crate::error::Result;
use crate::op::Op;

/// A value with its version: a number that changes on every write of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub value: Vec<u8>,
    pub version: u64,
}

/// A handle to one store. Cheap to clone; all clones share the same engine,
/// and dropping the last one (iterators count) closes the store cleanly.
#[derive(Clone)]
pub struct Tree {
    engine: Arc<Handle>,
}

/// Owner of an open engine: its drop is the clean close, synchronous, so a
/// reopen right after dropping the last `Tree` finds the store unlocked.
pub(crate) struct Handle(Arc<Engine>);

impl std::ops::Deref for Handle {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("dir", &self.engine.dir()).finish()
    }
}

impl Tree {
    pub(crate) fn from_engine(engine: Arc<Engine>) -> Self {
        Tree { engine: Arc::new(Handle(engine)) }
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The value stored at `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_record(key)?.map(|r| r.value))
    }

    /// The value and version stored at `key`.
    pub fn get_record(&self, key: &[u8]) -> Result<Option<Record>> {
        check_key(key)?;
        self.engine.get(key)
    }

    /// Set `key` to `value`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.insert_op(key, value, false).map(|_| ())
    }

    /// Set `key` to `value`, returning the previous value.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.insert_op(key, value, true)
    }

    fn insert_op(&self, key: &[u8], value: &[u8], want_prev: bool) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        check_value(value)?;
        let op = Op::Put { key: key.to_vec(), value: value.to_vec() };
        self.single(op, want_prev)
    }

    /// Remove `key`; true if it was present.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        let prev = self.single(Op::Delete { key: key.to_vec() }, false);
        prev.map(|p| p.is_some())
    }

    /// Remove `key`, returning its value.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        self.single(Op::Delete { key: key.to_vec() }, true)
    }

    fn single(&self, op: Op, want_prev: bool) -> Result<Option<Vec<u8>>> {
        self.engine.apply_one(op, want_prev)
    }

    /// Atomically move the value at `src` to `dst`. Without `force`, an
    /// existing `dst` fails with [`Error::DstExists`]; a missing `src` fails
    /// with [`Error::NotFound`]. Renaming a key onto itself is a no-op.
    pub fn rename(&self, src: &[u8], dst: &[u8], force: bool) -> Result<()> {
        check_key(src)?;
        check_key(dst)?;
        let op = Op::Rename { src: src.to_vec(), dst: dst.to_vec(), force };
        self.single(op, false).map(|_| ())
    }

    /// Apply every mutation recorded by `build`, all or nothing.
    pub fn txn<F: FnOnce(&mut Batch)>(&self, build: F) -> Result<()> {
        let mut batch = Batch::default();
        build(&mut batch);
        if let Some(e) = batch.error {
            return Err(e);
        }
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.engine.apply(&[], batch.ops, false).map(|_| ())
    }

    /// Check the guards recorded by `build`; if all hold, apply its mutations
    /// all or nothing and return true. If any guard fails, apply nothing and
    /// return false.
    pub fn atomic<F: FnOnce(&mut AtomicBatch)>(&self, build: F) -> Result<bool> {
        let mut batch = AtomicBatch::default();
        build(&mut batch);
        if let Some(e) = batch.inner.error {
            return Err(e);
        }
        match self.engine.apply(&batch.guards, batch.inner.ops, false)? {
            Applied::Done { .. } => Ok(true),
            Applied::GuardFailed => Ok(false),
        }
    }

    /// An ordered scan over the whole tree; narrow it with the builder.
    pub fn range(&self) -> RangeBuilder {
        RangeBuilder::new(Arc::clone(&self.engine))
    }

    /// Same as `range().prefix(prefix)`.
    pub fn scan_prefix(&self, prefix: &[u8]) -> RangeBuilder {
        self.range().prefix(prefix)
    }

    /// Barrier: every mutation acknowledged so far is on stable storage.
    pub fn sync(&self) -> Result<()> {
        self.engine.sync()
    }

    /// A read-only tree holding this tree's keys and values as of one
    /// moment, however this tree changes after; writes to it fail with
    /// [`Error::ReadOnly`](crate::Error::ReadOnly). For consistent scans
    /// (backups) of a tree in use.
    ///
    /// Persistent trees: costs one checkpoint (writers wait only for its
    /// cut, as for any checkpoint); the snapshot then reads that
    /// checkpoint's frame images from the store, through a cache of its
    /// own of a few frames, and while it lives their slots in the frame
    /// file are not reused, so the file may grow by the frames later
    /// checkpoints rewrite. Memory trees: every frame is copied, writers
    /// waiting for the copy. A read-only tree is its own snapshot.
    /// The snapshot keeps this tree open: the store is closed when both
    /// are dropped.
    pub fn snapshot(&self) -> Result<Tree> {
        if self.engine.is_read_only() {
            return Ok(self.clone());
        }
        Ok(Tree::from_engine(self.engine.snapshot(Box::new(self.clone()))?))
    }

    /// Write dirty frames and trim the WAL.
    pub fn checkpoint(&self) -> Result<()> {
        self.engine.checkpoint()
    }

    /// One bounded step of online maintenance (dead-space compaction and
    /// merging small child frames back into their parents).
    pub fn compact(&self) -> Result<()> {
        self.engine.compact()
    }

    /// The store's space reserve is spent: the disk filled, and the
    /// engine's own writes (WAL appends, checkpoints) went on by releasing
    /// it (see [`TreeBuilder::space_reserve_bytes`](crate::TreeBuilder::space_reserve_bytes)). A user should refuse
    /// work that consumes space until it is false again and let work that
    /// frees space through. One atomic load; always false for memory trees.
    pub fn space_low(&self) -> bool {
        self.engine.space_low()
    }

    /// Try to make the space reserve whole again now (checkpoints also
    /// do); true if the tree is not low on space on return. Growing the
    /// reserve needs a quarter more than its size free, so it is not
    /// re-made out of the last free bytes.
    pub fn restore_space_reserve(&self) -> bool {
        self.engine.restore_space_reserve()
    }

    /// Counters and shape of the tree. Visits every frame (O(frames));
    /// for a frequent reading of activity use [`Tree::counters`].
    pub fn stats(&self) -> Result<TreeStats> {
        self.engine.stats()
    }

    /// Activity counters since open, in O(1) (no frame is visited).
    pub fn counters(&self) -> TreeCounters {
        self.engine.counters()
    }

    /// Check every structural invariant of every frame (slow; for tests and fsck).
    pub fn check_invariants(&self) -> Result<()> {
        self.engine.check_invariants()
    }
}
