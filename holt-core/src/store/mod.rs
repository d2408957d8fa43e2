//! Everything below the tree that touches memory budgets and files: the
//! buffer manager (`pool`), the file-system seam (`vfs`) with its real
//! (`std_vfs`) and crash-simulating (`mem_vfs`) implementations, and the
//! frame store built on it. Knows nothing of ART nodes.

pub(crate) mod mem_vfs;
pub(crate) mod pool;
pub(crate) mod splitmix;
pub(crate) mod std_vfs;
pub(crate) mod table;
pub(crate) mod vfs;
