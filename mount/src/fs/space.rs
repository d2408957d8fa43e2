//! A full store: what still runs once the metadata tree's space reserve is
//! spent.
//!
//! holt-core keeps a reserve of disk space and releases it when its own
//! writes (WAL appends, checkpoints) find the device full; `Meta::space_low`
//! says so until the reserve is whole again. The data objects share the
//! device. While the tree is low:
//! - operations that take space are refused with ENOSPC (`FsError::NoSpace`)
//!   before they change anything: create, mknod, mkdir, symlink, link,
//!   setxattr, and writes, fallocate and copy_file_range that would
//!   allocate (past a file's end or into a hole). The data store would
//!   report a full device by itself once it is full; refusing earlier keeps
//!   the space the reserve gave back for the tree.
//! - operations that free space or only change attributes go on: unlink,
//!   rmdir, rename, truncate, removexattr, punch hole, chmod, chown,
//!   utimens, fsync, release and reclaim. Reads and listings write nothing
//!   they depend on (the atime update is best effort).
//!
//! Before refusing, an operation tries to win the space back: it reclaims
//! the unlinked files waiting in the queue (their objects are what an `rm`
//! freed), then asks the tree to re-create its reserve, which succeeds only
//! with room to spare.

use log::warn;

use super::Fs;
use crate::data::SeekKind;
use crate::error::{FsError, FsResult};
use crate::schema::Ino;

impl Fs {
    /// `Err(NoSpace)` while the tree is low on space and stays so after
    /// queued reclaims ran and the reserve was asked back.
    pub(super) fn space_for_growth(&self) -> FsResult<()> {
        if !self.meta.space_low() {
            return Ok(());
        }
        if self.reclaims.len() > 0 {
            if let Err(e) = self.drain_reclaims() {
                warn!("reclaim to free space failed: {e}");
            }
        }
        if self.meta.restore_space() {
            return Ok(());
        }
        Err(FsError::NoSpace)
    }

    /// `space_for_growth` for a new name: an existing one is EEXIST first,
    /// as a full ext4 answers too.
    pub(super) fn space_for_name(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        match self.space_for_growth() {
            Err(FsError::NoSpace) if self.meta.dentry(parent, name)?.is_some() => Err(FsError::Exists),
            other => other,
        }
    }

    /// `space_for_growth` for a data step on `[off, off + len)` of `ino`,
    /// needed only if the step would allocate.
    pub(super) fn space_for_range(&self, ino: Ino, off: u64, len: u64) -> FsResult<()> {
        if !self.meta.space_low() || !self.range_allocates(ino, off, len) {
            return Ok(());
        }
        self.space_for_growth()
    }

    /// Whether the range reaches past the object's end or into a hole
    /// (a missing object is all hole).
    fn range_allocates(&self, ino: Ino, off: u64, len: u64) -> bool {
        match self.data.seek(ino, off, SeekKind::Hole) {
            Ok(Some(hole)) => hole < off.saturating_add(len),
            Ok(None) | Err(_) => true,
        }
    }
}
