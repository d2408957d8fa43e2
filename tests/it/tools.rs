//! Real tools on the mount: cp -a, diff, tar, git, rsync, find, du, sqlite3,
//! and `holt-fs bench` itself.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::{run, Mount};

/// A real directory tree to copy: the system's documentation, or the Rust
/// toolchain's `lib/rustlib` (always installed with rustc) where that is missing.
fn real_tree() -> PathBuf {
    let doc = PathBuf::from("/usr/share/doc");
    if fs::read_dir(&doc).map(|d| d.count() > 10).unwrap_or(false) {
        return doc;
    }
    let sysroot = run(Path::new("/"), "rustc", &["--print", "sysroot"]);
    PathBuf::from(sysroot.trim()).join("lib/rustlib")
}

/// Kind, mode, link target and mtime of everything under `dir`, sorted.
fn listing(dir: &Path) -> String {
    let out = run(dir, "find", &[".", "-printf", "%P %y %m %l %T@\\n"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

#[test]
fn cp_a_then_diff_r_of_a_real_tree() {
    let m = Mount::persistent(&[]);
    let src = real_tree();
    let dst = m.path("copy");
    run(&m.mountpoint, "cp", &["-a", src.to_str().unwrap(), dst.to_str().unwrap()]);
    run(&m.mountpoint, "diff", &["-r", "--no-dereference", src.to_str().unwrap(), dst.to_str().unwrap()]);
    assert_eq!(listing(&src), listing(&dst), "cp -a preserves kinds, modes, link targets and mtimes");
    let count = |d: &Path| run(d, "find", &[".", "-type", "f"]).lines().count();
    assert_eq!(count(&src), count(&dst));
    let du = run(&m.mountpoint, "du", &["-s", "--apparent-size", "-B1", "copy"]);
    let bytes: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(bytes > 0, "du sees the copied bytes: {du}");
}

#[test]
fn tar_round_trip() {
    let m = Mount::memory();
    let src = real_tree();
    let work = tempfile::tempdir_in("/tmp").unwrap();
    let (archive, out) = (work.path().join("a.tar"), work.path().join("out"));
    fs::create_dir(m.path("t")).unwrap();
    fs::create_dir(&out).unwrap();
    run(&m.mountpoint, "sh", &["-c", &format!("tar -C {} -cf - . | tar -C t -xpf -", src.display())]);
    run(&m.mountpoint, "tar", &["-C", "t", "-cf", archive.to_str().unwrap(), "."]);
    run(&out, "tar", &["-xpf", archive.to_str().unwrap()]);
    run(&out, "diff", &["-r", "--no-dereference", src.to_str().unwrap(), out.to_str().unwrap()]);
}

#[test]
fn git_init_add_commit_status_fsck() {
    let m = Mount::persistent(&[]);
    let repo = m.path("repo");
    fs::create_dir_all(repo.join("src/deep")).unwrap();
    for i in 0..50 {
        fs::write(repo.join(format!("src/file{i}.txt")), format!("line {i}\n").repeat(i + 1)).unwrap();
    }
    fs::write(repo.join("src/deep/bin"), (0..=255u8).cycle().take(100_000).collect::<Vec<u8>>()).unwrap();
    let git = |args: &[&str]| run(&repo, "git", args);
    git(&["init", "-q"]);
    git(&["config", "user.email", "test@example.com"]);
    git(&["config", "user.name", "holt-fs test"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "first"]);
    fs::write(repo.join("src/file3.txt"), "changed\n").unwrap();
    fs::rename(repo.join("src/file4.txt"), repo.join("src/renamed.txt")).unwrap();
    git(&["commit", "-q", "-a", "-m", "second"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "third"]);
    assert_eq!(git(&["status", "--porcelain"]), "");
    git(&["fsck", "--full", "--strict"]);
    git(&["gc", "-q"]);
    git(&["fsck", "--full"]);
    assert_eq!(git(&["rev-list", "--count", "HEAD"]).trim(), "3");
}

#[test]
fn rsync_a_reports_nothing_left_to_copy() {
    let m = Mount::memory();
    let src = format!("{}/", real_tree().display());
    run(&m.mountpoint, "rsync", &["-a", "-H", &src, "r/"]);
    let again = run(&m.mountpoint, "rsync", &["-a", "-H", "-n", "-i", "--checksum", &src, "r/"]);
    assert_eq!(again, "", "a second rsync finds no differences");
}

#[test]
fn sqlite3_database_survives_writes_and_checks_clean() {
    let m = Mount::persistent(&[]);
    let sql = "PRAGMA journal_mode=WAL;
        CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
        INSERT INTO t(v) SELECT printf('value-%d', x) FROM c;
        CREATE INDEX tv ON t(v);
        DELETE FROM t WHERE id % 3 = 0;
        PRAGMA wal_checkpoint(TRUNCATE);";
    run(&m.mountpoint, "sqlite3", &["db.sqlite", sql]);
    let out = run(&m.mountpoint, "sqlite3", &["db.sqlite", "PRAGMA integrity_check; SELECT count(*) FROM t;"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ok", "13334"]);
    run(&m.mountpoint, "sqlite3", &["db.sqlite", "PRAGMA journal_mode=DELETE; VACUUM;"]);
    let out = run(&m.mountpoint, "sqlite3", &["db.sqlite", "PRAGMA integrity_check;"]);
    assert_eq!(out.trim(), "ok");
}

#[test]
fn find_and_du_walk_the_tree() {
    let m = Mount::memory();
    for d in 0..20 {
        let dir = m.path(&format!("d{d}/sub"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            fs::write(dir.join(format!("f{f}")), vec![b'x'; 1000 * f]).unwrap();
        }
    }
    let found = run(&m.mountpoint, "find", &[".", "-type", "f", "-size", "+4k"]);
    assert_eq!(found.lines().count(), 20 * 5);
    let du = run(&m.mountpoint, "du", &["-s", "--apparent-size", "-B1", "."]);
    let bytes: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(bytes >= 20 * 45_000, "du counts every file: {du}");
}

#[test]
fn holt_fs_bench_runs_every_phase_on_a_mount_and_removes_its_directory() {
    let m = Mount::persistent(&[]);
    let (mp, pid) = (m.mountpoint.to_str().unwrap().to_owned(), m.pid().to_string());
    let args = ["bench", &mp, "--files", "20", "--size", "2", "--json", "--daemon-pid", &pid];
    let out = run(&m.mountpoint, env!("CARGO_BIN_EXE_holt-fs"), &args);
    assert_eq!(out.matches("\"phase\":").count(), 32, "16 phases at 1 and 2 threads: {out}");
    assert_eq!(out.matches("\"daemon_cpu_us_per_op\":").count(), 32, "{out}");
    assert_eq!(out.matches("\"requests_per_op\":").count(), 32, "a holt-fs daemon's requests per op: {out}");
    assert!(out.contains("{\"phase\":\"open\",\"threads\":1,\"ops\":20,"), "{out}");
    assert_eq!(fs::read_dir(&m.mountpoint).unwrap().count(), 0, "the bench removes its directory");
}
