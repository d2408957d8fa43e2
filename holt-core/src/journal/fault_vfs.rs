//! Test-only `Vfs` over the real file system that counts file writes and
//! syncs, can slow writes down (to let committers pile up), and can fail
//! writes or syncs on demand.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::std_vfs::StdVfs;
use crate::store::vfs::{FileIo, Vfs};

#[derive(Default)]
pub(crate) struct Counters {
    pub writes: AtomicUsize,
    pub syncs: AtomicUsize,
    pub dir_syncs: AtomicUsize,
    pub fail_writes: AtomicBool,
    pub fail_syncs: AtomicBool,
    pub write_delay_micros: AtomicU64,
}

impl Counters {
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }
    pub fn dir_syncs(&self) -> usize {
        self.dir_syncs.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
pub(crate) struct FaultVfs {
    pub counters: Arc<Counters>,
}

struct FaultFile {
    inner: Arc<dyn FileIo>,
    counters: Arc<Counters>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl FileIo for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.counters.writes.fetch_add(1, Ordering::SeqCst);
        if self.counters.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        let delay = self.counters.write_delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        self.inner.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.counters.syncs.fetch_add(1, Ordering::SeqCst);
        if self.counters.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("fdatasync"));
        }
        self.inner.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.punch_hole(offset, len)
    }
}

impl Vfs for FaultVfs {
    fn kind(&self) -> &'static str {
        "fault-injecting"
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileIo>> {
        let inner = StdVfs.open(path, create)?;
        Ok(Arc::new(FaultFile { inner, counters: self.counters.clone() }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        StdVfs.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdVfs.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.counters.dir_syncs.fetch_add(1, Ordering::SeqCst);
        if self.counters.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("directory fsync"));
        }
        StdVfs.sync_dir(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdVfs.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdVfs.create_dir_all(dir)
    }
}
