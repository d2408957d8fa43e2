//! holt-nullfs on a real mount: it mounts, answers the operations the
//! benches make, and unmounts on SIGTERM. Needs /dev/fuse and root; the
//! mount is undone by a guard even when an assertion fails.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long the daemon may take to mount, and to exit after SIGTERM.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// A mounted holt-nullfs; dropping it unmounts (lazily), stops the daemon
/// and removes the mountpoint.
struct Mount {
    dir: PathBuf,
    daemon: Option<Child>,
}

fn is_mounted(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts is readable");
    let dir = dir.to_str().expect("a UTF-8 temp path");
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(dir) && l.contains("holt-nullfs"))
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT_MAX, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Mount {
    fn new(name: &str) -> Mount {
        assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse");
        let dir = std::env::temp_dir().join(format!("holt-nullfs-test.{}.{name}", std::process::id()));
        fs::create_dir_all(&dir).expect("make the mountpoint");
        let daemon = Command::new(env!("CARGO_BIN_EXE_holt-nullfs")).arg(&dir).spawn().expect("start holt-nullfs");
        let mount = Mount { dir, daemon: Some(daemon) };
        wait_until("holt-nullfs is mounted", || is_mounted(&mount.dir));
        mount
    }

    /// SIGTERM the daemon; it must unmount and exit 0.
    fn terminate(&mut self) {
        let mut daemon = self.daemon.take().expect("the daemon runs");
        // SAFETY: kill of our own child.
        unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        let status = daemon.wait().expect("wait for holt-nullfs");
        assert!(status.success(), "holt-nullfs exited with {status}");
        assert!(!is_mounted(&self.dir), "still mounted after SIGTERM");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

#[test]
fn nullfs_serves_files_dirs_links_and_unmounts_on_sigterm() {
    let mut m = Mount::new("ops");
    let (a, b) = (m.dir.join("a"), m.dir.join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    fs::File::create(a.join("f")).unwrap().write_all(&[7u8; 10_000]).unwrap();
    fs::rename(a.join("f"), b.join("g")).unwrap();
    fs::hard_link(b.join("g"), a.join("h")).unwrap();
    std::os::unix::fs::symlink("../b/g", a.join("s")).unwrap();
    let mut bytes = Vec::new();
    fs::File::open(a.join("s")).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, vec![7u8; 10_000]);
    assert_eq!(fs::metadata(a.join("h")).unwrap().nlink(), 2);
    let mut names: Vec<_> = fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["h", "s"]);
    assert_eq!(fs::remove_dir(&b).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_dir_all(&a).unwrap();
    fs::remove_dir_all(&b).unwrap();
    assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 0);
    m.terminate();
}

#[test]
fn nullfs_exits_when_unmounted() {
    let mut m = Mount::new("umount");
    fs::write(m.dir.join("f"), b"x").unwrap();
    assert!(Command::new("umount").arg(&m.dir).status().unwrap().success());
    let status = m.daemon.take().unwrap().wait().unwrap();
    assert!(status.success(), "holt-nullfs exited with {status}");
}
