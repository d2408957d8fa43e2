//! Directory streams: opendir, readdir(plus), releasedir, fsyncdir.
//!
//! A listing is a scan of `D/<dir>/` resumed with `start_after(last name)`,
//! never a position in the current listing. Each handle hands out offsets
//! 1 (`.`), 2 (`..`), then one per name (`dir_offsets`), and remembers the
//! name of every offset it handed out; resuming at an offset resumes after
//! that name. So an entry present for the whole listing is returned exactly
//! once however the directory changes, and every offset stays valid for the
//! handle's life (telldir/seekdir back to any earlier position works).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::dir_offsets::NameLog;
use super::Fs;
use crate::error::{FsError, FsResult};
use crate::schema::{FileKind, Ino, Inode};

const DOT_OFFSET: u64 = 1;
const DOTDOT_OFFSET: u64 = 2;

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileKind,
    pub name: Vec<u8>,
    /// Pass this back to resume after this entry.
    pub offset: u64,
    /// Attributes, for readdirplus.
    pub attr: Option<Inode>,
}

struct Cursor {
    ino: Ino,
    names: NameLog,
}

#[derive(Default)]
pub(super) struct DirHandles {
    cursors: Mutex<HashMap<u64, Arc<Mutex<Cursor>>>>,
}

/// Where a readdir call starts: `After` the name of an offset (`None`:
/// the first name), with that offset.
enum Resume {
    Dot,
    DotDot,
    After(Option<(u64, Vec<u8>)>),
}

impl Fs {
    pub fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let inode = self.open_inode(ino, false)?;
        if inode.kind != FileKind::Dir {
            self.close_inode(ino)?;
            return Err(FsError::NotDir);
        }
        let fh = self.new_fh();
        let cursor = Cursor { ino, names: NameLog::default() };
        self.dirs.cursors.lock().insert(fh, Arc::new(Mutex::new(cursor)));
        Ok(fh)
    }

    pub fn releasedir(&self, ino: Ino, fh: u64) -> FsResult<()> {
        self.dirs.cursors.lock().remove(&fh).ok_or(FsError::BadHandle(fh))?;
        self.close_inode(ino)
    }

    pub fn fsyncdir(&self, _ino: Ino, _fh: u64) -> FsResult<()> {
        self.meta.sync()
    }

    /// Emit entries after `offset` until `emit` returns false (its buffer is
    /// full; that entry was not taken) or the directory ends.
    pub fn readdir(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        plus: bool,
        emit: &mut dyn FnMut(&DirEntry) -> bool,
    ) -> FsResult<()> {
        let cursor = self.dirs.cursors.lock().get(&fh).cloned().ok_or(FsError::BadHandle(fh))?;
        let mut cursor = cursor.lock();
        if cursor.ino != ino {
            return Err(FsError::BadHandle(fh));
        }
        let dir = self.meta.inode(ino)?;
        if dir.nlink == 0 {
            return Ok(());
        }
        let resume = match offset {
            0 => Resume::Dot,
            DOT_OFFSET => Resume::DotDot,
            DOTDOT_OFFSET => Resume::After(None),
            o => Resume::After(Some((o, cursor.names.name(o).ok_or(FsError::Invalid("unknown directory offset"))?.to_vec()))),
        };
        if offset == 0 {
            self.touch_atime(ino);
        }
        let after = match resume {
            Resume::Dot | Resume::DotDot => {
                if !self.emit_dots(ino, &dir, plus, matches!(resume, Resume::Dot), emit)? {
                    return Ok(());
                }
                None
            }
            Resume::After(name) => name,
        };
        self.emit_names(&mut cursor, after, plus, emit)
    }

    /// `.` (unless starting at `..`) and `..`; false if the buffer filled.
    fn emit_dots(&self, ino: Ino, dir: &Inode, plus: bool, with_dot: bool, emit: &mut dyn FnMut(&DirEntry) -> bool) -> FsResult<bool> {
        let mut dots = Vec::with_capacity(2);
        if with_dot {
            dots.push((ino, b".".to_vec(), DOT_OFFSET, dir.clone()));
        }
        let parent = if plus { self.meta.inode(dir.parent)? } else { dir.clone() };
        dots.push((dir.parent, b"..".to_vec(), DOTDOT_OFFSET, parent));
        for (ino, name, offset, inode) in dots {
            let entry = DirEntry { ino, kind: FileKind::Dir, name, offset, attr: plus.then_some(inode) };
            if !emit(&entry) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn emit_names(&self, cursor: &mut Cursor, after: Option<(u64, Vec<u8>)>, plus: bool, emit: &mut dyn FnMut(&DirEntry) -> bool) -> FsResult<()> {
        let dir_ino = cursor.ino;
        let (mut prev, after) = match after {
            Some((offset, name)) => (Some(offset), Some(name)),
            None => (None, None),
        };
        self.meta.scan_dir(dir_ino, after.as_deref(), &mut |name, d| {
            let attr = if plus {
                match self.meta.inode(d.ino).and_then(|inode| self.attr(d.ino, inode)) {
                    Ok(attr) => Some(attr.inode),
                    // Removed since the scan saw its name: as if the scan had missed it.
                    Err(FsError::NotFound) => return Ok(true),
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            let offset = cursor.names.record(prev, name);
            let entry = DirEntry { ino: d.ino, kind: d.kind, name: name.to_vec(), offset, attr };
            if !emit(&entry) {
                return Ok(false);
            }
            prev = Some(offset);
            Ok(true)
        })
    }
}
