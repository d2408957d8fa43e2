//! Paths for messages, found only for the problems: a directory's path is
//! its name in the directory holding it, up to the root. Names come from
//! scanning that directory once; scanned directories are cached up to a
//! bound, so naming many problems costs one scan per directory involved.

use std::collections::HashMap;

use holt_core::{RangeEntry, Tree};

use super::scan::Census;
use super::{show_name, Plan, Problem, Progress, Ticker};
use crate::error::FsResult;
use crate::schema::{self, Dentry, FileKind, Ino};

/// Names held in the cache before it is emptied.
const CACHED_NAMES_MAX: usize = 1 << 18;
/// Deepest path followed (a cycle of directories never reaches the root).
const PATH_DEPTH_MAX: usize = 4096;

/// Finds the names of inodes, scanning each directory at most once per fill of its cache.
pub(super) struct Namer<'t> {
    tree: &'t Tree,
    /// Per scanned directory: (child, name) for each of its entries.
    dirs: HashMap<Ino, Vec<(Ino, Vec<u8>)>>,
    cached: usize,
}

impl<'t> Namer<'t> {
    pub fn new(tree: &'t Tree) -> Namer<'t> {
        Namer { tree, dirs: HashMap::new(), cached: 0 }
    }

    /// Every name `dir` gives `child`, in name order.
    pub fn names_of(&mut self, dir: Ino, child: Ino) -> FsResult<Vec<Vec<u8>>> {
        let entries = self.load(dir)?;
        Ok(entries.iter().filter(|(c, _)| *c == child).map(|(_, n)| n.clone()).collect())
    }

    fn load(&mut self, dir: Ino) -> FsResult<&Vec<(Ino, Vec<u8>)>> {
        if !self.dirs.contains_key(&dir) {
            if self.cached > CACHED_NAMES_MAX {
                self.dirs.clear();
                self.cached = 0;
            }
            let prefix = schema::dir_prefix(dir);
            let mut entries = Vec::new();
            for entry in self.tree.scan_prefix(&prefix) {
                if let RangeEntry::Key { key, value } = entry? {
                    if let Ok(d) = Dentry::decode(&key, &value) {
                        entries.push((d.ino, key[prefix.len()..].to_vec()));
                    }
                }
            }
            self.cached += entries.len();
            self.dirs.insert(dir, entries);
        }
        Ok(&self.dirs[&dir])
    }

    /// `/a/b` for a directory the root reaches through kept names.
    pub fn dir_path(&mut self, c: &Census, dir: Ino) -> FsResult<Option<String>> {
        let mut parts = Vec::new();
        let mut cur = dir;
        for _ in 0..PATH_DEPTH_MAX {
            if cur == Ino::ROOT {
                parts.reverse();
                return Ok(Some(format!("/{}", parts.join("/"))));
            }
            let parent = c.inodes.get(&cur).map_or(Ino(0), |f| f.first_parent);
            let Some(name) = self.first_name(parent, cur)? else { return Ok(None) };
            parts.push(show_name(&name));
            cur = parent;
        }
        Ok(None)
    }

    fn first_name(&mut self, dir: Ino, child: Ino) -> FsResult<Option<Vec<u8>>> {
        if dir == Ino(0) {
            return Ok(None);
        }
        Ok(self.names_of(dir, child)?.into_iter().next())
    }

    pub fn entry_path(&mut self, c: &Census, dir: Ino, name: &[u8]) -> FsResult<Option<String>> {
        Ok(self.dir_path(c, dir)?.map(|p| join(&p, name)))
    }

    /// A path of `ino`: a directory's own, or one of a file's names.
    pub fn inode_path(&mut self, c: &Census, ino: Ino) -> FsResult<Option<String>> {
        let Some(f) = c.inodes.get(&ino) else { return Ok(None) };
        if f.kind == FileKind::Dir {
            return self.dir_path(c, ino);
        }
        match self.first_name(f.first_parent, ino)? {
            Some(name) => self.entry_path(c, f.first_parent, &name),
            None => Ok(None),
        }
    }
}

fn join(dir: &str, name: &[u8]) -> String {
    match dir {
        "/" => format!("/{}", show_name(name)),
        _ => format!("{dir}/{}", show_name(name)),
    }
}

/// Fill in the path of every problem that has a place in the namespace.
pub(super) fn locate(c: &Census, tree: &Tree, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
    let mut namer = Namer::new(tree);
    let mut ticker = Ticker::new("paths", Some(plan.items.len() as u64), progress);
    for item in &mut plan.items {
        ticker.tick();
        match &mut item.problem {
            Problem::DentryUnreadable { at, .. }
            | Problem::DentryOutsideDir { at, .. }
            | Problem::DentryToMissingInode { at, .. }
            | Problem::DentryNameInvalid { at, .. }
            | Problem::DentryKindWrong { at, .. }
            | Problem::RootHasName { at }
            | Problem::DirExtraName { at, .. }
            | Problem::DirCycle { at, .. } => at.path = namer.entry_path(c, at.dir, &at.name)?,
            Problem::DirParentWrong { ino, path, .. }
            | Problem::NlinkWrong { ino, path, .. }
            | Problem::FileSizeInInode { ino, path, .. } => *path = namer.inode_path(c, *ino)?,
            _ => {}
        }
    }
    ticker.finish();
    Ok(())
}
