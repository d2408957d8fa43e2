//! The background checkpointer: a thread that wakes on a timer or when a
//! writer nudges it (dirty frames, WAL size or cache budget over their
//! marks, frames nearly full) and runs a checkpoint when one is due, after
//! making room in the frames writers found nearly full (`store::ahead`)
//! and writing dirty frames out where the tree outgrows the cache
//! (`engine::write_out`).
//! Once per interval while the space reserve is spent, it tries to make it
//! whole again even when no checkpoint is due (space may come back without
//! any write to the tree).
//! It holds only a weak reference, so it never keeps a closed tree alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Engine;
use crate::ids::Lsn;

/// Longest sleep between checks of the checkpoint triggers.
const POLL_MAX: Duration = Duration::from_millis(200);
/// Polls a checkpoint due on the timer alone waits while writes stream
/// (the log grew since the poll before): its tidy and its slow capture
/// would fall on the writers of a burst (an update burst ran at 0.4x).
/// Counted in polls, not time, so a process stopped meanwhile (SIGSTOP, a
/// suspended laptop) does not find the wait used up: about 5 s of
/// streaming. The bounds (WAL, dirty frames, cache) never wait.
const TIMER_DEFER_POLLS_MAX: u32 = 25;

#[derive(Default)]
struct Signal {
    stop: Mutex<bool>,
    cv: Condvar,
    wake: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Background {
    signal: Arc<Signal>,
    thread: Mutex<Option<(ThreadId, JoinHandle<()>)>>,
}

impl Background {
    pub(crate) fn start(engine: &Arc<Engine>, interval: Duration) {
        let weak = Arc::downgrade(engine);
        let signal = engine.background.signal.clone();
        let spawned = thread::Builder::new()
            .name("holt-checkpointer".into())
            .spawn(move || run(weak, signal, interval));
        match spawned {
            Ok(h) => *engine.background.thread.lock() = Some((h.thread().id(), h)),
            Err(e) => log::error!("cannot start the background checkpointer: {e}"),
        }
    }

    /// Ask the checkpointer to check its triggers now. The notify is sent
    /// under the mutex the thread holds from its wake check to its wait:
    /// sent between the two, it would be lost, and later nudges (which find
    /// `wake` already set) would not repeat it, leaving the checkpointer
    /// asleep for a whole poll.
    pub(crate) fn nudge(&self) {
        if !self.signal.wake.swap(true, Ordering::AcqRel) {
            let _between_check_and_wait = self.signal.stop.lock();
            self.signal.cv.notify_one();
        }
    }

    /// Stop the thread and wait for it, unless called from it.
    pub(crate) fn stop(&self) {
        *self.signal.stop.lock() = true;
        self.signal.cv.notify_all();
        if let Some((id, handle)) = self.thread.lock().take() {
            if id != thread::current().id() && handle.join().is_err() {
                log::error!("the background checkpointer panicked");
            }
        }
    }
}

fn run(weak: Weak<Engine>, signal: Arc<Signal>, interval: Duration) {
    let mut last_space_try = Instant::now();
    let mut timer = Timer::new(interval);
    loop {
        {
            let mut stop = signal.stop.lock();
            if !*stop && !signal.wake.load(Ordering::Acquire) {
                signal.cv.wait_for(&mut stop, interval.min(POLL_MAX));
            }
            if *stop {
                return;
            }
        }
        signal.wake.store(false, Ordering::Release);
        let Some(engine) = weak.upgrade() else { return };
        engine.spill_ahead();
        if engine.write_out_due() {
            if let Err(e) = engine.write_out_dirty(false) {
                log::warn!("writing dirty frames out failed (a checkpoint cleans them): {e}");
            }
        }
        let timer_due = timer.due(engine.checkpoints_published(), engine.last_logged());
        if let Some(start) = engine.checkpoint_due(timer_due) {
            match engine.checkpoint_now(start) {
                Ok(()) => timer.restart(),
                Err(e) => log::warn!("background checkpoint failed: {e}"),
            }
        }
        if engine.space_low() && last_space_try.elapsed() >= interval {
            engine.restore_space_reserve();
            last_space_try = Instant::now();
        }
    }
}

/// The checkpoint timer: due once `interval` has passed since the last
/// checkpoint (this thread's, or any other published: asked for, or forced
/// by a bound on a writer's path), then waiting while writes stream in
/// (`TIMER_DEFER_POLLS_MAX`).
struct Timer {
    interval: Duration,
    last: Instant,
    /// Checkpoints published, as last seen.
    published: Option<u64>,
    /// The log's last LSN at the previous poll.
    logged: Option<Lsn>,
    /// Polls the due checkpoint has waited.
    deferred: u32,
}

impl Timer {
    fn new(interval: Duration) -> Self {
        Timer { interval, last: Instant::now(), published: None, logged: None, deferred: 0 }
    }

    fn restart(&mut self) {
        (self.last, self.deferred) = (Instant::now(), 0);
    }

    /// Whether a checkpoint the timer made due runs at this poll, given
    /// the checkpoints published and the log's last LSN now.
    fn due(&mut self, published: u64, logged: Option<Lsn>) -> bool {
        if self.published.replace(published).is_some_and(|seen| seen != published) {
            self.restart();
        }
        let streaming = logged != std::mem::replace(&mut self.logged, logged);
        let elapsed = self.last.elapsed() >= self.interval;
        if elapsed && streaming && self.deferred < TIMER_DEFER_POLLS_MAX {
            self.deferred += 1;
            return false;
        }
        elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint due on the timer waits while each poll finds the log
    /// grown, at most `TIMER_DEFER_POLLS_MAX` polls, and runs at the first
    /// poll that finds it unchanged; a checkpoint published elsewhere
    /// restarts the timer and the wait.
    #[test]
    fn a_timer_checkpoint_waits_for_a_pause_in_the_writes_a_bounded_number_of_polls() {
        let mut t = Timer::new(Duration::from_secs(3600));
        assert!(!t.due(0, Some(Lsn(1))), "not due");
        t.interval = Duration::ZERO;
        assert!(t.due(0, Some(Lsn(1))), "due, and nothing written since the last poll");
        for i in 0..TIMER_DEFER_POLLS_MAX {
            assert!(!t.due(0, Some(Lsn(2 + u64::from(i)))), "writes streaming: poll {i} waits");
        }
        assert!(t.due(0, Some(Lsn(1000))), "waited its last poll");
        assert!(t.due(0, Some(Lsn(1000))), "a pause in the writes runs it");
        assert!(!t.due(1, Some(Lsn(1001))), "a checkpoint published elsewhere gives the wait back");
        t.interval = Duration::from_secs(3600);
        assert!(!t.due(2, Some(Lsn(1001))), "and restarts the timer");
        assert!(Timer::new(Duration::ZERO).due(0, None), "no log (memory mode): nothing waits");
    }
}
