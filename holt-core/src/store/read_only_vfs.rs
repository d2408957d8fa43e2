//! A read-only view of the real file system, for trees opened with
//! `TreeBuilder::read_only`: files open `O_RDONLY | O_NOFOLLOW`, and every
//! call that would change the disk fails with EROFS. So a read-only open
//! cannot write by construction, and works where the store sits on
//! read-only media (where opening a file for writing already fails).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::std_vfs::{open_options, read_full_at, read_full_vectored_at, StdVfs};
use super::vfs::{FileIo, Vfs};

/// [`Vfs`] that reads the operating system's files and writes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadOnlyVfs;

struct ReadOnlyFile(File);

fn refused() -> io::Error {
    io::Error::from_raw_os_error(libc::EROFS)
}

impl FileIo for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.0, buf, offset)
    }

    fn read_vectored_at(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
        read_full_vectored_at(&self.0, bufs, offset)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(refused())
    }

    /// Nothing was written through this file, so nothing awaits a sync.
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(refused())
    }

    fn punch_hole(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(refused())
    }

    fn allocate(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(refused())
    }
}

/// `path` opened read-only with `O_DIRECT` (`Vfs::open_direct_reader` of
/// the real file systems); `None` where the file system refuses direct
/// I/O (EINVAL: tmpfs, some FUSE and network file systems).
pub(crate) fn open_direct_reader(path: &Path) -> io::Result<Option<Arc<dyn FileIo>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = open_options(false, false);
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_DIRECT);
    match opts.open(path) {
        Ok(file) => Ok(Some(Arc::new(ReadOnlyFile(file)))),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Vfs for ReadOnlyVfs {
    fn kind(&self) -> &'static str {
        "read-only pread"
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        if create {
            return Err(refused());
        }
        Ok(Arc::new(ReadOnlyFile(open_options(false, false).open(path)?)))
    }

    fn remove(&self, _path: &Path) -> io::Result<()> {
        Err(refused())
    }

    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused())
    }

    /// Nothing was created, removed or renamed, so nothing awaits a sync.
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn open_direct_reader(&self, path: &Path) -> io::Result<Option<Arc<dyn FileIo>>> {
        open_direct_reader(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdVfs.list(dir)
    }

    /// Succeeds only where the directory already exists.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(refused()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_every_change() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"contents").unwrap();
        let f = ReadOnlyVfs.open(&path, false).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!((f.read_at(&mut buf, 0).unwrap(), &buf), (8, b"contents"));
        assert_eq!(f.len().unwrap(), 8);
        let erofs = |r: io::Result<()>| r.unwrap_err().raw_os_error() == Some(libc::EROFS);
        assert!(erofs(f.write_at(b"x", 0)) && erofs(f.set_len(0)) && erofs(f.punch_hole(0, 8)));
        assert!(erofs(ReadOnlyVfs.remove(&path)) && erofs(ReadOnlyVfs.rename(&path, &tmp.path().join("g"))));
        assert!(ReadOnlyVfs.open(&tmp.path().join("new"), true).is_err());
        assert!(erofs(ReadOnlyVfs.create_dir_all(&tmp.path().join("d"))));
        ReadOnlyVfs.create_dir_all(tmp.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"contents");
        assert!(!tmp.path().join("new").exists() && !tmp.path().join("d").exists());
    }
}
