//! holt-mount: filesystem semantics over holt-core, and the FUSE adapter.
//!
//! Module map (each module's invariants are in its own docs):
//! - `schema`: the key schema (`S/`, `C/`, `I/`, `D/`, `X/`, `R/`) and value
//!   codecs. Pure: no I/O.
//! - `meta`: the only module that talks to the holt-core tree; point reads,
//!   directory scans and optimistic transactions ([`meta::Txn`]) whose reads
//!   become the guards of one atomic batch.
//! - `data`: file contents behind the [`data::DataStore`] trait; a sparse
//!   file per inode (`FileData`) or pages in memory (`MemoryData`). Knows
//!   nothing of names or sizes.
//! - `fs`: the semantics layer [`Fs`]: one method per POSIX operation, plain
//!   arguments in, [`FsResult`] out. Never names FUSE types.
//! - `error`: [`FsError`] and its single errno mapping.
//! - `store`: the store directory layout (`lock`, `meta/`, `data/`) and its lock.
//! - `fuse`: the adapter, the only file that names fuser types: decode a
//!   request, call `Fs`, encode the reply.
//! - `mountpoint`: clearing a dead FUSE mount and unmounting.

pub mod data;
mod error;
mod fs;
pub mod fuse;
mod meta;
pub mod mountpoint;
pub mod schema;
mod store;

#[cfg(test)]
mod tests;

pub use error::{FsError, FsResult};
pub use fs::{
    AtimeMode, Attr, Caller, DirEntry, Fs, FsConfig, OpenFlags, RenameFlags, SetAttr, StatFs, TimeSet, XattrFlags,
    XattrReply, BLOCK_BYTES,
};
pub use store::{is_store, Store, StoreError, StoreLock, StoreOptions};
