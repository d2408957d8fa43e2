//! Seeded random workloads of namespace and data operations on the
//! semantics layer, its tree and its data objects on one simulated disk,
//! with the power cut (or the daemon killed) before a random disk
//! operation. After every crash the filesystem mounts and:
//! - the namespace is exactly one that existed between the last operation
//!   made durable (fsync, fsyncdir, or any operation with `--sync`) and the
//!   one in flight;
//! - every file whose contents an fsync covered, and that was not changed
//!   after it, reads back exactly;
//! - every file reads up to its size and no further; no data object lacks
//!   a live file; fsck finds nothing.
//!
//! Replay a failure with `HOLT_CRASH_SEED=<seed>` (printed on failure).

use std::collections::{BTreeMap, HashMap};

use holt_core::testing::{CrashMode, SimDisk};

use super::crash::{assert_fsck_clean, open_fs, BOOT, REBOOTED};
use super::{Rng, USER};
use crate::data::{DataStore, SimData};
use crate::schema::{FileKind, Ino};
use crate::{Fs, OpenFlags, RenameFlags, SetAttr, XattrFlags};

/// Seeds per run (each a fresh workload) and crash points per seed.
const SEEDS: u64 = 100;
const CRASHES_PER_SEED: usize = 4;
const OPS: usize = 200;
const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Ino),
    Symlink(Vec<u8>),
}

/// Full path (`/a/b`, the root is empty) to node.
type Namespace = BTreeMap<Vec<u8>, Node>;

/// The state after one acknowledged operation.
#[derive(Clone)]
struct Record {
    /// Disk operations done when the operation returned.
    disk_ops: u64,
    ns: Namespace,
    /// Whether everything up to this operation is durable.
    durable: bool,
    /// Files whose contents an fsync covered and that have not changed since.
    synced: HashMap<Ino, Vec<u8>>,
}

struct Model {
    ns: Namespace,
    contents: HashMap<Ino, Vec<u8>>,
    synced: HashMap<Ino, Vec<u8>>,
    sync_mode: bool,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    let cut = path.iter().rposition(|&b| b == b'/').expect("paths start with '/'");
    (&path[..cut], &path[cut + 1..])
}

fn resolve(fs: &Fs, path: &[u8]) -> Ino {
    path.split(|&b| b == b'/').skip(1).fold(Ino::ROOT, |dir, name| fs.lookup(dir, name).expect("model path exists").ino)
}

impl Model {
    fn dirs(&self) -> Vec<Vec<u8>> {
        std::iter::once(Vec::new()).chain(self.ns.iter().filter(|(_, n)| **n == Node::Dir).map(|(p, _)| p.clone())).collect()
    }

    fn pick(&self, rng: &mut Rng, keep: impl Fn(&Node) -> bool) -> Option<(Vec<u8>, Node)> {
        let all: Vec<_> = self.ns.iter().filter(|(_, n)| keep(n)).collect();
        (!all.is_empty()).then(|| {
            let (p, n) = all[rng.below(all.len())];
            (p.clone(), n.clone())
        })
    }

    fn is_empty_dir(&self, path: &[u8]) -> bool {
        let prefix = join(path, b"");
        !self.ns.keys().any(|k| k.starts_with(&prefix))
    }

    fn changed(&mut self, ino: Ino) {
        if self.sync_mode {
            self.synced.insert(ino, self.contents[&ino].clone());
        } else {
            self.synced.remove(&ino);
        }
    }

    /// A name of `ino` went away; forget its contents when it was the last.
    /// Its synced contents stay: if a crash brings a name back, the file
    /// must read as synced.
    fn unlinked(&mut self, ino: Ino) {
        if !self.ns.values().any(|n| *n == Node::File(ino)) {
            self.contents.remove(&ino);
        }
    }
}

/// Up to `len_max` bytes (at least one) of one random non-zero value.
fn random_bytes(rng: &mut Rng, len_max: usize) -> Vec<u8> {
    let fill = rng.below(255) as u8 + 1;
    vec![fill; 1 + rng.below(len_max)]
}

/// One random operation on both; returns whether it made everything durable.
fn step(fs: &Fs, m: &mut Model, rng: &mut Rng) -> bool {
    let dirs = m.dirs();
    let dir = dirs[rng.below(dirs.len())].clone();
    let path = join(&dir, NAMES[rng.below(NAMES.len())]);
    let free = !m.ns.contains_key(&path);
    match rng.below(14) {
        0 if free => {
            fs.mkdir(USER, resolve(fs, &dir), split(&path).1, 0o755).unwrap();
            m.ns.insert(path, Node::Dir);
        }
        1 if free => {
            let flags = OpenFlags::from_raw(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
            let (a, fh) = fs.create(USER, resolve(fs, &dir), split(&path).1, 0o644, flags).unwrap();
            let (off, bytes) = (rng.below(3) * 4096, random_bytes(rng, 3 * 4096));
            fs.write(a.ino, off as u64, &bytes).unwrap();
            fs.release(a.ino, fh).unwrap();
            let mut content = vec![0u8; off];
            content.extend_from_slice(&bytes);
            m.ns.insert(path, Node::File(a.ino));
            m.contents.insert(a.ino, content);
            m.changed(a.ino);
        }
        2 | 3 => data_step(fs, m, rng),
        4 => rename_step(fs, m, rng, &path),
        5 if free => {
            let Some((_, Node::File(ino))) = m.pick(rng, |n| matches!(n, Node::File(_))) else { return false };
            fs.link(ino, resolve(fs, &dir), split(&path).1).unwrap();
            m.ns.insert(path, Node::File(ino));
        }
        6 if free => {
            let target = format!("t{}", rng.below(100)).into_bytes();
            fs.symlink(USER, resolve(fs, &dir), split(&path).1, &target).unwrap();
            m.ns.insert(path, Node::Symlink(target));
        }
        7 => {
            let Some((p, node)) = m.pick(rng, |n| *n != Node::Dir) else { return false };
            let (d, name) = split(&p);
            fs.unlink(resolve(fs, d), name).unwrap();
            m.ns.remove(&p);
            if let Node::File(ino) = node {
                m.unlinked(ino);
            }
        }
        8 => {
            let Some((p, _)) = m.pick(rng, |n| *n == Node::Dir).filter(|(p, _)| m.is_empty_dir(p)) else { return false };
            let (d, name) = split(&p);
            fs.rmdir(resolve(fs, d), name).unwrap();
            m.ns.remove(&p);
        }
        9 => {
            let Some((_, Node::File(ino))) = m.pick(rng, |n| matches!(n, Node::File(_))) else { return false };
            fs.fsync(ino, false).unwrap();
            m.synced.insert(ino, m.contents[&ino].clone());
            return true;
        }
        10 => {
            let d = resolve(fs, &dir);
            let fh = fs.opendir(d).unwrap();
            fs.fsyncdir(d, fh).unwrap();
            fs.releasedir(d, fh).unwrap();
            return true;
        }
        11 => {
            let Some((p, _)) = m.pick(rng, |n| *n != Node::Dir) else { return false };
            let ino = resolve(fs, &p);
            fs.setattr(ino, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).unwrap();
            fs.setxattr(ino, b"user.k", &random_bytes(rng, 10), XattrFlags::default()).unwrap();
        }
        12 => fs.drain_reclaims().unwrap(),
        _ => {}
    }
    m.sync_mode
}

/// A write, truncate, hole punch or growing fallocate on a random file.
fn data_step(fs: &Fs, m: &mut Model, rng: &mut Rng) {
    let Some((_, Node::File(ino))) = m.pick(rng, |n| matches!(n, Node::File(_))) else { return };
    let content = m.contents.get_mut(&ino).expect("live files have contents");
    let size = content.len();
    match rng.below(4) {
        0 | 1 => {
            let off = rng.below(size + 4096);
            let bytes = random_bytes(rng, 8192);
            fs.write(ino, off as u64, &bytes).unwrap();
            if content.len() < off + bytes.len() {
                content.resize(off + bytes.len(), 0);
            }
            content[off..off + bytes.len()].copy_from_slice(&bytes);
        }
        2 => {
            let len = rng.below(20_000);
            fs.setattr(ino, &SetAttr { size: Some(len as u64), ..SetAttr::default() }).unwrap();
            content.resize(len, 0);
        }
        _ if size > 0 => {
            let (off, len) = (rng.below(size), 1 + rng.below(8192));
            fs.fallocate(ino, off as u64, len as u64, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE).unwrap();
            let end = (off + len).min(size);
            content[off..end].fill(0);
        }
        _ => {
            fs.fallocate(ino, 0, 4096, 0).unwrap();
            content.resize(4096, 0);
        }
    }
    m.changed(ino);
}

/// Rename a random entry to `to`, when the model says it must succeed.
fn rename_step(fs: &Fs, m: &mut Model, rng: &mut Rng, to: &[u8]) {
    let Some((from, node)) = m.pick(rng, |_| true) else { return };
    let inside = to.starts_with(&join(&from, b"")) || to == from.as_slice();
    let replaced = m.ns.get(to).cloned();
    let fits = match (&node, &replaced) {
        (_, None) => true,
        (Node::Dir, Some(Node::Dir)) => m.is_empty_dir(to),
        (Node::Dir, Some(_)) | (_, Some(Node::Dir)) => false,
        (_, Some(_)) => true,
    };
    if inside || !fits {
        return;
    }
    if matches!(node, Node::File(_)) && replaced.as_ref() == Some(&node) {
        // Two names of one file: rename(2) leaves both in place.
        let ((fd, fname), (td, tname)) = (split(&from), split(to));
        fs.rename(resolve(fs, fd), fname, resolve(fs, td), tname, RenameFlags::default()).unwrap();
        return;
    }
    let ((fd, fname), (td, tname)) = (split(&from), split(to));
    fs.rename(resolve(fs, fd), fname, resolve(fs, td), tname, RenameFlags::default()).unwrap();
    let prefix = join(&from, b"");
    let moved: Vec<(Vec<u8>, Node)> = m.ns.range(from.clone()..).take_while(|(k, _)| k.starts_with(&from)).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in moved.into_iter().filter(|(k, _)| *k == from || k.starts_with(&prefix)) {
        m.ns.remove(&k);
        m.ns.insert([to, &k[from.len()..]].concat(), v);
    }
    if let Some(Node::File(ino)) = replaced {
        m.unlinked(ino);
    }
}

/// The namespace a mounted filesystem shows, walked from the root.
fn walk(fs: &Fs, dir: Ino, path: &[u8], out: &mut Namespace) {
    let fh = fs.opendir(dir).unwrap();
    let mut names = Vec::new();
    fs.readdir(dir, fh, 0, false, &mut |e| {
        if e.name != b"." && e.name != b".." {
            names.push(e.name.clone());
        }
        true
    })
    .unwrap();
    fs.releasedir(dir, fh).unwrap();
    for name in names {
        let attr = fs.lookup(dir, &name).unwrap();
        let p = join(path, &name);
        let node = match attr.inode.kind {
            FileKind::Dir => {
                walk(fs, attr.ino, &p, out);
                Node::Dir
            }
            FileKind::Symlink => Node::Symlink(fs.readlink(attr.ino).unwrap()),
            _ => {
                let size = attr.inode.size;
                let bytes = fs.read(attr.ino, 0, size as u32 + 1).unwrap();
                assert_eq!(bytes.len() as u64, size, "{}: a read ends at the size", String::from_utf8_lossy(&p));
                Node::File(attr.ino)
            }
        };
        out.insert(p, node);
    }
}

fn run_seed(seed: u64) {
    let sync = seed % 4 == 3;
    let probe = SimDisk::new();
    let history = workload(&probe, seed, sync, None);
    let total = history.last().expect("the workload has a start").disk_ops;
    let mut rng = Rng(seed ^ 0xc0ff_ee00);
    for i in 0..CRASHES_PER_SEED {
        let at = history[0].disk_ops + rng.below((total - history[0].disk_ops) as usize + 1) as u64;
        let mode = match i % 3 {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::Torn { seed: seed * 31 + i as u64 },
            _ => CrashMode::KillProcess,
        };
        let disk = SimDisk::new();
        let history = workload(&disk, seed, sync, Some((at, mode)));
        let image = disk.take_crash_image().unwrap_or_else(|| disk.crash(mode));
        let boot = if mode == CrashMode::KillProcess { BOOT } else { REBOOTED };
        let ctx = format!("seed {seed}, {mode:?} before disk op {at}");
        check_recovered(&open_fs(&image, boot, sync), &image, &history, at, &ctx);
        assert_fsck_clean(&image, &ctx);
    }
}

/// Run the seeded workload on `disk`, arming a crash image at `crash`.
fn workload(disk: &SimDisk, seed: u64, sync: bool, crash: Option<(u64, CrashMode)>) -> Vec<Record> {
    let fs = open_fs(disk, BOOT, sync);
    if let Some((at, mode)) = crash {
        disk.crash_before_op(at, mode);
    }
    let mut m = Model { ns: Namespace::new(), contents: HashMap::new(), synced: HashMap::new(), sync_mode: sync };
    let mut rng = Rng(seed);
    let start = Record { disk_ops: disk.ops_count(), ns: Namespace::new(), durable: true, synced: HashMap::new() };
    let mut history = vec![start];
    for _ in 0..OPS {
        let durable = step(&fs, &mut m, &mut rng);
        history.push(Record { disk_ops: disk.ops_count(), ns: m.ns.clone(), durable, synced: m.synced.clone() });
    }
    history
}

fn check_recovered(fs: &Fs, image: &SimDisk, history: &[Record], at: u64, ctx: &str) {
    let done = history.iter().rposition(|r| r.disk_ops <= at).expect("the start precedes every crash");
    let durable = history[..=done].iter().rposition(|r| r.durable).expect("the start is durable");
    let in_flight = (done + 1).min(history.len() - 1);
    let mut ns = Namespace::new();
    walk(fs, Ino::ROOT, b"", &mut ns);
    assert!(
        history[durable..=in_flight].iter().any(|r| r.ns == ns),
        "{ctx}: the namespace is none of ops {durable}..={in_flight}: {:?}",
        ns.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
    );
    for (ino, bytes) in &history[done].synced {
        if history[in_flight].synced.get(ino) != Some(bytes) || !ns.values().any(|n| *n == Node::File(*ino)) {
            continue;
        }
        let got = fs.read(*ino, 0, bytes.len() as u32 + 1).unwrap();
        assert!(got == *bytes, "{ctx}: fsync'd inode {} reads {} bytes, not its {} synced bytes", ino.0, got.len(), bytes.len());
    }
    let mut objects = Vec::new();
    SimData::new(image.clone(), std::path::Path::new("/store/data")).unwrap().list(&mut |ino| objects.push(ino)).unwrap();
    for ino in objects {
        let live_file = fs.getattr(ino).is_ok_and(|a| a.inode.kind == FileKind::File);
        assert!(live_file, "{ctx}: data object {} belongs to no live file", ino.0);
    }
}

#[test]
fn power_loss_or_kill_at_a_random_disk_op_keeps_every_synced_state() {
    let seeds: Vec<u64> = match std::env::var("HOLT_CRASH_SEED") {
        Ok(s) => vec![s.parse().expect("HOLT_CRASH_SEED is a u64")],
        Err(_) => {
            let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            (0..SEEDS).map(|i| base.wrapping_mul(1000) + i).collect()
        }
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| run_seed(seed));
        if let Err(e) = outcome {
            eprintln!("power-loss test failed; replay with HOLT_CRASH_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}
