//! The two engines behind one small trait, so every cell runs the same code
//! against both. Errors become strings: a bench only reports them.

use std::path::Path;

pub type Res<T> = Result<T, String>;

/// The operations the cells need. Implementations are thin forwarding shims.
pub trait Kv: Clone + Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>>;
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()>;
    fn delete(&self, key: &[u8]) -> Res<bool>;
    fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()>;
    /// Put every pair in one atomic batch (`txn`).
    fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()>;
    /// Full listing of `prefix` with delimiter `/`; returns entries seen and
    /// their summed key+value bytes (so nothing can be optimized away).
    fn list_dir(&self, prefix: &[u8]) -> Res<(usize, usize)>;
    /// Every key and value in order: (keys, bytes).
    fn scan_all(&self) -> Res<(usize, usize)>;
    fn checkpoint(&self) -> Res<()>;
    /// One line about the tree's shape, for the notes.
    fn shape(&self) -> String;
}

/// Which persistent durability a tree is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A mutation is acknowledged once handed to the OS (or the engine's queue).
    Ack,
    /// A mutation is acknowledged once its WAL record is fdatasync'd.
    Fsync,
}

/// The `Kv` methods both engines implement alike: their APIs share the
/// names and shapes. Scans differ: holt-core lends entries through a
/// cursor, holt 0.3.0 has only its owned-entry iterator (`owned_scans`).
macro_rules! forward_kv {
    () => {
        fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
            self.0.get(key).map_err(|e| e.to_string())
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
            self.0.put(key, value).map_err(|e| e.to_string())
        }
        fn delete(&self, key: &[u8]) -> Res<bool> {
            self.0.delete(key).map_err(|e| e.to_string())
        }
        fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()> {
            self.0.rename(src, dst, false).map_err(|e| e.to_string())
        }
        fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()> {
            self.0
                .txn(|b| {
                    for (k, v) in pairs {
                        b.put(k, v);
                    }
                })
                .map_err(|e| e.to_string())
        }
        fn checkpoint(&self) -> Res<()> {
            self.0.checkpoint().map_err(|e| e.to_string())
        }
    };
}

#[derive(Clone)]
pub struct Core(pub holt_core::Tree);

impl Core {
    pub fn memory(pool_frames: usize) -> Res<Self> {
        holt_core::TreeBuilder::new("unused-memory-mode")
            .memory()
            .buffer_pool_size(pool_frames)
            .open()
            .map(Core)
            .map_err(|e| e.to_string())
    }

    pub fn persistent(dir: &Path, pool_frames: usize, d: Durability) -> Res<Self> {
        Self::persistent_reading(dir, pool_frames, d, false)
    }

    /// `persistent`, with frames read around the page cache once the pool
    /// is full (`direct`), as a process under a memory limit wants
    /// (`TreeBuilder::direct_frame_reads`).
    pub fn persistent_reading(dir: &Path, pool_frames: usize, d: Durability, direct: bool) -> Res<Self> {
        Self::open_with(dir, pool_frames, d, |b| b.direct_frame_reads(direct))
    }

    /// `persistent`, with room made ahead of the writers if `on`
    /// (`TreeBuilder::make_room_ahead`).
    pub fn persistent_ahead(dir: &Path, pool_frames: usize, d: Durability, on: bool) -> Res<Self> {
        Self::open_with(dir, pool_frames, d, |b| b.make_room_ahead(on))
    }

    fn open_with(
        dir: &Path,
        pool_frames: usize,
        d: Durability,
        set: impl FnOnce(holt_core::TreeBuilder) -> holt_core::TreeBuilder,
    ) -> Res<Self> {
        let b = holt_core::TreeBuilder::new(dir).buffer_pool_size(pool_frames).wal_sync_on_commit(d == Durability::Fsync);
        set(b).open().map(Core).map_err(|e| e.to_string())
    }
}

/// Listing (`delimiter`) or scan through the owned-entry iterator, which
/// both crates have: (entries, bytes of keys, values and common prefixes).
macro_rules! owned_scans {
    ($krate:ident, $range:expr) => {{
        let (mut n, mut bytes) = (0, 0);
        for e in $range {
            // holt's RangeEntry is non-exhaustive; holt-core's is not.
            #[allow(unreachable_patterns)]
            match e.map_err(|e| e.to_string())? {
                $krate::RangeEntry::Key { key, value } => bytes += key.len() + value.len(),
                $krate::RangeEntry::CommonPrefix(p) => bytes += p.len(),
                _ => {}
            }
            n += 1;
        }
        Ok((n, bytes))
    }};
}

/// Whether holt-core scans through its owned-entry iterator
/// (`HOLT_BENCH_CORE_SCAN=iter`) instead of its cursor, to compare the
/// two APIs (and with binaries older than the cursor) in one command.
fn core_scans_owned() -> bool {
    static OWNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWNED.get_or_init(|| std::env::var("HOLT_BENCH_CORE_SCAN").is_ok_and(|v| v == "iter"))
}

/// A scan through holt-core's cursor, counted like `owned_scans`.
fn core_cursor(range: holt_core::RangeBuilder) -> Res<(usize, usize)> {
    let (mut n, mut bytes) = (0, 0);
    let mut cursor = range.cursor();
    while let Some(e) = cursor.next_entry().map_err(|e| e.to_string())? {
        bytes += e.key().len() + e.value().len();
        n += 1;
    }
    Ok((n, bytes))
}

impl Kv for Core {
    forward_kv!();

    fn list_dir(&self, prefix: &[u8]) -> Res<(usize, usize)> {
        let range = self.0.scan_prefix(prefix).delimiter(b'/');
        if core_scans_owned() {
            return owned_scans!(holt_core, range);
        }
        core_cursor(range)
    }

    fn scan_all(&self) -> Res<(usize, usize)> {
        if core_scans_owned() {
            return owned_scans!(holt_core, self.0.range());
        }
        core_cursor(self.0.range())
    }

    fn shape(&self) -> String {
        match self.0.stats() {
            Ok(s) => format!(
                "keys {} frames {} ({} in key order) fill {:.2} live {} B dead {} B spills {} merges {} compactions {} restarts {} checkpoints {} evictions {}{}",
                s.keys, s.frames, s.frames_in_key_order, s.fill_factor, s.live_bytes, s.dead_bytes, s.spills, s.merges,
                s.compactions, s.optimistic_restarts, s.checkpoints, s.evictions, pool_line(&self.0)
            ),
            Err(e) => format!("stats failed: {e}"),
        }
    }
}

#[cfg(feature = "read-counters")]
fn pool_line(t: &holt_core::Tree) -> String {
    format!(" counters {:?}", t.counters())
}

#[cfg(not(feature = "read-counters"))]
fn pool_line(_: &holt_core::Tree) -> String {
    String::new()
}

#[derive(Clone)]
pub struct Holt03(pub holt::Tree);

impl Holt03 {
    /// Memory mode as holt's own benches run it: no per-op mirror into the
    /// memory backend (`memory_flush_on_write = false`).
    pub fn memory(pool_frames: usize) -> Res<Self> {
        let mut cfg = holt::TreeConfig::memory();
        cfg.buffer_pool_size = pool_frames;
        cfg.memory_flush_on_write = false;
        holt::Tree::open(cfg).map(Holt03).map_err(|e| e.to_string())
    }

    pub fn persistent(dir: &Path, pool_frames: usize, d: Durability) -> Res<Self> {
        holt::TreeBuilder::new(dir)
            .buffer_pool_size(pool_frames)
            .wal_sync_on_commit(d == Durability::Fsync)
            .open()
            .map(Holt03)
            .map_err(|e| e.to_string())
    }
}

impl Kv for Holt03 {
    forward_kv!();

    fn list_dir(&self, prefix: &[u8]) -> Res<(usize, usize)> {
        owned_scans!(holt, self.0.scan_prefix(prefix).delimiter(b'/'))
    }

    fn scan_all(&self) -> Res<(usize, usize)> {
        owned_scans!(holt, self.0.scan_prefix(b""))
    }

    fn shape(&self) -> String {
        match self.0.stats() {
            Ok(s) => format!(
                "blobs {} space used {} B gap {} B slots {} compactions {} tombstones {}",
                s.blob_count, s.total_space_used, s.total_gap_space, s.total_slots,
                s.total_compactions, s.total_tombstones
            ),
            Err(e) => format!("stats failed: {e}"),
        }
    }
}
