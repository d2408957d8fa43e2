//! The batch protocol for the commonest batch: one put or delete and no
//! guards (`Tree::put`, `insert`, `delete`, `remove`). Same steps and the
//! same guarantees as `Engine::apply`, with one landing instead of a
//! footprint map, hint list and overlay: the key's optimistic walk finds the
//! frame (reading the frames above it by pages), the frame is latched at the
//! version walked and made whole, so the walk's result still holds and the
//! op lands from its entry without walking again first.

use super::write::{apply_single, Hint};
use super::Engine;
use crate::error::Result;
use crate::layout::node::LeafAt;
use crate::op::{LogOp, Op};
use crate::tree::descend::{retry, try_locate_paged, Walk};
use crate::tree::{Owned, RESTARTS_MAX};

impl Engine {
    /// Apply `op` (a put or delete) alone; returns the previous value when
    /// `want_prev` (a delete always reads it: an absent key logs nothing).
    pub(crate) fn apply_one(&self, op: Op, want_prev: bool) -> Result<Option<Vec<u8>>> {
        let op = match op {
            Op::Put { key, value } => LogOp::Put { key, value },
            Op::Delete { key } => LogOp::Delete { key },
            rename @ Op::Rename { .. } => return self.apply_rename(rename, want_prev),
        };
        let key = match &op {
            LogOp::Put { key, .. } | LogOp::Delete { key } => key.as_slice(),
            LogOp::Rename { .. } => unreachable!("converted above"),
        };
        let is_delete = matches!(op, LogOp::Delete { .. });
        if let (Some(filter), false) = (&self.filter, is_delete) {
            filter.prefetch_put(key);
        }
        self.check_poison()?;
        let pool = &self.pool;
        // Kept across restarts: a restart after a miss makes it pin.
        let reader = Owned::new(pool);
        for _ in 0..RESTARTS_MAX {
            let land = retry(&reader, || try_locate_paged(pool, &reader, key))?;
            let version = land.view.version.expect("a walk owning no frame observes versions");
            let gate = self.gate.read();
            if !land.view.cell.latch.try_upgrade(version) {
                drop(gate);
                pool.counters.restarts.add(1);
                reader.pins.after_restart();
                land.view.cell.latch.wait_unlocked();
                continue;
            }
            let mut owned = Owned::new(pool);
            owned.push(land.view.id, land.view.cell);
            if let Err(e) = self.check_poison().and_then(|()| pool.make_whole(land.view.id, land.view.cell)) {
                owned.release_clean();
                return Err(e);
            }
            // Latched at the version walked: the walk's answer is current,
            // at the same offsets in the whole frame as in its pages.
            let buf = land.view.cell.buf().expect("a frame made whole under its latch is resident");
            let prev = match land.walk {
                Walk::Leaf(off) if want_prev || is_delete => Some(LeafAt(off).value(buf)),
                _ => None,
            };
            if is_delete && prev.is_none() {
                owned.release_clean();
                return Ok(None);
            }
            let hint = Hint { frame: land.view.id, entry: land.entry };
            let log = std::slice::from_ref(&op);
            self.journal_and_apply(owned, gate, log, |owned, lsn| apply_single(pool, owned, &op, lsn, hint))?;
            return Ok(prev);
        }
        Err(super::never_latched())
    }

    fn apply_rename(&self, op: Op, want_prev: bool) -> Result<Option<Vec<u8>>> {
        match self.apply(&[], vec![op], want_prev)? {
            super::Applied::Done { mut prev } => Ok(prev.pop().flatten()),
            super::Applied::GuardFailed => unreachable!("a batch without guards cannot fail a guard"),
        }
    }
}
