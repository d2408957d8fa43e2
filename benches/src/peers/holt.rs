//! holt-core and holt 0.3.0 in the peer run: the memory-mode bench's
//! wrappers (`engines.rs`), persistent, forwarded to `Store`. Both list
//! with the engine's own delimiter (`scan_prefix(p).delimiter(b'/')`).

use std::path::Path;

use super::store::{Durability, Res, Store};
use crate::engines::{Core, Holt03, Kv};

/// Frames of cache: the whole peer data set stays resident (512 KiB
/// frames, 4 GiB at most), as the other engines get a cache that holds it.
const POOL_FRAMES: usize = 8192;

pub fn open_core(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    Ok(Box::new(Core::persistent(dir, POOL_FRAMES, d)?))
}

pub fn open_holt03(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    Ok(Box::new(Holt03::persistent(dir, POOL_FRAMES, d)?))
}

/// `Store` by way of `Kv`, plus the full scan, which `Kv` lacks.
macro_rules! store_via_kv {
    ($ty:ty, $krate:ident) => {
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
                let (mut n, mut bytes) = (0, 0);
                for e in self.0.scan_prefix(b"") {
                    // holt's RangeEntry is non-exhaustive; holt-core's is not.
                    #[allow(unreachable_patterns)]
                    match e.map_err(|e| e.to_string())? {
                        $krate::RangeEntry::Key { key, value } => bytes += key.len() + value.len(),
                        _ => return Err("a scan without delimiter returned a group".into()),
                    }
                    n += 1;
                }
                Ok((n, bytes))
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

store_via_kv!(Core, holt_core);
store_via_kv!(Holt03, holt);
