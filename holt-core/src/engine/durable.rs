//! Persistent mode: opening the store (lock, frame store, journal), replaying
//! the WAL past the last checkpoint, and the journal sink.
//!
//! Files in the store directory: `LOCK`, the frame file and manifest
//! (`store::frame_store`), WAL segments under `wal/`, the space reserve
//! `RESERVE` (`store::reserve`), and the miss filter saved at the last
//! clean close, `FILTER` (`store::filter_file`).

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::sink::Sink;
use crate::error::{Error, Result};
use crate::ids::{FrameId, Lsn};
use super::Config;
use crate::journal::{Journal, JournalConfig, Replay, SEGMENT_BYTES_MAX_DEFAULT};
use crate::op::LogOp;
use crate::store::frame_file::{Known, PageCrcs};
use crate::store::frame_store::FrameStore;
use crate::store::image_buf::{ImageBuf, Via};
use crate::store::lock::StoreLock;
use crate::store::manifest::{ManifestMeta, MANIFEST_NAME};
use crate::store::pool::{FrameSource, Loaded, Over, Pool};
use crate::store::reserve::SpaceReserve;
use crate::store::vfs::Vfs;
use crate::tree::ROOT_FRAME;

/// Subdirectory of the store holding WAL segments.
pub(crate) const WAL_DIR: &str = "wal";

/// Everything persistent mode adds to an engine.
pub(crate) struct Durable {
    pub store: Arc<FrameStore>,
    pub journal: Arc<Journal>,
    /// Disk space released when the store's own writes find the disk full.
    pub reserve: Arc<SpaceReserve>,
    /// One checkpoint at a time.
    pub checkpoint_serial: Mutex<()>,
    /// Callers waiting for `checkpoint_serial` to run a checkpoint they
    /// need (`serial_for_asked`).
    asked: AtomicUsize,
    /// Held for the engine's life; dropping it lets another opener in.
    pub _lock: StoreLock,
    /// `Vfs::kind` of the files under this store.
    pub file_io: &'static str,
    /// The file system the store lives on, for the engine's own files
    /// beside the frame store and the WAL (`FILTER`).
    pub vfs: Arc<dyn Vfs>,
}

impl Durable {
    /// Take `checkpoint_serial` for a checkpoint a caller needs (asked
    /// for, a clean close, a snapshot's). While it waits, a checkpoint
    /// nobody waits for stops before its next image (`asked_waits`): the
    /// caller's own cut covers every frame that one would still write, and
    /// after a write burst, when a bound has pressed one, that is most of
    /// them.
    pub fn serial_for_asked(&self) -> MutexGuard<'_, ()> {
        self.asked.fetch_add(1, Ordering::AcqRel);
        let serial = self.checkpoint_serial.lock();
        self.asked.fetch_sub(1, Ordering::AcqRel);
        serial
    }

    /// Whether a caller waits in `serial_for_asked`.
    pub fn asked_waits(&self) -> bool {
        self.asked.load(Ordering::Acquire) > 0
    }
}

/// What `open` found on disk.
pub(crate) struct Opened {
    pub pool: Pool,
    pub durable: Durable,
    pub replay: Replay,
    pub keys: u64,
    /// True when the store held no checkpoint: the caller formats a root.
    pub fresh: bool,
}

struct StoreSource(Arc<FrameStore>);

impl FrameSource for StoreSource {
    fn read_frame(&self, id: FrameId, into: &mut ImageBuf, via: Via) -> Result<Loaded> {
        let (bytes, r) = self.0.read_frame_ref_into(id, into, via)?;
        let over = r.base.map_or(Over { slot: r.slot, pages: 0 }, |b| Over { slot: b.slot, pages: b.pages });
        Ok(Loaded { bytes, base: Some(over) })
    }

    fn paged(&self) -> bool {
        self.0.paged()
    }

    fn delta_base(&self, id: FrameId) -> Option<u32> {
        self.0.delta_base(id)
    }

    fn read_head(&self, id: FrameId, into: &mut ImageBuf, via: Via) -> Result<PageCrcs> {
        self.0.read_frame_head(id, into, via)
    }

    fn read_pages(&self, id: FrameId, pages: Range<usize>, known: Known<'_>, into: &mut ImageBuf, via: Via) -> Result<()> {
        self.0.read_frame_pages(id, pages, known, into, via)
    }
}

/// The key count kept in the manifest's user bytes.
pub(crate) fn encode_user(keys: u64) -> Vec<u8> {
    keys.to_le_bytes().to_vec()
}

pub(crate) fn decode_user(meta: &ManifestMeta, dir: &Path) -> Result<u64> {
    let bytes: [u8; 8] = meta.user.as_slice().try_into().map_err(|_| {
        Error::corrupted(dir.join(MANIFEST_NAME), 0, format!("checkpoint metadata of {} bytes", meta.user.len()))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// WAL segment size for a WAL size target: only whole sealed segments can
/// be trimmed, so a segment must be well below the target.
fn segment_bytes_for(wal_bytes_target: u64) -> u64 {
    (wal_bytes_target / 4).clamp(1 << 20, SEGMENT_BYTES_MAX_DEFAULT)
}

/// The published checkpoint of a frame store, its frames registered in a
/// new pool that loads them on demand.
pub(crate) struct Checkpoint {
    pub pool: Pool,
    /// Every record up to this LSN is in the frames; replay starts after it.
    pub lsn: Lsn,
    pub keys: u64,
    /// True when the store held no checkpoint: the caller formats a root.
    pub fresh: bool,
}

pub(crate) fn load_checkpoint(
    store: &Arc<FrameStore>,
    meta: Option<&ManifestMeta>,
    dir: &Path,
    cfg: &Config,
) -> Result<Checkpoint> {
    let pool = Pool::new(cfg.pool_frames_max, Some(Arc::new(StoreSource(store.clone())))).with_direct_reads(cfg.direct_frame_reads);
    let Some(m) = meta else { return Ok(Checkpoint { pool, lsn: Lsn(0), keys: 0, fresh: true }) };
    if m.root != ROOT_FRAME || !store.contains(ROOT_FRAME) {
        let what = format!("checkpoint names root frame {} which is not stored", m.root.0);
        return Err(Error::corrupted(dir.join(MANIFEST_NAME), 0, what));
    }
    for id in store.frame_ids() {
        pool.register_stored(id);
    }
    pool.reserve_ids_through(FrameId(m.next_frame_id.saturating_sub(1)));
    Ok(Checkpoint { pool, lsn: m.checkpoint_lsn, keys: decode_user(m, dir)?, fresh: false })
}

pub(crate) fn open(vfs: Arc<dyn Vfs>, dir: &Path, lock: StoreLock, cfg: &Config) -> Result<Opened> {
    let (store, meta) = FrameStore::open(vfs.clone(), dir)?;
    let store = Arc::new(store);
    let Checkpoint { pool, lsn: after, keys, fresh } = load_checkpoint(&store, meta.as_ref(), dir, cfg)?;
    let jcfg = JournalConfig {
        sync_on_commit: cfg.wal_sync_on_commit,
        segment_bytes_max: segment_bytes_for(cfg.wal_bytes_target),
    };
    let file_io = vfs.kind();
    let reserve = Arc::new(SpaceReserve::new(vfs.clone(), dir, cfg.space_reserve_bytes));
    let (journal, replay) = Journal::open(vfs.clone(), &dir.join(WAL_DIR), after, jcfg)?;
    let journal = Arc::new(journal.with_space_reserve(reserve.clone()));
    if cfg.wal_flusher {
        journal.start_flusher();
    }
    reserve.establish_at_open();
    let durable = Durable { store, journal, reserve, checkpoint_serial: Mutex::new(()), asked: AtomicUsize::new(0), _lock: lock, file_io, vfs };
    Ok(Opened { pool, durable, replay, keys, fresh })
}

/// Persistent mode: each batch becomes one WAL record.
pub(crate) struct JournalSink {
    pub journal: Arc<Journal>,
}

impl Sink for JournalSink {
    fn append(&self, ops: &[LogOp]) -> Result<Lsn> {
        self.journal.append(ops)
    }

    fn commit(&self, lsn: Lsn) -> Result<()> {
        self.journal.commit(lsn, false)
    }

    fn sync(&self) -> Result<()> {
        self.journal.sync()
    }

    fn abandon(&self, cause: &Error) {
        self.journal.poison(cause);
    }
}
