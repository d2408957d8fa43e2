//! `HybridLatch`: one version word plus a reader-writer lock per frame.
//!
//! - Optimistic readers snapshot an even version, read, then `validate`; a
//!   changed version means the bytes they read may be torn and they restart.
//!   They never write to the latch, so readers do not contend with each other.
//! - Writers hold the lock exclusively; the version is odd while they do.
//! - `wait_unlocked` lets a reader that found the frame locked sleep until the
//!   writer leaves instead of spinning.
//! - `hold` keeps writers out without a write: the version stays even, so
//!   optimistic readers go on; a checkpoint copies a frame under it.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use parking_lot::lock_api::RawRwLock as _;
use parking_lot::RawRwLock;

pub(crate) struct HybridLatch {
    version: AtomicU64,
    lock: RawRwLock,
}

impl Default for HybridLatch {
    fn default() -> Self {
        HybridLatch { version: AtomicU64::new(0), lock: RawRwLock::INIT }
    }
}

impl HybridLatch {
    /// The current version if no writer holds the latch.
    #[inline]
    pub(crate) fn optimistic(&self) -> Option<u64> {
        let v = self.version.load(Ordering::Acquire);
        (v & 1 == 0).then_some(v)
    }

    /// True if nothing changed since `optimistic` returned `v`.
    #[inline]
    pub(crate) fn validate(&self, v: u64) -> bool {
        fence(Ordering::Acquire);
        self.version.load(Ordering::Relaxed) == v
    }

    /// Block until no writer holds the latch.
    pub(crate) fn wait_unlocked(&self) {
        self.lock.lock_shared();
        // SAFETY: we acquired the shared lock on the line above.
        unsafe { self.lock.unlock_shared() };
    }

    fn begin_write(&self) {
        let v = self.version.load(Ordering::Relaxed);
        debug_assert!(v & 1 == 0, "latch version odd without a writer");
        self.version.store(v + 1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// Take the latch exclusively (blocking).
    pub(crate) fn lock(&self) {
        self.lock.lock_exclusive();
        self.begin_write();
    }

    /// `lock`, telling whether nothing was written since `optimistic`
    /// returned `v` (a read made since then is current).
    pub(crate) fn lock_unchanged_since(&self, v: u64) -> bool {
        self.lock.lock_exclusive();
        let unchanged = self.version.load(Ordering::Relaxed) == v;
        self.begin_write();
        unchanged
    }

    /// Take the latch exclusively if free.
    pub(crate) fn try_lock(&self) -> bool {
        if !self.lock.try_lock_exclusive() {
            return false;
        }
        self.begin_write();
        true
    }

    /// Take the latch exclusively only if its version is still `v`.
    pub(crate) fn try_upgrade(&self, v: u64) -> bool {
        if !self.try_hold_at(v) {
            return false;
        }
        self.begin_write();
        true
    }

    /// Take the lock exclusively without starting a write: the version does
    /// not move, so optimistic readers go on reading (nothing changes),
    /// while writers, and `wait_unlocked`, wait for `release_hold`.
    pub(crate) fn hold(&self) {
        self.lock.lock_exclusive();
        debug_assert!(self.version.load(Ordering::Relaxed) & 1 == 0, "a hold never meets a write under way");
    }

    /// `hold`, without blocking, and only if the version is still `v`:
    /// nothing was written since a look at `v` (a copy taken then is
    /// current while the hold lasts).
    pub(crate) fn try_hold_at(&self, v: u64) -> bool {
        if !self.lock.try_lock_exclusive() {
            return false;
        }
        if self.version.load(Ordering::Relaxed) != v {
            // SAFETY: acquired just above.
            unsafe { self.lock.unlock_exclusive() };
            return false;
        }
        true
    }

    /// End a `hold`; the version is as it was.
    pub(crate) fn release_hold(&self) {
        debug_assert!(self.version.load(Ordering::Relaxed) & 1 == 0, "a hold is not a write");
        // SAFETY: callers pair every release_hold with a hold.
        unsafe { self.lock.unlock_exclusive() };
    }

    /// End a write (`lock`, `try_lock`, `try_upgrade`); readers that saw
    /// the old version restart.
    pub(crate) fn unlock(&self) {
        let v = self.version.load(Ordering::Relaxed);
        debug_assert!(v & 1 == 1, "unlock without holding the latch");
        self.version.store(v + 1, Ordering::Release);
        // SAFETY: callers pair every unlock with a successful lock/try_lock/try_upgrade.
        unsafe { self.lock.unlock_exclusive() };
    }

    /// True while some writer holds the latch.
    pub(crate) fn is_locked(&self) -> bool {
        self.version.load(Ordering::Relaxed) & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_moves_on_every_write_and_upgrade_checks_it() {
        let l = HybridLatch::default();
        let v = l.optimistic().unwrap();
        assert!(l.try_upgrade(v));
        assert!(l.optimistic().is_none());
        assert!(!l.try_lock());
        l.unlock();
        assert!(!l.validate(v));
        assert!(!l.try_upgrade(v), "a stale version must not upgrade");
        let v2 = l.optimistic().unwrap();
        assert!(l.validate(v2));
    }

    #[test]
    fn a_hold_keeps_writers_out_and_readers_valid() {
        let l = HybridLatch::default();
        let v = l.optimistic().unwrap();
        l.hold();
        assert_eq!(l.optimistic(), Some(v), "readers go on under a hold");
        assert!(!l.try_lock() && !l.try_upgrade(v), "writers wait for the hold");
        l.release_hold();
        assert!(l.validate(v), "a hold changes nothing readers saw");
        assert!(l.try_hold_at(v), "a hold at the version seen");
        assert!(!l.try_hold_at(v) && !l.try_upgrade(v), "one holder at a time");
        l.release_hold();
        assert!(l.try_upgrade(v));
        l.unlock();
        assert!(!l.try_hold_at(v), "a write since the look: no hold at the old version");
    }
}
