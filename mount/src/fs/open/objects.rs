//! What the daemon knows of each file's data object (`Known`), kept in
//! the open table's shards.
//!
//! Whether an object exists changes only by a daemon step: the kernel
//! writes only objects the daemon gave it, and every step that could make
//! an object first makes it (`ensure_object`, with its inode's times) and
//! records it, under the shard lock. An object's stat changes (a) by a
//! daemon step (write, truncate, utimens, a ctime stamp, a read's atime),
//! which marks it stale, or, once the kernel uses objects directly (FUSE
//! passthrough, `kernel_io`), also (b) through a handle while it is open,
//! and (c) through a shared writable mapping, which needs a read-write
//! handle and can outlive it unseen. Without kernel I/O a kept stat is
//! therefore valid until a step marks it stale. With kernel I/O it is
//! valid only while its file has no handle open and has had no read-write
//! handle in this mount: opens mark it stale, and a stat is taken and
//! kept under the shard lock, so no open can slip between the two.

use std::io;

use super::{OpenShard, OpenTable};
use crate::data::ObjectStat;
use crate::error::{FsError, FsResult};
use crate::schema::Ino;

/// Objects known per shard; past it an arbitrary one is forgotten.
const SHARD_KNOWN_MAX: usize = 4096;

/// What is known of a file's object; no entry: nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Known {
    /// There is none: the file is empty, with its inode's times.
    Missing,
    /// It exists; its stat is not kept (or no longer valid).
    Present,
    /// It exists with this stat, valid under the rule in the module text.
    Stat(ObjectStat),
}

impl OpenShard {
    /// Whether a stat taken now may be kept (the rule in the module text).
    fn stat_keepable(&self, ino: Ino, kernel_io: bool) -> bool {
        !(kernel_io && (self.is_open(ino) || self.mappable.contains(&ino)))
    }

    fn know(&mut self, ino: Ino, known: Known) {
        if self.objects.len() >= SHARD_KNOWN_MAX && !self.objects.contains_key(&ino) {
            let victim = *self.objects.keys().next().expect("a full map has a key");
            self.objects.remove(&victim);
        }
        self.objects.insert(ino, known);
    }

    /// The kept stat of `ino`, if any, is no longer valid.
    pub(super) fn stat_stale(&mut self, ino: Ino) {
        if let Some(k @ Known::Stat(_)) = self.objects.get_mut(&ino) {
            *k = Known::Present;
        }
    }
}

impl OpenTable {
    /// `ino`'s object stat: the kept one where the rule in the module text
    /// allows, else from `stat`.
    pub(in crate::fs) fn object_stat(
        &self,
        ino: Ino,
        stat: impl FnOnce() -> io::Result<Option<ObjectStat>>,
    ) -> io::Result<Option<ObjectStat>> {
        let mut shard = self.shard(ino);
        match shard.objects.get(&ino) {
            Some(Known::Missing) => return Ok(None),
            Some(Known::Stat(st)) if shard.stat_keepable(ino, self.kernel_io()) => return Ok(Some(*st)),
            _ => {}
        }
        let st = stat()?;
        let keep = shard.stat_keepable(ino, self.kernel_io());
        shard.know(ino, st.map_or(Known::Missing, |st| if keep { Known::Stat(st) } else { Known::Present }));
        Ok(st)
    }

    /// Make sure `ino` has an object before a step that needs one: if it
    /// has none (asking `stat` when nothing is known), `create` makes it,
    /// with the times its inode records. Under the shard lock, so a
    /// concurrent step waits rather than writing into an object whose
    /// times are not yet set.
    pub(in crate::fs) fn ensure_object(
        &self,
        ino: Ino,
        stat: impl FnOnce() -> io::Result<Option<ObjectStat>>,
        create: impl FnOnce() -> FsResult<()>,
    ) -> FsResult<()> {
        let mut shard = self.shard(ino);
        let exists = match shard.objects.get(&ino) {
            Some(Known::Missing) => false,
            Some(_) => return Ok(()),
            None => stat().map_err(|e| FsError::data("stat", ino, e))?.is_some(),
        };
        if !exists {
            create()?;
        }
        shard.know(ino, Known::Present);
        Ok(())
    }

    /// Whether `ino` is known to have no object.
    pub(in crate::fs) fn known_without_object(&self, ino: Ino) -> bool {
        self.shard(ino).objects.get(&ino) == Some(&Known::Missing)
    }

    /// Record that new inode `ino` has no object yet (inode numbers are
    /// never reused, so none can exist).
    pub(in crate::fs) fn no_object_yet(&self, ino: Ino) {
        self.shard(ino).know(ino, Known::Missing);
    }

    /// A daemon step changed (or may have changed) `ino`'s object: its
    /// kept stat is stale. Steps that make objects call `ensure_object`
    /// first, so a missing object stays known as missing.
    pub(in crate::fs) fn forget_stat(&self, ino: Ino) {
        self.shard(ino).stat_stale(ino);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const F: Ino = Ino(77);

    /// `table.object_stat(F)` with a stat of `size`, counting the calls.
    fn stat_of(table: &OpenTable, size: u64, calls: &Cell<u32>) -> u64 {
        let fetch = || {
            calls.set(calls.get() + 1);
            Ok(Some(ObjectStat { size, ..ObjectStat::default() }))
        };
        table.object_stat(F, fetch).expect("stats").expect("the object exists").size
    }

    fn kernel_io_table() -> OpenTable {
        let table = OpenTable::default();
        table.set_kernel_io();
        table
    }

    #[test]
    fn a_file_with_no_handle_is_stated_once_until_a_step_forgets_it() {
        let (table, calls) = (OpenTable::default(), Cell::new(0));
        assert_eq!(stat_of(&table, 1, &calls), 1);
        assert_eq!(stat_of(&table, 2, &calls), 1, "served from the cache");
        assert_eq!(calls.get(), 1);
        table.forget_stat(F);
        assert_eq!(stat_of(&table, 3, &calls), 3, "a daemon step dropped the cached stat");
    }

    #[test]
    fn with_kernel_io_an_open_handle_bypasses_the_cache_and_its_last_close_drops_it() {
        let (table, calls) = (kernel_io_table(), Cell::new(0));
        stat_of(&table, 1, &calls);
        assert!(table.acquire(F, false));
        assert_eq!(stat_of(&table, 2, &calls), 2, "the kernel may write through an open handle");
        assert_eq!(stat_of(&table, 3, &calls), 3);
        assert_eq!(table.release(F), Some(false), "the last close, of a linked file");
        assert_eq!(stat_of(&table, 4, &calls), 4, "what the handle did is read after its close");
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn with_kernel_io_a_file_once_opened_read_write_is_never_cached() {
        let (table, calls) = (kernel_io_table(), Cell::new(0));
        assert!(table.acquire(F, true));
        assert_eq!(table.release(F), Some(false));
        assert_eq!(stat_of(&table, 1, &calls), 1);
        assert_eq!(stat_of(&table, 2, &calls), 2, "a shared writable mapping may outlive the handle");
        drop(table.begin_reclaim(F).expect("no handle is open"));
        stat_of(&table, 3, &calls);
        assert_eq!(stat_of(&table, 4, &calls), 3, "a removed object's inode number starts afresh");
    }

    /// `table.ensure_object(F)`; true if it made the object.
    fn ensure(table: &OpenTable, exists: Option<bool>) -> bool {
        let made = Cell::new(false);
        let stat = || match exists {
            Some(e) => Ok(e.then(ObjectStat::default)),
            None => unreachable!("what is known is not asked again"),
        };
        let make = || {
            made.set(true);
            Ok(())
        };
        table.ensure_object(F, stat, make).expect("ensured");
        made.get()
    }

    #[test]
    fn a_missing_object_is_made_once_and_known_missing_across_opens() {
        let table = kernel_io_table();
        table.no_object_yet(F);
        assert!(table.acquire(F, true));
        assert!(table.known_without_object(F), "only the daemon makes objects, open or not");
        table.forget_stat(F);
        assert!(table.known_without_object(F), "a step that made nothing leaves it missing");
        assert!(ensure(&table, None), "known missing: made without asking");
        assert!(!table.known_without_object(F));
        assert!(!ensure(&table, None), "known present: nothing to do");
        drop(table.begin_reclaim(F));
        assert_eq!(table.release(F), Some(false));
        drop(table.begin_reclaim(F).expect("closed"));
        assert!(!ensure(&table, Some(true)), "forgotten at reclaim, so asked: it exists");
        let fresh = OpenTable::default();
        assert!(ensure(&fresh, Some(false)), "nothing known, asked: missing, so made");
    }

    #[test]
    fn without_kernel_io_opens_keep_the_cache_and_only_steps_drop_it() {
        let (table, calls) = (OpenTable::default(), Cell::new(0));
        table.no_object_yet(F);
        let missing = table.object_stat(F, || unreachable!("a new inode is known to have no object"));
        assert_eq!(missing.expect("stats"), None);
        assert!(table.known_without_object(F));
        assert!(table.acquire(F, true));
        assert!(ensure(&table, None), "the first write makes the object");
        table.forget_stat(F);
        assert_eq!(stat_of(&table, 1, &calls), 1, "after the step the object is stated");
        assert_eq!(stat_of(&table, 2, &calls), 1, "only the daemon changes objects");
        assert_eq!(table.release(F), Some(false));
        assert_eq!(stat_of(&table, 3, &calls), 1, "a close changes nothing either");
        assert_eq!(calls.get(), 1);
    }
}
