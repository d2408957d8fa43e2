//! `holt-crash`: the kill-and-remount crash test of holt-fs that
//! `scripts/crash-test.sh` runs. Each round mounts a store, runs a seeded
//! multi-threaded workload, SIGKILLs the daemon at a seeded moment,
//! remounts, checks that every acknowledged operation is there (and each
//! thread's in-flight one either way), unmounts and runs `holt-fs fsck`.
//! The store carries over from round to round.
//!
//! Exit status: 0 every round passed, 1 a round failed (its replay command
//! and the kept store are printed), 2 the test could not start.

mod daemon;
mod exec;
mod model;
mod observe;
mod op;
mod rng;
mod round;
mod verify;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::daemon::Setup;
use crate::model::Model;
use crate::round::{Report, Run};
use crate::verify::Found;

/// Kill-and-remount crash test of holt-fs.
#[derive(Parser, Debug)]
#[command(name = "holt-crash", version, about, long_about = None)]
struct Args {
    /// Rounds to run; the store carries over from one to the next.
    #[arg(long, default_value_t = 20)]
    rounds: u64,
    /// Seed of every workload choice and kill delay (default: the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Mount with --sync (every operation durable before it is answered).
    #[arg(long)]
    sync: bool,
    /// Store directory: must be empty or absent; kept afterwards
    /// (default: WORK_DIR/store, removed when every round passes).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Worker threads, each in its own directory.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Longest wait before the kill, in milliseconds; each round's is drawn from the seed.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    kill_ms_max: u64,
    /// Skip `holt-fs fsck` after each round.
    #[arg(long)]
    no_fsck: bool,
    /// An extra argument for every `holt-fs mount` (repeat for more).
    /// `--daemon-arg=--writeback-cache` must make the test fail: that mode
    /// loses unsynced writes to kill -9, which shows the checker sees loss.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    daemon_arg: Vec<String>,
    /// The holt-fs binary (default: the one beside this program).
    #[arg(long, value_name = "PATH")]
    holt_fs: Option<PathBuf>,
    /// Directory for the mountpoint, daemon log and default store: must be
    /// empty or absent (default: a new one under $TMPDIR).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

/// A directory the run may fill: created (with `mode`) if absent, refused
/// if not empty.
fn empty_dir(dir: &Path, what: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| format!("cannot create the {what} {}: {e}", dir.display()))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list the {what} {}: {e}", dir.display()))?;
    match entries.next() {
        None => Ok(()),
        Some(_) => Err(format!("the {what} {} is not empty; the test starts from an empty store", dir.display())),
    }
}

fn setup(args: &Args, seed: u64) -> Result<Setup, String> {
    let holt_fs = match &args.holt_fs {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?.with_file_name("holt-fs")
        }
    };
    if !holt_fs.is_file() {
        return Err(format!("no holt-fs binary at {} (build it, or pass --holt-fs)", holt_fs.display()));
    }
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("holt-crash-{seed}-{}", std::process::id())),
    };
    empty_dir(&work, "work directory", 0o777)?;
    let store = args.store.clone().unwrap_or_else(|| work.join("store"));
    // holt-fs refuses a store others may write (the umask here is 0).
    empty_dir(&store, "store", 0o700)?;
    let mountpoint = work.join("mnt");
    std::fs::create_dir(&mountpoint).map_err(|e| format!("cannot create {}: {e}", mountpoint.display()))?;
    let canonical = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(Setup {
        holt_fs: canonical(&holt_fs)?,
        mountpoint: canonical(&mountpoint)?,
        store: canonical(&store)?,
        log: work.join("daemon.log"),
        pid_file: work.join("daemon.pid"),
        sync: args.sync,
        extra: args.daemon_arg.clone(),
    })
}

/// The command that replays a run up to `round`.
fn replay(args: &Args, seed: u64, round: u64) -> String {
    let mut cmd = format!("scripts/crash-test.sh --seed {seed} --rounds {round}");
    if args.sync {
        cmd += " --sync";
    }
    if args.threads != 4 {
        cmd += &format!(" --threads {}", args.threads);
    }
    if args.kill_ms_max != 1500 {
        cmd += &format!(" --kill-ms-max {}", args.kill_ms_max);
    }
    if args.no_fsck {
        cmd += " --no-fsck";
    }
    for a in &args.daemon_arg {
        cmd += &format!(" --daemon-arg={a}");
    }
    cmd
}

/// Remove what a passed run made: the mountpoint, log, default store and work directory.
fn clean_up(args: &Args, setup: &Setup) {
    let _ = std::fs::remove_dir(&setup.mountpoint);
    let _ = std::fs::remove_file(&setup.log);
    let _ = std::fs::remove_file(&setup.pid_file);
    if args.store.is_none() {
        let _ = std::fs::remove_dir_all(&setup.store);
    }
    if let Some(work) = setup.log.parent() {
        let _ = std::fs::remove_dir(work);
    }
}

/// In-flight calls by name: how many had not happened, had, and (writes) had in part.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, [u64; 3]>);

impl Tally {
    fn add(&mut self, report: &Report) {
        for &(name, found) in &report.in_flight {
            let counts = self.0.entry(name).or_default();
            match found {
                Found::Acked | Found::Before => counts[0] += 1,
                Found::After => counts[1] += 1,
                Found::Partial => counts[2] += 1,
            }
        }
    }

    fn print(&self) {
        let cells: Vec<String> =
            self.0.iter().map(|(name, [no, yes, part])| format!("{name} {no}/{yes}/{part}")).collect();
        let cells = if cells.is_empty() { "none".to_string() } else { cells.join(", ") };
        println!("in flight at the kill (not happened/happened/in part): {cells}");
    }
}

fn print_round(round: u64, rounds: u64, r: &Report) {
    let landed = r.in_flight.iter().filter(|(_, f)| matches!(f, Found::After | Found::Partial)).count();
    println!(
        "round {round}/{rounds}: {} ops acknowledged, {} in flight ({landed} happened), killed after {} ms, \
         verify {} ms, fsck {} ms, round {:.1} s",
        r.acked,
        r.in_flight.len(),
        r.kill_ms,
        r.verify.as_millis(),
        r.fsck.as_millis(),
        r.total.as_secs_f64()
    );
}

fn run_rounds(args: &Args, seed: u64, setup: Setup) -> ExitCode {
    let run = Run { setup, seed, kill_ms_max: args.kill_ms_max, fsck: !args.no_fsck };
    let mut models: Vec<Model> = (0..args.threads.max(1)).map(|t| Model::new(&format!("t{t}"))).collect();
    let mut tally = Tally::default();
    for round in 1..=args.rounds {
        match round::run(&run, &mut models, round) {
            Ok(r) => {
                print_round(round, args.rounds, &r);
                tally.add(&r);
            }
            Err(e) => {
                daemon::detach(&run.setup.mountpoint);
                println!("round {round}/{} FAILED (seed {seed}): {e}", args.rounds);
                println!("replay: {}", replay(args, seed, round));
                println!("store kept for inspection: {}", run.setup.store.display());
                println!("daemon log: {}", run.setup.log.display());
                tally.print();
                println!("{} passed, 1 failed", round - 1);
                return ExitCode::from(1);
            }
        }
    }
    tally.print();
    println!("{} passed, 0 failed", args.rounds);
    clean_up(args, &run.setup);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    // SAFETY: umask only sets this process's creation mask; modes the
    // workload passes are then the modes it expects.
    unsafe { libc::umask(0) };
    let setup = match setup(&args, seed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holt-crash: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "holt-crash: seed {seed}, {} rounds, {} threads, {}, {}; store {}",
        args.rounds,
        args.threads.max(1),
        if args.sync { "--sync" } else { "default durability" },
        if args.no_fsck { "no fsck" } else { "fsck after each round" },
        setup.store.display()
    );
    run_rounds(&args, seed, setup)
}
