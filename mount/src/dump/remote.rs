//! A dump of a served store, over its control socket.
//!
//! The exchange (doc/FORMAT.md, "Requests"): the client sends `dump` with
//! its Dump arguments; the daemon takes its snapshot and answers one
//! `more` reply announcing the stream, then writes the dump stream itself
//! (preamble to Trailer, or to an Abort record if it fails on the way),
//! then one final reply: `ok` with the Dump report, or `error`.
//!
//! Why the stream travels on the socket, not as JSON items nor through a
//! descriptor passed with SCM_RIGHTS: JSON would inflate file bytes by a
//! third (base64) and cut them into 1 MiB lines for nothing; a descriptor
//! of the client's output would have the daemon block on, and write into,
//! whatever the client holds (a pipe to a slow consumer, a terminal),
//! outside the socket's own timeouts and stop checks. On the socket the
//! daemon keeps both (`Responder`), the client checks every record's
//! checksum as it arrives (and counts progress), and a daemon that dies
//! mid-stream leaves a stream without its Trailer, which no load accepts.
//! The cost is one copy through the client.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::format::{Record, StreamReader, VERSION};
use super::walk::write_dump;
use super::{live_view, DumpError, DumpOptions, DumpReport, Progress};
use crate::ctl::proto::{self, code, Reply, ReplyError, Request, Status};
use crate::ctl::{connect, read_reply, send, CtlError, Responder};
use crate::Fs;

/// The `stream` value of the reply that announces a dump stream.
pub const STREAM_NAME: &str = "holt-dump";

/// The daemon's side: answer a `dump` request on `conn`.
pub(crate) fn serve(fs: &Fs, request: &Request, conn: &mut Responder) -> io::Result<()> {
    let opts = match request.args.clone().map(serde_json::from_value::<DumpOptions>).transpose() {
        Ok(opts) => opts.unwrap_or_default(),
        Err(e) => return conn.send(&Reply::error(code::BAD_REQUEST, format!("dump arguments: {e}"))),
    };
    let (_hold, view) = match live_view(fs) {
        Ok(taken) => taken,
        Err(e) => return conn.send(&Reply::error(code::FAILED, format!("cannot take a snapshot: {e}"))),
    };
    conn.send(&Reply::more(json!({ "stream": STREAM_NAME, "version": VERSION })))?;
    let flag = conn.stop_flag();
    let stop = || flag.load(Ordering::Acquire);
    let dumped = {
        let mut out = io::BufWriter::with_capacity(256 * 1024, &mut *conn);
        let dumped = write_dump(&view, fs.data(), &mut out, opts, &mut |_| {}, &stop);
        out.flush().map(|()| dumped)
    };
    match dumped? {
        Ok(report) => conn.send(&Reply::ok(serde_json::to_value(report).expect("a report serializes"))),
        // The client is gone, or the stream broke: no reply can follow.
        Err(DumpError::Io(e)) => Err(e),
        Err(DumpError::Stopped) => conn.send(&Reply::error(code::STOPPING, DumpError::Stopped.to_string())),
        Err(e) => conn.send(&Reply::error(code::FAILED, e.to_string())),
    }
}

/// Reads from the socket and copies what it reads to the output.
struct Tee<'a, R: Read> {
    input: &'a mut R,
    out: &'a mut dyn Write,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The client's side: ask the daemon serving `store` for a dump and copy
/// the stream to `out`, checking each record. `Err(DumpError::Ctl(
/// CtlError::NoDaemon(_)))`: no daemon answers; read the store instead.
pub fn dump_remote(
    store: &Path,
    out: &mut dyn Write,
    opts: DumpOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<DumpReport, DumpError> {
    let stream = connect(store).map_err(DumpError::Ctl)?;
    let args = serde_json::to_value(opts).expect("options serialize");
    let request = Request { args: Some(args), ..Request::new(proto::REQUEST_DUMP) };
    let mut sent = send(&stream, &request).map_err(DumpError::Ctl)?;
    let mut reader = BufReader::new(&stream);
    let announced = answer(read_reply(&mut reader).map_err(|e| sent.blame(e)))?;
    if announced.body.as_ref().and_then(|b| b.get("stream")).and_then(Value::as_str) != Some(STREAM_NAME) {
        return Err(unexpected("a reply announcing the dump stream"));
    }
    let copied = copy_stream(&mut reader, out, progress);
    let last = answer(read_reply(&mut reader));
    match (copied, last) {
        (Ok(()), Ok(reply)) if reply.status == Status::Ok => {
            serde_json::from_value(reply.body.unwrap_or(Value::Null)).map_err(|e| unexpected_json(&e))
        }
        (Ok(()), Ok(_)) => Err(unexpected("a final reply after the stream")),
        // The daemon's reason (an `error` reply after an Abort) says more
        // than the stream's damage.
        (Err(_), Err(e @ DumpError::Ctl(CtlError::Refused(_)))) => Err(e),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
    }
}

/// Read records (copied to `out`) up to and including the Trailer.
fn copy_stream(
    reader: &mut BufReader<&UnixStream>,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), DumpError> {
    let mut records = StreamReader::new(Tee { input: reader, out })?;
    let mut shown = Progress::default();
    while let Some(record) = records.next_record()? {
        shown.inodes += u64::from(matches!(record, Record::Inode(_)));
        shown.bytes = records.offset();
        progress(shown);
    }
    Ok(())
}

/// A reply; an `error` reply as `CtlError::Refused`.
fn answer(reply: Result<Reply, CtlError>) -> Result<Reply, DumpError> {
    let reply = reply.map_err(DumpError::Ctl)?;
    if reply.status == Status::Error {
        let unknown = || ReplyError { code: code::FAILED.into(), message: "no reason given".into() };
        return Err(DumpError::Ctl(CtlError::Refused(reply.error.unwrap_or_else(unknown))));
    }
    Ok(reply)
}

fn unexpected(what: &str) -> DumpError {
    DumpError::Io(io::Error::new(io::ErrorKind::InvalidData, format!("the daemon did not send {what}")))
}

fn unexpected_json(e: &serde_json::Error) -> DumpError {
    DumpError::Io(io::Error::new(io::ErrorKind::InvalidData, format!("the daemon's dump report: {e}")))
}
