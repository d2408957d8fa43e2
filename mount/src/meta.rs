//! The one seam to the metadata engine: point reads, directory scans, and
//! optimistic transactions that commit as one guarded `Tree::atomic` batch.
//!
//! A [`Txn`] remembers every key it read together with the version it saw (or
//! that it was absent). At commit each read becomes a guard: a key read and
//! then written becomes `compare_and_put` (or `put_if_absent`), a key only read
//! becomes `assert_version`/`assert_absent`. So a batch applies only if nothing
//! it looked at changed since, which makes each operation serializable without
//! a lock; on a failed guard the caller re-runs the operation from scratch.
//! Nothing outside this module names holt-core's tree.

use std::collections::BTreeMap;

use holt_core::{RangeEntry, RangeEntryRef, Tree};

use crate::error::{FsError, FsResult};
use crate::schema::{self, Dentry, Ino, Inode};

/// Handle to the metadata tree.
#[derive(Clone, Debug)]
pub struct Meta {
    tree: Tree,
}

/// Called with each key and value of a scan; false stops it.
pub type ScanVisit<'v> = dyn FnMut(&[u8], &[u8]) -> FsResult<bool> + 'v;

/// What a transaction saw when it read a key.
#[derive(Clone, Copy, Debug)]
enum Seen {
    Absent,
    Version(u64),
}

/// One optimistic transaction: reads recorded as guards, writes buffered.
pub struct Txn<'m> {
    meta: &'m Meta,
    seen: BTreeMap<Vec<u8>, Seen>,
    /// Buffered writes: `Some(value)` puts, `None` deletes.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    empty_prefixes: Vec<Vec<u8>>,
}

impl Meta {
    pub fn new(tree: Tree) -> Meta {
        Meta { tree }
    }

    /// The engine's activity counters, in O(1).
    pub fn counters(&self) -> holt_core::TreeCounters {
        self.tree.counters()
    }

    pub fn get(&self, key: &[u8]) -> FsResult<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?)
    }

    pub fn inode(&self, ino: Ino) -> FsResult<Inode> {
        let key = schema::inode_key(ino);
        let v = self.tree.get(&key)?.ok_or(FsError::NotFound)?;
        Inode::decode(&key, &v)
    }

    pub fn dentry(&self, parent: Ino, name: &[u8]) -> FsResult<Option<Dentry>> {
        let key = schema::dentry_key(parent, name);
        self.tree.get(&key)?.map(|v| Dentry::decode(&key, &v)).transpose()
    }

    /// Up to `limit` entries of `parent` whose names sort after `after`,
    /// passed to `visit` in name order; `visit` returns false to stop early.
    pub fn scan_dir(
        &self,
        parent: Ino,
        after: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], Dentry) -> FsResult<bool>,
    ) -> FsResult<()> {
        let prefix = schema::dir_prefix(parent);
        let mut range = self.tree.scan_prefix(&prefix).delimiter(b'/');
        if let Some(name) = after {
            range = range.start_after(&schema::dentry_key(parent, name));
        }
        let mut cursor = range.cursor();
        while let Some(entry) = cursor.next_entry()? {
            let RangeEntryRef::Key { key, value } = entry else {
                return Err(FsError::Corrupt { key: prefix, what: "a '/' inside a stored file name" });
            };
            let d = Dentry::decode(key, value)?;
            if !visit(&key[prefix.len()..], d)? {
                break;
            }
        }
        Ok(())
    }

    /// Every key and value under `prefix`, in order.
    pub fn scan(&self, prefix: &[u8]) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(prefix) {
            if let RangeEntry::Key { key, value } = entry? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Every key and value under `prefix`, in order, passed to `visit`
    /// until it returns false. Holds no latch between the scan's refills
    /// (holt-core's `RangeCursor`), so a long walk never blocks a writer.
    pub fn scan_each(&self, prefix: &[u8], visit: &mut ScanVisit<'_>) -> FsResult<()> {
        let mut cursor = self.tree.scan_prefix(prefix).cursor();
        while let Some(entry) = cursor.next_entry()? {
            if let RangeEntryRef::Key { key, value } = entry {
                if !visit(key, value)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The metadata as of now, unchanging however the tree changes after
    /// (holt-core's `Tree::snapshot`: one checkpoint, then its frames
    /// pinned), for walks that must see one moment (`dump`).
    pub fn snapshot(&self) -> FsResult<Meta> {
        Ok(Meta { tree: self.tree.snapshot()? })
    }

    /// The engine's shape and counters (frames, fill, cache, WAL).
    pub fn stats(&self) -> FsResult<holt_core::TreeStats> {
        Ok(self.tree.stats()?)
    }

    pub fn txn(&self) -> Txn<'_> {
        Txn { meta: self, seen: BTreeMap::new(), writes: BTreeMap::new(), empty_prefixes: Vec::new() }
    }

    /// The tree spent its space reserve on a full device (see holt-core's
    /// `Tree::space_low`): work that takes space should be refused. One
    /// atomic load.
    pub fn space_low(&self) -> bool {
        self.tree.space_low()
    }

    /// Try to make the tree's space reserve whole again; true if it is not
    /// low on space on return.
    pub fn restore_space(&self) -> bool {
        self.tree.restore_space_reserve()
    }

    /// Barrier: every committed transaction is on stable storage.
    pub fn sync(&self) -> FsResult<()> {
        Ok(self.tree.sync()?)
    }
}

impl Txn<'_> {
    /// The value at `key` as of this transaction (its own writes included).
    pub fn get(&mut self, key: &[u8]) -> FsResult<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        let rec = self.meta.tree.get_record(key)?;
        let seen = rec.as_ref().map_or(Seen::Absent, |r| Seen::Version(r.version));
        // The first read fixes the guard; a later read of the same key within
        // one transaction must not move it.
        self.seen.entry(key.to_vec()).or_insert(seen);
        Ok(rec.map(|r| r.value))
    }

    /// `ino`'s inode as of this transaction, without a guard: only for
    /// facts no concurrent writer can change (a directory's parent, read
    /// under the directory-move lock).
    pub fn inode_unguarded(&self, ino: Ino) -> FsResult<Inode> {
        let key = schema::inode_key(ino);
        let v = match self.writes.get(&key) {
            Some(w) => w.clone(),
            None => self.meta.tree.get(&key)?,
        };
        Inode::decode(&key, &v.ok_or(FsError::NotFound)?)
    }

    /// The keys this transaction has read through guards.
    #[cfg(test)]
    pub fn guarded_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.seen.keys().map(Vec::as_slice)
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    pub fn inode(&mut self, ino: Ino) -> FsResult<Inode> {
        let key = schema::inode_key(ino);
        let v = self.get(&key)?.ok_or(FsError::NotFound)?;
        Inode::decode(&key, &v)
    }

    pub fn put_inode(&mut self, ino: Ino, inode: &Inode) {
        debug_assert!(inode.check(b"I/").is_ok(), "writing an inode that breaks its invariants: {inode:?}");
        self.put(schema::inode_key(ino), inode.encode());
    }

    pub fn delete_inode(&mut self, ino: Ino) {
        self.delete(schema::inode_key(ino));
    }

    pub fn dentry(&mut self, parent: Ino, name: &[u8]) -> FsResult<Option<Dentry>> {
        let key = schema::dentry_key(parent, name);
        self.get(&key)?.map(|v| Dentry::decode(&key, &v)).transpose()
    }

    pub fn put_dentry(&mut self, parent: Ino, name: &[u8], d: Dentry) {
        self.put(schema::dentry_key(parent, name), d.encode().to_vec());
    }

    pub fn delete_dentry(&mut self, parent: Ino, name: &[u8]) {
        self.delete(schema::dentry_key(parent, name));
    }

    /// True if `dir` has no entries; an empty answer is guarded at commit.
    pub fn dir_is_empty(&mut self, dir: Ino) -> FsResult<bool> {
        let prefix = schema::dir_prefix(dir);
        let pending = self.writes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix));
        if pending.clone().any(|(_, w)| w.is_some()) {
            return Ok(false);
        }
        let deleted: Vec<&Vec<u8>> = pending.map(|(k, _)| k).collect();
        let mut empty = true;
        for entry in self.meta.tree.scan_prefix(&prefix) {
            if !deleted.contains(&&entry?.key().to_vec()) {
                empty = false;
                break;
            }
        }
        if empty {
            self.empty_prefixes.push(prefix);
        }
        Ok(empty)
    }

    /// Apply the buffered writes if every read still holds; false if a guard failed.
    pub fn commit(self) -> FsResult<bool> {
        if self.writes.is_empty() {
            return Ok(true);
        }
        let Txn { meta, seen, writes, empty_prefixes } = self;
        let applied = meta.tree.atomic(|b| {
            for (key, s) in &seen {
                match s {
                    Seen::Absent => b.assert_absent(key),
                    Seen::Version(v) => b.assert_version(key, *v),
                };
            }
            for prefix in &empty_prefixes {
                if !prefix_emptied_by(prefix, &writes) {
                    b.assert_prefix_empty(prefix);
                }
            }
            for (key, w) in &writes {
                match w {
                    Some(v) => b.put(key, v),
                    None => b.delete(key),
                };
            }
        })?;
        Ok(applied)
    }
}

/// A prefix asserted empty stays a valid guard unless this same batch
/// removes keys under it (then the read was of the post-delete view and the
/// individual deletes are already guarded by version).
fn prefix_emptied_by(prefix: &[u8], writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> bool {
    writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).next().is_some()
}
