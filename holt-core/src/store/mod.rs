//! Everything below the tree that touches files: the file-system seam (`vfs`),
//! and the frame store built on it. Knows nothing of ART nodes.

pub(crate) mod std_vfs;
pub(crate) mod vfs;
