//! Semantics tests: the fs layer called directly, no kernel involved.

mod crash;
mod fsck;
mod full;
mod model;
mod ops;
mod power_loss;

use crate::{Caller, Fs, FsConfig, Store};

pub(crate) const USER: Caller = Caller { uid: 1000, gid: 1000, umask: 0 };

pub(crate) fn memory_fs() -> Fs {
    memory_fs_and_tree().0
}

/// A fresh in-memory filesystem and its tree, for tests that look at keys.
pub(crate) fn memory_fs_and_tree() -> (Fs, holt_core::Tree) {
    let store = Store::memory(&crate::StoreOptions::default()).expect("memory store opens");
    let tree = store.tree.clone();
    (Fs::new(store.tree, store.data, FsConfig::default()).expect("formatting an empty tree works"), tree)
}

/// SplitMix64: seeded, replayable choices for the randomized tests.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An ACL in the kernel's xattr encoding from (tag, perm, id) entries.
pub(crate) fn acl_bytes(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}
