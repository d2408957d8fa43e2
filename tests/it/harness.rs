//! The mount guard and small helpers shared by the real-mount tests.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to mount or to exit.
const DAEMON_WAIT: Duration = Duration::from_secs(20);

/// Fail (not skip) when the kernel side of FUSE is unavailable.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: real-mount tests need the fuse kernel module (modprobe fuse) \
         and root or fusermount3 (apt-get install fuse3)"
    );
}

/// Extra `holt-fs mount` arguments for every mount of the suite, from
/// `HOLT_IT_MOUNT_ARGS` (split at spaces): scripts/test.sh runs the suite
/// once more with `--no-passthrough` to cover both data paths.
fn suite_mount_args() -> Vec<String> {
    std::env::var("HOLT_IT_MOUNT_ARGS").unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

/// A running holt-fs daemon mounted on a temporary directory.
pub struct Mount {
    pub mountpoint: PathBuf,
    pub store: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("test paths have no NUL")
}

fn lazy_unmount(mountpoint: &Path) {
    // SAFETY: umount2 with a valid C path; failure (not mounted) is fine here.
    unsafe { libc::umount2(cstr(mountpoint).as_ptr(), libc::MNT_DETACH) };
}

/// Whether `mountpoint` is in this process's mount table.
pub fn mounted(mountpoint: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mountpoint.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

impl Mount {
    /// A `--memory` mount.
    pub fn memory() -> Mount {
        Mount::start(false, &[])
    }

    /// A `--memory` mount with extra arguments.
    pub fn memory_with(extra: &[&str]) -> Mount {
        Mount::start(false, extra)
    }

    /// A mount of a fresh store inside the guard's temporary directory.
    pub fn persistent(extra: &[&str]) -> Mount {
        Mount::start(true, extra)
    }

    /// A guard with a mountpoint (and store) but no daemon yet.
    pub fn unstarted(with_store: bool) -> Mount {
        let tmp = tempfile::Builder::new().prefix("holt-it-").tempdir_in("/tmp").expect("temp dir under /tmp");
        let mountpoint = tmp.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let store = with_store.then(|| tmp.path().join("store"));
        Mount { mountpoint, store, child: None, log: tmp.path().join("daemon.log"), _tmp: tmp }
    }

    fn start(with_store: bool, extra: &[&str]) -> Mount {
        let mut m = Mount::unstarted(with_store);
        m.spawn(extra);
        m
    }

    /// Start (or restart) the daemon on the same mountpoint and store.
    pub fn spawn(&mut self, extra: &[&str]) {
        require_fuse();
        let (out, pid_file) = (self.try_spawn(extra), self._tmp.path().join("pid"));
        let mut child = out.unwrap_or_else(|e| panic!("cannot start holt-fs: {e}"));
        let deadline = Instant::now() + DAEMON_WAIT;
        while !(pid_file.exists() && mounted(&self.mountpoint)) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("holt-fs exited before mounting ({status}); log:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "holt-fs did not mount within {DAEMON_WAIT:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// Start a daemon without waiting for it (to observe failures).
    pub fn try_spawn(&self, extra: &[&str]) -> std::io::Result<Child> {
        let pid_file = self._tmp.path().join("pid");
        let _ = std::fs::remove_file(&pid_file);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_holt-fs"));
        cmd.arg("mount").arg(&self.mountpoint).arg("--pid-file").arg(&pid_file).arg("--log-level").arg("info");
        match &self.store {
            Some(s) => cmd.arg("--store").arg(s),
            None => cmd.arg("--memory"),
        };
        cmd.args(extra).args(suite_mount_args()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn()
    }

    /// Whether this daemon serves file data through FUSE passthrough.
    pub fn passthrough(&self) -> bool {
        self.log_text().contains("data path: FUSE passthrough")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL the daemon, leaving a dead mount behind.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Unmount cleanly with `holt-fs umount` and wait for the daemon to exit.
    pub fn unmount(&mut self) {
        let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("umount").arg(&self.mountpoint).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "holt-fs umount failed: {stderr}\ndaemon log:\n{}", self.log_text());
        self.wait_exit();
    }

    /// Hand over the running daemon's process without waiting for it.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Wait for the daemon to exit by itself (after an unmount or a signal).
    pub fn wait_exit(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let deadline = Instant::now() + DAEMON_WAIT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success() || std::thread::panicking(), "daemon exit {status}; log:\n{}", self.log_text());
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("daemon did not exit after unmount; log:\n{}", self.log_text());
                }
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if mounted(&self.mountpoint) || self.child.is_some() {
            lazy_unmount(&self.mountpoint);
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run a command, failing the test with its output if it fails.
pub fn run(cwd: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed? scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The errno of a failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A small seeded generator for replayable test workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `HOLT_IT_SEED` or the clock; printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("HOLT_IT_SEED") {
        Ok(s) => s.parse().expect("HOLT_IT_SEED is a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("{test}: seed {seed} (replay with HOLT_IT_SEED={seed})");
    seed
}

/// A namespace fsck through the mount: every directory's nlink is 2 plus
/// its subdirectories, every inode's nlink equals the names it has in the
/// tree, and readdir's types agree with lstat. Returns the entries checked.
pub fn check_consistent(root: &Path) -> usize {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    let mut names_per_ino: HashMap<u64, (u64, String)> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        let mut subdirs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            assert_eq!(entry.file_type().unwrap(), meta.file_type(), "readdir type of {}", entry.path().display());
            if meta.is_dir() {
                subdirs += 1;
                stack.push(entry.path());
            } else {
                let e = names_per_ino.entry(meta.ino()).or_insert((meta.nlink(), entry.path().display().to_string()));
                e.0 = e.0.checked_sub(1).unwrap_or_else(|| panic!("{} has more names than nlink", e.1));
            }
            checked += 1;
        }
        let nlink = std::fs::metadata(&dir).unwrap().nlink();
        assert_eq!(nlink, 2 + subdirs, "nlink of directory {}", dir.display());
    }
    for (ino, (left, name)) in names_per_ino {
        assert_eq!(left, 0, "inode {ino} ({name}) has {left} more links than names");
    }
    checked
}

/// A tmpfs mounted on a temporary directory, unmounted when dropped (also
/// when a test fails). Declare it before the `Mount` whose store it holds,
/// so the daemon is gone before the unmount.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::Builder::new().prefix("holt-full-").tempdir_in("/tmp").expect("temp dir under /tmp");
        let opts = cstr(Path::new(&format!("size={bytes},mode=0700")));
        let kind = cstr(Path::new("tmpfs"));
        // SAFETY: mount(2) with valid C strings; `opts` is a NUL-terminated option string.
        let rc =
            unsafe { libc::mount(kind.as_ptr(), cstr(dir.path()).as_ptr(), kind.as_ptr(), 0, opts.as_ptr().cast()) };
        assert_eq!(rc, 0, "mounting a {bytes}-byte tmpfs needs root (errno {})", errno());
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = cstr(self.dir.path());
        // SAFETY: umount2 with a valid C path; a busy mount is detached instead.
        if unsafe { libc::umount2(dir.as_ptr(), 0) } != 0 {
            unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

pub fn statvfs(path: &Path) -> libc::statvfs {
    // SAFETY: statvfs into a zeroed struct, with a valid C path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cstr(path).as_ptr(), &mut st) }, 0, "statfs: errno {}", errno());
    st
}
