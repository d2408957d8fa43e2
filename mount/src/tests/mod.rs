//! Semantics tests: the fs layer called directly, no kernel involved.

mod fsck;
mod model;
mod ops;

use crate::{Caller, Fs, FsConfig, Store};

pub(crate) const USER: Caller = Caller { uid: 1000, gid: 1000 };

pub(crate) fn memory_fs() -> Fs {
    let store = Store::memory(&crate::StoreOptions::default()).expect("memory store opens");
    Fs::new(store.tree, store.data, FsConfig::default()).expect("formatting an empty tree works")
}
