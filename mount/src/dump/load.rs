//! Loading a dump: each record becomes the `Fs` operations a user would
//! make (mkdir, create, write, symlink, mknod, link, setxattr, setattr),
//! so every key is written by the layer that owns it.
//!
//! Order: a node's attributes are set once nothing in the stream can
//! change them any more: a non-directory's when the next record that is
//! not its Xattr or Data arrives (after its size is set, so the mtime
//! sticks), a directory's at its End (after its entries, whose creation
//! moved its mtime). Owner and mode are given at creation (as the
//! creator and the create mode) and set again only where the filesystem
//! chose otherwise (a setgid parent). ctimes are never set: the kernel
//! stamps a file's, the operations stamp the others'.
//!
//! Nothing is inherited: a directory's default ACL is set at its End,
//! after its entries exist, so no entry is created under a default ACL
//! (which would give it ACLs and a mode the stream does not hold), and
//! creates pass umask 0. Each inode gets exactly the xattrs its records
//! carry.
//!
//! Memory: the stack of open directories and the inodes whose names are
//! still to come (`links`, dropped at their last name).

use std::collections::HashMap;
use std::io::Read;

use super::format::{InodeRecord, Record, StreamError, StreamReader, Totals, FLAG_META_ONLY};
use super::{DumpError, Progress};
use crate::error::{FsError, FsResult};
use crate::fs::{Attr, Caller, Fs, OpenFlags, SetAttr, TimeSet, XattrFlags, DEFAULT_ACL_XATTR};
use crate::schema::{FileKind, Ino};

/// An open directory: its record (attributes set at End; the name makes
/// paths for messages) and its default ACL, also set at End.
struct OpenDir {
    ino: Ino,
    record: InodeRecord,
    default_acl: Option<Vec<u8>>,
}

/// A node whose records are being read: its Xattr and Data records follow.
struct Node {
    ino: Ino,
    record: InodeRecord,
    /// End of the last Data record (a file's bytes are written in order).
    data_end: u64,
}

struct Loader<'a> {
    fs: &'a Fs,
    meta_only: bool,
    /// Open directories, the root first.
    dirs: Vec<OpenDir>,
    current: Option<Node>,
    /// Stream ids of inodes with names to come: their inode, how many.
    links: HashMap<u64, (Ino, u32)>,
    totals: Totals,
    trailer: Option<Totals>,
    progress: &'a mut dyn FnMut(Progress),
}

/// Recreate in `fs` (whose root is empty) everything `reader` holds.
pub(super) fn load<R: Read>(
    fs: &Fs,
    reader: &mut StreamReader<R>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Totals, DumpError> {
    let flags = match reader.next_record()? {
        Some(Record::Header { flags }) => flags,
        // The reader returns a header first or fails; say so if it did not.
        _ => return Err(corrupt("the stream does not open with a header".into())),
    };
    let mut l = Loader {
        fs,
        meta_only: flags & FLAG_META_ONLY != 0,
        dirs: Vec::new(),
        current: None,
        links: HashMap::new(),
        totals: Totals::default(),
        trailer: None,
        progress,
    };
    while let Some(record) = reader.next_record()? {
        let at = reader.offset();
        l.apply(record).map_err(|e| e.locate(at, reader.records()))?;
        (l.progress)(Progress { inodes: l.totals.inodes, bytes: at });
    }
    let trailer = l.trailer.expect("the reader ends only after a trailer");
    if trailer != l.totals {
        let what = format!("its trailer counts {trailer:?} but it holds {:?}", l.totals);
        return Err(corrupt(what).locate(reader.offset(), reader.records()));
    }
    Ok(l.totals)
}

/// A record that breaks the stream's structure (offset filled in later).
fn corrupt(what: String) -> DumpError {
    DumpError::Stream(StreamError::Corrupt { offset: 0, record: 0, what })
}

impl Loader<'_> {
    fn apply(&mut self, record: Record) -> Result<(), DumpError> {
        match record {
            Record::Inode(r) => {
                self.finish()?;
                self.inode(r)
            }
            Record::Link { id, name } => {
                self.finish()?;
                self.link(id, &name)
            }
            Record::Xattr { name, value } => self.xattr(&name, &value),
            Record::Data { offset, bytes } => self.data(offset, &bytes),
            Record::End => {
                self.finish()?;
                self.end()
            }
            Record::Trailer(totals) => {
                self.finish()?;
                self.trailer = Some(totals);
                match self.dirs.is_empty() && self.totals.inodes > 0 {
                    true => Ok(()),
                    false => Err(corrupt("the trailer comes before every directory is closed".into())),
                }
            }
            // The reader refuses a second header and returns an abort as an error.
            Record::Header { .. } | Record::Abort { .. } => Err(corrupt("a header or abort inside the stream".into())),
        }
    }

    /// The path of `name` in the innermost open directory, for messages.
    fn path(&self, name: &[u8]) -> String {
        let mut path = Vec::new();
        for dir in self.dirs.iter().skip(1) {
            path.push(b'/');
            path.extend_from_slice(&dir.record.name);
        }
        path.push(b'/');
        path.extend_from_slice(name);
        String::from_utf8_lossy(&path).into_owned()
    }

    fn failed(&self, op: &'static str, name: &[u8], source: FsError) -> DumpError {
        DumpError::Load { path: self.path(name), op, source }
    }

    fn inode(&mut self, r: InodeRecord) -> Result<(), DumpError> {
        if r.id != self.totals.inodes + 1 {
            return Err(corrupt(format!("inode id {} where {} comes next", r.id, self.totals.inodes + 1)));
        }
        let ino = match self.dirs.last() {
            None if self.totals.inodes == 0 && r.kind == FileKind::Dir && r.name.is_empty() => Ino::ROOT,
            None => return Err(corrupt("the first inode is not the root directory, or a second root".into())),
            Some(_) if r.name.is_empty() => return Err(corrupt("an inode without a name below the root".into())),
            Some(dir) => {
                let parent = dir.ino;
                let attr = self.create(parent, &r).map_err(|e| self.failed("create", &r.name, e))?;
                self.fix_owner_and_mode(&attr, &r).map_err(|e| self.failed("chown/chmod", &r.name, e))?;
                self.totals.names += 1;
                attr.ino
            }
        };
        self.totals.inodes += 1;
        if r.kind != FileKind::Dir && r.nlink > 1 {
            self.links.insert(r.id, (ino, r.nlink - 1));
        }
        if r.kind == FileKind::Dir {
            self.dirs.push(OpenDir { ino, record: r.clone(), default_acl: None });
        }
        self.current = Some(Node { ino, record: r, data_end: 0 });
        Ok(())
    }

    /// Make the node, owned by the record's owner with its mode.
    fn create(&self, parent: Ino, r: &InodeRecord) -> FsResult<Attr> {
        let fs = self.fs;
        let caller = Caller { uid: r.uid, gid: r.gid, umask: 0 };
        let perm = u32::from(r.perm);
        match r.kind {
            FileKind::Dir => fs.mkdir(caller, parent, &r.name, perm),
            FileKind::Symlink => fs.symlink(caller, parent, &r.name, &r.target),
            FileKind::File => {
                let flags = OpenFlags { write: true, read_write: false, exclusive: true, truncate: false };
                let (attr, fh) = fs.create(caller, parent, &r.name, perm, flags)?;
                fs.release(attr.ino, fh)?;
                Ok(attr)
            }
            kind => fs.mknod(caller, parent, &r.name, kind.mode_bits() | perm, r.rdev),
        }
    }

    /// A setgid parent gives its group (and, to directories, its setgid
    /// bit): put back what the record says. Symlinks' modes are fixed.
    fn fix_owner_and_mode(&self, attr: &Attr, r: &InodeRecord) -> FsResult<()> {
        let i = &attr.inode;
        let mode = (r.kind != FileKind::Symlink && i.perm != r.perm).then_some(u32::from(r.perm));
        if i.uid == r.uid && i.gid == r.gid && mode.is_none() {
            return Ok(());
        }
        let set = SetAttr { mode, uid: Some(r.uid), gid: Some(r.gid), ..SetAttr::default() };
        self.fs.setattr(attr.ino, &set).map(|_| ())
    }

    fn link(&mut self, id: u64, name: &[u8]) -> Result<(), DumpError> {
        let Some(parent) = self.dirs.last().map(|d| d.ino) else {
            return Err(corrupt("a link outside every directory".into()));
        };
        let Some((ino, left)) = self.links.get_mut(&id) else {
            return Err(corrupt(format!("a link to inode id {id}, which has no names left to give")));
        };
        let ino = *ino;
        *left -= 1;
        if *left == 0 {
            self.links.remove(&id);
        }
        self.fs.link(ino, parent, name).map_err(|e| self.failed("link", name, e))?;
        self.totals.names += 1;
        Ok(())
    }

    fn xattr(&mut self, name: &[u8], value: &[u8]) -> Result<(), DumpError> {
        let Some(node) = &self.current else {
            return Err(corrupt("an xattr record that follows no inode record".into()));
        };
        if name == DEFAULT_ACL_XATTR && node.record.kind == FileKind::Dir {
            let dir = self.dirs.last_mut().expect("a directory's inode record opened it");
            dir.default_acl = Some(value.to_vec());
            return Ok(());
        }
        let set = self.fs.setxattr(node.ino, name, value, XattrFlags::default());
        set.map_err(|e| self.failed("setxattr", &node.record.name, e))
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> Result<(), DumpError> {
        let end = offset + bytes.len() as u64;
        let fits = |n: &Node| n.record.kind == FileKind::File && offset >= n.data_end && end <= n.record.size;
        let Some(node) = self.current.as_mut().filter(|n| fits(n) && !self.meta_only) else {
            return Err(corrupt(format!("data at {offset}..{end} that belongs to no file's unwritten range")));
        };
        node.data_end = end;
        let (ino, fs) = (node.ino, self.fs);
        fs.write(ino, offset, bytes).map_err(|e| self.failed("write", &self.current_name(), e))?;
        self.totals.data_bytes += bytes.len() as u64;
        Ok(())
    }

    fn current_name(&self) -> Vec<u8> {
        self.current.as_ref().map(|n| n.record.name.clone()).unwrap_or_default()
    }

    /// The current node is complete: set a file's size (the holes past
    /// its last data) and a non-directory's times.
    fn finish(&mut self) -> Result<(), DumpError> {
        let Some(node) = self.current.take() else { return Ok(()) };
        let r = &node.record;
        if r.kind == FileKind::Dir {
            return Ok(());
        }
        let size = (r.kind == FileKind::File && r.size > node.data_end).then_some(r.size);
        let set = SetAttr { size, ..times(r) };
        self.fs.setattr(node.ino, &set).map_err(|e| self.failed("utimens", &r.name, e))?;
        Ok(())
    }

    /// Close the innermost directory: its default ACL and times, now that
    /// its entries exist.
    fn end(&mut self) -> Result<(), DumpError> {
        let Some(dir) = self.dirs.pop() else {
            return Err(corrupt("an End with no directory open".into()));
        };
        let name = &dir.record.name;
        if let Some(acl) = &dir.default_acl {
            let set = self.fs.setxattr(dir.ino, DEFAULT_ACL_XATTR, acl, XattrFlags::default());
            set.map_err(|e| self.failed("setxattr", name, e))?;
        }
        let set = self.fs.setattr(dir.ino, &times(&dir.record));
        set.map_err(|e| self.failed("utimens", name, e)).map(|_| ())
    }
}

fn times(r: &InodeRecord) -> SetAttr {
    SetAttr { atime: Some(TimeSet::At(r.atime)), mtime: Some(TimeSet::At(r.mtime)), ..SetAttr::default() }
}
