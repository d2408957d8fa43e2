//! Everything below the tree that touches memory budgets and files: the
//! buffer manager (`pool`), the file-system seam (`vfs`) with its real
//! (`std_vfs`) and crash-simulating (`mem_vfs`) implementations, and the
//! frame store built on it. Knows nothing of ART nodes.

// The frame store is built and tested standalone; the engine's checkpointer
// and buffer manager wire it in, until then parts of it are unused.
#[allow(dead_code)]
pub(crate) mod frame_file;
#[allow(dead_code)]
pub(crate) mod frame_store;
mod le;
#[allow(dead_code)]
pub(crate) mod lock;
#[allow(dead_code)]
pub(crate) mod manifest;
// Crash simulation and fault injection for tests, the engine's included.
#[allow(dead_code)]
pub(crate) mod mem_vfs;
pub(crate) mod pool;
pub(crate) mod splitmix;
pub(crate) mod std_vfs;
pub(crate) mod table;
// Optional io_uring file I/O; the engine chooses it at open.
#[cfg(feature = "io-uring")]
#[allow(dead_code)]
pub(crate) mod uring_vfs;
pub(crate) mod vfs;
