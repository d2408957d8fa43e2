//! holt-core and holt 0.3.0 in the peer run: the memory-mode bench's
//! wrappers (`engines.rs`), persistent, forwarded to `Store`. Both list
//! with the engine's own delimiter (`scan_prefix(p).delimiter(b'/')`);
//! holt-core through its cursor, as LMDB lends entries from its map.

use std::path::Path;

use super::store::{Durability, Res, Store};
use crate::engines::{Core, Holt03, Kv};

/// Frames of cache: the whole peer data set stays resident (512 KiB
/// frames, 4 GiB at most), as the other engines get a cache that holds it.
const POOL_FRAMES: usize = 8192;

pub fn open_core(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    Ok(Box::new(Core::persistent(dir, POOL_FRAMES, d)?))
}

/// holt-core with room made ahead of the writers
/// (`TreeBuilder::make_room_ahead`), beside the default in one run.
pub fn open_core_ahead(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    Ok(Box::new(Core::persistent_ahead(dir, POOL_FRAMES, d, true)?))
}

pub fn open_holt03(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    Ok(Box::new(Holt03::persistent(dir, POOL_FRAMES, d)?))
}

/// `Store` by way of `Kv`.
macro_rules! store_via_kv {
    ($ty:ty) => {
        impl Store for $ty {
            fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
                Kv::get(self, key)
            }
            fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
                Kv::put(self, key, value)
            }
            fn delete(&self, key: &[u8]) -> Res<()> {
                Kv::delete(self, key).map(drop)
            }
            fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()> {
                Kv::rename(self, src, dst)
            }
            fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()> {
                Kv::put_batch(self, pairs)
            }
            fn list(&self, prefix: &[u8]) -> Res<(usize, usize)> {
                Kv::list_dir(self, prefix)
            }
            fn scan_all(&self) -> Res<(usize, usize)> {
                Kv::scan_all(self)
            }
            fn settle(&self) -> Res<()> {
                Kv::checkpoint(self)
            }
            fn shape(&self) -> String {
                Kv::shape(self)
            }
        }
    };
}

store_via_kv!(Core);
store_via_kv!(Holt03);
