//! The engine behind `Tree`: owns the buffer pool and the journal sink, and
//! runs every mutation through the batch protocol (`batch`).

mod batch;
mod config;
mod sink;
mod write;

use std::path::PathBuf;

pub(crate) use config::Config;

use self::batch::{footprint, latch, resolve, Resolution};
use self::sink::{MemorySink, Sink};
use crate::api::TreeStats;
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::ids::FrameId;
use crate::layout::node::{Inner, FLAG_ENTRY};
use crate::layout::space::new_node;
use crate::layout::{FrameBuf, NIL};
use crate::op::{Guard, Op};
use crate::store::pool::Pool;
use crate::tree::descend::lookup;
use crate::tree::scan::{scan, Scan};
use crate::tree::spill::FRAME_DATA_BYTES;
use crate::tree::{Owned, ROOT_FRAME, ROOT_SLOT};
use crate::Record;

pub(crate) enum Applied {
    Done { prev: Vec<Option<Vec<u8>>> },
    GuardFailed,
}

pub(crate) struct Engine {
    cfg: Config,
    pool: Pool,
    sink: Box<dyn Sink>,
    keys_added: Counter,
    keys_removed: Counter,
    maintenance: maintenance::Cursor,
}

mod maintenance;

/// Write the root node into a freshly created root frame.
fn format_root(b: &FrameBuf) {
    let root = Inner { flags: FLAG_ENTRY, prefix: Vec::new(), end: NIL, children: Vec::new() };
    let slot = new_node(b, &root.encode());
    debug_assert_eq!(slot, ROOT_SLOT);
}

impl Engine {
    pub fn open(cfg: Config) -> Result<Self> {
        if !cfg.memory {
            return Err(Error::InvalidArgument(format!(
                "persistent mode is not available yet ({}); use TreeBuilder::memory()",
                cfg.dir.display()
            )));
        }
        let pool = Pool::new(cfg.pool_frames_max, None);
        let (id, cell) = pool.create();
        assert_eq!(id, ROOT_FRAME, "the first frame of a new tree is the root frame");
        format_root(cell.buf().expect("new frame is resident"));
        cell.latch.unlock();
        Ok(Engine {
            cfg,
            pool,
            sink: Box::new(MemorySink::new()),
            keys_added: Counter::default(),
            keys_removed: Counter::default(),
            maintenance: maintenance::Cursor::default(),
        })
    }

    pub fn dir(&self) -> &PathBuf {
        &self.cfg.dir
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        lookup(&self.pool, &Owned::default(), key)
    }

    pub fn apply(&self, guards: &[Guard], ops: Vec<Op>, want_prev: bool) -> Result<Applied> {
        let pool = &self.pool;
        loop {
            let Some(fp) = footprint(pool, guards, &ops)? else {
                pool.counters.restarts.add(1);
                continue;
            };
            let mut owned = Owned::default();
            if !latch(pool, &fp, &mut owned) {
                pool.counters.restarts.add(1);
                continue;
            }
            let resolved = match resolve(pool, &owned, guards, ops, want_prev) {
                Ok(Resolution::Ready(r)) => r,
                Ok(Resolution::GuardFailed) => {
                    owned.release_clean();
                    return Ok(Applied::GuardFailed);
                }
                Err(e) => {
                    owned.release_clean();
                    return Err(e);
                }
            };
            if resolved.log.is_empty() {
                owned.release_clean();
                return Ok(Applied::Done { prev: resolved.prev });
            }
            let lsn = match self.sink.append(&resolved.log) {
                Ok(lsn) => lsn,
                Err(e) => {
                    owned.release_clean();
                    return Err(e);
                }
            };
            let delta = write::apply_ops(pool, &mut owned, &resolved.log, lsn)?;
            owned.release_dirty();
            self.count_keys(delta);
            self.sink.commit(lsn)?;
            return Ok(Applied::Done { prev: resolved.prev });
        }
    }

    fn count_keys(&self, delta: i64) {
        if delta > 0 {
            self.keys_added.add(delta as u64);
        } else if delta < 0 {
            self.keys_removed.add(delta.unsigned_abs());
        }
    }

    pub fn scan(&self, lower: &[u8], prefix: &[u8], limit: usize, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let r = scan(&self.pool, &Owned::default(), &Scan { lower, prefix, limit })?;
        out.extend(r.entries);
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.sink.sync()
    }

    pub fn checkpoint(&self) -> Result<()> {
        self.sink.sync()
    }

    pub fn compact(&self) -> Result<()> {
        maintenance::step(&self.pool, &self.maintenance);
        Ok(())
    }

    pub fn stats(&self) -> Result<TreeStats> {
        let c = &self.pool.counters;
        let mut s = TreeStats {
            keys: self.keys_added.get().saturating_sub(self.keys_removed.get()),
            frames_cached: self.pool.resident_count() as u64,
            spills: c.spills.get(),
            merges: c.merges.get(),
            compactions: c.compactions.get(),
            cache_hits: c.hits.get(),
            cache_misses: c.misses.get(),
            evictions: c.evictions.get(),
            optimistic_restarts: c.restarts.get(),
            ..TreeStats::default()
        };
        for id in self.pool.live_ids() {
            self.add_frame_stats(id, &mut s);
        }
        let capacity = s.frames as f64 * FRAME_DATA_BYTES as f64;
        s.fill_factor = if capacity > 0.0 { s.live_bytes as f64 / capacity } else { 0.0 };
        Ok(s)
    }

    fn add_frame_stats(&self, id: FrameId, s: &mut TreeStats) {
        let Some(cell) = self.pool.cell(id) else { return };
        s.frames += 1;
        s.frames_dirty += u64::from(cell.is_dirty());
        // Header counters are read optimistically; a torn value only skews
        // one report, so no retry.
        if let Some(b) = cell.buf() {
            s.live_bytes += b.live_bytes() as u64;
            s.dead_bytes += b.dead_bytes() as u64;
            s.slots += b.live_slots() as u64;
        }
    }

    pub fn check_invariants(&self) -> Result<()> {
        let census = crate::tree::check::check_tree(&self.pool)?;
        let expect = self.keys_added.get().saturating_sub(self.keys_removed.get());
        if census.keys != expect {
            return Err(Error::corrupted(
                "frames",
                0,
                format!("tree holds {} keys but counters say {expect}", census.keys),
            ));
        }
        Ok(())
    }
}
