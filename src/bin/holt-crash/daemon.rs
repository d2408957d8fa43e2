//! The holt-fs daemon under test: started in the foreground as our child,
//! killed with SIGKILL, unmounted with `holt-fs umount`, and `holt-fs fsck`
//! on its store. The guard's drop detaches the mountpoint it mounted and
//! reaps the child, whatever failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use holt_mount::mountpoint::{self, MountState};

/// How long a daemon may take to mount or to exit.
const DAEMON_WAIT: Duration = Duration::from_secs(30);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(10);

/// Where the daemon lives: the binary, the mountpoint, the store, its log.
#[derive(Clone, Debug)]
pub struct Setup {
    pub holt_fs: PathBuf,
    pub mountpoint: PathBuf,
    pub store: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    pub sync: bool,
    /// More arguments for `holt-fs mount`.
    pub extra: Vec<String>,
}

pub struct Daemon {
    setup: Setup,
    child: Option<Child>,
}

impl Daemon {
    /// Mount (clearing a dead mount a killed daemon left) and wait until it serves.
    pub fn mount(setup: &Setup) -> Result<Daemon, String> {
        let _ = std::fs::remove_file(&setup.pid_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&setup.log)
            .map_err(|e| format!("cannot open the daemon log {}: {e}", setup.log.display()))?;
        let mut cmd = Command::new(&setup.holt_fs);
        cmd.arg("mount").arg(&setup.mountpoint).arg("--store").arg(&setup.store);
        cmd.arg("--pid-file").arg(&setup.pid_file).args(["--log-level", "info"]);
        if setup.sync {
            cmd.arg("--sync");
        }
        cmd.args(&setup.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", setup.holt_fs.display()))?;
        let mut daemon = Daemon { setup: setup.clone(), child: Some(child) };
        daemon.wait_mounted()?;
        Ok(daemon)
    }

    fn wait_mounted(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DAEMON_WAIT;
        loop {
            let serving = self.setup.pid_file.exists()
                && mountpoint::state(&self.setup.mountpoint).is_ok_and(|s| s == MountState::Mounted);
            if serving {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!(
                    "holt-fs mount exited before serving ({status}); see {}",
                    self.setup.log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("holt-fs did not mount within {DAEMON_WAIT:?}; see {}", self.setup.log.display()));
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("a mounted daemon has a child").id() as i32
    }

    /// Reap a daemon that was sent SIGKILL, leaving its dead mount behind.
    pub fn reap_killed(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let status = child.wait().map_err(|e| format!("waiting for the killed daemon: {e}"))?;
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(libc::SIGKILL) => Ok(()),
            _ => Err(format!("the daemon ended with {status} before it was killed; see {}", self.setup.log.display())),
        }
    }

    /// `holt-fs umount`, then wait for the daemon to close the store and exit 0.
    pub fn unmount(mut self) -> Result<(), String> {
        let status = Command::new(&self.setup.holt_fs)
            .args(["umount", "--log-level", "warn"])
            .arg(&self.setup.mountpoint)
            .status()
            .map_err(|e| format!("cannot run holt-fs umount: {e}"))?;
        if !status.success() {
            return Err(format!("holt-fs umount {} failed ({status})", self.setup.mountpoint.display()));
        }
        let mut child = self.child.take().expect("a mounted daemon has a child");
        let deadline = Instant::now() + DAEMON_WAIT;
        loop {
            match child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => {
                    return Err(format!("the daemon exited with {s} after umount; see {}", self.setup.log.display()))
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    self.child = Some(child);
                    return Err(format!("the daemon did not exit within {DAEMON_WAIT:?} of umount"));
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = mountpoint::unmount(&self.setup.mountpoint, true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Detach whatever is still mounted at `mountpoint` (a dead mount after a
/// failed round); true if something was.
pub fn detach(mountpoint: &Path) -> bool {
    match mountpoint::state(mountpoint) {
        Ok(MountState::Free) => false,
        _ => mountpoint::unmount(mountpoint, true).is_ok(),
    }
}

/// `holt-fs fsck --store STORE` must exit 0.
pub fn fsck(setup: &Setup) -> Result<(), String> {
    let out = Command::new(&setup.holt_fs)
        .arg("fsck")
        .arg("--store")
        .arg(&setup.store)
        .output()
        .map_err(|e| format!("cannot run holt-fs fsck: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "holt-fs fsck --store {} exited with {}:\n{}{}",
        setup.store.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
