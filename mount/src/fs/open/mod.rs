//! Open counts: an inode lives at least until its last handle is released
//! (reclaim, in `reclaim`, checks the count and marks the inode reclaiming
//! under the same shard lock; opens of a reclaiming inode are refused).
//! Each shard also keeps what is known of its files' objects (`objects`),
//! under the same lock, so no open can slip between a stat and its keeping.

mod objects;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use log::warn;
use parking_lot::{Mutex, MutexGuard};

use super::Fs;
use crate::error::{FsError, FsResult};
use crate::schema::{Ino, Inode};

const OPEN_SHARDS: usize = 16;

#[derive(Default)]
pub(super) struct OpenTable {
    shards: [Mutex<OpenShard>; OPEN_SHARDS],
    /// The kernel reads and writes objects itself (passthrough); set at
    /// the FUSE handshake, before any open, and never cleared: handles
    /// and mappings made with it outlive a later refusal.
    kernel_io: AtomicBool,
}

#[derive(Default)]
pub(super) struct OpenShard {
    open: HashMap<Ino, Open>,
    objects: HashMap<Ino, objects::Known>,
    /// With kernel I/O, files opened read-write in this mount: never cached.
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

    pub(super) fn set_kernel_io(&self) {
        self.kernel_io.store(true, Ordering::Release);
    }

    pub(super) fn kernel_io(&self) -> bool {
        self.kernel_io.load(Ordering::Acquire)
    }

    /// Count a handle; false (nothing counted) if `ino` is being reclaimed.
    #[must_use]
    pub(super) fn acquire(&self, ino: Ino, read_write: bool) -> bool {
        let mut shard = self.shard(ino);
        if shard.reclaiming.contains(&ino) {
            return false;
        }
        shard.open.entry(ino).or_default().handles += 1;
        if self.kernel_io() {
            shard.stat_stale(ino);
            if read_write {
                shard.mappable.insert(ino);
            }
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
        shard.objects.remove(&ino);
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
                if self.kernel_io() {
                    shard.stat_stale(ino);
                }
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

}

impl Fs {
    /// The kernel will read and write data objects itself (FUSE
    /// passthrough was granted): call before the first open. From then on
    /// an object can change without a request, so its stat is cached only
    /// while nothing can, and each regular file gets its object when it is
    /// created (the kernel needs one to open).
    pub fn share_objects_with_kernel(&self) {
        self.opens.set_kernel_io();
    }

    /// Whether [`Fs::share_objects_with_kernel`] was called.
    pub fn objects_shared_with_kernel(&self) -> bool {
        self.opens.kernel_io()
    }

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
    use super::*;

    const F: Ino = Ino(77);

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
