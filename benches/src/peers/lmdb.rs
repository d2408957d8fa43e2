//! LMDB through `heed`: a B+tree in one memory map, one writer at a time.
//! Every operation is its own transaction, as a user without batching
//! writes it. Durability: `Ack` opens with `MDB_NOSYNC` (a commit writes
//! its pages with `pwrite`, so it survives a killed process, and syncs
//! nothing); `Fsync` is LMDB's default, an fdatasync per commit.

use std::ops::Bound;
use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};

use super::store::{err, list_by_seeking, Durability, Res, Store};

/// Address space reserved for the map; the file grows only as pages are
/// used, so this is a ceiling, not a size.
const MAP_BYTES: usize = 64 << 30;

pub struct Lmdb {
    env: Env,
    /// The unnamed database. heed ties a handle's lifetime to a borrow of
    /// the `Env`; it lives beside its `Env` here, and heed checks on every
    /// call that a handle and a transaction come from the same `Env`.
    db: Database<'static, Bytes, Bytes>,
}

pub fn open(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    open_with(dir, d, EnvFlags::empty())
}

/// `open` with LMDB's `MDB_NORDAHEAD`, as its documentation advises for a
/// database larger than memory: a page fault reads that page, not the
/// readahead window around it (the `--ltm` cells).
pub fn open_larger_than_memory(dir: &Path, d: Durability) -> Res<Box<dyn Store>> {
    open_with(dir, d, EnvFlags::NO_READ_AHEAD)
}

fn open_with(dir: &Path, d: Durability, mut flags: EnvFlags) -> Res<Box<dyn Store>> {
    let mut options = EnvOpenOptions::new();
    options.map_size(MAP_BYTES);
    if d == Durability::Ack {
        flags |= EnvFlags::NO_SYNC;
    }
    // SAFETY: NO_SYNC trades durability against a system crash, which is
    // exactly the Ack contract, and NO_READ_AHEAD only changes how pages
    // are faulted in; neither risks memory safety.
    unsafe { options.flags(flags) };
    // SAFETY: nothing else maps or truncates this bench's private file.
    let env = unsafe { options.open(dir) }.map_err(err)?;
    let wtxn = env.write_txn().map_err(err)?;
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener.create_database::<Bytes, Bytes>(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
        })
        .map_err(|e: heed::Error| err(e))?
        .unwrap_commit();
    // SAFETY: `Database` is a plain id with a phantom lifetime; see `db`.
    let db = unsafe { std::mem::transmute::<Database<'_, Bytes, Bytes>, Database<'static, Bytes, Bytes>>(db) };
    Ok(Box::new(Lmdb { env, db }))
}

impl Lmdb {
    fn write(&self, f: impl FnOnce(&mut heed::RwTxn) -> Res<()>) -> Res<()> {
        let mut wtxn = self.env.write_txn().map_err(err)?;
        f(&mut wtxn)?;
        wtxn.commit().map_err(err)
    }
}

impl Store for Lmdb {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let rtxn = self.env.read_txn().map_err(err)?;
        Ok(self.db.get(&rtxn, key).map_err(err)?.map(<[u8]>::to_vec))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.write(|w| self.db.put(w, key, value).map_err(err))
    }

    fn delete(&self, key: &[u8]) -> Res<()> {
        self.write(|w| self.db.delete(w, key).map(drop).map_err(err))
    }

    fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()> {
        // An error returned before the commit aborts the transaction.
        self.write(|w| {
            let value = self.db.get(w, src).map_err(err)?.ok_or("rename: source missing")?.to_vec();
            if self.db.get(w, dst).map_err(err)?.is_some() {
                return Err("rename: destination exists".into());
            }
            self.db.put(w, dst, &value).map_err(err)?;
            self.db.delete(w, src).map(drop).map_err(err)
        })
    }

    fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        self.write(|w| pairs.iter().try_for_each(|(k, v)| self.db.put(w, k, v).map_err(err)))
    }

    fn list(&self, prefix: &[u8]) -> Res<(usize, usize)> {
        let rtxn = self.env.read_txn().map_err(err)?;
        list_by_seeking(prefix, |from| {
            let range = (Bound::Included(from), Bound::Unbounded);
            Ok(self.db.range(&rtxn, &range).map_err(err)?.map(|r| r.map_err(err)))
        })
    }

    fn scan_all(&self) -> Res<(usize, usize)> {
        let rtxn = self.env.read_txn().map_err(err)?;
        let (mut n, mut bytes) = (0, 0);
        for kv in self.db.iter(&rtxn).map_err(err)? {
            let (k, v) = kv.map_err(err)?;
            n += 1;
            bytes += k.len() + v.len();
        }
        Ok((n, bytes))
    }

    fn settle(&self) -> Res<()> {
        self.env.force_sync().map_err(err)
    }
}
