//! `holt-fs info STORE|MOUNTPOINT [--json]`: what a store holds and how
//! it is kept. A mountpoint is turned into its store through the mount
//! table (the source of a `fuse.holt-fs` mount is the store's absolute
//! path). The daemon serving a store read-write answers over its control
//! socket; a store no daemon serves read-write is opened read-only, which
//! writes nothing. A mountpoint whose daemon is gone is an error, since
//! nothing serves it; its store can still be asked about directly.

use std::io;
use std::path::{Path, PathBuf};

use clap::Args;
use holt_mount::ctl::{self, CtlError};
use holt_mount::info::{self, InfoError, SocketState, StoreInfo};
use holt_mount::mountpoint::{self, MountEntry, MountState};
use holt_mount::StoreError;

use crate::info_text;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A store directory, or the mountpoint of a holt-fs mount.
    path: PathBuf,
    /// Print the report as JSON, for scripts (field names: doc/FORMAT.md,
    /// "Info report").
    #[arg(long)]
    json: bool,
}

/// What the path names.
enum Target {
    Mount(MountEntry),
    Store(PathBuf),
}

pub fn run(args: InfoArgs) -> Result<(), String> {
    let report = match locate(&args.path)? {
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

/// The canonical form of `path`; for a path that cannot be resolved (a
/// dead FUSE mount answers ENOTCONN), its canonical parent joined with its
/// name, and the error.
fn resolve(path: &Path) -> (PathBuf, Option<io::Error>) {
    match std::fs::canonicalize(path) {
        Ok(p) => (p, None),
        Err(e) => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let guess = std::fs::canonicalize(parent).map(|p| p.join(path.file_name().unwrap_or_default()));
            (guess.unwrap_or_else(|_| path.to_path_buf()), Some(e))
        }
    }
}

fn locate(path: &Path) -> Result<Target, String> {
    let (canonical, unresolved) = resolve(path);
    let entry = mountpoint::entry(&canonical).map_err(|e| format!("cannot read the mount table: {e}"))?;
    let shown = path.display();
    if let Some(entry) = entry {
        if entry.source == Path::new(mountpoint::MEMORY_SOURCE) {
            return Err(format!("{shown} is a --memory mount: it has no store to report on"));
        }
        if !entry.is_holt() {
            return Err(format!("{shown} is a mountpoint of another filesystem (type {}), not of holt-fs", entry.fs_type));
        }
        return Ok(Target::Mount(entry));
    }
    if let Some(e) = unresolved {
        return Err(format!("{shown}: {e}"));
    }
    if holt_mount::is_store(&canonical) {
        return Ok(Target::Store(canonical));
    }
    Err(format!(
        "{shown} is neither a holt-fs store (it has no lock file) nor the mountpoint of a holt-fs mount"
    ))
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
        InfoError::Store(StoreError::Locked { holder, .. }) => format!(
            "{} is in use by a holt-fs daemon ({holder}) that does not answer: {}",
            store.display(),
            socket_words(socket)
        ),
        e => format!("cannot report on {}: {e}", store.display()),
    }
}

fn socket_words(socket: SocketState) -> String {
    let what = match socket {
        SocketState::Stale => "is stale (nothing listens: its daemon was killed)",
        SocketState::Absent => "is missing",
        SocketState::Answering => "answers",
    };
    format!("its control socket {} {what}", ctl::SOCKET_NAME)
}
