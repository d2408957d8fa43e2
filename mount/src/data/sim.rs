//! Data store on holt-core's simulated disk, for crash tests: the objects
//! live on the same simulated machine as the metadata tree, so one crash
//! image (a power loss or a kill at any disk operation) covers both stores.
//! Layout as `FileData`: `DIR/<ino low byte, hex>/<ino, hex>`. Times are
//! kept in memory only (a crash forgets them; tests do not check them).
//!
//! A real file system may make a name change durable at any moment (ext4
//! commits its journal every few seconds, and with any fsync), so object
//! creation and removal are made durable at once here: the worst case for
//! the ordering between the stores.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use holt_core::testing::{SimDisk, SimFile};
use parking_lot::Mutex;

use super::{copy_via_buffer, AllocMode, DataStore, ObjectStat, SeekKind, Space};
use crate::schema::{Ino, TimeSet, Timespec};

/// File contents as files on a [`SimDisk`].
pub struct SimData {
    disk: SimDisk,
    dir: PathBuf,
    times: Mutex<HashMap<Ino, (Timespec, Timespec, Timespec)>>,
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl SimData {
    pub fn new(disk: SimDisk, dir: &Path) -> io::Result<SimData> {
        disk.create_dir_all(dir)?;
        Ok(SimData { disk, dir: dir.to_path_buf(), times: Mutex::new(HashMap::new()) })
    }

    fn shard_dir(&self, ino: Ino) -> PathBuf {
        self.dir.join(format!("{:02x}", ino.0 & 0xff))
    }

    fn path(&self, ino: Ino) -> PathBuf {
        self.shard_dir(ino).join(format!("{:016x}", ino.0))
    }

    fn file(&self, ino: Ino, create: bool) -> io::Result<Option<SimFile>> {
        if create {
            self.disk.create_dir_all(&self.shard_dir(ino))?;
        }
        match self.disk.open(&self.path(ino), create) {
            Ok(f) => Ok(Some(f)),
            Err(e) if not_found(&e) && !create => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The object, made (and its name made durable) if missing.
    fn created(&self, ino: Ino) -> io::Result<SimFile> {
        if let Some(file) = self.file(ino, false)? {
            return Ok(file);
        }
        let file = self.file(ino, true)?.expect("create=true always yields a file");
        self.disk.sync_dir(&self.shard_dir(ino))?;
        Ok(file)
    }

    fn touch(&self, ino: Ino, data_changed: bool) {
        let now = Timespec::now();
        let mut times = self.times.lock();
        let t = times.entry(ino).or_insert((now, now, now));
        if data_changed {
            t.1 = now;
        }
        t.2 = now;
    }
}

impl DataStore for SimData {
    fn create(&self, ino: Ino) -> io::Result<()> {
        self.created(ino)?.set_len(0)?;
        self.disk.sync_dir(&self.shard_dir(ino))?;
        let now = Timespec::now();
        self.times.lock().insert(ino, (now, now, now));
        Ok(())
    }

    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(file) = self.file(ino, false)? else { return Ok(0) };
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], off + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }

    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()> {
        self.created(ino)?.write_at(data, off)?;
        self.touch(ino, true);
        Ok(())
    }

    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()> {
        self.created(ino)?.set_len(len)?;
        self.touch(ino, true);
        Ok(())
    }

    fn stat(&self, ino: Ino) -> io::Result<Option<ObjectStat>> {
        let Some(file) = self.file(ino, false)? else { return Ok(None) };
        let size = file.len()?;
        let (atime, mtime, ctime) = self.times.lock().get(&ino).copied().unwrap_or_default();
        Ok(Some(ObjectStat { size, allocated_bytes: size.next_multiple_of(4096), atime, mtime, ctime }))
    }

    fn set_times(&self, ino: Ino, atime: Option<TimeSet>, mtime: Option<TimeSet>) -> io::Result<()> {
        self.created(ino)?;
        let now = Timespec::now();
        let mut times = self.times.lock();
        let t = times.entry(ino).or_insert((now, now, now));
        t.0 = atime.map_or(t.0, |a| a.resolve(now));
        t.1 = mtime.map_or(t.1, |m| m.resolve(now));
        t.2 = now;
        Ok(())
    }

    fn touch_ctime(&self, ino: Ino) -> io::Result<()> {
        if self.file(ino, false)?.is_none() {
            return Ok(());
        }
        self.touch(ino, false);
        Ok(())
    }

    fn fallocate(&self, ino: Ino, mode: AllocMode, off: u64, len: u64) -> io::Result<()> {
        let Some(file) = self.file(ino, !mode.punch_hole)? else { return Ok(()) };
        if mode.punch_hole || mode.zero_range {
            let size = file.len()?;
            let end = (off + len).min(size);
            if off < end {
                file.punch_hole(off, end - off)?;
            }
        }
        if !mode.keep_size && !mode.punch_hole && off + len > file.len()? {
            file.set_len(off + len)?;
        }
        self.touch(ino, true);
        Ok(())
    }

    fn seek(&self, ino: Ino, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        let size = self.stat(ino)?.map_or(0, |s| s.size);
        if off >= size {
            return Ok(None);
        }
        Ok(Some(match kind {
            SeekKind::Data => off,
            SeekKind::Hole => size,
        }))
    }

    fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> io::Result<()> {
        copy_via_buffer(self, src, src_off, dst, dst_off, len)
    }

    fn sync(&self, ino: Ino) -> io::Result<()> {
        let Some(file) = self.file(ino, false)? else { return Ok(()) };
        file.sync_data()?;
        self.disk.sync_dir(&self.shard_dir(ino))
    }

    fn remove(&self, ino: Ino) -> io::Result<()> {
        self.times.lock().remove(&ino);
        match self.disk.remove(&self.path(ino)) {
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => self.disk.sync_dir(&self.shard_dir(ino)),
        }
    }

    fn space(&self) -> io::Result<Space> {
        Ok(Space { total_bytes: 1 << 40, free_bytes: 1 << 39, avail_bytes: 1 << 39 })
    }

    fn list(&self, visit: &mut dyn FnMut(Ino)) -> io::Result<()> {
        for shard in 0..=0xffu64 {
            let dir = self.dir.join(format!("{shard:02x}"));
            let files = match self.disk.list(&dir) {
                Ok(files) => files,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            for path in files {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if let Ok(ino) = u64::from_str_radix(name, 16) {
                    visit(Ino(ino));
                }
            }
        }
        Ok(())
    }
}
