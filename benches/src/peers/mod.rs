//! `holt-bench --peers DIR`: holt-core beside holt 0.3.0 and the embedded
//! engines a user would pick instead (LMDB, redb, fjall, RocksDB), on the
//! same keys in one run, each cell judged against the best of the peers.
//!
//! Every engine runs the whole cell sequence (`child.rs`) in a process of
//! its own, in its own directory under DIR; the parent runs them cell by
//! cell, interleaved (`parent.rs`), prints one Markdown table and writes
//! `--json`.
//! All engines are persistent and acknowledge a write once it is handed
//! to the OS (redb: once in its own buffer, the nearest it has), except
//! the fsync cells; each engine module says how it gets there.

mod cells;
mod child;
mod data;
mod fjall;
mod holt;
pub(crate) mod lmdb;
mod mix;
mod parent;
mod probe;
mod redb;
mod report;
#[cfg(feature = "rocksdb")]
mod rocksdb;
pub(crate) mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use store::{Durability, Res, Store};

/// Cache each peer gets (redb, fjall, RocksDB block cache): holds the
/// whole data set at the sizes this bench runs, as holt-core's pool does.
/// LMDB uses the page cache.
pub const CACHE_BYTES: usize = 1 << 30;
/// Longest a settle waits for background flushes and compactions.
pub const SETTLE_WAIT_MAX: Duration = Duration::from_secs(300);

pub type Opener = fn(&Path, Durability) -> Res<Box<dyn Store>>;

/// An engine of the run; `open` is `None` where it is not compiled in.
pub struct EngineDef {
    pub slug: &'static str,
    pub name: &'static str,
    pub open: Option<Opener>,
}

#[cfg(feature = "rocksdb")]
const ROCKSDB: Option<Opener> = Some(rocksdb::open);
#[cfg(not(feature = "rocksdb"))]
const ROCKSDB: Option<Opener> = None;

const ENGINES: [EngineDef; 7] = [
    EngineDef { slug: "holt-core", name: "holt-core", open: Some(holt::open_core) },
    EngineDef { slug: CORE_AHEAD, name: "holt-core, room made ahead", open: Some(holt::open_core_ahead) },
    EngineDef { slug: "holt-0.3.0", name: "holt 0.3.0", open: Some(holt::open_holt03) },
    EngineDef { slug: "lmdb", name: "LMDB", open: Some(lmdb::open) },
    EngineDef { slug: "redb", name: "redb", open: Some(redb::open) },
    EngineDef { slug: "fjall", name: "fjall", open: Some(fjall::open) },
    EngineDef { slug: "rocksdb", name: "RocksDB", open: ROCKSDB },
];

/// holt-core with an opt-in setting: run only when named, and never a
/// peer (a cell's best peer is another engine's).
pub const CORE_AHEAD: &str = "holt-core-ahead";

pub struct PeerOpts {
    pub dir: PathBuf,
    pub keys: usize,
    /// Gets per get cell.
    pub ops: usize,
    /// Ops of the update, create+delete and rename cells.
    pub write_ops: usize,
    pub mix_ops: usize,
    pub engines: Vec<&'static EngineDef>,
    pub json: Option<PathBuf>,
    /// Run only the 1-put load and its settle (`--load1-only`): the write
    /// latency cells, without the rest of the sequence.
    pub load1_only: bool,
    /// Set in a child process: the one engine it runs.
    pub child: Option<&'static EngineDef>,
    /// `--probe`: run only these read cells, per entry (`probe.rs`).
    pub probe: Vec<String>,
    pub probe_work: probe::Work,
}

const USAGE: &str = "usage: holt-bench --peers DIR [--keys N] [--ops N] [--write-ops N] [--mix-ops N] \
[--engines holt-core,holt-core-ahead,holt-0.3.0,lmdb,redb,fjall,rocksdb] [--json FILE] [--load1-only] \
[--probe list10,list1k,list100k,rollup,scan,get,miss [--probe-secs S | --probe-passes N]]";

fn engine(slug: &str) -> Result<&'static EngineDef, String> {
    ENGINES.iter().find(|e| e.slug == slug).ok_or(format!("unknown engine {slug}\n{USAGE}"))
}

fn parse(args: &[String]) -> Result<PeerOpts, String> {
    let mut o = PeerOpts {
        dir: PathBuf::new(),
        keys: 1_000_000,
        ops: 0,
        write_ops: 0,
        mix_ops: 0,
        engines: ENGINES.iter().filter(|e| e.open.is_some() && e.slug != CORE_AHEAD).collect(),
        json: None,
        load1_only: false,
        child: None,
        probe: Vec::new(),
        probe_work: probe::Work::Secs(3.0),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        let mut num = || -> Result<usize, String> {
            let v = value()?;
            v.replace('_', "").parse().map_err(|e| format!("{a} {v}: {e}\n{USAGE}"))
        };
        match a.as_str() {
            "--peers" => o.dir = value()?.into(),
            "--keys" => o.keys = num()?,
            "--ops" => o.ops = num()?,
            "--write-ops" => o.write_ops = num()?,
            "--mix-ops" => o.mix_ops = num()?,
            "--engines" => o.engines = value()?.split(',').map(engine).collect::<Result<_, _>>()?,
            "--json" => o.json = Some(value()?.into()),
            "--load1-only" => o.load1_only = true,
            "--peer-engine" => o.child = Some(engine(value()?)?),
            "--probe" => o.probe = value()?.split(',').map(str::to_string).collect(),
            "--probe-secs" => {
                let v = value()?;
                o.probe_work = probe::Work::Secs(v.parse().map_err(|e| format!("--probe-secs {v}: {e}\n{USAGE}"))?);
            }
            "--probe-passes" => o.probe_work = probe::Work::Passes(num()? as u64),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.keys < 1000 {
        return Err(format!("--keys must be at least 1000\n{USAGE}"));
    }
    let default = |n: usize, share: usize| if n == 0 { o.keys / share } else { n };
    (o.ops, o.write_ops, o.mix_ops) = (default(o.ops, 2), default(o.write_ops, 10), default(o.mix_ops, 10));
    Ok(o)
}

/// Runs the peer comparison when the arguments ask for it (`--peers`);
/// `None` leaves the command line to the memory-mode bench.
pub fn main_if_requested() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--peers") {
        return None;
    }
    Some(match parse(&args) {
        Ok(o) if !o.probe.is_empty() => probe::run(&o),
        Ok(o) => match o.child {
            Some(e) => child::run(&o, e),
            None => parent(&o),
        },
        Err(e) => {
            eprintln!("{e}");
            2
        }
    })
}

/// Removes an engine's stores once the run is over.
fn clean_up(dir: &Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("remove {}: {e}", dir.display());
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or("?".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn parent(o: &PeerOpts) -> i32 {
    let start = Instant::now();
    println!(
        "holt-bench --peers: keys {} ops {} write ops {} mix ops {}, engines {}, load average {}",
        o.keys,
        o.ops,
        o.write_ops,
        o.mix_ops,
        o.engines.iter().map(|e| e.slug).collect::<Vec<_>>().join(","),
        load_average()
    );
    let cols = parent::run(o);
    o.engines.iter().for_each(|e| clean_up(&o.dir.join(e.slug)));
    let cells = report::catalog();
    println!("\n{}", report::table(&cells, &cols));
    println!("total {:.0}s, load average {}", start.elapsed().as_secs_f64(), load_average());
    if let Some(path) = &o.json {
        let header = format!(
            "\"keys\": {}, \"ops\": {}, \"write_ops\": {}, \"mix_ops\": {}, \"engines\": [{}]",
            o.keys,
            o.ops,
            o.write_ops,
            o.mix_ops,
            o.engines.iter().map(|e| format!("\"{}\"", e.slug)).collect::<Vec<_>>().join(", ")
        );
        if let Err(e) = std::fs::write(path, report::json(&header, &cells, &cols)) {
            eprintln!("write {}: {e}", path.display());
            return 1;
        }
    }
    0
}
