//! Seeded random namespace operations against a reference tree.
//!
//! Each step applies one operation (create, mkdir, symlink, link, unlink,
//! rmdir, rename with and without NOREPLACE/EXCHANGE) to both the fs layer
//! and a plain in-memory model, compares the outcome (success or errno), and
//! every few steps compares the whole tree: names, kinds, inode identity and
//! exact link counts. Replay a failure with `HOLT_MODEL_SEED=<seed>`.

use std::collections::{BTreeMap, HashMap};

use super::{memory_fs, Rng, USER};
use crate::schema::{FileKind, Ino};
use crate::{Fs, RenameFlags};

const STEPS: usize = 4000;
const NAMES: [&[u8]; 6] = [b"a", b"b", b"c", b"dd", b"e\xff", b"f g"];

struct Node {
    kind: FileKind,
    nlink: u32,
    parent: usize,
    children: BTreeMap<Vec<u8>, usize>,
}

/// The reference: nodes by index, index 0 is the root; `ino` maps to the fs.
struct Model {
    nodes: HashMap<usize, Node>,
    ino: HashMap<usize, Ino>,
    next: usize,
}

type Outcome = Result<(), i32>;

impl Model {
    fn new() -> Model {
        let root = Node { kind: FileKind::Dir, nlink: 2, parent: 0, children: BTreeMap::new() };
        Model { nodes: HashMap::from([(0, root)]), ino: HashMap::from([(0, Ino::ROOT)]), next: 1 }
    }

    fn dirs(&self) -> Vec<usize> {
        let mut d: Vec<usize> = self.nodes.iter().filter(|(_, n)| n.kind == FileKind::Dir).map(|(&i, _)| i).collect();
        d.sort_unstable();
        d
    }

    fn child(&self, dir: usize, name: &[u8]) -> Option<usize> {
        self.nodes[&dir].children.get(name).copied()
    }

    fn is_ancestor(&self, x: usize, mut start: usize) -> bool {
        loop {
            if start == x {
                return true;
            }
            if start == 0 {
                return false;
            }
            start = self.nodes[&start].parent;
        }
    }

    fn create(&mut self, dir: usize, name: &[u8], kind: FileKind) -> Result<usize, i32> {
        if self.child(dir, name).is_some() {
            return Err(libc::EEXIST);
        }
        let id = self.next;
        self.next += 1;
        let nlink = if kind == FileKind::Dir { 2 } else { 1 };
        self.nodes.insert(id, Node { kind, nlink, parent: dir, children: BTreeMap::new() });
        let d = self.nodes.get_mut(&dir).unwrap();
        d.children.insert(name.to_vec(), id);
        if kind == FileKind::Dir {
            d.nlink += 1;
        }
        Ok(id)
    }

    fn drop_link(&mut self, id: usize) {
        let n = self.nodes.get_mut(&id).unwrap();
        n.nlink = if n.kind == FileKind::Dir { 0 } else { n.nlink - 1 };
        if n.nlink == 0 {
            self.nodes.remove(&id);
            self.ino.remove(&id);
        }
    }

    fn unlink(&mut self, dir: usize, name: &[u8]) -> Outcome {
        let id = self.child(dir, name).ok_or(libc::ENOENT)?;
        if self.nodes[&id].kind == FileKind::Dir {
            return Err(libc::EISDIR);
        }
        self.nodes.get_mut(&dir).unwrap().children.remove(name);
        self.drop_link(id);
        Ok(())
    }

    fn rmdir(&mut self, dir: usize, name: &[u8]) -> Outcome {
        let id = self.child(dir, name).ok_or(libc::ENOENT)?;
        if self.nodes[&id].kind != FileKind::Dir {
            return Err(libc::ENOTDIR);
        }
        if !self.nodes[&id].children.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        let d = self.nodes.get_mut(&dir).unwrap();
        d.children.remove(name);
        d.nlink -= 1;
        self.drop_link(id);
        Ok(())
    }

    fn link(&mut self, id: usize, dir: usize, name: &[u8]) -> Outcome {
        if self.nodes[&id].kind == FileKind::Dir {
            return Err(libc::EPERM);
        }
        if self.child(dir, name).is_some() {
            return Err(libc::EEXIST);
        }
        self.nodes.get_mut(&id).unwrap().nlink += 1;
        self.nodes.get_mut(&dir).unwrap().children.insert(name.to_vec(), id);
        Ok(())
    }

    fn reparent(&mut self, id: usize, from: usize, to: usize) -> Outcome {
        if from == to || self.nodes[&id].kind != FileKind::Dir {
            return Ok(());
        }
        if self.is_ancestor(id, to) {
            return Err(libc::EINVAL);
        }
        self.nodes.get_mut(&id).unwrap().parent = to;
        self.nodes.get_mut(&from).unwrap().nlink -= 1;
        self.nodes.get_mut(&to).unwrap().nlink += 1;
        Ok(())
    }

    fn rename(&mut self, sp: usize, sn: &[u8], dp: usize, dn: &[u8], flags: RenameFlags) -> Outcome {
        let s = self.child(sp, sn).ok_or(libc::ENOENT)?;
        let d = self.child(dp, dn);
        if flags.exchange {
            let d = d.ok_or(libc::ENOENT)?;
            let both_dirs_check = |m: &Model| {
                let bad_s = m.nodes[&s].kind == FileKind::Dir && sp != dp && m.is_ancestor(s, dp);
                let bad_d = m.nodes[&d].kind == FileKind::Dir && sp != dp && m.is_ancestor(d, sp);
                bad_s || bad_d
            };
            if both_dirs_check(self) {
                return Err(libc::EINVAL);
            }
            self.reparent(s, sp, dp)?;
            self.reparent(d, dp, sp)?;
            self.nodes.get_mut(&sp).unwrap().children.insert(sn.to_vec(), d);
            self.nodes.get_mut(&dp).unwrap().children.insert(dn.to_vec(), s);
            return Ok(());
        }
        let s_dir = self.nodes[&s].kind == FileKind::Dir;
        if let Some(d) = d {
            if d == s {
                return Ok(());
            }
            if flags.noreplace {
                return Err(libc::EEXIST);
            }
            let d_dir = self.nodes[&d].kind == FileKind::Dir;
            match (s_dir, d_dir) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.nodes[&d].children.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            if s_dir && sp != dp && self.is_ancestor(s, dp) {
                return Err(libc::EINVAL);
            }
            if d_dir {
                self.nodes.get_mut(&dp).unwrap().nlink -= 1;
            }
            self.nodes.get_mut(&dp).unwrap().children.remove(dn);
            self.drop_link(d);
        }
        self.reparent(s, sp, dp)?;
        self.nodes.get_mut(&sp).unwrap().children.remove(sn);
        self.nodes.get_mut(&dp).unwrap().children.insert(dn.to_vec(), s);
        Ok(())
    }
}

fn errno<T>(r: crate::FsResult<T>) -> Result<T, i32> {
    r.map_err(|e| e.errno())
}

/// Compare the fs tree under `dir` with the model, recursively.
fn compare(fs: &Fs, m: &Model, dir: usize) {
    let ino = m.ino[&dir];
    let attr = fs.getattr(ino).unwrap();
    assert_eq!(attr.inode.nlink, m.nodes[&dir].nlink, "nlink of directory {ino:?}");
    let fh = fs.opendir(ino).unwrap();
    let mut listed = BTreeMap::new();
    fs.readdir(ino, fh, 0, false, &mut |e| {
        if e.name != b"." && e.name != b".." {
            listed.insert(e.name.clone(), (e.ino, e.kind));
        }
        true
    })
    .unwrap();
    fs.releasedir(ino, fh).unwrap();
    let expected: BTreeMap<Vec<u8>, (Ino, FileKind)> =
        m.nodes[&dir].children.iter().map(|(n, id)| (n.clone(), (m.ino[id], m.nodes[id].kind))).collect();
    assert_eq!(listed, expected, "entries of directory {ino:?}");
    for id in m.nodes[&dir].children.values() {
        let node = &m.nodes[id];
        assert_eq!(fs.getattr(m.ino[id]).unwrap().inode.nlink, node.nlink, "nlink of inode {:?}", m.ino[id]);
        if node.kind == FileKind::Dir {
            assert_eq!(fs.getattr(m.ino[id]).unwrap().inode.parent, ino, "parent of directory {:?}", m.ino[id]);
            compare(fs, m, *id);
        }
    }
}

fn step(fs: &Fs, m: &mut Model, rng: &mut Rng) -> String {
    let dirs = m.dirs();
    let (d1, d2) = (dirs[rng.below(dirs.len())], dirs[rng.below(dirs.len())]);
    let (n1, n2) = (NAMES[rng.below(NAMES.len())], NAMES[rng.below(NAMES.len())]);
    let (i1, i2) = (m.ino[&d1], m.ino[&d2]);
    let op = rng.below(10);
    let (desc, got, want) = match op {
        0..=2 => {
            let kind = [FileKind::File, FileKind::Dir, FileKind::Symlink][op];
            let got = match kind {
                FileKind::File => errno(fs.mknod(USER, i1, n1, libc::S_IFREG | 0o644, 0)),
                FileKind::Dir => errno(fs.mkdir(USER, i1, n1, 0o755)),
                _ => errno(fs.symlink(USER, i1, n1, b"target")),
            };
            let want = m.create(d1, n1, kind);
            if let (Ok(a), Ok(id)) = (&got, &want) {
                m.ino.insert(*id, a.ino);
            }
            (format!("create {kind:?} {i1:?}/{n1:?}"), got.map(|_| ()), want.map(|_| ()))
        }
        3 => (format!("unlink {i1:?}/{n1:?}"), errno(fs.unlink(i1, n1)), m.unlink(d1, n1)),
        4 => (format!("rmdir {i1:?}/{n1:?}"), errno(fs.rmdir(i1, n1)), m.rmdir(d1, n1)),
        5 => match m.child(d1, n1) {
            Some(id) => {
                let got = errno(fs.link(m.ino[&id], i2, n2)).map(|_| ());
                (format!("link {i1:?}/{n1:?} -> {i2:?}/{n2:?}"), got, m.link(id, d2, n2))
            }
            None => return "skip".into(),
        },
        _ => {
            let flags = match rng.below(4) {
                0 => RenameFlags { noreplace: true, exchange: false },
                1 => RenameFlags { noreplace: false, exchange: true },
                _ => RenameFlags::default(),
            };
            let got = errno(fs.rename(i1, n1, i2, n2, flags));
            (format!("rename {i1:?}/{n1:?} -> {i2:?}/{n2:?} {flags:?}"), got, m.rename(d1, n1, d2, n2, flags))
        }
    };
    assert_eq!(got, want, "outcome of {desc}");
    desc
}

#[test]
fn random_namespace_ops_match_reference_model() {
    let seed = match std::env::var("HOLT_MODEL_SEED") {
        Ok(s) => s.parse().expect("HOLT_MODEL_SEED is a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("model seed: {seed} (replay with HOLT_MODEL_SEED={seed})");
    let fs = memory_fs();
    let mut m = Model::new();
    let mut rng = Rng(seed);
    for i in 0..STEPS {
        let desc = step(&fs, &mut m, &mut rng);
        if i % 50 == 0 || desc.starts_with("rename") && i % 7 == 0 {
            compare(&fs, &m, 0);
        }
    }
    compare(&fs, &m, 0);
    fs.drain_reclaims().unwrap();
    assert_eq!(fs.usage().inodes, m.nodes.len() as i64, "used-inode counter after reclaim");
}
