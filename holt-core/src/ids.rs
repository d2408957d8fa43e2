//! Identifier newtypes; raw integers do not cross module boundaries.

/// Identity of a blob frame: stable for the frame's life, independent of
/// where the frame sits in memory or on disk. `FrameId(0)` is never used.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct FrameId(pub u64);

/// Log sequence number: position of a record in the write-ahead log order.
/// `Lsn(0)` means "before every record".
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Lsn(pub u64);

impl Lsn {
    pub(crate) fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}
