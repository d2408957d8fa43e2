//! The peer metadata mix: 45% get, 10% create, 10% delete, 10% list a
//! small directory, 5% rename across directories, 20% rollup listing of a
//! top directory whose children are directories. Scripts come from a
//! model of the live keys before the clock starts, so every engine runs
//! the same operations and every answer is checked.

use std::hint::black_box;

use super::data::ROLLUP_SUBDIRS;
use super::store::{Res, Store};
use crate::harness::parallel;
use crate::mix::{Live, Op};
use crate::workload::{Dataset, Rng};

const MIX_SEED: u64 = 0x7065_6572;

/// The live keys of every data set directory, and the rollup tops.
pub struct Model {
    live: Live,
    tops: Vec<Vec<u8>>,
}

impl Model {
    pub fn new(ds: &Dataset, tops: &[Vec<u8>]) -> Self {
        Model { live: Live::new(ds), tops: tops.to_vec() }
    }

    fn scripts(&mut self, ds: &Dataset, threads: usize, ops_total: usize) -> Vec<Vec<Op>> {
        let tops = &self.tops;
        self.live.scripts(
            threads,
            ops_total,
            |t| MIX_SEED ^ ((threads as u64) << 32) ^ t as u64,
            |t, i| format!("{threads}-{t}-{i}"),
            |live, rng, owned, id| op(live, tops, rng, ds, owned, id),
        )
    }
}

fn op(live: &mut Live, tops: &[Vec<u8>], rng: &mut Rng, ds: &Dataset, owned: &[usize], id: &str) -> Option<Op> {
    let roll = rng.below(100);
    let d = live.pick_dir(rng, owned)?;
    match roll {
        0..=44 => Some(live.get(rng, d)),
        45..=54 => Some(live.create(rng, ds, d, "mixnew-", id)),
        55..=64 => Some(live.delete(rng, d)),
        65..=74 => live.list(d),
        75..=79 => Some(live.rename(rng, d, owned, "mixmv-", id)),
        _ => Some(Op::List(tops[rng.below(tops.len())].clone(), ROLLUP_SUBDIRS)),
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
