//! The keys the peer run adds to the data set (`workload::Dataset`), made
//! with the same name generator: directories of fixed sizes to list, and
//! object-store-shaped trees whose top directories hold only directories
//! (the rollup listing), plus the churn that leaves them full of deletes.

use super::store::{Res, Store};
use crate::workload::{dentry_prefix, entry_name, inode_value, Rng};

const LIST_SEED: u64 = 21;
const ROLLUP_SEED: u64 = 22;
const CHURN_SEED: u64 = 23;
/// Inos of the listing directories start here, far past the data set's,
/// so their keys sit among the data set's in the same `D/` family.
const LIST_INO_BASE: u64 = 1 << 40;
/// Listing cells: (tag, entries per directory, directories).
pub const LIST_SIZES: [(&str, usize, usize); 3] = [("list10", 10, 1000), ("list1k", 1000, 20), ("list100k", 100_000, 1)];
/// Rollup trees: top directories of `ROLLUP_SUBDIRS` subdirectories with
/// `ROLLUP_ENTRIES` entries each, keyed by full path
/// (`O/<top>/subdir-NN/<name>`): listing a top yields `ROLLUP_SUBDIRS`
/// common prefixes and no key.
pub const ROLLUP_TOPS: usize = 50;
pub const ROLLUP_SUBDIRS: usize = 10;
pub const ROLLUP_ENTRIES: usize = 200;
/// Churn removes this many of every rollup subdirectory's first entries
/// (in creation order, so spread over its key range) and creates as many
/// new ones.
pub const CHURN_ENTRIES: usize = 150;
/// Keys per commit while loading the extra keys (untimed).
const LOAD_BATCH: usize = 10_000;

/// A directory to list: its prefix and how many entries it holds.
pub struct ListDir {
    pub prefix: Vec<u8>,
    pub entries: usize,
}

pub struct Extra {
    /// Per `LIST_SIZES` row, its directories.
    pub lists: Vec<Vec<ListDir>>,
    /// The rollup top directories' prefixes.
    pub tops: Vec<Vec<u8>>,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub fn rollup_top(top: usize) -> Vec<u8> {
    format!("O/{top:05}/").into_bytes()
}

fn rollup_key(top: usize, sub: usize, name: &str) -> Vec<u8> {
    let mut k = rollup_top(top);
    k.extend_from_slice(format!("subdir-{sub:02}/{name}").as_bytes());
    k
}

impl Extra {
    pub fn generate() -> Self {
        let mut rng = Rng::new(LIST_SEED);
        let mut pairs = Vec::new();
        let mut ino = LIST_INO_BASE;
        let mut lists = Vec::new();
        for (_, entries, dirs) in LIST_SIZES {
            let mut row = Vec::with_capacity(dirs);
            for _ in 0..dirs {
                let prefix = dentry_prefix(ino);
                ino += 1;
                for i in 0..entries {
                    let mut k = prefix.clone();
                    k.extend_from_slice(entry_name(&mut rng, i).as_bytes());
                    pairs.push((k, inode_value(&mut rng, ino + i as u64)));
                }
                row.push(ListDir { prefix, entries });
            }
            lists.push(row);
        }
        let mut rng = Rng::new(ROLLUP_SEED);
        for top in 0..ROLLUP_TOPS {
            for sub in 0..ROLLUP_SUBDIRS {
                for e in 0..ROLLUP_ENTRIES {
                    let k = rollup_key(top, sub, &entry_name(&mut rng, e));
                    pairs.push((k, inode_value(&mut rng, e as u64)));
                }
            }
        }
        let tops = (0..ROLLUP_TOPS).map(rollup_top).collect();
        Extra { lists, tops, pairs }
    }

    /// A key no cell changes: the first listing directory's first entry.
    pub fn first_key(&self) -> &[u8] {
        &self.pairs[0].0
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Untimed: every extra key, `LOAD_BATCH` per commit.
    pub fn load(&self, s: &dyn Store) -> Res<()> {
        for chunk in self.pairs.chunks(LOAD_BATCH) {
            let batch: Vec<(&[u8], &[u8])> = chunk.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            s.put_batch(&batch)?;
        }
        Ok(())
    }

    /// The rollup keys, as `(top, sub, entry)` index order gives them.
    fn rollup_pairs(&self) -> &[(Vec<u8>, Vec<u8>)] {
        let at = self.pairs.len() - ROLLUP_TOPS * ROLLUP_SUBDIRS * ROLLUP_ENTRIES;
        &self.pairs[at..]
    }

    /// Untimed, one commit per op as a user's rm and create are: in every
    /// rollup subdirectory, delete its first `CHURN_ENTRIES` entries and
    /// create as many new names. Returns the ops done.
    pub fn churn(&self, s: &dyn Store) -> Res<u64> {
        let mut rng = Rng::new(CHURN_SEED);
        let mut ops = 0;
        for (i, subdir) in self.rollup_pairs().chunks(ROLLUP_ENTRIES).enumerate() {
            let (top, sub) = (i / ROLLUP_SUBDIRS, i % ROLLUP_SUBDIRS);
            for (e, (key, value)) in subdir[..CHURN_ENTRIES].iter().enumerate() {
                s.delete(key)?;
                let name = format!("new-{}", entry_name(&mut rng, e));
                s.put(&rollup_key(top, sub, &name), value)?;
                ops += 2;
            }
        }
        Ok(ops)
    }
}
