//! Fault points in applying a journaled batch, where tests make the apply
//! fail as an I/O error or a corrupt frame would (`apply_fault_tests`).
//! Outside tests `point` is an empty inline function.

/// A place in `write::apply_ops` / `apply_single` where a failure leaves a
/// batch applied in part.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Before each op of a batch (before a single op, too).
    BeforeOp,
    /// A rename's source removed, its destination not yet written.
    RenameHalfDone,
    /// A spill moved subtrees into a new frame; the insert that needed the
    /// room is not done.
    AfterSpill,
    /// Every op landed; forwarding links not yet bypassed, LSN not stamped.
    BeforeFinish,
}

#[cfg(not(test))]
#[inline(always)]
pub(crate) fn point(_step: Step) -> crate::error::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) use armed::{arm, disarm, point};

#[cfg(test)]
mod armed {
    use std::cell::Cell;

    use super::Step;
    use crate::error::{Error, Result};

    thread_local! {
        /// The step to fail on this thread, and how many of its passes to let
        /// through first. One shot: firing disarms.
        static ARMED: Cell<Option<(Step, u64)>> = const { Cell::new(None) };
    }

    /// Fail the `skip + 1`th pass through `step` on this thread.
    pub(crate) fn arm(step: Step, skip: u64) {
        ARMED.set(Some((step, skip)));
    }

    /// Forget an armed fault; true if it had not fired.
    pub(crate) fn disarm() -> bool {
        ARMED.take().is_some()
    }

    pub(crate) fn point(step: Step) -> Result<()> {
        match ARMED.get() {
            Some((armed, 0)) if armed == step => {
                ARMED.set(None);
                let io = std::io::Error::from_raw_os_error(libc::EIO);
                Err(Error::io("read", format!("<injected fault at {step:?}>"), io))
            }
            Some((armed, skip)) if armed == step => {
                ARMED.set(Some((armed, skip - 1)));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
