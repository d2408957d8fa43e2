//! Open counts: an inode lives at least until its last handle is released
//! (reclaim, in `reclaim`, checks the count and marks the inode reclaiming
//! under the same shard lock; opens of a reclaiming inode are refused).
//!
//! Each shard also caches the object stats of files with no handle open.
//! An object changes only (a) through a handle, while it is open, or (b)
//! by a daemon step (truncate, utimens, a ctime stamp), or (c) through a
//! shared writable mapping, which needs a read-write handle and can outlive
//! it unseen. So a cached stat is valid while its file has no handle open,
//! has had no read-write handle in this mount, and no daemon step ran since
//! it was taken: opens and steps drop it, and a stat is taken and cached
//! under the shard lock, so no open can slip between the two.

use std::collections::{HashMap, HashSet};
use std::io;

use log::warn;
use parking_lot::{Mutex, MutexGuard};

use super::Fs;
use crate::data::ObjectStat;
use crate::error::{FsError, FsResult};
use crate::schema::{Ino, Inode};

const OPEN_SHARDS: usize = 16;
/// Cached object stats per shard; past it an arbitrary one is dropped.
const SHARD_STATS_MAX: usize = 4096;

#[derive(Default)]
pub(super) struct OpenTable {
    shards: [Mutex<OpenShard>; OPEN_SHARDS],
}

#[derive(Default)]
pub(super) struct OpenShard {
    open: HashMap<Ino, Open>,
    stats: HashMap<Ino, ObjectStat>,
    /// Files opened read-write in this mount: never cached.
    mappable: HashSet<Ino>,
    /// Inodes being reclaimed: no handle is open and none may open.
    reclaiming: HashSet<Ino>,
}

#[derive(Default)]
struct Open {
    handles: u32,
    /// The file lost its last name while open: its last close reclaims it.
    orphaned: bool,
}

impl OpenShard {
    fn is_open(&self, ino: Ino) -> bool {
        self.open.contains_key(&ino)
    }
}

/// While it lives, its inode is being reclaimed: opens of it are refused.
/// The shard lock is not held meanwhile, so the object's removal (a
/// syscall that can wait for the backing journal) stalls no other open,
/// close or unlink of the shard.
pub(super) struct Reclaiming<'t> {
    table: &'t OpenTable,
    ino: Ino,
}

impl Drop for Reclaiming<'_> {
    fn drop(&mut self) {
        self.table.shard(self.ino).reclaiming.remove(&self.ino);
    }
}

impl OpenTable {
    pub(super) fn shard(&self, ino: Ino) -> MutexGuard<'_, OpenShard> {
        self.shards[(ino.0 as usize) % OPEN_SHARDS].lock()
    }

    /// Count a handle; false (nothing counted) if `ino` is being reclaimed.
    #[must_use]
    pub(super) fn acquire(&self, ino: Ino, read_write: bool) -> bool {
        let mut shard = self.shard(ino);
        if shard.reclaiming.contains(&ino) {
            return false;
        }
        shard.open.entry(ino).or_default().handles += 1;
        shard.stats.remove(&ino);
        if read_write {
            shard.mappable.insert(ino);
        }
        true
    }

    /// Start reclaiming `ino` unless a handle holds it open (or another
    /// reclaim runs); its cached facts are dropped.
    pub(super) fn begin_reclaim(&self, ino: Ino) -> Option<Reclaiming<'_>> {
        let mut shard = self.shard(ino);
        if shard.is_open(ino) || !shard.reclaiming.insert(ino) {
            return None;
        }
        shard.stats.remove(&ino);
        shard.mappable.remove(&ino);
        Some(Reclaiming { table: self, ino })
    }

    /// Drop one open; `Some(orphaned)` if it was the last.
    fn release(&self, ino: Ino) -> Option<bool> {
        let mut shard = self.shard(ino);
        match shard.open.get_mut(&ino) {
            Some(o) if o.handles > 1 => {
                o.handles -= 1;
                None
            }
            Some(_) => {
                let last = shard.open.remove(&ino).map(|o| o.orphaned);
                shard.stats.remove(&ino);
                last
            }
            None => {
                warn!("release of inode {} that has no open handle", ino.0);
                None
            }
        }
    }

    /// Mark an open `ino` as having lost its last name; false if it is
    /// not open (then nothing will reclaim it at a close).
    pub(super) fn mark_orphan_if_open(&self, ino: Ino) -> bool {
        match self.shard(ino).open.get_mut(&ino) {
            Some(o) => {
                o.orphaned = true;
                true
            }
            None => false,
        }
    }

    /// `ino`'s object stat: cached where the rule in the module text
    /// allows, else from `stat`.
    pub(super) fn object_stat(
        &self,
        ino: Ino,
        stat: impl FnOnce() -> io::Result<Option<ObjectStat>>,
    ) -> io::Result<Option<ObjectStat>> {
        let mut shard = self.shard(ino);
        if shard.is_open(ino) || shard.mappable.contains(&ino) {
            drop(shard);
            return stat();
        }
        if let Some(&st) = shard.stats.get(&ino) {
            return Ok(Some(st));
        }
        let st = stat()?;
        if let Some(st) = st {
            if shard.stats.len() >= SHARD_STATS_MAX {
                let victim = *shard.stats.keys().next().expect("a full map has a key");
                shard.stats.remove(&victim);
            }
            shard.stats.insert(ino, st);
        }
        Ok(st)
    }

    /// Drop `ino`'s cached stat: a daemon step changed (or may have
    /// changed) its object.
    pub(super) fn forget_stat(&self, ino: Ino) {
        self.shard(ino).stats.remove(&ino);
    }
}

impl Fs {
    /// Count one more open handle on `ino` and return its attributes.
    pub(super) fn open_inode(&self, ino: Ino, read_write: bool) -> FsResult<Inode> {
        if !self.opens.acquire(ino, read_write) {
            return Err(FsError::NotFound);
        }
        match self.meta.inode(ino) {
            Ok(inode) => Ok(inode),
            Err(e) => {
                self.opens.release(ino);
                Err(e)
            }
        }
    }

    /// Drop one open handle; the last one of a file orphaned while open
    /// reclaims it.
    pub(super) fn close_inode(&self, ino: Ino) -> FsResult<()> {
        if self.opens.release(ino) == Some(true) && !self.cfg.read_only {
            self.reclaim_after_commit(ino);
        }
        Ok(())
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
    fn an_open_handle_bypasses_the_cache_and_its_last_close_drops_it() {
        let (table, calls) = (OpenTable::default(), Cell::new(0));
        stat_of(&table, 1, &calls);
        assert!(table.acquire(F, false));
        assert_eq!(stat_of(&table, 2, &calls), 2, "the kernel may write through an open handle");
        assert_eq!(stat_of(&table, 3, &calls), 3);
        assert_eq!(table.release(F), Some(false), "the last close, of a linked file");
        assert_eq!(stat_of(&table, 4, &calls), 4, "what the handle did is read after its close");
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn a_file_once_opened_read_write_is_never_cached() {
        let (table, calls) = (OpenTable::default(), Cell::new(0));
        assert!(table.acquire(F, true));
        assert_eq!(table.release(F), Some(false));
        assert_eq!(stat_of(&table, 1, &calls), 1);
        assert_eq!(stat_of(&table, 2, &calls), 2, "a shared writable mapping may outlive the handle");
        drop(table.begin_reclaim(F).expect("no handle is open"));
        stat_of(&table, 3, &calls);
        assert_eq!(stat_of(&table, 4, &calls), 3, "a removed object's inode number starts afresh");
    }

    #[test]
    fn only_a_file_orphaned_while_open_is_reclaimed_at_its_last_close() {
        let table = OpenTable::default();
        assert!(!table.mark_orphan_if_open(F), "a closed file is reclaimed by its unlink");
        assert!(table.acquire(F, false) && table.acquire(F, false));
        assert!(table.mark_orphan_if_open(F));
        assert_eq!(table.release(F), None, "one handle is still open");
        assert_eq!(table.release(F), Some(true));
    }

    #[test]
    fn a_reclaim_refuses_opens_until_it_ends_and_waits_for_open_handles() {
        let table = OpenTable::default();
        assert!(table.acquire(F, false));
        assert!(table.begin_reclaim(F).is_none(), "an open file is not reclaimed");
        assert_eq!(table.release(F), Some(false));
        let reclaim = table.begin_reclaim(F).expect("no handle is open");
        assert!(table.begin_reclaim(F).is_none(), "one reclaim at a time");
        assert!(!table.acquire(F, false), "no open while the object goes");
        drop(reclaim);
        assert!(table.acquire(F, false));
    }
}
