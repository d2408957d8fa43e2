//! `--pid-file`: written whole under a temporary name created exclusively
//! (`O_CREAT | O_EXCL` never follows a symlink), then renamed over the
//! path, which replaces a symlink there instead of writing through it: a
//! root daemon never truncates or writes a file a planted symlink names.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Record this process's pid at `path`.
pub fn write(path: &Path) -> io::Result<()> {
    let tmp = temporary_name(path);
    // A leftover of an earlier process with our pid: unlink removes the name, never a target.
    let _ = fs::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| writeln!(f, "{}", std::process::id()))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Remove `path` if it still names this process.
pub fn remove(path: &Path) {
    let ours = fs::read_to_string(path).is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_replaces_a_symlink_instead_of_writing_through_it() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = tmp.path().join("holt.pid");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write(&path).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2, "no temporary file is left");
        remove(&path);
        assert!(!path.exists());
    }

    #[test]
    fn another_process_pid_file_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("holt.pid");
        fs::write(&path, "1\n").unwrap();
        remove(&path);
        assert!(path.exists());
    }
}
