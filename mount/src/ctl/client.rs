//! The client's side of the control socket: connect to `STORE/ctl.sock`,
//! send one request, read replies up to the final one.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::proto::{self, code, DecodeError, Reply, ReplyError, Request, Status, LINE_BYTES_MAX};
use super::server::open_dir;
use super::SOCKET_NAME;
use crate::info::{SocketState, StoreInfo};
use crate::metrics::StatsReport;

/// How long a client waits for a reply line (or a byte of a dump
/// stream): an `info` of a very large store walks every inode first.
const REPLY_WAIT: Duration = Duration::from_secs(600);

/// Why a request got no answer.
#[derive(Debug)]
pub enum CtlError {
    /// Nothing answers at the socket (`Absent` or `Stale`).
    NoDaemon(SocketState),
    Io(io::Error),
    /// The daemon's reply is not a reply of the protocol.
    Decode(DecodeError),
    /// The daemon answered with an error.
    Refused(ReplyError),
    /// The connection closed before the final reply.
    Closed,
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::NoDaemon(SocketState::Stale) => {
                write!(f, "the control socket refuses connections: the daemon that made it is gone")
            }
            CtlError::NoDaemon(_) => write!(f, "there is no control socket: no read-write daemon serves the store"),
            CtlError::Io(e) => write!(f, "control socket: {e}"),
            CtlError::Decode(e) => write!(f, "the daemon's reply: {e}"),
            CtlError::Refused(e) => write!(f, "the daemon refused: {} ({})", e.message, e.code),
            CtlError::Closed => write!(f, "the daemon closed the connection before answering"),
        }
    }
}

impl std::error::Error for CtlError {}

/// Connect to the control socket of `store`. A socket that refuses
/// (`ECONNREFUSED`: nothing listens) is stale; a missing one is absent.
pub fn connect(store: &Path) -> Result<UnixStream, CtlError> {
    let dir = open_dir(store).map_err(CtlError::Io)?;
    let path = format!("/proc/self/fd/{}/{SOCKET_NAME}", std::os::fd::AsRawFd::as_raw_fd(&dir));
    match UnixStream::connect(path) {
        Ok(stream) => Ok(stream),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CtlError::NoDaemon(SocketState::Absent)),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Err(CtlError::NoDaemon(SocketState::Stale)),
        Err(e) => Err(CtlError::Io(e)),
    }
}

/// Send `request` on `stream`; pass each `more` item to `item` and return
/// the final answer's body.
pub fn ask(stream: UnixStream, request: &str, item: &mut dyn FnMut(Value)) -> Result<Value, CtlError> {
    let mut sent = send(&stream, &Request::new(request))?;
    let mut reader = BufReader::new(&stream);
    loop {
        let reply = read_reply(&mut reader).map_err(|e| sent.blame(e))?;
        match reply.status {
            Status::More => item(reply.body.unwrap_or(Value::Null)),
            Status::Ok => return Ok(reply.body.unwrap_or(Value::Null)),
            Status::Error => {
                let unknown = || ReplyError { code: code::FAILED.into(), message: "no reason given".into() };
                return Err(CtlError::Refused(reply.error.unwrap_or_else(unknown)));
            }
        }
    }
}

/// How sending a request went. A daemon at its connection limit answers
/// `busy` and closes without reading, so the request's write can fail
/// (EPIPE) with the answer already waiting: the reply is read anyway,
/// and the write's error reported only if there is none.
pub(crate) struct Sent(Option<io::Error>);

impl Sent {
    /// The error to report when no reply could be read: the write's, if it failed.
    pub(crate) fn blame(&mut self, read: CtlError) -> CtlError {
        match (self.0.take(), read) {
            (Some(write), CtlError::Closed | CtlError::Io(_)) => CtlError::Io(write),
            (_, read) => read,
        }
    }
}

/// Send `request` on `stream`, whose replies are then waited for up to
/// `REPLY_WAIT` per read.
pub(crate) fn send(stream: &UnixStream, request: &Request) -> Result<Sent, CtlError> {
    stream.set_read_timeout(Some(REPLY_WAIT)).map_err(CtlError::Io)?;
    Ok(Sent((&*stream).write_all(&proto::encode(request)).err()))
}

/// One reply line.
pub(crate) fn read_reply(reader: &mut impl BufRead) -> Result<Reply, CtlError> {
    let mut line = Vec::new();
    if reader.take(LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line).map_err(CtlError::Io)? == 0 {
        return Err(CtlError::Closed);
    }
    proto::decode(&line).map_err(CtlError::Decode)
}

/// The `info` report of the daemon serving `store`.
pub fn info(store: &Path) -> Result<StoreInfo, CtlError> {
    ask_for(store, proto::REQUEST_INFO)
}

/// The counters of the daemon serving `store`.
pub fn stats(store: &Path) -> Result<StatsReport, CtlError> {
    ask_for(store, proto::REQUEST_STATS)
}

/// Ask `request` of the daemon serving `store`; its answer as a `T`.
fn ask_for<T: serde::de::DeserializeOwned>(store: &Path, request: &str) -> Result<T, CtlError> {
    let body = ask(connect(store)?, request, &mut |_| {})?;
    serde_json::from_value(body).map_err(|e| CtlError::Decode(DecodeError::Json(e)))
}
