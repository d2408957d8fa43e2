//! Everything below the tree that touches memory budgets and files: the
//! buffer manager (`pool`), the file-system seam (`vfs`) with its real
//! (`std_vfs`) and crash-simulating (`mem_vfs`) implementations, and the
//! frame store built on it. Knows nothing of ART nodes.

pub(crate) mod frame_file;
pub(crate) mod frame_store;
mod le;
// Store locks in simulated file systems serve the crash tests only.
#[allow(dead_code)]
pub(crate) mod lock;
pub(crate) mod manifest;
// Crash simulation and fault injection for tests, the engine's included.
#[allow(dead_code)]
pub(crate) mod mem_vfs;
pub(crate) mod pool;
pub(crate) mod shared_map;
pub(crate) mod splitmix;
pub(crate) mod std_vfs;
pub(crate) mod table;
// Optional io_uring file I/O; the engine chooses it at open.
#[cfg(feature = "io-uring")]
pub(crate) mod uring_vfs;
pub(crate) mod vfs;
