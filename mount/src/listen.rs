//! The accept loop of the daemon's side servers (the control socket, the
//! metrics endpoint), and [`Acceptor`], the thread that runs it and how it
//! is stopped: one thread accepts at a lowered CPU priority, which
//! the connection threads it starts inherit, so the FUSE threads go
//! first; at most a set number of connections are served at once, each
//! on its own thread; more are turned away at once. The loop ends at the
//! first accept after `stop` is set (its owner wakes it with
//! `shutdown(2)` on the listener) and returns once every connection
//! thread has finished.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, warn};

/// Nice value of the serving threads (the FUSE threads keep 0).
const SERVER_NICE: libc::c_int = 10;

/// Lower the calling thread's CPU priority (threads it starts inherit it).
fn lower_priority() {
    // SAFETY: gettid and setpriority touch no memory; failure leaves the priority as it was.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, SERVER_NICE);
    }
}

/// How one server treats its connections.
pub(crate) struct Policy<'a, S> {
    /// Names the connection threads.
    pub thread_name: &'static str,
    pub connections_max: usize,
    /// Answers a connection over the limit (on the accept thread: it must not block long).
    pub busy: &'a (dyn Fn(S) + Sync),
    /// Serves one connection, on a thread of its own; the loop closes the
    /// connection after its slot is free again (see `accept_loop`).
    pub serve: &'a (dyn Fn(&S) + Sync),
}

/// Accept from `incoming` until `stop`, serving by `policy`.
pub(crate) fn accept_loop<S: Send>(incoming: impl Iterator<Item = io::Result<S>>, stop: &AtomicBool, policy: &Policy<'_, S>) {
    lower_priority();
    let live = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for conn in incoming {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let stream = match conn {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of descriptors, or a peer gone before accept: wait a little.
                    debug!("{}: accept failed: {e}", policy.thread_name);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if live.fetch_add(1, Ordering::AcqRel) >= policy.connections_max {
                live.fetch_sub(1, Ordering::AcqRel);
                (policy.busy)(stream);
                continue;
            }
            let (live, serve) = (&live, policy.serve);
            // The slot is given back before the stream closes: a client
            // that reads its reply to the end and connects again must not
            // find its own finished connection still counted.
            let spawned = std::thread::Builder::new().name(policy.thread_name.into()).spawn_scoped(scope, move || {
                serve(&stream);
                live.fetch_sub(1, Ordering::AcqRel);
                drop(stream);
            });
            if let Err(e) = spawned {
                warn!("{}: cannot start a connection thread: {e}", policy.thread_name);
                live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    });
}

/// A listener's accept thread; stopping it (or dropping it) ends the
/// accept loop and waits for it and its connections to finish.
pub(crate) struct Acceptor {
    listener: Arc<dyn AsRawFd + Send + Sync>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Run `serve(listener, stop)` on a thread named `name`; `serve` is
    /// expected to return soon after `stop` is set and an accept returns.
    pub(crate) fn spawn<L: AsRawFd + Send + Sync + 'static>(
        name: &str,
        listener: Arc<L>,
        serve: impl FnOnce(&L, &AtomicBool) + Send + 'static,
    ) -> io::Result<Acceptor> {
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (Arc::clone(&listener), Arc::clone(&stop));
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || serve(&l, &s))?;
        Ok(Acceptor { listener, stop, thread: Some(thread) })
    }

    /// Stop accepting and wait for the loop and its connections; later calls do nothing.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Release);
        // SAFETY: shutdown on the listener's live descriptor (the Arc keeps
        // it open); on Linux it makes a blocked accept(2) return, which
        // ends the accept loop.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = thread.join();
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}
