//! redb: a copy-on-write B-tree in one file, one writer at a time. Every
//! operation is its own transaction. Durability: redb has no "handed to
//! the OS" level. `Ack` uses `Durability::None` (a commit stays in redb's
//! own write buffer until a durable one: weaker than the others' Ack, a
//! killed process loses it; `settle` makes one durable commit); `Fsync`
//! uses `Durability::Immediate` (fsync per commit).

use std::path::Path;

use redb::{AccessGuard, Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::store::{err, list_by_seeking, Durability, Res, Store};
use super::CACHE_BYTES;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

pub struct Redb {
    db: Database,
    durability: redb::Durability,
}

pub fn open(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    let db = Database::builder().set_cache_size(CACHE_BYTES).create(dir.join("data.redb")).map_err(err)?;
    let durability = match d {
        Durability::Ack => redb::Durability::None,
        Durability::Fsync => redb::Durability::Immediate,
    };
    let store = Redb { db, durability };
    store.write(|_| Ok(()))?;
    Ok(Box::new(store))
}

/// A key or value read from a table, as bytes.
struct Bytes<'a>(AccessGuard<'a, &'static [u8]>);

impl AsRef<[u8]> for Bytes<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.value()
    }
}

impl Redb {
    /// One write transaction at this store's durability; dropping it
    /// uncommitted (an error from `f`) aborts it.
    fn write(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Res<()>) -> Res<()> {
        self.write_at(self.durability, f)
    }

    fn write_at(&self, d: redb::Durability, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Res<()>) -> Res<()> {
        let mut w = self.db.begin_write().map_err(err)?;
        w.set_durability(d).map_err(err)?;
        {
            let mut table = w.open_table(TABLE).map_err(err)?;
            f(&mut table)?;
        }
        w.commit().map_err(err)
    }

    fn read(&self) -> Res<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        self.db.begin_read().map_err(err)?.open_table(TABLE).map_err(err)
    }
}

impl Store for Redb {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self.read()?.get(key).map_err(err)?.map(|g| g.value().to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.write(|t| t.insert(key, value).map(drop).map_err(err))
    }

    fn delete(&self, key: &[u8]) -> Res<()> {
        self.write(|t| t.remove(key).map(drop).map_err(err))
    }

    fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()> {
        self.write(|t| {
            let value = t.get(src).map_err(err)?.ok_or("rename: source missing")?.value().to_vec();
            if t.get(dst).map_err(err)?.is_some() {
                return Err("rename: destination exists".into());
            }
            t.insert(dst, value.as_slice()).map_err(err)?;
            t.remove(src).map(drop).map_err(err)
        })
    }

    fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        self.write(|t| pairs.iter().try_for_each(|(k, v)| t.insert(*k, *v).map(drop).map_err(err)))
    }

    fn list(&self, prefix: &[u8]) -> Res<(usize, usize)> {
        let table = self.read()?;
        list_by_seeking(prefix, |from| {
            let range = table.range(from..).map_err(err)?;
            Ok(range.map(|r| r.map(|(k, v)| (Bytes(k), Bytes(v))).map_err(err)))
        })
    }

    fn scan_all(&self) -> Res<(usize, usize)> {
        let (mut n, mut bytes) = (0, 0);
        for kv in self.read()?.iter().map_err(err)? {
            let (k, v) = kv.map_err(err)?;
            n += 1;
            bytes += k.value().len() + v.value().len();
        }
        Ok((n, bytes))
    }

    fn settle(&self) -> Res<()> {
        // Until a durable commit, pages freed by non-durable ones stay taken.
        self.write_at(redb::Durability::Immediate, |_| Ok(()))
    }
}
