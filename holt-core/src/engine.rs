//! Provisional engine: an ordered map behind one lock, so the API and its
//! callers can be built while the frame ART lands. Replaced wholesale by the
//! frame-based walker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::RwLock;

use crate::api::TreeStats;
use crate::error::{Error, Result};
use crate::op::{Guard, Op};
use crate::Record;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub dir: PathBuf,
    pub memory: bool,
    pub pool_frames_max: usize,
    pub wal_sync_on_commit: bool,
    pub checkpoint_interval: Option<Duration>,
    pub checkpoint_dirty_frames: usize,
    pub wal_bytes_target: u64,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Config {
            dir,
            memory: false,
            pool_frames_max: 1024,
            wal_sync_on_commit: false,
            checkpoint_interval: Some(Duration::from_secs(5)),
            checkpoint_dirty_frames: 256,
            wal_bytes_target: 64 << 20,
        }
    }
}

pub(crate) enum Applied {
    Done { prev: Vec<Option<Vec<u8>>> },
    GuardFailed,
}

pub(crate) struct Engine {
    cfg: Config,
    map: RwLock<(BTreeMap<Vec<u8>, Record>, u64)>,
}

impl Engine {
    pub fn open(cfg: Config) -> Result<Self> {
        if !cfg.memory {
            return Err(Error::InvalidArgument(
                "persistent mode is not available yet; use TreeBuilder::memory()".into(),
            ));
        }
        Ok(Engine { cfg, map: RwLock::new((BTreeMap::new(), 0)) })
    }

    pub fn dir(&self) -> &PathBuf {
        &self.cfg.dir
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.map.read().0.get(key).cloned())
    }

    pub fn apply(&self, guards: &[Guard], ops: Vec<Op>, want_prev: bool) -> Result<Applied> {
        let mut g = self.map.write();
        let (map, seq) = &mut *g;
        for guard in guards {
            let ok = match guard {
                Guard::Absent(k) => !map.contains_key(k),
                Guard::Exists(k) => map.contains_key(k),
                Guard::PrefixEmpty(p) => {
                    map.range(p.clone()..).next().is_none_or(|(k, _)| !k.starts_with(p))
                }
                Guard::Version(k, v) => map.get(k).is_some_and(|r| r.version == *v),
            };
            if !ok {
                return Ok(Applied::GuardFailed);
            }
        }
        let mut work = map.clone();
        let mut prev = Vec::new();
        for op in ops {
            *seq += 1;
            let version = *seq;
            match op {
                Op::Put { key, value } => {
                    prev.push(work.insert(key, Record { value, version }).map(|r| r.value));
                }
                Op::Delete { key } => prev.push(work.remove(&key).map(|r| r.value)),
                Op::Rename { src, dst, force } => {
                    let Some(r) = work.get(&src).cloned() else { return Err(Error::NotFound) };
                    if src != dst {
                        if !force && work.contains_key(&dst) {
                            return Err(Error::DstExists);
                        }
                        work.remove(&src);
                        work.insert(dst, Record { value: r.value, version });
                    }
                    prev.push(None);
                }
            }
        }
        let _ = want_prev;
        *map = work;
        Ok(Applied::Done { prev })
    }

    pub fn scan(
        &self,
        lower: &[u8],
        prefix: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let g = self.map.read();
        for (k, r) in g.0.range(lower.to_vec()..) {
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((k.clone(), r.value.clone()));
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        Ok(())
    }

    pub fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    pub fn compact(&self) -> Result<()> {
        Ok(())
    }

    pub fn stats(&self) -> Result<TreeStats> {
        Ok(TreeStats { keys: self.map.read().0.len() as u64, ..Default::default() })
    }

    pub fn check_invariants(&self) -> Result<()> {
        Ok(())
    }
}
