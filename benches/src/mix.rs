//! The metadata mix: 70% get, 10% create, 10% delete, 5% list a small
//! directory, 5% rename across directories. Scripts are generated from a model
//! of the live keys before the clock starts, so both engines execute exactly
//! the same operations and every result can be checked.

use std::hint::black_box;

use crate::cells::{record, Better, Cell};
use crate::engines::{Kv, Res};
use crate::harness::{parallel, profiled, Rates};
use crate::Opts;
use crate::workload::{Dataset, Rng};

/// Tries to find a non-empty owned directory before giving up on an op.
const PICK_TRIES_MAX: usize = 16;

enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    List(Vec<u8>, usize),
    Rename(Vec<u8>, Vec<u8>),
}

/// The live keys of every directory, as both trees hold them.
pub struct Model {
    live: Vec<Vec<Vec<u8>>>,
    prefixes: Vec<Vec<u8>>,
    big: Vec<bool>,
}

impl Model {
    pub fn new(ds: &Dataset) -> Self {
        let live = ds.dirs.iter().map(|d| ds.keys[d.first..d.first + d.len].to_vec()).collect();
        let prefixes = ds.dirs.iter().map(|d| d.prefix.clone()).collect();
        let big = ds.dirs.iter().map(|d| d.big).collect();
        Model { live, prefixes, big }
    }

    /// A random owned directory with at least one live key.
    fn pick_dir(&self, rng: &mut Rng, owned: &[usize]) -> Option<usize> {
        (0..PICK_TRIES_MAX).map(|_| owned[rng.below(owned.len())]).find(|&d| !self.live[d].is_empty())
    }

    fn take_key(&mut self, rng: &mut Rng, d: usize) -> Vec<u8> {
        let i = rng.below(self.live[d].len());
        self.live[d].swap_remove(i)
    }

    fn new_key(&self, d: usize, tag: &str, id: &str) -> Vec<u8> {
        let mut k = self.prefixes[d].clone();
        k.extend_from_slice(tag.as_bytes());
        k.extend_from_slice(id.as_bytes());
        k
    }

    fn op(&mut self, rng: &mut Rng, ds: &Dataset, owned: &[usize], id: &str) -> Option<Op> {
        let roll = rng.below(100);
        let d = self.pick_dir(rng, owned)?;
        Some(match roll {
            0..=69 => Op::Get(self.live[d][rng.below(self.live[d].len())].clone()),
            70..=79 => {
                let k = self.new_key(d, "new-", id);
                self.live[d].push(k.clone());
                Op::Put(k, ds.values[rng.below(ds.values.len())].clone())
            }
            80..=89 => Op::Delete(self.take_key(rng, d)),
            90..=94 if !self.big[d] => Op::List(self.prefixes[d].clone(), self.live[d].len()),
            90..=94 => return None,
            _ => {
                let src = self.take_key(rng, d);
                let to = owned[rng.below(owned.len())];
                let dst = self.new_key(to, "mv-", id);
                self.live[to].push(dst.clone());
                Op::Rename(src, dst)
            }
        })
    }

    /// One script per thread; thread t owns the directories d with d % threads == t,
    /// so the scripts commute and the model stays exact however they interleave.
    fn scripts(&mut self, ds: &Dataset, threads: usize, rep: usize, ops_total: usize) -> Vec<Vec<Op>> {
        (0..threads)
            .map(|t| {
                let owned: Vec<usize> = (t..self.live.len()).step_by(threads).collect();
                let mut rng = Rng::new(0x006d_6978 ^ ((threads as u64) << 32) ^ ((rep as u64) << 16) ^ t as u64);
                let mut ops = Vec::with_capacity(ops_total / threads);
                let mut i = 0usize;
                while ops.len() < ops_total / threads {
                    i += 1;
                    let id = format!("{threads}-{rep}-{t}-{i}");
                    ops.extend(self.op(&mut rng, ds, &owned, &id));
                }
                ops
            })
            .collect()
    }
}

fn execute<K: Kv>(t: &K, script: &[Op]) -> Res<u64> {
    let mut bytes = 0usize;
    for op in script {
        match op {
            Op::Get(k) => match t.get(k)? {
                Some(v) => bytes += v.len(),
                None => return Err(format!("mix: live key {k:?} not found")),
            },
            Op::Put(k, v) => t.put(k, v)?,
            Op::Delete(k) => {
                if !t.delete(k)? {
                    return Err(format!("mix: delete of live key {k:?} found nothing"));
                }
            }
            Op::List(p, n) => {
                let (got, b) = t.list_dir(p)?;
                if got != *n {
                    return Err(format!("mix: list {p:?} gave {got} entries, expected {n}"));
                }
                bytes += b;
            }
            Op::Rename(s, d) => t.rename(s, d)?,
        }
    }
    black_box(bytes);
    Ok(script.len() as u64)
}

/// Both trees must hold exactly the model's keys when this starts.
pub fn run<A: Kv, B: Kv>(ds: &Dataset, model: &mut Model, a: &A, b: &B, opts: &Opts, out: &mut Vec<Cell>) {
    let (reps, ops_total) = (opts.reps, opts.mix_ops);
    for threads in [1, 2].into_iter().filter(|t| opts.wants(&format!("mix{t}"))) {
        let tag = format!("mix{threads}");
        let (mut c, mut h) = (Ok(Rates::default()), Ok(Rates::default()));
        for rep in 0..reps {
            let scripts = model.scripts(ds, threads, rep, ops_total);
            let run_a = || parallel(threads, &scripts, |_, s| s.iter().map(|s| execute(a, s)).sum());
            record(&mut c, || profiled(&tag, "core", run_a));
            let run_b = || parallel(threads, &scripts, |_, s| s.iter().map(|s| execute(b, s)).sum());
            record(&mut h, || profiled(&tag, "holt", run_b));
        }
        out.push(Cell {
            name: "metadata mix (70 get/10 create/10 delete/5 list/5 rename)".into(),
            threads,
            unit: "ops/s",
            better: Better::Higher,
            core: c,
            holt: h,
        });
    }
}
