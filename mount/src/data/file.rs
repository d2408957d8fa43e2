//! Data store on the local filesystem: `DIR/<ino low byte, hex>/<ino, hex>`,
//! one sparse file per inode, created on first write, reached through a
//! bounded cache of open descriptors.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{copy_via_buffer, AllocMode, DataStore, SeekKind, Space};
use crate::schema::Ino;

/// Default bound on cached open descriptors.
pub const FDS_CACHED_MAX: usize = 512;

struct FdCache {
    files: HashMap<Ino, Arc<File>>,
    /// Insertion order for eviction; may name inodes already removed.
    order: VecDeque<Ino>,
    files_max: usize,
}

/// File contents as sparse files under one directory.
pub struct FileData {
    dir: PathBuf,
    cache: Mutex<FdCache>,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl FileData {
    /// A store rooted at `dir` (created if missing), caching up to `fds_max` descriptors.
    pub fn open(dir: &Path, fds_max: usize) -> io::Result<FileData> {
        fs::create_dir_all(dir)?;
        let files_max = fds_max.max(1);
        Ok(FileData {
            dir: dir.to_path_buf(),
            cache: Mutex::new(FdCache { files: HashMap::new(), order: VecDeque::new(), files_max }),
        })
    }

    fn shard_dir(&self, ino: Ino) -> PathBuf {
        self.dir.join(format!("{:02x}", ino.0 & 0xff))
    }

    fn path(&self, ino: Ino) -> PathBuf {
        self.shard_dir(ino).join(format!("{:016x}", ino.0))
    }

    /// The open file of `ino`; `None` if it does not exist and `create` is false.
    fn file(&self, ino: Ino, create: bool) -> io::Result<Option<Arc<File>>> {
        if let Some(f) = self.cache.lock().files.get(&ino) {
            return Ok(Some(Arc::clone(f)));
        }
        let path = self.path(ino);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(create).mode(0o600).custom_flags(libc::O_CLOEXEC);
        let file = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(self.shard_dir(ino))?;
                opts.open(&path)?
            }
            Err(e) => return Err(e),
        };
        let mut cache = self.cache.lock();
        let file = Arc::clone(cache.files.entry(ino).or_insert_with(|| Arc::new(file)));
        cache.order.push_back(ino);
        while cache.files.len() > cache.files_max {
            let Some(old) = cache.order.pop_front() else { break };
            if old != ino {
                cache.files.remove(&old);
            }
        }
        // Stale names pile up in `order` only as long as the map is small.
        if cache.order.len() > 4 * cache.files_max {
            let FdCache { files, order, .. } = &mut *cache;
            order.retain(|i| files.contains_key(i));
        }
        Ok(Some(file))
    }

    fn fallocate_raw(file: &File, flags: libc::c_int, off: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on an open descriptor owned by `file`.
        cvt(unsafe { libc::fallocate(file.as_raw_fd(), flags, off as libc::off_t, len as libc::off_t) })
            .map(|_| ())
    }

    /// copy_file_range until the source ends; returns the bytes copied.
    fn kernel_copy(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> io::Result<u64> {
        let (mut off_in, mut off_out) = (src_off as libc::loff_t, dst_off as libc::loff_t);
        let mut done = 0u64;
        while done < len {
            let step = (len - done).min(1 << 30) as usize;
            // SAFETY: both descriptors are open; the offsets are valid pointers.
            let n = unsafe {
                libc::copy_file_range(src.as_raw_fd(), &mut off_in, dst.as_raw_fd(), &mut off_out, step, 0)
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
            done += n as u64;
        }
        Ok(done)
    }
}

impl DataStore for FileData {
    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(file) = self.file(ino, false)? else { return Ok(0) };
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()> {
        let file = self.file(ino, true)?.expect("create=true always yields a file");
        file.write_all_at(data, off)
    }

    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()> {
        match self.file(ino, len > 0)? {
            Some(file) => file.set_len(len),
            None => Ok(()),
        }
    }

    fn allocated_bytes(&self, ino: Ino) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        match self.file(ino, false)? {
            Some(file) => Ok(file.metadata()?.blocks() * 512),
            None => Ok(0),
        }
    }

    fn fallocate(&self, ino: Ino, mode: AllocMode, off: u64, len: u64) -> io::Result<()> {
        let create = !(mode.punch_hole || mode.zero_range);
        let Some(file) = self.file(ino, create)? else { return Ok(()) };
        let keep = if mode.keep_size { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
        if mode.punch_hole {
            return Self::fallocate_raw(&file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len);
        }
        if mode.zero_range {
            let zeroed = Self::fallocate_raw(&file, libc::FALLOC_FL_ZERO_RANGE | keep, off, len);
            return match zeroed {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    Self::fallocate_raw(&file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)?;
                    Self::fallocate_raw(&file, keep, off, len)
                }
                other => other,
            };
        }
        Self::fallocate_raw(&file, keep, off, len)
    }

    fn seek(&self, ino: Ino, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        let Some(file) = self.file(ino, false)? else { return Ok(None) };
        let whence = match kind {
            SeekKind::Data => libc::SEEK_DATA,
            SeekKind::Hole => libc::SEEK_HOLE,
        };
        // SAFETY: lseek on an open descriptor; data I/O never uses the file offset.
        let pos = unsafe { libc::lseek(file.as_raw_fd(), off as libc::off_t, whence) };
        if pos < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
        }
        Ok(Some(pos as u64))
    }

    fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> io::Result<()> {
        let dst_file = self.file(dst, true)?.expect("create=true always yields a file");
        let copied = match self.file(src, false)? {
            Some(src_file) => match Self::kernel_copy(&src_file, src_off, &dst_file, dst_off, len) {
                Ok(n) => n,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP)) => {
                    return copy_via_buffer(self, src, src_off, dst, dst_off, len);
                }
                Err(e) => return Err(e),
            },
            None => 0,
        };
        if copied < len {
            // The source ended early: the rest of the range is a hole there.
            let hole = AllocMode { punch_hole: true, keep_size: true, zero_range: false };
            self.fallocate(dst, hole, dst_off + copied, len - copied)?;
        }
        Ok(())
    }

    fn sync(&self, ino: Ino) -> io::Result<()> {
        let Some(file) = self.file(ino, false)? else { return Ok(()) };
        file.sync_data()?;
        // The file's own directory entry must survive a power loss too.
        File::open(self.shard_dir(ino))?.sync_all()
    }

    fn remove(&self, ino: Ino) -> io::Result<()> {
        self.cache.lock().files.remove(&ino);
        match fs::remove_file(self.path(ino)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn space(&self) -> io::Result<Space> {
        let path = CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the data directory path"))?;
        // SAFETY: statvfs fills the zeroed struct from a valid C path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        cvt(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
        let frsize = st.f_frsize as u64;
        Ok(Space { total_bytes: st.f_blocks as u64 * frsize, avail_bytes: st.f_bavail as u64 * frsize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_file_store_reads_writes_punches_and_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileData::open(dir.path(), 2).unwrap();
        let ino = Ino(0x1_0203);
        store.write(ino, 1 << 20, b"tail").unwrap();
        let mut buf = [9u8; 8];
        assert_eq!(store.read(ino, (1 << 20) - 4, &mut buf).unwrap(), 8);
        assert_eq!(&buf, b"\0\0\0\0tail");
        assert_eq!(store.seek(ino, 0, SeekKind::Data).unwrap(), Some(1 << 20));
        assert_eq!(store.seek(ino, 0, SeekKind::Hole).unwrap(), Some(0));
        // The source ends after 4 bytes: the rest reads as past-the-end.
        store.write(Ino(7), 0, b"xxxxxxxxxxxx").unwrap();
        store.copy_range(ino, 1 << 20, Ino(7), 0, 10).unwrap();
        let mut out = [1u8; 12];
        assert_eq!(store.read(Ino(7), 0, &mut out).unwrap(), 12);
        assert_eq!(&out, b"tail\0\0\0\0\0\0xx");
        // More inodes than cached descriptors: eviction must not lose data.
        for i in 100..110 {
            store.write(Ino(i), 0, &i.to_le_bytes()).unwrap();
        }
        for i in 100..110 {
            let mut b = [0u8; 8];
            store.read(Ino(i), 0, &mut b).unwrap();
            assert_eq!(u64::from_le_bytes(b), i);
        }
        let punch = AllocMode { punch_hole: true, keep_size: true, zero_range: false };
        store.fallocate(ino, punch, 1 << 20, 4).unwrap();
        assert_eq!(store.read(ino, 1 << 20, &mut buf[..4]).unwrap(), 4);
        assert_eq!(&buf[..4], b"\0\0\0\0");
        store.sync(ino).unwrap();
        store.remove(ino).unwrap();
        store.remove(ino).unwrap();
        assert_eq!(store.read(ino, 0, &mut buf).unwrap(), 0);
        assert!(dir.path().join("03").join(format!("{:016x}", 0x1_0203)).metadata().is_err());
        assert!(store.space().unwrap().total_bytes > 0);
    }
}
