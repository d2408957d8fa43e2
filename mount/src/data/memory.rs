//! In-memory data store for `--memory` mounts: each object is a map of 4 KiB
//! pages, so holes cost nothing and SEEK_DATA/SEEK_HOLE fall out of the map.
//! Times follow what a local filesystem does: writes and size changes set
//! mtime and ctime, reads set atime by the mount's atime rule.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{copy_via_buffer, AllocMode, DataStore, ObjectReader, ObjectStat, SeekKind, Space};
use crate::schema::{AtimeMode, Ino, TimeSet, Timespec};

const PAGE_BYTES: u64 = 4096;

struct Object {
    len: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
    atime: Timespec,
    mtime: Timespec,
    ctime: Timespec,
}

impl Object {
    fn new() -> Object {
        let now = Timespec::now();
        Object { len: 0, pages: BTreeMap::new(), atime: now, mtime: now, ctime: now }
    }

    /// Contents changed: mtime and ctime.
    fn modified(&mut self) {
        let now = Timespec::now();
        self.mtime = now;
        self.ctime = now;
    }

    fn page_mut(&mut self, index: u64) -> &mut [u8] {
        self.pages.entry(index).or_insert_with(|| vec![0u8; PAGE_BYTES as usize].into_boxed_slice())
    }

    fn stat(&self) -> ObjectStat {
        let allocated_bytes = self.pages.len() as u64 * PAGE_BYTES;
        ObjectStat { size: self.len, allocated_bytes, atime: self.atime, mtime: self.mtime, ctime: self.ctime }
    }

    /// Fill `buf` from `off`, holes as zeros; the bytes read, short at the end.
    fn read_into(&self, off: u64, buf: &mut [u8]) -> usize {
        let end = self.len.min(off.saturating_add(buf.len() as u64));
        let mut pos = off;
        while pos < end {
            let index = pos / PAGE_BYTES;
            let in_page = (pos % PAGE_BYTES) as usize;
            let step = ((PAGE_BYTES as usize - in_page) as u64).min(end - pos) as usize;
            let out = &mut buf[(pos - off) as usize..(pos - off) as usize + step];
            match self.pages.get(&index) {
                Some(page) => out.copy_from_slice(&page[in_page..in_page + step]),
                None => out.fill(0),
            }
            pos += step as u64;
        }
        end.saturating_sub(off) as usize
    }

    /// SEEK_DATA / SEEK_HOLE: a page is data if it is held.
    fn seek(&self, off: u64, kind: SeekKind) -> Option<u64> {
        if off >= self.len {
            return None;
        }
        let mut index = off / PAGE_BYTES;
        loop {
            let pos = (index * PAGE_BYTES).max(off);
            if pos >= self.len {
                return match kind {
                    SeekKind::Data => None,
                    SeekKind::Hole => Some(self.len),
                };
            }
            if self.pages.contains_key(&index) == (kind == SeekKind::Data) {
                return Some(pos);
            }
            index = match kind {
                SeekKind::Data => *self.pages.range(index..).next()?.0,
                SeekKind::Hole => index + 1,
            };
        }
    }

    /// Zero `[off, end)`, dropping pages that fall wholly inside.
    fn zero(&mut self, off: u64, end: u64) {
        let mut pos = off;
        while pos < end {
            let index = pos / PAGE_BYTES;
            let page_start = index * PAGE_BYTES;
            let stop = end.min(page_start + PAGE_BYTES);
            if pos == page_start && stop == page_start + PAGE_BYTES {
                self.pages.remove(&index);
            } else if let Some(page) = self.pages.get_mut(&index) {
                page[(pos - page_start) as usize..(stop - page_start) as usize].fill(0);
            }
            pos = stop;
        }
    }
}

/// Data held in process memory; lost at unmount.
#[derive(Default)]
pub struct MemoryData {
    objects: RwLock<HashMap<Ino, Arc<Mutex<Object>>>>,
    atime: AtimeMode,
}

impl MemoryData {
    /// An empty store whose reads update access times by `atime`'s rule.
    pub fn new(atime: AtimeMode) -> MemoryData {
        MemoryData { objects: RwLock::default(), atime }
    }

    fn object(&self, ino: Ino) -> Option<Arc<Mutex<Object>>> {
        self.objects.read().get(&ino).cloned()
    }

    fn object_or_create(&self, ino: Ino) -> Arc<Mutex<Object>> {
        if let Some(o) = self.object(ino) {
            return o;
        }
        Arc::clone(self.objects.write().entry(ino).or_insert_with(|| Arc::new(Mutex::new(Object::new()))))
    }
}

impl DataStore for MemoryData {
    fn create(&self, ino: Ino) -> io::Result<()> {
        self.objects.write().insert(ino, Arc::new(Mutex::new(Object::new())));
        Ok(())
    }

    fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(obj) = self.object(ino) else { return Ok(0) };
        let mut obj = obj.lock();
        let now = Timespec::now();
        if self.atime.due(obj.atime, obj.mtime, obj.ctime, now) {
            obj.atime = now;
        }
        Ok(obj.read_into(off, buf))
    }

    fn write(&self, ino: Ino, off: u64, data: &[u8]) -> io::Result<()> {
        let obj = self.object_or_create(ino);
        let mut obj = obj.lock();
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let in_page = (pos % PAGE_BYTES) as usize;
            let step = (PAGE_BYTES as usize - in_page).min(data.len() - done);
            obj.page_mut(pos / PAGE_BYTES)[in_page..in_page + step].copy_from_slice(&data[done..done + step]);
            done += step;
        }
        obj.len = obj.len.max(off + data.len() as u64);
        obj.modified();
        Ok(())
    }

    fn set_len(&self, ino: Ino, len: u64) -> io::Result<()> {
        let obj = self.object_or_create(ino);
        let mut obj = obj.lock();
        if len < obj.len {
            let old = obj.len;
            obj.zero(len, old.next_multiple_of(PAGE_BYTES));
        }
        if len != obj.len {
            obj.modified();
        }
        obj.len = len;
        Ok(())
    }

    fn stat(&self, ino: Ino) -> io::Result<Option<ObjectStat>> {
        Ok(self.object(ino).map(|o| o.lock().stat()))
    }

    fn set_times(&self, ino: Ino, atime: Option<TimeSet>, mtime: Option<TimeSet>) -> io::Result<()> {
        let obj = self.object_or_create(ino);
        let mut obj = obj.lock();
        let now = Timespec::now();
        if let Some(a) = atime {
            obj.atime = a.resolve(now);
        }
        if let Some(m) = mtime {
            obj.mtime = m.resolve(now);
        }
        obj.ctime = now;
        Ok(())
    }

    fn touch_ctime(&self, ino: Ino) -> io::Result<()> {
        if let Some(obj) = self.object(ino) {
            obj.lock().ctime = Timespec::now();
        }
        Ok(())
    }

    fn fallocate(&self, ino: Ino, mode: AllocMode, off: u64, len: u64) -> io::Result<()> {
        let obj = self.object_or_create(ino);
        let mut obj = obj.lock();
        let end = off + len;
        if mode.punch_hole || mode.zero_range {
            obj.zero(off, end);
            obj.modified();
        } else {
            for index in off / PAGE_BYTES..end.div_ceil(PAGE_BYTES) {
                obj.page_mut(index);
            }
        }
        if !mode.keep_size && !mode.punch_hole && end > obj.len {
            obj.len = end;
            obj.modified();
        }
        Ok(())
    }

    fn seek(&self, ino: Ino, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        let Some(obj) = self.object(ino) else { return Ok(None) };
        let found = obj.lock().seek(off, kind);
        Ok(found)
    }

    fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> io::Result<()> {
        copy_via_buffer(self, src, src_off, dst, dst_off, len)
    }

    fn sync(&self, _ino: Ino) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, ino: Ino) -> io::Result<()> {
        self.objects.write().remove(&ino);
        Ok(())
    }

    fn space(&self) -> io::Result<Space> {
        // SAFETY: sysinfo fills the zeroed struct it is given.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        if unsafe { libc::sysinfo(&mut info) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let unit = u64::from(info.mem_unit.max(1));
        let free_bytes = info.freeram as u64 * unit;
        Ok(Space { total_bytes: info.totalram as u64 * unit, free_bytes, avail_bytes: free_bytes })
    }

    fn list(&self, visit: &mut dyn FnMut(Ino)) -> io::Result<()> {
        self.objects.read().keys().for_each(|&ino| visit(ino));
        Ok(())
    }

    fn open_reader(&self, ino: Ino) -> io::Result<Option<Box<dyn ObjectReader>>> {
        Ok(self.object(ino).map(|o| Box::new(MemoryReader(o)) as Box<dyn ObjectReader>))
    }
}

/// A reader of one object that leaves its access time alone.
struct MemoryReader(Arc<Mutex<Object>>);

impl ObjectReader for MemoryReader {
    fn stat(&self) -> io::Result<ObjectStat> {
        Ok(self.0.lock().stat())
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.0.lock().read_into(off, buf))
    }

    fn seek(&self, off: u64, kind: SeekKind) -> io::Result<Option<u64>> {
        Ok(self.0.lock().seek(off, kind))
    }
}
