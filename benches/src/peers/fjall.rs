//! fjall: an LSM tree (journal, memtable, sorted tables compacted in the
//! background). Durability: `Ack` is fjall's default (a write reaches its
//! journal with `write(2)`, like holt-core's Ack); `Fsync` commits every
//! write as a batch with `PersistMode::SyncData`. Rename has no
//! transaction here (that needs fjall's `TxDatabase` for every op): it
//! reads, then commits put + remove as one atomic batch; the cells never
//! rename one key from two threads.

use std::path::Path;
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::store::{err, list_by_seeking, Durability, Res, Store};
use super::{CACHE_BYTES, SETTLE_WAIT_MAX};

pub struct Fjall {
    db: Database,
    kv: Keyspace,
    /// Each commit persisted with this, if any (`Fsync`).
    persist: Option<PersistMode>,
}

pub fn open(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    let db = Database::builder(dir).cache_size(CACHE_BYTES as u64).open().map_err(err)?;
    let kv = db.keyspace("kv", KeyspaceCreateOptions::default).map_err(err)?;
    let persist = (d == Durability::Fsync).then_some(PersistMode::SyncData);
    Ok(Box::new(Fjall { db, kv, persist }))
}

impl Fjall {
    fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(self.persist)
    }
}

impl Store for Fjall {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self.kv.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        if self.persist.is_none() {
            return self.kv.insert(key, value).map_err(err);
        }
        let mut b = self.batch();
        b.insert(&self.kv, key, value);
        b.commit().map_err(err)
    }

    fn delete(&self, key: &[u8]) -> Res<()> {
        if self.persist.is_none() {
            return self.kv.remove(key).map_err(err);
        }
        let mut b = self.batch();
        b.remove(&self.kv, key);
        b.commit().map_err(err)
    }

    fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()> {
        let value = self.kv.get(src).map_err(err)?.ok_or("rename: source missing")?;
        if self.kv.contains_key(dst).map_err(err)? {
            return Err("rename: destination exists".into());
        }
        let mut b = self.batch();
        b.insert(&self.kv, dst, value);
        b.remove(&self.kv, src);
        b.commit().map_err(err)
    }

    fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let mut b = self.batch();
        for (k, v) in pairs {
            b.insert(&self.kv, *k, *v);
        }
        b.commit().map_err(err)
    }

    fn list(&self, prefix: &[u8]) -> Res<(usize, usize)> {
        list_by_seeking(prefix, |from| Ok(self.kv.range(from..).map(|g| g.into_inner().map_err(err))))
    }

    fn scan_all(&self) -> Res<(usize, usize)> {
        let (mut n, mut bytes) = (0, 0);
        for g in self.kv.iter() {
            let (k, v) = g.into_inner().map_err(err)?;
            n += 1;
            bytes += k.len() + v.len();
        }
        Ok((n, bytes))
    }

    fn settle(&self) -> Res<()> {
        self.kv.rotate_memtable_and_wait().map_err(err)?;
        let deadline = Instant::now() + SETTLE_WAIT_MAX;
        while self.db.outstanding_flushes() > 0 || self.db.active_compactions() > 0 {
            if Instant::now() >= deadline {
                return Err("fjall: flushes or compactions still running after the settle limit".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }
}
