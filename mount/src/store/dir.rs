//! Checks on a store directory before anything in it is opened, so that a
//! typo in `--store` or a directory other users can write never becomes a
//! store: it must be a directory, empty or already a holt-fs store, owned
//! by the user running the daemon and writable by nobody else, and our own
//! entries in it must not be symlinks.
//!
//! The owner and mode checks are what keep anyone else from planting
//! anything in the store; the symlink checks (here, `O_NOFOLLOW` on `lock`
//! and the objects' directory-relative opens in `data::FileData`) make
//! sure the daemon, which may run as root, never follows one anyway.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use super::StoreError;

/// The lock file: flock'd by the daemon serving the store.
pub(crate) const LOCK_NAME: &str = "lock";
/// The holt-core tree.
pub(crate) const META_NAME: &str = "meta";
/// File contents.
pub(crate) const DATA_NAME: &str = "data";

/// Make sure `dir` is safe to use as a store, creating it (mode 0700) if
/// it is missing and the store is opened for writing.
pub(super) fn prepare(dir: &Path, read_only: bool) -> Result<(), StoreError> {
    let meta = match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !read_only => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(super::io_err("create store directory", dir))?;
            fs::metadata(dir)
        }
        other => other,
    };
    let meta = meta.map_err(super::io_err("open store directory", dir))?;
    if !meta.is_dir() {
        return Err(StoreError::NotADirectory { path: dir.to_path_buf() });
    }
    let adopted = holds_a_store(dir)?;
    if !adopted && (read_only || !is_empty(dir)?) {
        return Err(StoreError::NotAStore { path: dir.to_path_buf() });
    }
    check_owner(dir, &meta)?;
    for name in [LOCK_NAME, META_NAME, DATA_NAME] {
        refuse_symlink(&dir.join(name))?;
    }
    Ok(())
}

/// Whether `dir` already holds a store: its `lock` file or `meta/`.
fn holds_a_store(dir: &Path) -> Result<bool, StoreError> {
    for name in [LOCK_NAME, META_NAME] {
        match fs::symlink_metadata(dir.join(name)) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io { what: "look into store directory", path: dir.to_path_buf(), source: e })
            }
        }
    }
    Ok(false)
}

fn is_empty(dir: &Path) -> Result<bool, StoreError> {
    let mut entries = fs::read_dir(dir).map_err(super::io_err("read store directory", dir))?;
    Ok(entries.next().is_none())
}

/// The daemon's user owns `dir`, and no one else may write it.
fn check_owner(dir: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(StoreError::ForeignOwner { path: dir.to_path_buf(), owner: meta.uid(), uid });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StoreError::OpenToOthers { path: dir.to_path_buf(), mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

/// A store's own entries are never symlinks.
fn refuse_symlink(path: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(StoreError::Symlink { path: path.to_path_buf() }),
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(StoreError::Io { what: "look at", path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn missing_directory_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/store");
        prepare(&dir, false).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let absent = tmp.path().join("absent");
        assert!(matches!(prepare(&absent, true), Err(StoreError::Io { .. })), "read-only never creates");
        assert!(!absent.exists());
    }

    #[test]
    fn regular_file_is_not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"mine").unwrap();
        let err = prepare(&file, false).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"mine");
    }

    #[test]
    fn non_empty_directory_without_a_store_is_not_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), b"user data").unwrap();
        let err = prepare(tmp.path(), false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a holt-fs store") && msg.contains("will not be adopted"), "{msg}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "nothing was created beside the user's files");
        fs::write(tmp.path().join(LOCK_NAME), b"").unwrap();
        prepare(tmp.path(), false).expect("a directory with our lock file is a store");
    }

    #[test]
    fn open_modes_name_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o770, 0o1777, 0o702] {
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).unwrap();
            let msg = prepare(tmp.path(), false).unwrap_err().to_string();
            assert!(msg.contains(&format!("chmod 700 {}", tmp.path().display())), "mode {mode:o}: {msg}");
        }
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o750)).unwrap();
        prepare(tmp.path(), false).expect("group may read and enter");
    }

    #[test]
    fn foreign_owner_names_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).expect("chown needs root");
        let msg = prepare(tmp.path(), false).unwrap_err().to_string();
        assert!(msg.contains("owned by uid 65534") && msg.contains("chown"), "{msg}");
    }

    #[test]
    fn symlinked_entries_are_refused() {
        for name in [LOCK_NAME, META_NAME, DATA_NAME] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
            fs::write(dir.join(LOCK_NAME), b"").ok();
            let _ = fs::remove_file(dir.join(name));
            std::os::unix::fs::symlink(tmp.path(), dir.join(name)).unwrap();
            let err = prepare(&dir, false).unwrap_err();
            assert!(matches!(err, StoreError::Symlink { .. }), "{name}: {err}");
        }
    }
}
