//! Writing a dump: a depth-first walk of a fixed view of the metadata, in
//! name order, with each regular file's contents read from its object.
//!
//! Order (what makes two dumps of the same namespace byte-identical): a
//! directory's Inode record, its Xattr records in name order, then its
//! entries in name order (bytewise, as `D/` keys sort), each an Inode
//! record (and for a directory everything under it) or a Link record,
//! then End. Inodes are numbered 1, 2, ... in the order they are met, so
//! numbers depend only on the namespace, never on inode numbers.
//!
//! Memory: the stack of open directories, each with at most
//! `ENTRIES_PER_REFILL` names read ahead, and the inodes met with names
//! still to come (`links`: only non-directories with nlink > 1, each
//! dropped once its last name is written). Nothing grows with the number
//! of files.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use super::format::{StreamWriter, InodeRecord, Record, Totals, DATA_CHUNK_BYTES, FLAG_META_ONLY, FLAG_NO_CTIME};
use super::{DumpError, DumpOptions, DumpReport, Progress};
use crate::data::{DataStore, ObjectReader, SeekKind};
use crate::error::FsError;
use crate::meta::Meta;
use crate::schema::{self, Dentry, FileKind, Ino, Inode, Timespec};

/// Names read from a directory per scan.
const ENTRIES_PER_REFILL: usize = 128;
/// Inodes written between two looks at the stop flag.
const INODES_PER_STOP_CHECK: u64 = 1024;
/// Paths of files that changed while read kept for the report.
const CHANGED_PATHS_MAX: usize = 20;

/// One open directory of the walk.
struct Level {
    dir: Ino,
    /// The last name taken from `pending` (the one being walked below, for
    /// every level but the innermost).
    name: Vec<u8>,
    pending: VecDeque<(Vec<u8>, Dentry)>,
    /// The scan reached the directory's end.
    drained: bool,
}

/// What the walk meets next.
enum Step {
    Entry(Vec<u8>, Dentry),
    /// The innermost directory has no more entries.
    EndOfDir,
    /// The root is closed.
    Done,
}

impl Level {
    fn new(dir: Ino) -> Level {
        Level { dir, name: Vec::new(), pending: VecDeque::new(), drained: false }
    }
}

struct Walker<'a, W: Write> {
    view: &'a Meta,
    data: &'a dyn DataStore,
    out: StreamWriter<W>,
    opts: DumpOptions,
    stack: Vec<Level>,
    /// Inodes with names still to come: its stream id and how many.
    links: HashMap<Ino, (u64, u32)>,
    totals: Totals,
    report: DumpReport,
    chunk: Vec<u8>,
    progress: &'a mut dyn FnMut(Progress),
    stop: &'a dyn Fn() -> bool,
}

/// Write the dump of `view` (which must not change while it is walked:
/// a snapshot or a read-only open) and of the objects in `data`.
pub(super) fn write_dump<W: Write>(
    view: &Meta,
    data: &dyn DataStore,
    out: W,
    opts: DumpOptions,
    progress: &mut dyn FnMut(Progress),
    stop: &dyn Fn() -> bool,
) -> Result<DumpReport, DumpError> {
    let mut w = Walker {
        view,
        data,
        out: StreamWriter::new(out)?,
        opts,
        stack: Vec::new(),
        links: HashMap::new(),
        totals: Totals::default(),
        report: DumpReport::default(),
        chunk: Vec::new(),
        progress,
        stop,
    };
    let flags = (u32::from(opts.meta_only) * FLAG_META_ONLY) | (u32::from(opts.no_ctime) * FLAG_NO_CTIME);
    w.out.write(&Record::Header { flags })?;
    if let Err(e) = w.walk() {
        // Say why in the stream, so its reader reports the cause rather
        // than a truncation; pointless when the output itself failed.
        if !matches!(e, DumpError::Io(_)) {
            let _ = w.out.write(&Record::Abort { message: e.to_string() });
            let _ = w.out.flush();
        }
        return Err(e);
    }
    w.out.write(&Record::Trailer(w.totals))?;
    w.out.flush()?;
    w.report.totals = w.totals;
    w.report.stream_bytes = w.out.bytes();
    Ok(w.report)
}

impl<W: Write> Walker<'_, W> {
    fn walk(&mut self) -> Result<(), DumpError> {
        let root = self.view.inode(Ino::ROOT)?;
        self.inode(Ino::ROOT, &root, b"")?;
        self.stack.push(Level::new(Ino::ROOT));
        loop {
            let (name, d) = match self.next_step()? {
                Step::Done => return Ok(()),
                Step::EndOfDir => {
                    self.out.write(&Record::End)?;
                    self.stack.pop();
                    continue;
                }
                Step::Entry(name, d) => (name, d),
            };
            self.totals.names += 1;
            if let Some(id) = self.another_name(d.ino) {
                self.out.write(&Record::Link { id, name })?;
                continue;
            }
            let inode = self.view.inode(d.ino).map_err(|e| self.dangling(e, d.ino))?;
            self.check_reached(d.ino, &inode)?;
            self.inode(d.ino, &inode, &name)?;
            if inode.kind == FileKind::Dir {
                self.stack.push(Level::new(d.ino));
            }
        }
    }

    /// A directory is entered only from the parent it records, and the
    /// root never: so a damaged tree cannot send the walk round a cycle.
    fn check_reached(&self, ino: Ino, inode: &Inode) -> Result<(), DumpError> {
        let from = self.stack.last().map(|l| l.dir);
        if inode.kind != FileKind::Dir || (ino != Ino::ROOT && Some(inode.parent) == from) {
            return Ok(());
        }
        Err(DumpError::Fs(FsError::Corrupt {
            key: schema::inode_key(ino),
            what: "a directory named in a directory it does not record as its parent (run holt-fs fsck)",
        }))
    }

    /// The next entry of the innermost directory, refilling its read-ahead.
    fn next_step(&mut self) -> Result<Step, DumpError> {
        let view = self.view;
        let Some(level) = self.stack.last_mut() else { return Ok(Step::Done) };
        if level.pending.is_empty() && !level.drained {
            let after = (!level.name.is_empty()).then_some(level.name.as_slice());
            let pending = &mut level.pending;
            view.scan_dir(level.dir, after, &mut |name, d| {
                pending.push_back((name.to_vec(), d));
                Ok(pending.len() < ENTRIES_PER_REFILL)
            })?;
            level.drained = level.pending.len() < ENTRIES_PER_REFILL;
        }
        let Some((name, d)) = level.pending.pop_front() else { return Ok(Step::EndOfDir) };
        level.name.clone_from(&name);
        Ok(Step::Entry(name, d))
    }

    /// The stream id of `ino` if it was met before under another name.
    fn another_name(&mut self, ino: Ino) -> Option<u64> {
        let (id, left) = self.links.get_mut(&ino)?;
        let id = *id;
        *left -= 1;
        if *left == 0 {
            self.links.remove(&ino);
        }
        Some(id)
    }

    /// A dentry naming no inode: the view is damaged (`holt-fs fsck`).
    fn dangling(&self, e: FsError, ino: Ino) -> DumpError {
        match e {
            FsError::NotFound => DumpError::Fs(FsError::Corrupt {
                key: schema::inode_key(ino),
                what: "a directory entry names an inode that does not exist (run holt-fs fsck)",
            }),
            e => DumpError::Fs(e),
        }
    }

    /// The Inode record of `ino` met as `name`, its xattrs and contents.
    fn inode(&mut self, ino: Ino, inode: &Inode, name: &[u8]) -> Result<(), DumpError> {
        self.totals.inodes += 1;
        let id = self.totals.inodes;
        if inode.kind != FileKind::Dir && inode.nlink > 1 {
            self.links.insert(ino, (id, inode.nlink - 1));
        }
        let reader = match inode.kind {
            FileKind::File => self.data.open_reader(ino).map_err(|e| FsError::data("dump", ino, e))?,
            _ => None,
        };
        let mut record = self.record(id, inode, name);
        if let Some(r) = &reader {
            let st = r.stat().map_err(|e| FsError::data("dump", ino, e))?;
            (record.size, record.atime, record.mtime) = (st.size, st.atime, st.mtime);
            record.ctime = if self.opts.no_ctime { Timespec::default() } else { st.ctime };
        }
        let (size, mtime) = (record.size, record.mtime);
        self.out.write(&Record::Inode(record))?;
        self.xattrs(ino)?;
        if let Some(r) = reader.filter(|_| !self.opts.meta_only) {
            self.contents(ino, r.as_ref(), size, mtime)?;
        }
        (self.progress)(Progress { inodes: self.totals.inodes, bytes: self.out.bytes() });
        if self.totals.inodes.is_multiple_of(INODES_PER_STOP_CHECK) && (self.stop)() {
            return Err(DumpError::Stopped);
        }
        Ok(())
    }

    fn record(&self, id: u64, inode: &Inode, name: &[u8]) -> InodeRecord {
        // A regular file without an object is empty (a create killed
        // between its two steps), with the times its inode holds.
        let size = if inode.kind == FileKind::File { 0 } else { inode.size };
        InodeRecord {
            id,
            kind: inode.kind,
            perm: inode.perm,
            uid: inode.uid,
            gid: inode.gid,
            rdev: inode.rdev,
            nlink: inode.nlink,
            size,
            atime: inode.atime,
            mtime: inode.mtime,
            ctime: if self.opts.no_ctime { Timespec::default() } else { inode.ctime },
            name: name.to_vec(),
            target: inode.target.clone(),
        }
    }

    fn xattrs(&mut self, ino: Ino) -> Result<(), DumpError> {
        let prefix = schema::xattr_prefix(ino);
        let out = &mut self.out;
        let mut failed = None;
        self.view.scan_each(&prefix, &mut |key, value| {
            let record = Record::Xattr { name: key[prefix.len()..].to_vec(), value: value.to_vec() };
            if let Err(e) = out.write(&record) {
                failed = Some(e);
                return Ok(false);
            }
            Ok(true)
        })?;
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Data records for every data extent of the object below `size`, as
    /// it reads now; a file whose size or mtime moves meanwhile is counted
    /// (and named) as changed while read.
    fn contents(
        &mut self,
        ino: Ino,
        r: &dyn ObjectReader,
        size: u64,
        mtime: Timespec,
    ) -> Result<(), DumpError> {
        let io = |e| FsError::data("dump", ino, e);
        let mut off = 0;
        while off < size {
            let Some(start) = r.seek(off, SeekKind::Data).map_err(io)?.filter(|&s| s < size) else { break };
            let end = r.seek(start, SeekKind::Hole).map_err(io)?.unwrap_or(size).min(size);
            if !self.extent(r, start, end).map_err(io)? {
                break;
            }
            off = end;
        }
        let after = r.stat().map_err(io)?;
        if after.size != size || after.mtime != mtime {
            self.changed_while_read();
        }
        Ok(())
    }

    /// `[start, end)` as Data records; false if the object ended early.
    fn extent(&mut self, r: &dyn ObjectReader, start: u64, end: u64) -> std::io::Result<bool> {
        let mut pos = start;
        while pos < end {
            let want = (end - pos).min(DATA_CHUNK_BYTES as u64) as usize;
            self.chunk.resize(want, 0);
            let got = r.read_at(pos, &mut self.chunk)?;
            if got > 0 {
                self.chunk.truncate(got);
                let record = Record::Data { offset: pos, bytes: std::mem::take(&mut self.chunk) };
                let written = self.out.write(&record);
                if let Record::Data { bytes, .. } = record {
                    self.chunk = bytes;
                }
                written?;
                self.totals.data_bytes += got as u64;
                (self.progress)(Progress { inodes: self.totals.inodes, bytes: self.out.bytes() });
            }
            if got < want {
                return Ok(false);
            }
            pos += got as u64;
        }
        Ok(true)
    }

    /// Count a file that changed while read, and keep its path (the
    /// names the stack is walking, the innermost being the file's).
    fn changed_while_read(&mut self) {
        self.report.changed_while_read += 1;
        if self.report.changed_paths.len() < CHANGED_PATHS_MAX {
            let mut path: Vec<u8> = Vec::new();
            for level in &self.stack {
                path.push(b'/');
                path.extend_from_slice(&level.name);
            }
            self.report.changed_paths.push(String::from_utf8_lossy(&path).into_owned());
        }
    }
}
