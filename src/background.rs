//! `-d/--background`: the command re-executes itself as a detached child
//! (new session, stdin/stdout on /dev/null, stderr to the log file or
//! /dev/null) and waits on a pipe until the child reports "ready" (mount
//! usable) or an error, so the parent's exit status tells whether the mount
//! worked. Re-executing, rather than forking, keeps the child free of the
//! parent's threads and locks. On SIGHUP the daemon reopens its log file
//! (`reopen_log`), so logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Start the serving child and wait until it is ready; returns its pid.
pub fn spawn_and_wait(log_file: Option<&Path>) -> Result<u32, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors; the read end is close-on-exec, the
    // write end is meant to be inherited by the child.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), 0) } != 0 {
        return Err(format!("cannot create a pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: FD_CLOEXEC on our own read end.
    unsafe { libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC) };
    let stderr = match log_file {
        Some(p) => Stdio::from(open_log(p).map_err(|e| format!("cannot open log file {}: {e}", p.display()))?),
        None => Stdio::null(),
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find our own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).arg("--ready-fd").arg(fds[1].to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the daemon: {e}"))?;
    drop(write_end);
    let mut report = String::new();
    let _ = (&read_end).read_to_string(&mut report);
    match report.trim() {
        "ready" => Ok(child.id()),
        "" => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            Err(format!("the daemon exited before the mount was ready ({status}); see its log"))
        }
        msg => {
            let _ = child.wait();
            Err(msg.strip_prefix("error: ").unwrap_or(msg).to_string())
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Point stderr, where the log goes, at a newly opened `path` (the old
/// file was renamed away, or not): dup2 replaces descriptor 2 in one step,
/// so no log line is lost or split between the two files.
pub fn reopen_log(path: &Path) -> std::io::Result<()> {
    let file = open_log(path)?;
    // SAFETY: dup2 of a descriptor we own onto stderr.
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The child's side of the pipe: one report, then the pipe closes.
pub struct Ready(Option<File>);

impl Ready {
    /// `fd` as passed by `--ready-fd`, or nothing in the foreground.
    pub fn from_fd(fd: Option<i32>) -> Ready {
        // SAFETY: the parent passed us this inherited descriptor to own.
        Ready(fd.map(|fd| unsafe { File::from_raw_fd(fd) }))
    }

    pub fn ready(&mut self) {
        self.send("ready");
    }

    pub fn failed(&mut self, msg: &str) {
        self.send(&format!("error: {msg}"));
    }

    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{line}");
        }
    }
}
