//! A holt-fs filesystem as the command line names it: a store directory,
//! or the mountpoint of a holt-fs mount, which the mount table maps to
//! its store (the source of a `fuse.holt-fs` mount is the store's
//! absolute path). Used by `info` and `stats`.

use std::io;
use std::path::{Path, PathBuf};

use holt_mount::mountpoint::{self, MountEntry};

/// What a path names.
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

pub fn locate(path: &Path) -> Result<Target, String> {
    let (canonical, unresolved) = resolve(path);
    let entry = mountpoint::entry(&canonical).map_err(|e| format!("cannot read the mount table: {e}"))?;
    let shown = path.display();
    if let Some(entry) = entry {
        if entry.source == Path::new(mountpoint::MEMORY_SOURCE) {
            return Err(format!("{shown} is a --memory mount: it has no store and no control socket"));
        }
        if !entry.is_holt() {
            return Err(format!("{shown} is a mountpoint of another filesystem (type {}), not of holt-fs", entry.fs_type));
        }
        return Ok(Target::Mount(entry));
    }
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

