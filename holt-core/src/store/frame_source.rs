//! `FrameSource`: where the buffer pool reads evicted frames back from (the
//! frame store of a persistent tree, a pinned mapping for a snapshot).

use std::ops::Range;

use super::frame_file::{Known, PageCrcs};
use super::image_buf::{ImageBuf, Via};
use super::frame_file::PageMask;
use crate::error::{Error, Result};
use crate::ids::FrameId;

/// What a whole-frame read brought in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// Bytes read from storage.
    pub bytes: u64,
    /// Where the store keeps a whole image this one may be written as a
    /// delta over, and the pages in which the image read differs from it
    /// (none when it is that image): `None` from a source whose images
    /// no delta may name (a snapshot's).
    pub base: Option<Over>,
}

/// A whole image the store keeps of a frame (its slot), and the pages in
/// which another image of the frame differs from it: what that image was
/// read as (`Loaded`), or may be written over as a delta
/// (`CheckpointTxn::seal_and_write`, which records it as a
/// `manifest::Base`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Over {
    pub slot: u32,
    pub pages: PageMask,
}

/// Where evicted frames are read back from.
pub(crate) trait FrameSource: Send + Sync {
    /// Put into `into` the image of frame `id` as last written by a
    /// checkpoint, verified against a checksum over every byte of it,
    /// read `via` the page cache or around it.
    fn read_frame(&self, id: FrameId, into: &mut ImageBuf, via: Via) -> Result<Loaded>;

    /// The slot of the stored whole image a delta of frame `id` may name
    /// now (`FrameStore::delta_base`); `None` where deltas are not written.
    fn delta_base(&self, _id: FrameId) -> Option<u32> {
        None
    }

    /// Whether frames can be read a page at a time (`read_head`, `read_page`).
    fn paged(&self) -> bool {
        false
    }

    /// The page checksums of frame `id` and its first page, into `into`
    /// (`FrameFile::read_head`). Only asked of a `paged` source.
    fn read_head(&self, id: FrameId, _into: &mut ImageBuf, _via: Via) -> Result<PageCrcs> {
        Err(Error::InvalidArgument(format!("frame {}: this source reads frames whole", id.0)))
    }

    /// `pages` of frame `id` into the same pages of `into`, each checked
    /// against its checksum (`FrameFile::read_pages`). Only asked of a
    /// `paged` source.
    fn read_pages(&self, id: FrameId, _pages: Range<usize>, _known: Known<'_>, _into: &mut ImageBuf, _via: Via) -> Result<()> {
        Err(Error::InvalidArgument(format!("frame {}: this source reads frames whole", id.0)))
    }
}
