//! `holt-fs stats STORE|MOUNTPOINT [--once] [--json]`: the counters of the
//! daemon serving a store, asked over its control socket every interval
//! (doc/METRICS.md). Text shows rates over the last interval, refreshed in
//! place on a terminal; `--json` prints the daemon's reports as they are
//! (cumulative counters, doc/FORMAT.md "Stats report"), one line each, for
//! scripts to take differences of.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use holt_mount::ctl;
use holt_mount::metrics::StatsReport;
use holt_mount::mountpoint;

use crate::stats_text;
use crate::target::{self, Target};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A store directory that a daemon serves read-write, or its mountpoint.
    path: PathBuf,
    /// Print once and exit: the text shows rates over one interval; with
    /// --json, the daemon's counters now (no wait).
    #[arg(long)]
    once: bool,
    /// Print the daemon's reports as JSON (one per line; pretty with --once).
    #[arg(long)]
    json: bool,
    /// Seconds between readings.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    interval: f64,
}

/// The store whose daemon answers for `path`.
fn store_of(path: &Path) -> Result<PathBuf, String> {
    match target::locate(path)? {
        Target::Store(store) => Ok(store),
        Target::Mount(entry) if entry.read_only => Err(format!(
            "{} is a read-only mount: it has no control socket (mount it with --metrics ADDR to watch it)",
            entry.mountpoint.display()
        )),
        Target::Mount(entry) => Ok(entry.source),
    }
}

fn ask(store: &Path) -> Result<StatsReport, String> {
    ctl::stats(store).map_err(|e| format!("cannot ask the daemon serving {}: {e}", store.display()))
}

pub fn run(args: StatsArgs) -> Result<(), String> {
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--interval must be a positive number of seconds")?;
    let store = store_of(&args.path)?;
    let mountpoint = mountpoint::mounts()
        .ok()
        .and_then(|m| m.into_iter().find(|e| e.source == store).map(|e| e.mountpoint))
        .unwrap_or_else(|| store.clone());
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock, text: String| out.write_all(text.as_bytes()).and_then(|()| out.flush());
    let failed = |e: std::io::Error| format!("cannot write the report: {e}");
    if args.json && args.once {
        let report = ask(&store)?;
        let text = serde_json::to_string_pretty(&report).expect("a report serializes: string keys, finite numbers");
        return write(&mut out, text + "\n").map_err(failed);
    }
    let clear = !args.json && !args.once && std::io::stdout().is_terminal();
    let mut last = (ask(&store)?, Instant::now());
    if args.json {
        write(&mut out, json_line(&last.0)).map_err(failed)?;
    }
    loop {
        std::thread::sleep(interval);
        let now = (ask(&store)?, Instant::now());
        let text = if args.json {
            json_line(&now.0)
        } else {
            let frame = stats_text::render(&mountpoint, &last.0, &now.0, now.1 - last.1);
            if clear { format!("\x1b[H\x1b[2J{frame}") } else { format!("{frame}\n") }
        };
        write(&mut out, text).map_err(failed)?;
        if args.once {
            return Ok(());
        }
        last = now;
    }
}

fn json_line(report: &StatsReport) -> String {
    serde_json::to_string(report).expect("a report serializes: string keys, finite numbers") + "\n"
}
