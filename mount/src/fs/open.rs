//! Open counts: an inode lives at least until its last handle is released
//! (reclaim, in `reclaim`, checks the count under the same shard lock).

use std::collections::HashMap;

use log::warn;
use parking_lot::{Mutex, MutexGuard};

use super::Fs;
use crate::error::FsResult;
use crate::schema::{Ino, Inode};

const OPEN_SHARDS: usize = 16;

pub(super) struct OpenTable {
    shards: [Mutex<HashMap<Ino, u32>>; OPEN_SHARDS],
}

impl Default for OpenTable {
    fn default() -> Self {
        OpenTable { shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }
}

impl OpenTable {
    pub(super) fn shard(&self, ino: Ino) -> MutexGuard<'_, HashMap<Ino, u32>> {
        self.shards[(ino.0 as usize) % OPEN_SHARDS].lock()
    }

    pub(super) fn is_open(&self, ino: Ino) -> bool {
        self.shard(ino).contains_key(&ino)
    }

    pub(super) fn acquire(&self, ino: Ino) {
        *self.shard(ino).entry(ino).or_insert(0) += 1;
    }

    /// Drop one open; true if it was the last.
    fn release(&self, ino: Ino) -> bool {
        let mut shard = self.shard(ino);
        match shard.get_mut(&ino) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                shard.remove(&ino);
                true
            }
            None => {
                warn!("release of inode {} that has no open handle", ino.0);
                false
            }
        }
    }
}

impl Fs {
    /// Count one more open handle on `ino` and return its attributes.
    pub(super) fn open_inode(&self, ino: Ino) -> FsResult<Inode> {
        self.opens.acquire(ino);
        match self.meta.inode(ino) {
            Ok(inode) => Ok(inode),
            Err(e) => {
                self.opens.release(ino);
                Err(e)
            }
        }
    }

    /// Drop one open handle; the last one reclaims an unlinked inode.
    pub(super) fn close_inode(&self, ino: Ino) -> FsResult<()> {
        if self.opens.release(ino) && !self.cfg.read_only {
            self.reclaim_after_commit(ino);
        }
        Ok(())
    }
}
