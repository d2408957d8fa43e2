//! Boot-time mounting: mount(8) given an fstab line of type `fuse.holt-fs`
//! runs the helper `/sbin/mount.fuse.holt-fs` (the built binary under that
//! name), which mounts, returns, and leaves a daemon serving.
//!
//! mount(8) looks helpers up only in /sbin (and /sbin/fs.d, /sbin/fs), and
//! records x-* options in /run/mount/utab. So each such test runs on a
//! thread of its own that enters a private mount namespace with a tmpfs
//! over /sbin (holding only the helper link) and one over /run: neither the
//! link, nor utab, nor the test's mounts are ever visible outside that
//! thread and the processes it starts, and the namespace with all its
//! mounts is gone once they have exited, whatever the test did.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::{cstr, require_fuse};

/// How long a daemon may take to exit after its filesystem is unmounted.
const DAEMON_EXIT_WAIT: Duration = Duration::from_secs(20);
const HELPER: &str = "mount.fuse.holt-fs";

fn check(rc: libc::c_int, what: &str) {
    assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
}

fn mount_tmpfs(target: &Path) {
    let (src, fstype, data) = (c"holt-it", c"tmpfs", c"mode=755");
    // SAFETY: mount(2) with valid C strings.
    let rc = unsafe { libc::mount(src.as_ptr(), cstr(target).as_ptr(), fstype.as_ptr(), 0, data.as_ptr().cast()) };
    check(rc, &format!("tmpfs over {}", target.display()));
}

/// Move the calling thread into a private mount namespace where
/// /sbin/mount.fuse.holt-fs is the built binary and /run is empty.
fn enter_private_namespace() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "mount(8) helper tests need root (scripts/test.sh runs as root)");
    // SAFETY: unshare(2) of this thread's mount namespace (and, implied,
    // its fs attributes); other threads keep theirs.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) }, "unshare(CLONE_NEWNS)");
    // Private before anything is mounted: nothing below propagates back.
    // SAFETY: mount(2) changing propagation only.
    let rc = unsafe {
        libc::mount(c"none".as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null())
    };
    check(rc, "make / private");
    let sbin = fs::canonicalize("/sbin").expect("/sbin exists");
    mount_tmpfs(&sbin);
    mount_tmpfs(Path::new("/run"));
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_holt-fs"), sbin.join(HELPER)).expect("link the helper");
}

/// Run `f` on a thread in a private mount namespace; its panic is ours.
fn in_private_namespace(f: impl FnOnce() + Send + 'static) {
    require_fuse();
    let thread = std::thread::spawn(move || {
        enter_private_namespace();
        f();
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// This thread's mount table line for `mountpoint`: (type, source, options).
fn mount_entry(mountpoint: &Path) -> Option<(String, String, String)> {
    let info = fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    let want = mountpoint.to_string_lossy().replace(' ', "\\040");
    info.lines().find(|l| l.split(' ').nth(4) == Some(want.as_str())).map(|l| {
        let (head, tail) = l.split_once(" - ").expect("mountinfo has a separator");
        let opts = head.split(' ').nth(5).unwrap_or_default().to_string();
        let mut tail = tail.split(' ');
        (tail.next().unwrap_or_default().into(), tail.next().unwrap_or_default().into(), opts)
    })
}

/// A store, mountpoints and an fstab in a temporary directory; on drop,
/// detaches what is still mounted and kills what still serves.
struct Boot {
    dir: tempfile::TempDir,
}

impl Boot {
    fn new() -> Boot {
        let dir = tempfile::Builder::new().prefix("holt-boot-").tempdir_in("/tmp").expect("temp dir");
        for name in ["mnt", "mnt2"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        Boot { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pid(&self, name: &str) -> Option<i32> {
        fs::read_to_string(self.path(name)).ok()?.trim().parse().ok()
    }

    /// Whether `pid` is still one of this test's daemons: its command line
    /// names our temporary directory (a pid file outlives a killed daemon,
    /// and its pid may since belong to another process).
    fn daemon_alive(&self, pid: i32) -> bool {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = self.dir.path().as_os_str().as_bytes();
        cmdline.windows(ours.len()).any(|w| w == ours)
    }

    fn write_fstab(&self, lines: &[String]) -> PathBuf {
        let fstab = self.path("fstab");
        fs::write(&fstab, lines.join("\n") + "\n").unwrap();
        fstab
    }

    /// Wait until the daemon that wrote `pid_file` has exited.
    fn wait_daemon_exit(&self, pid_file: &str) {
        let Some(pid) = self.pid(pid_file) else { return };
        let deadline = Instant::now() + DAEMON_EXIT_WAIT;
        while self.daemon_alive(pid) {
            assert!(Instant::now() < deadline, "daemon {pid} still running {DAEMON_EXIT_WAIT:?} after the unmount");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        for name in ["mnt", "mnt2"] {
            // SAFETY: umount2 with a valid path; failure (not mounted) is fine.
            unsafe { libc::umount2(cstr(&self.path(name)).as_ptr(), libc::MNT_DETACH) };
        }
        for pid_file in ["pid", "pid2"] {
            if let Some(pid) = self.pid(pid_file).filter(|&p| self.daemon_alive(p)) {
                std::thread::sleep(Duration::from_millis(200));
                // SAFETY: kill(2) of the daemon this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A temporary path as an argument (they are UTF-8).
fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn must(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed ({}): {stderr}", out.status);
    stderr
}

#[test]
fn fstab_line_mounts_through_mount8_and_the_helper() {
    in_private_namespace(|| {
        let boot = Boot::new();
        let (store, mnt, mnt2) = (boot.path("store"), boot.path("mnt"), boot.path("mnt2"));
        let fstab = boot.write_fstab(&[
            format!(
                "{}  {}  fuse.holt-fs  defaults,noatime,nofail,x-systemd.requires-mounts-for=/tmp,pid_file={}  0 0",
                store.display(),
                mnt.display(),
                boot.path("pid").display()
            ),
            format!("holt-fs:memory  {}  fuse.holt-fs  noauto,pid_file={}  0 0", mnt2.display(), boot.path("pid2").display()),
        ]);
        must(run("mount", &["-a", "-T", s(&fstab), "-t", "fuse.holt-fs"]), "mount -a -T fstab");
        let (fs_type, source, opts) = mount_entry(&mnt).expect("mount -a mounted the auto line");
        assert_eq!((fs_type.as_str(), source.as_str()), ("fuse.holt-fs", store.to_str().unwrap()));
        for flag in ["rw", "noatime", "nosuid", "nodev"] {
            assert!(opts.split(',').any(|o| o == flag), "{flag} missing from {opts}");
        }
        assert!(mount_entry(&mnt2).is_none(), "mount -a skips a noauto line");
        fs::write(mnt.join("kept"), b"across mounts").unwrap();
        must(run(env!("CARGO_BIN_EXE_holt-fs"), &["umount", s(&mnt)]), "holt-fs umount");
        boot.wait_daemon_exit("pid");
        assert!(mount_entry(&mnt).is_none());

        must(run("mount", &["-T", s(&fstab), s(&mnt)]), "mount -T fstab MOUNTPOINT");
        assert_eq!(fs::read(mnt.join("kept")).unwrap(), b"across mounts");
        must(run("mount", &["-T", s(&fstab), s(&mnt2)]), "mount -T fstab of the memory line");
        assert_eq!(mount_entry(&mnt2).expect("memory mount").1, "holt-fs:memory");
        must(run("umount", &[s(&mnt), s(&mnt2)]), "umount(8)");
        boot.wait_daemon_exit("pid");
        boot.wait_daemon_exit("pid2");
        assert!(mount_entry(&mnt).is_none() && mount_entry(&mnt2).is_none());
    });
}

#[test]
fn mount8_reports_a_bad_option_and_an_unusable_store() {
    in_private_namespace(|| {
        let boot = Boot::new();
        let mnt = boot.path("mnt");
        let store = boot.path("store");
        let bad = run("mount", &["-t", "fuse.holt-fs", "-o", "noatime,bogus", s(&store), s(&mnt)]);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && stderr.contains("unknown mount option 'bogus'"), "{stderr}");
        fs::create_dir(&store).unwrap();
        fs::write(store.join("not-a-store"), b"x").unwrap();
        let refused = run("mount", &["-t", "fuse.holt-fs", s(&store), s(&mnt)]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains("is not a holt-fs store"), "{stderr}");
        assert!(mount_entry(&mnt).is_none(), "nothing mounted");
    });
}

/// The helper called by hand under its other name, with -f: it checks and
/// prints the command it would run, and mounts nothing.
#[test]
fn helper_dispatches_on_its_name_and_fakes_with_f() {
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.holt-fs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_holt-fs"), &helper).unwrap();
    let mnt = dir.path().join("mnt");
    let mut cmd = Command::new(&helper);
    let out = cmd.arg("store").arg(&mnt).args(["-fv", "-o", "ro,sync,threads=2"]).current_dir(dir.path()).output();
    let out = out.expect("the helper runs");
    let stderr = must(out, "mount.holt-fs -fv");
    let store = dir.path().join("store");
    let want = format!(
        "mount.holt-fs: holt-fs mount {} --store {} --background --sync --threads 2 -o ro",
        mnt.display(),
        store.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(!store.exists(), "-f creates no store");
}
