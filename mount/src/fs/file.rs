//! Regular-file I/O: open, read, write, flush, release, fsync, fallocate,
//! lseek (SEEK_DATA/SEEK_HOLE) and copy_file_range. Each is one step on the
//! file's data object, which owns the size, blocks and data times; none
//! touches the metadata tree (fsync syncs it).

use super::attr::FILE_BYTES_MAX;
use super::Fs;
use crate::data::{AllocMode, SeekKind};
use crate::error::{FsError, FsResult};
use crate::schema::{FileKind, Ino, TimeSet};

/// Most bytes one copy_file_range call moves (the caller loops for more).
const COPY_RANGE_BYTES_MAX: u64 = 1 << 30;

/// The open(2) flags the semantics layer acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    pub write: bool,
    /// Opened for reading and writing: the handle can map the file shared
    /// and writable, and such a mapping outlives the handle.
    pub read_write: bool,
    pub exclusive: bool,
    pub truncate: bool,
}

impl OpenFlags {
    pub fn from_raw(flags: i32) -> OpenFlags {
        OpenFlags {
            write: flags & libc::O_ACCMODE != libc::O_RDONLY,
            read_write: flags & libc::O_ACCMODE == libc::O_RDWR,
            exclusive: flags & libc::O_EXCL != 0,
            truncate: flags & libc::O_TRUNC != 0,
        }
    }
}

impl Fs {
    /// Open a file; the inode lives at least until the matching `release`.
    /// Returns the handle and the inode's kind.
    pub fn open(&self, ino: Ino, flags: OpenFlags) -> FsResult<(u64, FileKind)> {
        if flags.write {
            self.writable()?;
        }
        let inode = self.open_inode(ino, flags.read_write)?;
        if inode.kind == FileKind::Dir && flags.write {
            self.close_inode(ino)?;
            return Err(FsError::IsDir);
        }
        Ok((self.new_fh(), inode.kind))
    }

    /// A descriptor of regular file `ino`'s data object for the kernel to
    /// read and write directly (FUSE passthrough); `None` where the data
    /// store has no such file (memory). Sizes and times stay right however
    /// the object is written: the object owns them.
    pub fn backing_file(&self, ino: Ino) -> FsResult<Option<std::sync::Arc<std::fs::File>>> {
        if !self.cfg.read_only {
            self.object_for_step(ino)?;
        }
        self.data.open_backing(ino, !self.cfg.read_only).map_err(|e| FsError::data("open", ino, e))
    }

    /// Before a step that needs `ino`'s object: a file without one gets it
    /// now, with the times its inode records (an empty file's), which the
    /// step then changes as it would any object's. A kill in between leaves
    /// the object with the time of its making instead.
    pub(super) fn object_for_step(&self, ino: Ino) -> FsResult<()> {
        let create = || {
            let inode = self.meta.inode(ino)?;
            let (atime, mtime) = (TimeSet::At(inode.atime), TimeSet::At(inode.mtime));
            self.data.set_times(ino, Some(atime), Some(mtime)).map_err(|e| FsError::data("create", ino, e))
        };
        self.opens.ensure_object(ino, || self.data.stat(ino), create)
    }

    /// Writes reach the data store before they are acknowledged, so a flush
    /// (each close(2)) has nothing left to push.
    pub fn flush(&self, _ino: Ino, _fh: u64) -> FsResult<()> {
        Ok(())
    }

    pub fn release(&self, ino: Ino, _fh: u64) -> FsResult<()> {
        self.close_inode(ino)
    }

    /// Read from the object; it ends where the file ends (the kernel only
    /// sends reads for regular files).
    pub fn read(&self, ino: Ino, off: u64, size: u32) -> FsResult<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let read = self.data.read(ino, off, &mut buf);
        // The read may have stamped the object's atime.
        self.opens.forget_stat(ino);
        let n = read.map_err(|e| FsError::data("read", ino, e))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// One write to the object, which is the whole operation: its size and
    /// mtime are the object's own.
    pub fn write(&self, ino: Ino, off: u64, data: &[u8]) -> FsResult<u32> {
        self.writable()?;
        off.checked_add(data.len() as u64).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FileTooBig)?;
        let written = u32::try_from(data.len()).map_err(|_| FsError::Invalid("write larger than 4 GiB"))?;
        self.space_for_range(ino, off, data.len() as u64)?;
        self.object_for_step(ino)?;
        self.with_space(|| self.data.write(ino, off, data)).map_err(|e| FsError::data("write", ino, e))?;
        self.data_step_done(ino)?;
        Ok(written)
    }

    /// With `sync_data`, make a data step durable before it is answered.
    pub(super) fn data_step_done(&self, ino: Ino) -> FsResult<()> {
        self.opens.forget_stat(ino);
        if self.cfg.sync_data {
            self.data.sync(ino).map_err(|e| FsError::data("sync", ino, e))?;
        }
        Ok(())
    }

    /// Run a data step; if the device is full and unlinked files await
    /// reclaim, reclaim them and try once more.
    fn with_space(&self, step: impl Fn() -> std::io::Result<()>) -> std::io::Result<()> {
        match step() {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.reclaims.len() > 0 => {
                if let Err(r) = self.drain_reclaims() {
                    log::warn!("reclaim to free space failed: {r}");
                }
                step()
            }
            other => other,
        }
    }

    /// Make the file's data (and all metadata) durable.
    pub fn fsync(&self, ino: Ino, _datasync: bool) -> FsResult<()> {
        self.data.sync(ino).map_err(|e| FsError::data("sync", ino, e))?;
        self.meta.sync()
    }

    /// fallocate(2) with `FALLOC_FL_KEEP_SIZE`, `PUNCH_HOLE` and `ZERO_RANGE`.
    pub fn fallocate(&self, ino: Ino, off: u64, len: u64, mode: i32) -> FsResult<()> {
        self.writable()?;
        let known = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !known != 0 {
            return Err(FsError::Unsupported("fallocate mode"));
        }
        let mode = AllocMode {
            keep_size: mode & libc::FALLOC_FL_KEEP_SIZE != 0,
            punch_hole: mode & libc::FALLOC_FL_PUNCH_HOLE != 0,
            zero_range: mode & libc::FALLOC_FL_ZERO_RANGE != 0,
        };
        if len == 0 || (mode.punch_hole && (!mode.keep_size || mode.zero_range)) {
            return Err(FsError::Invalid("fallocate length or flag combination"));
        }
        off.checked_add(len).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FileTooBig)?;
        match self.meta.inode(ino)?.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Unsupported("fallocate of a special file")),
        }
        if !mode.punch_hole {
            self.space_for_range(ino, off, len)?;
            self.object_for_step(ino)?;
        }
        self.with_space(|| self.data.fallocate(ino, mode, off, len)).map_err(|e| FsError::data("fallocate", ino, e))?;
        self.data_step_done(ino)
    }

    /// lseek(2) with SEEK_DATA or SEEK_HOLE: the object's own answer (its
    /// end is the file's end).
    pub fn lseek(&self, ino: Ino, off: u64, kind: SeekKind) -> FsResult<u64> {
        match self.data.seek(ino, off, kind).map_err(|e| FsError::data("seek", ino, e))? {
            Some(p) => Ok(p),
            None => Err(FsError::NoSuchOffset),
        }
    }

    /// copy_file_range(2): returns the bytes copied (0 at or past the source's end).
    pub fn copy_file_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> FsResult<u64> {
        self.writable()?;
        let src_size = self.data.stat(src).map_err(|e| FsError::data("stat", src, e))?.map_or(0, |s| s.size);
        if src_off >= src_size {
            return Ok(0);
        }
        let n = len.min(src_size - src_off).min(COPY_RANGE_BYTES_MAX);
        dst_off.checked_add(n).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FileTooBig)?;
        self.space_for_range(dst, dst_off, n)?;
        self.object_for_step(dst)?;
        self.with_space(|| self.data.copy_range(src, src_off, dst, dst_off, n))
            .map_err(|e| FsError::data("copy_file_range", dst, e))?;
        // Reading the source may have stamped its atime.
        self.opens.forget_stat(src);
        self.data_step_done(dst)?;
        Ok(n)
    }
}
