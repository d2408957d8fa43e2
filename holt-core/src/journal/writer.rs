//! Appending and group commit.
//!
//! `append` encodes a record into the staged buffer under the staging lock
//! (no syscall). `commit` makes one thread the writer: under the I/O lock it
//! takes the whole staged buffer and writes it with one `write_at`. A commit
//! that must sync then becomes the sync leader under the sync lock and
//! fdatasyncs once for everything written so far, without holding the I/O
//! lock. Committers that queue on either lock meanwhile usually find their
//! LSN already written (or synced) when they get it, so a burst of N commits
//! costs far fewer than N writes and syncs, and writers acknowledged at
//! `write(2)` never wait for an fdatasync.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::active::{self, ActiveSegment};
use super::ahead::WRITEBACK_STEP_BYTES;
use super::codec::{self, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES};
use super::segment::{self, SealedSegment};
use super::Journal;
use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::op::LogOp;
use crate::store::reserve::SpaceReserve;
use crate::store::vfs::FileIo;

/// Staged bytes at which `append` writes them out itself instead of waiting
/// for a commit. Bounds staged memory to this plus one record per
/// concurrent appender, even for callers that append without committing.
pub(crate) const STAGED_BYTES_FLUSH: usize = 4 << 20;
/// A buffer kept for reuse after a write is dropped if its capacity exceeds
/// this, so one huge batch does not pin memory for the journal's life.
pub(crate) const SPARE_BYTES_KEEP_MAX: usize = 8 << 20;

/// LSN assignment and records not yet handed to a writer.
pub(crate) struct Staging {
    /// LSN the next `append` gets.
    next_lsn: Lsn,
    /// Encoded records `(written_lsn, next_lsn)`, in LSN order, that no
    /// writer has taken yet.
    buf: Vec<u8>,
    /// Largest `synced_lsn` claimed by a record in `buf`.
    buf_synced_claimed: Lsn,
}

impl Staging {
    pub(crate) fn new(next_lsn: Lsn) -> Self {
        Staging { next_lsn, buf: Vec::new(), buf_synced_claimed: Lsn(0) }
    }
}

/// A sealed segment whose data is not known durable yet.
#[derive(Clone)]
pub(crate) struct PendingSeal {
    file: Arc<dyn FileIo>,
    path: PathBuf,
    last_lsn: Lsn,
}

/// What the single writer owns.
pub(crate) struct WriterIo {
    pub(super) active: ActiveSegment,
    /// The active segment's name may not be durable yet: a sync must fsync
    /// the directory before it acknowledges records in this segment.
    pub(super) dir_dirty: bool,
    /// Empty buffer swapped with the staged one, so staging keeps capacity.
    spare: Vec<u8>,
    /// Largest `synced_lsn` claimed by a record or marker in the active
    /// segment: a close writes a marker when `synced_lsn` is past it.
    synced_claimed: Lsn,
}

impl WriterIo {
    /// `active`'s records are durable; its name too unless `dir_dirty`.
    pub(crate) fn new(active: ActiveSegment, synced_claimed: Lsn, dir_dirty: bool) -> Self {
        WriterIo { active, dir_dirty, spare: Vec::new(), synced_claimed }
    }
}

impl Journal {
    /// Assign the next LSN to this batch of ops and stage its record in
    /// memory. No syscall unless the staged bytes exceed
    /// `STAGED_BYTES_FLUSH`. LSN order is the order of `append` calls, so a
    /// caller holding the latches of the frames it modified gets LSN order ==
    /// apply order.
    pub(crate) fn append(&self, ops: &[LogOp]) -> Result<Lsn> {
        self.check_poison()?;
        let len = codec::payload_len(ops);
        if len > RECORD_PAYLOAD_BYTES_MAX {
            let what =
                format!("batch of {len} bytes exceeds the WAL record maximum of {RECORD_PAYLOAD_BYTES_MAX} bytes");
            return Err(Error::InvalidArgument(what));
        }
        let (lsn, staged_bytes) = {
            let mut st = self.staging.lock();
            let lsn = st.next_lsn;
            // Read under the staging lock: a sync can only raise it, so the
            // claim stays true, and it is below `lsn` (not yet written).
            let synced = Lsn(self.synced_lsn.load(Ordering::Acquire));
            codec::encode_record(&mut st.buf, lsn, synced, ops);
            st.buf_synced_claimed = synced;
            st.next_lsn = lsn.next();
            self.last_lsn.store(lsn.0, Ordering::Release);
            (lsn, st.buf.len())
        };
        if staged_bytes >= STAGED_BYTES_FLUSH {
            self.commit(lsn, false)?;
        }
        Ok(lsn)
    }

    /// Group commit: return once every record up to `lsn` has been handed to
    /// the OS and, if `sync` or `sync_on_commit`, fdatasync'd.
    pub(crate) fn commit(&self, lsn: Lsn, sync: bool) -> Result<()> {
        self.check_poison()?;
        let sync = sync || self.cfg.sync_on_commit;
        if lsn > self.last_lsn() {
            return Err(Error::InvalidArgument(format!(
                "commit of lsn {} past the last appended lsn {}",
                lsn.0,
                self.last_lsn().0
            )));
        }
        if self.written_lsn.load(Ordering::Acquire) < lsn.0 {
            let mut io = self.io.lock();
            // The previous holder may have failed, or done our work.
            self.check_poison()?;
            if self.written_lsn.load(Ordering::Acquire) < lsn.0 {
                self.write_staged(&mut io).inspect_err(|e| self.poison(e))?;
            }
        }
        if sync && self.synced_lsn.load(Ordering::Acquire) < lsn.0 {
            let _leader = self.sync_lock.lock();
            self.check_poison()?;
            if self.synced_lsn.load(Ordering::Acquire) < lsn.0 {
                self.sync_written().inspect_err(|e| self.poison(e))?;
            }
        }
        debug_assert!(self.covers(lsn, sync));
        Ok(())
    }

    /// Barrier: everything appended so far is durable on return.
    pub(crate) fn sync(&self) -> Result<()> {
        self.commit(self.last_lsn(), true)
    }

    fn covers(&self, lsn: Lsn, sync: bool) -> bool {
        let done = if sync { &self.synced_lsn } else { &self.written_lsn };
        done.load(Ordering::Acquire) >= lsn.0
    }

    /// Take the whole staged buffer and write it at the end of the log.
    /// Any error leaves the log's end unknown: the caller poisons.
    fn write_staged(&self, io: &mut WriterIo) -> Result<()> {
        let first = Lsn(self.written_lsn.load(Ordering::Acquire) + 1);
        let (mut batch, last, claimed) = {
            let mut st = self.staging.lock();
            let empty = std::mem::take(&mut io.spare);
            (std::mem::replace(&mut st.buf, empty), Lsn(st.next_lsn.0 - 1), st.buf_synced_claimed)
        };
        if batch.is_empty() {
            io.spare = batch;
            return Ok(());
        }
        if io.active.len >= self.cfg.segment_bytes_max && io.active.len > SEGMENT_HEADER_BYTES as u64 {
            self.rotate(io, first)?;
        }
        let step = io.active.len / WRITEBACK_STEP_BYTES;
        io.active
            .append(&batch, self.map_bytes(), &self.reserve)
            .map_err(|e| Error::io("write", &io.active.path, e))?;
        if io.active.len / WRITEBACK_STEP_BYTES != step {
            self.ahead.nudge();
        }
        io.synced_claimed = io.synced_claimed.max(claimed);
        self.bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes_written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.written_lsn.store(last.0, Ordering::Release);
        batch.clear();
        if batch.capacity() <= SPARE_BYTES_KEEP_MAX {
            io.spare = batch;
        }
        Ok(())
    }

    /// Seal the active segment now, so a `trim` past its last record can
    /// remove it, and continue in an empty one. A clean close does this
    /// after its final checkpoint, so the next open reads no history.
    pub(crate) fn seal_active(&self) -> Result<()> {
        self.check_poison()?;
        let _sync = self.sync_lock.lock();
        let mut io = self.io.lock();
        let sealed = self.write_staged(&mut io).and_then(|()| {
            // A segment holding no record (header, maybe a close marker) has
            // nothing to seal, and its successor would reuse its name.
            let first = Lsn(self.written_lsn.load(Ordering::Acquire) + 1);
            if first <= io.active.first_lsn {
                return Ok(());
            }
            self.rotate(&mut io, first)?;
            self.sync_seals()
        });
        if let Err(e) = &sealed {
            self.poison(e);
        }
        sealed
    }

    /// fsync the WAL directory, so every segment creation and removal so far
    /// is durable: after a clean close's trim, the next open finds exactly
    /// the retired log. Failure is returned and does not poison (records
    /// are as durable as before).
    pub(crate) fn sync_names(&self) -> Result<()> {
        let _sync = self.sync_lock.lock();
        let mut io = self.io.lock();
        self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        io.dir_dirty = false;
        Ok(())
    }

    /// Seal the active segment and start one whose first record is `first`.
    /// The sealed segment's name is made durable before the new name
    /// exists, so a crash never leaves a later segment behind a lost one;
    /// its data is left to the flusher's fdatasync (`sync_seals`), which
    /// every sync waits for. The flusher keeps this short: most of the
    /// segment was written back ahead, its name synced and the next file
    /// prepared (`ahead`).
    fn rotate(&self, io: &mut WriterIo, first: Lsn) -> Result<()> {
        let start = std::time::Instant::now();
        self.seal(io, Lsn(first.0 - 1))?;
        let new = match self.adopt_spare(first) {
            Some(new) => new,
            None => {
                self.reserve.retry("WAL segment creation", || segment::create_segment(&*self.vfs, &self.dir, first))?
            }
        };
        self.bytes.fetch_add(new.len, Ordering::Relaxed);
        self.ahead.reservable.store(first.0, Ordering::Release);
        let old = std::mem::replace(&mut io.active, new);
        io.dir_dirty = true;
        io.synced_claimed = Lsn(0);
        let sealed =
            SealedSegment { path: old.path, first_lsn: old.first_lsn, last_lsn: Lsn(first.0 - 1), bytes: old.len };
        self.sealed.lock().push_back(sealed);
        self.ahead.nudge();
        self.rotation_nanos_max.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Cut the active segment (whose last record is `last`) to its records
    /// and queue its fdatasync; make its name durable now if it is not.
    fn seal(&self, io: &mut WriterIo, last: Lsn) -> Result<()> {
        self.ahead.reservable.store(0, Ordering::Release);
        let old = &mut io.active;
        // A segment sealed short of its size may be cut: a reservation the
        // flusher has under way finishes first (a full one is reserved no
        // further than its length, so nothing can extend it).
        let partial = old.len < active::seal_bytes_for(self.map_bytes());
        let reserving = partial.then(|| self.ahead.reserving.lock());
        let map = old.seal().map_err(|e| Error::io("truncate", &old.path, e))?;
        drop(reserving);
        self.ahead.retire_map(map);
        let pending = PendingSeal { file: old.file.clone(), path: old.path.clone(), last_lsn: last };
        self.pending_seals.lock().push_back(pending);
        if io.dir_dirty {
            self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
            io.dir_dirty = false;
        }
        Ok(())
    }

    /// fdatasync every sealed segment whose seal is pending, oldest first,
    /// and move `synced_lsn` past each: its records, and every earlier
    /// one, are then durable. A seal leaves the queue only once synced, so
    /// a caller that finds the queue empty finds every seal durable (two
    /// threads may sync one segment; the second sync is cheap). The caller
    /// poisons on error: the segment's durability is unknown.
    pub(crate) fn sync_seals(&self) -> Result<()> {
        loop {
            let Some(seal) = self.pending_seals.lock().front().cloned() else { return Ok(()) };
            seal.file.sync_data().map_err(|e| Error::io("fdatasync", &seal.path, e))?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            let mut pending = self.pending_seals.lock();
            if pending.front().is_some_and(|s| s.last_lsn == seal.last_lsn) {
                pending.pop_front();
                self.synced_lsn.fetch_max(seal.last_lsn.0, Ordering::AcqRel);
            }
        }
    }

    /// fdatasync the seals still pending, then the active segment (and the
    /// directory if its name is new): every record written before is then
    /// durable. Holds the I/O lock only to look at the active segment, so
    /// writers keep writing during the sync; a seal a rotation queued
    /// before that look holds records up to `upto`, and is synced here.
    fn sync_written(&self) -> Result<()> {
        let (file, path, upto, dir_dirty) = {
            let io = self.io.lock();
            (io.active.file.clone(), io.active.path.clone(), self.written_lsn.load(Ordering::Acquire), io.dir_dirty)
        };
        self.sync_seals()?;
        if dir_dirty {
            self.sync_active_name(&path)?;
        }
        file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced_lsn.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// fsync the directory for the name of the segment at `path`, read as
    /// the active one. `dir_dirty` is cleared only if it still is: a
    /// rotation since made another name new, which this fsync may have
    /// missed.
    pub(super) fn sync_active_name(&self, path: &Path) -> Result<()> {
        self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        let mut io = self.io.lock();
        if io.active.path == path {
            io.dir_dirty = false;
        }
        Ok(())
    }

    /// At close, when everything is durable but no record in the active
    /// segment says so, write a sync marker (unsynced: it only matters if it
    /// survives) so that recovery can tell later damage to these records
    /// from a lost tail. Best effort: a failure only weakens that check.
    fn write_close_marker(&mut self) {
        let io = self.io.get_mut();
        let synced = Lsn(self.synced_lsn.load(Ordering::Acquire));
        let all_durable = synced.0 == self.last_lsn.load(Ordering::Acquire);
        if self.poisoned.load(Ordering::Acquire) || !all_durable || synced <= io.synced_claimed {
            return;
        }
        let mut marker = Vec::new();
        codec::encode_marker(&mut marker, synced);
        let map_bytes = self.map_bytes();
        let io = self.io.get_mut();
        // Not worth the space reserve: a full disk just loses the marker.
        if let Err(e) = io.active.append(&marker, map_bytes, &SpaceReserve::none()) {
            log::warn!("{}: could not write the WAL close marker: {e}", io.active.path.display());
        }
    }

    /// Size of the active segment's mapping (see `active`).
    pub(super) fn map_bytes(&self) -> u64 {
        active::map_bytes_for(self.cfg.segment_bytes_max)
    }
}

impl Drop for Journal {
    /// Best effort, nothing synced: a lost marker only weakens recovery's
    /// corruption check, and reserved space left behind is cut at open.
    fn drop(&mut self) {
        self.stop_flusher();
        self.drop_spare();
        self.write_close_marker();
        let io = self.io.get_mut();
        if let Err(e) = io.active.finish() {
            log::warn!("{}: could not cut the WAL's reserved space: {e}", io.active.path.display());
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::*;
    use crate::journal::fault_vfs::FaultVfs;
    use crate::journal::JournalConfig;
    use crate::store::std_vfs::StdVfs;
    use crate::store::vfs::Vfs;

    pub(crate) fn cfg(segment_bytes_max: u64, sync_on_commit: bool) -> JournalConfig {
        JournalConfig { segment_bytes_max, sync_on_commit }
    }

    pub(crate) fn open(vfs: Arc<dyn Vfs>, dir: &Path, c: JournalConfig) -> (Journal, Vec<(Lsn, Vec<LogOp>)>) {
        Journal::open(vfs, dir, Lsn(0), c).expect("journal opens")
    }

    /// Append and commit `put(tag, i)` for `i` in `0..n`, syncing each
    /// commit where `sync(i)`.
    pub(crate) fn commit_puts(j: &Journal, tag: u64, n: u64, sync: impl Fn(u64) -> bool) {
        for i in 0..n {
            let lsn = j.append(&put(tag, i)).unwrap();
            j.commit(lsn, sync(i)).unwrap();
        }
    }

    pub(crate) fn put(tag: u64, i: u64) -> Vec<LogOp> {
        vec![LogOp::Put { key: format!("{tag}/{i}").into_bytes(), value: i.to_le_bytes().to_vec() }]
    }

    fn segment_count(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    /// Bytes of the segment files in `dir`, less the space the active
    /// segment has reserved past the log's end.
    pub(crate) fn logged_bytes_on_disk(j: &Journal, dir: &Path) -> u64 {
        let files: u64 = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        let io = j.io.lock();
        files - (std::fs::metadata(&io.active.path).unwrap().len() - io.active.len)
    }

    #[test]
    fn appended_batches_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let batches = vec![
            vec![LogOp::Put { key: Vec::new(), value: vec![0; 128 * 1024] }],
            vec![LogOp::Delete { key: b"a\0".to_vec() }, LogOp::Put { key: b"\0".to_vec(), value: Vec::new() }],
            vec![LogOp::Rename { src: b"a".to_vec(), dst: b"a\0b".to_vec(), value: b"\0v\0".to_vec() }],
            Vec::new(),
        ];
        let (j, replay) = open(Arc::new(StdVfs), dir.path(), cfg(1 << 20, false));
        assert!(replay.is_empty());
        for (i, b) in batches.iter().enumerate() {
            let lsn = j.append(b).unwrap();
            assert_eq!(lsn, Lsn(i as u64 + 1));
            j.commit(lsn, false).unwrap();
        }
        drop(j);
        let (j, replay) = open(Arc::new(StdVfs), dir.path(), cfg(1 << 20, false));
        let expected: Vec<_> = batches.into_iter().enumerate().map(|(i, b)| (Lsn(i as u64 + 1), b)).collect();
        assert_eq!(replay, expected);
        assert_eq!(j.append(&put(0, 0)).unwrap(), Lsn(5), "LSNs continue after reopen");
    }

    #[test]
    fn replay_returns_only_records_past_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(1 << 20, false));
        for i in 0..10 {
            j.append(&put(0, i)).unwrap();
        }
        j.sync().unwrap();
        drop(j);
        let (j, replay) = Journal::open(Arc::new(StdVfs), dir.path(), Lsn(7), cfg(1 << 20, false)).unwrap();
        assert_eq!(replay.iter().map(|r| r.0).collect::<Vec<_>>(), vec![Lsn(8), Lsn(9), Lsn(10)]);
        assert_eq!(j.last_lsn(), Lsn(10));
    }

    #[test]
    fn concurrent_appenders_get_contiguous_lsns_in_file_order() {
        const THREADS: u64 = 8;
        const PER_THREAD: u64 = 300;
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(64 << 10, false));
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let j = &j;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let lsn = j.append(&put(t, i)).unwrap();
                        j.commit(lsn, i % 16 == 0).unwrap();
                        assert!(j.written_lsn.load(Ordering::Acquire) >= lsn.0);
                    }
                });
            }
        });
        assert_eq!(j.last_lsn(), Lsn(THREADS * PER_THREAD));
        assert!(segment_count(dir.path()) > 1, "small segments rotate");
        drop(j);
        let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(64 << 10, false));
        let lsns: Vec<u64> = replay.iter().map(|r| r.0 .0).collect();
        assert_eq!(lsns, (1..=THREADS * PER_THREAD).collect::<Vec<_>>());
        // Each thread's batches appear in the order that thread appended them.
        let mut next = vec![0u64; THREADS as usize];
        for (_, ops) in &replay {
            let LogOp::Put { key, .. } = &ops[0] else { panic!("only puts were appended") };
            let key = String::from_utf8(key.clone()).unwrap();
            let (t, i) = key.split_once('/').unwrap();
            let (t, i): (usize, u64) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t]);
            next[t] += 1;
        }
        assert!(next.iter().all(|&n| n == PER_THREAD));
    }

    /// Slow writes make committers queue: one write (and one fdatasync)
    /// must serve many of them.
    #[test]
    fn group_commit_shares_writes_and_syncs() {
        const THREADS: u64 = 8;
        const PER_THREAD: u64 = 40;
        let dir = tempfile::tempdir().unwrap();
        let vfs = Arc::new(FaultVfs::default());
        let (j, _) = open(vfs.clone(), dir.path(), cfg(16 << 20, true));
        let counters = vfs.counters.clone();
        let (writes0, syncs0) = (counters.writes(), counters.syncs());
        counters.write_delay_micros.store(2000, Ordering::SeqCst);
        // Every thread stages its record before any commits, so sharing does
        // not hang on how the scheduler interleaves them (a loaded machine
        // ran them one after another).
        let staged = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (j, staged) = (&j, &staged);
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let lsn = j.append(&put(t, i)).unwrap();
                        staged.wait();
                        j.commit(lsn, false).unwrap();
                        assert!(j.synced_lsn.load(Ordering::Acquire) >= lsn.0, "sync_on_commit syncs");
                    }
                });
            }
        });
        let commits = (THREADS * PER_THREAD) as usize;
        let (writes, syncs) = (counters.writes() - writes0, counters.syncs() - syncs0);
        assert!(writes * 2 < commits, "{writes} writes for {commits} commits");
        assert!(syncs * 2 < commits, "{syncs} syncs for {commits} commits");
    }

    #[test]
    fn ack_to_os_mode_writes_without_syncing() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = Arc::new(FaultVfs::default());
        let (j, _) = open(vfs.clone(), dir.path(), cfg(16 << 20, false));
        let syncs0 = vfs.counters.syncs();
        for i in 0..10 {
            let lsn = j.append(&put(0, i)).unwrap();
            j.commit(lsn, false).unwrap();
        }
        assert_eq!(vfs.counters.syncs(), syncs0);
        j.sync().unwrap();
        assert_eq!(vfs.counters.syncs(), syncs0 + 1);
        j.sync().unwrap();
        assert_eq!(vfs.counters.syncs(), syncs0 + 1, "nothing new to sync");
    }

    #[test]
    fn rotation_makes_the_new_segment_name_durable_before_acking_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = Arc::new(FaultVfs::default());
        let (j, _) = open(vfs.clone(), dir.path(), cfg(1024, false));
        let dir_syncs0 = vfs.counters.dir_syncs();
        for i in 0..40 {
            let lsn = j.append(&put(0, i)).unwrap();
            j.commit(lsn, false).unwrap();
        }
        assert!(segment_count(dir.path()) > 2);
        let before_sync = vfs.counters.dir_syncs();
        assert!(before_sync > dir_syncs0, "sealing a new segment syncs the directory");
        j.sync().unwrap();
        assert_eq!(vfs.counters.dir_syncs(), before_sync + 1, "the active segment's name is synced");
    }

    #[test]
    fn trim_removes_only_covered_sealed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(1024, false));
        for i in 0..100 {
            let lsn = j.append(&put(0, i)).unwrap();
            j.commit(lsn, false).unwrap();
        }
        let sealed: Vec<SealedSegment> = j.sealed.lock().iter().cloned().collect();
        assert!(sealed.len() >= 3);
        let on_disk = |p: &Path| p.exists();
        let bytes0 = j.bytes();
        assert_eq!(bytes0, logged_bytes_on_disk(&j, dir.path()));
        // Up to one LSN short of the second segment's end: only the first goes.
        j.trim(Lsn(sealed[1].last_lsn.0 - 1)).unwrap();
        assert!(!on_disk(&sealed[0].path) && on_disk(&sealed[1].path));
        assert_eq!(j.bytes(), bytes0 - sealed[0].bytes);
        j.trim(Lsn(u64::MAX)).unwrap();
        assert_eq!(segment_count(dir.path()), 1, "the active segment stays");
        assert!(j.sealed.lock().is_empty());
        let lsn = j.append(&put(1, 0)).unwrap();
        j.commit(lsn, true).unwrap();
        drop(j);
        let (j, replay) = Journal::open(Arc::new(StdVfs), dir.path(), Lsn(100), cfg(1024, false)).unwrap();
        assert_eq!(replay.iter().map(|r| r.0).collect::<Vec<_>>(), vec![Lsn(101)]);
        assert_eq!(j.last_lsn(), Lsn(101));
    }

    /// Trim runs beside writers (it takes only the sealed-segment list):
    /// whatever it removed, reopening past its bound replays the rest.
    #[test]
    fn trim_beside_writers_keeps_the_log_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(2048, false));
        let trimmed_upto = std::thread::scope(|s| {
            for t in 0..4 {
                let j = &j;
                s.spawn(move || {
                    for i in 0..200 {
                        let lsn = j.append(&put(t, i)).unwrap();
                        j.commit(lsn, i % 50 == 0).unwrap();
                    }
                });
            }
            let mut upto = Lsn(0);
            for _ in 0..50 {
                upto = Lsn(j.written_lsn.load(Ordering::Acquire) / 2).max(upto);
                j.trim(upto).unwrap();
                std::thread::yield_now();
            }
            upto
        });
        j.sync().unwrap();
        assert_eq!(j.bytes(), logged_bytes_on_disk(&j, dir.path()));
        drop(j);
        let (_, replay) = Journal::open(Arc::new(StdVfs), dir.path(), trimmed_upto, cfg(2048, false)).unwrap();
        let lsns: Vec<u64> = replay.iter().map(|r| r.0 .0).collect();
        assert_eq!(lsns, (trimmed_upto.0 + 1..=800).collect::<Vec<_>>());
    }

    #[test]
    fn failed_sync_poisons_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = Arc::new(FaultVfs::default());
        let (j, _) = open(vfs.clone(), dir.path(), cfg(16 << 20, false));
        let lsn = j.append(&put(0, 0)).unwrap();
        j.commit(lsn, false).unwrap();
        vfs.counters.fail_syncs.store(true, Ordering::SeqCst);
        assert!(matches!(j.commit(lsn, true), Err(Error::Io { .. })));
        vfs.counters.fail_syncs.store(false, Ordering::SeqCst);
        assert!(matches!(j.append(&put(0, 1)), Err(Error::Poisoned { .. })));
        assert!(matches!(j.commit(lsn, false), Err(Error::Poisoned { .. })));
        assert!(matches!(j.sync(), Err(Error::Poisoned { .. })));
    }

    #[test]
    fn failed_write_poisons_and_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = Arc::new(FaultVfs::default());
        let (j, _) = open(vfs.clone(), dir.path(), cfg(16 << 20, false));
        vfs.counters.fail_writes.store(true, Ordering::SeqCst);
        let lsn = j.append(&put(0, 0)).unwrap();
        match j.commit(lsn, false) {
            Err(Error::Io { path, .. }) => assert!(path.starts_with(dir.path())),
            other => panic!("expected Io, got {other:?}"),
        }
        vfs.counters.fail_writes.store(false, Ordering::SeqCst);
        assert!(matches!(j.append(&put(0, 1)), Err(Error::Poisoned { .. })));
    }

    #[test]
    fn staged_bytes_past_the_limit_are_written_by_append() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
        let big = vec![LogOp::Put { key: b"k".to_vec(), value: vec![7; 100 * 1024] }];
        let appends = STAGED_BYTES_FLUSH / (100 * 1024) + 1;
        for _ in 0..appends {
            j.append(&big).unwrap();
        }
        assert_eq!(j.written_lsn.load(Ordering::Acquire), appends as u64, "no commit was needed");
        assert!(j.staging.lock().buf.is_empty());
    }

    #[test]
    fn sealing_lets_trim_retire_all_history_and_keeps_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(StdVfs);
        {
            let (j, _) = open(vfs.clone(), dir.path(), cfg(1 << 20, false));
            for i in 0..10 {
                let lsn = j.append(&put(1, i)).unwrap();
                j.commit(lsn, true).unwrap();
            }
            for _ in 0..2 {
                j.seal_active().unwrap();
                j.trim(j.last_lsn()).unwrap();
                assert_eq!(segment_count(dir.path()), 1, "history gone, one segment left");
            }
        }
        let (j, replay) = Journal::open(vfs.clone(), dir.path(), Lsn(10), cfg(1 << 20, false)).unwrap();
        assert!(replay.is_empty());
        assert_eq!(j.append(&put(1, 10)).unwrap(), Lsn(11));
        j.seal_active().unwrap();
        j.trim(j.last_lsn()).unwrap();
        drop(j);
        let (j, _) = Journal::open(vfs, dir.path(), Lsn(11), cfg(1 << 20, false)).unwrap();
        assert_eq!(j.last_lsn(), Lsn(11));
    }

    #[test]
    fn misuse_is_an_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
        assert!(matches!(j.commit(Lsn(1), false), Err(Error::InvalidArgument(_))));
        let huge = vec![LogOp::Put { key: Vec::new(), value: vec![0; RECORD_PAYLOAD_BYTES_MAX] }];
        assert!(matches!(j.append(&huge), Err(Error::InvalidArgument(_))));
        assert_eq!(j.last_lsn(), Lsn(0), "a refused batch takes no LSN");
        let zero = JournalConfig { segment_bytes_max: 0, sync_on_commit: false };
        assert!(matches!(Journal::open(Arc::new(StdVfs), dir.path(), Lsn(0), zero), Err(Error::InvalidArgument(_))));
    }
}
