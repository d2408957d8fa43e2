//! Inode-number reservation and the sharded usage counters.
//!
//! Inode numbers are reserved from `C/next_ino` in ranges of
//! `INO_BATCH`; a range unused at exit is skipped, never reused, so numbers
//! are unique for the life of the filesystem. A reservation is synced before
//! any number of it is handed out, so not even a power loss can roll
//! `C/next_ino` back under a number whose data object reached the disk. Usage counters are split into
//! `USAGE_SHARDS` keys so that concurrent creates do not all conflict on one
//! counter; a shard's mutex is held across the transaction that rewrites it,
//! so its in-memory copy always equals the stored value.

use parking_lot::{Mutex, MutexGuard};

use crate::error::FsResult;
use crate::meta::Meta;
use crate::schema::{self, Ino, Usage};

/// Inode numbers reserved per write of `C/next_ino`.
const INO_BATCH: u64 = 1024;
/// Number of usage counter shards (`C/used/<0..N>`).
const USAGE_SHARDS: usize = 16;

#[derive(Default)]
pub(super) struct InoAlloc {
    /// `[next, end)`: numbers reserved and not yet handed out.
    range: Mutex<(u64, u64)>,
}

impl InoAlloc {
    pub fn alloc(&self, meta: &Meta) -> FsResult<Ino> {
        let mut range = self.range.lock();
        if range.0 == range.1 {
            *range = reserve(meta)?;
        }
        let ino = Ino(range.0);
        range.0 += 1;
        Ok(ino)
    }
}

fn reserve(meta: &Meta) -> FsResult<(u64, u64)> {
    loop {
        let mut txn = meta.txn();
        let key = schema::NEXT_INO_KEY;
        let next = match txn.get(key)? {
            Some(v) => schema::decode_u64(key, &v)?,
            None => Ino::FIRST_FREE.0,
        };
        let end = next + INO_BATCH;
        txn.put(key.to_vec(), schema::encode_u64(end).to_vec());
        if txn.commit()? {
            meta.sync()?;
            return Ok((next, end));
        }
    }
}

pub(super) struct UsageShards {
    shards: Vec<Mutex<Usage>>,
}

impl UsageShards {
    pub fn load(meta: &Meta) -> FsResult<UsageShards> {
        let mut shards: Vec<Usage> = vec![Usage::default(); USAGE_SHARDS];
        for (key, value) in meta.scan(schema::USAGE_PREFIX)? {
            let index = key.get(schema::USAGE_PREFIX.len()).map_or(USAGE_SHARDS, |&b| usize::from(b));
            if key.len() != schema::USAGE_PREFIX.len() + 1 || index >= USAGE_SHARDS {
                return Err(crate::FsError::Corrupt { key, what: "usage shard key out of range" });
            }
            shards[index] = Usage::decode(&key, &value)?;
        }
        Ok(UsageShards { shards: shards.into_iter().map(Mutex::new).collect() })
    }

    /// A shard for this thread: the first free one, starting at a per-thread hint.
    pub fn lock(&self) -> (u8, MutexGuard<'_, Usage>) {
        let start = thread_hint() % USAGE_SHARDS;
        for i in 0..USAGE_SHARDS {
            let index = (start + i) % USAGE_SHARDS;
            if let Some(g) = self.shards[index].try_lock() {
                return (index as u8, g);
            }
        }
        (start as u8, self.shards[start].lock())
    }

    pub fn total(&self) -> Usage {
        self.shards.iter().fold(Usage::default(), |acc, s| {
            let u = *s.lock();
            Usage { inodes: acc.inodes + u.inodes }
        })
    }
}

fn thread_hint() -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() as usize
}
