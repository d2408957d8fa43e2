use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;

use super::*;

fn server(limits: Limits) -> (HttpServer, SocketAddr, Arc<AtomicUsize>) {
    let renders = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&renders);
    let render = Arc::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        "up 1\n".to_string()
    });
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = HttpServer::start(listener, render, limits).unwrap();
    let addr = server.local_addr();
    (server, addr, renders)
}

/// Send `request` and read the whole response (the server closes).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

fn quick() -> Limits {
    Limits { request_wait: Duration::from_millis(300), ..Limits::DEFAULT }
}

#[test]
fn get_metrics_answers_the_rendered_body_with_its_length() {
    let (_server, addr, renders) = server(Limits::DEFAULT);
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    assert_eq!(status(&r), "HTTP/1.1 200 OK");
    assert!(r.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{r}");
    assert!(r.contains("\r\nContent-Length: 5\r\n") && r.contains("\r\nConnection: close\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nup 1\n"), "{r}");
    let q = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\n\n");
    assert!(q.starts_with("HTTP/1.1 200 OK") && q.ends_with("up 1\n"), "a query and bare newlines are fine: {q}");
    assert_eq!(renders.load(Ordering::Relaxed), 2);
}

#[test]
fn head_answers_the_headers_alone() {
    let (_server, addr, _) = server(Limits::DEFAULT);
    let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK") && r.contains("Content-Length: 5\r\n") && r.ends_with("\r\n\r\n"), "{r}");
}

#[test]
fn malformed_requests_get_400_and_no_render() {
    let (_server, addr, renders) = server(Limits::DEFAULT);
    for bad in [&b"garbage\r\n\r\n"[..], b"GET /metrics\r\n\r\n", b"GET metrics HTTP/1.1\r\n\r\n", b"GET /metrics SPDY/3\r\n\r\n", b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"] {
        assert_eq!(status(&exchange(addr, bad)), "HTTP/1.1 400 Bad Request", "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(renders.load(Ordering::Relaxed), 0);
}

#[test]
fn other_paths_and_methods_are_refused() {
    let (_server, addr, renders) = server(Limits::DEFAULT);
    assert_eq!(status(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n")), "HTTP/1.1 404 Not Found");
    let r = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(status(&r), "HTTP/1.1 405 Method Not Allowed");
    assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    assert_eq!(renders.load(Ordering::Relaxed), 0);
}

#[test]
fn an_oversized_head_gets_431() {
    let (_server, addr, _) = server(Limits::DEFAULT);
    let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'a', Limits::DEFAULT.head_bytes_max + 10));
    assert_eq!(status(&exchange(addr, &request)), "HTTP/1.1 431 Request Header Fields Too Large");
}

#[test]
fn a_stalled_client_times_out_and_delays_no_one_else() {
    let (_server, addr, _) = server(quick());
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"GET /metr").unwrap();
    let started = Instant::now();
    assert_eq!(status(&exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")), "HTTP/1.1 200 OK");
    assert!(started.elapsed() < quick().request_wait, "served while another client stalls");
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    stalled.read_to_string(&mut out).unwrap();
    assert_eq!(status(&out), "HTTP/1.1 408 Request Timeout");
    assert!(started.elapsed() >= quick().request_wait - Duration::from_millis(50));
}

#[test]
fn a_trickling_client_is_cut_at_the_deadline_not_per_read() {
    let (_server, addr, _) = server(quick());
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in b"GET /metrics HTTP/1.1\r\nX: ".iter().chain(&[b'y'; 64]) {
        // A byte every 30 ms: every read succeeds long before a per-read timeout.
        let _ = s.write_all(&[*b]);
        sleep(Duration::from_millis(20));
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    let cut_after = started.elapsed();
    assert!(cut_after < Duration::from_millis(1500), "cut after {cut_after:?}");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 Request Timeout"), "{answer:?}");
}

#[test]
fn connections_over_the_limit_get_503_at_once() {
    let limits = Limits { connections_max: 1, ..quick() };
    let (_server, addr, _) = server(limits);
    let _holding = TcpStream::connect(addr).unwrap();
    sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(status(&exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")), "HTTP/1.1 503 Service Unavailable");
    assert!(started.elapsed() < limits.request_wait);
}

#[test]
fn dropping_the_server_stops_it() {
    let (server, addr, _) = server(quick());
    let _idle = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(2), "the stop waits for connections at most their limits");
    assert!(TcpStream::connect(addr).is_err(), "nothing listens any more");
}
