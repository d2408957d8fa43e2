//! The daemon's side of the control socket: `STORE/ctl.sock`, made
//! safely, served by one thread, removed at a clean stop.
//!
//! Making it: the socket is bound inside a fresh private directory
//! (`ctl.sock.tmp/`, mode 0700), made 0600 there, then renamed to
//! `ctl.sock`, which atomically replaces whatever a killed daemon left
//! (a stale socket) and never follows a symlink. So no one else can
//! connect in the moment between bind and chmod, and the socket is never
//! missing for a client while it is replaced. Only the holder of the
//! store's exclusive lock does this, so nothing races it; a staging
//! directory a crash left is removed first. Every path is reached
//! through `/proc/self/fd/<store fd>/`, which keeps socket addresses
//! short (`sun_path` holds 108 bytes) whatever the store's path.
//!
//! Serving: one thread accepts, at a lowered CPU priority that the
//! connection threads it starts inherit, so a long `info` walk yields to
//! the FUSE threads. At most `CONNECTIONS_MAX` connections are served at
//! once; more are answered `busy`. A connection carries one request, read
//! within `REQUEST_WAIT`. Stopping sets a flag the handlers poll, wakes
//! the accept with `shutdown(2)`, joins every thread and removes the
//! socket if it is still the one this server made.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};

use super::proto::{self, code, Reply, Request, LINE_BYTES_MAX, PROTOCOL_VERSION};
use super::SOCKET_NAME;
use crate::listen::{self, Acceptor, Policy};

/// The private directory a socket is bound in before it is moved into place.
const STAGING_NAME: &str = "ctl.sock.tmp";
/// The socket's name inside the staging directory.
const STAGED_NAME: &str = "s";
/// Connections served at once.
const CONNECTIONS_MAX: usize = 4;
/// How long a client may take to send its request line.
const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// How long a client may read nothing of a reply (or of a dump stream,
/// whose reader may be a slow pipeline) before the daemon gives up.
const REPLY_WAIT: Duration = Duration::from_secs(120);
/// How often a write blocked on a slow client looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(250);

/// The daemon's end of one connection: reply lines, and for a request
/// that streams bytes (`dump`), those bytes between two of them. A write
/// that finds the client not reading waits for it, up to `REPLY_WAIT`
/// without progress, and gives up at once when the daemon stops.
pub struct Responder<'s> {
    stream: &'s UnixStream,
    stop: &'s AtomicBool,
}

impl<'s> Responder<'s> {
    /// The flag `stopping` reads, for a closure that outlives a borrow of
    /// the responder (one that writes through it meanwhile).
    pub fn stop_flag(&self) -> &'s AtomicBool {
        self.stop
    }

    /// Write one reply line.
    pub fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.write_all(&proto::encode(reply))
    }

    /// True once the daemon unmounts: a long answer should then end early
    /// with `code::STOPPING`.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl Write for Responder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let began = std::time::Instant::now();
        loop {
            match (&*self.stream).write(buf) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.stopping() {
                        return Err(io::Error::other("the daemon is unmounting"));
                    }
                    if began.elapsed() >= REPLY_WAIT {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Answers the requests of one connection.
pub trait Handler: Send + Sync {
    /// Answer `request` through `conn`, the last reply final; watch
    /// `conn.stopping()` in a long answer. An error from `conn` (the
    /// client left) is returned as it is.
    fn handle(&self, request: &Request, conn: &mut Responder) -> io::Result<()>;
}

/// A listening control socket; dropping it stops serving and removes it.
pub struct Server {
    dir: Arc<OwnedFd>,
    acceptor: Acceptor,
    /// `(st_dev, st_ino)` of the socket this server made.
    socket_id: (u64, u64),
}

fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c_name(name: &str) -> CString {
    CString::new(name).expect("socket names hold no NUL")
}

/// `/proc/self/fd/<dir>/<rel>`: `rel` inside the directory `dir`.
fn via_fd(dir: &OwnedFd, rel: &str) -> String {
    format!("/proc/self/fd/{}/{rel}", dir.as_raw_fd())
}

/// The store directory, for `*at` calls and `/proc/self/fd` paths only.
pub(super) fn open_dir(store: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(store.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the store path"))?;
    // SAFETY: open with a valid C path; a returned descriptor is new and ours.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `(st_dev, st_ino)` of `name` in `dir`, not following a symlink.
fn identity(dir: &OwnedFd, name: &str) -> io::Result<(u64, u64)> {
    // SAFETY: fstatat fills the zeroed struct; the descriptor and C string live across the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let name = c_name(name);
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok((st.st_dev, st.st_ino))
}

fn unlink_at(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<()> {
    let name = c_name(name);
    // SAFETY: unlinkat with a live directory descriptor and a C string.
    match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Remove the staging directory and the socket in it, if a crash left them.
fn clear_staging(dir: &OwnedFd) -> io::Result<()> {
    unlink_at(dir, &format!("{STAGING_NAME}/{STAGED_NAME}"), 0)?;
    unlink_at(dir, STAGING_NAME, libc::AT_REMOVEDIR)
}

/// Bind a socket in the private staging directory, make it 0600 and move
/// it to `SOCKET_NAME`, replacing a stale one.
fn bind_in_place(dir: &OwnedFd) -> io::Result<UnixListener> {
    clear_staging(dir)?;
    let staging = c_name(STAGING_NAME);
    // SAFETY: mkdirat with a live directory descriptor and a C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), staging.as_ptr(), 0o700) })?;
    let staged = format!("{STAGING_NAME}/{STAGED_NAME}");
    let placed = (|| -> io::Result<UnixListener> {
        let listener = UnixListener::bind(via_fd(dir, &staged))?;
        std::fs::set_permissions(via_fd(dir, &staged), std::fs::Permissions::from_mode(0o600))?;
        let (from, to) = (c_name(&staged), c_name(SOCKET_NAME));
        // SAFETY: renameat within one live directory descriptor, C strings.
        cvt(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })?;
        Ok(listener)
    })();
    let cleared = clear_staging(dir);
    let listener = placed?;
    cleared?;
    Ok(listener)
}

impl Server {
    /// Listen on `store/ctl.sock` and answer with `handler` until dropped.
    pub fn start(store: &Path, handler: Arc<dyn Handler>) -> io::Result<Server> {
        let dir = Arc::new(open_dir(store)?);
        let listener = Arc::new(bind_in_place(&dir)?);
        let socket_id = identity(&dir, SOCKET_NAME)?;
        let acceptor = Acceptor::spawn("holt-ctl", listener, move |l, stop| accept_loop(l, handler.as_ref(), stop))
            .inspect_err(|_| {
                let _ = unlink_at(&dir, SOCKET_NAME, 0);
            })?;
        Ok(Server { dir, acceptor, socket_id })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Nothing serves from the socket once it is removed.
        self.acceptor.stop();
        match identity(&self.dir, SOCKET_NAME) {
            Ok(id) if id == self.socket_id => {
                if let Err(e) = unlink_at(&self.dir, SOCKET_NAME, 0) {
                    warn!("cannot remove the control socket {SOCKET_NAME}: {e}");
                }
            }
            _ => debug!("the control socket is no longer the one this daemon made; left alone"),
        }
    }
}

fn accept_loop(listener: &UnixListener, handler: &dyn Handler, stop: &AtomicBool) {
    let busy = |stream: UnixStream| {
        let _ = send_line(&stream, &Reply::error(code::BUSY, "the daemon serves its limit of connections"));
    };
    let serve = |stream: &UnixStream| serve_connection(stream, handler, stop);
    let policy = Policy { thread_name: "holt-ctl-conn", connections_max: CONNECTIONS_MAX, busy: &busy, serve: &serve };
    listen::accept_loop(listener.incoming(), stop, &policy);
}

/// A reply on a connection no handler serves (`busy`).
fn send_line(mut stream: &UnixStream, reply: &Reply) -> io::Result<()> {
    stream.write_all(&proto::encode(reply))
}

/// Read one request line and answer it; a client that closes without
/// sending one (a probe) gets nothing.
fn serve_connection(stream: &UnixStream, handler: &dyn Handler, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(REQUEST_WAIT));
    let _ = stream.set_write_timeout(Some(STOP_POLL));
    let mut line = Vec::new();
    let limit = LINE_BYTES_MAX as u64 + 1;
    if let Err(e) = BufReader::new(stream).take(limit).read_until(b'\n', &mut line) {
        debug!("control socket: reading a request: {e}");
        return;
    }
    if line.is_empty() {
        return;
    }
    let mut conn = Responder { stream, stop };
    let sent = match proto::decode::<Request>(&line) {
        Err(e) => conn.send(&Reply::error(code::BAD_REQUEST, e.to_string())),
        Ok(req) if req.v > PROTOCOL_VERSION => conn.send(&Reply::error(
            code::UNSUPPORTED_VERSION,
            format!("request of protocol version {}; this daemon speaks version {PROTOCOL_VERSION}", req.v),
        )),
        Ok(req) => handler.handle(&req, &mut conn),
    };
    if let Err(e) = sent {
        debug!("control socket: the client left before its reply was sent: {e}");
    }
}
