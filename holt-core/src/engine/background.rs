//! The background checkpointer: a thread that wakes on a timer or when a
//! writer nudges it (dirty frames, WAL size or cache budget over their
//! marks, frames nearly full) and runs a checkpoint when one is due, after
//! making room in the frames writers found nearly full (`store::ahead`).
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

/// Longest sleep between checks of the checkpoint triggers.
const POLL_MAX: Duration = Duration::from_millis(200);

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
    let mut last = Instant::now();
    let mut last_space_try = Instant::now();
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
        if let Some(start) = engine.checkpoint_due(last.elapsed() >= interval) {
            match engine.checkpoint_now(start) {
                Ok(()) => last = Instant::now(),
                Err(e) => log::warn!("background checkpoint failed: {e}"),
            }
        }
        if engine.space_low() && last_space_try.elapsed() >= interval {
            engine.restore_space_reserve();
            last_space_try = Instant::now();
        }
    }
}
