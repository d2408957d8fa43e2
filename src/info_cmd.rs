//! `holt-fs info STORE|MOUNTPOINT [--json]`: what a store holds and how
//! it is kept. A mountpoint is turned into its store through the mount
//! table (the source of a `fuse.holt-fs` mount is the store's absolute
//! path). The daemon serving a store read-write answers over its control
//! socket; a store no daemon serves read-write is opened read-only, which
//! writes nothing. A mountpoint whose daemon is gone is an error, since
//! nothing serves it; its store can still be asked about directly.

use std::path::{Path, PathBuf};

use clap::Args;
use holt_mount::ctl::{self, CtlError};
use holt_mount::info::{self, InfoError, SocketState, StoreInfo};
use holt_mount::mountpoint::{self, MountEntry, MountState};
use holt_mount::StoreError;

use crate::info_text;
use crate::target::{self, held_by_a_silent_daemon, socket_words, Target};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A store directory, or the mountpoint of a holt-fs mount.
    path: PathBuf,
    /// Print the report as JSON, for scripts (field names: doc/FORMAT.md,
    /// "Info report").
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> Result<(), String> {
    let report = match target::locate(&args.path)? {
        Target::Mount(entry) => ask_mount(&entry)?,
        Target::Store(store) => ask_store(&store)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes: string keys, finite numbers"));
    } else {
        print!("{}", info_text::render(&report));
    }
    Ok(())
}

/// Ask the daemon serving the mount; a read-only mount has no control
/// socket, so its store is read directly (read-only opens share it).
fn ask_mount(entry: &MountEntry) -> Result<StoreInfo, String> {
    let (mp, store) = (entry.mountpoint.display(), &entry.source);
    let socket = match ctl::info(store) {
        Ok(report) => return Ok(report),
        Err(CtlError::NoDaemon(socket)) => socket,
        Err(e) => return Err(format!("cannot ask the daemon serving {mp}: {e}")),
    };
    if matches!(mountpoint::state(&entry.mountpoint), Ok(MountState::Dead)) {
        return Err(format!(
            "the daemon serving {mp} is gone (killed?): the mount is dead and {}. Clear it with \
             `holt-fs umount {mp}` or by mounting the store again; `holt-fs info {}` reads the store itself",
            socket_words(socket),
            store.display()
        ));
    }
    if !entry.read_only {
        return Err(format!(
            "the daemon serving {mp} does not answer: {} (is it still starting, or was it built before `info`?)",
            socket_words(socket)
        ));
    }
    info::read_store(store, socket).map_err(|e| read_failed(store, socket, e))
}

/// Ask the daemon serving the store, else read the store read-only.
fn ask_store(store: &Path) -> Result<StoreInfo, String> {
    match ctl::info(store) {
        Ok(report) => Ok(report),
        Err(CtlError::NoDaemon(socket)) => info::read_store(store, socket).map_err(|e| read_failed(store, socket, e)),
        Err(e) => Err(format!("cannot ask the daemon serving {}: {e}", store.display())),
    }
}

fn read_failed(store: &Path, socket: SocketState, e: InfoError) -> String {
    match e {
        InfoError::Store(StoreError::Locked { holder, .. }) => held_by_a_silent_daemon(store, &holder, socket),
        e => format!("cannot report on {}: {e}", store.display()),
    }
}
