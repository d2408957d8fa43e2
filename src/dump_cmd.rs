//! `holt-fs dump STORE|MOUNTPOINT [-o FILE]`: the whole filesystem as one
//! portable stream (doc/FORMAT.md, "holt-fs dump stream"). The daemon
//! serving a store read-write dumps a snapshot of it over its control
//! socket; a store no daemon serves read-write is opened read-only, which
//! writes nothing. The stream goes to FILE, or to stdout (never to a
//! terminal); progress goes to stderr when it is a terminal.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use holt_mount::ctl::CtlError;
use holt_mount::dump::{self, DumpError, DumpOptions, DumpReport, Progress};
use holt_mount::info::SocketState;
use holt_mount::mountpoint::{self, MountEntry, MountState};
use holt_mount::StoreError;

use crate::info_text::bytes;
use crate::status_line::{transfer_line, StatusLine};
use crate::target::{held_by_a_silent_daemon, locate, socket_words, Target};

/// Output buffer: large enough that a 1 MiB Data record is one write.
const OUTPUT_BUFFER_BYTES: usize = 2 << 20;

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// A store directory, or the mountpoint of a holt-fs mount.
    path: PathBuf,
    /// Write the dump to FILE (put in place once whole: a failed dump
    /// leaves FILE as it was); `-` or none: stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Leave file contents out: names, attributes, links and xattrs only
    /// (a load makes each file a hole of its size).
    #[arg(long)]
    meta_only: bool,
    /// Write every ctime as zero. Load cannot set ctimes, so only such
    /// dumps of a store and of its loaded copy are byte for byte the same.
    #[arg(long)]
    no_ctime: bool,
}

pub fn run(args: DumpArgs) -> Result<(), String> {
    let target = locate(&args.path)?;
    let opts = DumpOptions { meta_only: args.meta_only, no_ctime: args.no_ctime };
    let mut out = Output::open(args.output.as_deref())?;
    let mut line = StatusLine::new();
    let dumped = {
        let mut progress = |p: Progress| line.show(|t| transfer_line("dump", p.inodes, p.bytes, t));
        match &target {
            Target::Mount(entry) => dump_mount(entry, &mut out, opts, &mut progress),
            Target::Store(store) => dump_store(store, &mut out, opts, &mut progress),
        }
    };
    line.clear();
    let report = match dumped.and_then(|r| out.finish().map(|()| r)) {
        Ok(report) => report,
        Err(e) => {
            out.discard();
            return Err(e);
        }
    };
    warn_changed(&report);
    if line.enabled() {
        let secs = line.elapsed().as_secs_f64();
        eprintln!(
            "dumped {} inodes ({} names, {} of file data): {} in {secs:.1} s",
            report.totals.inodes,
            report.totals.names,
            bytes(report.totals.data_bytes),
            bytes(report.stream_bytes)
        );
    }
    Ok(())
}

/// Files that moved while read: the dump holds them as read, which may
/// mix old and new writes.
fn warn_changed(report: &DumpReport) {
    if report.changed_while_read == 0 {
        return;
    }
    eprintln!(
        "holt-fs dump: warning: {} file(s) changed while being read; their contents may mix old and new writes:",
        report.changed_while_read
    );
    for path in &report.changed_paths {
        eprintln!("  {path}");
    }
}

/// Ask the daemon serving the mount; a read-only mount has no control
/// socket, so its store is read directly (read-only opens share it).
fn dump_mount(
    entry: &MountEntry,
    out: &mut Output,
    opts: DumpOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<DumpReport, String> {
    let (mp, store) = (entry.mountpoint.display(), &entry.source);
    let socket = match dump::dump_remote(store, out, opts, progress) {
        Err(DumpError::Ctl(CtlError::NoDaemon(socket))) => socket,
        other => return other.map_err(|e| format!("dumping {mp}: {e}")),
    };
    if matches!(mountpoint::state(&entry.mountpoint), Ok(MountState::Dead)) {
        return Err(format!(
            "the daemon serving {mp} is gone (killed?): the mount is dead and {}. Clear it with \
             `holt-fs umount {mp}`; `holt-fs dump {}` reads the store itself",
            socket_words(socket),
            store.display()
        ));
    }
    if !entry.read_only {
        return Err(format!("the daemon serving {mp} does not answer: {}", socket_words(socket)));
    }
    dump::dump_store(store, out, opts, progress).map_err(|e| read_failed(store, socket, e))
}

/// Ask the daemon serving the store, else read the store read-only.
fn dump_store(
    store: &Path,
    out: &mut Output,
    opts: DumpOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<DumpReport, String> {
    match dump::dump_remote(store, out, opts, progress) {
        Err(DumpError::Ctl(CtlError::NoDaemon(socket))) => {
            dump::dump_store(store, out, opts, progress).map_err(|e| read_failed(store, socket, e))
        }
        other => other.map_err(|e| format!("dumping {}: {e}", store.display())),
    }
}

fn read_failed(store: &Path, socket: SocketState, e: DumpError) -> String {
    match e {
        DumpError::Store(StoreError::Locked { holder, .. }) => held_by_a_silent_daemon(store, &holder, socket),
        e => format!("dumping {}: {e}", store.display()),
    }
}

/// Where the stream goes.
enum Sink {
    Stdout(io::Stdout),
    /// Something that is not a regular file (a pipe, a device): written
    /// as it is, never synced, truncated or removed.
    Special(File),
    /// A regular file: the stream goes to `staged` beside it, renamed over
    /// `path` once whole, so a failed dump leaves `path` as it was.
    Staged { file: File, staged: PathBuf, path: PathBuf },
}

struct Output(BufWriter<Sink>);

impl Output {
    /// `path` (`-` or none: stdout). A terminal is refused: a dump is binary.
    fn open(path: Option<&Path>) -> Result<Output, String> {
        let sink = match path.filter(|p| *p != Path::new("-")) {
            None if io::stdout().is_terminal() => {
                return Err("refusing to write a binary dump to a terminal: give -o FILE or redirect stdout".into())
            }
            None => Sink::Stdout(io::stdout()),
            Some(p) if std::fs::metadata(p).is_ok_and(|m| !m.is_file()) => {
                let file = File::options().write(true).open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
                Sink::Special(file)
            }
            Some(p) => {
                let name = p.file_name().ok_or_else(|| format!("{} names no file", p.display()))?;
                let staged = p.with_file_name(format!(".{}.dump-{}", name.to_string_lossy(), std::process::id()));
                let file = File::options().write(true).create_new(true).open(&staged);
                let file = file.map_err(|e| format!("cannot create {}: {e}", staged.display()))?;
                Sink::Staged { file, staged, path: p.to_path_buf() }
            }
        };
        Ok(Output(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, sink)))
    }

    /// Everything written reaches its destination; a file is synced and
    /// put in place.
    fn finish(&mut self) -> Result<(), String> {
        self.0.flush().map_err(|e| format!("writing the dump: {e}"))?;
        if let Sink::Staged { file, staged, path } = self.0.get_ref() {
            file.sync_all().map_err(|e| format!("syncing {}: {e}", staged.display()))?;
            std::fs::rename(staged, path).map_err(|e| format!("renaming {} to {}: {e}", staged.display(), path.display()))?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// A failed dump leaves its destination as it was: the staged file goes.
    fn discard(self) {
        if let Sink::Staged { staged, .. } = self.0.get_ref() {
            let _ = std::fs::remove_file(staged);
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::Special(file) | Sink::Staged { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::Special(file) | Sink::Staged { file, .. } => file.flush(),
        }
    }
}
