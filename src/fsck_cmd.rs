//! `holt-fs fsck`: check a store that no daemon serves, and with
//! `--repair` fix what is safe and check again.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use holt_mount::fsck::{self, FsckOptions, FsckReport, Progress};
use holt_mount::{Store, StoreError, StoreOptions};

use crate::status_line::StatusLine;

/// The exit statuses, for `--help`.
pub const EXIT_STATUS_HELP: &str = "Exit status:
  0  clean (with --repair: every problem repaired and a re-check is clean)
  1  problems found and left
  2  fsck could not run (not a store, store mounted, I/O error)";

const EXIT_CLEAN: u8 = 0;
const EXIT_PROBLEMS: u8 = 1;
const EXIT_FAILED: u8 = 2;

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Store directory to check; no daemon may be serving it.
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// Fix what is safe: remove entries, xattrs and markers that point
    /// nowhere and stray data objects; recompute nlinks, parents and
    /// counters; reconnect inodes without a name under /lost+found.
    #[arg(long)]
    repair: bool,
}

pub fn run(args: FsckArgs) -> ExitCode {
    match check(&args) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("holt-fs fsck: {msg}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn check(args: &FsckArgs) -> Result<u8, String> {
    let dir = args.store.display();
    if !holt_mount::is_store(&args.store) {
        return Err(format!("{dir} is not a holt-fs store (it has no lock file)"));
    }
    let store = Store::open(&args.store, &StoreOptions::default()).map_err(|e| match e {
        StoreError::Locked { .. } => format!("refusing to check a mounted store: {e}"),
        e => e.to_string(),
    })?;
    let mut bar = Bar::new();
    let run = |repair: bool, bar: &mut Bar| {
        let report = fsck::fsck(&store.tree, store.data.as_ref(), &FsckOptions { repair }, &mut |p| bar.show(p));
        bar.clear();
        report.map_err(|e| format!("cannot check {dir}: {e}"))
    };
    let report = run(args.repair, &mut bar)?;
    for f in &report.findings {
        match (&f.repaired, args.repair) {
            (Some(done), _) => println!("{} [repaired: {done}]", f.problem),
            (None, true) => println!("{} [not repaired]", f.problem),
            (None, false) => println!("{}", f.problem),
        }
    }
    println!("{dir}: {}", summary(&report));
    if report.is_clean() {
        return Ok(EXIT_CLEAN);
    }
    if !args.repair {
        return Ok(EXIT_PROBLEMS);
    }
    println!("repaired {}", count(report.repaired() as u64, "problem"));
    let again = run(false, &mut bar)?;
    if again.is_clean() {
        println!("re-check: clean");
        return Ok(EXIT_CLEAN);
    }
    println!("re-check: {} left", count(again.findings.len() as u64, "problem"));
    for f in &again.findings {
        println!("{}", f.problem);
    }
    Ok(EXIT_PROBLEMS)
}

fn summary(r: &FsckReport) -> String {
    let verdict = match r.findings.len() {
        0 => "clean".to_string(),
        n => count(n as u64, "problem"),
    };
    format!(
        "{} ({}, {}, {}, {} others), {} awaiting reclaim, {}: {verdict}",
        count(r.inodes, "inode"),
        count(r.dirs, "directory"),
        count(r.files, "file"),
        count(r.symlinks, "symlink"),
        r.others,
        count(r.orphans, "orphan"),
        count(r.objects, "data object"),
    )
}

/// "1 file", "2 files", "2 directories".
pub fn count(n: u64, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("1 {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {one}s"),
    }
}

/// fsck's phases on the status line.
struct Bar(StatusLine);

impl Bar {
    fn new() -> Bar {
        Bar(StatusLine::new())
    }

    fn show(&mut self, p: Progress) {
        self.0.show(|_| match p.total {
            Some(total) if total > 0 => {
                format!("fsck: {:<8} {}/{} ({}%)", p.phase, p.done, total, p.done.min(total) * 100 / total)
            }
            _ => format!("fsck: {:<8} {}", p.phase, p.done),
        });
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "orphan"), "0 orphans");
        assert_eq!(count(2, "directory"), "2 directories");
        let clean = FsckReport { inodes: 3, dirs: 2, files: 1, objects: 1, ..FsckReport::default() };
        assert_eq!(
            summary(&clean),
            "3 inodes (2 directories, 1 file, 0 symlinks, 0 others), 0 orphans awaiting reclaim, 1 data object: clean"
        );
    }
}
