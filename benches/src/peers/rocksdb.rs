//! RocksDB (`--features rocksdb`): an LSM tree, configured as a user
//! tuning for point reads would: a block cache the size of the others'
//! caches and a 10-bit bloom filter; no compression (built without the
//! libraries). Durability: `Ack` is the default `WriteOptions` (the WAL
//! written with `write(2)`); `Fsync` sets `sync` on every write. Rename
//! reads, then writes put + delete as one atomic `WriteBatch`; listings
//! step over a group with `seek` on one raw iterator.

use std::path::Path;
use std::time::{Duration, Instant};

use rocksdb::{BlockBasedOptions, Cache, Options, WriteBatch, WriteOptions, DB};

use super::store::{err, group_of, past_group, Durability, Res, Store};
use super::{CACHE_BYTES, SETTLE_WAIT_MAX};

/// Bits per key of the bloom filter (about 1% false positives).
const BLOOM_BITS_PER_KEY: f64 = 10.0;

pub struct Rocks {
    db: DB,
    sync: bool,
}

pub fn open(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(CACHE_BYTES));
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_block_based_table_factory(&table);
    let db = DB::open(&o, dir).map_err(err)?;
    Ok(Box::new(Rocks { db, sync: d == Durability::Fsync }))
}

impl Rocks {
    /// Per write: `WriteOptions` is `Send` but not `Sync`.
    fn wo(&self) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        wo
    }

    fn busy(&self) -> Res<bool> {
        for p in ["rocksdb.compaction-pending", "rocksdb.num-running-compactions", "rocksdb.num-running-flushes"] {
            if self.db.property_int_value(p).map_err(err)?.unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Store for Rocks {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
        self.db.get(key).map_err(err)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.db.put_opt(key, value, &self.wo()).map_err(err)
    }

    fn delete(&self, key: &[u8]) -> Res<()> {
        self.db.delete_opt(key, &self.wo()).map_err(err)
    }

    fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()> {
        let value = self.db.get(src).map_err(err)?.ok_or("rename: source missing")?;
        if self.db.get_pinned(dst).map_err(err)?.is_some() {
            return Err("rename: destination exists".into());
        }
        let mut b = WriteBatch::default();
        b.put(dst, value);
        b.delete(src);
        self.db.write_opt(b, &self.wo()).map_err(err)
    }

    fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let mut b = WriteBatch::default();
        for (k, v) in pairs {
            b.put(k, v);
        }
        self.db.write_opt(b, &self.wo()).map_err(err)
    }

    fn list(&self, prefix: &[u8]) -> Res<(usize, usize)> {
        let (mut n, mut bytes) = (0, 0);
        let mut it = self.db.raw_iterator();
        it.seek(prefix);
        while let Some(key) = it.key().filter(|k| k.starts_with(prefix)) {
            n += 1;
            match group_of(prefix, key) {
                None => {
                    bytes += key.len() + it.value().map_or(0, <[u8]>::len);
                    it.next();
                }
                Some(group) => {
                    bytes += group.len();
                    let next = past_group(group);
                    it.seek(&next);
                }
            }
        }
        it.status().map_err(err)?;
        Ok((n, bytes))
    }

    fn scan_all(&self) -> Res<(usize, usize)> {
        let (mut n, mut bytes) = (0, 0);
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            n += 1;
            bytes += k.len() + v.len();
            it.next();
        }
        it.status().map_err(err)?;
        Ok((n, bytes))
    }

    fn settle(&self) -> Res<()> {
        self.db.flush().map_err(err)?;
        let deadline = Instant::now() + SETTLE_WAIT_MAX;
        while self.busy()? {
            if Instant::now() >= deadline {
                return Err("rocksdb: compactions still running after the settle limit".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.db.flush_wal(true).map_err(err)
    }
}
