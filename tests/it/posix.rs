//! POSIX operations and their error cases through the kernel.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

use crate::harness::{cstr, errno, Mount};

fn err_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("operation should fail").raw_os_error().expect("an OS error")
}

#[test]
fn files_directories_and_link_counts() {
    let m = Mount::memory();
    fs::create_dir_all(m.path("a/b/c")).unwrap();
    fs::write(m.path("a/f"), b"contents").unwrap();
    assert_eq!(fs::read(m.path("a/f")).unwrap(), b"contents");
    assert_eq!(fs::metadata(m.path("a")).unwrap().nlink(), 3);
    assert_eq!(fs::metadata(m.path("a/b/c")).unwrap().nlink(), 2);
    fs::hard_link(m.path("a/f"), m.path("a/b/g")).unwrap();
    fs::hard_link(m.path("a/f"), m.path("h")).unwrap();
    let meta = fs::metadata(m.path("a/b/g")).unwrap();
    assert_eq!((meta.nlink(), meta.ino()), (3, fs::metadata(m.path("h")).unwrap().ino()));
    fs::remove_file(m.path("a/f")).unwrap();
    assert_eq!(fs::metadata(m.path("h")).unwrap().nlink(), 2);
    assert_eq!(err_of(fs::create_dir(m.path("a/b"))), libc::EEXIST);
    assert_eq!(err_of(fs::remove_dir(m.path("a/b"))), libc::ENOTEMPTY);
    assert_eq!(err_of(fs::read(m.path("missing"))), libc::ENOENT);
    assert_eq!(err_of(fs::create_dir(m.path("h/x"))), libc::ENOTDIR);
    assert_eq!(err_of(fs::hard_link(m.path("a"), m.path("alink"))), libc::EPERM);
    assert_eq!(err_of(fs::remove_file(m.path("a"))), libc::EISDIR);
    assert_eq!(err_of(fs::remove_dir(m.path("h"))), libc::ENOTDIR);
    let long = "x".repeat(256);
    assert_eq!(err_of(fs::write(m.path(&long), b"")), libc::ENAMETOOLONG);
    fs::write(m.path(&long[..255]), b"").unwrap();
    fs::remove_dir(m.path("a/b/c")).unwrap();
    assert_eq!(fs::metadata(m.path("a/b")).unwrap().nlink(), 2);
    fs::remove_dir_all(m.path("a")).unwrap();
    assert_eq!(fs::metadata(&m.mountpoint).unwrap().nlink(), 2);
}

fn renameat2(m: &Mount, from: &str, to: &str, flags: u32) -> i32 {
    let (a, b) = (cstr(&m.path(from)), cstr(&m.path(to)));
    // SAFETY: renameat2 with valid C paths.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) };
    if r == 0 {
        0
    } else {
        errno()
    }
}

#[test]
fn rename_flags_and_rules() {
    let m = Mount::memory();
    fs::create_dir_all(m.path("d1/sub")).unwrap();
    fs::create_dir(m.path("d2")).unwrap();
    fs::create_dir(m.path("empty")).unwrap();
    fs::write(m.path("f"), b"f").unwrap();
    fs::write(m.path("g"), b"g").unwrap();
    assert_eq!(renameat2(&m, "f", "g", libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(renameat2(&m, "f", "g", libc::RENAME_EXCHANGE), 0);
    assert_eq!((fs::read(m.path("f")).unwrap(), fs::read(m.path("g")).unwrap()), (b"g".to_vec(), b"f".to_vec()));
    assert_eq!(renameat2(&m, "f", "nothing", libc::RENAME_EXCHANGE), libc::ENOENT);
    assert_eq!(renameat2(&m, "d1", "d1/sub/x", 0), libc::EINVAL);
    assert_eq!(renameat2(&m, "f", "d1", 0), libc::EISDIR);
    assert_eq!(renameat2(&m, "d2", "f", 0), libc::ENOTDIR);
    assert_eq!(renameat2(&m, "d2", "d1", 0), libc::ENOTEMPTY);
    // Directory exchange across parents moves `..` and both link counts.
    assert_eq!(renameat2(&m, "d1/sub", "d2", libc::RENAME_EXCHANGE), 0);
    assert_eq!(fs::metadata(m.path("d1")).unwrap().nlink(), 3);
    assert_eq!(fs::canonicalize(m.path("d1/sub/..")).unwrap(), m.path("d1"));
    // Over an empty directory; then a plain move to another parent.
    assert_eq!(renameat2(&m, "d2", "empty", 0), 0);
    assert_eq!(fs::metadata(&m.mountpoint).unwrap().nlink(), 4);
    fs::rename(m.path("g"), m.path("d1/sub/g")).unwrap();
    assert_eq!(fs::read(m.path("d1/sub/g")).unwrap(), b"f");
    // Two names of one inode: rename is a no-op that keeps both.
    fs::hard_link(m.path("f"), m.path("f2")).unwrap();
    fs::rename(m.path("f"), m.path("f2")).unwrap();
    assert!(m.path("f").exists() && m.path("f2").exists());
}

fn xattr_set(path: &CString, name: &str, value: &[u8], flags: i32) -> i32 {
    let n = CString::new(name).unwrap();
    // SAFETY: setxattr with valid pointers and lengths.
    let r = unsafe { libc::setxattr(path.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) };
    if r == 0 {
        0
    } else {
        errno()
    }
}

fn xattr_get(path: &CString, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    // SAFETY: getxattr writes at most `size` bytes into buf.
    let r = unsafe { libc::getxattr(path.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(if size == 0 { 0 } else { r as usize });
    Ok(if size == 0 { (r as u64).to_le_bytes().to_vec() } else { buf })
}

#[test]
fn xattrs_honour_flags_and_the_size_protocol() {
    let m = Mount::memory();
    fs::write(m.path("f"), b"").unwrap();
    let p = cstr(&m.path("f"));
    assert_eq!(xattr_set(&p, "user.a", b"1", libc::XATTR_REPLACE), libc::ENODATA);
    assert_eq!(xattr_set(&p, "user.a", b"hello", libc::XATTR_CREATE), 0);
    assert_eq!(xattr_set(&p, "user.a", b"x", libc::XATTR_CREATE), libc::EEXIST);
    assert_eq!(xattr_set(&p, "user.b", &vec![7u8; 65536], 0), 0);
    assert_eq!(xattr_get(&p, "user.a", 0).unwrap(), 5u64.to_le_bytes());
    assert_eq!(xattr_get(&p, "user.a", 3), Err(libc::ERANGE));
    assert_eq!(xattr_get(&p, "user.a", 64).unwrap(), b"hello");
    assert_eq!(xattr_get(&p, "user.b", 65536).unwrap().len(), 65536);
    let mut list = vec![0u8; 64];
    // SAFETY: listxattr writes at most 64 bytes.
    let n = unsafe { libc::listxattr(p.as_ptr(), list.as_mut_ptr().cast(), 64) };
    assert_eq!(&list[..n as usize], b"user.a\0user.b\0");
    // SAFETY: a too-small buffer must give ERANGE, not a truncated list.
    assert_eq!(unsafe { libc::listxattr(p.as_ptr(), list.as_mut_ptr().cast(), 5) }, -1);
    assert_eq!(errno(), libc::ERANGE);
    let name = CString::new("user.a").unwrap();
    // SAFETY: removexattr with valid C strings.
    assert_eq!(unsafe { libc::removexattr(p.as_ptr(), name.as_ptr()) }, 0);
    assert_eq!(unsafe { libc::removexattr(p.as_ptr(), name.as_ptr()) }, -1);
    assert_eq!(errno(), libc::ENODATA);
    assert_eq!(xattr_get(&p, "user.a", 64), Err(libc::ENODATA));
}

#[test]
fn symlinks_resolve_and_report_their_length() {
    let m = Mount::memory();
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/target"), b"through the link").unwrap();
    std::os::unix::fs::symlink("dir/target", m.path("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", m.path("dangling")).unwrap();
    assert_eq!(fs::read_link(m.path("link")).unwrap().to_str(), Some("dir/target"));
    assert_eq!(fs::symlink_metadata(m.path("link")).unwrap().len(), 10);
    assert_eq!(fs::read(m.path("link")).unwrap(), b"through the link");
    assert_eq!(err_of(fs::read(m.path("dangling"))), libc::ENOENT);
    let long = "t".repeat(4095);
    std::os::unix::fs::symlink(&long, m.path("long")).unwrap();
    assert_eq!(fs::read_link(m.path("long")).unwrap().as_os_str().len(), 4095);
}

#[test]
fn sparse_files_seek_data_and_holes() {
    let m = Mount::memory();
    let mut f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.path("sparse")).unwrap();
    f.seek(SeekFrom::Start(10 << 20)).unwrap();
    f.write_all(b"end").unwrap();
    f.sync_all().unwrap();
    let meta = f.metadata().unwrap();
    assert_eq!(meta.len(), (10 << 20) + 3);
    assert!(meta.blocks() * 512 < 1 << 20, "a sparse file allocates little: {} blocks", meta.blocks());
    let fd = f.as_raw_fd();
    // SAFETY: lseek on an open descriptor.
    unsafe {
        assert_eq!(libc::lseek(fd, 0, libc::SEEK_DATA), 10 << 20);
        assert_eq!(libc::lseek(fd, 0, libc::SEEK_HOLE), 0);
        assert_eq!(libc::lseek(fd, 10 << 20, libc::SEEK_HOLE), (10 << 20) + 3);
        assert_eq!(libc::lseek(fd, (10 << 20) + 3, libc::SEEK_DATA), -1);
    }
    assert_eq!(errno(), libc::ENXIO);
    let mut buf = vec![1u8; 4096];
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // SAFETY: fallocate on an open descriptor.
    unsafe {
        assert_eq!(libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 10 << 20, 3), 0);
        assert_eq!(libc::fallocate(fd, 0, 0, 1 << 20), 0);
    }
    assert_eq!(f.metadata().unwrap().len(), (10 << 20) + 3);
    let mut tail = [9u8; 3];
    f.seek(SeekFrom::Start(10 << 20)).unwrap();
    f.read_exact(&mut tail).unwrap();
    assert_eq!(tail, [0, 0, 0]);
}

#[test]
fn copy_file_range_copies_within_the_mount() {
    let m = Mount::memory();
    fs::write(m.path("src"), (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let src = File::open(m.path("src")).unwrap();
    let dst = OpenOptions::new().create(true).truncate(true).write(true).open(m.path("dst")).unwrap();
    let (mut off_in, mut off_out) = (4i64, 0i64);
    // SAFETY: copy_file_range between two open descriptors with valid offsets.
    let n = unsafe { libc::copy_file_range(src.as_raw_fd(), &mut off_in, dst.as_raw_fd(), &mut off_out, 400_000, 0) };
    assert_eq!(n, 399_996);
    drop(dst);
    assert_eq!(fs::read(m.path("dst")).unwrap(), fs::read(m.path("src")).unwrap()[4..]);
}

#[test]
fn unlinked_open_file_works_until_closed() {
    let m = Mount::memory();
    let base = statvfs_files_used(&m);
    let mut f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.path("tmp")).unwrap();
    f.write_all(b"before").unwrap();
    fs::remove_file(m.path("tmp")).unwrap();
    assert!(!m.path("tmp").exists());
    f.write_all(b" and after").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "before and after");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    assert_eq!(statvfs_files_used(&m), base + 1);
    drop(f);
    // release is asynchronous to close(2): give the daemon a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while statvfs_files_used(&m) != base && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(statvfs_files_used(&m), base, "the orphan is reclaimed at its last close");
}

fn statvfs_files_used(m: &Mount) -> u64 {
    // SAFETY: statvfs fills a zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cstr(&m.mountpoint).as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_namemax, 255);
    st.f_files - st.f_ffree
}

#[test]
fn setattr_chmod_chown_truncate_and_utimens() {
    let m = Mount::memory();
    fs::write(m.path("f"), b"0123456789").unwrap();
    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o4751)).unwrap();
    assert_eq!(fs::metadata(m.path("f")).unwrap().mode() & 0o7777, 0o4751);
    let p = cstr(&m.path("f"));
    // SAFETY: chown with a valid C path.
    assert_eq!(unsafe { libc::chown(p.as_ptr(), 1234, 5678) }, 0);
    let meta = fs::metadata(m.path("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    assert_eq!(meta.mode() & 0o4000, 0, "chown clears setuid");
    OpenOptions::new().write(true).open(m.path("f")).unwrap().set_len(4).unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"0123");
    let times = [
        libc::timespec { tv_sec: 1_000_000_000, tv_nsec: 123_456_789 },
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
    ];
    let before = fs::metadata(m.path("f")).unwrap();
    // SAFETY: utimensat with a valid path and two timespecs.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) }, 0);
    let after = fs::metadata(m.path("f")).unwrap();
    assert_eq!((after.atime(), after.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((after.mtime(), after.mtime_nsec()), (before.mtime(), before.mtime_nsec()));
    let now = [libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }; 2];
    // SAFETY: as above.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), now.as_ptr(), 0) }, 0);
    assert!(fs::metadata(m.path("f")).unwrap().atime() > 1_000_000_000);
}

#[test]
fn special_files_fifo_socket_and_devices() {
    let m = Mount::memory();
    let fifo = cstr(&m.path("fifo"));
    // SAFETY: mkfifo/mknod with valid C paths.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let dev = cstr(&m.path("null"));
    assert_eq!(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(m.path("sock")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(m.path("fifo")).unwrap().file_type().is_fifo());
    assert!(fs::metadata(m.path("sock")).unwrap().file_type().is_socket());
    let meta = fs::metadata(m.path("null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), libc::makedev(1, 3));
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, -1);
    assert_eq!(errno(), libc::EEXIST);
}

#[test]
fn open_flags_excl_trunc_and_append() {
    let m = Mount::memory();
    fs::write(m.path("f"), b"abc").unwrap();
    let excl = OpenOptions::new().write(true).create_new(true).open(m.path("f"));
    assert_eq!(err_of(excl), libc::EEXIST);
    let mut a = OpenOptions::new().append(true).open(m.path("f")).unwrap();
    a.write_all(b"def").unwrap();
    drop(a);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"abcdef");
    OpenOptions::new().write(true).truncate(true).open(m.path("f")).unwrap();
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), 0);
    assert_eq!(err_of(OpenOptions::new().write(true).custom_flags(libc::O_DIRECTORY).open(m.path("f"))), libc::ENOTDIR);
}

#[test]
fn read_only_mount_refuses_writes() {
    let m = Mount::memory_with(&["-o", "ro"]);
    assert_eq!(err_of(fs::write(m.path("f"), b"x")), libc::EROFS);
    assert_eq!(err_of(fs::create_dir(m.path("d"))), libc::EROFS);
    assert!(fs::read_dir(&m.mountpoint).unwrap().next().is_none());
}

/// telldir/seekdir through the kernel: every position a directory stream
/// reported stays usable, also far back in a big directory and after
/// entries were removed; reading there continues with the first name that
/// still exists after the one read at that position.
#[test]
fn seekdir_returns_to_any_earlier_position_after_removals() {
    let m = Mount::memory();
    let d = m.path("big");
    fs::create_dir(&d).unwrap();
    let names: Vec<String> = (0..6000).map(|i| format!("n{i:05}")).collect();
    for n in &names {
        File::create(d.join(n)).unwrap();
    }
    // SAFETY: a directory stream opened, read and closed here; the dirent
    // pointers are read before the next readdir call.
    unsafe {
        let dir = libc::opendir(cstr(&d).as_ptr());
        assert!(!dir.is_null(), "opendir: errno {}", errno());
        let mut marks = Vec::new(); // (name just read, position after it)
        loop {
            let e = libc::readdir(dir);
            if e.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned();
            if name.starts_with('n') {
                marks.push((name, libc::telldir(dir)));
            }
        }
        assert_eq!(marks.len(), names.len());
        for n in names.iter().skip(1).step_by(3) {
            fs::remove_file(d.join(n)).unwrap();
        }
        for (i, (name, pos)) in marks.iter().enumerate().step_by(499) {
            libc::seekdir(dir, *pos);
            let e = libc::readdir(dir);
            let next = (!e.is_null()).then(|| std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned());
            let want = (i + 1..names.len()).find(|j| j % 3 != 1).map(|j| names[j].clone());
            assert_eq!(next, want, "after seekdir to the position after {name} (errno {})", errno());
        }
        libc::closedir(dir);
    }
}

/// A write, fallocate, hole punch or zero-range by a user outside a setgid
/// file's group drops the setgid bit, as on ext4 and tmpfs, also where the
/// group may not execute; a member keeps it.
#[test]
fn setgid_is_dropped_when_an_outsider_changes_the_contents() {
    let m = Mount::persistent(&["-o", "allow_other"]);
    fs::set_permissions(&m.mountpoint, fs::Permissions::from_mode(0o777)).unwrap();
    let f = m.path("f");
    fs::write(&f, vec![7u8; 16384]).unwrap();
    let path = f.to_str().unwrap();
    let as_nobody = |groups: &str, cmd: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups])
            .args(cmd)
            .output()
            .expect("setpriv (util-linux) runs");
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let changes: [&[&str]; 4] = [
        &["sh", "-c", &format!("printf x >> {path}")],
        &["fallocate", "-l", "32768", path],
        &["fallocate", "-p", "-o", "0", "-l", "4096", path],
        &["fallocate", "-z", "-o", "4096", "-l", "4096", path],
    ];
    for cmd in changes {
        for (groups, kept) in [("--clear-groups", false), ("--groups=0", true)] {
            fs::set_permissions(&f, fs::Permissions::from_mode(0o2666)).unwrap();
            as_nobody(groups, cmd);
            let mode = fs::metadata(&f).unwrap().mode() & 0o7777;
            let want = if kept { 0o2666 } else { 0o666 };
            assert_eq!(mode, want, "{cmd:?} as nobody with {groups}: mode {mode:o}");
        }
    }
}

fn atime_of(path: &std::path::Path) -> (i64, i64) {
    let m = fs::metadata(path).unwrap();
    (m.atime(), m.atime_nsec())
}

/// Read `path` after a pause long enough for any atime update to show.
fn read_later(path: &std::path::Path) {
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::read(path).unwrap();
}

/// The atime options hold for file reads on both data paths (with
/// passthrough the kernel reads data objects itself) and for listings:
/// noatime never updates, relatime updates a read atime once per change,
/// strictatime on every read; nodiratime leaves directories alone.
#[test]
fn atime_options_hold_for_reads_and_listings() {
    for (opts, first_read_updates, second_read_updates) in
        [("noatime", false, false), ("relatime", true, false), ("strictatime", true, true)]
    {
        let m = Mount::persistent(&["-o", opts]);
        let f = m.path("f");
        fs::write(&f, b"data").unwrap();
        let written = atime_of(&f);
        read_later(&f);
        let first = atime_of(&f);
        read_later(&f);
        let second = atime_of(&f);
        assert_eq!(first != written, first_read_updates, "-o {opts}: first read");
        assert_eq!(second != first, second_read_updates, "-o {opts}: second read");
        let table = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = table.lines().find(|l| l.contains(m.mountpoint.to_str().unwrap())).unwrap();
        // The table names relatime and noatime; strictatime is the absence of both.
        let shown = if opts == "strictatime" { !line.contains("atime,") } else { line.contains(opts) };
        assert!(shown, "-o {opts}: {line}");
    }
    let m = Mount::persistent(&["-o", "nodiratime,lazytime"]);
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("x"), b"").unwrap();
    let before = atime_of(&d);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
    assert_eq!(atime_of(&d), before, "nodiratime: a listing leaves the directory's atime");
}

/// Setuid and setgid go as on ext4 when a file changes: a write, truncate,
/// O_TRUNC open or fallocate by an unprivileged user drops setuid, and
/// setgid where the group may execute; root's writes keep them; a chown
/// drops setuid even for root. (The daemon applies this rule itself:
/// FUSE_HANDLE_KILLPRIV_V2.)
#[test]
fn setuid_and_setgid_are_dropped_by_unprivileged_changes() {
    let m = Mount::persistent(&["-o", "allow_other"]);
    fs::set_permissions(&m.mountpoint, fs::Permissions::from_mode(0o777)).unwrap();
    let f = m.path("f");
    fs::write(&f, vec![1u8; 8192]).unwrap();
    let path = f.to_str().unwrap();
    let mode = || fs::metadata(&f).unwrap().mode() & 0o7777;
    let as_nobody = |cmd: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(cmd)
            .output()
            .expect("setpriv (util-linux) runs");
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let append = format!("printf x >> {path}");
    let overwrite = format!("printf y 1<> {path}");
    let o_trunc = format!("printf z > {path}");
    let changes: [&[&str]; 5] = [
        &["sh", "-c", &append],
        &["sh", "-c", &overwrite],
        &["sh", "-c", &o_trunc],
        &["truncate", "-s", "100", path],
        &["fallocate", "-l", "16384", path],
    ];
    for cmd in changes {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).unwrap();
        as_nobody(cmd);
        assert_eq!(mode(), 0o777, "{cmd:?} as nobody");
        // Twice: a second change of the now plain file must not restore or fail anything.
        as_nobody(cmd);
        assert_eq!(mode(), 0o777, "{cmd:?} as nobody, again");
    }
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).unwrap();
    fs::OpenOptions::new().append(true).open(&f).unwrap().write_all(b"root").unwrap();
    assert_eq!(mode(), 0o6777, "root's writes keep both bits");
    std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
    assert_eq!(mode(), 0o0777, "a chown drops setuid, and setgid with group execute");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o2767)).unwrap();
    std::os::unix::fs::chown(&f, Some(0), None).unwrap();
    assert_eq!(mode(), 0o2767, "setgid without group execute survives root's chown");
}
