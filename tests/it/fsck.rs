//! `holt-fs fsck` on real stores: refused while mounted; clean after heavy
//! concurrent work, after a kill -9, and after the remount that recovers
//! from it; exit statuses and `--repair` on a damaged store.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{seed, Mount, Rng};

const THREADS: u64 = 4;
const OPS_PER_THREAD: u64 = 1200;
/// Bound on one thread's work while it waits for the kill.
const KILL_OPS_MAX: u64 = 1_000_000;

/// What one fsck run printed and returned.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn fsck(store: &Path, extra: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_holt-fs"));
    let out = cmd.arg("fsck").arg("--store").arg(store).args(extra).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Run { code: out.status.code().unwrap_or(-1), stdout: text(&out.stdout), stderr: text(&out.stderr) }
}

fn assert_fsck_clean(store: &Path, when: &str) -> Run {
    let r = fsck(store, &[]);
    assert_eq!(r.code, 0, "{when}: fsck found problems:\n{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(": clean"), "{when}:\n{}", r.stdout);
    r
}

/// One thread's random work, in its own directory and a shared one:
/// files with data, appends, truncates, renames, links, unlinks, dirs,
/// symlinks and xattrs, until `ops` are done or the daemon is gone.
/// Other failures are expected: names race between threads.
fn churn(m: &Mount, thread: u64, rng_seed: u64, ops: u64) {
    let mut rng = Rng(rng_seed ^ thread.wrapping_mul(0x9E37_79B9));
    for i in 0..ops {
        let dir = if rng.below(2) == 0 { "shared".to_string() } else { format!("own{thread}") };
        let a = m.path(&format!("{dir}/n{}", rng.below(30)));
        let b = m.path(&format!("shared/n{}", rng.below(30)));
        let result = match rng.below(10) {
            0 | 1 => {
                let data = vec![thread as u8; rng.below(20_000) as usize];
                fs::File::create(&a).and_then(|mut f| f.write_all(&data))
            }
            2 => fs::OpenOptions::new().append(true).open(&a).and_then(|mut f| f.write_all(format!("{i}").as_bytes())),
            3 => fs::OpenOptions::new().write(true).open(&a).and_then(|f| f.set_len(rng.below(5000))),
            4 => fs::rename(&a, &b),
            5 => fs::hard_link(&a, &b),
            6 => fs::remove_file(&a),
            7 => fs::create_dir(&a).or_else(|_| fs::remove_dir(&a)),
            8 => std::os::unix::fs::symlink("target", &a),
            _ => set_xattr(&a),
        };
        if let Err(e) = result {
            if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) {
                return;
            }
        }
    }
}

/// The orphan count of fsck's summary line.
fn orphans(stdout: &str) -> u64 {
    let part = stdout.split(", ").find(|p| p.ends_with("awaiting reclaim")).expect("summary line");
    part.split(' ').next().and_then(|n| n.parse().ok()).expect("a count")
}

fn set_xattr(path: &Path) -> std::io::Result<()> {
    let name = std::ffi::CString::new("user.fsck").unwrap();
    let p = crate::harness::cstr(path);
    // SAFETY: setxattr with valid C strings and a 3-byte value.
    match unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), b"val".as_ptr().cast(), 3, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn start_dirs(m: &Mount) {
    fs::create_dir(m.path("shared")).unwrap();
    for t in 0..THREADS {
        fs::create_dir(m.path(&format!("own{t}"))).unwrap();
    }
}

#[test]
fn fsck_of_a_mounted_store_is_refused() {
    let m = Mount::persistent(&[]);
    fs::write(m.path("f"), b"x").unwrap();
    let r = fsck(m.store.as_ref().unwrap(), &["--repair"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("refusing to check a mounted store"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("in use by another holt-fs daemon (pid {})", m.pid())), "{}", r.stderr);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"x", "the mount is untouched");
}

#[test]
fn fsck_of_a_directory_that_is_no_store_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let r = fsck(dir.path(), &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a holt-fs store"), "{}", r.stderr);
}

#[test]
fn fsck_after_concurrent_work_is_clean() {
    let rng_seed = seed("fsck_after_concurrent_work");
    let mut m = Mount::persistent(&["--threads", "4"]);
    start_dirs(&m);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || churn(m, t, rng_seed, OPS_PER_THREAD));
        }
    });
    m.unmount();
    let r = assert_fsck_clean(m.store.as_ref().unwrap(), "after unmount");
    assert_eq!(orphans(&r.stdout), 0, "a clean unmount reclaims every orphan:\n{}", r.stdout);
}

#[test]
fn fsck_after_kill9_and_after_the_recovering_remount_is_clean() {
    let rng_seed = seed("fsck_after_kill9");
    let mut m = Mount::persistent(&["--threads", "4"]);
    start_dirs(&m);
    // Files held open and unlinked: orphans the killed daemon leaves behind.
    let held: Vec<fs::File> = (0..3)
        .map(|i| {
            let path = m.path(&format!("shared/held{i}"));
            let mut f = fs::File::create(&path).unwrap();
            f.write_all(b"open and unlinked").unwrap();
            fs::remove_file(&path).unwrap();
            f
        })
        .collect();
    let pid = m.pid() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        // SAFETY: SIGKILL to our own daemon child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || churn(m, t, rng_seed, KILL_OPS_MAX));
        }
    });
    killer.join().unwrap();
    drop(held);
    m.kill9();
    let store = m.store.clone().unwrap();
    let r = assert_fsck_clean(&store, "right after kill -9");
    assert!(orphans(&r.stdout) >= 3, "the files held open are orphans:\n{}", r.stdout);
    m.spawn(&[]);
    m.unmount();
    let r = assert_fsck_clean(&store, "after remount and unmount");
    assert_eq!(orphans(&r.stdout), 0, "the remount reclaimed them:\n{}", r.stdout);
}

#[test]
fn repair_fixes_a_damaged_store_and_the_file_reappears_in_lost_found() {
    let mut m = Mount::persistent(&[]);
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"contents").unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(m.path("d/f")).unwrap());
    m.unmount();
    let store = m.store.clone().unwrap();
    {
        let opened = holt_mount::Store::open(&store, &holt_mount::StoreOptions::default()).unwrap();
        let key = dentry_key_of(&opened.tree, b"d", b"f");
        assert!(opened.tree.delete(&key).unwrap());
    }
    let r = fsck(&store, &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("regular file inode {ino} (nlink 1) is not reachable")), "{}", r.stdout);
    assert!(r.stdout.contains(": 1 problem"), "{}", r.stdout);
    let r = fsck(&store, &["--repair"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("[repaired: reconnected as /lost+found/#{ino}]")), "{}", r.stdout);
    assert!(r.stdout.contains("repaired 1 problem\nre-check: clean"), "{}", r.stdout);
    assert_fsck_clean(&store, "after repair");
    m.spawn(&[]);
    assert_eq!(fs::read(m.path(&format!("lost+found/#{ino}"))).unwrap(), b"contents");
}

/// The key of `/<dir>/<name>`, found through the root's entries.
fn dentry_key_of(tree: &holt_core::Tree, dir: &[u8], name: &[u8]) -> Vec<u8> {
    use holt_mount::schema::{self, Dentry, Ino};
    let key = schema::dentry_key(Ino::ROOT, dir);
    let d = Dentry::decode(&key, &tree.get(&key).unwrap().expect("directory exists")).unwrap();
    schema::dentry_key(d.ino, name)
}
