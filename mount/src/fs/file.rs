//! Regular-file I/O: open, read, write, flush, release, fsync, fallocate,
//! lseek (SEEK_DATA/SEEK_HOLE) and copy_file_range. Contents live in the data
//! store; each operation that changes them writes the data first, then one
//! transaction with the size, block count and times that expose it.

use super::attr::FILE_BYTES_MAX;
use super::Fs;
use crate::data::{AllocMode, SeekKind};
use crate::error::{FsError, FsResult};
use crate::schema::{FileKind, Ino, Timespec};

/// Most bytes one copy_file_range call moves (the caller loops for more).
const COPY_RANGE_BYTES_MAX: u64 = 1 << 30;

/// The open(2) flags the semantics layer acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    pub write: bool,
    pub exclusive: bool,
    pub truncate: bool,
}

impl OpenFlags {
    pub fn from_raw(flags: i32) -> OpenFlags {
        OpenFlags {
            write: flags & libc::O_ACCMODE != libc::O_RDONLY,
            exclusive: flags & libc::O_EXCL != 0,
            truncate: flags & libc::O_TRUNC != 0,
        }
    }
}

/// What a data change does to the inode's size.
enum Grow {
    To(u64),
    Keep,
}

impl Fs {
    /// Open a file; the inode lives at least until the matching `release`.
    pub fn open(&self, ino: Ino, flags: OpenFlags) -> FsResult<u64> {
        if flags.write {
            self.writable()?;
        }
        let inode = self.open_inode(ino)?;
        if inode.kind == FileKind::Dir && flags.write {
            self.close_inode(ino)?;
            return Err(FsError::IsDir);
        }
        Ok(self.new_fh())
    }

    /// Writes reach the data store before they are acknowledged, so a flush
    /// (each close(2)) has nothing left to push.
    pub fn flush(&self, _ino: Ino, _fh: u64) -> FsResult<()> {
        Ok(())
    }

    pub fn release(&self, ino: Ino, _fh: u64) -> FsResult<()> {
        self.close_inode(ino)
    }

    pub fn read(&self, ino: Ino, off: u64, size: u32) -> FsResult<Vec<u8>> {
        let inode = self.meta.inode(ino)?;
        if inode.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        if off >= inode.size {
            return Ok(Vec::new());
        }
        let len = (inode.size - off).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; len];
        // Bytes past the data object's end are a hole: the zeros already in `buf`.
        self.data.read(ino, off, &mut buf).map_err(|e| FsError::data("read", ino, e))?;
        self.touch_atime(ino)?;
        Ok(buf)
    }

    pub fn write(&self, ino: Ino, off: u64, data: &[u8]) -> FsResult<u32> {
        self.writable()?;
        let end = off.checked_add(data.len() as u64).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FileTooBig)?;
        let written = u32::try_from(data.len()).map_err(|_| FsError::Invalid("write larger than 4 GiB"))?;
        self.data.write(ino, off, data).map_err(|e| FsError::data("write", ino, e))?;
        if self.cfg.sync_data {
            self.data.sync(ino).map_err(|e| FsError::data("sync", ino, e))?;
        }
        self.commit_data_change(ino, Grow::To(end), true)?;
        Ok(written)
    }

    /// Record a data change: size (if it grew), blocks, mtime and ctime.
    fn commit_data_change(&self, ino: Ino, grow: Grow, modified: bool) -> FsResult<()> {
        let blocks = self.allocated_blocks(ino)?;
        self.transact_counted(|t, usage| {
            let mut inode = t.inode(ino)?;
            if let Grow::To(end) = grow {
                if end > inode.size {
                    usage.bytes += (end - inode.size) as i64;
                    inode.size = end;
                }
            }
            let now = Timespec::now();
            inode.blocks = blocks;
            if modified {
                inode.mtime = now;
            }
            inode.ctime = now;
            t.put_inode(ino, &inode);
            Ok(())
        })
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
        let end = off.checked_add(len).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FileTooBig)?;
        match self.meta.inode(ino)?.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Unsupported("fallocate of a special file")),
        }
        self.data.fallocate(ino, mode, off, len).map_err(|e| FsError::data("fallocate", ino, e))?;
        let grow = if mode.keep_size { Grow::Keep } else { Grow::To(end) };
        self.commit_data_change(ino, grow, mode.punch_hole || mode.zero_range)
    }

    /// lseek(2) with SEEK_DATA or SEEK_HOLE. The inode's size bounds the
    /// answer: data past it does not exist, and it is a hole.
    pub fn lseek(&self, ino: Ino, off: u64, kind: SeekKind) -> FsResult<u64> {
        let size = self.meta.inode(ino)?.size;
        if off >= size {
            return Err(FsError::NoSuchOffset);
        }
        let found = self.data.seek(ino, off, kind).map_err(|e| FsError::data("seek", ino, e))?;
        match (kind, found) {
            (SeekKind::Data, Some(p)) if p < size => Ok(p),
            (SeekKind::Data, _) => Err(FsError::NoSuchOffset),
            (SeekKind::Hole, Some(p)) => Ok(p.min(size)),
            (SeekKind::Hole, None) => Ok(off),
        }
    }

    /// copy_file_range(2): returns the bytes copied (0 at or past the source's end).
    pub fn copy_file_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> FsResult<u64> {
        self.writable()?;
        let (src_inode, dst_inode) = (self.meta.inode(src)?, self.meta.inode(dst)?);
        if src_inode.kind == FileKind::Dir || dst_inode.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        if src_off >= src_inode.size {
            return Ok(0);
        }
        let n = len.min(src_inode.size - src_off).min(COPY_RANGE_BYTES_MAX);
        let end = dst_off.checked_add(n).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FileTooBig)?;
        self.data.copy_range(src, src_off, dst, dst_off, n).map_err(|e| FsError::data("copy_file_range", dst, e))?;
        self.commit_data_change(dst, Grow::To(end), true)?;
        Ok(n)
    }
}
