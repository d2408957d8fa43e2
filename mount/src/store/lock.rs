//! The store's `lock` file: flock'd exclusively by the daemon serving the
//! store read-write (it holds the daemon's pid), shared by read-only ones.
//! Opened with `O_NOFOLLOW`, so a symlink planted as `lock` is refused,
//! never truncated or written through.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use super::dir::LOCK_NAME;
use super::StoreError;

/// The store's flock; dropping it (after the tree closes) frees the store.
pub struct StoreLock(pub(super) Option<File>);

impl Drop for StoreLock {
    /// Unlock explicitly: a child forked by another thread shares the lock's
    /// open file description until it execs, so closing alone could keep
    /// the store locked after this daemon let go of it.
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            // SAFETY: flock on a descriptor owned by `file`; no memory is passed.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// How long a mount waits for a previous daemon that is still closing the store.
const CLOSING_WAIT: Duration = Duration::from_secs(60);

/// Open `dir/lock` without following a symlink: read-write (created if
/// missing), or read-only for a read-only mount (it must exist then).
fn open_lock(path: &Path, read_only: bool) -> Result<File, StoreError> {
    let mut opts = OpenOptions::new();
    opts.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if !read_only {
        opts.write(true).create(true).truncate(false).mode(0o600);
    }
    opts.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => StoreError::Symlink { path: path.to_path_buf() },
        _ => StoreError::Io { what: "open lock file", path: path.to_path_buf(), source: e },
    })
}

/// flock `dir/lock` (exclusively, or shared when `read_only`) and, for a
/// writer, record our pid in it. A lock held by a daemon that no longer
/// serves a mount of this store (it is closing: unmounted, still making
/// its last changes durable) is waited for, up to `CLOSING_WAIT`.
pub(super) fn take(dir: &Path, read_only: bool) -> Result<StoreLock, StoreError> {
    let path = dir.join(LOCK_NAME);
    let mut file = open_lock(&path, read_only)?;
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let deadline = Instant::now() + CLOSING_WAIT;
    let mut said = false;
    let op = if read_only { libc::LOCK_SH } else { libc::LOCK_EX };
    while !try_flock(&file, op).map_err(|source| StoreError::Io { what: "lock", path: path.clone(), source })? {
        let holder = holder(&mut file);
        let ours = holder == format!("pid {}", std::process::id());
        if ours || crate::mountpoint::store_mounted(&canonical) || Instant::now() >= deadline {
            return Err(StoreError::Locked { path: dir.to_path_buf(), holder });
        }
        if !said {
            log::info!("waiting for the previous holt-fs daemon ({holder}) to finish closing {}", dir.display());
            said = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !read_only {
        // Overwritten in place, then cut: emptying the file first would give
        // its block back and need a new one, which a full disk refuses.
        let write_pid = |f: &mut File| -> io::Result<()> {
            let text = format!("{}\n", std::process::id());
            f.write_all_at(text.as_bytes(), 0)?;
            f.set_len(text.len() as u64)
        };
        write_pid(&mut file).map_err(super::io_err("write lock file", &path))?;
    }
    Ok(StoreLock(Some(file)))
}

/// flock without waiting: false if someone else holds a conflicting lock.
fn try_flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock on a descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Who holds the lock, as its file says.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(io::SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
    match text.trim() {
        "" => "pid unknown".to_string(),
        pid => format!("pid {pid}"),
    }
}

/// Wait until no daemon holds the store in `dir` (it closed it), up to
/// `limit`; false if one still holds it then. A directory without a lock
/// file holds nothing. Probes with an exclusive lock, so a read-only
/// daemon's shared lock counts as held too.
pub fn wait_closed(dir: &Path, limit: Duration) -> io::Result<bool> {
    let path = dir.join(LOCK_NAME);
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let deadline = Instant::now() + limit;
    loop {
        if try_flock(&file, libc::LOCK_EX)? {
            // SAFETY: flock on a descriptor owned by `file`.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `dir` looks like a store (for messages; opening checks for real).
pub fn is_store(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(LOCK_NAME)).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_store_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = take(dir.path(), false).unwrap();
        let err = take(dir.path(), false).err().expect("a second lock must fail");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Locked { .. }), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(is_store(dir.path()));
        assert!(matches!(take(dir.path(), true), Err(StoreError::Locked { .. })), "a reader waits for the writer");
    }

    #[test]
    fn read_only_locks_are_shared_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(take(dir.path(), true), Err(StoreError::Io { .. })), "a reader never creates the lock");
        drop(take(dir.path(), false).unwrap());
        let pid_text = std::fs::read(dir.path().join(LOCK_NAME)).unwrap();
        let a = take(dir.path(), true).unwrap();
        let b = take(dir.path(), true).unwrap();
        assert!(!wait_closed(dir.path(), Duration::ZERO).unwrap(), "readers hold the store");
        assert_eq!(std::fs::read(dir.path().join(LOCK_NAME)).unwrap(), pid_text);
        drop((a, b));
        assert!(wait_closed(dir.path(), Duration::ZERO).unwrap());
    }

    #[test]
    fn symlinked_lock_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_NAME)).unwrap();
        for read_only in [false, true] {
            let err = take(dir.path(), read_only).err().expect("a symlinked lock must be refused");
            assert!(matches!(err, StoreError::Symlink { .. }), "{err}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!is_store(dir.path()));
    }
}
