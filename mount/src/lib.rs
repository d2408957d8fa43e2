//! holt-mount: filesystem semantics over holt-core, and the FUSE adapter.
//!
//! Module map (each module's own docs hold its details):
//! - `schema`: the key schema (`S/`, `C/`, `I/`, `D/`, `X/`, `R/`) and value
//!   codecs, each value led by a version byte. Pure: no I/O, no tree.
//! - `meta`: the only module that talks to the holt-core tree: point reads,
//!   directory scans, and optimistic transactions ([`meta::Txn`]) whose reads
//!   become the guards of one `Tree::atomic` batch.
//! - `data`: file contents behind the [`data::DataStore`] trait; a sparse
//!   file per inode under `STORE/data/<ino low byte>/` with a bounded
//!   descriptor cache (`FileData`), or 4 KiB pages in memory (`MemoryData`).
//!   The authority for a file's size and data times; knows nothing of names.
//! - `fs`: the semantics layer [`Fs`]: one method per POSIX operation, plain
//!   arguments in, [`FsResult`] out. Never names FUSE types.
//! - `error`: [`FsError`], named by cause, and its single errno mapping.
//! - `store`: the store directory (`lock`, `meta/`, `data/`), the checks
//!   that make it safe to open (type, owner, mode, no symlinks), its flock.
//! - `fuse`: the adapter, the only module that names fuser types: decode a
//!   request, call `Fs` once, encode the reply; and the mount itself
//!   (mount(2) as `fuse.holt-fs` where permitted, else fusermount3).
//! - `mountpoint`: mount-table queries, dead-mount detection, unmounting.
//! - `fsck`: checks a store that is not mounted against these invariants
//!   and repairs what is safe, without constructing `Fs`.
//! - `info`: the `holt-fs info` report (counts, file bytes, space on disk,
//!   engine statistics, mounts, last shutdown), gathered by a serving
//!   daemon or from a read-only open; reads only.
//! - `ctl`: the control socket `STORE/ctl.sock` of a read-write daemon:
//!   a versioned JSON-line protocol, the server (made safely, removed at
//!   a clean stop) and the client. Requests never change the filesystem.
//! - `metrics`: what a serving daemon counts (FUSE requests by opcode,
//!   with latency histograms and errors by errno; data bytes; the
//!   engine's O(1) counters), reported over `ctl` (`stats`) and as
//!   Prometheus text over HTTP. Counting takes no lock; reading walks
//!   nothing.
//! - `listen`: the accept loop `ctl` and the metrics endpoint share
//!   (lowered priority, a bound on connections served at once).
//! - `dump`: `holt-fs dump` / `load`: the dump stream's codec, the walk of
//!   a fixed view (a read-only open, or a daemon's tree snapshot) that
//!   writes it, and the load that replays it through `Fs` into an empty
//!   store.
//!
//! Invariants:
//! - Every mutation of metadata is one `Txn` committed as one atomic batch:
//!   dentry, inode(s), parent attributes, counters and orphan marker change
//!   together or not at all; a batch applies only if every key the operation
//!   read is unchanged, so concurrent operations serialize without locks.
//! - nlink is exact: a file's equals its dentries; a directory's is 2 plus
//!   its subdirectories; 0 only for an inode awaiting reclaim in `R/<ino>`.
//! - Directory inodes record their parent; a directory rename walks the new
//!   parent's ancestors inside the transaction, so cycles cannot form.
//! - Inode numbers are never reused (reserved from `C/next_ino` in batches).
//! - A regular file's size, blocks, atime and mtime belong to its data
//!   object, so a change of contents is one step on the object; the steps
//!   that span both stores follow the crash protocol in doc/ARCHITECTURE.md
//!   (inode before object, object removed only once its orphaning is durable).
//! - An inode is reclaimed only with no names and no open handles; the
//!   orphan marker makes reclaim crash-safe and the mount-time sweep finishes it.
//! - readdir offsets name entries, not positions: resuming continues after
//!   the last name returned, so concurrent changes never repeat or skip an
//!   entry that exists for the whole listing; a handle remembers the name
//!   of every offset it handed out, so each stays valid (seekdir) for the
//!   handle's life.
//! - A POSIX access ACL and its inode's mode never disagree: every change of
//!   one rewrites the other in the same batch (`fs/acl.rs`).
//! - No passthrough backing outlives its object: `Fs` tells the adapter
//!   (its object-removal hook) before removing an object, and the adapter's
//!   list of kept backings lets go of it (`fuse/backing.rs`).
//! - Nothing under a store is resolved through a symlink, and a read-only
//!   store is never written.
//! - In-memory state (inode reservation, counter shards, open counts,
//!   directory cursors) is a cache of the tree or of live handles, rebuilt
//!   at mount.
//! - A dump sees one moment's metadata (a snapshot or a read-only open)
//!   and reads objects quietly (no atime, no cached descriptor); while it
//!   runs, objects of deleted files are held from reclaim. A load writes
//!   only through `Fs`, and only into a store with nothing in its root.
//! - On a full store (the tree's space reserve spent) operations that take
//!   space are refused with ENOSPC before they change anything, and those
//!   that free space proceed (`fs/space.rs`). A follow-up or best-effort
//!   write (the reclaim after a removal, a listing's atime) never turns the
//!   operation it follows into an error.

pub mod ctl;
pub mod data;
pub mod dump;
mod error;
#[cfg(test)] mod format_doc;
mod fs;
pub mod fsck;
pub mod fuse;
pub mod info;
mod listen;
mod meta;
pub mod metrics;
pub mod mountpoint;
pub mod schema;
mod store;

#[cfg(test)]
mod tests;

pub use error::{FsError, FsResult};
pub use fs::{
    AtimeMode, Attr, Caller, DirEntry, Fs, FsConfig, LastMount, OpenFlags, Recovery, RenameFlags, SetAttr, Setter, StatFs,
    TimeSet, XattrFlags, XattrReply, BLOCK_BYTES,
};
pub use store::{
    cache_frames, default_cache_bytes, is_store, parse_size, wait_closed, Store, StoreError, StoreLock, StoreOptions,
    CACHE_BYTES_MIN,
};
