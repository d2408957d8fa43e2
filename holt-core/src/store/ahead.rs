//! Frames writers found nearly full, queued for the background thread to
//! make room in before a writer has to (`engine::maintenance::spill_ahead`).
//!
//! A writer that finds no room spills or compacts the frame on its own
//! path: ~0.5-1 ms of walking and copying half a frame, the longest thing a
//! put does (benches/RESULTS.md run 25). Done ahead, the same work runs on
//! the background thread while the frame still has room for the next
//! inserts, and a writer landing there meanwhile waits on the frame's latch
//! at most for it.
//!
//! A frame whose room could not be made because a writer changed it
//! meanwhile cools for `COOL` before it is queued again: the frame every
//! put of a load in key order lands in changes faster than any copy of it
//! validates, and queued again at each put it kept the background thread
//! copying it without end (the load 6% slower, benches/RESULTS.md run 25).
//!
//! Invariants: the queue is only a hint (an id may name a frame that was
//! spilled, merged away or evicted since; the consumer checks under the
//! latch); it holds each id once and at most `QUEUED_MAX` of them; nothing
//! is queued until `enable` (a tree with no background thread never drains
//! it).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::ids::FrameId;

/// Most frames queued; past it a writer makes its own room, as without
/// the queue.
const QUEUED_MAX: usize = 64;
/// How long a frame a writer kept changing is not queued again.
const COOL: Duration = Duration::from_millis(2);

#[derive(Default)]
pub(crate) struct Ahead {
    on: AtomicBool,
    queued: Mutex<Queue>,
    /// `queued.ids.len()`, written under the lock: every write asks
    /// whether any frame is queued (`any`) without taking it.
    len: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    ids: Vec<FrameId>,
    /// Frames not to queue again before the instant given.
    cooling: Vec<(FrameId, Instant)>,
}

impl Ahead {
    /// Start taking frames (the background thread that drains them runs).
    pub(crate) fn enable(&self) {
        self.on.store(true, Ordering::Release);
    }

    /// Whether frames are taken (one atomic load: writers ask first).
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Queue frame `id`; false if it was already queued, the queue is full
    /// or off.
    pub(crate) fn want(&self, id: FrameId) -> bool {
        if !self.is_on() {
            return false;
        }
        let mut q = self.queued.lock();
        if !q.cooling.is_empty() {
            let now = Instant::now();
            q.cooling.retain(|&(_, until)| until > now);
            if q.cooling.iter().any(|&(c, _)| c == id) {
                return false;
            }
        }
        if q.ids.len() >= QUEUED_MAX || q.ids.contains(&id) {
            return false;
        }
        q.ids.push(id);
        self.len.store(q.ids.len(), Ordering::Release);
        true
    }

    /// Frame `id` changed while its room was being made: leave it alone
    /// for `COOL`.
    pub(crate) fn cool(&self, id: FrameId) {
        let mut q = self.queued.lock();
        if q.cooling.len() < QUEUED_MAX {
            q.cooling.push((id, Instant::now() + COOL));
        }
    }

    /// Whether any frame is queued.
    pub(crate) fn any(&self) -> bool {
        self.len.load(Ordering::Acquire) != 0
    }

    /// The frames queued, oldest first.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> Vec<FrameId> {
        self.queued.lock().ids.clone()
    }

    /// Every frame queued, oldest first; the queue is left empty.
    pub(crate) fn take(&self) -> Vec<FrameId> {
        let mut q = self.queued.lock();
        self.len.store(0, Ordering::Release);
        std::mem::take(&mut q.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_queue_once_up_to_a_bound_and_only_once_enabled() {
        let ahead = Ahead::default();
        assert!(!ahead.want(FrameId(1)) && !ahead.any(), "off until enabled");
        ahead.enable();
        assert!(ahead.want(FrameId(1)) && !ahead.want(FrameId(1)), "an id is queued once");
        assert!((2..QUEUED_MAX as u64 + 1).all(|i| ahead.want(FrameId(i))));
        assert!(!ahead.want(FrameId(1000)), "the queue is bounded");
        assert!(ahead.any());
        let taken = ahead.take();
        assert_eq!(taken.len(), QUEUED_MAX);
        assert_eq!(taken[0], FrameId(1), "oldest first");
        assert!(!ahead.any() && ahead.want(FrameId(1)), "emptied by take");
        ahead.take();
        ahead.cool(FrameId(1));
        assert!(!ahead.want(FrameId(1)) && ahead.want(FrameId(2)), "a cooling frame waits");
        std::thread::sleep(COOL * 2);
        assert!(ahead.want(FrameId(1)), "and is queued once it has cooled");
    }
}
