//! A minimal HTTP/1.1 responder for the metrics endpoint: `GET /metrics`
//! (and `HEAD`) answers the body its owner renders; anything else gets
//! the fitting error status. One request per connection, answered with
//! `Connection: close`, which every HTTP/1.1 client (Prometheus
//! included) accepts.
//!
//! Robustness: a client has `request_wait` in all to send its request
//! head (a deadline, not a per-read timeout, so trickling bytes does not
//! keep a connection), at most `head_bytes_max` bytes of it; a reply it
//! leaves unread is given up after `reply_wait`. At most
//! `connections_max` are served at once (`listen::accept_loop`), more get
//! `503` straight away, so a slow client delays nobody else. The body is
//! rendered only for a well-formed `GET`/`HEAD /metrics`. Dropping the
//! server stops the accept thread and waits for the connection threads,
//! each bounded by those limits.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

use crate::listen::{self, Acceptor, Policy};

/// Renders the body of `GET /metrics`.
pub type Render = dyn Fn() -> String + Send + Sync;

/// The path served.
pub const METRICS_PATH: &str = "/metrics";

/// How long a served connection reads what its client still sends after
/// the reply, and how long a turned-away one gets for both (see `drain`).
const DRAIN_SERVED: Duration = Duration::from_millis(100);
const DRAIN_BUSY: Duration = Duration::from_millis(50);

/// The bounds put on clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub request_wait: Duration,
    pub reply_wait: Duration,
    pub head_bytes_max: usize,
    pub connections_max: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        request_wait: Duration::from_secs(2),
        reply_wait: Duration::from_secs(5),
        head_bytes_max: 8192,
        connections_max: 4,
    };
}

/// A listening metrics endpoint; dropping it stops serving.
pub struct HttpServer {
    addr: SocketAddr,
    /// Stopped when dropped.
    _acceptor: Acceptor,
}

/// Bind `addr` (before the mount, so a bad address fails the mount
/// command rather than leave a mount without its endpoint).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

impl HttpServer {
    /// Serve `render`'s text on `listener` until dropped.
    pub fn start(listener: TcpListener, render: Arc<Render>, limits: Limits) -> io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let acceptor = Acceptor::spawn("holt-metrics", Arc::new(listener), move |l: &TcpListener, stop| {
            let busy = |stream: TcpStream| {
                // On the accept thread: short bounds, so a flood delays accepting little.
                let _ = stream.set_write_timeout(Some(DRAIN_BUSY));
                let _ = write_response(&stream, &Response::status(503, "Service Unavailable", "busy; try again\n"), false);
                let _ = stream.shutdown(Shutdown::Write);
                drain(&stream, DRAIN_BUSY);
            };
            let serve = |stream: &TcpStream| serve_connection(stream, render.as_ref(), &limits);
            let policy =
                Policy { thread_name: "holt-metrics-conn", connections_max: limits.connections_max, busy: &busy, serve: &serve };
            listen::accept_loop(l.incoming(), stop, &policy);
        })?;
        Ok(HttpServer { addr, _acceptor: acceptor })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client closed before sending a whole head: nothing to answer.
    Closed,
    TimedOut,
    TooLarge,
}

/// The request head (request line and headers), read within the deadline.
fn read_head(mut stream: &TcpStream, limits: &Limits) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + limits.request_wait;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(HeadError::TimedOut);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(HeadError::TimedOut)
            }
            Err(_) => return Err(HeadError::Closed),
        };
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > limits.head_bytes_max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head ends: after the first empty line (`\r\n\r\n`, or bare `\n\n`).
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter().chain(lf).min()
}

struct Response {
    code: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn status(code: u16, reason: &'static str, body: &str) -> Response {
        Response { code, reason, content_type: "text/plain; charset=utf-8", body: body.into(), allow: false }
    }
}

/// The answer to a request `head`; `render` runs only for the metrics path.
fn respond(head: &[u8], render: &Render) -> (Response, bool) {
    let Some(line) = std::str::from_utf8(head).ok().and_then(|h| h.lines().next()) else {
        return (Response::status(400, "Bad Request", "the request line is not text\n"), false);
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return (Response::status(400, "Bad Request", "expected: METHOD TARGET HTTP/1.x\n"), false);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return (Response::status(400, "Bad Request", "expected: METHOD /path HTTP/1.x\n"), false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let mut r = Response::status(405, "Method Not Allowed", "only GET and HEAD\n");
        r.allow = true;
        return (r, false);
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != METRICS_PATH {
        return (Response::status(404, "Not Found", "the metrics are at /metrics\n"), head_only);
    }
    let ok = Response { code: 200, reason: "OK", content_type: super::prometheus::CONTENT_TYPE, body: render(), allow: false };
    (ok, head_only)
}

fn write_response(mut stream: &TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let allow = if r.allow { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        r.code,
        r.reason,
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(r.body.as_bytes())?;
    }
    stream.flush()
}

fn serve_connection(stream: &TcpStream, render: &Render, limits: &Limits) {
    let _ = stream.set_write_timeout(Some(limits.reply_wait));
    let (response, head_only) = match read_head(stream, limits) {
        Ok(head) => respond(&head, render),
        Err(HeadError::Closed) => return,
        Err(HeadError::TimedOut) => (Response::status(408, "Request Timeout", "no request in time\n"), false),
        Err(HeadError::TooLarge) => (Response::status(431, "Request Header Fields Too Large", "request head too large\n"), false),
    };
    if let Err(e) = write_response(stream, &response, head_only) {
        debug!("metrics endpoint: the client left before its reply was sent: {e}");
    }
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream, DRAIN_SERVED);
}

/// Read what the client still sends, for at most `budget`, before
/// closing: closing with unread bytes makes the kernel reset the
/// connection, and the client may then lose the reply it has not read.
fn drain(mut stream: &TcpStream, budget: Duration) {
    let deadline = Instant::now() + budget;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
