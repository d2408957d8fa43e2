//! The miss filter across a clean close: saved after the closing
//! checkpoint, taken back by the next open before the WAL replay
//! (`store::filter_file` has the file and the invariant that makes this
//! exact). A tree larger than its cache otherwise reads its whole frame
//! file after every open to build one (`engine::filter`).

use std::io;
use std::sync::atomic::Ordering;

use super::Engine;
use crate::store::filter_file::{self, Checkpoint, Header, FILTER_NAME};
use crate::store::miss_filter::{hash_check, words_for, MissFilter};
use crate::store::vfs::FileIo;

impl Engine {
    /// Take the filter saved at the last clean close if it was saved after
    /// the published checkpoint; remove a file that does not qualify. Call
    /// at open, before the replay (which sets the bits of the keys it
    /// puts) and before the filter's keeper starts.
    pub(super) fn load_saved_filter(&self) {
        let (Some(filter), Some(d)) = (&self.filter, &self.durable) else { return };
        let path = self.cfg.dir.join(FILTER_NAME);
        let file = match d.vfs.open(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return log::warn!("{}: cannot open the saved miss filter (building one): {e}", path.display()),
        };
        let (store_id, seq) = d.store.published_seq();
        match self.read_saved_filter(filter, &*file, Checkpoint { store_id, seq }) {
            Ok(stale) => {
                self.filter_keeper.stale_at_open.store(stale, Ordering::Release);
                self.pool.set_aside(filter.bytes() as usize);
                log::debug!("{}: miss filter of {} keys taken from the last close", path.display(), filter.capacity());
            }
            Err(why) => {
                log::info!("{}: saved miss filter not used ({why}); building one", path.display());
                drop(file);
                if let Err(e) = d.vfs.remove(&path) {
                    log::warn!("{}: cannot remove the unused miss filter: {e}", path.display());
                }
            }
        }
    }

    /// Read a saved filter into the filter's free region and make it
    /// current; its stale key count, or why the file does not qualify.
    fn read_saved_filter(&self, filter: &MissFilter, file: &dyn FileIo, at: Checkpoint) -> Result<u64, String> {
        let (header, crc) = filter_file::read_header(file, at, hash_check())?;
        if header.words != words_for(header.capacity) as u64 {
            return Err(format!("{} words for {} keys: another build's sizing", header.words, header.capacity));
        }
        if !self.filter_fits(header.capacity) {
            return Err(format!("a filter of {} keys is more than this cache gives one", header.capacity));
        }
        let mut build = filter.begin(header.capacity).ok_or("no memory for it")?;
        // SAFETY: called at open, before the tree is shared: no writer
        // sets bits and no lookup probes (`load_saved_filter`).
        filter_file::read_words(file, crc, unsafe { build.bytes_mut() })?;
        build.words_from_le();
        let _gate = self.gate.write();
        build.publish();
        Ok(header.stale_keys)
    }

    /// Save the current filter for the next open, or remove an older file
    /// when none is current. Call at a clean close, after its checkpoint,
    /// with the keeper stopped and no writer left: the filter then holds
    /// exactly the keys of the checkpoint it names (and stale bits).
    pub(super) fn save_filter(&self) {
        let (Some(filter), Some(d)) = (&self.filter, &self.durable) else { return };
        let path = self.cfg.dir.join(FILTER_NAME);
        let Some((capacity, words)) = filter.current_words() else {
            return match d.vfs.remove(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => log::warn!("{}: cannot remove: {e}", path.display()),
                _ => {}
            };
        };
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
            let _ = d.vfs.remove(&path);
        }
    }
}
