//! CPU time spent per phase, by the bench itself and (optionally) by the
//! daemon serving the filesystem: on a loaded machine the wall-clock rate
//! swings with everyone else's work, the CPU time per operation much less.

use std::io;

/// Nanoseconds of CPU (user + system) used by this process so far,
/// finished threads included.
pub fn self_ns() -> io::Result<u64> {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    Ok(ns(ru.ru_utime) + ns(ru.ru_stime))
}

/// Nanoseconds of CPU used so far by the live threads of process `pid`
/// (the first field of each /proc/PID/task/TID/schedstat). A thread that
/// ended takes its time with it; a daemon's serving threads live as long as it.
pub fn process_ns(pid: u32) -> io::Result<u64> {
    let mut total_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
        let first = stat.split_whitespace().next().unwrap_or("0");
        total_ns += first.parse::<u64>().map_err(|e| io::Error::other(format!("schedstat of {pid}: {e}")))?;
    }
    Ok(total_ns)
}

/// CPU used during one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    pub client_ns: u64,
    /// `None` when no daemon pid was given.
    pub daemon_ns: Option<u64>,
}

/// A reading taken before a phase, to subtract from one taken after.
pub struct CpuMark {
    client_ns: u64,
    daemon_ns: Option<u64>,
}

impl CpuMark {
    pub fn now(daemon: Option<u32>) -> io::Result<CpuMark> {
        Ok(CpuMark { client_ns: self_ns()?, daemon_ns: daemon.map(process_ns).transpose()? })
    }

    pub fn since(&self, daemon: Option<u32>) -> io::Result<CpuUse> {
        let later = CpuMark::now(daemon)?;
        let daemon_ns = match (self.daemon_ns, later.daemon_ns) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Ok(CpuUse { client_ns: later.client_ns.saturating_sub(self.client_ns), daemon_ns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_readings_grow_with_work() {
        let pid = std::process::id();
        let mark = CpuMark::now(Some(pid)).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = mark.since(Some(pid)).unwrap();
        assert!(used.client_ns > 0 && used.daemon_ns.unwrap() > 0, "{used:?}");
    }
}
