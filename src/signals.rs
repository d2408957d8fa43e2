//! SIGINT, SIGTERM and SIGHUP become calls on a dedicated thread instead of
//! asynchronous handlers. `block` must run before any other thread starts,
//! so every thread inherits the blocked mask and only `sigwait` sees them.
//! SIGINT and SIGTERM end the mount; SIGHUP never does (logrotate and
//! `systemctl reload` send it): it reopens the log file.

use libc::{c_int, sigset_t};

/// The signals the daemon handles, blocked in every thread.
pub struct Signals(sigset_t);

/// Block the handled signals in this thread and every thread it spawns.
pub fn block() -> Signals {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread.
    unsafe {
        let mut set: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Signals(set)
    }
}

impl Signals {
    /// On a new thread, for the life of the process: call `on_terminate`
    /// for each SIGINT or SIGTERM and `on_hangup` for each SIGHUP.
    pub fn handle(
        self,
        mut on_terminate: impl FnMut(c_int) + Send + 'static,
        mut on_hangup: impl FnMut() + Send + 'static,
    ) -> std::io::Result<()> {
        let set = self.0;
        std::thread::Builder::new().name("signals".into()).spawn(move || loop {
            let mut sig: c_int = 0;
            // SAFETY: sigwait on a set of signals blocked in every thread.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            match sig {
                libc::SIGHUP => on_hangup(),
                _ => on_terminate(sig),
            }
        })?;
        Ok(())
    }
}
