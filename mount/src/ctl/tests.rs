//! The control socket without a filesystem: a server with a test handler
//! in a temporary directory, and the client against it.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::proto::{self, code, Reply, Request};
use super::{ask, connect, CtlError, Handler, Responder, Server, SOCKET_NAME};
use crate::info::SocketState;

/// Answers `echo` with its request, `stream` with two items and an end,
/// `wait` by polling `stopping` until it turns true.
struct Echo;

/// `wait` requests being answered (only one test sends them).
static WAITING: AtomicUsize = AtomicUsize::new(0);

impl Handler for Echo {
    fn handle(&self, request: &Request, conn: &mut Responder) -> io::Result<()> {
        match request.request.as_str() {
            "echo" => conn.send(&Reply::ok(json!({ "request": request.request }))),
            "stream" => {
                conn.send(&Reply::more(json!(1)))?;
                conn.send(&Reply::more(json!(2)))?;
                conn.send(&Reply::ok(json!("end")))
            }
            "wait" => {
                WAITING.fetch_add(1, Ordering::SeqCst);
                while !conn.stopping() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                conn.send(&Reply::error(code::STOPPING, "stopped"))
            }
            other => conn.send(&Reply::error(code::UNKNOWN_REQUEST, other.to_string())),
        }
    }
}

fn start(dir: &Path) -> Server {
    Server::start(dir, Arc::new(Echo)).expect("server starts")
}

fn raw_exchange(dir: &Path, line: &[u8]) -> Reply {
    let mut stream = connect(dir).expect("connects");
    stream.write_all(line).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    proto::decode(&out).expect("one reply line")
}

#[test]
fn socket_is_private_answers_and_is_removed_at_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let socket = tmp.path().join(SOCKET_NAME);
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "no staging directory is left");
    let body = ask(connect(tmp.path()).unwrap(), "echo", &mut |_| panic!("no items")).unwrap();
    assert_eq!(body, json!({ "request": "echo" }));
    let mut items = Vec::new();
    let end = ask(connect(tmp.path()).unwrap(), "stream", &mut |v| items.push(v)).unwrap();
    assert_eq!((items, end), (vec![json!(1), json!(2)], json!("end")));
    drop(server);
    assert!(!socket.exists(), "a clean stop removes the socket");
    assert!(matches!(connect(tmp.path()), Err(CtlError::NoDaemon(SocketState::Absent))));
}

#[test]
fn bad_unknown_and_newer_requests_get_error_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let _server = start(tmp.path());
    let code_of = |r: Reply| r.error.expect("an error reply").code;
    assert_eq!(code_of(raw_exchange(tmp.path(), b"not json\n")), code::BAD_REQUEST);
    assert_eq!(code_of(raw_exchange(tmp.path(), b"{\"v\":99,\"request\":\"echo\"}\n")), code::UNSUPPORTED_VERSION);
    let err = ask(connect(tmp.path()).unwrap(), "frobnicate", &mut |_| {}).unwrap_err();
    assert!(matches!(&err, CtlError::Refused(e) if e.code == code::UNKNOWN_REQUEST), "{err}");
    let silent = connect(tmp.path()).unwrap();
    drop(silent);
    let body = ask(connect(tmp.path()).unwrap(), "echo", &mut |_| {}).unwrap();
    assert_eq!(body["request"], "echo", "a client that sent nothing does not disturb the next");
}

#[test]
fn stale_socket_or_symlink_is_replaced_and_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join(SOCKET_NAME);
    drop(UnixListener::bind(&socket).unwrap());
    assert!(matches!(connect(tmp.path()), Err(CtlError::NoDaemon(SocketState::Stale))), "nothing listens");
    let server = start(tmp.path());
    assert_eq!(ask(connect(tmp.path()).unwrap(), "echo", &mut |_| {}).unwrap()["request"], "echo");
    drop(server);
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, &socket).unwrap();
    fs::create_dir(tmp.path().join("ctl.sock.tmp")).unwrap();
    let server = start(tmp.path());
    assert!(fs::symlink_metadata(&socket).unwrap().file_type().is_socket(), "the symlink itself was replaced");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(!tmp.path().join("ctl.sock.tmp").exists(), "a leftover staging directory is cleared");
    drop(server);
}

#[test]
fn long_store_paths_work_through_the_directory_descriptor() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("d".repeat(100)).join("e".repeat(100));
    fs::create_dir_all(&deep).unwrap();
    let _server = start(&deep);
    assert_eq!(ask(connect(&deep).unwrap(), "echo", &mut |_| {}).unwrap()["request"], "echo");
}

#[test]
fn stop_cuts_a_long_request_short_and_does_not_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let waiting = {
        let dir = tmp.path().to_path_buf();
        std::thread::spawn(move || ask(connect(&dir).unwrap(), "wait", &mut |_| {}))
    };
    while WAITING.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let began = Instant::now();
    drop(server);
    assert!(began.elapsed() < Duration::from_secs(3), "stopping took {:?}", began.elapsed());
    let err = waiting.join().unwrap().unwrap_err();
    assert!(matches!(&err, CtlError::Refused(e) if e.code == code::STOPPING), "{err}");
}

#[test]
fn connections_past_the_limit_are_told_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let _server = start(tmp.path());
    // Idle connections hold their threads until the request wait runs out.
    // The accept thread takes connections in order and counts each as it
    // takes it, so the fifth is over the limit whatever the timing.
    let held: Vec<UnixStream> = (0..4).map(|_| connect(tmp.path()).unwrap()).collect();
    let err = ask(connect(tmp.path()).unwrap(), "echo", &mut |_| {}).unwrap_err();
    assert!(matches!(&err, CtlError::Refused(e) if e.code == code::BUSY), "{err}");
    drop(held);
}
