//! The space reserve: `RESERVE` in the store directory, a file of disk
//! space that only the engine may spend (ext4's reserved blocks, btrfs's
//! global reserve).
//!
//! When a step of the engine's own runs out of space — reserving WAL space
//! ahead of the log, writing a WAL batch, creating a segment, a
//! checkpoint's frame or manifest writes — it cuts the reserve to zero and
//! retries the step once (`retry`, `retry_io`), and the tree reports that
//! it is low on space (`Tree::space_low`) until the reserve is back. A user
//! such as a filesystem refuses operations that consume space while it is
//! low, so what the reserve gave back serves the operations that free space
//! (unlink, rmdir, truncate) and the checkpoints that trim the WAL.
//!
//! Invariants:
//! - Nothing reads the file and nothing syncs it: only its allocated size
//!   matters. A crash leaves it at some size; the next open re-establishes it.
//! - `low` is true from a release, or a failed attempt to establish the
//!   reserve, until an attempt succeeds. It is one atomic load to check,
//!   and changed only under the file mutex, so a release racing a
//!   successful attempt always leaves it true.
//! - Growing the reserve needs `bytes + bytes / 4` free: that much is
//!   allocated and the quarter given back. So the reserve is not re-made
//!   out of the last free bytes only to be released by the next write.
//! - The file mutex is a leaf: nothing else is locked while it is held.

use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::vfs::{FileIo, Vfs};
use crate::error::Result;

/// Name of the reserve file in the store directory.
pub(crate) const RESERVE_NAME: &str = "RESERVE";
/// Zeros written per call where the file system cannot `fallocate`.
const FILL_CHUNK_BYTES: usize = 1 << 20;

/// Whether `e` says the disk or the quota is full.
pub(crate) fn io_is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

pub(crate) struct SpaceReserve {
    vfs: Option<Arc<dyn Vfs>>,
    path: PathBuf,
    /// Size the reserve is kept at; 0: no reserve, never low.
    bytes: u64,
    /// Opened on first use; `None` until then or while it cannot be created.
    file: Mutex<Option<Arc<dyn FileIo>>>,
    low: AtomicBool,
}

impl SpaceReserve {
    /// No reserve: failed steps are not retried and the store is never low.
    pub(crate) fn none() -> SpaceReserve {
        SpaceReserve { vfs: None, path: PathBuf::new(), bytes: 0, file: Mutex::new(None), low: AtomicBool::new(false) }
    }

    /// A reserve of `bytes` in `dir`; no I/O until `establish_at_open`.
    pub(crate) fn new(vfs: Arc<dyn Vfs>, dir: &Path, bytes: u64) -> SpaceReserve {
        let path = dir.join(RESERVE_NAME);
        SpaceReserve { vfs: Some(vfs), path, bytes, file: Mutex::new(None), low: AtomicBool::new(false) }
    }

    /// Create or extend the reserve as the store opens. Never fails the
    /// open: without the space the store starts low (logged). With no
    /// reserve configured, a reserve left by an earlier open is removed.
    pub(crate) fn establish_at_open(&self) {
        let Some(vfs) = &self.vfs else { return };
        if self.bytes == 0 {
            if let Err(e) = vfs.remove(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("{}: cannot remove the unused space reserve: {e}", self.path.display());
                }
            }
            return;
        }
        let mut slot = self.file.lock();
        if let Err(e) = self.try_establish(&mut slot) {
            self.low.store(true, Ordering::Release);
            log::warn!(
                "{}: cannot reserve {} of disk space ({e}); the store opens low on space",
                self.path.display(),
                mib(self.bytes)
            );
        }
    }

    /// The reserve is spent (released, or could not be made).
    pub(crate) fn is_low(&self) -> bool {
        self.low.load(Ordering::Acquire)
    }

    /// Make the reserve whole again; true if it is in place on return.
    pub(crate) fn establish(&self) -> bool {
        if self.bytes == 0 {
            return true;
        }
        let mut slot = self.file.lock();
        match self.try_establish(&mut slot) {
            Ok(()) => {
                if self.low.swap(false, Ordering::AcqRel) {
                    log::info!("{}: space reserve of {} re-established", self.path.display(), mib(self.bytes));
                }
                true
            }
            Err(e) => {
                self.low.store(true, Ordering::Release);
                log::debug!("{}: space reserve not re-established yet: {e}", self.path.display());
                false
            }
        }
    }

    /// Grow (or fill) the file to the reserve's size; the caller holds the
    /// file mutex, and sets `low` under it, so a release cannot interleave.
    fn try_establish(&self, slot: &mut Option<Arc<dyn FileIo>>) -> io::Result<()> {
        let vfs = self.vfs.as_ref().expect("a reserve of some bytes has a file system");
        let file = match &*slot {
            Some(f) => Arc::clone(f),
            None => Arc::clone(slot.insert(vfs.open(&self.path, true)?)),
        };
        let len = file.len()?;
        if len >= self.bytes {
            if len > self.bytes {
                file.set_len(self.bytes)?;
            }
            // Fills holes (a copied store); a no-op where allocated.
            return match file.allocate(0, self.bytes) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
                other => other,
            };
        }
        let with_margin = self.bytes.saturating_add(self.bytes / 4);
        let grown = fill(&*file, len, with_margin).and_then(|()| file.set_len(self.bytes));
        if grown.is_err() {
            // A failed allocation may leave part of it behind.
            if let Err(e) = file.set_len(len) {
                log::warn!("{}: cannot cut a partly grown reserve back: {e}", self.path.display());
            }
        }
        grown
    }

    /// Give the reserve's space back to the disk: the store is low from
    /// now on. `why` is the step that ran out of space.
    pub(crate) fn release(&self, why: &dyn Display) {
        if self.bytes == 0 {
            return;
        }
        let slot = self.file.lock();
        let was_low = self.low.swap(true, Ordering::AcqRel);
        let cut = match &*slot {
            Some(f) => f.len().and_then(|len| if len > 0 { f.set_len(0).map(|()| len) } else { Ok(0) }),
            None => Ok(0),
        };
        match cut {
            Ok(0) if was_low => log::debug!("{}: out of disk space again ({why})", self.path.display()),
            Ok(freed) => log::warn!(
                "{}: out of disk space ({why}); released the space reserve ({}): operations that need space \
                 are refused until some is freed",
                self.path.display(),
                mib(freed)
            ),
            Err(e) => {
                log::warn!("{}: out of disk space ({why}) and cannot release the reserve: {e}", self.path.display())
            }
        }
    }

    /// Run `step`; if it fails for space, release the reserve and run it
    /// once more. `step` must be safe to repeat after a failure.
    pub(crate) fn retry_io<T>(&self, what: &str, mut step: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match step() {
            Err(e) if self.bytes > 0 && io_is_no_space(&e) => {
                self.release(&format_args!("{what}: {e}"));
                step()
            }
            other => other,
        }
    }

    /// `retry_io` for steps that return engine errors.
    pub(crate) fn retry<T>(&self, what: &str, mut step: impl FnMut() -> Result<T>) -> Result<T> {
        match step() {
            Err(e) if self.bytes > 0 && e.is_no_space() => {
                self.release(&format_args!("{what}: {e}"));
                step()
            }
            other => other,
        }
    }
}

/// Allocate `[from, to)`, writing zeros where `fallocate` is unsupported.
fn fill(file: &dyn FileIo, from: u64, to: u64) -> io::Result<()> {
    match file.allocate(from, to - from) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
        other => return other,
    }
    let zeros = vec![0u8; FILL_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = (to - at).min(FILL_CHUNK_BYTES as u64);
        file.write_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::store::mem_vfs::MemVfs;

    const BYTES: u64 = 64 << 10;

    fn setup() -> (MemVfs, SpaceReserve, Arc<dyn FileIo>) {
        let vfs = MemVfs::new();
        let dir = Path::new("/s");
        vfs.create_dir_all(dir).unwrap();
        let reserve = SpaceReserve::new(Arc::new(vfs.clone()), dir, BYTES);
        reserve.establish_at_open();
        let other = vfs.open(&dir.join("other"), true).unwrap();
        (vfs, reserve, other)
    }

    fn reserve_len(vfs: &MemVfs) -> usize {
        vfs.file_bytes(Path::new("/s/RESERVE")).map_or(0, |b| b.len())
    }

    #[test]
    fn a_step_out_of_space_releases_the_reserve_and_runs_again() {
        let (vfs, reserve, other) = setup();
        assert_eq!(reserve_len(&vfs), BYTES as usize);
        assert!(!reserve.is_low());
        vfs.set_capacity(Some(vfs.used_bytes()));
        let calls = AtomicUsize::new(0);
        reserve
            .retry_io("test write", || {
                calls.fetch_add(1, Ordering::Relaxed);
                other.write_at(&[1; 1000], 0)
            })
            .expect("the released reserve makes room");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert!(reserve.is_low());
        assert_eq!(reserve_len(&vfs), 0);
        // Still full: the next failure is retried once and returned.
        let err = reserve.retry_io("test write", || other.write_at(&vec![2; BYTES as usize], 1000)).unwrap_err();
        assert!(io_is_no_space(&err));
    }

    #[test]
    fn other_errors_are_not_retried_and_keep_the_reserve() {
        let (vfs, reserve, _) = setup();
        let calls = AtomicUsize::new(0);
        let failed = reserve.retry_io("test", || -> io::Result<()> {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(io::Error::from_raw_os_error(libc::EIO))
        });
        assert!(failed.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(!reserve.is_low());
        assert_eq!(reserve_len(&vfs), BYTES as usize);
        let none = SpaceReserve::none();
        let calls = AtomicUsize::new(0);
        let failed = none.retry_io("test", || -> io::Result<()> {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        });
        assert!(failed.is_err() && !none.is_low());
        assert_eq!(calls.load(Ordering::Relaxed), 1, "no reserve, no retry");
    }

    #[test]
    fn the_reserve_comes_back_only_with_a_quarter_to_spare() {
        let (vfs, reserve, _) = setup();
        reserve.release(&"test");
        assert!(reserve.is_low());
        vfs.set_capacity(Some(vfs.used_bytes() + BYTES + BYTES / 4 - 1));
        assert!(!reserve.establish());
        assert_eq!(reserve_len(&vfs), 0, "a failed attempt leaves nothing allocated");
        vfs.set_capacity(Some(vfs.used_bytes() + BYTES + BYTES / 4));
        assert!(reserve.establish());
        assert!(!reserve.is_low());
        assert_eq!(reserve_len(&vfs), BYTES as usize);
    }

    #[test]
    fn opening_without_room_starts_low() {
        let vfs = MemVfs::new();
        let dir = Path::new("/s");
        vfs.create_dir_all(dir).unwrap();
        vfs.set_capacity(Some(BYTES));
        let reserve = SpaceReserve::new(Arc::new(vfs.clone()), dir, BYTES);
        reserve.establish_at_open();
        assert!(reserve.is_low());
        assert_eq!(reserve_len(&vfs), 0);
    }
}
