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

/// One operation of a mix script (this one's and the peer mix's).
pub(crate) enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    List(Vec<u8>, usize),
    Rename(Vec<u8>, Vec<u8>),
}

/// The live keys of every data set directory, as the stores hold them;
/// each method draws from `rng` in a fixed order, so a seed fixes a script.
pub(crate) struct Live {
    live: Vec<Vec<Vec<u8>>>,
    prefixes: Vec<Vec<u8>>,
    big: Vec<bool>,
}

impl Live {
    pub(crate) fn new(ds: &Dataset) -> Self {
        Live {
            live: ds.dirs.iter().map(|d| ds.keys[d.first..d.first + d.len].to_vec()).collect(),
            prefixes: ds.dirs.iter().map(|d| d.prefix.clone()).collect(),
            big: ds.dirs.iter().map(|d| d.big).collect(),
        }
    }

    /// A random owned directory with at least one live key.
    pub(crate) fn pick_dir(&self, rng: &mut Rng, owned: &[usize]) -> Option<usize> {
        (0..PICK_TRIES_MAX).map(|_| owned[rng.below(owned.len())]).find(|&d| !self.live[d].is_empty())
    }

    fn take_key(&mut self, rng: &mut Rng, d: usize) -> Vec<u8> {
        let i = rng.below(self.live[d].len());
        self.live[d].swap_remove(i)
    }

    /// A new key `<prefix of d><tag><id>`, live from now on.
    fn new_key(&mut self, d: usize, tag: &str, id: &str) -> Vec<u8> {
        let mut k = self.prefixes[d].clone();
        k.extend_from_slice(tag.as_bytes());
        k.extend_from_slice(id.as_bytes());
        self.live[d].push(k.clone());
        k
    }

    pub(crate) fn get(&self, rng: &mut Rng, d: usize) -> Op {
        Op::Get(self.live[d][rng.below(self.live[d].len())].clone())
    }

    pub(crate) fn create(&mut self, rng: &mut Rng, ds: &Dataset, d: usize, tag: &str, id: &str) -> Op {
        let k = self.new_key(d, tag, id);
        Op::Put(k, ds.values[rng.below(ds.values.len())].clone())
    }

    pub(crate) fn delete(&mut self, rng: &mut Rng, d: usize) -> Op {
        Op::Delete(self.take_key(rng, d))
    }

    /// A listing of `d`, unless it is one of the big directories.
    pub(crate) fn list(&self, d: usize) -> Option<Op> {
        (!self.big[d]).then(|| Op::List(self.prefixes[d].clone(), self.live[d].len()))
    }

    /// A key of `d` renamed into another owned directory.
    pub(crate) fn rename(&mut self, rng: &mut Rng, d: usize, owned: &[usize], tag: &str, id: &str) -> Op {
        let src = self.take_key(rng, d);
        let to = owned[rng.below(owned.len())];
        Op::Rename(src, self.new_key(to, tag, id))
    }

    /// One script per thread; thread t owns the directories d with
    /// d % threads == t, so the scripts commute and the model stays exact
    /// however they interleave. `op` makes one op (or none) from the
    /// thread's rng, its directories and a unique id.
    pub(crate) fn scripts(
        &mut self,
        threads: usize,
        ops_total: usize,
        seed: impl Fn(usize) -> u64,
        id: impl Fn(usize, usize) -> String,
        mut op: impl FnMut(&mut Self, &mut Rng, &[usize], &str) -> Option<Op>,
    ) -> Vec<Vec<Op>> {
        (0..threads)
            .map(|t| {
                let owned: Vec<usize> = (t..self.live.len()).step_by(threads).collect();
                let mut rng = Rng::new(seed(t));
                let mut ops = Vec::with_capacity(ops_total / threads);
                let mut i = 0usize;
                while ops.len() < ops_total / threads {
                    i += 1;
                    ops.extend(op(self, &mut rng, &owned, &id(t, i)));
                }
                ops
            })
            .collect()
    }
}

/// This bench's mix over the live keys.
pub struct Model {
    live: Live,
}

impl Model {
    pub fn new(ds: &Dataset) -> Self {
        Model { live: Live::new(ds) }
    }

    fn op(live: &mut Live, rng: &mut Rng, ds: &Dataset, owned: &[usize], id: &str) -> Option<Op> {
        let roll = rng.below(100);
        let d = live.pick_dir(rng, owned)?;
        match roll {
            0..=69 => Some(live.get(rng, d)),
            70..=79 => Some(live.create(rng, ds, d, "new-", id)),
            80..=89 => Some(live.delete(rng, d)),
            90..=94 => live.list(d),
            _ => Some(live.rename(rng, d, owned, "mv-", id)),
        }
    }

    fn scripts(&mut self, ds: &Dataset, threads: usize, rep: usize, ops_total: usize) -> Vec<Vec<Op>> {
        self.live.scripts(
            threads,
            ops_total,
            |t| 0x006d_6978 ^ ((threads as u64) << 32) ^ ((rep as u64) << 16) ^ t as u64,
            |t, i| format!("{threads}-{rep}-{t}-{i}"),
            |live, rng, owned, id| Self::op(live, rng, ds, owned, id),
        )
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
