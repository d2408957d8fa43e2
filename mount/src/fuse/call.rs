//! [`Call`]: one FUSE request being answered, counted in the daemon's
//! request metrics when its callback ends.

use std::cell::Cell;
use std::time::Instant;

use fuser::Errno;
use log::{debug, error};

use crate::metrics::{Op, Requests};
use crate::FsError;

/// Made first thing in a callback and dropped at its end, after the reply
/// was written: so its time is the request's time in the daemon, reply
/// included. Records the errno of an error reply (0: none) with it.
pub(super) struct Call<'a> {
    requests: &'a Requests,
    op: Op,
    started: Instant,
    errno: Cell<i32>,
}

impl<'a> Call<'a> {
    pub(super) fn start(requests: &'a Requests, op: Op) -> Call<'a> {
        Call { requests, op, started: Instant::now(), errno: Cell::new(0) }
    }

    pub(super) fn op(&self) -> Op {
        self.op
    }

    /// The errno replying `e`; failures that are not the caller's doing are logged.
    pub(super) fn fail(&self, e: FsError) -> Errno {
        if e.is_expected() {
            debug!("{}: {e}", self.op.name());
        } else {
            error!("{}: {e}", self.op.name());
        }
        self.refuse(Errno::from_i32(e.errno()))
    }

    /// `errno`, noted as this request's answer.
    pub(super) fn refuse(&self, errno: Errno) -> Errno {
        self.errno.set(errno.code());
        errno
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.requests.record(self.op, ns, self.errno.get());
    }
}
