//! The miss filter across a clean close: saved after the closing
//! checkpoint, taken back by the next open (`store::filter_file` has the
//! file and the invariant that makes this exact). A tree larger than its
//! cache otherwise reads its whole frame file after every open to build
//! one (`engine::filter`).
//!
//! Taking it back is a build whose keys come from the file: at open the
//! file's header is checked and a build of its capacity registered before
//! the WAL replay (so the replay's puts, and every writer's after it, set
//! their bits there); the keeper then ors the file's words in and
//! publishes the build once the words pass their checksum, or drops it.
//! The open waits only for the header.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Engine;
use crate::store::filter_file::{self, Checkpoint, Header, FILTER_NAME};
use crate::store::miss_filter::{hash_check, words_for, Detached, MissFilter};
use crate::store::vfs::FileIo;

/// A saved filter registered at open, its words not yet read in.
pub(super) struct Pending {
    file: Arc<dyn FileIo>,
    build: Detached,
    words: u64,
    crc: u32,
    stale_keys: u64,
}

impl Engine {
    /// Register a build for the filter saved at the last clean close if it
    /// was saved after the published checkpoint, for the keeper to read in
    /// (`finish_saved_filter`); remove a file that does not qualify. Call
    /// at open, before the replay and before the keeper starts.
    pub(super) fn load_saved_filter(&self) {
        let (Some(filter), Some(d)) = (&self.filter, &self.durable) else { return };
        let path = self.cfg.dir.join(FILTER_NAME);
        let file = match d.vfs.open(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return log::warn!("{}: cannot open the saved miss filter (building one): {e}", path.display()),
        };
        let (store_id, seq) = d.store.published_seq();
        match self.register_saved_filter(filter, file, Checkpoint { store_id, seq }) {
            Ok(pending) => {
                *self.filter_keeper.pending.lock() = Some(pending);
                self.pool.set_aside(filter.bytes() as usize);
            }
            Err(why) => self.drop_filter_file(&why),
        }
    }

    /// Check a saved filter's header and register a build of its size.
    fn register_saved_filter(&self, filter: &MissFilter, file: Arc<dyn FileIo>, at: Checkpoint) -> Result<Pending, String> {
        let (header, crc) = filter_file::read_header(&*file, at, hash_check())?;
        if header.words != words_for(header.capacity) as u64 {
            return Err(format!("{} words for {} keys: another build's sizing", header.words, header.capacity));
        }
        if !self.filter_fits(header.capacity) {
            return Err(format!("a filter of {} keys is more than this cache gives one", header.capacity));
        }
        let build = filter.begin_unbacked(header.capacity).ok_or("no memory for it")?;
        self.gate_exclusive(|| build.register());
        Ok(Pending { file, build: build.detach(), words: header.words, crc, stale_keys: header.stale_keys })
    }

    /// Read the words of the filter registered at open into its build and
    /// publish it, or drop it (and the file) if the words fail their
    /// checksum. Nothing to do without one. The caller holds the keeper's
    /// build lock.
    pub(super) fn finish_saved_filter(&self) {
        let Some(filter) = &self.filter else { return };
        let Some(p) = self.filter_keeper.pending.lock().take() else { return };
        let build = filter.resume(p.build);
        let read = filter_file::read_words(&*p.file, p.crc, p.words, |first, bytes| build.or_words_le(first, bytes));
        match read {
            Ok(()) => {
                self.gate_exclusive(|| build.publish());
                self.filter_keeper.stale_at_open.store(p.stale_keys, Ordering::Release);
                log::debug!("{}: miss filter of {} keys taken from the last close", self.cfg.dir.display(), filter.capacity());
            }
            Err(why) => {
                self.gate_exclusive(|| drop(build));
                drop(p.file);
                self.drop_filter_file(&why);
            }
        }
        self.pool.set_aside(filter.bytes() as usize);
    }

    fn gate_exclusive(&self, f: impl FnOnce()) {
        let _gate = self.gate.write();
        f();
    }

    fn drop_filter_file(&self, why: &str) {
        log::info!("{}: saved miss filter not used ({why}); building one", self.cfg.dir.join(FILTER_NAME).display());
        self.remove_filter_file();
    }

    /// Remove `FILTER` if there is one; a failure is logged (the next
    /// open refuses a stale file anyway).
    fn remove_filter_file(&self) {
        let Some(d) = &self.durable else { return };
        let path = self.cfg.dir.join(FILTER_NAME);
        match d.vfs.remove(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => log::warn!("{}: cannot remove: {e}", path.display()),
            _ => {}
        }
    }

    /// Save the current filter for the next open, or remove an older file
    /// when none is current or the disk filled. Call at a clean close,
    /// after its checkpoint, with the keeper stopped and no writer left:
    /// the filter then holds exactly the keys of the checkpoint it names
    /// (and stale bits). A filter taken from the last close and not yet
    /// read in is read in first.
    pub(super) fn save_filter(&self) {
        let (Some(filter), Some(d)) = (&self.filter, &self.durable) else { return };
        {
            let _one_at_a_time = self.filter_keeper.build.lock();
            self.finish_saved_filter();
        }
        let path = self.cfg.dir.join(FILTER_NAME);
        // A disk that filled (the space reserve spent) keeps its room for
        // the store's own files: a filter is only worth a read saved.
        let current = filter.current_words().filter(|_| !d.reserve.is_low());
        let Some((capacity, words)) = current else { return self.remove_filter_file() };
        let (store_id, seq) = d.store.published_seq();
        let header = Header {
            at: Checkpoint { store_id, seq },
            capacity,
            words: words.len() as u64,
            stale_keys: self.filter_stale_keys(),
            hash_check: hash_check(),
        };
        let saved = d.vfs.open(&path, true).and_then(|file| filter_file::write(&*file, &header, words));
        let saved = saved.and_then(|()| d.vfs.sync_dir(&self.cfg.dir));
        if let Err(e) = saved {
            log::warn!("{}: cannot save the miss filter (the next open builds one): {e}", path.display());
            self.remove_filter_file();
        }
    }
}
