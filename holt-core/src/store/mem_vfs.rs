//! An in-memory [`Vfs`] built for crash simulation and fault injection.
//!
//! Model of the medium (what a power loss can and cannot do):
//! - Each file has current bytes (what reads see) and durable bytes (as of its
//!   last successful `sync_data`), plus the ordered list of writes and
//!   truncations made since that sync.
//! - Directory entries (create, remove, rename) become durable when their
//!   directory is synced with `sync_dir`; until then a crash forgets them.
//!   Directories themselves are durable as soon as they are created.
//! - [`MemVfs::crash`] returns the machine after a power loss: the durable
//!   namespace, and per file either the durable bytes (`DropUnsynced`) or the
//!   durable bytes plus a seeded random subset of the unsynced writes, each of
//!   which may be torn at 512-byte sector granularity (`Torn`).
//! - A failed `sync_data` makes nothing durable (like Linux after an fsync
//!   error, the caller cannot know what reached the disk).
//! - A failed write applies nothing.
//! - `allocate` extends a file with zeros, like `fallocate` mode 0; it
//!   counts as a write (faults and the operation count apply to it).
//! - A disk may be given a capacity: the files reachable by name or by an
//!   open handle hold at most that many bytes (their lengths; there are no
//!   holes), and a write, truncation or allocation that would grow them
//!   past it fails with ENOSPC and applies nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::image_buf::AlignedReads;
use super::splitmix::SplitMix64;
use super::vfs::{FileIo, Vfs};

/// Torn writes tear on this boundary (absolute file offsets).
pub(crate) const SECTOR_BYTES: u64 = 512;

/// What survives a simulated power loss.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Only what was synced.
    DropUnsynced,
    /// What was synced plus a random subset of unsynced writes, each possibly
    /// torn at 512-byte sector granularity; replayable from `seed`.
    Torn { seed: u64 },
    /// The process was killed, the machine kept running: every completed
    /// write and name change is there (the page cache survives), and what
    /// was not yet synced is still exposed to a later power loss.
    KillProcess,
}

/// Handle to one simulated machine's files. Clones share the same files.
#[derive(Clone, Default)]
pub(crate) struct MemVfs {
    state: Arc<Mutex<MemState>>,
}

#[derive(Default)]
struct MemState {
    /// Current namespace: path -> inode.
    names: BTreeMap<PathBuf, u64>,
    /// Namespace as it would survive a crash.
    names_durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Invariant: holds every inode reachable from `names`, `names_durable`
    /// or an open handle, and no other.
    inodes: BTreeMap<u64, Inode>,
    ino_next: u64,
    write_fault: Option<Fault>,
    sync_fault: Option<Fault>,
    /// Most bytes the live files may hold; `None`: unbounded.
    capacity_bytes: Option<u64>,
    writes_count: u64,
    syncs_count: u64,
    /// Directories locked through [`MemVfs::lock_dir`].
    locked_dirs: BTreeSet<PathBuf>,
    ops_count: u64,
    crash_point: Option<(u64, CrashMode)>,
    crash_image: Option<Box<MemState>>,
    /// Called with a read's offset before it reads, outside the lock.
    read_hook: Option<ReadHook>,
}

/// What `MemVfs::set_read_hook` runs: it may block, to hold a read in
/// flight while other threads go on.
pub(crate) type ReadHook = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Mutations since the last successful sync, oldest first.
    /// Invariant: applying them in order to `durable` gives `current`.
    unsynced: Vec<Pending>,
    handles_open: usize,
}

#[derive(Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// A sticky fault: after `ok_left` more successful calls, every call fails.
#[derive(Copy, Clone)]
struct Fault {
    ok_left: u64,
    errno: i32,
}

impl Fault {
    fn check(fault: &mut Option<Fault>) -> io::Result<()> {
        match fault {
            None => Ok(()),
            Some(f) if f.ok_left == 0 => Err(io::Error::from_raw_os_error(f.errno)),
            Some(f) => {
                f.ok_left -= 1;
                Ok(())
            }
        }
    }
}

impl MemVfs {
    pub(crate) fn new() -> Self {
        MemVfs::default()
    }

    /// After `n` more successful writes (or truncations), every write fails
    /// with `errno` until [`MemVfs::clear_faults`].
    pub(crate) fn fail_write_after_with(&self, n: u64, errno: i32) {
        self.state.lock().write_fault = Some(Fault { ok_left: n, errno });
    }

    /// Run `hook` with each read's offset before the read, on the reading
    /// thread, no lock held; `None` removes it.
    #[cfg(test)]
    pub(crate) fn set_read_hook(&self, hook: Option<ReadHook>) {
        self.state.lock().read_hook = hook;
    }

    /// After `n` more successful syncs (`sync_data` or `sync_dir`), every sync
    /// fails with EIO until [`MemVfs::clear_faults`].
    #[cfg(test)]
    pub(crate) fn fail_sync_after(&self, n: u64) {
        self.fail_sync_after_with(n, libc::EIO);
    }

    pub(crate) fn fail_sync_after_with(&self, n: u64, errno: i32) {
        self.state.lock().sync_fault = Some(Fault { ok_left: n, errno });
    }

    /// Let the live files hold at most `bytes` (`None`: no limit); growth
    /// past it fails with ENOSPC. Not a fault: `clear_faults` keeps it.
    pub(crate) fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().capacity_bytes = bytes;
    }

    /// Bytes held by files reachable by name or by an open handle.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes()
    }

    pub(crate) fn clear_faults(&self) {
        let mut st = self.state.lock();
        st.write_fault = None;
        st.sync_fault = None;
    }

    /// Write and truncate calls attempted so far (failed ones included).
    #[cfg(test)]
    pub(crate) fn writes_count(&self) -> u64 {
        self.state.lock().writes_count
    }

    /// `sync_data` and `sync_dir` calls attempted so far (failed ones included).
    #[cfg(test)]
    pub(crate) fn syncs_count(&self) -> u64 {
        self.state.lock().syncs_count
    }

    /// The machine after a power loss. The returned `MemVfs` is independent:
    /// no open handle, no fault, no lock, counters at zero.
    pub(crate) fn crash(&self, mode: CrashMode) -> MemVfs {
        let after = self.state.lock().crashed(mode);
        MemVfs { state: Arc::new(Mutex::new(after)) }
    }

    /// Arrange for a crash image to be taken just before mutating operation
    /// number `op_index` (0-based; writes, truncations, syncs, creates,
    /// removes and renames count), so a test can run a protocol to the end
    /// and then inspect the machine as a power loss at that step left it.
    pub(crate) fn crash_before_op(&self, op_index: u64, mode: CrashMode) {
        let mut st = self.state.lock();
        st.crash_point = Some((op_index, mode));
        st.crash_image = None;
    }

    /// The image armed by [`MemVfs::crash_before_op`], if that operation
    /// was reached.
    pub(crate) fn take_crash_image(&self) -> Option<MemVfs> {
        let image = self.state.lock().crash_image.take()?;
        Some(MemVfs { state: Arc::new(Mutex::new(*image)) })
    }

    /// Mutating operations performed so far (the index space of
    /// [`MemVfs::crash_before_op`]).
    pub(crate) fn ops_count(&self) -> u64 {
        self.state.lock().ops_count
    }

    /// Current bytes of `path` (test inspection), `None` if absent.
    #[cfg(test)]
    pub(crate) fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        st.names.get(path).map(|ino| st.inodes[ino].current.clone())
    }

    /// Overwrite bytes of `path` as if the medium had changed them, durably
    /// and without counting as a write (bit rot, for corruption tests).
    #[cfg(test)]
    pub(crate) fn corrupt(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = *st.names.get(path).ok_or_else(|| enoent(path))?;
        let inode = st.inodes.get_mut(&ino).expect("named inode exists");
        apply_write(&mut inode.current, offset, bytes);
        apply_write(&mut inode.durable, offset, bytes);
        for p in &mut inode.unsynced {
            if let Pending::Write { offset: o, bytes: b } = p {
                overlay(b, *o, offset, bytes);
            }
        }
        Ok(())
    }

    /// Take the in-process lock on `dir`; EWOULDBLOCK if already held.
    /// Released when the guard drops.
    pub(crate) fn lock_dir(&self, dir: &Path) -> io::Result<MemDirLock> {
        let mut st = self.state.lock();
        if !st.locked_dirs.insert(dir.to_path_buf()) {
            return Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK));
        }
        Ok(MemDirLock { state: Arc::clone(&self.state), dir: dir.to_path_buf() })
    }
}

/// Held lock on a [`MemVfs`] directory.
pub(crate) struct MemDirLock {
    state: Arc<Mutex<MemState>>,
    dir: PathBuf,
}

impl Drop for MemDirLock {
    fn drop(&mut self) {
        self.state.lock().locked_dirs.remove(&self.dir);
    }
}

/// Durable bytes plus a seeded subset of `unsynced`: each mutation is
/// dropped, applied whole, or (writes only) applied sector by sector at random.
fn torn_image(durable: &[u8], unsynced: &[Pending], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = durable.to_vec();
    for p in unsynced {
        match (p, rng.below(3)) {
            (_, 0) => {}
            (Pending::SetLen(len), _) => out.resize(to_usize(*len), 0),
            (Pending::Write { offset, bytes }, 1) => apply_write(&mut out, *offset, bytes),
            (Pending::Write { offset, bytes }, _) => {
                for (sector_offset, sector) in sectors(*offset, bytes) {
                    if rng.coin() {
                        apply_write(&mut out, sector_offset, sector);
                    }
                }
            }
        }
    }
    out
}

/// Splits a write at `offset` into pieces that do not cross a sector boundary.
fn sectors(offset: u64, bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= bytes.len() {
            return None;
        }
        let abs = offset + pos as u64;
        let room = (SECTOR_BYTES - abs % SECTOR_BYTES) as usize;
        let end = (pos + room).min(bytes.len());
        let piece = (abs, &bytes[pos..end]);
        pos = end;
        Some(piece)
    })
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("simulated file sizes fit in memory")
}

fn apply_write(buf: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = to_usize(offset);
    let end = start + bytes.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(bytes);
}

/// Copies the part of (`src_offset`, `src`) that overlaps (`dst_offset`, `dst`).
#[cfg(test)]
fn overlay(dst: &mut [u8], dst_offset: u64, src_offset: u64, src: &[u8]) {
    let lo = dst_offset.max(src_offset);
    let hi = (dst_offset + dst.len() as u64).min(src_offset + src.len() as u64);
    if lo < hi {
        let (d, s, n) = ((lo - dst_offset) as usize, (lo - src_offset) as usize, (hi - lo) as usize);
        dst[d..d + n].copy_from_slice(&src[s..s + n]);
    }
}

fn enoent(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl MemState {
    /// State after a power loss now (see the module doc).
    fn crashed(&self, mode: CrashMode) -> MemState {
        let mut rng = match mode {
            CrashMode::DropUnsynced => None,
            CrashMode::Torn { seed } => Some(SplitMix64::new(seed)),
            CrashMode::KillProcess => return self.killed(),
        };
        let mut inodes = BTreeMap::new();
        for &ino in self.names_durable.values() {
            if inodes.contains_key(&ino) {
                continue;
            }
            let inode = &self.inodes[&ino];
            let bytes = match rng.as_mut() {
                None => inode.durable.clone(),
                Some(rng) => torn_image(&inode.durable, &inode.unsynced, rng),
            };
            inodes.insert(ino, Inode { current: bytes.clone(), durable: bytes, ..Inode::default() });
        }
        MemState {
            names: self.names_durable.clone(),
            names_durable: self.names_durable.clone(),
            dirs: self.dirs.clone(),
            inodes,
            ino_next: self.ino_next,
            ..MemState::default()
        }
    }

    /// State after the owning process is killed (see `CrashMode::KillProcess`).
    fn killed(&self) -> MemState {
        let mut inodes = BTreeMap::new();
        for &ino in self.names.values().chain(self.names_durable.values()) {
            let i = &self.inodes[&ino];
            inodes.entry(ino).or_insert_with(|| Inode {
                current: i.current.clone(),
                durable: i.durable.clone(),
                unsynced: i.unsynced.clone(),
                handles_open: 0,
            });
        }
        MemState {
            names: self.names.clone(),
            names_durable: self.names_durable.clone(),
            dirs: self.dirs.clone(),
            inodes,
            ino_next: self.ino_next,
            ..MemState::default()
        }
    }

    /// Called before every mutating operation: counts it and takes the
    /// armed crash image when its turn comes.
    fn tick(&mut self) {
        if let Some((at, mode)) = self.crash_point {
            if at == self.ops_count {
                self.crash_image = Some(Box::new(self.crashed(mode)));
            }
        }
        self.ops_count += 1;
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        let parent = parent_of(path);
        if parent.as_os_str().is_empty() || self.dirs.contains(&parent) {
            Ok(())
        } else {
            Err(enoent(&parent))
        }
    }

    /// Drops `ino` if nothing reaches it any more.
    fn collect(&mut self, ino: u64) {
        let reachable = self.inodes.get(&ino).is_some_and(|i| i.handles_open > 0)
            || self.names.values().any(|&i| i == ino)
            || self.names_durable.values().any(|&i| i == ino);
        if !reachable {
            self.inodes.remove(&ino);
        }
    }

    /// See [`MemVfs::used_bytes`].
    fn used_bytes(&self) -> u64 {
        let named: BTreeSet<u64> = self.names.values().copied().collect();
        let live = self.inodes.iter().filter(|(ino, i)| i.handles_open > 0 || named.contains(ino));
        live.map(|(_, i)| i.current.len() as u64).sum()
    }

    /// ENOSPC if growing a file by `bytes` would pass the capacity.
    fn check_space(&self, bytes: u64) -> io::Result<()> {
        match self.capacity_bytes {
            Some(cap) if bytes > 0 && self.used_bytes().saturating_add(bytes) > cap => {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            _ => Ok(()),
        }
    }

    fn inode_mut(&mut self, ino: u64) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("an open handle keeps its inode alive")
    }
}

struct MemFile {
    state: Arc<Mutex<MemState>>,
    ino: u64,
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        st.inode_mut(self.ino).handles_open -= 1;
        st.collect(self.ino);
    }
}

impl MemFile {
    fn mutate(&self, p: Pending) -> io::Result<()> {
        let mut st = self.state.lock();
        st.tick();
        st.writes_count += 1;
        Fault::check(&mut st.write_fault)?;
        let len = st.inode_mut(self.ino).current.len() as u64;
        let grown_len = match &p {
            Pending::Write { offset, bytes } => offset + bytes.len() as u64,
            Pending::SetLen(new_len) => *new_len,
        };
        st.check_space(grown_len.saturating_sub(len))?;
        let inode = st.inode_mut(self.ino);
        match &p {
            Pending::Write { offset, bytes } => apply_write(&mut inode.current, *offset, bytes),
            Pending::SetLen(len) => inode.current.resize(to_usize(*len), 0),
        }
        inode.unsynced.push(p);
        Ok(())
    }
}

impl FileIo for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let hook = self.state.lock().read_hook.clone();
        if let Some(hook) = hook {
            hook(offset);
        }
        let mut st = self.state.lock();
        let cur = &st.inode_mut(self.ino).current;
        let start = to_usize(offset).min(cur.len());
        let n = buf.len().min(cur.len() - start);
        buf[..n].copy_from_slice(&cur[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // As on a real file (`write_all_at` of nothing makes no call): an
        // empty write neither extends the file nor counts as an operation.
        if buf.is_empty() {
            return Ok(());
        }
        self.mutate(Pending::Write { offset, bytes: buf.to_vec() })
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        st.tick();
        st.syncs_count += 1;
        Fault::check(&mut st.sync_fault)?;
        let inode = st.inode_mut(self.ino);
        for p in std::mem::take(&mut inode.unsynced) {
            match p {
                Pending::Write { offset, bytes } => apply_write(&mut inode.durable, offset, &bytes),
                Pending::SetLen(len) => inode.durable.resize(to_usize(len), 0),
            }
        }
        debug_assert!(inode.durable == inode.current, "synced image equals current image");
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().inode_mut(self.ino).current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate(Pending::SetLen(len))
    }

    /// An extension with zeros to cover the range (never a shrink).
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let to = offset.checked_add(len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let cur = self.len()?;
        self.mutate(Pending::SetLen(to.max(cur)))
    }

    /// A write of zeros clipped to the current length: a crash may keep or
    /// drop it, as it may an unsynced punch on a real disk.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let cur = self.len()?;
        let end = offset.saturating_add(len).min(cur);
        if end <= offset {
            return Ok(());
        }
        self.mutate(Pending::Write { offset, bytes: vec![0; to_usize(end - offset)] })
    }
}

impl Vfs for MemVfs {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        let mut st = self.state.lock();
        st.check_parent(path)?;
        let ino = match st.names.get(path) {
            Some(&ino) => ino,
            None if create => {
                st.tick();
                st.ino_next += 1;
                let ino = st.ino_next;
                st.inodes.insert(ino, Inode::default());
                st.names.insert(path.to_path_buf(), ino);
                ino
            }
            None => return Err(enoent(path)),
        };
        st.inode_mut(ino).handles_open += 1;
        Ok(Arc::new(MemFile { state: Arc::clone(&self.state), ino }))
    }

    /// The same file, refusing misaligned reads as `O_DIRECT` does.
    fn open_direct_reader(&self, path: &Path) -> io::Result<Option<Arc<dyn FileIo>>> {
        Ok(Some(Arc::new(AlignedReads { file: self.open(path, false)?, refuse: false })))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.tick();
        let ino = st.names.remove(path).ok_or_else(|| enoent(path))?;
        st.collect(ino);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.tick();
        st.check_parent(to)?;
        let ino = st.names.remove(from).ok_or_else(|| enoent(from))?;
        if let Some(replaced) = st.names.insert(to.to_path_buf(), ino) {
            st.collect(replaced);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.tick();
        st.syncs_count += 1;
        Fault::check(&mut st.sync_fault)?;
        if !st.dirs.contains(dir) {
            return Err(enoent(dir));
        }
        let mut dropped = Vec::new();
        st.names_durable.retain(|p, ino| {
            let keep = parent_of(p) != dir;
            if !keep {
                dropped.push(*ino);
            }
            keep
        });
        let now: Vec<_> =
            st.names.iter().filter(|(p, _)| parent_of(p) == dir).map(|(p, i)| (p.clone(), *i)).collect();
        st.names_durable.extend(now);
        for ino in dropped {
            st.collect(ino);
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let st = self.state.lock();
        if !st.dirs.contains(dir) {
            return Err(enoent(dir));
        }
        Ok(st.names.keys().filter(|p| parent_of(p) == dir).cloned().collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        for anc in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            st.dirs.insert(anc.to_path_buf());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (MemVfs, PathBuf, Arc<dyn FileIo>) {
        let vfs = MemVfs::new();
        let dir = PathBuf::from("/s");
        vfs.create_dir_all(&dir).unwrap();
        let f = vfs.open(&dir.join("f"), true).unwrap();
        vfs.sync_dir(&dir).unwrap();
        (vfs, dir, f)
    }

    fn read_all(vfs: &MemVfs, path: &Path) -> Vec<u8> {
        vfs.file_bytes(path).unwrap()
    }

    #[test]
    fn drop_unsynced_keeps_only_synced_bytes() {
        let (vfs, dir, f) = setup();
        f.write_at(b"durable", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b"DURABLE-and-more", 0).unwrap();
        assert_eq!(read_all(&vfs, &dir.join("f")), b"DURABLE-and-more");
        let after = vfs.crash(CrashMode::DropUnsynced);
        assert_eq!(read_all(&after, &dir.join("f")), b"durable");
    }

    #[test]
    fn entries_not_dir_synced_vanish_or_revert() {
        let (vfs, dir, f) = setup();
        f.write_at(b"old", 0).unwrap();
        f.sync_data().unwrap();
        let g = vfs.open(&dir.join("g"), true).unwrap();
        g.write_at(b"new", 0).unwrap();
        g.sync_data().unwrap();
        vfs.rename(&dir.join("g"), &dir.join("f")).unwrap();
        assert_eq!(read_all(&vfs, &dir.join("f")), b"new");
        let after = vfs.crash(CrashMode::DropUnsynced);
        assert_eq!(read_all(&after, &dir.join("f")), b"old");
        assert!(after.file_bytes(&dir.join("g")).is_none(), "g was never dir-synced");
        vfs.sync_dir(&dir).unwrap();
        let after = vfs.crash(CrashMode::DropUnsynced);
        assert_eq!(read_all(&after, &dir.join("f")), b"new");
        assert_eq!(after.list(&dir).unwrap(), vec![dir.join("f")]);
    }

    #[test]
    fn torn_crash_is_replayable_and_sector_granular() {
        let (vfs, dir, f) = setup();
        f.write_at(&vec![0xAA; 4096], 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(&vec![0xBB; 4096], 0).unwrap();
        let mut saw_mixed = false;
        for seed in 0..64 {
            let a = read_all(&vfs.crash(CrashMode::Torn { seed }), &dir.join("f"));
            let b = read_all(&vfs.crash(CrashMode::Torn { seed }), &dir.join("f"));
            assert_eq!(a, b, "seed {seed} replays");
            assert_eq!(a.len(), 4096);
            for sector in a.chunks(SECTOR_BYTES as usize) {
                assert!(sector.iter().all(|&x| x == sector[0]), "a sector is never split");
            }
            saw_mixed |= a.contains(&0xAA) && a.contains(&0xBB);
        }
        assert!(saw_mixed, "some seed tears the write");
    }

    #[test]
    fn torn_crash_can_apply_unsynced_extension() {
        let (vfs, dir, f) = setup();
        f.write_at(b"abc", 0).unwrap();
        let lens: BTreeSet<usize> =
            (0..32).map(|seed| read_all(&vfs.crash(CrashMode::Torn { seed }), &dir.join("f")).len()).collect();
        assert_eq!(lens, BTreeSet::from([0, 3]));
    }

    #[test]
    fn write_fault_is_sticky_and_applies_nothing() {
        let (vfs, dir, f) = setup();
        vfs.fail_write_after_with(1, libc::ENOSPC);
        f.write_at(b"one", 0).unwrap();
        let err = f.write_at(b"two", 3).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(f.set_len(0).is_err());
        assert_eq!(read_all(&vfs, &dir.join("f")), b"one");
        assert_eq!(vfs.writes_count(), 3);
        vfs.clear_faults();
        f.write_at(b"two", 3).unwrap();
        assert_eq!(read_all(&vfs, &dir.join("f")), b"onetwo");
    }

    #[test]
    fn failed_sync_makes_nothing_durable() {
        let (vfs, dir, f) = setup();
        vfs.fail_sync_after(0);
        f.write_at(b"lost", 0).unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert!(vfs.sync_dir(&dir).is_err());
        assert_eq!(vfs.syncs_count(), 3, "setup synced the directory once");
        assert_eq!(read_all(&vfs.crash(CrashMode::DropUnsynced), &dir.join("f")), b"");
    }

    #[test]
    fn removed_file_stays_usable_through_open_handle() {
        let (vfs, dir, f) = setup();
        vfs.remove(&dir.join("f")).unwrap();
        f.write_at(b"x", 0).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 1);
        assert!(vfs.open(&dir.join("f"), false).is_err());
        assert!(vfs.open(Path::new("/nodir/f"), true).is_err(), "parent must exist");
    }

    #[test]
    fn corrupt_survives_sync_of_pending_writes() {
        let (vfs, dir, f) = setup();
        f.write_at(&[0u8; 8], 0).unwrap();
        vfs.corrupt(&dir.join("f"), 2, &[0xFF]).unwrap();
        f.sync_data().unwrap();
        assert_eq!(read_all(&vfs.crash(CrashMode::DropUnsynced), &dir.join("f"))[2], 0xFF);
    }

    #[test]
    fn crash_image_is_taken_before_the_armed_op() {
        let (vfs, dir, f) = setup();
        let start = vfs.ops_count();
        vfs.crash_before_op(start + 2, CrashMode::DropUnsynced);
        f.write_at(b"a", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b"b", 0).unwrap();
        f.sync_data().unwrap();
        let image = vfs.take_crash_image().expect("op reached");
        assert_eq!(read_all(&image, &dir.join("f")), b"a");
        assert!(vfs.take_crash_image().is_none(), "taken once");
        assert_eq!(vfs.ops_count(), start + 4);
    }

    #[test]
    fn dir_lock_conflicts_until_released() {
        let vfs = MemVfs::new();
        let held = vfs.lock_dir(Path::new("/s")).unwrap();
        assert!(vfs.lock_dir(Path::new("/s")).is_err());
        assert!(vfs.crash(CrashMode::DropUnsynced).lock_dir(Path::new("/s")).is_ok(), "a crash frees locks");
        drop(held);
        assert!(vfs.lock_dir(Path::new("/s")).is_ok());
    }
}
