//! `holt-fs info` against real mounts: asked through the mountpoint and
//! through the store, while the filesystem is busy, after a clean unmount
//! and after the daemon was killed.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::harness::Mount;

/// Bytes each file of the busy writer holds.
const BUSY_FILE_BYTES: u64 = 100;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn info(path: &Path, json: bool) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_holt-fs"));
    cmd.arg("info").arg(path);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("holt-fs runs");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `--json` report of `path`, which must succeed.
fn report(path: &Path) -> Value {
    let out = info(path, true);
    assert!(out.ok, "holt-fs info {} failed: {}", path.display(), out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("--json is JSON ({e}):\n{}", out.stdout))
}

/// `(inodes, dirs, files, symlinks, file_bytes)` of a report.
fn counts(r: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &r["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("counts.{k} is a number: {c}"));
    (n("inodes"), n("dirs"), n("files"), n("symlinks"), n("file_bytes"))
}

fn store_of(m: &Mount) -> &Path {
    m.store.as_deref().expect("a persistent mount")
}

#[test]
fn empty_store_reports_its_root_mounted_and_after_a_clean_unmount() {
    let mut m = Mount::persistent(&[]);
    let live = report(&m.mountpoint);
    assert_eq!(live["answered_by"], "daemon");
    assert_eq!(live["control_socket"], "answering");
    assert_eq!(live["last_shutdown"], "none", "a new store has no last mount");
    assert_eq!(live["format"], 2);
    assert_eq!(live["mounts"][0]["pid"], m.pid());
    assert_eq!(live["mounts"][0]["state"], "serving");
    assert_eq!(counts(&live), (1, 1, 0, 0, 0), "only the root directory");
    let uuid = live["uuid"].as_str().expect("a formatted store has a uuid").to_string();
    assert_eq!(uuid.len(), 36);
    m.unmount();
    assert!(!store_of(&m).join("ctl.sock").exists(), "a clean unmount removes the control socket");
    let cold = report(store_of(&m));
    assert_eq!(cold["answered_by"], "store");
    assert_eq!(cold["control_socket"], "absent");
    assert_eq!(cold["last_shutdown"], "clean");
    assert_eq!(cold["mounts"], Value::Array(vec![]));
    assert_eq!(cold["uuid"], uuid.as_str());
    assert_eq!(counts(&cold), (1, 1, 0, 0, 0));
    let text = info(store_of(&m), false);
    assert!(text.ok && text.stdout.contains("last shutdown  clean"), "{}{}", text.stdout, text.stderr);
    assert!(text.stdout.contains(&format!("uuid {uuid}")), "{}", text.stdout);
}

/// Make `dirs` directories, `files` files (file `i` holds `i` bytes) and
/// `links` symlinks under the mount; returns the files' bytes.
fn populate(m: &Mount, dirs: usize, files: usize, links: usize) -> u64 {
    for d in 0..dirs {
        fs::create_dir(m.path(&format!("d{d}"))).unwrap();
    }
    for f in 0..files {
        fs::write(m.path(&format!("d{}/f{f}", f % dirs)), vec![b'x'; f]).unwrap();
    }
    for l in 0..links {
        symlink(format!("d0/f{l}"), m.path(&format!("l{l}"))).unwrap();
    }
    (0..files as u64).sum()
}

#[test]
fn busy_store_reports_through_store_and_mountpoint_and_counts_match() {
    let m = Mount::persistent(&[]);
    let (dirs, files, links) = (5, 60, 3);
    let bytes = populate(&m, dirs, files, links);
    fs::create_dir(m.path("busy")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (m.path("busy"), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) || made == 0 {
                fs::write(dir.join(format!("w{made}")), [b'w'; BUSY_FILE_BYTES as usize]).unwrap();
                made += 1;
            }
            made
        })
    };
    for path in [store_of(&m), m.mountpoint.as_path(), store_of(&m)] {
        let r = report(path);
        assert_eq!(r["answered_by"], "daemon", "{}", path.display());
        let (inodes, d, f, l, b) = counts(&r);
        assert_eq!((d, l), (dirs as u64 + 2, links as u64), "directories (root and busy/ too) and symlinks");
        assert!(f >= files as u64 && b >= bytes, "at least what was made before: {f} files, {b} bytes");
        assert_eq!(inodes, d + f + l, "every inode is a directory, file or symlink");
    }
    stop.store(true, Ordering::Relaxed);
    let made = writer.join().unwrap();
    let r = report(&m.mountpoint);
    let want_files = files as u64 + made;
    let want = (dirs as u64 + 2 + want_files + links as u64, dirs as u64 + 2, want_files, links as u64);
    let (inodes, d, f, l, b) = counts(&r);
    assert_eq!((inodes, d, f, l), want);
    assert_eq!(b, bytes + made * BUSY_FILE_BYTES, "file bytes: the sizes written");
    assert!(r["disk"]["data_bytes"].as_u64().unwrap() > 0 && r["engine"]["frames"].as_u64().unwrap() >= 1, "{r}");
}

#[test]
fn killed_daemon_store_reads_unclean_and_its_dead_mount_is_refused() {
    let mut m = Mount::persistent(&[]);
    let bytes = populate(&m, 2, 10, 1);
    m.kill9();
    let dead = info(&m.mountpoint, false);
    assert!(!dead.ok, "a dead mount has nobody to answer: {}", dead.stdout);
    assert!(dead.stderr.contains("is gone") && dead.stderr.contains("holt-fs umount"), "{}", dead.stderr);
    let r = report(store_of(&m));
    assert_eq!(r["answered_by"], "store");
    assert_eq!(r["last_shutdown"], "killed");
    assert_eq!(r["control_socket"], "stale", "the killed daemon's socket is still there");
    assert_eq!(r["mounts"][0]["state"], "dead");
    assert_eq!(counts(&r), (1 + 2 + 10 + 1, 3, 10, 1, bytes), "every acknowledged change is counted");
    m.spawn(&[]);
    let r = report(&m.mountpoint);
    assert_eq!(r["answered_by"], "daemon", "the next daemon replaced the stale socket");
    assert_eq!(r["last_shutdown"], "killed", "the mount before this one was killed");
    m.unmount();
    assert_eq!(report(store_of(&m))["last_shutdown"], "clean");
}

#[test]
fn paths_that_are_no_store_or_mount_fail_with_words() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = info(&tmp.path().join("absent"), false);
    assert!(!missing.ok && missing.stderr.contains("No such file"), "{}", missing.stderr);
    let plain = info(tmp.path(), true);
    assert!(!plain.ok && plain.stderr.contains("neither a holt-fs store"), "{}", plain.stderr);
    assert!(plain.stdout.is_empty(), "no JSON on failure: {}", plain.stdout);
    let mem = Mount::memory();
    let out = info(&mem.mountpoint, false);
    assert!(!out.ok && out.stderr.contains("--memory mount"), "{}", out.stderr);
}
