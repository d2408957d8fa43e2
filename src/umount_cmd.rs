//! `holt-fs umount`: unmount a holt-fs filesystem and return once its daemon
//! has closed the store, so a script can mount it again (or stop the
//! machine) right after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use holt_mount::mountpoint;
use log::info;

/// How long `umount` waits for the daemon to close the store.
const CLOSE_WAIT: Duration = Duration::from_secs(120);

/// How long `umount` retries a busy mount
/// (`mountpoint::unmount_waiting_out_busy`).
const BUSY_WAIT: Duration = Duration::from_secs(2);

pub fn run(mountpoint: &Path, lazy: bool) -> Result<(), String> {
    let canonical = std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let entry = mountpoint::entry(&canonical)
        .map_err(|e| format!("cannot read the mount table: {e}"))?
        .ok_or_else(|| format!("{} is not a mountpoint", mountpoint.display()))?;
    if !entry.is_holt() {
        return Err(format!("{} is not a holt-fs mount (its type is {})", mountpoint.display(), entry.fs_type));
    }
    mountpoint::unmount_waiting_out_busy(&canonical, lazy, BUSY_WAIT).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => format!(
            "{} is busy: a process has a file or its working directory in it (`fuser -vm {}` lists them); \
             close them, or unmount with --lazy",
            mountpoint.display(),
            canonical.display()
        ),
        _ => format!("cannot unmount {}: {e}", mountpoint.display()),
    })?;
    wait_for_close(&entry.source)
}


/// A mount of a store shows the store directory as its source; a memory
/// mount has nothing to close.
fn wait_for_close(store: &PathBuf) -> Result<(), String> {
    if store == std::path::Path::new(mountpoint::MEMORY_SOURCE) {
        return Ok(());
    }
    info!("waiting for the daemon to close {}", store.display());
    match holt_mount::wait_closed(store, CLOSE_WAIT) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "unmounted, but the daemon still holds {} after {}s (is it still writing?)",
            store.display(),
            CLOSE_WAIT.as_secs()
        )),
        Err(e) => Err(format!("unmounted, but cannot watch {} close: {e}", store.display())),
    }
}
