//! `holt-fs bench`: arguments, the run directory (fresh, removed at the end,
//! also after an error or a signal), then the runner and the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use holt_mount::mountpoint;
use log::warn;

use crate::bench::report::{self, Header};
use crate::bench::requests::Probe;
use crate::bench::runner::{self, Plan};
use crate::bench::phases;
use crate::signals;

/// Set when SIGINT/SIGTERM/SIGHUP arrives: every thread stops at its next op.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A directory on the filesystem to measure (any filesystem); the bench
    /// works in a fresh subdirectory it removes at the end.
    dir: PathBuf,
    /// The thread count of the second pass (the first uses 1 thread); each
    /// thread works in its own directory.
    #[arg(long, value_name = "N", default_value_t = 2)]
    threads: usize,
    /// Files per small-file phase, split over the threads; the big directory
    /// gets 10 times as many entries.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    files: usize,
    /// MiB of the sequential phases' file, split over the threads.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    size: usize,
    /// Phases to run, comma separated, or "all": create, stat, ls-l, open, rename,
    /// unlink, mkdir, rmdir, write4k, read4k, seqwrite, seqread,
    /// seqwrite-fsync, bigdir-create, bigdir-ls, bigdir-rm.
    #[arg(long, value_name = "LIST", default_value = "all")]
    phases: String,
    /// Also report the CPU time this process (the FUSE daemon) spends per
    /// operation, beside the bench's own; and, when it is the holt-fs
    /// daemon serving a store, the FUSE requests per operation of each
    /// phase, by opcode (its counters, read over its control socket).
    #[arg(long, value_name = "PID")]
    daemon_pid: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The run directory: created fresh, removed when dropped.
struct RunDir(PathBuf);

impl RunDir {
    fn create(parent: &Path) -> Result<RunDir, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = parent.join(format!("holt-bench-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(RunDir(path))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            warn!("cannot remove the bench directory {}: {e}", self.0.display());
        }
    }
}

/// The mount holding `dir` (canonical): the longest mountpoint above it.
fn filesystem_of(dir: &Path) -> (String, String) {
    let mounts = mountpoint::mounts().unwrap_or_default();
    let best = mounts.iter().filter(|m| dir.starts_with(&m.mountpoint)).max_by_key(|m| m.mountpoint.as_os_str().len());
    match best {
        Some(m) => (m.fs_type.clone(), m.source.to_string_lossy().into_owned()),
        None => ("unknown".into(), "unknown".into()),
    }
}

/// The request counter probe, when the daemon is holt-fs's; else none,
/// with a warning saying why.
fn probe(daemon_pid: Option<u32>, fs_type: &str, fs_source: &str) -> Option<Probe> {
    let pid = daemon_pid?;
    Probe::connect(fs_type, fs_source, pid)
        .inspect_err(|e| warn!("FUSE requests per operation are not reported: {e}"))
        .ok()
}

fn plan(args: &BenchArgs, requests: Option<Probe>) -> Result<Plan, String> {
    if args.threads == 0 || args.files == 0 || args.size == 0 {
        return Err("--threads, --files and --size must be at least 1".into());
    }
    let threads = if args.threads == 1 { vec![1] } else { vec![1, args.threads] };
    let phases = phases::select(&args.phases)?;
    Ok(Plan { phases, threads, files: args.files, seq_mib: args.size, daemon_pid: args.daemon_pid, requests })
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    signals::block()
        .handle(|_| STOP.store(true, Ordering::Relaxed), || STOP.store(true, Ordering::Relaxed))
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let dir = std::fs::canonicalize(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let (fs_type, fs_source) = filesystem_of(&dir);
    let plan = plan(&args, probe(args.daemon_pid, &fs_type, &fs_source))?;
    let run_dir = RunDir::create(&dir)?;
    let rows = runner::run(&run_dir.0, &plan, &STOP)?;
    drop(run_dir);
    let header = Header { dir, fs_type, fs_source, plan };
    if args.json {
        println!("{}", report::json(&header, &rows));
    } else {
        print!("{}", report::text(&header, &rows));
    }
    Ok(())
}
