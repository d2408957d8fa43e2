//! One worker thread's seeded workload inside its own directory: it runs
//! operations until the daemon is killed under it, folding each
//! acknowledged operation into its model and remembering the one in flight.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exec::{Errno, Exec};
use crate::model::{within, Kind, Model, Time};
use crate::op::Op;
use crate::rng::Rng;

/// Entries a thread keeps at most before it turns to removing.
const ENTRIES_MAX: usize = 80;
/// Largest file the workload makes.
const FILE_BYTES_MAX: usize = 192 << 10;
/// Deepest directory below the thread's own.
const DEPTH_MAX: usize = 4;
/// Acknowledged operations kept for a failure report.
const RECENT_MAX: usize = 24;
/// How a call on a mount whose daemon was killed fails.
const DEAD_ERRNOS: [Errno; 3] = [libc::ENOTCONN, libc::ECONNABORTED, libc::EIO];

/// What a worker did in one round.
pub struct Outcome {
    pub acked: u64,
    /// The mutating call that had not returned success when the daemon died.
    pub in_flight: Option<Op>,
    /// The latest acknowledged operations, oldest first.
    pub recent: VecDeque<String>,
    /// A call that failed while the daemon was alive, or in a way a kill does not explain.
    pub unexpected: Option<String>,
}

/// The thread stops: the daemon is gone (or something failed).
struct Stop;

struct Worker<'a> {
    exec: Exec,
    model: &'a mut Model,
    rng: Rng,
    killed: &'a AtomicBool,
    out: Outcome,
}

/// Run operations on `model`'s directory until one fails.
pub fn run(mount: &Path, model: &mut Model, rng: Rng, killed: &AtomicBool) -> Outcome {
    let out = Outcome { acked: 0, in_flight: None, recent: VecDeque::new(), unexpected: None };
    let mut w = Worker { exec: Exec::new(mount), model, rng, killed, out };
    while w.action().is_ok() {}
    w.exec.close();
    w.out
}

impl Worker<'_> {
    /// Run one mutating call and fold it into the model once acknowledged.
    fn step(&mut self, op: Op) -> Result<(), Stop> {
        self.call(op).map(drop)
    }

    /// `step`, returning the bytes a write wrote.
    fn call(&mut self, op: Op) -> Result<usize, Stop> {
        match self.exec.run(&op) {
            Ok(done) => {
                let op = op.acknowledged(done);
                if matches!(&op, Op::Write { data, .. } if data.is_empty()) {
                    return Err(self.failed(&op, None));
                }
                op.apply(self.model);
                self.out.acked += 1;
                if self.out.recent.len() == RECENT_MAX {
                    self.out.recent.pop_front();
                }
                self.out.recent.push_back(op.to_string());
                Ok(done)
            }
            Err(errno) => {
                let stop = self.failed(&op, Some(errno));
                self.out.in_flight = op.mutates().then_some(op);
                Err(stop)
            }
        }
    }

    /// A call failed: expected only once the daemon is dead.
    fn failed(&mut self, what: &dyn std::fmt::Display, errno: Option<Errno>) -> Stop {
        let killed = self.killed.load(Ordering::SeqCst);
        let error = match errno {
            Some(e) => std::io::Error::from_raw_os_error(e).to_string(),
            None => "wrote 0 bytes".to_string(),
        };
        if !killed || !errno.is_some_and(|e| DEAD_ERRNOS.contains(&e)) {
            let when = if killed { "after the kill" } else { "while the daemon was alive" };
            self.out.unexpected = Some(format!("{what} failed {when}: {error}"));
        }
        Stop
    }

    fn open_existing(&mut self, path: &str) -> Result<(), Stop> {
        self.exec.open_existing(path).map_err(|e| self.failed(&format!("open {path}"), Some(e)))
    }

    /// One action of a few calls, chosen by weight among those the model allows.
    fn action(&mut self) -> Result<(), Stop> {
        let crowded = self.model.paths.len() > ENTRIES_MAX;
        let roll = self.rng.below(100);
        if crowded && roll < 50 {
            return self.remove_something();
        }
        match roll {
            0..=14 => self.new_file(),
            15..=29 => self.overwrite(),
            30..=35 => self.truncate(),
            36..=39 => self.open_truncate(),
            40..=45 => self.mkdir(),
            46..=49 => self.rmdir(),
            50..=56 => self.rename_file(),
            57..=60 => self.rename_dir(),
            61..=65 => self.replace(),
            66..=70 => self.link(),
            71..=74 => self.symlink(),
            75..=82 => self.unlink(),
            83..=86 => self.chmod(),
            87..=90 => self.utimens(),
            91..=96 => self.setxattr(),
            _ => self.removexattr(),
        }
    }

    fn files(&self) -> Vec<String> {
        self.model.paths_where(|k| matches!(k, Kind::File(_)))
    }

    fn dirs(&self) -> Vec<String> {
        self.model.paths_where(|k| *k == Kind::Dir)
    }

    fn pick(&mut self, from: Vec<String>) -> Option<String> {
        self.rng.pick(&from).cloned()
    }

    /// A directory to make a new entry in.
    fn target_dir(&mut self) -> String {
        let dirs: Vec<String> = self.dirs().into_iter().filter(|d| self.model.depth(d) < DEPTH_MAX).collect();
        self.pick(dirs).unwrap_or_else(|| self.model.root.clone())
    }

    fn new_name(&mut self, prefix: &str) -> String {
        let dir = self.target_dir();
        self.model.fresh_name(&dir, prefix)
    }

    fn remove_something(&mut self) -> Result<(), Stop> {
        let empty: Vec<String> =
            self.dirs().into_iter().filter(|d| *d != self.model.root && self.model.is_empty_dir(d)).collect();
        match self.pick(empty) {
            Some(path) if self.rng.chance(30) => self.step(Op::Rmdir { path }),
            _ => self.unlink(),
        }
    }

    fn file_mode(&mut self) -> u32 {
        0o600 | self.rng.below(0o200) as u32
    }

    fn new_file(&mut self) -> Result<(), Stop> {
        let path = self.new_name("f");
        let mode = self.file_mode();
        self.step(Op::Create { path: path.clone(), mode })?;
        for _ in 0..self.rng.below(4) {
            self.write(&path)?;
        }
        self.maybe_fsync(&path)?;
        self.exec.close();
        Ok(())
    }

    fn overwrite(&mut self) -> Result<(), Stop> {
        let Some(path) = self.pick(self.files()) else { return self.new_file() };
        self.open_existing(&path)?;
        for _ in 0..1 + self.rng.below(3) {
            self.write(&path)?;
        }
        self.maybe_fsync(&path)?;
        self.exec.close();
        Ok(())
    }

    fn maybe_fsync(&mut self, path: &str) -> Result<(), Stop> {
        if self.rng.chance(40) {
            self.step(Op::Fsync { path: path.to_string() })?;
        }
        Ok(())
    }

    fn size(&self, path: &str) -> usize {
        match &self.model.node(path).kind {
            Kind::File(crate::model::Content::Exact(b)) => b.len(),
            other => panic!("{path}: a write to a file found {other:?}"),
        }
    }

    /// One pwrite: small, page-sized or many pages; appending, overwriting,
    /// or past the end (leaving a hole).
    fn write(&mut self, path: &str) -> Result<(), Stop> {
        let size = self.size(path);
        let len = match self.rng.below(100) {
            0..=39 => self.rng.between(1, 200),
            40..=74 => self.rng.between(200, 16 << 10),
            _ => self.rng.between(16 << 10, 128 << 10),
        } as usize;
        let mut off = match self.rng.below(100) {
            0..=49 => size,
            50..=79 => self.rng.below(size as u64 + 1) as usize,
            _ => size + self.rng.between(1, 20 << 10) as usize,
        };
        if off + len > FILE_BYTES_MAX {
            off = self.rng.below((FILE_BYTES_MAX - len) as u64) as usize;
        }
        let data = self.rng.bytes(len);
        self.write_all(path, off, data)
    }

    /// pwrite until every byte is written. A short write acknowledges only
    /// its prefix: the kernel splits a large write into several requests,
    /// and when the daemon dies under a later one, the call returns what
    /// the earlier ones wrote while the rest may have landed, page by page.
    /// Writing the rest again makes it the in-flight call, which is exactly
    /// that uncertainty.
    fn write_all(&mut self, path: &str, mut off: usize, mut data: Vec<u8>) -> Result<(), Stop> {
        loop {
            let done = self.call(Op::Write { path: path.to_string(), off, data: data.clone() })?;
            if done == data.len() {
                return Ok(());
            }
            off += done;
            data.drain(..done);
        }
    }

    fn truncate(&mut self) -> Result<(), Stop> {
        let Some(path) = self.pick(self.files()) else { return self.new_file() };
        let size = self.size(&path);
        let len = if self.rng.chance(50) {
            self.rng.below(size as u64 + 1) as usize
        } else {
            (size + self.rng.between(1, 64 << 10) as usize).min(FILE_BYTES_MAX)
        };
        self.open_existing(&path)?;
        self.step(Op::Truncate { path: path.clone(), len })?;
        if self.rng.chance(30) {
            self.write(&path)?;
        }
        self.exec.close();
        Ok(())
    }

    fn open_truncate(&mut self) -> Result<(), Stop> {
        let Some(path) = self.pick(self.files()) else { return self.new_file() };
        self.step(Op::OpenTrunc { path: path.clone() })?;
        if self.rng.chance(60) {
            self.write(&path)?;
        }
        self.exec.close();
        Ok(())
    }

    fn mkdir(&mut self) -> Result<(), Stop> {
        let path = self.new_name("d");
        let mode = 0o700 | self.rng.below(0o100) as u32;
        self.step(Op::Mkdir { path, mode })
    }

    fn rmdir(&mut self) -> Result<(), Stop> {
        let empty: Vec<String> =
            self.dirs().into_iter().filter(|d| *d != self.model.root && self.model.is_empty_dir(d)).collect();
        match self.pick(empty) {
            Some(path) => self.step(Op::Rmdir { path }),
            None => self.mkdir(),
        }
    }

    fn rename_file(&mut self) -> Result<(), Stop> {
        let movable = self.model.paths_where(|k| !matches!(k, Kind::Dir));
        let Some(from) = self.pick(movable) else { return self.new_file() };
        let to = self.new_name("r");
        self.step(Op::Rename { from, to })
    }

    /// Directories `from` may move into: not inside itself, and not so
    /// deep that its subtree passes the depth limit.
    fn dir_destinations(&self, from: &str) -> Vec<String> {
        let height = self.model.paths.keys().filter(|p| within(p, from)).map(|p| self.model.depth(p)).max();
        let height = height.unwrap_or(0) - self.model.depth(from);
        self.dirs().into_iter().filter(|d| !within(d, from) && self.model.depth(d) + 1 + height <= DEPTH_MAX).collect()
    }

    fn rename_dir(&mut self) -> Result<(), Stop> {
        let dirs: Vec<String> = self.dirs().into_iter().filter(|d| *d != self.model.root).collect();
        let Some(from) = self.pick(dirs) else { return self.mkdir() };
        let Some(dest) = self.pick(self.dir_destinations(&from)) else { return self.mkdir() };
        let to = self.model.fresh_name(&dest, "m");
        self.step(Op::Rename { from, to })
    }

    /// Rename over an existing name: a file or symlink over another inode's
    /// file or symlink, or a directory over an empty directory.
    fn replace(&mut self) -> Result<(), Stop> {
        if self.rng.chance(30) {
            return self.replace_dir();
        }
        let names = self.model.paths_where(|k| !matches!(k, Kind::Dir));
        let (Some(from), Some(to)) = (self.pick(names.clone()), self.pick(names)) else { return self.new_file() };
        if self.model.paths[&from] == self.model.paths[&to] {
            return self.new_file();
        }
        self.step(Op::Rename { from, to })
    }

    fn replace_dir(&mut self) -> Result<(), Stop> {
        let dirs: Vec<String> = self.dirs().into_iter().filter(|d| *d != self.model.root).collect();
        let Some(from) = self.pick(dirs) else { return self.mkdir() };
        let targets: Vec<String> = self
            .dir_destinations(&from)
            .into_iter()
            .filter(|d| *d != self.model.root && self.model.is_empty_dir(d))
            .collect();
        let Some(to) = self.pick(targets) else { return self.mkdir() };
        self.step(Op::Rename { from, to })
    }

    fn link(&mut self) -> Result<(), Stop> {
        let Some(from) = self.pick(self.files()) else { return self.new_file() };
        let to = self.new_name("l");
        self.step(Op::Link { from, to })
    }

    fn symlink(&mut self) -> Result<(), Stop> {
        let target = match self.pick(self.model.paths.keys().cloned().collect()) {
            Some(p) if self.rng.chance(70) => format!("../{p}").into_bytes(),
            _ => format!("dangling/{}", self.rng.next()).into_bytes(),
        };
        let path = self.new_name("s");
        self.step(Op::Symlink { target, path })
    }

    fn unlink(&mut self) -> Result<(), Stop> {
        let names = self.model.paths_where(|k| !matches!(k, Kind::Dir));
        let Some(path) = self.pick(names) else { return self.new_file() };
        self.step(Op::Unlink { path })
    }

    /// A file or directory (symlinks have no mode, times or user xattrs of their own to set).
    fn pick_inode(&mut self) -> Option<String> {
        let names = self.model.paths_where(|k| !matches!(k, Kind::Symlink(_)));
        self.pick(names)
    }

    fn chmod(&mut self) -> Result<(), Stop> {
        let Some(path) = self.pick_inode() else { return self.new_file() };
        let mode = match self.model.node(&path).kind {
            Kind::Dir => 0o700 | self.rng.below(0o100) as u32,
            _ => self.file_mode(),
        };
        self.step(Op::Chmod { path, mode })
    }

    fn utimens(&mut self) -> Result<(), Stop> {
        let Some(path) = self.pick_inode() else { return self.new_file() };
        let mtime = Time {
            sec: self.rng.between(1_000_000_000, 1_900_000_000) as i64,
            nsec: self.rng.below(1_000_000_000) as i64,
        };
        self.step(Op::Utimens { path, mtime })
    }

    fn setxattr(&mut self) -> Result<(), Stop> {
        let Some(path) = self.pick_inode() else { return self.new_file() };
        let name = format!("user.k{}", self.rng.below(5)).into_bytes();
        let len = if self.rng.chance(90) { self.rng.below(65) } else { self.rng.between(65, 4000) };
        let value = self.rng.bytes(len as usize);
        self.step(Op::SetXattr { path, name, value })
    }

    fn removexattr(&mut self) -> Result<(), Stop> {
        let with_xattrs = self.model.paths.iter().filter(|(_, id)| !self.model.nodes[id].xattrs.is_empty());
        let paths: Vec<String> = with_xattrs.map(|(p, _)| p.clone()).collect();
        let Some(path) = self.pick(paths) else { return self.setxattr() };
        let names: Vec<Vec<u8>> = self.model.node(&path).xattrs.keys().cloned().collect();
        let name = self.rng.pick(&names).expect("chosen for having xattrs").clone();
        self.step(Op::RemoveXattr { path, name })
    }
}
