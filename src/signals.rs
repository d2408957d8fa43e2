//! SIGINT, SIGTERM and SIGHUP become a call on a dedicated thread instead of
//! an asynchronous handler. `block` must run before any other thread starts,
//! so every thread inherits the blocked mask and only `sigwait` sees them.

use libc::{c_int, sigset_t};

/// The signals that end a mount cleanly.
pub struct Termination(sigset_t);

/// Block the termination signals in this thread and every thread it spawns.
pub fn block() -> Termination {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread.
    unsafe {
        let mut set: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Termination(set)
    }
}

impl Termination {
    /// Call `on_signal` (once) on a new thread when a termination signal arrives.
    pub fn on_signal(self, on_signal: impl FnOnce(c_int) + Send + 'static) -> std::io::Result<()> {
        let set = self.0;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let mut sig: c_int = 0;
            // SAFETY: sigwait on a set of signals blocked in every thread.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                on_signal(sig);
            }
        })?;
        Ok(())
    }
}
