//! FUSE passthrough: the kernel reads, writes and maps a regular file's
//! data object directly, without a round trip to the daemon.
//!
//! The kernel wants one backing file per inode while any handle of it is
//! open, so backings are shared by inode: each open handle holds a strong
//! reference, the inode table a weak one, and the kernel's backing id is
//! closed when the last handle of the inode is released.
//!
//! This needs no cooperation from the filesystem layer beyond a descriptor
//! of the object: the object owns the file's size and times, so whatever
//! the kernel writes is reported right by the next getattr.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Weak};

use fuser::BackingId;
use parking_lot::Mutex;

use crate::schema::Ino;

#[derive(Default)]
pub(super) struct Backings {
    by_handle: Mutex<HashMap<u64, Arc<BackingId>>>,
    by_inode: Mutex<HashMap<Ino, Weak<BackingId>>>,
}

impl Backings {
    /// The backing of `ino`, registering `open()`'s descriptor with the
    /// kernel through `register` if no handle of `ino` has one; handle `fh`
    /// keeps it alive until [`Backings::release`].
    pub fn attach(
        &self,
        ino: Ino,
        fh: u64,
        open: impl FnOnce() -> std::io::Result<Option<File>>,
        register: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> std::io::Result<Option<Arc<BackingId>>> {
        let mut by_inode = self.by_inode.lock();
        let backing = match by_inode.get(&ino).and_then(Weak::upgrade) {
            Some(b) => b,
            None => {
                let Some(file) = open()? else { return Ok(None) };
                let b = Arc::new(register(&file)?);
                by_inode.insert(ino, Arc::downgrade(&b));
                b
            }
        };
        self.by_handle.lock().insert(fh, Arc::clone(&backing));
        Ok(Some(backing))
    }

    /// Drop handle `fh`'s reference; the last one closes the kernel's backing id.
    pub fn release(&self, ino: Ino, fh: u64) {
        let Some(backing) = self.by_handle.lock().remove(&fh) else { return };
        let mut by_inode = self.by_inode.lock();
        drop(backing);
        if by_inode.get(&ino).is_some_and(|w| w.strong_count() == 0) {
            by_inode.remove(&ino);
        }
    }
}
