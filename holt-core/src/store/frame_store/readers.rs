//! The slots being read right now, so that a slot's bytes never change
//! under a reader while the published mapping stays unlocked during I/O.
//!
//! A read looks its frame's slot up under the mapping's read lock and
//! registers the slots it will read (the image's, and a delta's base)
//! before it lets the lock go; then it reads with no lock held. Whoever
//! is about to change a slot's bytes (write an image into it, punch it,
//! cut it off the end of the file) waits here until no reader has it
//! registered. That wait ends: a slot is only ever changed once it is
//! free, a slot becomes free under the mapping's write lock, and a free
//! slot is in no mapping, so no read can register it after that.
//!
//! Holding the mapping's read lock across the I/O instead made every
//! writer of the mapping (a staged image's slot, a checkpoint's swap)
//! wait for the reads of unrelated frames, and every read that came
//! after wait for that writer: a convoy of whole-frame reads behind one
//! another (benches/RESULTS.md run 54).
//!
//! Invariant: a slot's bytes change only while no read has it registered.

use std::collections::BTreeMap;
use std::ops::Range;

use parking_lot::{Condvar, Mutex};

use crate::store::manifest::SlotRef;

#[derive(Default)]
pub(super) struct Readers {
    state: Mutex<State>,
    /// Signalled when the last read of a slot ends while someone waits.
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Reads in flight, by slot.
    reading: BTreeMap<u32, u32>,
    /// Threads in `wait_unread`.
    waiting: usize,
}

/// A read's registration; ends the read when dropped.
pub(super) struct Reading<'a> {
    readers: &'a Readers,
    slots: [Option<u32>; 2],
}

impl Readers {
    /// Register a read of the slots `r` names. Call it under the mapping's
    /// read lock, where `r` was looked up.
    pub(super) fn enter(&self, r: &SlotRef) -> Reading<'_> {
        let slots = [Some(r.slot), r.base.map(|b| b.slot)];
        let mut state = self.state.lock();
        for slot in slots.iter().flatten() {
            *state.reading.entry(*slot).or_default() += 1;
        }
        Reading { readers: self, slots }
    }

    /// Return once no read has a slot of `slots` registered. Call it when
    /// no new read can register them: they are in no mapping, or the
    /// caller holds the mapping's write lock (which no read needs to end).
    pub(super) fn wait_unread(&self, slots: Range<u32>) {
        let mut state = self.state.lock();
        while state.reading.range(slots.clone()).next().is_some() {
            state.waiting += 1;
            self.done.wait(&mut state);
            state.waiting -= 1;
        }
    }

    /// Reads in flight (tests).
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.state.lock().reading.values().map(|&n| n as usize).sum()
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut state = self.readers.state.lock();
        let mut ended = false;
        for slot in self.slots.iter().flatten() {
            let Some(n) = state.reading.get_mut(slot) else { continue };
            *n -= 1;
            if *n == 0 {
                state.reading.remove(slot);
                ended = true;
            }
        }
        if ended && state.waiting > 0 {
            self.readers.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::manifest::Base;

    fn slot_ref(slot: u32, base: Option<u32>) -> SlotRef {
        SlotRef { slot, crc: 0, base: base.map(|slot| Base { slot, pages: 1, packed: true }) }
    }

    #[test]
    fn a_wait_returns_at_once_for_slots_nobody_reads() {
        let readers = Readers::default();
        let _reading = readers.enter(&slot_ref(3, Some(7)));
        readers.wait_unread(0..3);
        readers.wait_unread(4..7);
        readers.wait_unread(8..100);
        assert_eq!(readers.in_flight(), 2);
    }

    #[test]
    fn a_wait_for_a_slot_ends_with_its_last_read_and_not_before() {
        let readers = Arc::new(Readers::default());
        let first = readers.enter(&slot_ref(2, Some(5)));
        let second = readers.enter(&slot_ref(9, Some(5)));
        let waited = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (readers, waited) = (readers.clone(), waited.clone());
            std::thread::spawn(move || {
                readers.wait_unread(5..6);
                waited.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(first);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waited.load(Ordering::SeqCst), "slot 5 is still read by the second reader");
        drop(second);
        waiter.join().unwrap();
        assert!(waited.load(Ordering::SeqCst));
        assert_eq!(readers.in_flight(), 0);
    }
}
