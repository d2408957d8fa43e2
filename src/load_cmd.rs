//! `holt-fs load STORE [-i FILE]`: recreate a dump's filesystem in a new
//! or empty store, as a first mount would make it and through the same
//! filesystem layer. The store must not be mounted. The stream comes
//! from FILE or stdin (never a terminal), so `holt-fs dump A | holt-fs
//! load B` copies a filesystem; progress goes to stderr when it is a
//! terminal.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Args;
use holt_mount::dump::{self, DumpError, Progress};
use holt_mount::StoreError;

use crate::info_text::bytes;
use crate::status_line::{transfer_line, StatusLine};
use crate::target::mount_at;

/// Input buffer: a 1 MiB Data record in one read.
const INPUT_BUFFER_BYTES: usize = 2 << 20;

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The store to fill: a new or empty directory, or a store with no
    /// files (its root empty). It must not be mounted.
    store: PathBuf,
    /// Read the dump from FILE; `-` or none: stdin.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
}

pub fn run(args: LoadArgs) -> Result<(), String> {
    let store = &args.store;
    if mount_at(store)?.is_some() {
        return Err(format!(
            "{} is the mountpoint of a holt-fs mount; load fills a store directory, which must not be mounted",
            store.display()
        ));
    }
    let input = open_input(args.input.as_deref())?;
    // A store this load makes is removed if the load fails: a partial
    // filesystem must not pass for a whole one.
    let made_here = !store.exists();
    let mut line = StatusLine::new();
    let loaded = {
        let mut progress = |p: Progress| line.show(|t| transfer_line("load", p.inodes, p.bytes, t));
        dump::load_store(store, BufReader::with_capacity(INPUT_BUFFER_BYTES, input), &mut progress)
    };
    line.clear();
    let totals = loaded.map_err(|e| failed(store, e, made_here))?;
    if line.enabled() {
        eprintln!(
            "loaded {} inodes ({} names, {} of file data) into {} in {:.1} s",
            totals.inodes,
            totals.names,
            bytes(totals.data_bytes),
            store.display(),
            line.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>, String> {
    match path.filter(|p| *p != Path::new("-")) {
        None if io::stdin().is_terminal() => Err("refusing to read a dump from a terminal: give -i FILE or pipe one in".into()),
        None => Ok(Box::new(io::stdin())),
        Some(p) => Ok(Box::new(File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?)),
    }
}

fn failed(store: &Path, e: DumpError, made_here: bool) -> String {
    let shown = store.display();
    match e {
        DumpError::Store(StoreError::Locked { holder, .. }) => {
            format!("{shown} is in use by a holt-fs daemon ({holder}): load fills only a store no daemon serves")
        }
        DumpError::NotEmpty => format!("refusing to load into {shown}: {}", DumpError::NotEmpty),
        e if made_here && store.exists() => match std::fs::remove_dir_all(store) {
            Ok(()) => format!("loading into {shown}: {e} (the store it was making is removed)"),
            Err(r) => format!("loading into {shown}: {e} (and the partial store could not be removed: {r})"),
        },
        e => format!("loading into {shown}: {e} (what was loaded so far stays: load again into a new store)"),
    }
}
