//! Everything below the tree that touches memory budgets and files: the
//! buffer manager (`pool`, with its frame cells, eviction `clock` and
//! `pins`), the file-system seam (`vfs`) with its real
//! (`std_vfs`), read-only (`read_only_vfs`) and crash-simulating
//! (`mem_vfs`) implementations, the frame store built on it, and the space
//! reserve (`reserve`). Knows nothing of ART nodes.

pub(crate) mod ahead;
mod cell;
mod clock;
pub(crate) mod filter_file;
pub(crate) mod frame_file;
mod frame_source;
pub(crate) mod frame_store;
pub(crate) mod image_buf;
mod le;
pub(crate) mod lock;
pub(crate) mod manifest;
pub(crate) mod miss_filter;
// Crash simulation and fault injection, for this crate's tests and, through
// `testing`, for the tests of crates built on it.
#[cfg(any(test, feature = "testing"))]
pub(crate) mod mem_vfs;
pub(crate) mod pages;
pub(crate) mod pins;
pub(crate) mod pool;
pub(crate) mod read_only_vfs;
pub(crate) mod reserve;
pub(crate) mod shared_map;
pub(crate) mod splitmix;
pub(crate) mod std_vfs;
pub(crate) mod table;
// Optional io_uring file I/O; the engine chooses it at open.
#[cfg(feature = "io-uring")]
pub(crate) mod uring_vfs;
pub(crate) mod vfs;
