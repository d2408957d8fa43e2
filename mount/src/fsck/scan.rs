//! The scans: every family of keys once, streamed, in an order that lets
//! each check use only facts already gathered: `S/`, `C/`, `I/`, `D/`,
//! `X/`, `R/`, then the data objects and the keys of unknown families.
//! What the namespace checks need is kept in a [`Census`]: one [`Facts`]
//! per inode and one [`Edge`] per valid directory entry, no names.

use std::collections::{HashMap, HashSet};

use holt_core::{RangeEntry, Tree};

use super::repair::Fix;
use super::{FsckReport, Place, Plan, Problem, Progress, Ticker};
use crate::data::DataStore;
use crate::error::{FsError, FsResult};
use crate::schema::{self, check_name, Dentry, FileKind, Ino, Inode, OrphanReason, Session, Superblock, Usage};

/// The families this build writes (`S/` is checked key by key).
const FAMILIES: [&[u8]; 6] = [b"C/", b"D/", b"I/", b"R/", b"S/", b"X/"];
/// Usage counter shards `C/used/<0..N>`: the number `fs::alloc` keeps.
const USAGE_SHARDS: usize = 16;
const DENTRY_PREFIX: &[u8] = b"D/";
const XATTR_PREFIX: &[u8] = b"X/";

/// What the namespace checks need to know of one readable inode.
pub(super) struct Facts {
    pub kind: FileKind,
    pub nlink: u32,
    /// The parent a directory records.
    pub parent: Ino,
    /// Valid entries naming this inode.
    pub names: u32,
    /// Valid entries in this directory, and how many of them are directories.
    pub entries: u32,
    pub subdirs: u32,
    /// The directory holding its (kept) name; `Ino(0)` if it has none.
    pub first_parent: Ino,
    /// A valid orphan marker: no names, nlink 0, awaiting reclaim.
    pub marker: bool,
    pub reachable: bool,
}

/// One valid directory entry; `dir` if it names a directory.
pub(super) struct Edge {
    pub parent: Ino,
    pub child: Ino,
    pub dir: bool,
}

#[derive(Default)]
pub(super) struct Census {
    pub inodes: HashMap<Ino, Facts>,
    /// Inodes whose value does not decode: their links are trusted, never repaired.
    pub unreadable: HashSet<Ino>,
    pub edges: Vec<Edge>,
    /// Well-formed `I/` keys: the total the usage counters must hold.
    pub inode_keys: u64,
    pub max_ino: u64,
    next_ino: Option<u64>,
    next_ino_bad: Option<&'static str>,
    usage_inodes: i64,
    objects: u64,
}

impl Census {
    /// Whether `ino` has an `I/` key, readable or not.
    pub fn exists(&self, ino: Ino) -> bool {
        self.inodes.contains_key(&ino) || self.unreadable.contains(&ino)
    }

    pub fn counts(&self) -> FsckReport {
        let mut r = FsckReport { inodes: self.inode_keys, objects: self.objects, ..FsckReport::default() };
        for f in self.inodes.values() {
            match f.kind {
                FileKind::Dir => r.dirs += 1,
                FileKind::File => r.files += 1,
                FileKind::Symlink => r.symlinks += 1,
                _ => r.others += 1,
            }
            r.orphans += u64::from(f.marker);
        }
        r
    }
}

/// What a decode error says went wrong.
pub(super) fn what(e: &FsError) -> &'static str {
    match e {
        FsError::Corrupt { what, .. } => what,
        _ => "does not decode",
    }
}

/// `<family><ino be64>/<name>`: the inode and the name.
fn split_key<'k>(family: &[u8], key: &'k [u8]) -> Option<(Ino, &'k [u8])> {
    let rest = key.strip_prefix(family)?;
    let ino: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    (rest.get(8) == Some(&b'/')).then(|| (Ino(u64::from_be_bytes(ino)), &rest[9..]))
}

fn for_each(
    tree: &Tree,
    prefix: &[u8],
    ticker: &mut Ticker,
    mut visit: impl FnMut(Vec<u8>, Vec<u8>) -> FsResult<()>,
) -> FsResult<()> {
    for entry in tree.scan_prefix(prefix) {
        if let RangeEntry::Key { key, value } = entry? {
            visit(key, value)?;
            ticker.tick();
        }
    }
    Ok(())
}

fn malformed(plan: &mut Plan, key: Vec<u8>) {
    plan.fix(Problem::MalformedKey { key: key.clone() }, Fix::DeleteKey { key, what: "malformed key" });
}

/// Every scan; `None` when the superblock rules out checking the rest.
pub(super) fn census(
    tree: &Tree,
    data: &dyn DataStore,
    plan: &mut Plan,
    progress: &mut dyn FnMut(Progress),
) -> FsResult<Option<Census>> {
    if !superblock(tree, plan)? {
        return Ok(None);
    }
    let mut c = Census::default();
    c.counters(tree, plan, progress)?;
    c.inodes(tree, plan, progress)?;
    c.dentries(tree, plan, progress)?;
    c.xattrs(tree, plan, progress)?;
    c.orphans(tree, plan, progress)?;
    c.objects(data, plan, progress)?;
    unknown_families(tree, plan)?;
    c.check_counters(plan);
    Ok(Some(c))
}

/// `S/format` and `S/session`; false if the superblock is missing,
/// unreadable or of another format.
fn superblock(tree: &Tree, plan: &mut Plan) -> FsResult<bool> {
    let ok = match tree.get(schema::SUPERBLOCK_KEY)? {
        None => {
            plan.report(Problem::SuperblockMissing);
            false
        }
        Some(v) => match Superblock::decode(schema::SUPERBLOCK_KEY, &v) {
            Err(e) => {
                plan.report(Problem::SuperblockUnreadable { what: what(&e) });
                false
            }
            Ok(sb) if sb.format != schema::FORMAT_VERSION => {
                plan.report(Problem::FormatUnsupported { format: sb.format });
                false
            }
            Ok(_) => true,
        },
    };
    for entry in tree.scan_prefix(b"S/") {
        let RangeEntry::Key { key, value } = entry? else { continue };
        if key == schema::SESSION_KEY {
            if let Err(e) = Session::decode(&key, &value) {
                plan.fix(Problem::SessionUnreadable { what: what(&e) }, Fix::DeleteKey { key, what: "session record" });
            }
        } else if key != schema::SUPERBLOCK_KEY {
            plan.report(Problem::UnknownKey { key });
        }
    }
    Ok(ok)
}

/// Top-level keys and families this build does not know.
fn unknown_families(tree: &Tree, plan: &mut Plan) -> FsResult<()> {
    for entry in tree.range().delimiter(b'/') {
        match entry? {
            RangeEntry::CommonPrefix(p) if FAMILIES.contains(&p.as_slice()) => {}
            RangeEntry::CommonPrefix(p) => {
                for entry in tree.scan_prefix(&p) {
                    plan.report(Problem::UnknownKey { key: entry?.key().to_vec() });
                }
            }
            RangeEntry::Key { key, .. } => plan.report(Problem::UnknownKey { key }),
        }
    }
    Ok(())
}

impl Census {
    fn counters(&mut self, tree: &Tree, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
        let mut ticker = Ticker::new("counters", None, progress);
        for_each(tree, b"C/", &mut ticker, |key, value| {
            if key == schema::NEXT_INO_KEY {
                match schema::decode_u64(&key, &value) {
                    Ok(n) => self.next_ino = Some(n),
                    Err(e) => self.next_ino_bad = Some(what(&e)),
                }
            } else if let Some(shard) = key.strip_prefix(schema::USAGE_PREFIX) {
                if shard.len() != 1 || usize::from(shard[0]) >= USAGE_SHARDS {
                    malformed(plan, key);
                    return Ok(());
                }
                match Usage::decode(&key, &value) {
                    Ok(u) => self.usage_inodes += u.inodes,
                    Err(e) => plan.fix(
                        Problem::CounterUnreadable { key: key.clone(), what: what(&e) },
                        Fix::DeleteKey { key, what: "usage counter" },
                    ),
                }
            } else {
                plan.report(Problem::UnknownKey { key });
            }
            Ok(())
        })?;
        ticker.finish();
        Ok(())
    }

    fn inodes(&mut self, tree: &Tree, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
        let estimate = u64::try_from(self.usage_inodes).ok();
        let mut ticker = Ticker::new("inodes", estimate, progress);
        for_each(tree, schema::INODE_PREFIX, &mut ticker, |key, value| {
            let ino = match schema::inode_ino(&key) {
                Ok(ino) if ino.0 != 0 => ino,
                _ => {
                    malformed(plan, key);
                    return Ok(());
                }
            };
            self.inode_keys += 1;
            self.max_ino = self.max_ino.max(ino.0);
            match Inode::decode(&key, &value) {
                Ok(inode) => self.note_inode(ino, &inode, plan),
                Err(e) => {
                    self.unreadable.insert(ino);
                    plan.report(Problem::InodeUnreadable { ino, what: what(&e) });
                }
            }
            Ok(())
        })?;
        ticker.finish();
        Ok(())
    }

    fn note_inode(&mut self, ino: Ino, inode: &Inode, plan: &mut Plan) {
        if inode.kind == FileKind::File && (inode.size != 0 || inode.blocks != 0) {
            let problem = Problem::FileSizeInInode { ino, path: None, size: inode.size, blocks: inode.blocks };
            plan.fix(problem, Fix::ZeroSize { ino });
        }
        let facts = Facts {
            kind: inode.kind,
            nlink: inode.nlink,
            parent: inode.parent,
            names: 0,
            entries: 0,
            subdirs: 0,
            first_parent: Ino(0),
            marker: false,
            reachable: false,
        };
        self.inodes.insert(ino, facts);
    }

    fn dentries(&mut self, tree: &Tree, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
        let mut ticker = Ticker::new("entries", None, progress);
        for_each(tree, DENTRY_PREFIX, &mut ticker, |key, value| {
            let Some((dir, name)) = split_key(DENTRY_PREFIX, &key) else {
                malformed(plan, key);
                return Ok(());
            };
            let at = Place { dir, name: name.to_vec(), path: None };
            match Dentry::decode(&key, &value) {
                Ok(d) => self.note_dentry(at, d, plan),
                Err(e) => {
                    let problem = Problem::DentryUnreadable { at, what: what(&e) };
                    plan.fix(problem, Fix::DeleteKey { key, what: "entry" });
                }
            }
            Ok(())
        })?;
        ticker.finish();
        Ok(())
    }

    /// Count a valid entry, or plan the removal (or kind fix) of a bad one.
    fn note_dentry(&mut self, at: Place, d: Dentry, plan: &mut Plan) {
        let remove = Fix::DeleteKey { key: schema::dentry_key(at.dir, &at.name), what: "entry" };
        let dir_kind = self.inodes.get(&at.dir).map(|f| f.kind);
        if dir_kind.is_some_and(|k| k != FileKind::Dir) || !self.exists(at.dir) {
            return plan.fix(Problem::DentryOutsideDir { at, ino: d.ino, dir_kind }, remove);
        }
        if check_name(&at.name).is_err() {
            return plan.fix(Problem::DentryNameInvalid { at, ino: d.ino }, remove);
        }
        if d.ino == Ino::ROOT {
            return plan.fix(Problem::RootHasName { at }, remove);
        }
        if !self.exists(d.ino) {
            return plan.fix(Problem::DentryToMissingInode { at, ino: d.ino }, remove);
        }
        let kind = match self.inodes.get_mut(&d.ino) {
            Some(child) => {
                child.names += 1;
                if child.first_parent == Ino(0) {
                    child.first_parent = at.dir;
                }
                child.kind
            }
            None => d.kind,
        };
        let is_dir = kind == FileKind::Dir;
        self.edges.push(Edge { parent: at.dir, child: d.ino, dir: is_dir });
        if let Some(parent) = self.inodes.get_mut(&at.dir) {
            parent.entries += 1;
            parent.subdirs += u32::from(is_dir);
        }
        if kind != d.kind {
            let fix = Fix::SetDentryKind { dir: at.dir, name: at.name.clone(), kind };
            plan.fix(Problem::DentryKindWrong { at, ino: d.ino, recorded: d.kind, actual: kind }, fix);
        }
    }

    fn xattrs(&mut self, tree: &Tree, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
        let mut ticker = Ticker::new("xattrs", None, progress);
        for_each(tree, XATTR_PREFIX, &mut ticker, |key, _| {
            match split_key(XATTR_PREFIX, &key) {
                None => malformed(plan, key),
                Some((ino, _)) if self.exists(ino) => {}
                Some((ino, name)) => {
                    let problem = Problem::XattrOfMissingInode { ino, name: name.to_vec() };
                    plan.fix(problem, Fix::DeleteKey { key, what: "extended attribute" });
                }
            }
            Ok(())
        })?;
        ticker.finish();
        Ok(())
    }

    /// A marker is valid for an inode with nlink 0, no names and (a
    /// removed directory) no entries; it is then an orphan, not a problem.
    fn orphans(&mut self, tree: &Tree, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
        let mut ticker = Ticker::new("orphans", None, progress);
        let expected = OrphanReason::Unlinked.encode();
        for_each(tree, schema::ORPHAN_PREFIX, &mut ticker, |key, value| {
            let Ok(ino) = schema::orphan_ino(&key) else {
                malformed(plan, key);
                return Ok(());
            };
            if self.unreadable.contains(&ino) {
                return Ok(());
            }
            let stale = match self.inodes.get_mut(&ino) {
                None => Some(Problem::OrphanMarkerStale { ino, nlink: None, names: 0 }),
                Some(f) if f.nlink != 0 || f.names != 0 || f.entries != 0 => {
                    Some(Problem::OrphanMarkerStale { ino, nlink: Some(f.nlink), names: f.names })
                }
                Some(f) => {
                    f.marker = true;
                    None
                }
            };
            match stale {
                Some(problem) => plan.fix(problem, Fix::DeleteKey { key, what: "orphan marker" }),
                None if value != expected => plan.fix(
                    Problem::OrphanMarkerUnreadable { ino },
                    Fix::PutValue { key, value: expected.to_vec(), what: "orphan marker" },
                ),
                None => {}
            }
            Ok(())
        })?;
        ticker.finish();
        Ok(())
    }

    /// Every object must belong to a regular file.
    fn objects(&mut self, data: &dyn DataStore, plan: &mut Plan, progress: &mut dyn FnMut(Progress)) -> FsResult<()> {
        let mut inos = Vec::new();
        data.list(&mut |ino| inos.push(ino)).map_err(|e| FsError::data("list", Ino::ROOT, e))?;
        inos.sort_unstable();
        let mut ticker = Ticker::new("objects", Some(inos.len() as u64), progress);
        for ino in inos {
            self.objects += 1;
            ticker.tick();
            let owner = match self.inodes.get(&ino) {
                Some(f) if f.kind == FileKind::File => continue,
                Some(f) => Some(f.kind),
                None if self.unreadable.contains(&ino) => continue,
                None => None,
            };
            plan.fix(Problem::StrayObject { ino, owner }, Fix::RemoveObject { ino });
        }
        ticker.finish();
        Ok(())
    }

    fn check_counters(&self, plan: &mut Plan) {
        let next = self.max_ino.max(Ino::ROOT.0) + 1;
        if let Some(what) = self.next_ino_bad {
            let problem = Problem::CounterUnreadable { key: schema::NEXT_INO_KEY.to_vec(), what };
            plan.fix(problem, Fix::NextIno { next });
        } else if self.next_ino.is_none_or(|n| n <= self.max_ino) {
            let problem = Problem::NextInoTooLow { next: self.next_ino, max: Ino(self.max_ino) };
            plan.fix(problem, Fix::NextIno { next });
        }
        if self.usage_inodes != self.inode_keys as i64 {
            let problem = Problem::InodeCountWrong { counted: self.usage_inodes, actual: self.inode_keys };
            plan.fix(problem, Fix::Counters { inodes: self.inode_keys });
        }
    }
}
