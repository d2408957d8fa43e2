//! A full disk is ENOSPC, never a dead filesystem: the store (metadata
//! and data together) on a 48 MiB tmpfs, written until ENOSPC. While full,
//! listings, stat, reads, rename, rmdir and rm work; a remount on the
//! still-full disk finds every acknowledged file exact and works too;
//! after an rm, writes succeed again. Twice over.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::harness::{cstr, errno, statvfs, Mount, Tmpfs};

const DISK_BYTES: u64 = 48 << 20;
const FILE_BYTES: usize = 1 << 20;
/// Small files that take the last free blocks after the big ones stop fitting.
const TAIL_FILE_BYTES: usize = 16 << 10;

/// File name -> contents of every file whose write was acknowledged.
type Files = BTreeMap<String, Vec<u8>>;

fn contents(name: &str, bytes: usize) -> Vec<u8> {
    let seed = name.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..bytes as u32).map(|i| (seed.wrapping_add(i.wrapping_mul(2_654_435_761) >> 7) % 251) as u8).collect()
}

fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

/// Write files of `bytes` into `dir` until ENOSPC; returns the names whose
/// write failed (they may exist, holding part of their contents).
fn fill_with(dir: &Path, prefix: &str, bytes: usize, files: &mut Files) -> Vec<String> {
    for i in 0..(DISK_BYTES as usize / bytes) {
        let name = format!("{prefix}{i:04}");
        let body = contents(&name, bytes);
        match fs::write(dir.join(&name), &body) {
            Ok(()) => {
                files.insert(name, body);
            }
            Err(e) if is_no_space(&e) => return vec![name],
            Err(e) => panic!("writing {name}: {e} (want success or ENOSPC)"),
        }
    }
    panic!("{} never filled with {bytes}-byte files", dir.display());
}

fn fill(dir: &Path, prefix: &str, files: &mut Files) -> Vec<String> {
    let mut failed = fill_with(dir, prefix, FILE_BYTES, files);
    failed.extend(fill_with(dir, &format!("{prefix}-tail"), TAIL_FILE_BYTES, files));
    failed
}

/// Every acknowledged file is listed and reads back exact; nothing else is
/// listed but files whose write failed.
fn check(dir: &Path, files: &Files, failed: &[String]) {
    let listed: BTreeSet<String> =
        fs::read_dir(dir).expect("ls works").map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for name in files.keys() {
        assert!(listed.contains(name), "{name} is not listed");
    }
    for name in &listed {
        assert!(files.contains_key(name) || failed.contains(name), "{name} is listed but was never written");
    }
    for (name, body) in files {
        let path = dir.join(name);
        assert_eq!(fs::metadata(&path).expect("stat works").len(), body.len() as u64, "size of {name}");
        assert!(fs::read(&path).expect("read works") == *body, "contents of {name}");
    }
}

fn rename(dir: &Path, files: &mut Files, from: &str, to: &str) {
    fs::rename(dir.join(from), dir.join(to)).unwrap_or_else(|e| panic!("rename {from} on a full disk: {e}"));
    let body = files.remove(from).expect("renamed an acknowledged file");
    files.insert(to.to_string(), body);
}

/// Remove the failed files and every other acknowledged big one.
fn remove_some(dir: &Path, files: &mut Files, failed: &mut Vec<String>) {
    for name in failed.drain(..) {
        match fs::remove_file(dir.join(&name)) {
            Err(e) if e.kind() != ErrorKind::NotFound => panic!("rm {name} on a full disk: {e}"),
            _ => {}
        }
    }
    let victims: Vec<String> = files.keys().filter(|n| !n.contains("-tail")).step_by(2).cloned().collect();
    for name in victims {
        fs::remove_file(dir.join(&name)).unwrap_or_else(|e| panic!("rm {name} on a full disk: {e}"));
        files.remove(&name);
    }
}

/// Grow the WAL with big xattrs on a full disk until setxattr is refused
/// (ENOSPC, not EIO): the log's next space reservation finds the disk full
/// and the store spends its reserve.
fn fill_the_log(file: &Path) {
    let value = vec![b'x'; 60_000];
    for i in 0..100 {
        let name = cstr(Path::new(&format!("user.fill{i}")));
        // SAFETY: setxattr with valid C strings and a buffer of the length given.
        let rc = unsafe { libc::setxattr(cstr(file).as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            assert_eq!(errno(), libc::ENOSPC, "setxattr #{i} on a full disk");
            return;
        }
    }
    panic!("100 xattrs of 60 kB never filled the log");
}

fn round(m: &mut Mount, disk: &Path, files: &mut Files, prefix: &str) {
    let dir = m.path("d");
    let empty = m.path(&format!("empty-{prefix}"));
    fs::create_dir(&empty).unwrap();
    // Held open across the fill: opened while the store had room (so with
    // passthrough where it is on), reopened once the reserve is spent,
    // when new handles would be served by the daemon.
    let (held_name, held_body) = (format!("held-{prefix}"), contents(&format!("held-{prefix}"), 4096));
    let mut held = fs::File::create(dir.join(&held_name)).unwrap();
    held.write_all(&held_body).unwrap();
    files.insert(held_name.clone(), held_body.clone());
    let mut failed = fill(&dir, prefix, files);
    let first = files.keys().find(|n| n.starts_with(prefix)).cloned().unwrap();
    fill_the_log(&dir.join(&first));
    let err = fs::write(dir.join(format!("refused-{prefix}")), b"x").expect_err("the disk is full");
    assert!(is_no_space(&err), "a new file on a full disk: {err}");
    let reread = fs::read(dir.join(&held_name)).expect("a file held open reopens on a full disk");
    assert!(reread == held_body, "{held_name} reads back what was written through the held handle");
    drop(held);

    check(&dir, files, &failed);
    rename(&dir, files, &first, &format!("renamed-{prefix}"));
    fs::remove_dir(&empty).expect("rmdir on a full disk");
    let avail = |s: &libc::statvfs| s.f_bavail * s.f_frsize;
    let (shown, device) = (statvfs(&m.mountpoint), statvfs(disk));
    assert!(avail(&shown).abs_diff(avail(&device)) <= FILE_BYTES as u64, "statfs shows the device's free space");

    m.unmount();
    m.spawn(&[]);
    check(&dir, files, &failed);
    remove_some(&dir, files, &mut failed);
    check(&dir, files, &failed);
    let after = format!("after-{prefix}");
    let body = contents(&after, FILE_BYTES);
    fs::write(dir.join(&after), &body).expect("writes succeed again once files are removed");
    files.insert(after, body);

    m.unmount();
    m.spawn(&[]);
    check(&dir, files, &failed);
}

#[test]
fn a_full_disk_is_enospc_and_rm_ls_rename_rmdir_and_remount_work() {
    let disk = Tmpfs::mount(DISK_BYTES);
    let mut m = Mount::unstarted(true);
    let store: PathBuf = disk.path().join("store");
    m.store = Some(store.clone());
    m.spawn(&[]);
    fs::create_dir(m.path("d")).unwrap();
    assert!(store.join("meta/RESERVE").exists(), "the store keeps its space reserve");
    let mut files = Files::new();
    round(&mut m, disk.path(), &mut files, "a");
    round(&mut m, disk.path(), &mut files, "b");
    m.unmount();
    let log = m.log_text();
    assert!(!log.contains("poisoned"), "the store was poisoned on a full disk; log:\n{log}");
}
