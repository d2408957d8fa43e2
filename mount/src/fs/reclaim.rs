//! Reclaim of unlinked inodes, and the one ordering rule between the two
//! stores that removal needs.
//!
//! An inode whose last name goes away gets `R/<ino>` in the same batch, so a
//! crash at any point leaves a record of what to reclaim. It is reclaimed
//! (data object, xattrs, inode, orphan key) once no handle holds it open.
//!
//! Invariants:
//! - A data object is removed only after the batch that orphaned its inode
//!   is durable (`Meta::sync`): a power loss may roll the tree back to
//!   before the unlink, and the name must then find its contents. Files are
//!   therefore queued and reclaimed in groups, one tree sync per group, off
//!   the request path; inodes without an object are reclaimed at once.
//! - An open increments the count under the shard lock before it reads the
//!   inode; reclaim checks the count and marks the inode reclaiming under
//!   the same lock, and opens of a reclaiming inode are refused until the
//!   deletion is done, so an inode is never reclaimed under an open handle
//!   (and the lock is not held across the object's removal).
//! - The object goes before the keys: a crash in between leaves `R/<ino>`
//!   to finish the work at the next mount.
//! - While a [`ReclaimHold`] lives (a dump reading objects), queued files
//!   stay queued: their objects outlive their last name until it ends.
//!   Inodes without an object are reclaimed as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, warn};
use parking_lot::{Condvar, Mutex};

use super::Fs;
use crate::error::{FsError, FsResult};
use crate::schema::{self, FileKind, Ino};

/// How long a queued file waits at most before its group is reclaimed.
const RECLAIM_DELAY: Duration = Duration::from_millis(100);
/// Queued files that wake the reclaimer before the delay is up.
const RECLAIM_GROUP_MAX: usize = 1024;
/// Files whose keys one reclaim batch deletes.
const RECLAIM_BATCH_MAX: usize = 128;

/// Files waiting for reclaim, and the background thread that drains them
/// (and reserves inode numbers ahead of creates).
#[derive(Default)]
pub(super) struct ReclaimQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
    /// Serializes drains, so a caller that drains knows every file queued
    /// before it started is handled when it returns.
    draining: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Live `ReclaimHold`s.
    holds: AtomicUsize,
}

/// Keeps queued files (and their objects) from reclaim until dropped.
pub struct ReclaimHold<'f> {
    fs: &'f Fs,
}

impl Drop for ReclaimHold<'_> {
    fn drop(&mut self) {
        self.fs.reclaims.holds.fetch_sub(1, Ordering::AcqRel);
        self.fs.reclaims.wake.notify_one();
    }
}

#[derive(Default)]
struct QueueState {
    inos: Vec<Ino>,
    /// The inode allocator asked for a spare range.
    ino_refill: bool,
    stopping: bool,
}

impl ReclaimQueue {
    fn push(&self, ino: Ino) {
        let mut st = self.state.lock();
        st.inos.push(ino);
        if st.inos.len() >= RECLAIM_GROUP_MAX {
            self.wake.notify_one();
        }
    }

    /// Ask the background thread to reserve inode numbers ahead.
    pub fn want_ino_refill(&self) {
        self.state.lock().ino_refill = true;
        self.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.state.lock().inos.len()
    }

    /// Wait until there is work (or the delay passed, or a stop); `None`
    /// on stop, else whether an inode refill was asked for.
    fn wait(&self) -> Option<bool> {
        let mut st = self.state.lock();
        if !st.stopping && !st.ino_refill && st.inos.len() < RECLAIM_GROUP_MAX {
            self.wake.wait_for(&mut st, RECLAIM_DELAY);
        }
        (!st.stopping).then(|| std::mem::take(&mut st.ino_refill))
    }
}

impl Fs {
    /// Start the background reclaimer of a shared filesystem. Without it,
    /// queued files wait for [`Fs::drain_reclaims`] or the close.
    pub fn start_reclaimer(fs: &Arc<Fs>) -> std::io::Result<()> {
        let weak: Weak<Fs> = Arc::downgrade(fs);
        let queue = Arc::clone(&fs.reclaims);
        let handle = std::thread::Builder::new().name("reclaim".into()).spawn(move || loop {
            let Some(ino_refill) = queue.wait() else { return };
            let Some(fs) = weak.upgrade() else { return };
            if ino_refill {
                if let Err(e) = fs.inos.refill(&fs.meta) {
                    warn!("reserving inode numbers ahead failed (creates reserve their own): {e}");
                }
            }
            if let Err(e) = fs.drain_reclaims() {
                warn!("reclaiming unlinked files failed (retried later, and at the next mount): {e}");
            }
        })?;
        *fs.reclaims.thread.lock() = Some(handle);
        // The first create would otherwise reserve (and sync) on its own thread.
        if !fs.cfg.read_only {
            fs.reclaims.want_ino_refill();
        }
        Ok(())
    }

    /// Stop the background reclaimer, if any, and wait for it.
    pub(super) fn stop_reclaimer(&self) {
        self.reclaims.state.lock().stopping = true;
        self.reclaims.wake.notify_all();
        let handle = self.reclaims.thread.lock().take();
        if let Some(h) = handle.filter(|h| h.thread().id() != std::thread::current().id()) {
            let _ = h.join();
        }
    }

    /// Keep the objects of unlinked files until the hold is dropped, so
    /// that a reader of a snapshot (a dump) still finds every file of it:
    /// drains do nothing meanwhile (so a write that finds the disk full
    /// frees nothing either).
    pub fn hold_reclaims(&self) -> ReclaimHold<'_> {
        self.reclaims.holds.fetch_add(1, Ordering::AcqRel);
        ReclaimHold { fs: self }
    }

    /// Reclaim every queued file now: one tree sync, then each object and
    /// its keys. Does nothing while a `ReclaimHold` lives.
    pub fn drain_reclaims(&self) -> FsResult<()> {
        let _one_at_a_time = self.reclaims.draining.lock();
        if self.reclaims.holds.load(Ordering::Acquire) > 0 {
            return Ok(());
        }
        let inos = std::mem::take(&mut self.reclaims.state.lock().inos);
        if inos.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.meta.sync() {
            self.reclaims.state.lock().inos.extend_from_slice(&inos);
            return Err(e);
        }
        for (i, group) in inos.chunks(RECLAIM_BATCH_MAX).enumerate() {
            if let Err(e) = self.reclaim_group(group) {
                self.reclaims.state.lock().inos.extend_from_slice(&inos[i * RECLAIM_BATCH_MAX..]);
                return Err(e);
            }
        }
        debug!("reclaimed {} unlinked files", inos.len());
        Ok(())
    }

    /// `reclaim_if_unused` once the operation that made `ino` unused (its
    /// last name or handle went) has happened: a failure is logged, not
    /// returned, since the operation stands; `R/<ino>` keeps the work for
    /// a later reclaim or the next mount.
    pub(super) fn reclaim_after_commit(&self, ino: Ino) {
        if let Err(e) = self.reclaim_if_unused(ino) {
            warn!("reclaim of unused inode {} failed (finished later, at the latest by the next mount): {e}", ino.0);
        }
    }

    /// Reclaim `ino` if it has no names and no opens: at once if it has no
    /// data object, else through the queue.
    pub(super) fn reclaim_if_unused(&self, ino: Ino) -> FsResult<()> {
        if self.opens.mark_orphan_if_open(ino) {
            return Ok(());
        }
        match self.meta.inode(ino) {
            // A linked inode has nothing to reclaim (the last close of any
            // file lands here).
            Ok(i) if i.nlink > 0 => Ok(()),
            Ok(i) if i.kind == FileKind::File => {
                self.reclaims.push(ino);
                Ok(())
            }
            Ok(_) | Err(FsError::NotFound) => self.reclaim_now(ino),
            Err(e) => Err(e),
        }
    }

    /// Delete `ino` and everything it owns if it has no names and no opens.
    /// For a file, the caller has made the orphaning batch durable.
    fn reclaim_now(&self, ino: Ino) -> FsResult<()> {
        self.reclaim_group(&[ino])
    }

    /// `reclaim_now` of each inode, with one batch for all their keys: each
    /// is marked reclaiming and its object removed, then the batch deletes
    /// the inodes, their xattrs and `R/` markers. A failure leaves every
    /// marker of the group (objects already removed stay removed; a later
    /// reclaim finds them missing, which is fine).
    fn reclaim_group(&self, inos: &[Ino]) -> FsResult<()> {
        let mut doomed = Vec::with_capacity(inos.len());
        for &ino in inos {
            let Some(reclaiming) = self.opens.begin_reclaim(ino) else { continue };
            let inode = match self.meta.inode(ino) {
                Ok(i) if i.nlink > 0 => {
                    self.drop_orphan_key(ino)?;
                    continue;
                }
                Ok(i) => i,
                Err(FsError::NotFound) => {
                    self.drop_orphan_key(ino)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if inode.kind == FileKind::File {
                self.remove_object(ino)?;
            }
            let xattrs = self.meta.scan(&schema::xattr_prefix(ino))?;
            doomed.push((reclaiming, ino, xattrs));
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.transact_counted(|t, usage| {
            for (_, ino, xattrs) in &doomed {
                if t.inode(*ino)?.nlink > 0 {
                    return Err(FsError::Invalid("an orphan regained a name"));
                }
                for (key, _) in xattrs {
                    t.delete(key.clone());
                }
                t.delete_inode(*ino);
                t.delete(schema::orphan_key(*ino));
                usage.inodes -= 1;
            }
            Ok(())
        })?;
        debug!("reclaimed {} inodes", doomed.len());
        Ok(())
    }

    /// Tell the removal hook, then remove `ino`'s data object. The caller
    /// is reclaiming `ino` (`OpenTable::begin_reclaim`): no handle is open
    /// and none can open.
    fn remove_object(&self, ino: Ino) -> FsResult<()> {
        if let Some(hook) = self.removal_hook.get() {
            hook(ino);
        }
        self.data.remove(ino).map_err(|e| FsError::data("remove", ino, e))
    }

    /// Install `hook`, called with each inode whose data object is about
    /// to be removed; it runs with no handle of the inode open and none
    /// able to open until the inode is gone. One hook per filesystem: a
    /// second is refused.
    pub fn on_object_removal(&self, hook: impl Fn(Ino) + Send + Sync + 'static) -> Result<(), &'static str> {
        self.removal_hook.set(Box::new(hook)).map_err(|_| "an object removal hook is already installed")
    }

    /// Remove a stale `R/<ino>` (its inode is gone or linked). The inode is
    /// read in the same batch: an unlink of its last name committing
    /// meanwhile (which writes the marker) fails the batch, and the retry
    /// keeps the marker; else the orphan would never be reclaimed.
    fn drop_orphan_key(&self, ino: Ino) -> FsResult<()> {
        let key = schema::orphan_key(ino);
        self.transact(|t| {
            if t.get(&key)?.is_none() {
                return Ok(());
            }
            match t.inode(ino) {
                Ok(i) if i.nlink == 0 => return Ok(()),
                Ok(_) | Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
            t.delete(key.clone());
            Ok(())
        })
    }

    /// Reclaim every orphan left by a previous daemon (nothing is open yet);
    /// returns how many there were.
    pub(super) fn sweep_orphans(&self) -> FsResult<usize> {
        let orphans = self.meta.scan(schema::ORPHAN_PREFIX)?;
        for (key, _) in &orphans {
            self.reclaim_if_unused(schema::orphan_ino(key)?)?;
        }
        self.drain_reclaims()?;
        Ok(orphans.len())
    }

    /// Remove data objects whose inode is not a live regular file. Only a
    /// power loss leaves them (the tree lost a create whose object reached
    /// the disk), so mount runs this only after one (see `session`).
    pub(super) fn sweep_stray_objects(&self) -> FsResult<u64> {
        let mut inos = Vec::new();
        self.data.list(&mut |ino| inos.push(ino)).map_err(|e| FsError::data("list", Ino::ROOT, e))?;
        let mut removed = 0;
        for ino in inos {
            let is_file = match self.meta.inode(ino) {
                Ok(inode) => inode.kind == FileKind::File,
                Err(FsError::NotFound) => false,
                Err(e) => return Err(e),
            };
            if !is_file {
                self.remove_object(ino)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::fs::OpenFlags;
    use crate::schema::{self, Ino};
    use crate::tests::{memory_fs_and_tree, USER};

    /// A reclaim that read its inode linked, and so went to drop a stale
    /// `R/<ino>`, may run after an unlink of the last name committed and
    /// wrote that marker afresh: the marker must stay, or the orphan is
    /// never reclaimed. Deterministic: the late drop is called directly.
    #[test]
    fn a_late_stale_marker_drop_keeps_the_marker_of_a_fresh_orphan() {
        let (fs, tree) = memory_fs_and_tree();
        let (a, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
        fs.unlink(Ino::ROOT, b"f").unwrap();
        let marker = schema::orphan_key(a.ino);
        assert!(tree.get(&marker).unwrap().is_some(), "unlinking an open file marks it");
        fs.drop_orphan_key(a.ino).unwrap();
        assert!(tree.get(&marker).unwrap().is_some(), "the marker of an inode with nlink 0 was dropped");
        fs.release(a.ino, fh).unwrap();
        fs.drain_reclaims().unwrap();
        assert!(fs.getattr(a.ino).is_err() && tree.get(&marker).unwrap().is_none(), "the orphan is reclaimed");
    }

    /// The other side: a marker whose inode is linked again (or gone) is
    /// stale, and dropping it is right.
    #[test]
    fn a_stale_marker_of_a_linked_inode_is_dropped() {
        let (fs, tree) = memory_fs_and_tree();
        let (a, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
        fs.release(a.ino, fh).unwrap();
        let marker = schema::orphan_key(a.ino);
        tree.put(&marker, &[1, 1]).unwrap();
        fs.drop_orphan_key(a.ino).unwrap();
        assert!(tree.get(&marker).unwrap().is_none());
    }
}
