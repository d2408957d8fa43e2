//! Safe defaults: nosuid/nodev unless asked, the mount's type and source,
//! store directories that are refused (and why), symlinks in a store never
//! followed, SIGHUP reopening the log, read-only stores, quiet logs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{cstr, mounted, run, Mount};

/// The uid (and gid) of `nobody`.
const NOBODY: u32 = 65534;

fn holt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_holt-fs"))
}

/// The directory holding the guard's mountpoint and store.
fn guard_dir(m: &Mount) -> PathBuf {
    m.mountpoint.parent().expect("the mountpoint has a parent").to_path_buf()
}

/// `holt-fs mount` of `store` in the background, which must fail; its stderr.
fn refused(m: &Mount, store: &Path) -> String {
    let out = holt().arg("mount").arg(&m.mountpoint).arg("--store").arg(store).arg("-d").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mounting {} must be refused", store.display());
    assert!(!mounted(&m.mountpoint));
    stderr
}

/// What `nobody` gets from `id -u` (the effective uid) running a setuid-root
/// copy of id(1) through the mount.
fn euid_of_setuid_id(m: &Mount) -> String {
    // The guard's directory is 0700; nobody must reach the mount through it.
    fs::set_permissions(guard_dir(m), fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy("/usr/bin/id", m.path("id")).unwrap();
    fs::set_permissions(m.path("id"), fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(fs::metadata(m.path("id")).unwrap().mode() & 0o7777, 0o4755, "setuid bit stored");
    let out = Command::new(m.path("id")).arg("-u").uid(NOBODY).gid(NOBODY).output().unwrap();
    assert!(out.status.success(), "id as nobody: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn setuid_bit_is_ignored_without_the_suid_option() {
    let m = Mount::persistent(&["-o", "allow_other"]);
    assert_eq!(euid_of_setuid_id(&m), NOBODY.to_string(), "nosuid by default: the real uid stays");
}

#[test]
fn setuid_bit_is_honoured_with_the_suid_option() {
    let m = Mount::persistent(&["-o", "allow_other,suid"]);
    assert_eq!(euid_of_setuid_id(&m), "0", "-o suid: the setuid bit gives root");
}

#[test]
fn mount_shows_type_fuse_holt_fs_and_the_absolute_store_path() {
    let mut m = Mount::unstarted(true);
    let dir = guard_dir(&m);
    let status = holt().current_dir(&dir).args(["mount", "mnt", "--store", "store", "-d"]).status().unwrap();
    assert!(status.success());
    let table = run(&dir, "mount", &[]);
    let on = format!(" on {} type ", m.mountpoint.display());
    let line =
        table.lines().find(|l| l.contains(&on)).unwrap_or_else(|| panic!("no mount at the mountpoint:\n{table}"));
    let store = m.store.clone().unwrap();
    assert!(
        line.starts_with(&format!("{} on {} type fuse.holt-fs (", store.display(), m.mountpoint.display())),
        "{line}"
    );
    assert!(line.contains("nosuid") && line.contains("nodev") && !line.contains("noexec"), "{line}");
    let status = holt().current_dir(&dir).args(["umount", "mnt"]).status().unwrap();
    assert!(status.success(), "holt-fs umount finds the mount by its type and store");
    assert!(!mounted(&m.mountpoint));
    m.wait_exit();
}

#[test]
fn foreign_owned_or_world_writable_store_is_refused_with_the_fix() {
    let m = Mount::unstarted(true);
    let store = m.store.clone().unwrap();
    fs::create_dir(&store).unwrap();
    fs::set_permissions(&store, fs::Permissions::from_mode(0o777)).unwrap();
    let msg = refused(&m, &store);
    assert!(
        msg.contains("writable by its group or others") && msg.contains(&format!("chmod 700 {}", store.display())),
        "{msg}"
    );
    fs::set_permissions(&store, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&store, Some(NOBODY), Some(NOBODY)).unwrap();
    let msg = refused(&m, &store);
    assert!(msg.contains(&format!("owned by uid {NOBODY}")) && msg.contains("chown 0 "), "{msg}");
    assert_eq!(fs::read_dir(&store).unwrap().count(), 0, "nothing was created in a refused store");
}

#[test]
fn non_store_directory_and_regular_file_are_refused() {
    let m = Mount::unstarted(false);
    let dir = guard_dir(&m);
    let home = dir.join("home");
    fs::create_dir(&home).unwrap();
    fs::write(home.join("notes.txt"), b"user data").unwrap();
    let msg = refused(&m, &home);
    assert!(msg.contains("is not a holt-fs store") && msg.contains("will not be adopted"), "{msg}");
    assert_eq!(fs::read_dir(&home).unwrap().count(), 1, "no lock, meta/ or data/ beside the user's files");
    let file = dir.join("file");
    fs::write(&file, b"not a store").unwrap();
    let msg = refused(&m, &file);
    assert!(msg.contains("is not a directory"), "{msg}");
    assert_eq!(fs::read(&file).unwrap(), b"not a store");
}

/// A store holding one file `f`, unmounted; returns the file's inode number.
fn store_with_one_file(m: &mut Mount) -> u64 {
    fs::write(m.path("f"), b"mine").unwrap();
    let ino = fs::metadata(m.path("f")).unwrap().ino();
    m.unmount();
    ino
}

/// A file outside the store that a planted symlink points at.
fn victim(m: &Mount) -> PathBuf {
    let path = guard_dir(m).join("victim");
    fs::write(&path, b"precious").unwrap();
    path
}

#[test]
fn symlinked_lock_file_is_refused_without_touching_its_target() {
    let mut m = Mount::persistent(&[]);
    store_with_one_file(&mut m);
    let (store, victim) = (m.store.clone().unwrap(), victim(&m));
    fs::remove_file(store.join("lock")).unwrap();
    std::os::unix::fs::symlink(&victim, store.join("lock")).unwrap();
    let msg = refused(&m, &store);
    assert!(msg.contains("lock is a symlink"), "{msg}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

/// Reading and rewriting `f` through the mount both fail.
fn file_is_unusable(m: &Mount) {
    assert!(fs::read(m.path("f")).is_err(), "reading through a planted symlink must fail");
    assert!(fs::write(m.path("f"), b"evil").is_err(), "writing through a planted symlink must fail");
}

#[test]
fn symlinked_data_shard_directory_is_refused_without_touching_its_target() {
    let mut m = Mount::persistent(&[]);
    let ino = store_with_one_file(&mut m);
    let store = m.store.clone().unwrap();
    let shard = store.join(format!("data/{:02x}", ino & 0xff));
    let elsewhere = guard_dir(&m).join("elsewhere");
    fs::rename(&shard, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &shard).unwrap();
    m.spawn(&[]);
    file_is_unusable(&m);
    assert_eq!(fs::read(elsewhere.join(format!("{ino:016x}"))).unwrap(), b"mine", "the object behind it is untouched");
    assert!(m.log_text().contains("is a symlink or not a directory"), "the log says why:\n{}", m.log_text());
}

#[test]
fn symlinked_data_object_is_refused_without_touching_its_target() {
    let mut m = Mount::persistent(&[]);
    let ino = store_with_one_file(&mut m);
    let (store, victim) = (m.store.clone().unwrap(), victim(&m));
    let object = store.join(format!("data/{:02x}/{ino:016x}", ino & 0xff));
    fs::remove_file(&object).unwrap();
    std::os::unix::fs::symlink(&victim, &object).unwrap();
    m.spawn(&[]);
    file_is_unusable(&m);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn sighup_keeps_the_mount_and_reopens_the_log() {
    let m = Mount::unstarted(true);
    let dir = guard_dir(&m);
    let (log, rotated, pid_file) = (dir.join("bg.log"), dir.join("bg.log.1"), dir.join("bg.pid"));
    let status = holt()
        .arg("mount")
        .arg(&m.mountpoint)
        .arg("--store")
        .arg(m.store.as_ref().unwrap())
        .arg("-d")
        .arg("--log-file")
        .arg(&log)
        .arg("--pid-file")
        .arg(&pid_file)
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    fs::rename(&log, &rotated).unwrap();
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened log file")) {
        assert!(
            Instant::now() < deadline,
            "no new log after SIGHUP; old log:\n{}",
            fs::read_to_string(&rotated).unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(mounted(&m.mountpoint), "SIGHUP must not unmount");
    fs::write(m.path("still"), b"here").unwrap();
    let status = holt().arg("umount").arg(&m.mountpoint).status().unwrap();
    assert!(status.success());
    // The daemon logs its last lines after the unmount returns: read the
    // logs once it has exited.
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: probing (signal 0) the daemon this test started.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < deadline, "the daemon did not exit after its unmount");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (new, old) = (fs::read_to_string(&log).unwrap(), fs::read_to_string(&rotated).unwrap());
    assert!(
        new.contains("unmounted") && !old.contains("unmounted"),
        "later lines go to the new file:\nnew:\n{new}\nold:\n{old}"
    );
    assert!(old.contains("mounted "), "{old}");
}

/// A read-only bind mount of `source` at `target`, unmounted on drop.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn new(source: &Path, target: &Path) -> ReadOnlyBind {
        fs::create_dir(target).unwrap();
        run(Path::new("/"), "mount", &["--bind", &source.to_string_lossy(), &target.to_string_lossy()]);
        let guard = ReadOnlyBind(target.to_path_buf());
        run(Path::new("/"), "mount", &["-o", "remount,bind,ro", &target.to_string_lossy()]);
        guard
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        // SAFETY: umount2 of the bind mount this guard made.
        unsafe { libc::umount2(cstr(&self.0).as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn read_only_option_mounts_and_reads_a_store_on_read_only_media() {
    let mut m = Mount::persistent(&[]);
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"from a read-only store").unwrap();
    m.unmount();
    let ro = guard_dir(&m).join("store-ro");
    let bind = ReadOnlyBind::new(m.store.as_ref().unwrap(), &ro);
    assert!(fs::write(ro.join("probe"), b"").is_err(), "the bind mount is read-only, even for root");
    let msg = refused(&m, &ro);
    assert!(msg.contains("Read-only file system"), "a read-write mount of read-only media says why: {msg}");
    m.store = Some(ro);
    m.spawn(&["-o", "ro"]);
    assert_eq!(fs::read(m.path("d/f")).unwrap(), b"from a read-only store");
    let err = fs::write(m.path("d/g"), b"").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(m.log_text().contains("(ro, "), "{}", m.log_text());
    m.unmount();
    drop(bind);
}

#[test]
fn python_open_and_a_clean_unmount_log_no_warning() {
    let mut m = Mount::persistent(&[]);
    let script = "open('f', 'w').write('x'); assert open('f').read() == 'x'";
    run(&m.mountpoint, "python3", &["-c", script]);
    m.unmount();
    let log = m.log_text();
    assert!(!log.contains("ioctl") && !log.contains("WARN"), "no warning from an open or a clean unmount:\n{log}");
    assert_eq!(log.lines().filter(|l| l.contains("] mounted ")).count(), 1, "one line at mount:\n{log}");
    assert!(log.contains("(rw, async, nosuid,nodev,exec, data path: "), "{log}");
}
