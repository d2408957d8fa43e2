//! `holt-fs dump` and `holt-fs load`: a portable, versioned backup of a
//! whole filesystem as one binary stream (doc/FORMAT.md, "holt-fs dump
//! stream").
//!
//! - `format`: the stream's records and their codec. Pure.
//! - `walk`: writing a dump from a fixed view of the metadata and the
//!   data objects.
//! - `load`: recreating a dump's contents through `Fs`, in an empty store.
//! - `remote`: a dump asked of the daemon serving a store, over its
//!   control socket (both ends).
//!
//! Consistency of a dump:
//! - Metadata (names, kinds, owners, modes, links, xattrs, symlink
//!   targets, device numbers, directory and special-file times) is one
//!   moment's: a store no daemon serves is opened read-only, which
//!   nothing changes while it is held; a daemon dumps a snapshot of its
//!   tree (holt-core's `Tree::snapshot`: one checkpoint, then its frames
//!   pinned), so writers wait only for that checkpoint's capture.
//! - A regular file's contents, size, atime and mtime live in its data
//!   object, which a snapshot cannot freeze: each is read when the walk
//!   reaches the file, as it is then (objects of files deleted since the
//!   snapshot are kept until the dump ends: `Fs::hold_reclaims`). A file
//!   whose size or mtime moves while it is read is counted and named in
//!   the report (`changed_while_read`), like tar's "file changed as we
//!   read it"; its bytes may mix old and new writes.
//!
//! Invariants:
//! - Dumping writes nothing to the store: objects are read through
//!   `DataStore::open_reader` (no atime update, no cached descriptor).
//! - Loading writes only through `Fs`, into a store whose root holds no
//!   name and no xattr, and refuses a stream that is truncated, corrupt or
//!   aborted (what it created up to there stays; load again into a new
//!   store).
//! - Memory is bounded by the directory depth and the hard-linked inodes
//!   with names still to come, never by the number of files.

pub mod format;
mod load;
mod remote;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use format::{StreamError, Totals};
pub use remote::{dump_remote, STREAM_NAME};
pub(crate) use remote::serve;

use crate::ctl::CtlError;
use crate::error::FsError;
use crate::fs::ReclaimHold;
use crate::meta::Meta;
use crate::schema::{self, Ino};
use crate::{Fs, FsConfig, Store, StoreError, StoreOptions};

/// What goes into a dump besides the namespace and attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpOptions {
    /// Leave file contents out: files load as holes of their size.
    #[serde(default)]
    pub meta_only: bool,
    /// Write every ctime as zero. Load cannot set ctimes, so a dump of a
    /// loaded store matches the dump it was loaded from byte for byte
    /// only without them.
    #[serde(default)]
    pub no_ctime: bool,
}

/// What a dump wrote, and what changed under it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpReport {
    #[serde(flatten)]
    pub totals: Totals,
    /// Bytes of the stream, preamble to trailer.
    pub stream_bytes: u64,
    /// Regular files whose size or mtime moved while they were read.
    pub changed_while_read: u64,
    /// The first of them, as paths from the root (lossy UTF-8).
    pub changed_paths: Vec<String>,
}

/// How far a dump or load has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub inodes: u64,
    /// Stream bytes written or read.
    pub bytes: u64,
}

/// Why a dump or a load failed.
#[derive(Debug)]
pub enum DumpError {
    /// The store could not be opened.
    Store(StoreError),
    /// The output could not be written, or the input read.
    Io(io::Error),
    /// The metadata or an object could not be read.
    Fs(FsError),
    /// The stream is not a good dump.
    Stream(StreamError),
    /// An operation of the load failed at `path`.
    Load { path: String, op: &'static str, source: FsError },
    /// The store to load into holds a filesystem already.
    NotEmpty,
    /// The daemon is unmounting: the dump was cut short.
    Stopped,
    /// The daemon serving the store did not answer, or refused.
    Ctl(CtlError),
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Store(e) => write!(f, "{e}"),
            DumpError::Io(e) => write!(f, "{e}"),
            DumpError::Fs(e) => write!(f, "cannot read the filesystem: {e}"),
            DumpError::Stream(e) => write!(f, "{e}"),
            DumpError::Load { path, op, source } => write!(f, "loading {path}: {op} failed: {source}"),
            DumpError::NotEmpty => write!(
                f,
                "the store already holds files (its root directory has entries or extended attributes); \
                 load only fills a new or empty store"
            ),
            DumpError::Stopped => write!(f, "the daemon is unmounting; the dump was cut short"),
            DumpError::Ctl(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> Self {
        DumpError::Io(e)
    }
}

impl From<FsError> for DumpError {
    fn from(e: FsError) -> Self {
        DumpError::Fs(e)
    }
}

impl From<StreamError> for DumpError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Io(e) => DumpError::Io(e),
            e => DumpError::Stream(e),
        }
    }
}

impl DumpError {
    /// A structural error found by the loader, placed at the record it
    /// was read from.
    fn locate(self, offset: u64, record: u64) -> DumpError {
        match self {
            DumpError::Stream(StreamError::Corrupt { what, .. }) => {
                DumpError::Stream(StreamError::Corrupt { offset, record, what })
            }
            other => other,
        }
    }
}

/// The tree cache of a dump's read-only open: a walk touches each frame
/// about once, so a small cache serves it, and memory stays flat however
/// large the store (the engine's default is sized for serving).
const DUMP_CACHE_FRAMES: usize = 64;

/// Dump the store in `dir`, which no daemon serves read-write, to `out`:
/// a read-only open (shared lock, read-only tree and objects), so nothing
/// changes while it runs and nothing is written.
pub fn dump_store(
    dir: &Path,
    out: impl Write,
    opts: DumpOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<DumpReport, DumpError> {
    let ro = StoreOptions { read_only: true, cache_frames: DUMP_CACHE_FRAMES, ..StoreOptions::default() };
    let store = Store::open(dir, &ro).map_err(DumpError::Store)?;
    let meta = Meta::new(store.tree.clone());
    walk::write_dump(&meta, store.data.as_ref(), out, opts, progress, &|| false)
}

/// What a serving filesystem's dump walks: a snapshot of its metadata,
/// and a hold that keeps the objects of files deleted since from reclaim
/// until the walk is over. Hold first: a file deleted between the two
/// steps keeps its object too.
fn live_view(fs: &Fs) -> Result<(ReclaimHold<'_>, Meta), DumpError> {
    let hold = fs.hold_reclaims();
    let view = fs.meta().snapshot()?;
    Ok((hold, view))
}

/// Dump a serving filesystem (what the daemon answers a `dump` with,
/// without the socket). `stop` cuts it short.
#[cfg(test)]
pub(crate) fn dump_live(
    fs: &Fs,
    out: impl Write,
    opts: DumpOptions,
    progress: &mut dyn FnMut(Progress),
    stop: &dyn Fn() -> bool,
) -> Result<DumpReport, DumpError> {
    let (_hold, view) = live_view(fs)?;
    walk::write_dump(&view, fs.data(), out, opts, progress, stop)
}

/// Load the dump read from `input` into the store in `dir`, created if
/// new (like a first mount). The store must not be mounted (its lock is
/// taken) and must hold no files. Returns once everything loaded is on
/// stable storage.
pub fn load_store(dir: &Path, input: impl Read, progress: &mut dyn FnMut(Progress)) -> Result<Totals, DumpError> {
    let mut reader = format::StreamReader::new(input)?;
    let store = Store::open(dir, &StoreOptions::default()).map_err(DumpError::Store)?;
    if !is_empty(&Meta::new(store.tree.clone()))? {
        return Err(DumpError::NotEmpty);
    }
    let fs = Fs::from_store(store, FsConfig::default())?;
    let totals = load::load(&fs, &mut reader, progress)?;
    reader.expect_end()?;
    sync_file_system(dir)?;
    fs.shutdown()?;
    Ok(totals)
}

/// An empty store: no name and no xattr in its root (a tree never
/// formatted has neither).
fn is_empty(meta: &Meta) -> Result<bool, DumpError> {
    let mut empty = true;
    meta.scan_dir(Ino::ROOT, None, &mut |_, _| {
        empty = false;
        Ok(false)
    })?;
    meta.scan_each(&schema::xattr_prefix(Ino::ROOT), &mut |_, _| {
        empty = false;
        Ok(false)
    })?;
    Ok(empty)
}

/// Every object written so far reaches stable storage: one `syncfs` of
/// the file system holding the store, rather than an fsync per object.
fn sync_file_system(dir: &Path) -> io::Result<()> {
    let store = std::fs::File::open(dir)?;
    // SAFETY: syncfs on a live descriptor.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&store)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
