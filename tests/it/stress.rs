//! Many threads changing the namespace at once, then a namespace fsck,
//! before and after a remount.

use std::fs;
use std::io::Write;

use crate::harness::{check_consistent, seed, Mount, Rng};

const THREADS: u64 = 6;
const OPS_PER_THREAD: u64 = 1500;

/// One thread's random operations: half in a shared directory, half in its own.
fn churn(m: &Mount, thread: u64, rng_seed: u64) {
    let mut rng = Rng(rng_seed ^ thread.wrapping_mul(0x9E37_79B9));
    for i in 0..OPS_PER_THREAD {
        let dir = if rng.below(2) == 0 { "shared".to_string() } else { format!("own{thread}") };
        let a = m.path(&format!("{dir}/n{}", rng.below(40)));
        let b = m.path(&format!("shared/n{}", rng.below(40)));
        // Failures are expected: names race between threads.
        let _ = match rng.below(7) {
            0 => fs::File::create(&a).and_then(|mut f| f.write_all(format!("{thread}:{i}").as_bytes())),
            1 => fs::create_dir(&a),
            2 => fs::remove_file(&a),
            3 => fs::remove_dir(&a),
            4 => fs::rename(&a, &b),
            5 => fs::hard_link(&a, &b),
            _ => std::os::unix::fs::symlink("target", &a),
        };
    }
}

#[test]
fn concurrent_namespace_changes_leave_a_consistent_tree() {
    let rng_seed = seed("concurrent_namespace_changes");
    let mut m = Mount::persistent(&["--threads", "4"]);
    fs::create_dir(m.path("shared")).unwrap();
    for t in 0..THREADS {
        fs::create_dir(m.path(&format!("own{t}"))).unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || churn(m, t, rng_seed));
        }
    });
    let before = check_consistent(&m.mountpoint);
    let listing = crate::harness::run(&m.mountpoint, "find", &[".", "-printf", "%P %y %n %i\\n"]);
    m.unmount();
    m.spawn(&[]);
    assert_eq!(check_consistent(&m.mountpoint), before);
    assert_eq!(crate::harness::run(&m.mountpoint, "find", &[".", "-printf", "%P %y %n %i\\n"]), listing);
}

#[test]
fn sync_mode_mount_serves_and_persists() {
    let mut m = Mount::persistent(&["--sync"]);
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"durable").unwrap();
    m.unmount();
    m.spawn(&["--sync"]);
    assert_eq!(fs::read(m.path("d/f")).unwrap(), b"durable");
}

#[test]
fn writeback_cache_mode_keeps_contents_exact() {
    let mut m = Mount::persistent(&["--writeback-cache"]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(m.path("big"), &data).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(m.path("big")).unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    crate::harness::run(&m.mountpoint, "sqlite3", &["db", "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);"]);
    m.unmount();
    m.spawn(&[]);
    let got = fs::read(m.path("big")).unwrap();
    assert_eq!((got.len(), &got[..data.len()], &got[data.len()..]), (data.len() + 4, &data[..], &b"tail"[..]));
    let out = crate::harness::run(&m.mountpoint, "sqlite3", &["db", "PRAGMA integrity_check; SELECT sum(x) FROM t;"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ok", "3"]);
}
