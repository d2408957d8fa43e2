//! What a `STORE|MOUNTPOINT` argument names: the mount table turns a
//! mountpoint into its store (the source of a `fuse.holt-fs` mount is the
//! store's absolute path); a directory that is not a mountpoint must be a
//! store. Shared by `info`, `stats` and `dump`.

use std::io;
use std::path::{Path, PathBuf};

use holt_mount::ctl;
use holt_mount::info::SocketState;
use holt_mount::mountpoint::{self, MountEntry};

/// What the path names.
pub enum Target {
    Mount(MountEntry),
    Store(PathBuf),
}

/// The canonical form of `path`; for a path that cannot be resolved (a
/// dead FUSE mount answers ENOTCONN), its canonical parent joined with its
/// name, and the error.
fn resolve(path: &Path) -> (PathBuf, Option<io::Error>) {
    match std::fs::canonicalize(path) {
        Ok(p) => (p, None),
        Err(e) => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let guess = std::fs::canonicalize(parent).map(|p| p.join(path.file_name().unwrap_or_default()));
            (guess.unwrap_or_else(|_| path.to_path_buf()), Some(e))
        }
    }
}

/// The holt-fs mount at `path`, if it is a mountpoint of one; an error
/// if it is another filesystem's or a `--memory` mount, which has no store.
pub fn mount_at(path: &Path) -> Result<Option<MountEntry>, String> {
    let (canonical, _) = resolve(path);
    let entry = mountpoint::entry(&canonical).map_err(|e| format!("cannot read the mount table: {e}"))?;
    let shown = path.display();
    match entry {
        Some(e) if e.source == Path::new(mountpoint::MEMORY_SOURCE) => {
            Err(format!("{shown} is a --memory mount: it has no store and no control socket"))
        }
        Some(e) if !e.is_holt() => {
            Err(format!("{shown} is a mountpoint of another filesystem (type {}), not of holt-fs", e.fs_type))
        }
        other => Ok(other),
    }
}

pub fn locate(path: &Path) -> Result<Target, String> {
    if let Some(entry) = mount_at(path)? {
        return Ok(Target::Mount(entry));
    }
    let (canonical, unresolved) = resolve(path);
    let shown = path.display();
    if let Some(e) = unresolved {
        return Err(format!("{shown}: {e}"));
    }
    if holt_mount::is_store(&canonical) {
        return Ok(Target::Store(canonical));
    }
    Err(format!(
        "{shown} is neither a holt-fs store (it has no lock file) nor the mountpoint of a holt-fs mount"
    ))
}

/// What to say of a store whose lock a daemon holds although it did not
/// answer on the control socket (found in `socket`).
pub fn held_by_a_silent_daemon(store: &Path, holder: &str, socket: SocketState) -> String {
    format!("{} is in use by a holt-fs daemon ({holder}) that does not answer: {}", store.display(), socket_words(socket))
}

/// `its control socket ctl.sock is stale (...)`, for messages.
pub fn socket_words(socket: SocketState) -> String {
    let what = match socket {
        SocketState::Stale => "is stale (nothing listens: its daemon was killed)",
        SocketState::Absent => "is missing",
        SocketState::Answering => "answers",
    };
    format!("its control socket {} {what}", ctl::SOCKET_NAME)
}
