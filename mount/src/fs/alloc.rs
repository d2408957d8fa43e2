//! Inode-number reservation and the sharded usage counters.
//!
//! Inode numbers are reserved from `C/next_ino` in ranges of
//! `INO_BATCH`; a range unused at exit is skipped, never reused, so numbers
//! are unique for the life of the filesystem. A reservation is synced before
//! any number of it is handed out, so not even a power loss can roll
//! `C/next_ino` back under a number whose data object reached the disk.
//! Once half a range is handed out, the background thread reserves a spare
//! one, so creates rarely wait for that sync. Usage counters are split into
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

/// A background reservation starts once this many numbers of the current
/// range are left, so a create rarely waits for the synced reservation.
const INO_REFILL_AT: u64 = INO_BATCH / 2;

#[derive(Default)]
pub(super) struct InoAlloc {
    ranges: Mutex<Ranges>,
}

/// Invariant: every range here was synced before it was stored, so any
/// number handed out from it is durable as used.
#[derive(Default)]
struct Ranges {
    /// `[next, end)`: numbers reserved and not yet handed out.
    current: (u64, u64),
    /// A whole range reserved ahead by [`InoAlloc::refill`].
    spare: Option<(u64, u64)>,
    /// A refill is between its claim and its store.
    refilling: bool,
}

impl InoAlloc {
    /// The next number, and whether a background [`InoAlloc::refill`] is
    /// wanted. Reserves (and syncs) on the caller's thread only when both
    /// the current and the spare range are used up.
    pub fn alloc(&self, meta: &Meta) -> FsResult<(Ino, bool)> {
        let mut r = self.ranges.lock();
        if r.current.0 == r.current.1 {
            r.current = match r.spare.take() {
                Some(spare) => spare,
                None => reserve(meta)?,
            };
        }
        let ino = Ino(r.current.0);
        r.current.0 += 1;
        let wanted = r.spare.is_none() && !r.refilling && r.current.1 - r.current.0 <= INO_REFILL_AT;
        Ok((ino, wanted))
    }

    /// Reserve a spare range if none is held or being reserved. The sync
    /// runs without the lock, so creates go on meanwhile.
    pub fn refill(&self, meta: &Meta) -> FsResult<()> {
        {
            let mut r = self.ranges.lock();
            if r.spare.is_some() || r.refilling {
                return Ok(());
            }
            r.refilling = true;
        }
        let reserved = reserve(meta);
        let mut r = self.ranges.lock();
        r.refilling = false;
        let range = reserved?;
        if r.current.0 == r.current.1 {
            r.current = range;
        } else {
            r.spare = Some(range);
        }
        Ok(())
    }
}

/// Reserve the next `INO_BATCH` numbers: commit `C/next_ino` past them and
/// sync, before any of them may be handed out.
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

#[cfg(test)]
mod tests {
    use super::*;
    use holt_core::TreeBuilder;

    fn persistent_meta(dir: &std::path::Path) -> Meta {
        let tree = TreeBuilder::new(dir).checkpoint_interval(None).open().expect("a fresh tree opens");
        Meta::new(tree)
    }

    fn stored_next(meta: &Meta) -> u64 {
        let v = meta.txn().get(schema::NEXT_INO_KEY).expect("reads").expect("C/next_ino is stored");
        schema::decode_u64(schema::NEXT_INO_KEY, &v).expect("decodes")
    }

    #[test]
    fn creates_past_the_half_mark_ask_for_a_refill_and_then_take_the_spare_without_a_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = persistent_meta(dir.path());
        let alloc = InoAlloc::default();
        let mut handed = Vec::new();
        let mut first_wanted = None;
        for i in 0..INO_BATCH {
            let (ino, wanted) = alloc.alloc(&meta).expect("allocates");
            handed.push(ino.0);
            if wanted && first_wanted.is_none() {
                first_wanted = Some(i + 1);
            }
        }
        assert_eq!(first_wanted, Some(INO_BATCH - INO_REFILL_AT), "the refill is asked for at the half mark");
        alloc.refill(&meta).expect("reserves ahead");
        let reserved = stored_next(&meta);
        for _ in 0..INO_BATCH {
            handed.push(alloc.alloc(&meta).expect("allocates").0 .0);
        }
        assert_eq!(stored_next(&meta), reserved, "the spare range served the creates: no reservation on their thread");
        let mut sorted = handed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), handed.len(), "no number is handed out twice");
        let max = *handed.iter().max().expect("numbers were handed out");
        assert!(stored_next(&meta) > max, "every handed-out number lies under the stored C/next_ino");
    }

    #[test]
    fn a_refill_while_the_current_range_is_used_up_becomes_the_current_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = persistent_meta(dir.path());
        let alloc = InoAlloc::default();
        for _ in 0..INO_BATCH {
            alloc.alloc(&meta).expect("allocates");
        }
        alloc.refill(&meta).expect("reserves ahead");
        let next = stored_next(&meta);
        let (ino, _) = alloc.alloc(&meta).expect("allocates");
        assert_eq!(stored_next(&meta), next, "the refilled range served the create");
        assert_eq!(ino.0, next - INO_BATCH);
    }
}
