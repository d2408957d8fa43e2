//! The data set: filesystem-shaped dentry keys `D/<parent ino u64 BE>/<name>`
//! with inode-like values, generated from a fixed seed so every engine and
//! every run sees the same bytes.

/// Fixed seed of the data set; changing it changes every number.
pub const DATASET_SEED: u64 = 0x686f_6c74_6265_6e63;

/// Share of the keys that live in the few big directories.
const BIG_DIRS_SHARE: f64 = 0.02;
/// How many big directories there are.
const BIG_DIRS_COUNT: usize = 2;
/// Entries of a normal directory are drawn uniformly from 1..=this (mean 100).
const SMALL_DIR_ENTRIES_MAX: u64 = 199;
/// Value lengths are drawn uniformly from this range (an inode record).
const VALUE_BYTES_MIN: usize = 40;
const VALUE_BYTES_MAX: usize = 100;

const STEMS: &[&str] = &[
    "index", "README", "main", "lib", "config", "test", "util", "IMG", "photo", "notes",
    "report", "data", "build", "module", "package", "server", "client", "handler", "types", "mod",
];
const EXTS: &[&str] = &[".rs", ".c", ".h", ".txt", ".jpg", ".json", ".md", ".o", ".py", ""];

/// SplitMix64: small, fast, and good enough to shuffle and pick.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// One directory: its key prefix and the range of its entries in `Dataset::keys`.
#[derive(Clone, Debug)]
pub struct Dir {
    pub prefix: Vec<u8>,
    pub first: usize,
    pub len: usize,
    pub big: bool,
}

/// Keys grouped by directory (in creation order), their values, and the directories.
pub struct Dataset {
    pub keys: Vec<Vec<u8>>,
    pub values: Vec<Vec<u8>>,
    pub dirs: Vec<Dir>,
}

pub fn dentry_prefix(parent_ino: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(11);
    p.extend_from_slice(b"D/");
    p.extend_from_slice(&parent_ino.to_be_bytes());
    p.push(b'/');
    p
}

pub fn entry_name(rng: &mut Rng, index: usize) -> String {
    let stem = STEMS[rng.below(STEMS.len())];
    let ext = EXTS[rng.below(EXTS.len())];
    if rng.below(5) == 0 {
        // Some names carry a hash-like tail, as build outputs and caches do.
        format!("{stem}-{:016x}-{index}{ext}", rng.next_u64())
    } else {
        format!("{stem}_{index:04}{ext}")
    }
}

/// An inode-like record: child ino, type, mode, ids, size, times; 40-100 bytes.
pub fn inode_value(rng: &mut Rng, child_ino: u64) -> Vec<u8> {
    let len = VALUE_BYTES_MIN + rng.below(VALUE_BYTES_MAX - VALUE_BYTES_MIN + 1);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&child_ino.to_be_bytes());
    v.push(if rng.below(10) == 0 { 4 } else { 8 });
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Directory sizes: normal ones with mean ~100 entries, plus the big ones
/// placed at evenly spread positions so their inos sit inside the key space.
fn dir_sizes(rng: &mut Rng, keys_total: usize) -> Vec<(usize, bool)> {
    let big_total = ((keys_total as f64) * BIG_DIRS_SHARE) as usize;
    let big_each = big_total / BIG_DIRS_COUNT;
    let mut small_left = keys_total - big_each * BIG_DIRS_COUNT;
    let mut sizes = Vec::new();
    while small_left > 0 {
        let n = (1 + rng.below(SMALL_DIR_ENTRIES_MAX as usize)).min(small_left);
        sizes.push((n, false));
        small_left -= n;
    }
    if big_each > 0 {
        for b in 0..BIG_DIRS_COUNT {
            let at = sizes.len() * (b + 1) / (BIG_DIRS_COUNT + 1);
            sizes.insert(at, (big_each, true));
        }
    }
    sizes
}

impl Dataset {
    /// `name` in a directory of the data set that `rng` picks.
    pub fn in_random_dir(&self, rng: &mut Rng, name: &str) -> Vec<u8> {
        let mut key = self.dirs[rng.below(self.dirs.len())].prefix.clone();
        key.extend_from_slice(name.as_bytes());
        key
    }

    /// Exactly `keys_total` keys. Inos are handed out in creation order, as a
    /// filesystem being filled (an untar) would: a directory, then its entries.
    pub fn generate(keys_total: usize) -> Self {
        let mut rng = Rng::new(DATASET_SEED);
        let sizes = dir_sizes(&mut rng, keys_total);
        let mut keys = Vec::with_capacity(keys_total);
        let mut values = Vec::with_capacity(keys_total);
        let mut dirs = Vec::with_capacity(sizes.len());
        let mut next_ino: u64 = 2;
        for (len, big) in sizes {
            let prefix = dentry_prefix(next_ino);
            next_ino += 1;
            dirs.push(Dir { prefix: prefix.clone(), first: keys.len(), len, big });
            for i in 0..len {
                let mut k = prefix.clone();
                k.extend_from_slice(entry_name(&mut rng, i).as_bytes());
                keys.push(k);
                values.push(inode_value(&mut rng, next_ino));
                next_ino += 1;
            }
        }
        assert_eq!(keys.len(), keys_total, "directory sizes add up to the key count");
        Dataset { keys, values, dirs }
    }

    /// A permutation of all key indices, fixed by `seed`.
    pub fn order(&self, seed: u64) -> Vec<u32> {
        let mut v: Vec<u32> = (0..self.keys.len() as u32).collect();
        Rng::new(seed).shuffle(&mut v);
        v
    }

    pub fn key_bytes(&self) -> usize {
        self.keys.iter().map(Vec::len).sum()
    }

    pub fn value_bytes(&self) -> usize {
        self.values.iter().map(Vec::len).sum()
    }
}
