//! The inode table of holt-nullfs: every inode in one `HashMap` behind one
//! mutex (the adapter holds it for the length of one call), a file's bytes
//! in a `Vec<u8>`, a directory's entries in a map by name and a map by
//! cookie. Methods take plain values and fuser's inode numbers and
//! attribute types, and return `Result<_, Fail>`; the adapter turns a
//! `Fail` into an errno in one place. Requests and replies are the
//! adapter's: this module sees none.
//!
//! Invariants (checked by `check_invariants` in the tests):
//! - a node lives while it has a name (`nlink > 0`) or the kernel holds a
//!   lookup of it (`lookups > 0`), so a file unlinked while open stays
//!   readable until its last forget;
//! - a directory's `nlink` is 2 plus its child directories while it has a
//!   name, and 0 after rmdir;
//! - a directory's two maps hold the same entries, and cookies only grow,
//!   so a readdir resumed after removals neither skips nor repeats a name.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::ops::Bound;
use std::path::PathBuf;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo as Ino};

/// The root directory; never dropped.
pub const ROOT: Ino = Ino::ROOT;
/// Cookies of `.` and `..`; a directory's own entries come after them.
const DOT_COOKIE: u64 = 1;
const DOTDOT_COOKIE: u64 = 2;
/// Size a directory reports, and the block size of every node.
const BLOCK_BYTES: u32 = 4096;

/// Why an operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    NotFound,
    Exists,
    NotEmpty,
    NotDir,
    IsDir,
    /// Not an operation on this kind of node (read of a symlink, ...).
    Invalid,
    /// A hard link to a directory.
    NotPermitted,
}

/// A node to create. `target` is a symlink's; `None` for other kinds.
pub struct New {
    pub kind: FileType,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub target: Option<PathBuf>,
}

/// The attributes a setattr changes; `None` leaves one as it is.
#[derive(Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// One directory entry, as readdir hands it to the adapter.
pub struct Entry<'a> {
    pub cookie: u64,
    pub name: &'a OsStr,
    pub attr: FileAttr,
}

struct Dir {
    parent: Ino,
    by_name: HashMap<OsString, (u64, Ino)>,
    by_cookie: BTreeMap<u64, (OsString, Ino)>,
    next_cookie: u64,
}

enum Body {
    File(Vec<u8>),
    Dir(Dir),
    Symlink(PathBuf),
    Special,
}

struct Node {
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    rdev: u32,
    nlink: u32,
    lookups: u64,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    body: Body,
}

impl Node {
    fn new(new: New, parent: Ino) -> Node {
        let now = SystemTime::now();
        let (nlink, body) = match new.kind {
            FileType::RegularFile => (1, Body::File(Vec::new())),
            FileType::Directory => (2, Body::Dir(Dir::new(parent))),
            FileType::Symlink => (1, Body::Symlink(new.target.unwrap_or_default())),
            _ => (1, Body::Special),
        };
        let (perm, uid, gid, rdev) = (new.perm, new.uid, new.gid, new.rdev);
        Node { kind: new.kind, perm, uid, gid, rdev, nlink, lookups: 0, atime: now, mtime: now, ctime: now, body }
    }

    fn attr(&self, ino: Ino) -> FileAttr {
        let size = match &self.body {
            Body::File(data) => data.len() as u64,
            Body::Dir(_) => u64::from(BLOCK_BYTES),
            Body::Symlink(target) => target.as_os_str().len() as u64,
            Body::Special => 0,
        };
        let (kind, perm, nlink, uid, gid, rdev) = (self.kind, self.perm, self.nlink, self.uid, self.gid, self.rdev);
        let (atime, mtime, ctime, blocks) = (self.atime, self.mtime, self.ctime, size.div_ceil(512));
        let (crtime, blksize, flags) = (ctime, BLOCK_BYTES, 0);
        FileAttr { ino, size, blocks, atime, mtime, ctime, crtime, kind, perm, nlink, uid, gid, rdev, blksize, flags }
    }

    fn dir_mut(&mut self) -> &mut Dir {
        match &mut self.body {
            Body::Dir(dir) => dir,
            _ => unreachable!("the caller checked that this node is a directory"),
        }
    }
}

impl Dir {
    fn new(parent: Ino) -> Dir {
        Dir { parent, by_name: HashMap::new(), by_cookie: BTreeMap::new(), next_cookie: DOTDOT_COOKIE + 1 }
    }
}

/// Every inode of the filesystem.
pub struct Table {
    nodes: HashMap<Ino, Node>,
    next_ino: u64,
}

impl Table {
    /// A table holding only the root directory, owned by `uid`/`gid`.
    pub fn new(uid: u32, gid: u32) -> Table {
        let root = New { kind: FileType::Directory, perm: 0o755, uid, gid, rdev: 0, target: None };
        let mut root = Node::new(root, ROOT);
        root.lookups = 1; // the kernel's own reference, never forgotten
        Table { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT.0 + 1 }
    }

    fn node(&self, ino: Ino) -> Result<&Node, Fail> {
        self.nodes.get(&ino).ok_or(Fail::NotFound)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Fail> {
        self.nodes.get_mut(&ino).ok_or(Fail::NotFound)
    }

    fn dir(&self, ino: Ino) -> Result<&Dir, Fail> {
        match &self.node(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            _ => Err(Fail::NotDir),
        }
    }

    fn child(&self, parent: Ino, name: &OsStr) -> Result<Ino, Fail> {
        self.dir(parent)?.by_name.get(name).map(|&(_, ino)| ino).ok_or(Fail::NotFound)
    }

    fn kind(&self, ino: Ino) -> FileType {
        self.nodes[&ino].kind
    }

    /// The kernel now holds one more lookup of `ino` (a named node).
    fn looked_up(&mut self, ino: Ino) -> FileAttr {
        let node = self.nodes.get_mut(&ino).expect("a named inode is in the table");
        node.lookups += 1;
        node.attr(ino)
    }

    fn drop_if_unused(&mut self, ino: Ino) {
        if self.nodes.get(&ino).is_some_and(|n| n.nlink == 0 && n.lookups == 0) {
            self.nodes.remove(&ino);
        }
    }

    /// Add `name` → `ino` to `parent` (a checked directory without `name`).
    fn add_entry(&mut self, parent: Ino, name: &OsStr, ino: Ino, is_dir: bool) {
        let node = self.nodes.get_mut(&parent).expect("the caller checked the parent");
        let now = SystemTime::now();
        (node.mtime, node.ctime) = (now, now);
        node.nlink += u32::from(is_dir);
        let dir = node.dir_mut();
        let cookie = dir.next_cookie;
        dir.next_cookie += 1;
        dir.by_name.insert(name.to_os_string(), (cookie, ino));
        dir.by_cookie.insert(cookie, (name.to_os_string(), ino));
    }

    /// Remove `name` from `parent` (a checked entry).
    fn remove_entry(&mut self, parent: Ino, name: &OsStr, is_dir: bool) {
        let node = self.nodes.get_mut(&parent).expect("the caller checked the parent");
        let now = SystemTime::now();
        (node.mtime, node.ctime) = (now, now);
        node.nlink -= u32::from(is_dir);
        let dir = node.dir_mut();
        let (cookie, _) = dir.by_name.remove(name).expect("the caller checked the entry");
        dir.by_cookie.remove(&cookie);
    }

    /// `ino` lost a name: a directory loses all its links at once.
    fn unlinked(&mut self, ino: Ino) {
        let node = self.nodes.get_mut(&ino).expect("an entry's inode is in the table");
        node.nlink = if node.kind == FileType::Directory { 0 } else { node.nlink - 1 };
        node.ctime = SystemTime::now();
        self.drop_if_unused(ino);
    }

    pub fn lookup(&mut self, parent: Ino, name: &OsStr) -> Result<FileAttr, Fail> {
        let ino = self.child(parent, name)?;
        Ok(self.looked_up(ino))
    }

    pub fn forget(&mut self, ino: Ino, lookups: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(lookups);
        }
        self.drop_if_unused(ino);
    }

    pub fn getattr(&self, ino: Ino) -> Result<FileAttr, Fail> {
        Ok(self.node(ino)?.attr(ino))
    }

    pub fn setattr(&mut self, ino: Ino, set: &SetAttr) -> Result<FileAttr, Fail> {
        let node = self.node_mut(ino)?;
        let now = SystemTime::now();
        if let Some(size) = set.size {
            match &mut node.body {
                Body::File(data) => data.resize(size as usize, 0),
                Body::Dir(_) => return Err(Fail::IsDir),
                _ => return Err(Fail::Invalid),
            }
            node.mtime = now;
        }
        node.perm = set.mode.map_or(node.perm, |mode| (mode & 0o7777) as u16);
        node.uid = set.uid.unwrap_or(node.uid);
        node.gid = set.gid.unwrap_or(node.gid);
        node.atime = set.atime.unwrap_or(node.atime);
        node.mtime = set.mtime.unwrap_or(node.mtime);
        node.ctime = now;
        Ok(node.attr(ino))
    }

    /// Create `name` in `parent`: mknod, create, mkdir and symlink.
    pub fn make(&mut self, parent: Ino, name: &OsStr, new: New) -> Result<FileAttr, Fail> {
        if self.dir(parent)?.by_name.contains_key(name) {
            return Err(Fail::Exists);
        }
        let ino = Ino(self.next_ino);
        self.next_ino += 1;
        let is_dir = new.kind == FileType::Directory;
        self.nodes.insert(ino, Node::new(new, parent));
        self.add_entry(parent, name, ino, is_dir);
        Ok(self.looked_up(ino))
    }

    pub fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr) -> Result<FileAttr, Fail> {
        if self.node(ino)?.kind == FileType::Directory {
            return Err(Fail::NotPermitted);
        }
        if self.dir(parent)?.by_name.contains_key(name) {
            return Err(Fail::Exists);
        }
        self.add_entry(parent, name, ino, false);
        let node = self.nodes.get_mut(&ino).expect("checked above");
        node.nlink += 1;
        node.ctime = SystemTime::now();
        Ok(self.looked_up(ino))
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), Fail> {
        let ino = self.child(parent, name)?;
        if self.kind(ino) == FileType::Directory {
            return Err(Fail::IsDir);
        }
        self.remove_entry(parent, name, false);
        self.unlinked(ino);
        Ok(())
    }

    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), Fail> {
        let ino = self.child(parent, name)?;
        if !self.dir(ino)?.by_name.is_empty() {
            return Err(Fail::NotEmpty);
        }
        self.remove_entry(parent, name, true);
        self.unlinked(ino);
        Ok(())
    }

    /// Move `from/name` to `to/new_name`, replacing what is there unless
    /// `no_replace`. Moving a directory into itself is refused by the VFS
    /// before the request reaches a FUSE daemon.
    pub fn rename(&mut self, from: Ino, name: &OsStr, to: Ino, new_name: &OsStr, no_replace: bool) -> Result<(), Fail> {
        let moved = self.child(from, name)?;
        self.dir(to)?;
        if let Some(&(_, old)) = self.dir(to)?.by_name.get(new_name) {
            if no_replace {
                return Err(Fail::Exists);
            }
            if old == moved {
                return Ok(());
            }
            self.check_replace(moved, old)?;
            self.remove_entry(to, new_name, self.kind(old) == FileType::Directory);
            self.unlinked(old);
        }
        let is_dir = self.kind(moved) == FileType::Directory;
        self.remove_entry(from, name, is_dir);
        self.add_entry(to, new_name, moved, is_dir);
        let node = self.nodes.get_mut(&moved).expect("an entry's inode is in the table");
        node.ctime = SystemTime::now();
        if is_dir {
            node.dir_mut().parent = to;
        }
        Ok(())
    }

    /// Whether `moved` may replace `old` (rename(2)'s rules).
    fn check_replace(&self, moved: Ino, old: Ino) -> Result<(), Fail> {
        match (self.kind(moved) == FileType::Directory, self.kind(old) == FileType::Directory) {
            (true, false) => Err(Fail::NotDir),
            (false, true) => Err(Fail::IsDir),
            (true, true) if !self.dir(old)?.by_name.is_empty() => Err(Fail::NotEmpty),
            _ => Ok(()),
        }
    }

    pub fn readlink(&self, ino: Ino) -> Result<PathBuf, Fail> {
        match &self.node(ino)?.body {
            Body::Symlink(target) => Ok(target.clone()),
            _ => Err(Fail::Invalid),
        }
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Fail> {
        match &self.node(ino)?.body {
            Body::File(data) => {
                let start = data.len().min(offset as usize);
                let end = data.len().min(start + size as usize);
                Ok(data[start..end].to_vec())
            }
            Body::Dir(_) => Err(Fail::IsDir),
            _ => Err(Fail::Invalid),
        }
    }

    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<u32, Fail> {
        let node = self.node_mut(ino)?;
        let Body::File(data) = &mut node.body else {
            return Err(Fail::Invalid);
        };
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        let now = SystemTime::now();
        (node.mtime, node.ctime) = (now, now);
        Ok(bytes.len() as u32)
    }

    /// Hand `add` each entry of directory `ino` after `cookie`, `.` and
    /// `..` first, until it returns false (the reply is full). With `plus`
    /// (readdirplus) each entry taken other than `.` and `..` is a lookup
    /// the kernel will forget.
    pub fn read_dir(&mut self, ino: Ino, cookie: u64, plus: bool, mut add: impl FnMut(Entry<'_>) -> bool) -> Result<(), Fail> {
        let mut taken = Vec::new();
        let dir = self.dir(ino)?;
        let dots = [(DOT_COOKIE, OsStr::new("."), ino), (DOTDOT_COOKIE, OsStr::new(".."), dir.parent)];
        let dots = dots.into_iter().filter(|&(c, _, _)| c > cookie);
        let names = dir.by_cookie.range((Bound::Excluded(cookie), Bound::Unbounded));
        for (cookie, name, child) in dots.chain(names.map(|(&c, (n, i))| (c, n.as_os_str(), *i))) {
            // `..` of a removed directory may be gone.
            let Some(node) = self.nodes.get(&child) else { continue };
            if !add(Entry { cookie, name, attr: node.attr(child) }) {
                break;
            }
            if plus && cookie > DOTDOT_COOKIE {
                taken.push(child);
            }
        }
        for child in taken {
            self.looked_up(child);
        }
        Ok(())
    }

    /// The attributes of "no such name", which the kernel caches as a
    /// negative entry (node id 0).
    pub fn no_entry() -> FileAttr {
        let new = New { kind: FileType::RegularFile, perm: 0, uid: 0, gid: 0, rdev: 0, target: None };
        Node::new(new, ROOT).attr(Ino(0))
    }

    /// Inodes in use, for statfs.
    pub fn inodes(&self) -> u64 {
        self.nodes.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Table {
        /// The module's invariants, over every node.
        fn check_invariants(&self) {
            for (&ino, node) in &self.nodes {
                assert!(node.nlink > 0 || node.lookups > 0 || ino == ROOT, "{ino:?} is unused but kept");
                let Body::Dir(dir) = &node.body else { continue };
                assert_eq!(dir.by_name.len(), dir.by_cookie.len());
                for (name, &(cookie, child)) in &dir.by_name {
                    assert_eq!(dir.by_cookie[&cookie], (name.clone(), child));
                    assert!(cookie < dir.next_cookie);
                    assert!(self.nodes[&child].nlink > 0, "{child:?} is named but unlinked");
                }
                let subdirs = dir.by_name.values().filter(|(_, c)| self.nodes[c].kind == FileType::Directory).count() as u32;
                assert!(node.nlink == 0 || node.nlink == 2 + subdirs, "{ino:?}: nlink {}", node.nlink);
            }
        }

        fn names(&mut self, dir: Ino, after: u64) -> Vec<(u64, String)> {
            let mut out = Vec::new();
            let add = |e: Entry<'_>| {
                out.push((e.cookie, e.name.to_string_lossy().into_owned()));
                true
            };
            self.read_dir(dir, after, false, add).expect("a directory");
            out
        }
    }

    fn new(kind: FileType) -> New {
        New { kind, perm: 0o644, uid: 0, gid: 0, rdev: 0, target: None }
    }

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn rename_across_directories_replaces_and_moves_links() {
        let mut t = Table::new(0, 0);
        let a = t.make(ROOT, name("a"), new(FileType::Directory)).unwrap().ino;
        let b = t.make(ROOT, name("b"), new(FileType::Directory)).unwrap().ino;
        let f = t.make(a, name("f"), new(FileType::RegularFile)).unwrap().ino;
        let old = t.make(b, name("g"), new(FileType::RegularFile)).unwrap().ino;
        t.rename(a, name("f"), b, name("g"), false).unwrap();
        assert_eq!(t.lookup(b, name("g")).unwrap().ino, f);
        assert_eq!(t.getattr(old).unwrap().nlink, 0, "the replaced file lost its name");
        t.forget(old, 1);
        assert!(matches!(t.getattr(old), Err(Fail::NotFound)), "dropped at its last forget");
        t.rename(ROOT, name("a"), b, name("a2"), false).unwrap();
        assert_eq!(t.getattr(b).unwrap().nlink, 3);
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 3);
        t.check_invariants();
    }

    #[test]
    fn rename_refuses_what_rename_2_refuses() {
        let mut t = Table::new(0, 0);
        let d = t.make(ROOT, name("d"), new(FileType::Directory)).unwrap().ino;
        t.make(d, name("x"), new(FileType::RegularFile)).unwrap();
        t.make(ROOT, name("f"), new(FileType::RegularFile)).unwrap();
        t.make(ROOT, name("e"), new(FileType::Directory)).unwrap();
        assert_eq!(t.rename(ROOT, name("f"), ROOT, name("d"), false), Err(Fail::IsDir));
        assert_eq!(t.rename(ROOT, name("d"), ROOT, name("f"), false), Err(Fail::NotDir));
        assert_eq!(t.rename(ROOT, name("e"), ROOT, name("d"), false), Err(Fail::NotEmpty));
        assert_eq!(t.rename(ROOT, name("f"), ROOT, name("e"), true), Err(Fail::Exists));
        t.rename(ROOT, name("d"), ROOT, name("e"), false).unwrap();
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 3, "one subdirectory left");
        t.check_invariants();
    }

    #[test]
    fn unlinked_file_stays_readable_until_forgotten() {
        let mut t = Table::new(0, 0);
        let f = t.make(ROOT, name("f"), new(FileType::RegularFile)).unwrap().ino;
        t.write(f, 0, b"data").unwrap();
        t.unlink(ROOT, name("f")).unwrap();
        assert_eq!(t.read(f, 0, 16).unwrap(), b"data");
        t.check_invariants();
        t.forget(f, 1);
        assert_eq!(t.read(f, 0, 16), Err(Fail::NotFound));
    }

    #[test]
    fn readdir_resumed_after_removals_neither_skips_nor_repeats() {
        let mut t = Table::new(0, 0);
        for i in 0..10 {
            t.make(ROOT, name(&format!("f{i}")), new(FileType::RegularFile)).unwrap();
        }
        let first = t.names(ROOT, 0);
        assert_eq!(first.len(), 12);
        let (cookie, _) = first[5].clone();
        for (_, n) in &first[2..6] {
            t.unlink(ROOT, name(n)).unwrap();
        }
        let rest: Vec<_> = t.names(ROOT, cookie).into_iter().map(|(_, n)| n).collect();
        let expected: Vec<_> = first[6..].iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(rest, expected);
        t.check_invariants();
    }

    #[test]
    fn hard_links_count_names_and_refuse_directories() {
        let mut t = Table::new(0, 0);
        let f = t.make(ROOT, name("f"), new(FileType::RegularFile)).unwrap().ino;
        let d = t.make(ROOT, name("d"), new(FileType::Directory)).unwrap().ino;
        assert_eq!(t.link(f, d, name("g")).unwrap().nlink, 2);
        assert!(matches!(t.link(d, ROOT, name("d2")), Err(Fail::NotPermitted)));
        t.unlink(ROOT, name("f")).unwrap();
        assert_eq!(t.getattr(f).unwrap().nlink, 1);
        t.check_invariants();
    }
}
