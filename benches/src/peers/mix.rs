//! The peer metadata mix: 45% get, 10% create, 10% delete, 10% list a
//! small directory, 5% rename across directories, 20% rollup listing of a
//! top directory whose children are directories. Scripts come from a
//! model of the live keys before the clock starts, so every engine runs
//! the same operations and every answer is checked.

use std::hint::black_box;

use super::data::ROLLUP_SUBDIRS;
use super::store::{Res, Store};
use crate::harness::parallel;
use crate::workload::{Dataset, Rng};

/// Tries to find an owned directory with a live key before skipping an op.
const PICK_TRIES_MAX: usize = 16;
const MIX_SEED: u64 = 0x7065_6572;

enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    List(Vec<u8>, usize),
    Rename(Vec<u8>, Vec<u8>),
}

/// The live keys of every data set directory, as the store holds them.
pub struct Model {
    live: Vec<Vec<Vec<u8>>>,
    prefixes: Vec<Vec<u8>>,
    big: Vec<bool>,
    tops: Vec<Vec<u8>>,
}

impl Model {
    pub fn new(ds: &Dataset, tops: &[Vec<u8>]) -> Self {
        Model {
            live: ds.dirs.iter().map(|d| ds.keys[d.first..d.first + d.len].to_vec()).collect(),
            prefixes: ds.dirs.iter().map(|d| d.prefix.clone()).collect(),
            big: ds.dirs.iter().map(|d| d.big).collect(),
            tops: tops.to_vec(),
        }
    }

    fn pick_dir(&self, rng: &mut Rng, owned: &[usize]) -> Option<usize> {
        (0..PICK_TRIES_MAX).map(|_| owned[rng.below(owned.len())]).find(|&d| !self.live[d].is_empty())
    }

    fn take_key(&mut self, rng: &mut Rng, d: usize) -> Vec<u8> {
        let i = rng.below(self.live[d].len());
        self.live[d].swap_remove(i)
    }

    fn new_key(&mut self, d: usize, tag: &str, id: &str) -> Vec<u8> {
        let mut k = self.prefixes[d].clone();
        k.extend_from_slice(tag.as_bytes());
        k.extend_from_slice(id.as_bytes());
        self.live[d].push(k.clone());
        k
    }

    fn op(&mut self, rng: &mut Rng, ds: &Dataset, owned: &[usize], id: &str) -> Option<Op> {
        let roll = rng.below(100);
        let d = self.pick_dir(rng, owned)?;
        Some(match roll {
            0..=44 => Op::Get(self.live[d][rng.below(self.live[d].len())].clone()),
            45..=54 => Op::Put(self.new_key(d, "mixnew-", id), ds.values[rng.below(ds.values.len())].clone()),
            55..=64 => Op::Delete(self.take_key(rng, d)),
            65..=74 if self.big[d] => return None,
            65..=74 => Op::List(self.prefixes[d].clone(), self.live[d].len()),
            75..=79 => {
                let src = self.take_key(rng, d);
                let to = owned[rng.below(owned.len())];
                Op::Rename(src, self.new_key(to, "mixmv-", id))
            }
            _ => Op::List(self.tops[rng.below(self.tops.len())].clone(), ROLLUP_SUBDIRS),
        })
    }

    /// One script per thread; thread t owns the directories d with
    /// d % threads == t, so the scripts commute however they interleave.
    fn scripts(&mut self, ds: &Dataset, threads: usize, ops_total: usize) -> Vec<Vec<Op>> {
        (0..threads)
            .map(|t| {
                let owned: Vec<usize> = (t..self.live.len()).step_by(threads).collect();
                let mut rng = Rng::new(MIX_SEED ^ ((threads as u64) << 32) ^ t as u64);
                let mut ops = Vec::with_capacity(ops_total / threads);
                let mut i = 0usize;
                while ops.len() < ops_total / threads {
                    i += 1;
                    ops.extend(self.op(&mut rng, ds, &owned, &format!("{threads}-{t}-{i}")));
                }
                ops
            })
            .collect()
    }
}

fn execute(s: &dyn Store, script: &[Op]) -> Res<u64> {
    let mut bytes = 0usize;
    for op in script {
        match op {
            Op::Get(k) => bytes += s.get(k)?.ok_or_else(|| format!("mix: live key {k:?} not found"))?.len(),
            Op::Put(k, v) => s.put(k, v)?,
            Op::Delete(k) => s.delete(k)?,
            Op::List(p, n) => {
                let (got, b) = s.list(p)?;
                if got != *n {
                    return Err(format!("mix: list {p:?} gave {got} entries, expected {n}"));
                }
                bytes += b;
            }
            Op::Rename(src, dst) => s.rename(src, dst)?,
        }
    }
    black_box(bytes);
    Ok(script.len() as u64)
}

/// Ops per second of `ops_total` mix ops over `threads` threads. The store
/// must hold exactly the model's keys (and the rollup trees) on entry.
pub fn run(s: &dyn Store, ds: &Dataset, model: &mut Model, threads: usize, ops_total: usize) -> Res<f64> {
    let scripts = model.scripts(ds, threads, ops_total);
    parallel(threads, &scripts, |_, mine| mine.iter().map(|script| execute(s, script)).sum())
}
