//! Peak memory of `holt-fs dump` on a large store (ignored by default:
//! it builds a store of `HOLT_DUMP_FILES` files, 200k unless set):
//!
//! ```text
//! HOLT_DUMP_FILES=1000000 cargo test --release --test it dump::memory -- --ignored --nocapture
//! ```
//!
//! The store is made by `holt-fs load` from a generated stream: files of
//! 0 to 63 bytes in directories of 1000, every hundredth with a second
//! name in the root. The dump of a store no daemon serves runs in the
//! `holt-fs dump` process itself, so its peak RSS (from wait4) is the
//! walker's; it is compared with the dump of a store of 2000 files. Then
//! the store is mounted and dumped through its daemon, whose peak RSS
//! (`VmHWM`) is read before and after.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use holt_mount::dump::format::{InodeRecord, Record, StreamWriter, Totals};
use holt_mount::schema::{FileKind, Timespec};

use crate::harness::Mount;

const FILES_PER_DIR: u64 = 1000;
const LINK_EVERY: u64 = 100;

fn inode(id: u64, kind: FileKind, name: Vec<u8>, nlink: u32, size: u64) -> Record {
    let t = Timespec { sec: 1_700_000_000, nsec: 7 };
    let perm = if kind == FileKind::Dir { 0o755 } else { 0o644 };
    Record::Inode(InodeRecord {
        id, kind, perm, uid: 0, gid: 0, rdev: 0, nlink, size, atime: t, mtime: t, ctime: t, name, target: Vec::new(),
    })
}

/// A dump stream of `files` files, written to `out`.
fn generate(files: u64, out: impl Write) {
    let dirs = files.div_ceil(FILES_PER_DIR);
    let mut w = StreamWriter::new(out).unwrap();
    let mut t = Totals::default();
    let record = |w: &mut StreamWriter<_>, r: Record| w.write(&r).unwrap();
    record(&mut w, Record::Header { flags: 0 });
    t.inodes += 1;
    record(&mut w, inode(1, FileKind::Dir, Vec::new(), 2 + dirs as u32, 0));
    let mut linked = Vec::new();
    for d in 0..dirs {
        t.inodes += 1;
        t.names += 1;
        record(&mut w, inode(t.inodes, FileKind::Dir, format!("d{d:05}").into_bytes(), 2, 0));
        for f in 0..FILES_PER_DIR.min(files - d * FILES_PER_DIR) {
            let n = d * FILES_PER_DIR + f;
            let (size, nlink) = (n % 64, if n.is_multiple_of(LINK_EVERY) { 2 } else { 1 });
            t.inodes += 1;
            t.names += 1;
            record(&mut w, inode(t.inodes, FileKind::File, format!("f{f:03}").into_bytes(), nlink, size));
            if size > 0 {
                record(&mut w, Record::Data { offset: 0, bytes: vec![b'z'; size as usize] });
                t.data_bytes += size;
            }
            if nlink == 2 {
                linked.push((t.inodes, n));
            }
        }
        record(&mut w, Record::End);
    }
    for (id, n) in linked {
        t.names += 1;
        record(&mut w, Record::Link { id, name: format!("link{n:07}").into_bytes() });
    }
    record(&mut w, Record::End);
    record(&mut w, Record::Trailer(t));
    w.flush().unwrap();
}

/// Run `holt-fs` with `args` to completion; its peak RSS in KiB.
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which also reports its peak RSS")]
fn peak_rss_kib(args: &[&str], stdin: Stdio) -> u64 {
    let child = Command::new(env!("CARGO_BIN_EXE_holt-fs")).args(args).stdin(stdin).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 on our own child with a zeroed rusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "holt-fs {args:?} failed");
    usage.ru_maxrss as u64
}

/// Make a store of `files` files in `dir` with `holt-fs load`.
fn make_store(dir: &Path, files: u64) {
    let mut load = Command::new(env!("CARGO_BIN_EXE_holt-fs"))
        .arg("load")
        .arg(dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    generate(files, std::io::BufWriter::new(load.stdin.take().unwrap()));
    assert!(load.wait().unwrap().success(), "loading the generated store");
}

#[test]
#[ignore = "builds a large store; run with --ignored (HOLT_DUMP_FILES sets its size)"]
fn dump_memory_stays_bounded_for_many_files() {
    let files: u64 = std::env::var("HOLT_DUMP_FILES").map_or(200_000, |v| v.parse().expect("a number"));
    let tmp = tempfile::Builder::new().prefix("holt-dump-mem-").tempdir_in("/var/tmp").unwrap();
    let (small, large) = (tmp.path().join("small"), tmp.path().join("large"));
    make_store(&small, 2_000);
    let began = Instant::now();
    make_store(&large, files);
    let load_secs = began.elapsed().as_secs_f64();
    let dump = |store: &Path| {
        let began = Instant::now();
        let kib = peak_rss_kib(&["dump", store.to_str().unwrap(), "-o", "/dev/null"], Stdio::null());
        (kib, began.elapsed().as_secs_f64())
    };
    let ((small_kib, _), (large_kib, dump_secs)) = (dump(&small), dump(&large));
    println!(
        "dump memory: {files} files: peak RSS {large_kib} KiB (2000 files: {small_kib} KiB); \
         load {load_secs:.1} s, dump {dump_secs:.1} s"
    );
    assert!(
        large_kib < small_kib + 64 * 1024,
        "a dump of {files} files peaks at {large_kib} KiB, 2000 files at {small_kib} KiB: memory grows with the store"
    );
    let (before_kib, after_kib) = live_dump_peak_kib(&large);
    println!("dump memory: {files} files through the daemon: its peak RSS {before_kib} KiB mounted, {after_kib} KiB after the dump");
    assert!(after_kib < before_kib + 64 * 1024, "the daemon's dump of {files} files grew its peak by more than 64 MiB");
}

/// The daemon's peak RSS once mounted (and its root listed) and after a
/// dump through its mountpoint.
fn live_dump_peak_kib(store: &Path) -> (u64, u64) {
    let mut m = Mount::unstarted(false);
    m.store = Some(store.to_path_buf());
    m.spawn(&[]);
    let peak = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/pid/status").to_string();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    assert!(std::fs::read_dir(&m.mountpoint).unwrap().count() > 0);
    let before = peak(m.pid());
    let mp = m.mountpoint.to_str().unwrap().to_string();
    peak_rss_kib(&["dump", &mp, "-o", "/dev/null"], Stdio::null());
    (before, peak(m.pid()))
}
