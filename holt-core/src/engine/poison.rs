//! What the engine refuses once it can no longer vouch for its state.
//!
//! Two levels, raised only, never lowered while the engine lives:
//! - writes: a failed sync left the durability of staged records unknown;
//!   the frames are still exactly what the acknowledged batches made them,
//!   so reads go on.
//! - reads too: a batch failed after its record was journaled, so its
//!   frames may hold part of it; nothing read from them may reach a caller.
//!
//! Checking is one atomic load (no lock, no write), so every write checks
//! twice and every read once without slowing the common path.

use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// How much the engine refuses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Refuse {
    Writes = 1,
    ReadsAndWrites = 2,
}

#[derive(Default)]
pub(crate) struct Poison {
    /// 0, or a `Refuse` as u8.
    level: AtomicU8,
    /// Why, for `Error::Poisoned`: the cause that raised the current level.
    cause: Mutex<String>,
}

impl Poison {
    /// `Err(Poisoned)` once writes are refused.
    pub(crate) fn check_writes(&self) -> Result<()> {
        self.check(Refuse::Writes)
    }

    /// `Err(Poisoned)` once reads are refused. A reader calls it after its
    /// read: a batch raises the level before it releases its frames, and a
    /// read that validated against a released frame acquired that release,
    /// so a read that saw part of a failed batch always finds the level up.
    pub(crate) fn check_reads(&self) -> Result<()> {
        self.check(Refuse::ReadsAndWrites)
    }

    fn check(&self, refused_at: Refuse) -> Result<()> {
        if self.level.load(Ordering::Acquire) < refused_at as u8 {
            return Ok(());
        }
        Err(Error::Poisoned { cause: self.cause.lock().clone() })
    }

    /// Refuse at least `level` from now on; `cause` is kept if it raises
    /// the level (the first cause of a level is the one that explains it).
    pub(crate) fn raise(&self, level: Refuse, cause: &dyn std::fmt::Display) {
        let mut kept = self.cause.lock();
        if self.level.load(Ordering::Acquire) >= level as u8 {
            return;
        }
        *kept = cause.to_string();
        self.level.store(level as u8, Ordering::Release);
        let refused = if level == Refuse::Writes { "writes" } else { "reads and writes" };
        log::error!("tree poisoned, refusing {refused}: {kept}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause_of(r: Result<()>) -> String {
        match r {
            Err(Error::Poisoned { cause }) => cause,
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }

    #[test]
    fn levels_only_rise_and_keep_the_cause_that_raised_them() {
        let p = Poison::default();
        p.check_writes().unwrap();
        p.raise(Refuse::Writes, &"sync failed");
        assert_eq!(cause_of(p.check_writes()), "sync failed");
        p.check_reads().expect("a failed sync leaves reads alone");
        p.raise(Refuse::Writes, &"second sync failed");
        assert_eq!(cause_of(p.check_writes()), "sync failed");
        p.raise(Refuse::ReadsAndWrites, &"half a batch");
        assert_eq!(cause_of(p.check_reads()), "half a batch");
        p.raise(Refuse::Writes, &"late sync failure");
        assert_eq!(cause_of(p.check_writes()), "half a batch");
    }
}
