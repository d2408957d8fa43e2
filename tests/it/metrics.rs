//! The daemon's counters through a real mount: the Prometheus endpoint
//! scraped while a workload runs (every scrape read by a strict parser,
//! counters only ever growing), and `holt-fs stats --once --json`.

mod parse;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Mount;
use parse::Scrape;

/// Files the workload creates (and stats, then unlinks half of).
const FILES: usize = 200;

/// The endpoint's address, as the daemon logged it (it was asked for port 0).
fn metrics_addr(m: &Mount) -> String {
    let log = m.log_text();
    let line = log.lines().find(|l| l.contains("metrics at http://")).unwrap_or_else(|| panic!("no metrics line:\n{log}"));
    let url = line.split("http://").nth(1).unwrap();
    url.split('/').next().unwrap().to_string()
}

/// `GET /metrics`: the body, after checking status and headers.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
    body.to_string()
}

fn parsed(addr: &str) -> Scrape {
    let body = scrape(addr);
    parse::parse(&body).unwrap_or_else(|e| panic!("not Prometheus text: {e}"))
}

fn requests(s: &Scrape, op: &str) -> f64 {
    s.get("holt_fs_requests_total", &[("op", op)]).unwrap_or_else(|| panic!("op {op} is listed from zero"))
}

/// Create, stat, list and unlink in `dir`.
fn workload(dir: &Path) {
    fs::create_dir(dir).unwrap();
    for i in 0..FILES {
        fs::write(dir.join(format!("f{i}")), b"x").unwrap();
    }
    for i in 0..FILES {
        fs::metadata(dir.join(format!("f{i}"))).unwrap();
        assert!(fs::metadata(dir.join(format!("absent{i}"))).is_err());
    }
    assert_eq!(fs::read_dir(dir).unwrap().count(), FILES);
    for i in (0..FILES).step_by(2) {
        fs::remove_file(dir.join(format!("f{i}"))).unwrap();
    }
}

/// Every counter of `later` is at least what it was in `earlier`.
fn assert_grew(earlier: &Scrape, later: &Scrape) {
    for ((name, labels), v) in &earlier.samples {
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        let kind = later.types.get(family).or_else(|| later.types.get(name.as_str())).map(String::as_str);
        if matches!(kind, Some("counter" | "histogram")) {
            let now = later.samples.get(&(name.clone(), labels.clone())).unwrap_or_else(|| panic!("{name}{labels:?} vanished"));
            assert!(now >= v, "{name}{labels:?} went from {v} to {now}");
        }
    }
}

#[test]
fn metrics_endpoint_counts_a_workload_and_every_scrape_parses() {
    let m = Mount::persistent(&["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&m);
    let before = parsed(&addr);
    assert_eq!(before.types["holt_fs_request_duration_seconds"], "histogram");
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (addr, done) = (addr.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut last = parsed(&addr);
            let mut scrapes = 1;
            while !done.load(Ordering::Relaxed) {
                let next = parsed(&addr);
                assert_grew(&last, &next);
                (last, scrapes) = (next, scrapes + 1);
            }
            scrapes
        })
    };
    workload(&m.path("w"));
    done.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    let after = parsed(&addr);
    assert_grew(&before, &after);
    let moved = |op: &str| requests(&after, op) - requests(&before, op);
    assert!(moved("create") >= FILES as f64, "create moved {}", moved("create"));
    assert!(moved("unlink") >= (FILES / 2) as f64 && moved("mkdir") >= 1.0);
    assert!(moved("lookup") >= FILES as f64, "at least the negative lookups of the absent names");
    let enoent = after.get("holt_fs_request_errors_total", &[("op", "lookup"), ("errno", "ENOENT")]).unwrap_or(0.0);
    assert!(enoent >= FILES as f64, "negative lookups count as ENOENT: {enoent}");
    let created = after.get("holt_fs_request_duration_seconds_count", &[("op", "create")]).unwrap();
    assert_eq!(created, requests(&after, "create"), "the histogram counts every request");
    assert!(after.get("holt_fs_engine_wal_written_bytes_total", &[]).unwrap() > 0.0);
    assert!(after.get("holt_fs_engine_keys", &[]).unwrap() >= (FILES / 2) as f64);
    println!("{scrapes} scrapes during the workload");
}

#[test]
fn a_memory_mount_counts_data_through_the_daemon() {
    let m = Mount::memory_with(&["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&m);
    let data = vec![7u8; 1 << 20];
    fs::write(m.path("data"), &data).unwrap();
    let s = parsed(&addr);
    assert_eq!(s.get("holt_fs_passthrough", &[]), Some(0.0), "--memory serves data through the daemon");
    assert!(s.get("holt_fs_write_bytes_total", &[]).unwrap() >= data.len() as f64);
    assert_eq!(s.get("holt_fs_engine_wal_bytes", &[]), Some(0.0), "a memory tree keeps no WAL");
}

#[test]
fn a_busy_metrics_address_fails_the_mount_before_it_mounts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let m = Mount::unstarted(true);
    let status = m.try_spawn(&["--metrics", &port]).unwrap().wait().unwrap();
    assert!(!status.success());
    assert!(m.log_text().contains("cannot listen for --metrics on 127.0.0.1:"), "{}", m.log_text());
    assert!(!crate::harness::mounted(&m.mountpoint), "nothing was mounted");
}

/// `holt-fs stats ARGS`: stdout, after checking it succeeded.
fn stats(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("stats").args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "holt-fs stats {args:?} failed: {stderr}");
    stdout.into_owned()
}

fn stats_json(path: &Path) -> Value {
    let out = stats(&[path.to_str().unwrap(), "--once", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("--json is JSON ({e}):\n{out}"))
}

fn count(report: &Value, op: &str) -> u64 {
    let ops = report["requests"].as_array().expect("requests is an array");
    let entry = ops.iter().find(|r| r["op"] == op).unwrap_or_else(|| panic!("op {op} listed"));
    entry["count"].as_u64().unwrap()
}

#[test]
fn stats_once_json_parses_and_its_counts_move() {
    let m = Mount::persistent(&[]);
    let store = m.store.clone().unwrap();
    let first = stats_json(&m.mountpoint);
    assert_eq!(first["pid"], m.pid());
    assert!(first["requests"].as_array().unwrap().len() > 30, "every opcode counted is listed");
    let bounds = first["latency_bounds_ns"].as_array().unwrap().len();
    assert_eq!(first["requests"][0]["buckets"].as_array().unwrap().len(), bounds + 1);
    workload(&m.path("w"));
    let second = stats_json(&store);
    assert!(count(&second, "create") >= count(&first, "create") + FILES as u64);
    assert!(count(&second, "lookup") > count(&first, "lookup"));
    let engine = |r: &Value, k: &str| r["engine"][k].as_u64().unwrap();
    assert!(engine(&second, "keys") > engine(&first, "keys"));
    assert!(engine(&second, "wal_bytes_written") > engine(&first, "wal_bytes_written"));
    assert!(second["uptime_sec"].as_f64().unwrap() >= first["uptime_sec"].as_f64().unwrap());
    let started = Instant::now();
    let text = stats(&[m.mountpoint.to_str().unwrap(), "--once", "--interval", "0.2"]);
    assert!(started.elapsed() >= Duration::from_millis(200), "--once waits one interval for its rates");
    assert!(text.contains("requests ") && text.contains("cache hits") && text.contains("ops/s"), "{text}");
}

#[test]
fn stats_of_mounts_without_a_control_socket_fail_with_words() {
    let mem = Mount::memory();
    let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("stats").arg(&mem.mountpoint).arg("--once").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--memory mount"), "{stderr}");
}

/// A clean unmount saves the engine's miss filter beside its tree
/// (`meta/FILTER`, doc/FORMAT.md) once one was built; after the remount,
/// which takes it back, names are found, or not, exactly as before.
#[test]
fn a_clean_unmount_saves_the_miss_filter_and_the_remount_finds_every_name() {
    let mut m = Mount::persistent(&[]);
    let store = m.store.clone().unwrap();
    workload(&m.path("w"));
    // The filter is built in the background after the mount.
    let started = Instant::now();
    while stats_json(&store)["engine"]["miss_filter_capacity"].as_u64().unwrap() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no miss filter 30 s after the mount");
        std::thread::sleep(Duration::from_millis(50));
    }
    let names: Vec<String> = fs::read_dir(m.path("w")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.is_empty());
    m.unmount();
    let saved = store.join("meta").join("FILTER");
    assert!(fs::symlink_metadata(&saved).is_ok_and(|s| s.is_file() && s.len() > 72), "{} saved", saved.display());
    m.spawn(&[]);
    for name in &names {
        assert!(m.path("w").join(name).exists(), "{name} found after the remount");
        assert!(!m.path("w").join(format!("{name}.absent")).exists(), "{name}.absent is not");
    }
}
