//! FUSE passthrough: the kernel reads, writes and maps a regular file's
//! data object directly, without a round trip to the daemon.
//!
//! The kernel wants one backing file per inode while any handle of it is
//! open, so backings are shared by inode: each open handle holds a strong
//! reference and the inode table a weak one. The most recently released
//! backings are also kept (strongly) in a bounded idle list, so reopening
//! a file soon after closing it costs neither an `openat` of its object
//! nor a registration with the kernel; the kernel's backing id is closed
//! when the last reference goes.
//!
//! Invariant: no backing outlives its object. The filesystem calls
//! [`Backings::forget`] before it removes an object, and it removes one
//! only when the inode has no open handle (so no handle reference is left
//! and no new handle can attach until the inode is gone). A kept backing
//! would otherwise pin a removed object's blocks.
//!
//! The kernel also refuses (EIO to the caller's open) a handle through the
//! daemon while an inode has a passthrough handle open, and the other way
//! round. The daemon serves some handles itself (the store's space reserve
//! spent, a kernel that refused a backing), so each open takes the mode
//! of the inode's handles already open and chooses only when none is.
//!
//! This needs no cooperation from the filesystem layer beyond a descriptor
//! of the object: the object owns the file's size and times, so whatever
//! the kernel writes is reported right by the next getattr.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::sync::{Arc, Weak};

use fuser::BackingId;
use parking_lot::Mutex;

use crate::schema::Ino;

/// Released backings kept for a quick reopen (a build reopens the same
/// headers thousands of times). Each holds a kernel file open on its
/// object, which pins the object's inode in the kernel's cache: about
/// 1.5 KiB of kernel memory each, 6 MiB for the whole list, and no
/// descriptor of the daemon's.
pub(super) const IDLE_MAX: usize = 4096;

/// Backings by handle and inode; `B` is the kernel's `BackingId` (another
/// type in tests, which have no kernel channel).
pub(super) struct Backings<B = BackingId> {
    state: Mutex<State<B>>,
}

impl<B> Default for Backings<B> {
    fn default() -> Self {
        let state = State { by_handle: HashMap::new(), by_inode: HashMap::new(), modes: HashMap::new(), idle: Idle::default() };
        Backings { state: Mutex::new(state) }
    }
}

struct State<B> {
    /// Every open handle: its backing, or `None` if the daemon serves it.
    by_handle: HashMap<u64, Option<Arc<B>>>,
    by_inode: HashMap<Ino, Weak<B>>,
    /// Open handles per inode, by mode; no entry when none is open.
    modes: HashMap<Ino, Modes>,
    idle: Idle<B>,
}

#[derive(Default)]
struct Modes {
    backed: u32,
    served: u32,
}

/// A bounded list of recently released backings, least recent first.
struct Idle<B> {
    /// Each kept backing with the stamp of its latest release.
    kept: HashMap<Ino, (Arc<B>, u64)>,
    /// Releases in order; an entry whose stamp is not its inode's latest
    /// is stale and skipped.
    order: VecDeque<(Ino, u64)>,
    stamp: u64,
}

impl<B> Default for Idle<B> {
    fn default() -> Self {
        Idle { kept: HashMap::new(), order: VecDeque::new(), stamp: 0 }
    }
}

impl<B> Idle<B> {
    /// Keep `backing` as the most recently released; returns the inodes
    /// whose backings fell off the end.
    fn keep(&mut self, ino: Ino, backing: Arc<B>) -> Vec<Ino> {
        self.stamp += 1;
        self.kept.insert(ino, (backing, self.stamp));
        self.order.push_back((ino, self.stamp));
        let mut dropped = Vec::new();
        while self.kept.len() > IDLE_MAX {
            let Some((old, stamp)) = self.order.pop_front() else { break };
            if self.kept.get(&old).is_some_and(|(_, s)| *s == stamp) {
                self.kept.remove(&old);
                dropped.push(old);
            }
        }
        // Stale entries pile up in `order` only while `kept` is small.
        if self.order.len() > 4 * IDLE_MAX {
            let kept = &self.kept;
            self.order.retain(|(i, s)| kept.get(i).is_some_and(|(_, k)| k == s));
        }
        dropped
    }
}

impl<B> State<B> {
    /// `ino`'s backing: the one its open handles or the idle list hold,
    /// else `open()`'s descriptor registered through `register`.
    fn backing(
        &mut self,
        ino: Ino,
        open: impl FnOnce() -> std::io::Result<Option<Arc<File>>>,
        register: impl FnOnce(&File) -> std::io::Result<B>,
    ) -> std::io::Result<Option<Arc<B>>> {
        if let Some(b) = self.by_inode.get(&ino).and_then(Weak::upgrade) {
            return Ok(Some(b));
        }
        let Some(file) = open()? else { return Ok(None) };
        let b = Arc::new(register(&file)?);
        self.by_inode.insert(ino, Arc::downgrade(&b));
        Ok(Some(b))
    }

    /// Drop the inode table's entry of `ino` once nothing holds its backing.
    fn prune(&mut self, ino: Ino) {
        if self.by_inode.get(&ino).is_some_and(|w| w.strong_count() == 0) {
            self.by_inode.remove(&ino);
        }
    }
}

impl<B> Backings<B> {
    /// Open handle `fh` of `ino`: through a backing (returned) or through
    /// the daemon (`None`). The mode of `ino`'s handles already open wins;
    /// with none open, a backing if `wanted`, registering `open()`'s
    /// descriptor with the kernel through `register` unless the idle list
    /// keeps one. A handle whose backing fails is served (and the error
    /// returned). The handle holds its backing until [`Backings::release`].
    pub fn open_handle(
        &self,
        ino: Ino,
        fh: u64,
        wanted: bool,
        open: impl FnOnce() -> std::io::Result<Option<Arc<File>>>,
        register: impl FnOnce(&File) -> std::io::Result<B>,
    ) -> std::io::Result<Option<Arc<B>>> {
        let mut state = self.state.lock();
        let modes = state.modes.entry(ino).or_default();
        let backed = modes.backed > 0 || (modes.served == 0 && wanted);
        let backing = if backed { state.backing(ino, open, register) } else { Ok(None) };
        let modes = state.modes.entry(ino).or_default();
        match &backing {
            Ok(Some(_)) => modes.backed += 1,
            _ => modes.served += 1,
        }
        state.by_handle.insert(fh, backing.as_ref().ok().cloned().flatten());
        backing
    }

    /// Drop handle `fh`'s reference; a backing stays in the idle list.
    /// Called before the filesystem learns of the release, so the backing
    /// is kept before the inode can become unused and be reclaimed.
    pub fn release(&self, ino: Ino, fh: u64) {
        let mut state = self.state.lock();
        let Some(handle) = state.by_handle.remove(&fh) else { return };
        if let Some(modes) = state.modes.get_mut(&ino) {
            match handle {
                Some(_) => modes.backed -= 1,
                None => modes.served -= 1,
            }
            if modes.backed == 0 && modes.served == 0 {
                state.modes.remove(&ino);
            }
        }
        if let Some(backing) = handle {
            for old in state.idle.keep(ino, backing) {
                state.prune(old);
            }
        }
    }

    /// Close `ino`'s kept backing: its object is about to be removed, and
    /// no handle of it is open.
    pub fn forget(&self, ino: Ino) {
        let mut state = self.state.lock();
        if state.idle.kept.remove(&ino).is_some() {
            state.prune(ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for a kernel backing id; counts the live ones.
    struct Fake {
        _live: Arc<()>,
    }

    fn attach(b: &Backings<Fake>, ino: u64, fh: u64, live: &Arc<()>) -> Arc<Fake> {
        let open = || Ok(Some(Arc::new(tempfile::tempfile()?)));
        b.open_handle(Ino(ino), fh, true, open, |_| Ok(Fake { _live: Arc::clone(live) })).unwrap().unwrap()
    }

    fn registered(live: &Arc<()>) -> usize {
        Arc::strong_count(live) - 1
    }

    #[test]
    fn handles_of_an_inode_share_one_backing_and_a_reopen_reuses_it() {
        let (b, live) = (Backings::default(), Arc::new(()));
        let one = attach(&b, 7, 1, &live);
        let two = attach(&b, 7, 2, &live);
        assert!(Arc::ptr_eq(&one, &two));
        drop((one, two));
        b.release(Ino(7), 1);
        b.release(Ino(7), 2);
        assert_eq!(registered(&live), 1, "kept after the last release");
        let mut opened = false;
        let again = b.open_handle(Ino(7), 3, true, || { opened = true; Ok(None) }, |_| unreachable!()).unwrap();
        assert!(again.is_some() && !opened, "a reopen needs no object and no registration");
    }

    #[test]
    fn the_idle_list_is_bounded_and_closes_the_least_recently_released() {
        let (b, live) = (Backings::default(), Arc::new(()));
        for ino in 0..IDLE_MAX as u64 + 10 {
            drop(attach(&b, ino, ino, &live));
            b.release(Ino(ino), ino);
        }
        assert_eq!(registered(&live), IDLE_MAX);
        // A reopened and released inode moves to the back of the list.
        drop(attach(&b, 10, 9000, &live));
        b.release(Ino(10), 9000);
        for ino in 5000..5002 {
            drop(attach(&b, ino, ino, &live));
            b.release(Ino(ino), ino);
        }
        let state = b.state.lock();
        assert!(state.idle.kept.contains_key(&Ino(10)));
        assert!(!state.idle.kept.contains_key(&Ino(11)) && !state.idle.kept.contains_key(&Ino(12)));
        assert_eq!(state.by_inode.len(), IDLE_MAX, "closed backings leave the inode table");
        assert!(state.idle.order.len() <= 4 * IDLE_MAX + 1);
    }

    #[test]
    fn an_open_takes_the_mode_of_the_handles_already_open() {
        let (b, live) = (Backings::default(), Arc::new(()));
        let backed = attach(&b, 7, 1, &live);
        let unwanted = b.open_handle(Ino(7), 2, false, || unreachable!(), |_| unreachable!()).unwrap();
        assert!(unwanted.is_some_and(|u| Arc::ptr_eq(&u, &backed)), "the kernel refuses mixed modes");
        b.release(Ino(7), 1);
        b.release(Ino(7), 2);
        assert!(b.open_handle(Ino(8), 3, false, || unreachable!(), |_| unreachable!()).unwrap().is_none());
        let wanted = b.open_handle(Ino(8), 4, true, || unreachable!(), |_| unreachable!()).unwrap();
        assert!(wanted.is_none(), "a handle served by the daemon is open");
        b.release(Ino(8), 3);
        b.release(Ino(8), 4);
        assert!(b.state.lock().modes.is_empty());
        drop(attach(&b, 8, 5, &live));
        assert_eq!(b.state.lock().modes[&Ino(8)].backed, 1, "with none open, the wish decides");
    }

    #[test]
    fn a_failed_registration_serves_the_handle_through_the_daemon() {
        let b: Backings<Fake> = Backings::default();
        let open = || Ok(Some(Arc::new(tempfile::tempfile()?)));
        assert!(b.open_handle(Ino(7), 1, true, open, |_| Err(std::io::Error::other("refused"))).is_err());
        assert!(b.open_handle(Ino(7), 2, true, || unreachable!(), |_| unreachable!()).unwrap().is_none());
        b.release(Ino(7), 1);
        b.release(Ino(7), 2);
        assert!(b.state.lock().modes.is_empty() && b.state.lock().by_handle.is_empty());
    }

    #[test]
    fn forget_closes_a_kept_backing() {
        let (b, live) = (Backings::default(), Arc::new(()));
        drop(attach(&b, 7, 1, &live));
        b.release(Ino(7), 1);
        b.forget(Ino(7));
        assert_eq!(registered(&live), 0);
        assert!(b.state.lock().by_inode.is_empty());
    }
}
