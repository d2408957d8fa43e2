//! The write-ahead log: logical records (`LogOp` batches) numbered by LSN,
//! appended to segment files, group-committed, recovered at open and trimmed
//! behind checkpoints.
//!
//! Invariants:
//! - LSNs are assigned in `append` under one lock, contiguous from 1; record
//!   order in the files is LSN order, and no LSN is ever missing or repeated.
//! - Only the committer holding the I/O lock writes; it writes the whole
//!   staged buffer, so one `write` serves every waiting committer. Only the
//!   committer holding the sync lock fdatasyncs, for everything written, so
//!   one `fdatasync` serves every waiting syncer.
//! - `written_lsn <= last_lsn` and `synced_lsn <= written_lsn`: everything
//!   up to `written_lsn` has been handed to the OS, everything up to
//!   `synced_lsn` is on stable storage (data and segment name).
//! - A sealed segment's name is durable before its successor's exists
//!   (created, or renamed from the flusher's spare); its data once its
//!   seal's fdatasync completes, which the flusher runs after the rotation
//!   (`sync_seals`), off the writer's path. Every sync runs the seals
//!   still pending first, and `synced_lsn` passes a segment's last LSN
//!   only once its seal is durable. So a power loss can tear the last
//!   segment, or a sealed one whose seal was pending — and then no record
//!   after the tear was acknowledged durable: open ends the log there and
//!   removes the segments after it (`reader`).
//! - A segment's header is written before any of its records and is
//!   durable once any of them is: the fdatasync that first covers one of
//!   its records covers the header (a segment created without a spare
//!   syncs its header at once). So a torn header in the last segment
//!   means none of its records was acknowledged durable.
//! - The flusher (`ahead`) only prepares: it never acknowledges, never
//!   names a segment, and the writer does every step itself when it has
//!   not run.
//! - After a failed write or sync the journal is poisoned for good: durability
//!   of what was staged is unknown, so every later append or commit fails.
//!   The engine poisons it too when a batch fails after its `append`, so
//!   that a staged record of a batch not applied whole is never written by
//!   a commit starting afterwards.
//! - A step that runs out of disk space (reserving space ahead of the log,
//!   writing, creating a segment) releases the store's space reserve and is
//!   retried once before it counts as failed.
//! - All file access goes through `Vfs`/`FileIo`; the journal never decides
//!   what a record means (replay belongs to the engine).

mod active;
mod ahead;
pub(crate) mod codec;
mod reader;
mod segment;
mod writer;

#[cfg(test)]
mod ahead_tests;
#[cfg(test)]
mod fault_vfs;
/// For tests that rewrite a store's log (`engine::capture_tests`).
#[cfg(test)]
pub(crate) use segment::{create_segment, list_segments};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::op::LogOp;
use crate::store::reserve::SpaceReserve;
use crate::store::vfs::Vfs;
use segment::SealedSegment;

pub(crate) use reader::read_records;

/// Records to replay after open: `(lsn, ops)` in LSN order, contiguous.
pub(crate) type Replay = Vec<(Lsn, Vec<LogOp>)>;

/// Default size at which the active segment is sealed and a new one begun.
pub(crate) const SEGMENT_BYTES_MAX_DEFAULT: u64 = 16 << 20;

/// How the journal writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct JournalConfig {
    /// The active segment is sealed before the first write that finds it
    /// holding at least this many bytes; a segment therefore exceeds it by at
    /// most one staged batch.
    pub segment_bytes_max: u64,
    /// Every `commit` fdatasyncs (as if called with `sync = true`).
    pub sync_on_commit: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT, sync_on_commit: false }
    }
}

/// The write-ahead log of one store. `Send + Sync`; share it by reference.
pub(crate) struct Journal {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    cfg: JournalConfig,
    /// LSN assignment and the records not yet taken by a writer.
    staging: Mutex<writer::Staging>,
    /// The active segment; held by the one thread writing (lock order:
    /// `sync_lock` before `io`, `io` before `staging` and before `sealed`).
    io: Mutex<writer::WriterIo>,
    /// Held by the one thread running an fdatasync for all waiting syncers.
    sync_lock: Mutex<()>,
    /// Sealed segments in LSN order (trim removes from the front).
    sealed: Mutex<VecDeque<SealedSegment>>,
    /// Sealed segments whose seal's fdatasync has not completed, oldest
    /// first (lock order: after `io`).
    pending_seals: Mutex<VecDeque<writer::PendingSeal>>,
    last_lsn: AtomicU64,
    written_lsn: AtomicU64,
    synced_lsn: AtomicU64,
    /// Bytes in all segment files.
    bytes: AtomicU64,
    /// Bytes of records handed to the OS since open (never decreases).
    bytes_written: AtomicU64,
    /// fdatasyncs of a segment since open.
    syncs: AtomicU64,
    poisoned: AtomicBool,
    poison_cause: Mutex<Option<String>>,
    /// Released when the disk is too full for the log to go on.
    reserve: Arc<SpaceReserve>,
    /// The flusher's work ahead of rotations (`ahead`).
    ahead: ahead::Ahead,
    /// The longest a rotation held the writer, in nanoseconds.
    rotation_nanos_max: AtomicU64,
}

impl Journal {
    /// Open the WAL in `dir` (created if missing): read every record, cut a
    /// torn tail of the last segment, and return the records with
    /// lsn > `after` (the checkpoint LSN) in LSN order, ready for replay.
    /// Appends continue after the last valid record.
    pub(crate) fn open(vfs: Arc<dyn Vfs>, dir: &Path, after: Lsn, cfg: JournalConfig) -> Result<(Journal, Replay)> {
        if cfg.segment_bytes_max == 0 {
            return Err(Error::InvalidArgument("WAL segment_bytes_max must be positive".into()));
        }
        let rec = reader::recover(&*vfs, dir, after)?;
        let active_first = rec.active.first_lsn;
        let bytes = rec.sealed.iter().map(|s| s.bytes).sum::<u64>() + rec.active.len;
        let last = rec.last_lsn.0;
        let journal = Journal {
            vfs,
            dir: dir.to_path_buf(),
            cfg,
            staging: Mutex::new(writer::Staging::new(rec.last_lsn.next())),
            io: Mutex::new(writer::WriterIo::new(rec.active, rec.synced_claimed, !rec.name_durable)),
            sync_lock: Mutex::new(()),
            sealed: Mutex::new(rec.sealed),
            pending_seals: Mutex::new(VecDeque::new()),
            last_lsn: AtomicU64::new(last),
            written_lsn: AtomicU64::new(last),
            // `recover` made every record it kept durable.
            synced_lsn: AtomicU64::new(last),
            bytes: AtomicU64::new(bytes),
            bytes_written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            reserve: Arc::new(SpaceReserve::none()),
            ahead: ahead::Ahead::new(),
            rotation_nanos_max: AtomicU64::new(0),
        };
        journal.ahead.reservable.store(active_first.0, Ordering::Release);
        Ok((journal, rec.records))
    }

    /// Release `reserve` and retry once when the log runs out of disk space
    /// (see `store::reserve`); without one, a full disk fails at once.
    pub(crate) fn with_space_reserve(mut self, reserve: Arc<SpaceReserve>) -> Journal {
        self.reserve = reserve;
        self
    }

    /// LSN of the last record appended (the checkpoint LSN before any).
    pub(crate) fn last_lsn(&self) -> Lsn {
        Lsn(self.last_lsn.load(Ordering::Acquire))
    }

    /// Bytes currently held in segment files.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes of records written since open: what the log cost in writes,
    /// whatever trimming gave back since.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// fdatasyncs of a segment since open (one per group of committers).
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The longest a segment rotation held the writer that ran it, in
    /// nanoseconds of wall time.
    pub(crate) fn rotation_nanos_max(&self) -> u64 {
        self.rotation_nanos_max.load(Ordering::Relaxed)
    }

    /// Delete whole sealed segments whose records are all <= `upto` (a
    /// checkpoint covers them). Never touches the active segment. A failed
    /// removal is returned and does not poison: durability is unaffected.
    pub(crate) fn trim(&self, upto: Lsn) -> Result<()> {
        let mut sealed = self.sealed.lock();
        while let Some(seg) = sealed.front() {
            if seg.last_lsn > upto {
                break;
            }
            // No directory sync: if a crash undoes this removal, open skips
            // the segment's records (all <= the checkpoint) and tolerates
            // the gap they leave.
            match self.vfs.remove(&seg.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("remove", &seg.path, e)),
                _ => {}
            }
            self.bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
            sealed.pop_front();
        }
        Ok(())
    }

    fn check_poison(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let cause = self.poison_cause.lock().clone().unwrap_or_default();
        Err(Error::Poisoned { cause })
    }

    /// Refuse every later append, commit, sync and seal: `err` left
    /// durability unknown, or (from the engine) a staged record belongs to
    /// a batch that was not applied whole and must not be written.
    pub(crate) fn poison(&self, err: &Error) {
        let mut cause = self.poison_cause.lock();
        if cause.is_none() {
            *cause = Some(err.to_string());
        }
        self.poisoned.store(true, Ordering::Release);
        log::error!("WAL poisoned: {err}");
    }
}
