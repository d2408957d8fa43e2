//! `ImageBuf`: one frame image in memory, aligned for direct I/O, and
//! `AlignedReads`, a reader that holds its callers to direct I/O's rules.
//!
//! Once the pool is full, frame loads read the frame file with `O_DIRECT`
//! where the file system allows it (`Vfs::open_direct_reader`, `Via`):
//! the pool is the frames' cache, so a copy in the page cache would only
//! double their memory, and filling and reclaiming those pages is most of
//! a miss's CPU when memory is tight (benches/RESULTS.md run 22). Direct I/O wants the buffer, the file
//! offset and the length aligned to the device's logical block; every
//! frame read is aligned to `DIRECT_ALIGN`, which covers the 512- and
//! 4096-byte blocks of real devices.

use std::ops::{Deref, DerefMut};
#[cfg(any(test, feature = "testing"))]
use std::{io, sync::Arc};

#[cfg(any(test, feature = "testing"))]
use super::vfs::FileIo;
use crate::layout::mapped::Mapped;
use crate::layout::FRAME_BYTES;

/// Alignment of direct reads: buffer address, file offset and length.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// How a frame load reads the frame file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// Through the page cache, which keeps a copy.
    PageCache,
    /// Around it, where the file system allows (else through it).
    Direct,
}

/// Bytes before the image: room for the block of page checksums that
/// precedes it in a paged slot (`frame_file::PAGE_TABLE_BYTES`), so that
/// block and the image's first page are read in one request.
const FRONT: usize = super::frame_file::PAGE_TABLE_BYTES;

/// A zeroed, `DIRECT_ALIGN`-aligned buffer of one frame image (what it
/// dereferences to), with one aligned block in front of it (`with_front`),
/// in a mapping of its own (`Mapped`: each thread that loads frames keeps
/// one, which goes back to the kernel with the thread).
pub(crate) struct ImageBuf {
    map: Mapped,
}

impl ImageBuf {
    pub(crate) fn zeroed() -> ImageBuf {
        let map = Mapped::zeroed(FRONT + FRAME_BYTES);
        debug_assert!((map.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN), "mappings are page-aligned");
        ImageBuf { map }
    }

    /// The block in front of the image and the image, as one slice: the
    /// image starts at `PAGE_TABLE_BYTES`.
    pub(crate) fn with_front(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// The block in front of the image.
    pub(crate) fn front(&self) -> &[u8] {
        &self.map[..FRONT]
    }
}

impl Deref for ImageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[FRONT..]
    }
}

impl DerefMut for ImageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map[FRONT..]
    }
}

/// Whether a direct read into `buf` at `offset` keeps every alignment rule.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn direct_read_aligned(buf: &[u8], offset: u64) -> bool {
    let align = DIRECT_ALIGN as u64;
    (buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) && buf.len().is_multiple_of(DIRECT_ALIGN) && offset.is_multiple_of(align)
}

/// A read-only view of a simulated file that takes only reads keeping the
/// alignment rules, as `O_DIRECT` does: simulated stores read their frames
/// directly through it, so every test that does checks their alignment. A
/// real file system answers a misaligned read with EINVAL, which the frame
/// file survives by reading through the page cache from then on; here it
/// panics, so that such a read is found, not survived.
///
/// With `refuse` it answers every read as a file system whose logical
/// blocks are larger than `DIRECT_ALIGN` would (EINVAL).
#[cfg(any(test, feature = "testing"))]
pub(crate) struct AlignedReads {
    pub(crate) file: Arc<dyn FileIo>,
    pub(crate) refuse: bool,
}

#[cfg(any(test, feature = "testing"))]
fn read_only() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

#[cfg(any(test, feature = "testing"))]
impl FileIo for AlignedReads {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.refuse {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        assert!(direct_read_aligned(buf, offset), "misaligned direct read: {} bytes at {offset}", buf.len());
        self.file.read_at(buf, offset)
    }

    fn read_vectored_at(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
        if self.refuse {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut at = offset;
        for b in bufs.iter() {
            assert!(direct_read_aligned(b, at), "misaligned direct read: {} bytes at {at}", b.len());
            at += b.len() as u64;
        }
        self.file.read_vectored_at(bufs, offset)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn punch_hole(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_one_zeroed_frame_aligned_for_direct_reads() {
        let mut img = ImageBuf::zeroed();
        assert_eq!(img.len(), FRAME_BYTES);
        assert!(img.iter().all(|&b| b == 0));
        assert!(direct_read_aligned(&img, 0));
        img[FRAME_BYTES - 1] = 9;
        assert_eq!(img[FRAME_BYTES - 1], 9);
        assert!(direct_read_aligned(&img[DIRECT_ALIGN..3 * DIRECT_ALIGN], 8192));
        assert!(!direct_read_aligned(&img[1..DIRECT_ALIGN + 1], 0), "misaligned buffer");
        assert!(!direct_read_aligned(&img[..100], 0), "partial block");
        assert!(!direct_read_aligned(&img[..DIRECT_ALIGN], 512), "misaligned offset");
        let whole = img.with_front();
        assert_eq!(whole.len(), FRONT + FRAME_BYTES);
        assert!(direct_read_aligned(&whole[..2 * DIRECT_ALIGN], 0), "the front block and the first page");
        assert_eq!(whole[FRONT + FRAME_BYTES - 1], 9, "the image follows the front block");
        whole[0] = 4;
        assert_eq!(img.front()[0], 4);
    }
}
