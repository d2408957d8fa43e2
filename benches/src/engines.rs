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
/// names and shapes; only the crate (`$krate`, for `RangeEntry`) differs.
macro_rules! forward_kv {
    ($krate:ident) => {
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
        fn list_dir(&self, prefix: &[u8]) -> Res<(usize, usize)> {
            let (mut n, mut bytes) = (0, 0);
            for e in self.0.scan_prefix(prefix).delimiter(b'/') {
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
        holt_core::TreeBuilder::new(dir)
            .buffer_pool_size(pool_frames)
            .wal_sync_on_commit(d == Durability::Fsync)
            .open()
            .map(Core)
            .map_err(|e| e.to_string())
    }
}

impl Kv for Core {
    forward_kv!(holt_core);

    fn shape(&self) -> String {
        match self.0.stats() {
            Ok(s) => format!(
                "keys {} frames {} fill {:.2} live {} B dead {} B spills {} merges {} compactions {} restarts {} checkpoints {} evictions {}{}",
                s.keys, s.frames, s.fill_factor, s.live_bytes, s.dead_bytes, s.spills, s.merges,
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
    forward_kv!(holt);

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
