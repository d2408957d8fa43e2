//! A simulated disk for crash and fault-injection tests, built with the
//! `testing` feature (and in this crate's own tests); never in a release
//! build of a product.
//!
//! A [`SimDisk`] is one simulated machine's storage, kept in memory. Trees
//! opened on it ([`SimDisk::open_tree`]) and plain files opened on it
//! ([`SimDisk::open`]) share its files, its count of mutating operations and
//! its crash images, so a test can crash "the machine" at any operation of
//! a protocol that spans a tree and other files.
//!
//! Model of the medium (what a power loss can and cannot do):
//! - Each file has current bytes (what reads see) and durable bytes (as of
//!   its last successful `sync_data`), plus the ordered writes and
//!   truncations made since.
//! - Creations, removals and renames become durable when their directory is
//!   synced with [`SimDisk::sync_dir`]; until then a crash forgets them.
//!   Directories themselves are durable as soon as they are created.
//! - [`SimDisk::crash`] returns the machine after a power loss now: the
//!   durable namespace, and per file the durable bytes
//!   ([`CrashMode::DropUnsynced`]) or the durable bytes plus a seeded random
//!   subset of the unsynced writes, each possibly torn at 512-byte sectors
//!   ([`CrashMode::Torn`]).
//! - A failed sync makes nothing durable; a failed write applies nothing.
//! - A punched hole is a write of zeros: unsynced, a crash may keep or drop it.
//! - A disk may be given a capacity ([`SimDisk::set_capacity`]): the bytes
//!   of the files reachable by name or open handle are capped, and growth
//!   past the cap fails with ENOSPC and applies nothing, as on a full disk.
//!   A tree's `fallocate` (reserving WAL space, its space reserve) extends
//!   a file with zeros and counts as a write.
//!
//! Mutating operations, counted by [`SimDisk::ops_count`] and indexed by
//! [`SimDisk::crash_before_op`]: writes, truncations, punched holes,
//! `sync_data`, `sync_dir`, file creations, removals and renames. Opening an
//! existing file, reads, `len`, `list` and `create_dir_all` do not count.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::lock::StoreLock;
use crate::store::mem_vfs::MemVfs;
use crate::store::vfs::{FileIo, Vfs};
use crate::{Tree, TreeBuilder};

pub use crate::store::mem_vfs::CrashMode;

/// One simulated machine's storage. Clones share the same files.
#[derive(Clone, Default)]
pub struct SimDisk {
    vfs: MemVfs,
}

impl SimDisk {
    /// An empty disk (no file, no directory).
    pub fn new() -> SimDisk {
        SimDisk { vfs: MemVfs::new() }
    }

    /// Open (creating if needed) a persistent tree in `builder`'s directory
    /// on this disk, with every option of the builder. Takes the disk's
    /// in-process lock on the directory, as the real store lock does: a
    /// second open while the first tree lives fails with `Error::Locked`.
    /// A `memory()` builder is refused (`Error::InvalidArgument`).
    pub fn open_tree(&self, builder: TreeBuilder) -> Result<Tree> {
        let cfg = builder.checked()?;
        if cfg.memory {
            return Err(Error::InvalidArgument("a memory() tree cannot open on a SimDisk".into()));
        }
        self.vfs.create_dir_all(&cfg.dir).map_err(|e| Error::io("create directory", &cfg.dir, e))?;
        let lock = StoreLock::acquire_mem(&self.vfs, &cfg.dir)?;
        Ok(Tree::from_engine(Engine::open_durable(cfg, Arc::new(self.vfs.clone()), lock)?))
    }

    /// The simulated file system itself (tests that plant files).
    #[cfg(test)]
    pub(crate) fn vfs(&self) -> &MemVfs {
        &self.vfs
    }

    /// The machine after a power loss now. The returned disk is independent
    /// of this one: no open file, no fault, no lock, operation count at 0.
    pub fn crash(&self, mode: CrashMode) -> SimDisk {
        SimDisk { vfs: self.vfs.crash(mode) }
    }

    /// Take a crash image (see [`SimDisk::crash`]) just before mutating
    /// operation number `op_index` (0-based, in [`SimDisk::ops_count`]'s
    /// index space) runs, so a test can run a protocol to its end and then
    /// look at the machine as a power loss at that step left it. Replaces
    /// an image armed or taken before.
    pub fn crash_before_op(&self, op_index: u64, mode: CrashMode) {
        self.vfs.crash_before_op(op_index, mode);
    }

    /// The image armed by [`SimDisk::crash_before_op`], once that operation
    /// was reached; `None` before, and after it was taken.
    pub fn take_crash_image(&self) -> Option<SimDisk> {
        self.vfs.take_crash_image().map(|vfs| SimDisk { vfs })
    }

    /// Mutating operations on this disk so far, by trees and files alike.
    pub fn ops_count(&self) -> u64 {
        self.vfs.ops_count()
    }

    /// After `n` more successful writes (truncations and punched holes
    /// count), every write fails with `errno` until [`SimDisk::clear_faults`].
    pub fn fail_writes_after(&self, n: u64, errno: i32) {
        self.vfs.fail_write_after_with(n, errno);
    }

    /// After `n` more successful syncs (`sync_data` or `sync_dir`), every
    /// sync fails with `errno` until [`SimDisk::clear_faults`].
    pub fn fail_syncs_after(&self, n: u64, errno: i32) {
        self.vfs.fail_sync_after_with(n, errno);
    }

    /// Remove the write and sync faults (the capacity stays).
    pub fn clear_faults(&self) {
        self.vfs.clear_faults();
    }

    /// Cap the bytes the disk's live files may hold (`None`: no cap, the
    /// default): a write, truncation or allocation that would grow them
    /// past it fails with ENOSPC and applies nothing. Shrinking and
    /// removing files gives space back. A crash image has no cap.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.vfs.set_capacity(bytes);
    }

    /// Bytes held now by files reachable by name or by an open handle
    /// (what [`SimDisk::set_capacity`] caps).
    pub fn used_bytes(&self) -> u64 {
        self.vfs.used_bytes()
    }

    /// Open `path` for reading and writing; create it (empty) if `create`.
    /// Its directory must exist (`NotFound` otherwise).
    pub fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        Ok(SimFile { file: self.vfs.open(path, create)? })
    }

    /// Remove the file `path`; open handles keep working.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        self.vfs.remove(path)
    }

    /// Atomically replace `to` with `from`.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.vfs.rename(from, to)
    }

    /// Make creations, removals and renames inside `dir` durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.vfs.sync_dir(dir)
    }

    /// The files directly in `dir`, as full paths (`dir` joined with the
    /// name), sorted; subdirectories are not listed.
    pub fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files = self.vfs.list(dir)?;
        files.sort();
        Ok(files)
    }

    /// Create `dir` and its parents (durable at once, see the module doc).
    pub fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.vfs.create_dir_all(dir)
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDisk").field("ops_count", &self.ops_count()).finish_non_exhaustive()
    }
}

/// An open file on a [`SimDisk`]. Clones are the same open file.
#[derive(Clone)]
pub struct SimFile {
    file: Arc<dyn FileIo>,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile").finish_non_exhaustive()
    }
}

// `len` is fallible, like the file's own; an `is_empty` beside it would
// only be `len()? == 0`.
#[allow(clippy::len_without_is_empty)]
impl SimFile {
    /// Read up to `buf.len()` bytes at `offset`; returns the bytes read
    /// (short at end of file).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// Write all of `buf` at `offset`, extending the file if needed.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_at(buf, offset)
    }

    /// Make every completed write to this file durable (its name needs
    /// [`SimDisk::sync_dir`]).
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Current length in bytes.
    pub fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    /// Truncate or extend to `len` bytes.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    /// Zero `[offset, offset + len)` clipped to the file's length, which
    /// does not change; durable only after `sync_data`, like a write.
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.file.punch_hole(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TreeBuilder {
        TreeBuilder::new("/store").wal_sync_on_commit(true).checkpoint_interval(None)
    }

    fn read_all(f: &SimFile) -> Vec<u8> {
        let mut buf = vec![0; f.len().unwrap() as usize];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), buf.len());
        buf
    }

    #[test]
    fn acknowledged_put_survives_power_loss_and_reopen() {
        let disk = SimDisk::new();
        let tree = disk.open_tree(store()).unwrap();
        tree.put(b"k", b"acknowledged").unwrap();
        let after = disk.crash(CrashMode::DropUnsynced);
        drop(tree);
        let tree = after.open_tree(store()).unwrap();
        assert_eq!(tree.get(b"k").unwrap().as_deref(), Some(&b"acknowledged"[..]));
        tree.check_invariants().unwrap();
    }

    /// The documented edge of `wal_sync_on_commit`: a write is applied, and
    /// so visible to readers, before its sync; a sync that fails leaves the
    /// write visible (writes are refused from then on) though its put
    /// failed, and a power cut then loses it.
    #[test]
    fn a_write_is_visible_before_its_sync_and_stays_so_if_the_sync_fails() {
        let disk = SimDisk::new();
        let tree = disk.open_tree(store()).unwrap();
        tree.put(b"k", b"durable").unwrap();
        disk.fail_syncs_after(0, libc::EIO);
        assert!(tree.put(b"k", b"not durable").is_err(), "the put whose sync failed reports it");
        assert_eq!(tree.get(b"k").unwrap().as_deref(), Some(&b"not durable"[..]), "readers see the applied write");
        assert!(tree.put(b"k2", b"v").is_err(), "no write is accepted once durability is unknown");
        let after = disk.crash(CrashMode::DropUnsynced);
        drop(tree);
        let tree = after.open_tree(store()).unwrap();
        assert_eq!(tree.get(b"k").unwrap().as_deref(), Some(&b"durable"[..]), "a power cut keeps the last durable write");
    }

    #[test]
    fn second_open_of_a_store_is_locked_until_the_first_closes() {
        let disk = SimDisk::new();
        let tree = disk.open_tree(store()).unwrap();
        assert!(matches!(disk.open_tree(store()), Err(Error::Locked { .. })));
        drop(tree);
        disk.open_tree(store()).expect("the lock goes with the tree");
        assert!(matches!(disk.open_tree(store().memory()), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn synced_file_write_survives_crash_and_unsynced_does_not() {
        let disk = SimDisk::new();
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        let kept = disk.open(&dir.join("kept"), true).unwrap();
        kept.write_at(b"synced", 0).unwrap();
        kept.sync_data().unwrap();
        disk.sync_dir(dir).unwrap();
        kept.write_at(b"-unsynced", 6).unwrap();
        let lost = disk.open(&dir.join("lost"), true).unwrap();
        lost.write_at(b"never synced", 0).unwrap();
        assert_eq!(disk.list(dir).unwrap(), vec![dir.join("kept"), dir.join("lost")]);

        let after = disk.crash(CrashMode::DropUnsynced);
        assert_eq!(after.list(dir).unwrap(), vec![dir.join("kept")]);
        assert_eq!(read_all(&after.open(&dir.join("kept"), false).unwrap()), b"synced");
        assert_eq!(after.open(&dir.join("lost"), false).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn ops_count_is_shared_by_tree_and_files() {
        let disk = SimDisk::new();
        let tree = disk.open_tree(store()).unwrap();
        disk.create_dir_all(Path::new("/data")).unwrap();
        let f = disk.open(Path::new("/data/f"), true).unwrap();
        let before_put = disk.ops_count();
        tree.put(b"k", b"v").unwrap();
        let after_put = disk.ops_count();
        assert!(after_put > before_put, "a synced put writes and syncs the WAL");
        f.write_at(b"x", 0).unwrap();
        assert_eq!(disk.ops_count(), after_put + 1);

        // An image armed at the file write is taken after the put's ops.
        disk.crash_before_op(disk.ops_count(), CrashMode::DropUnsynced);
        f.write_at(b"y", 1).unwrap();
        let image = disk.take_crash_image().expect("the armed op ran");
        drop(tree);
        assert_eq!(image.open_tree(store()).unwrap().get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn injected_faults_fail_files_and_tree_until_cleared() {
        let disk = SimDisk::new();
        let tree = disk.open_tree(store()).unwrap();
        disk.create_dir_all(Path::new("/data")).unwrap();
        let f = disk.open(Path::new("/data/f"), true).unwrap();
        disk.fail_writes_after(0, libc::ENOSPC);
        assert_eq!(f.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(tree.put(b"k", b"v").unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        disk.clear_faults();
        f.write_at(b"x", 0).unwrap();
        disk.fail_syncs_after(0, libc::EIO);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        disk.clear_faults();
        f.sync_data().unwrap();
    }
}
