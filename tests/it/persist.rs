//! Daemon lifecycle and persistence: signals, background mode, dead
//! mountpoints, remount, store locking, and kill -9 recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{cstr, errno, seed, Mount, Rng};

/// Rounds of the kill -9 test.
const KILL_ROUNDS: usize = 6;

#[test]
fn sigterm_unmounts_and_exits_cleanly() {
    let mut m = Mount::memory();
    fs::write(m.path("f"), b"x").unwrap();
    let pid = m.pid() as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    m.wait_exit();
    assert!(!m.path("f").exists(), "the mountpoint is empty again");
}

#[test]
fn dead_mount_is_cleared_when_mounting_again() {
    let mut m = Mount::memory();
    m.kill9();
    // SAFETY: stat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::stat(cstr(&m.mountpoint).as_ptr(), &mut st) }, -1);
    assert_eq!(errno(), libc::ENOTCONN);
    m.spawn(&[]);
    fs::write(m.path("alive"), b"yes").unwrap();
    assert_eq!(fs::read(m.path("alive")).unwrap(), b"yes");
}

#[test]
fn background_mode_returns_once_the_mount_is_ready() {
    let m = Mount::unstarted(false);
    let pid_file = m.mountpoint.with_extension("pid");
    let status = Command::new(env!("CARGO_BIN_EXE_holt-fs"))
        .arg("mount")
        .arg(&m.mountpoint)
        .args(["--memory", "-d", "--pid-file"])
        .arg(&pid_file)
        .status()
        .unwrap();
    let guard = BackgroundGuard { mountpoint: &m.mountpoint, pid_file: &pid_file };
    assert!(status.success());
    fs::write(m.path("ready"), b"immediately").unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("mount").arg(&m.mountpoint).args(["--memory", "-d"]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a mountpoint"));
    drop(guard);
}

/// Unmounts a daemon that is not our child, and kills it by pid if needed.
struct BackgroundGuard<'a> {
    mountpoint: &'a Path,
    pid_file: &'a Path,
}

impl Drop for BackgroundGuard<'_> {
    fn drop(&mut self) {
        let pid: Option<i32> = fs::read_to_string(self.pid_file).ok().and_then(|s| s.trim().parse().ok());
        let _ = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("umount").arg("-l").arg(self.mountpoint).status();
        let Some(pid) = pid else { return };
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only probes whether the pid still exists.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: the daemon we started; it should be gone already.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn write_tree(m: &Mount) {
    fs::create_dir_all(m.path("a/b")).unwrap();
    fs::write(m.path("a/b/file"), b"persistent contents").unwrap();
    fs::hard_link(m.path("a/b/file"), m.path("a/link")).unwrap();
    std::os::unix::fs::symlink("b/file", m.path("a/sym")).unwrap();
    let mut sparse = fs::File::create(m.path("sparse")).unwrap();
    sparse.write_all(b"head").unwrap();
    sparse.set_len(5 << 20).unwrap();
    let name = std::ffi::CString::new("user.k").unwrap();
    // SAFETY: setxattr with valid pointers.
    assert_eq!(unsafe { libc::setxattr(cstr(&m.path("a")).as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) }, 0);
    fs::write(m.path("gone"), b"").unwrap();
    fs::remove_file(m.path("gone")).unwrap();
}

fn snapshot(root: &Path) -> String {
    crate::harness::run(root, "find", &[".", "-printf", "%P %y %m %n %s %l %T@ %i\\n"])
}

#[test]
fn remount_preserves_everything() {
    let mut m = Mount::persistent(&[]);
    write_tree(&m);
    let before = snapshot(&m.mountpoint);
    m.unmount();
    m.spawn(&[]);
    assert_eq!(snapshot(&m.mountpoint), before);
    assert_eq!(fs::read(m.path("a/sym")).unwrap(), b"persistent contents");
    let mut buf = [0u8; 2];
    let name = std::ffi::CString::new("user.k").unwrap();
    // SAFETY: getxattr into a 2-byte buffer.
    let n = unsafe { libc::getxattr(cstr(&m.path("a")).as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 2) };
    assert_eq!(&buf[..n as usize], b"v");
    fs::create_dir(m.path("after")).unwrap();
    m.unmount();
    m.spawn(&["-o", "ro"]);
    assert!(m.path("after").is_dir());
    assert!(fs::write(m.path("x"), b"").is_err());
}

#[test]
fn umount_then_mount_in_a_tight_loop_never_finds_the_store_busy() {
    let mut m = Mount::persistent(&[]);
    let store = fs::canonicalize(m.store.as_ref().unwrap()).unwrap();
    let mut closing = Vec::new();
    for round in 0..12 {
        fs::write(m.path(&format!("f{round}")), format!("round {round}")).unwrap();
        if round % 2 == 0 {
            let status = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("umount").arg(&m.mountpoint).status().unwrap();
            assert!(status.success(), "round {round}: holt-fs umount failed; log:\n{}", m.log_text());
            assert!(holt_mount::wait_closed(&store, Duration::ZERO).unwrap(), "round {round}: umount returned before the store closed");
            m.wait_exit();
        } else {
            // As umount(8) does: return at once; the next mount waits for the closing daemon.
            // A sibling test thread that forks while this one has a file of
            // the mount open holds it busy for a moment.
            let unmounted = holt_mount::mountpoint::unmount_waiting_out_busy(&m.mountpoint, false, Duration::from_secs(5));
            assert!(unmounted.is_ok(), "round {round}: {unmounted:?}");
            closing.extend(m.take_child());
        }
        m.spawn(&[]);
        for r in 0..=round {
            assert_eq!(fs::read_to_string(m.path(&format!("f{r}"))).unwrap(), format!("round {r}"), "round {round}");
        }
    }
    for mut child in closing {
        let status = child.wait().unwrap();
        assert!(status.success(), "a daemon unmounted by umount2 exits cleanly: {status}; log:\n{}", m.log_text());
    }
}

#[test]
fn umount_of_a_mount_with_an_open_file_says_what_holds_it_and_keeps_it() {
    let mut m = Mount::persistent(&[]);
    let held = fs::File::create(m.path("held")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("umount").arg(&m.mountpoint).output().unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && msg.contains("is busy") && msg.contains("--lazy"), "{msg}");
    assert!(m.path("held").exists(), "the mount stays served");
    drop(held);
    let status = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("umount").arg(&m.mountpoint).status().unwrap();
    assert!(status.success(), "once the file is closed umount succeeds; log:\n{}", m.log_text());
    m.wait_exit();
}

#[test]
fn umount_of_something_else_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).args(["umount", "/proc"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a holt-fs mount"), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("umount").arg(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a mountpoint"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn second_daemon_on_a_store_is_refused() {
    let m = Mount::persistent(&[]);
    let other = Mount::unstarted(false);
    let out = Command::new(env!("CARGO_BIN_EXE_holt-fs"))
        .arg("mount")
        .arg(&other.mountpoint)
        .arg("--store")
        .arg(m.store.as_ref().unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("in use by another holt-fs daemon") && msg.contains(&format!("pid {}", m.pid())), "{msg}");
}

/// What the kill -9 workload knows: paths that must exist with this
/// content (by link group), paths that must not exist, and paths an
/// in-flight operation may or may not have changed.
#[derive(Default)]
struct Expect {
    files: BTreeMap<String, usize>,
    groups: BTreeMap<usize, Vec<u8>>,
    dirs: BTreeSet<String>,
    gone: BTreeSet<String>,
    unsure: BTreeSet<String>,
    /// Groups (inodes) an interrupted operation touched: a name of theirs
    /// may exist that `files` no longer holds, so their nlink is unknown.
    unsure_groups: BTreeSet<usize>,
}

impl Expect {
    fn links(&self, group: usize) -> usize {
        self.files.values().filter(|&&g| g == group).count()
    }

    fn forget(&mut self, paths: &[String]) {
        for p in paths {
            if let Some(g) = self.files.remove(p) {
                self.unsure_groups.insert(g);
                let names: Vec<String> = self.files.iter().filter(|(_, &h)| h == g).map(|(n, _)| n.clone()).collect();
                self.unsure.extend(names);
            }
            self.unsure.insert(p.clone());
            self.gone.remove(p);
            self.dirs.remove(p);
        }
    }
}

/// One random operation; returns the paths it touches and its outcome.
fn workload_step(m: &Mount, e: &mut Expect, rng: &mut Rng, step: usize) -> (Vec<String>, std::io::Result<()>) {
    let pick = |e: &Expect, rng: &mut Rng| {
        let names: Vec<&String> = e.files.keys().collect();
        (!names.is_empty()).then(|| names[rng.below(names.len() as u64) as usize].clone())
    };
    let dir = format!("d{}", rng.below(4));
    match rng.below(6) {
        0 | 1 => {
            let path = format!("{dir}/f{step}");
            let data = format!("{step}:{}", rng.next()).repeat(1 + rng.below(300) as usize).into_bytes();
            // Acknowledged writes survive kill -9 with or without fsync.
            let fsync = rng.below(2) == 0;
            let r = fs::File::create(m.path(&path)).and_then(|mut f| {
                f.write_all(&data)?;
                if fsync {
                    f.sync_all()?;
                }
                Ok(())
            });
            if r.is_ok() {
                e.groups.insert(step, data);
                e.files.insert(path.clone(), step);
            }
            (vec![path], r)
        }
        2 => match pick(e, rng) {
            Some(src) => {
                let dst = format!("{dir}/r{step}");
                let r = fs::rename(m.path(&src), m.path(&dst));
                if r.is_ok() {
                    let g = e.files.remove(&src).unwrap();
                    e.files.insert(dst.clone(), g);
                    e.gone.insert(src.clone());
                }
                (vec![src, dst], r)
            }
            None => (vec![], Ok(())),
        },
        3 => match pick(e, rng) {
            Some(src) => {
                let r = fs::remove_file(m.path(&src));
                if r.is_ok() {
                    e.files.remove(&src);
                    e.gone.insert(src.clone());
                }
                (vec![src], r)
            }
            None => (vec![], Ok(())),
        },
        4 => match pick(e, rng) {
            Some(src) => {
                let dst = format!("{dir}/l{step}");
                let r = fs::hard_link(m.path(&src), m.path(&dst));
                if r.is_ok() {
                    let g = e.files[&src];
                    e.files.insert(dst.clone(), g);
                }
                (vec![src, dst], r)
            }
            None => (vec![], Ok(())),
        },
        _ => {
            let path = format!("{dir}/sub{step}");
            let r = fs::create_dir(m.path(&path));
            if r.is_ok() {
                e.dirs.insert(path.clone());
            }
            (vec![path], r)
        }
    }
}

fn verify(m: &Mount, e: &Expect, round: usize) {
    for (path, &g) in &e.files {
        let got = fs::read(m.path(path)).unwrap_or_else(|err| panic!("round {round}: acknowledged {path} lost: {err}"));
        assert!(got == e.groups[&g], "round {round}: {path} has wrong contents");
        let unsure_links =
            e.unsure_groups.contains(&g) || e.files.iter().any(|(p, &h)| h == g && e.unsure.contains(p));
        if !unsure_links {
            assert_eq!(fs::metadata(m.path(path)).unwrap().nlink() as usize, e.links(g), "round {round}: nlink of {path}");
        }
    }
    for path in e.gone.iter().filter(|p| !e.unsure.contains(*p)) {
        assert!(fs::symlink_metadata(m.path(path)).is_err(), "round {round}: removed {path} came back");
    }
    for path in &e.dirs {
        assert!(m.path(path).is_dir(), "round {round}: acknowledged directory {path} lost");
    }
}

#[test]
fn kill9_and_remount_keeps_every_acknowledged_operation() {
    let mut rng = Rng(seed("kill9_and_remount"));
    let mut m = Mount::persistent(&[]);
    for d in 0..4 {
        fs::create_dir(m.path(&format!("d{d}"))).unwrap();
    }
    let mut e = Expect::default();
    e.dirs.extend((0..4).map(|d| format!("d{d}")));
    let mut step = 0;
    for round in 0..KILL_ROUNDS {
        let pid = m.pid() as i32;
        let delay = Duration::from_millis(100 + rng.below(400));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: SIGKILL to our own daemon child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        loop {
            step += 1;
            let (paths, r) = workload_step(&m, &mut e, &mut rng, step);
            if r.is_err() {
                e.forget(&paths);
                break;
            }
        }
        killer.join().unwrap();
        m.kill9();
        m.spawn(&[]);
        verify(&m, &e, round);
        crate::harness::check_consistent(&m.mountpoint);
    }
}

/// A file handle of the file, the name a handle for a path.
fn handle_of(path: &std::path::Path) -> Vec<u8> {
    const MAX: usize = 128;
    // SAFETY: name_to_handle_at fills a buffer laid out as struct
    // file_handle with room for MAX handle bytes, and a mount id.
    unsafe {
        let mut buf = vec![0u8; std::mem::size_of::<libc::file_handle>() + MAX];
        let fh = buf.as_mut_ptr().cast::<libc::file_handle>();
        (*fh).handle_bytes = MAX as u32;
        let mut mount_id = 0;
        let rc = libc::name_to_handle_at(libc::AT_FDCWD, cstr(path).as_ptr(), fh, &mut mount_id, 0);
        assert_eq!(rc, 0, "name_to_handle_at {}: errno {}", path.display(), errno());
        buf.truncate(std::mem::size_of::<libc::file_handle>() + (*fh).handle_bytes as usize);
        buf
    }
}

/// Open a handle from `handle_of` through the mount at `mountpoint`.
fn open_handle(mountpoint: &std::path::Path, handle: &[u8]) -> Result<std::fs::File, i32> {
    use std::os::fd::FromRawFd;
    let dir = std::fs::File::open(mountpoint).unwrap();
    let mut buf = handle.to_vec();
    // SAFETY: `buf` holds a struct file_handle as name_to_handle_at wrote it.
    let fd = unsafe { libc::open_by_handle_at(dir.as_raw_fd(), buf.as_mut_ptr().cast(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// File handles (what an NFS export hands out) of a file, a directory and
/// the root still open the same objects after a remount, once the kernel
/// has forgotten every inode; a handle of a removed file is stale.
#[test]
fn file_handles_survive_a_remount() {
    let mut m = Mount::persistent(&[]);
    std::fs::create_dir_all(m.path("a/b")).unwrap();
    std::fs::write(m.path("a/b/f"), b"by handle").unwrap();
    std::fs::write(m.path("gone"), b"x").unwrap();
    let handles: Vec<(&str, Vec<u8>)> =
        ["a/b/f", "a/b", "", "gone"].iter().map(|p| (*p, handle_of(&m.path(p)))).collect();
    std::fs::remove_file(m.path("gone")).unwrap();
    m.unmount();
    m.spawn(&[]);
    let mut f = open_handle(&m.mountpoint, &handles[0].1).expect("the file's handle after a remount");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f, &mut text).unwrap();
    assert_eq!(text, "by handle");
    for (path, handle) in &handles[1..3] {
        let dir = open_handle(&m.mountpoint, handle).unwrap_or_else(|e| panic!("handle of '{path}': errno {e}"));
        let meta = dir.metadata().unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.ino(), std::fs::metadata(m.path(path)).unwrap().ino(), "{path}");
    }
    assert_eq!(open_handle(&m.mountpoint, &handles[3].1).err(), Some(libc::ESTALE), "a removed file's handle");
}
