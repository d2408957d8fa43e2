//! holt-bench: holt-core against the published holt 0.3.0, same data, same
//! process, engines interleaved per repetition.
//!
//! `cargo run --release --manifest-path benches/Cargo.toml -- [--keys N] [--persistent DIR]`
//! Beside the peer engines: `... -- --peers DIR` (`peers/mod.rs`).

mod bulk;
mod cells;
mod cgroup;
mod engines;
mod harness;
mod ltm;
mod mix;
mod peers;
mod persistent;
mod report;
mod tail;
mod workload;

use std::path::PathBuf;
use std::time::Instant;

/// Frames of cache for both engines: large enough that the memory cells
/// measure the engines, not eviction (512 KiB frames: 4 GiB at most).
const POOL_FRAMES_DEFAULT: usize = 8192;
const KEYS_DEFAULT: usize = 1_000_000;
const REPS_DEFAULT: usize = 3;
/// Cells that need the data set loaded into both engines (`cells::run`).
const MEMORY_TAGS: [&str; 9] = ["insert", "get1", "get2", "update", "list1", "list2", "big", "mix1", "mix2"];

pub struct Opts {
    pub keys: usize,
    pub reps: usize,
    pub pool_frames: usize,
    pub mix_ops: usize,
    /// Listings of every rollup top directory per repetition.
    pub rollup_rounds: usize,
    pub persistent: Option<PathBuf>,
    pub skip_memory: bool,
    /// Cell tags to run (`--cells`); empty runs all.
    pub cells: Vec<String>,
    /// Run only the larger-than-memory cells, in this directory (`--ltm`).
    pub ltm: Option<PathBuf>,
    /// The ltm pool is 1/`ltm_share` of the tree.
    pub ltm_share: usize,
    /// Gets per ltm get cell (listings and inserts: a tenth of it).
    pub ltm_ops: usize,
    /// The engine of the ltm cells: "holt-core" or "lmdb".
    pub ltm_engine: String,
    /// Cap the ltm cells' memory at the budget with a cgroup, and start
    /// the cold cells with the page cache dropped (`--ltm-cap`).
    pub ltm_cap: bool,
    /// Run only the write-latency tail of holt-core, in this directory
    /// (`--tail`, `tail.rs`).
    pub tail: Option<PathBuf>,
    /// `--tail` with `TreeBuilder::make_room_ahead` on.
    pub room_ahead: bool,
}

impl Opts {
    /// Whether the cell tagged `tag` (insert, get1, get2, update, list1,
    /// list2, big, mix1, mix2, batch1, batch1k, batch10k, rollup) runs.
    pub fn wants(&self, tag: &str) -> bool {
        self.cells.is_empty() || self.cells.iter().any(|c| c == tag)
    }
}

const USAGE: &str = "usage: holt-bench [--keys N] [--reps R] [--pool FRAMES] [--mix-ops N] [--rollup-rounds N] [--persistent DIR] [--skip-memory] [--cells insert,get1,get2,update,list1,list2,big,mix1,mix2,batch1,batch1k,batch10k,rollup] [--ltm DIR [--ltm-share N] [--ltm-ops N] [--ltm-engine holt-core|lmdb] [--ltm-cap]] [--tail DIR [--room-ahead]]";
const LTM_SHARE_DEFAULT: usize = 8;
const LTM_OPS_DEFAULT: usize = 200_000;

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        keys: KEYS_DEFAULT,
        reps: REPS_DEFAULT,
        pool_frames: POOL_FRAMES_DEFAULT,
        mix_ops: 0,
        rollup_rounds: bulk::ROLLUP_ROUNDS_DEFAULT,
        persistent: None,
        skip_memory: false,
        cells: Vec::new(),
        ltm: None,
        ltm_share: LTM_SHARE_DEFAULT,
        ltm_ops: LTM_OPS_DEFAULT,
        ltm_engine: "holt-core".into(),
        ltm_cap: false,
        tail: None,
        room_ahead: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            let v = args.next().ok_or(format!("{name} needs a value\n{USAGE}"))?;
            v.replace('_', "").parse().map_err(|e| format!("{name} {v}: {e}\n{USAGE}"))
        };
        match a.as_str() {
            "--keys" => o.keys = num("--keys")?,
            "--reps" => o.reps = num("--reps")?.max(1),
            "--pool" => o.pool_frames = num("--pool")?,
            "--mix-ops" => o.mix_ops = num("--mix-ops")?,
            "--rollup-rounds" => o.rollup_rounds = num("--rollup-rounds")?.max(1),
            "--persistent" => o.persistent = Some(args.next().ok_or(USAGE)?.into()),
            "--skip-memory" => o.skip_memory = true,
            "--cells" => o.cells = args.next().ok_or(USAGE)?.split(',').map(str::to_string).collect(),
            "--ltm" => o.ltm = Some(args.next().ok_or(USAGE)?.into()),
            "--ltm-share" => o.ltm_share = num("--ltm-share")?.max(1),
            "--ltm-ops" => o.ltm_ops = num("--ltm-ops")?.max(10),
            "--ltm-engine" => o.ltm_engine = args.next().ok_or(USAGE)?,
            "--ltm-cap" => o.ltm_cap = true,
            "--tail" => o.tail = Some(args.next().ok_or(USAGE)?.into()),
            "--room-ahead" => o.room_ahead = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.keys < 1000 {
        return Err(format!("--keys must be at least 1000\n{USAGE}"));
    }
    if o.mix_ops == 0 {
        o.mix_ops = o.keys / 2;
    }
    Ok(o)
}

fn run(opts: &Opts) -> Result<Vec<cells::Cell>, String> {
    let t = Instant::now();
    let ds = workload::Dataset::generate(opts.keys);
    let big = ds.dirs.iter().filter(|d| d.big).count();
    println!(
        "data set: {} keys in {} directories ({} big), key bytes avg {:.1}, value bytes avg {:.1}, generated in {:.1}s",
        ds.keys.len(),
        ds.dirs.len(),
        big,
        ds.key_bytes() as f64 / ds.keys.len() as f64,
        ds.value_bytes() as f64 / ds.keys.len() as f64,
        t.elapsed().as_secs_f64()
    );
    let mut out = Vec::new();
    if let Some(dir) = &opts.tail {
        tail::run(&ds, opts, dir)?;
        return Ok(out);
    }
    if let Some(dir) = &opts.ltm {
        let rows = ltm::run(&ds, opts, dir)?;
        println!("\nlarger than memory ({}):\n\n{}", opts.ltm_engine, ltm::table(&rows));
        return Ok(out);
    }
    if !opts.skip_memory {
        bulk::run_batches(&ds, opts, &mut out);
        bulk::run_rollup(opts, &mut out)?;
    }
    if !opts.skip_memory && MEMORY_TAGS.iter().any(|t| opts.wants(t)) {
        let (core, holt) = cells::run(&ds, opts, &mut out)?;
        let mut model = mix::Model::new(&ds);
        mix::run(&ds, &mut model, &core, &holt, opts, &mut out);
        eprintln!("after mix: holt-core {}", engines::Kv::shape(&core));
        eprintln!("after mix: holt 0.3.0 {}", engines::Kv::shape(&holt));
    }
    if let Some(dir) = &opts.persistent {
        persistent::run(&ds, opts, dir, &mut out)?;
    }
    Ok(out)
}

fn main() {
    if let Some(code) = peers::main_if_requested() {
        std::process::exit(code);
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "holt-bench: keys {} reps {} pool {} frames, mix ops {} per rep, persistent {:?}",
        opts.keys, opts.reps, opts.pool_frames, opts.mix_ops, opts.persistent
    );
    let t = Instant::now();
    match run(&opts) {
        Ok(cells) => {
            if !cells.is_empty() {
                println!("\n{}", report::table(&cells));
            }
            println!("total {:.1}s", t.elapsed().as_secs_f64());
        }
        Err(e) => {
            eprintln!("holt-bench failed: {e}");
            std::process::exit(1);
        }
    }
}
