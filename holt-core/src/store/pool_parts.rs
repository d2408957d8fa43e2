//! Frames loaded in part (`store::pages`): a lookup or scan that misses
//! in a full pool reads a frame's page checksums and first page
//! (`Pool::load_head`), then each page its walk needs
//! (`Pool::fault_pages`).

use std::ops::Range;
use std::sync::atomic::Ordering;

use super::{dangling, version_to_load, Pool, IMAGE, PAGES_VIA};
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::{verify_header, HEADER_BYTES};
use crate::store::cell::FrameCell;
use crate::store::frame_file::{page_in_gap, Known, PAGES, PAGE_BYTES, PAGE_TABLE_BYTES};
use crate::store::image_buf::ImageBuf;

impl Pool {
    /// Load frame `id` in part, unless another thread made it resident
    /// first: into a buffer of its own, the header kept from its last load
    /// in part if the stored image is still that one (no read), else its
    /// page checksums and first page, read.
    pub(crate) fn load_head(&self, id: FrameId, cell: &FrameCell) -> Result<()> {
        if self.load_kept_head(cell) {
            self.clock.enqueue(id, cell);
            return Ok(());
        }
        let source = self.source.as_ref().ok_or_else(|| dangling(id))?;
        // As in `load`: installed only if the frame did not change since.
        let Some(version) = version_to_load(cell) else { return Ok(()) };
        IMAGE.with_borrow_mut(|image| {
            let image = image.get_or_insert_with(ImageBuf::zeroed);
            let crcs = source.read_head(id, image, PAGES_VIA)?;
            self.counters.pages_read.add(1);
            self.counters.bytes_read.add((PAGE_TABLE_BYTES + PAGE_BYTES) as u64);
            verify_header(image, id).map_err(|what| Error::corrupted("frames", id.0, what))?;
            let unchanged = cell.latch.lock_unchanged_since(version);
            if unchanged && cell.buf().is_none() && cell.part().is_none() {
                let state = cell.page_state_or_new();
                let mut table = state.table.lock();
                table.crcs = crcs;
                table.header.copy_from_slice(&image[..HEADER_BYTES]);
                table.current = true;
                self.attach_part(cell, &image[..PAGE_BYTES]);
                state.mark(0);
            }
            cell.latch.unlock();
            Ok::<(), Error>(())
        })?;
        self.clock.enqueue(id, cell);
        Ok(())
    }

    /// Give the frame in `cell`, which has no buffer, a part buffer
    /// holding `head` at its start (one page of the budget). Its memory
    /// goes back first, so the frame costs only the pages it reads. Caller
    /// holds the exclusive latch and the page table's mutex.
    fn attach_part(&self, cell: &FrameCell, head: &[u8]) {
        let buf = self.alloc_buf(1);
        // SAFETY: a pool-owned buffer no frame uses.
        let b = unsafe { &*buf };
        b.release_memory();
        b.write(0, head);
        cell.part.store(buf, Ordering::Release);
        cell.touch();
        self.counters.misses.add(1);
    }

    /// `load_head` without a read: a buffer holding the kept header, if
    /// the frame is not in memory and what is kept is current. Its page 0
    /// counts in the budget until read (`PageState::newly_held`).
    fn load_kept_head(&self, cell: &FrameCell) -> bool {
        let Some(state) = cell.page_state() else { return false };
        cell.latch.lock();
        let table = state.table.lock();
        let done = table.current && cell.buf().is_none() && cell.part().is_none();
        if done {
            self.attach_part(cell, &table.header);
            state.set_headed();
        }
        drop(table);
        cell.latch.unlock();
        done
    }

    /// Read the pages frame `id`'s part buffer lacks of `pages`, widened
    /// to aligned blocks of `block` pages, for a walk that read it at latch
    /// `version`. `Ok(false)`: the frame changed since (the walk
    /// restarts); no page is written then (`store::pages`).
    pub(crate) fn fault_pages(&self, id: FrameId, cell: &FrameCell, version: u64, pages: Range<usize>, block: usize) -> Result<bool> {
        let source = self.source.as_ref().ok_or_else(|| dangling(id))?;
        let state = cell.page_state().expect("a frame resident in part has page state");
        let table = state.table.lock();
        if !cell.latch.validate(version) {
            return Ok(false);
        }
        let buf = cell.part().expect("the part buffer of the validated version");
        let gap = buf.free_gap();
        let pages = pages.start / block * block..pages.end.next_multiple_of(block).min(PAGES);
        IMAGE.with_borrow_mut(|image| {
            let image = image.get_or_insert_with(ImageBuf::zeroed);
            let mut p = pages.start;
            while p < pages.end {
                if state.has(p) {
                    p += 1;
                    continue;
                }
                let run = p..(p..pages.end).find(|&q| state.has(q)).unwrap_or(pages.end);
                source.read_pages(id, run.clone(), Known { crcs: &table.crcs, gap: &gap }, image, PAGES_VIA)?;
                for q in run.clone() {
                    let at = q * PAGE_BYTES;
                    buf.write(at, &image[at..at + PAGE_BYTES]);
                    state.mark(q);
                }
                self.held_pages.fetch_add(state.newly_held(&run), Ordering::AcqRel);
                self.counters.pages_read.add(run.len() as u64);
                let read = run.clone().filter(|&q| !page_in_gap(q, &gap)).count();
                self.counters.bytes_read.add((read * PAGE_BYTES) as u64);
                p = run.end;
            }
            Ok::<(), Error>(())
        })?;
        drop(table);
        self.shrink_to_budget();
        Ok(true)
    }
}
