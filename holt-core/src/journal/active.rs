//! The segment being appended to, and how appended bytes reach the OS.
//!
//! Where the file system allows it, the active segment is mapped shared
//! and writable and appends are memory copies into the page cache: no
//! system call per commit, and the same guarantee as `write(2)` (a killed
//! process loses nothing copied; `fdatasync` of the file covers the copied
//! pages). Everything else — simulated files, a batch that does not fit in
//! the mapping, space that could not be reserved — goes through `write_at`,
//! which is coherent with the mapping (one page cache).
//!
//! Space ahead of the log's end is reserved with `fallocate` before any
//! append lands there, mapped or not: in `MAP_GROW_BYTES` steps by the
//! writer where the flusher has not reserved ahead of it already
//! (`note_reserved`). So
//! a full disk fails the reservation, which writes nothing, rather than a
//! store into the mapping (SIGBUS) or a `write` that may have written part
//! of a batch. A reservation or write that fails for space is retried once
//! after the store's space reserve is released (`SpaceReserve`); a
//! reservation that still fails leaves the append to `write_at`, which
//! reports a full disk itself.
//!
//! Invariants:
//! - `len` is the log's end in this segment: header plus whole records.
//!   The file may be longer (reserved zeros past `len`) but never shorter.
//! - `reserved` never exceeds the file's length (`len` may pass it after a
//!   `write_at` the disk had no reservation for); the mapping is only
//!   written below `reserved`, and the file is shrunk (`finish`) only after
//!   the mapping is gone.
//! - A sealed segment is `finish`ed (or `seal`ed) before it is synced: no
//!   reserved zeros survive in a sealed segment, which the reader requires
//!   to be whole.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::codec;
use crate::ids::Lsn;
use crate::store::reserve::{io_is_no_space, SpaceReserve};
use crate::store::shared_map::SharedMap;
use crate::store::vfs::FileIo;

/// Disk space reserved ahead of the log's end at a time; also the headroom
/// a mapping has past the segment size, for the batch that crosses it.
pub(crate) const MAP_GROW_BYTES: u64 = 1 << 20;

/// Where `reserve_through` stops reserving whole steps for segments mapped
/// with `map_bytes`: the size they seal at, rounded up to a step.
pub(crate) fn seal_bytes_for(map_bytes: u64) -> u64 {
    map_bytes.saturating_sub(MAP_GROW_BYTES)
}

/// Bytes to map for segments sealed at `segment_bytes_max`: whole
/// `MAP_GROW_BYTES` steps (a multiple of every page size) with one step of
/// headroom.
pub(crate) fn map_bytes_for(segment_bytes_max: u64) -> u64 {
    (segment_bytes_max.div_ceil(MAP_GROW_BYTES) + 1) * MAP_GROW_BYTES
}

enum Mapping {
    /// Not attempted yet: the first append maps.
    Untried,
    /// Appends below the reserved space and the mapping's end are copies.
    /// Shared with the flusher only to drop written pages' entries.
    Mapped(Arc<SharedMap>),
    /// Every append is a `write_at`.
    Off,
}

pub(crate) struct ActiveSegment {
    pub file: Arc<dyn FileIo>,
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// The log's end in this file: the next record goes at this offset.
    pub len: u64,
    mapping: Mapping,
    /// Disk space is allocated below this offset.
    reserved: u64,
    /// `fallocate` works on this file (false once it said `Unsupported`).
    allocates: bool,
    /// Space was reserved past `len` at some point: `finish` must cut it.
    reserved_any: bool,
}

impl ActiveSegment {
    /// `file` holds exactly `len` bytes of header and records (or more only
    /// if it was reserved by a previous writer).
    pub(crate) fn new(file: Arc<dyn FileIo>, path: PathBuf, first_lsn: Lsn, len: u64) -> Self {
        ActiveSegment {
            file,
            path,
            first_lsn,
            len,
            mapping: Mapping::Untried,
            reserved: len,
            allocates: true,
            reserved_any: false,
        }
    }

    /// Hand `bytes` to the OS at the log's end and advance it. `map_bytes`
    /// sizes the mapping if this is the first append; `reserve` is released
    /// if the disk is full. An error leaves `len` unchanged (the caller
    /// poisons the log: a failed `write_at` may have written part of
    /// `bytes`, so what follows `len` is unknown).
    pub(crate) fn append(&mut self, bytes: &[u8], map_bytes: u64, reserve: &SpaceReserve) -> io::Result<()> {
        let end = self.len + bytes.len() as u64;
        let copied = self.reserve_through(end, map_bytes, reserve) && self.copy_into_map(bytes, end, map_bytes);
        if !copied {
            // Repeating the write after a failure is safe: it writes the
            // same bytes at the same offset.
            let (file, at) = (&self.file, self.len);
            reserve.retry_io("WAL write", || file.write_at(bytes, at))?;
        }
        self.len = end;
        Ok(())
    }

    /// Make a fresh, empty file ready to become the next segment: reserve
    /// its first `MAP_GROW_BYTES` and map it (`with_space`), the work a
    /// rotation would otherwise do at its first append. `first_lsn` stays
    /// 0 until `adopt`. Failure to reserve or map, or no `with_space`,
    /// only leaves that to the first append, as for any segment.
    pub(crate) fn prepare(file: Arc<dyn FileIo>, path: PathBuf, map_bytes: u64, with_space: bool) -> Self {
        let mut seg = ActiveSegment::new(file, path, Lsn(0), 0);
        if with_space && seg.reserve_through(MAP_GROW_BYTES, map_bytes, &SpaceReserve::none()) {
            seg.mapping = seg.try_map(map_bytes);
        }
        seg
    }

    /// Disk space is allocated below this offset.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Space below `to` was allocated for this file by someone else (the
    /// flusher, `Journal::reserve_ahead`), the file's length extended to
    /// it: appends below it need no reservation.
    pub(crate) fn note_reserved(&mut self, to: u64) {
        if self.allocates && to > self.reserved {
            self.reserved = to;
            self.reserved_any = true;
        }
    }

    /// Turn a prepared file, now at `path`, into the segment whose first
    /// record is `first`: its header is its first append. The header is not
    /// synced here; the fdatasync that first covers a record of the segment
    /// covers the header too, and until then recovery may find it torn
    /// (FORMAT.md, recovery rules).
    pub(crate) fn adopt(&mut self, path: PathBuf, first: Lsn, map_bytes: u64) -> io::Result<()> {
        debug_assert!(self.len == 0 && self.first_lsn == Lsn(0), "only a prepared, unused file is adopted");
        self.path = path;
        self.first_lsn = first;
        self.append(&codec::encode_segment_header(first), map_bytes, &SpaceReserve::none())
    }

    /// Whether appends are copies into a mapping.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.mapping, Mapping::Mapped(_))
    }

    /// Make sure disk space is allocated below `end`, reserving whole
    /// `MAP_GROW_BYTES` steps up to the size the segment seals at (the
    /// mapping's length less its headroom), and past it only to `end`: the
    /// batch that fills a segment is its last, so a segment sealed full
    /// ends at its last record with nothing to cut (`seal`). False when
    /// the space is not allocated: the disk stays full after the reserve
    /// went (the next append tries again), or the file system cannot (then
    /// this segment stops trying, and gives up the mapping: nothing could
    /// keep its stores off unallocated pages).
    fn reserve_through(&mut self, end: u64, map_bytes: u64, reserve: &SpaceReserve) -> bool {
        if end <= self.reserved {
            return true;
        }
        if !self.allocates {
            return false;
        }
        let seal_bytes = seal_bytes_for(map_bytes);
        let to = if end > seal_bytes { end } else { end.div_ceil(MAP_GROW_BYTES).saturating_mul(MAP_GROW_BYTES) };
        let (file, from) = (&self.file, self.reserved);
        match reserve.retry_io("WAL space reservation", || file.allocate(from, to - from)) {
            Ok(()) => {
                self.reserved = to;
                self.reserved_any = true;
                true
            }
            Err(e) if io_is_no_space(&e) => {
                log::debug!("{}: no disk space to reserve for the WAL; appending with write(2)", self.path.display());
                false
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Unsupported {
                    log::warn!("{}: cannot reserve WAL space ({e}); appending with write(2)", self.path.display());
                }
                self.allocates = false;
                self.mapping = Mapping::Off;
                false
            }
        }
    }

    /// The mapping, for the flusher to drop the entries of pages below
    /// the log's end (appends never touch them again) before their
    /// writeback (`SharedMap::drop_ptes`).
    pub(crate) fn mapping(&self) -> Option<Arc<SharedMap>> {
        match &self.mapping {
            Mapping::Mapped(map) => Some(Arc::clone(map)),
            _ => None,
        }
    }

    /// Copy `bytes` in at `len` (ending at `end`, reserved) if the mapping
    /// can take them.
    fn copy_into_map(&mut self, bytes: &[u8], end: u64, map_bytes: u64) -> bool {
        debug_assert!(end <= self.reserved, "the mapping is only written where space is reserved");
        if let Mapping::Untried = self.mapping {
            self.mapping = self.try_map(map_bytes);
        }
        let Mapping::Mapped(map) = &self.mapping else {
            return false;
        };
        if end > map.len() as u64 {
            return false;
        }
        let at = usize::try_from(self.len).expect("offset below the mapping's length fits in usize");
        // SAFETY: appends to a segment are serialized (`&mut self`, under
        // the journal's I/O lock); the flusher's share only drops entries.
        unsafe { map.copy_in(at, bytes) };
        true
    }

    fn try_map(&self, map_bytes: u64) -> Mapping {
        let Ok(bytes) = usize::try_from(map_bytes) else {
            return Mapping::Off;
        };
        match self.file.map_shared(bytes) {
            Ok(Some(map)) => Mapping::Mapped(Arc::new(map)),
            Ok(None) => Mapping::Off,
            Err(e) => {
                log::warn!("{}: cannot map the WAL ({e}); appending with write(2)", self.path.display());
                Mapping::Off
            }
        }
    }

    /// Stop appending for good, as `finish` does, but hand the mapping
    /// back rather than unmap it, for the caller to drop off the writer's
    /// path (an unmap there would wait for any memory-map lock holder,
    /// such as the flusher mapping pages ahead). The file may be cut under
    /// it: no one copies into a sealed segment again, and what the
    /// flusher does with its share (drop entries, map pages ahead) changes
    /// no byte and is refused past the file's end.
    pub(crate) fn seal(&mut self) -> io::Result<Option<Arc<SharedMap>>> {
        let map = match std::mem::replace(&mut self.mapping, Mapping::Off) {
            Mapping::Mapped(map) => Some(map),
            Mapping::Untried | Mapping::Off => None,
        };
        if self.reserved_any && self.file.len()? > self.len {
            self.finish()?;
        } else {
            self.reserved = self.reserved.min(self.len);
        }
        Ok(map)
    }

    /// Stop appending: drop the mapping and cut reserved space past `len`,
    /// so the file ends at its last record. Not synced here.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.mapping = Mapping::Off;
        if !self.reserved_any {
            return Ok(());
        }
        if self.file.len()? > self.len {
            self.file.set_len(self.len)?;
        }
        self.reserved = self.len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::{map_bytes_for, ActiveSegment};
    use crate::ids::Lsn;
    use crate::journal::writer::tests::{cfg, commit_puts, logged_bytes_on_disk, open, put};
    use crate::op::LogOp;
    use crate::store::reserve::SpaceReserve;
    use crate::store::shared_map::SharedMap;
    use crate::store::vfs::FileIo;
    use crate::store::std_vfs::StdVfs;

    fn file_len(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().len()
    }

    fn lsns(replay: &[(Lsn, Vec<LogOp>)]) -> Vec<u64> {
        replay.iter().map(|r| r.0 .0).collect()
    }

    /// A real file whose space reservation stops working after `allowed`
    /// calls (a file system without `fallocate`, or a full disk).
    struct ReserveFails {
        file: std::fs::File,
        allowed: std::sync::atomic::AtomicUsize,
    }

    impl FileIo for ReserveFails {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.file.metadata()?.len())
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
        fn punch_hole(&self, _: u64, _: u64) -> std::io::Result<()> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn allocate(&self, offset: u64, len: u64) -> std::io::Result<()> {
            let left = self.allowed.load(std::sync::atomic::Ordering::SeqCst);
            if left == 0 {
                return Err(std::io::ErrorKind::Unsupported.into());
            }
            self.allowed.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            crate::store::std_vfs::allocate(&self.file, offset, len)
        }
        fn map_shared(&self, len: usize) -> std::io::Result<Option<SharedMap>> {
            SharedMap::new(&self.file, len).map(Some)
        }
    }

    /// When reserving space fails, the segment goes on with `write_at`:
    /// every byte lands in order, and the file ends at the log's end.
    #[test]
    fn failed_reservation_falls_back_to_write_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
        let io = Arc::new(ReserveFails { file, allowed: 1.into() });
        let mut seg = ActiveSegment::new(io, path.clone(), Lsn(1), 0);
        let mut expected = Vec::new();
        for i in 0..6u8 {
            let chunk = vec![i + 1; 300_000];
            seg.append(&chunk, map_bytes_for(1 << 20), &SpaceReserve::none()).unwrap();
            expected.extend(chunk);
            assert_eq!(seg.is_mapped(), i < 3, "chunk {i}: mapped only while the first reservation lasts");
        }
        seg.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    /// The mapping is the page cache: a writer that vanishes without
    /// unmapping, syncing or writing anything else (as a killed process
    /// does) has still handed every committed record to the OS.
    #[test]
    fn committed_copies_are_in_the_file_without_unmap_or_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
        commit_puts(&j, 0, 1000, |_| false);
        let path = {
            let io = j.io.lock();
            assert!(io.active.is_mapped(), "a real file appends through its mapping");
            assert!(file_len(&io.active.path) > io.active.len, "space is reserved ahead of the log");
            io.active.path.clone()
        };
        std::mem::forget(j);
        let (j, replay) = open(Arc::new(StdVfs), dir.path(), cfg(16 << 20, false));
        assert_eq!(lsns(&replay), (1..=1000).collect::<Vec<_>>());
        let io = j.io.lock();
        assert_eq!(file_len(&path), io.active.len, "open cut the reserved zeros");
    }

    /// Sealed segments must be whole (no reserved zeros), and a clean close
    /// leaves the active one ending at its last record.
    #[test]
    fn sealed_and_closed_segments_end_at_their_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), cfg(64 << 10, false));
        commit_puts(&j, 0, 5000, |i| i % 1000 == 0);
        let sealed = j.sealed.lock().clone();
        assert!(sealed.len() >= 3, "the log rotated");
        for seg in &sealed {
            assert_eq!(file_len(&seg.path), seg.bytes, "{} is cut to its records", seg.path.display());
        }
        assert_eq!(j.bytes(), logged_bytes_on_disk(&j, dir.path()));
        let bytes = j.bytes();
        drop(j);
        let on_disk: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk >= bytes && on_disk <= bytes + 64, "closed log holds its records and a marker");
        let (_, replay) = open(Arc::new(StdVfs), dir.path(), cfg(64 << 10, false));
        assert_eq!(lsns(&replay), (1..=5000).collect::<Vec<_>>());
    }

    /// A batch larger than the mapping is written with `write_at` into the
    /// same file, in order with the copies around it.
    #[test]
    fn batch_larger_than_the_mapping_is_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1 << 20, false);
        let map_bytes = super::map_bytes_for(c.segment_bytes_max) as usize;
        let big: Vec<LogOp> = (0..map_bytes / (100 << 10) + 1)
            .map(|i| LogOp::Put { key: format!("big/{i}").into_bytes(), value: vec![i as u8; 100 << 10] })
            .collect();
        let (j, _) = open(Arc::new(StdVfs), dir.path(), c);
        let mut batches = Vec::new();
        for (n, batch) in [put(0, 0), big, put(0, 1), put(0, 2)].into_iter().enumerate() {
            let lsn = j.append(&batch).unwrap();
            j.commit(lsn, false).unwrap();
            assert_eq!(lsn, Lsn(n as u64 + 1));
            batches.push((lsn, batch));
        }
        std::mem::forget(j);
        let (_, replay) = open(Arc::new(StdVfs), dir.path(), c);
        assert_eq!(replay, batches);
    }
}
