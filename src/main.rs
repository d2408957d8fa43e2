//! `holt-fs`: the command line. Parses arguments, sets up logging and hands
//! each verb to its module; the filesystem itself lives in `holt_mount`.

mod background;
mod docs_cmd;
mod fsck_cmd;
mod bench;
mod bench_cmd;
mod dump_cmd;
mod info_cmd;
mod info_text;
mod load_cmd;
mod mount_cmd;
mod mount_helper;
mod pid_file;
mod signals;
mod stats_cmd;
mod stats_text;
mod status_line;
mod target;
mod umount_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// A FUSE filesystem whose metadata lives in an embedded adaptive radix tree.
#[derive(Parser, Debug)]
#[command(name = "holt-fs", version, about, long_about = None)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or env_logger syntax);
    /// defaults to $RUST_LOG, then "info".
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a filesystem and serve it until unmounted or sent SIGINT/SIGTERM.
    ///
    /// The store is created on first use (an existing directory must be
    /// empty or a holt-fs store, owned by you and writable by no one else).
    /// A dead FUSE mount left at the mountpoint by a killed daemon is
    /// cleared first. SIGHUP reopens the log file and leaves the mount.
    Mount(mount_cmd::MountArgs),
    /// Measure a filesystem: creates, stats, listings, renames, unlinks,
    /// small and sequential reads and writes, a big directory; at 1 thread
    /// and at N threads, in a fresh subdirectory of DIR removed at the end.
    Bench(bench_cmd::BenchArgs),
    /// Unmount a holt-fs filesystem and wait until its daemon has closed the store.
    Umount {
        /// The mountpoint to unmount.
        mountpoint: PathBuf,
        /// Detach now even if files are in use (umount -l).
        #[arg(short, long)]
        lazy: bool,
    },
    /// Check a store's metadata and data objects; with --repair, fix them.
    ///
    /// The store must not be mounted: fsck takes its lock and refuses a
    /// store a daemon serves. It runs none of a mount's recovery, so files
    /// unlinked while open are counted as orphans, not problems. Each
    /// problem is printed on its own line, then a summary.
    #[command(after_help = fsck_cmd::EXIT_STATUS_HELP)]
    Fsck(fsck_cmd::FsckArgs),
    /// Report on a store: format and uuid, counts, file bytes, space on
    /// disk, engine statistics, mounts, how the last mount ended.
    ///
    /// Given a mountpoint or a store that a daemon serves read-write, the
    /// daemon answers over its control socket (STORE/ctl.sock); a store no
    /// daemon serves read-write is opened read-only, writing nothing.
    Info(info_cmd::InfoArgs),
    /// Watch the daemon serving a store: requests per second by FUSE
    /// opcode, latencies, data bytes, cache hit rate, WAL and checkpoints.
    ///
    /// Refreshed every second (like `juicefs stats`); --once and --json for
    /// scripts. The daemon answers over its control socket, which read-write
    /// mounts of a store have; for --memory and read-only mounts, use
    /// `holt-fs mount --metrics ADDR` (Prometheus). doc/METRICS.md says what
    /// each number counts.
    Stats(stats_cmd::StatsArgs),
    /// Write the whole filesystem (names, attributes, hard links, xattrs,
    /// symlinks, devices, sparse contents) as one portable binary stream.
    ///
    /// Given a mountpoint or a store a daemon serves read-write, the
    /// daemon dumps a snapshot of its metadata over its control socket
    /// (file contents are read as they are when reached); a store no
    /// daemon serves read-write is opened read-only, writing nothing.
    /// Format: doc/FORMAT.md, "holt-fs dump stream".
    Dump(dump_cmd::DumpArgs),
    /// Recreate a dumped filesystem in a new or empty, unmounted store.
    ///
    /// `holt-fs dump A | holt-fs load B` copies a filesystem. A truncated,
    /// corrupt or aborted stream is refused with the byte where it went
    /// wrong. ctimes are not restored: the kernel stamps them.
    Load(load_cmd::LoadArgs),
    /// Print the manual page (or write every page into a directory).
    Man(docs_cmd::ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs_cmd::CompletionsArgs),
}

fn init_logging(level: Option<&str>) {
    let mut builder = env_logger::Builder::new();
    match level.map(str::to_owned).or_else(|| std::env::var("RUST_LOG").ok()) {
        Some(filter) => builder.parse_filters(&filter),
        None => builder.parse_filters("info"),
    };
    builder.format_timestamp_millis().init();
}

fn main() -> ExitCode {
    // Started as mount(8)'s helper (a link named mount.holt-fs).
    if mount_helper::invoked_as_helper() {
        return mount_helper::main();
    }
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    let result = match cli.command {
        Command::Mount(args) => mount_cmd::run(args),
        Command::Fsck(args) => return fsck_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Info(args) => info_cmd::run(args),
        Command::Stats(args) => stats_cmd::run(args),
        Command::Dump(args) => dump_cmd::run(args),
        Command::Load(args) => load_cmd::run(args),
        Command::Umount { mountpoint, lazy } => umount_cmd::run(&mountpoint, lazy),
        Command::Man(args) => docs_cmd::man(args, Cli::command()),
        Command::Completions(args) => docs_cmd::completions(args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("holt-fs: {msg}");
            ExitCode::FAILURE
        }
    }
}
