//! Journal sinks: where the engine reports each applied batch. Chosen once
//! at open; "no WAL" is a sink, not a branch at every call site.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::ids::Lsn;
use crate::op::LogOp;

pub(crate) trait Sink: Send + Sync {
    /// Give the batch its LSN. Called while the batch's frames are latched,
    /// so LSN order is the order in which conflicting batches applied.
    fn append(&self, ops: &[LogOp]) -> Result<Lsn>;
    /// Return once the record at `lsn` is as durable as the sink promises.
    /// Called after the frames are released.
    fn commit(&self, lsn: Lsn) -> Result<()>;
    /// Barrier: everything appended so far is on stable storage.
    fn sync(&self) -> Result<()>;
    /// A batch appended here will not be applied whole (`cause`): refuse
    /// every later append and commit, so that records not yet written stay
    /// unwritten. Records already written stay as they are.
    fn abandon(&self, cause: &Error);
}

/// Memory mode: LSNs only number versions; nothing is written.
pub(crate) struct MemorySink {
    last: AtomicU64,
}

impl MemorySink {
    pub(crate) fn new() -> Self {
        MemorySink { last: AtomicU64::new(0) }
    }
}

impl Sink for MemorySink {
    fn append(&self, _ops: &[LogOp]) -> Result<Lsn> {
        Ok(Lsn(self.last.fetch_add(1, Ordering::AcqRel) + 1))
    }

    fn commit(&self, _lsn: Lsn) -> Result<()> {
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Nothing is written, so nothing to stop; the engine's poison refuses.
    fn abandon(&self, _cause: &Error) {}
}

/// Read-only engines (a read-only open, a snapshot): every batch is
/// refused before a frame changes. Holds what must live as long as the
/// engine (the shared store lock; a snapshot's origin tree).
pub(crate) struct RefusingSink {
    pub _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Sink for RefusingSink {
    fn append(&self, _ops: &[LogOp]) -> Result<Lsn> {
        Err(Error::ReadOnly)
    }

    fn commit(&self, _lsn: Lsn) -> Result<()> {
        Err(Error::ReadOnly)
    }

    /// Nothing is ever written, so everything is as durable as it gets.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn abandon(&self, _cause: &Error) {}
}
