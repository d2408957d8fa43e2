//! The control socket: how a tool talks to the daemon serving a store
//! (`holt-fs info`, `holt-fs stats` and `holt-fs dump`). A read-write daemon
//! listens on `STORE/ctl.sock` (mode 0600) from before the mount is
//! reported ready until it unmounts; the protocol is one JSON line per
//! request and per reply (`proto`, documented in doc/FORMAT.md).
//!
//! - `proto`: the messages and their line codec. Pure.
//! - `server`: making the socket safely, the accept thread, removal.
//! - `client`: connect, send one request, read the replies.
//! - [`DaemonHandler`] (here): the requests a daemon answers.
//!
//! Invariants:
//! - Only the holder of the store's exclusive lock makes or removes the
//!   socket, and it removes it before it closes the store and lets the
//!   lock go; read-only mounts, which must write nothing to the store,
//!   have none.
//! - A request never changes the filesystem; the control threads run at
//!   a lowered CPU priority, so the FUSE threads go first.
//! - Every byte on a connection is a reply line, except for the dump
//!   stream that a `dump` request's first `more` reply announces; that
//!   stream ends with its own Trailer (or Abort) record, and a final
//!   reply line follows it (doc/FORMAT.md, "Requests").

mod client;
pub mod proto;
mod server;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use client::{ask, connect, info, stats, CtlError};
pub(crate) use client::{read_reply, send};
pub use server::{Handler, Responder, Server};

use crate::info::InfoError;
use crate::metrics::StatsSource;
use crate::Fs;
use proto::{code, Reply, Request};

/// The socket's name in the store directory.
pub const SOCKET_NAME: &str = "ctl.sock";

/// What a serving daemon answers: `info`, `stats` and `dump`.
pub struct DaemonHandler {
    pub fs: Arc<Fs>,
    /// The daemon's counters (`stats`).
    pub stats: StatsSource,
    /// The store directory (absolute) and the mountpoint, as reported.
    pub store: PathBuf,
    pub mountpoint: PathBuf,
}

impl Handler for DaemonHandler {
    fn handle(&self, request: &Request, conn: &mut Responder) -> io::Result<()> {
        match request.request.as_str() {
            proto::REQUEST_INFO => {
                let reply = self.info(conn);
                conn.send(&reply)
            }
            proto::REQUEST_STATS => conn.send(&Reply::ok(self.stats())),
            proto::REQUEST_DUMP => crate::dump::serve(&self.fs, request, conn),
            other => {
                let known = proto::REQUESTS.join(", ");
                conn.send(&Reply::error(code::UNKNOWN_REQUEST, format!("unknown request '{other}'; this daemon knows: {known}")))
            }
        }
    }
}

impl DaemonHandler {
    /// Atomic loads only: answered at once, whatever the store's size.
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self.stats.report()).expect("a report serializes: string keys, finite numbers")
    }

    fn info(&self, conn: &Responder) -> Reply {
        match crate::info::live(&self.fs, &self.store, &self.mountpoint, &|| conn.stopping()) {
            Ok(info) => Reply::ok(serde_json::to_value(info).expect("a report serializes: string keys, finite numbers")),
            Err(InfoError::Stopped) => Reply::error(code::STOPPING, InfoError::Stopped.to_string()),
            Err(e) => Reply::error(code::FAILED, e.to_string()),
        }
    }
}
