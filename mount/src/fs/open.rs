//! Open counts and orphan reclaim.
//!
//! An inode whose last name goes away gets `R/<ino>` in the same batch, so a
//! crash at any point leaves a record of what to reclaim. It is reclaimed
//! (data object, xattrs, inode, orphan key) once no handle holds it open: at
//! the unlink itself, at its last release, or by the sweep at mount.
//! Invariant: an open increments the count under the shard lock before it
//! reads the inode, and reclaim holds the same lock while it checks the count
//! and deletes, so an inode is never reclaimed under an open handle.

use std::collections::HashMap;

use log::{debug, warn};
use parking_lot::{Mutex, MutexGuard};

use super::Fs;
use crate::error::{FsError, FsResult};
use crate::schema::{self, FileKind, Ino, Inode};

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
    fn shard(&self, ino: Ino) -> MutexGuard<'_, HashMap<Ino, u32>> {
        self.shards[(ino.0 as usize) % OPEN_SHARDS].lock()
    }

    fn acquire(&self, ino: Ino) {
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
            self.reclaim_if_unused(ino)?;
        }
        Ok(())
    }

    /// Delete `ino` and everything it owns if it has no names and no opens.
    pub(super) fn reclaim_if_unused(&self, ino: Ino) -> FsResult<()> {
        let shard = self.opens.shard(ino);
        if shard.contains_key(&ino) {
            return Ok(());
        }
        let inode = match self.meta.inode(ino) {
            Ok(i) if i.nlink > 0 => return self.drop_orphan_key(ino),
            Ok(i) => i,
            Err(FsError::NotFound) => return self.drop_orphan_key(ino),
            Err(e) => return Err(e),
        };
        if inode.kind == FileKind::File {
            // Data goes first: if we crash now, R/<ino> is still there to retry.
            self.data.remove(ino).map_err(|e| FsError::data("remove", ino, e))?;
        }
        let xattrs = self.meta.scan(&schema::xattr_prefix(ino))?;
        self.transact_counted(|t, usage| {
            let inode = t.inode(ino)?;
            if inode.nlink > 0 {
                return Err(FsError::Invalid("an orphan regained a name"));
            }
            for (key, _) in &xattrs {
                t.delete(key.clone());
            }
            t.delete_inode(ino);
            t.delete(schema::orphan_key(ino));
            usage.inodes -= 1;
            usage.bytes -= inode.size as i64;
            Ok(())
        })?;
        drop(shard);
        debug!("reclaimed inode {}", ino.0);
        Ok(())
    }

    fn drop_orphan_key(&self, ino: Ino) -> FsResult<()> {
        let key = schema::orphan_key(ino);
        self.transact(|t| {
            if t.get(&key)?.is_some() {
                t.delete(key.clone());
            }
            Ok(())
        })
    }

    /// Reclaim every orphan left by a previous daemon (nothing is open yet).
    pub(super) fn sweep_orphans(&self) -> FsResult<()> {
        let orphans = self.meta.scan(schema::ORPHAN_PREFIX)?;
        for (key, _) in &orphans {
            self.reclaim_if_unused(schema::orphan_ino(key)?)?;
        }
        if !orphans.is_empty() {
            log::info!("reclaimed {} orphaned inodes", orphans.len());
        }
        Ok(())
    }
}
