//! `holt-fs dump` and `holt-fs load` against real mounts: a tree with
//! every file type round-trips (what the kernel shows of it, and the
//! stream byte for byte); a dump taken through the mountpoint while
//! another thread renames is one moment's; bad streams, non-empty and
//! mounted stores are refused with clear words.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use holt_mount::dump::format::{Record, StreamReader};

use crate::harness::{cstr, errno, Mount};

mod memory;

const MIB: u64 = 1 << 20;

fn holt(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holt-fs")).args(args).output().expect("holt-fs runs")
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `holt-fs dump PATH -o FILE --no-ctime`, which must succeed.
fn dump_to(path: &Path, file: &Path) {
    let out = holt(&[os("dump"), path.as_os_str(), os("-o"), file.as_os_str(), os("--no-ctime")]);
    assert!(out.status.success(), "dump {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

/// `holt-fs load STORE -i FILE`: success and stderr.
fn load_from(store: &Path, file: &Path) -> (bool, String) {
    let out = holt(&[os("load"), store.as_os_str(), os("-i"), file.as_os_str()]);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let name = cstr(Path::new(name));
    // SAFETY: lsetxattr with valid C strings and a buffer of `value.len()` bytes.
    let rc = unsafe { libc::lsetxattr(cstr(path).as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(rc, 0, "setxattr {name:?} on {}: errno {}", path.display(), errno());
}

fn mknod(path: &Path, mode: u32, dev: u64) {
    // SAFETY: mknod with a valid C path.
    assert_eq!(unsafe { libc::mknod(cstr(path).as_ptr(), mode, dev) }, 0, "mknod {}: errno {}", path.display(), errno());
}

/// atime and mtime to the nanosecond, not following a symlink.
fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = [
        libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 },
        libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 },
    ];
    // SAFETY: utimensat with a valid C path and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, cstr(path).as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(rc, 0, "utimensat {}: errno {}", path.display(), errno());
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    // SAFETY: lchown with a valid C path.
    assert_eq!(unsafe { libc::lchown(cstr(path).as_ptr(), uid, gid) }, 0, "lchown {}: errno {}", path.display(), errno());
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The id of an ACL entry that names no one.
const NO_ID: u32 = u32::MAX;

/// A POSIX ACL in the kernel's xattr encoding, from (tag, perm, id) entries.
fn posix_acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// Names no path-as-string tool survives.
fn odd_names() -> Vec<Vec<u8>> {
    vec![b"new\nline".to_vec(), b"\xff\xfe not utf-8".to_vec(), vec![b'x'; 255], b" lead and trail ".to_vec()]
}

/// Every kind of file, hard links (one to a symlink, one across
/// directories), user and trusted xattrs, POSIX ACLs (an access ACL, a
/// default ACL and what it gave a file made under it), a sparse file with a trailing
/// hole, odd names, owners, setuid/sticky modes, times to the nanosecond
/// (set last, directories after their entries).
fn build(root: &Path) {
    let dir = root.join("dir");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("plain"), b"hello").unwrap();
    fs::hard_link(dir.join("plain"), root.join("hardlink")).unwrap();
    fs::hard_link(dir.join("plain"), dir.join("sub/third")).unwrap();
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.write_all_at(&[b'a'; 4096], 0).unwrap();
    sparse.write_all_at(&[b'b'; 4096], 8 * MIB).unwrap();
    sparse.set_len(16 * MIB).unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("dir/plain", root.join("sym")).unwrap();
    fs::hard_link(root.join("sym"), dir.join("sym2")).unwrap();
    mknod(&root.join("fifo"), libc::S_IFIFO | 0o644, 0);
    mknod(&root.join("chr"), libc::S_IFCHR | 0o600, libc::makedev(1, 3));
    mknod(&root.join("blk"), libc::S_IFBLK | 0o660, libc::makedev(8, 1));
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());
    for name in odd_names() {
        fs::write(root.join(OsStr::from_bytes(&name)), &name).unwrap();
    }
    let acl = posix_acl(&[(0x01, 7, NO_ID), (0x02, 5, 1234), (0x04, 5, NO_ID), (0x10, 5, NO_ID), (0x20, 4, NO_ID)]);
    fs::create_dir(root.join("acl-dir")).unwrap();
    setxattr(&root.join("acl-dir"), "system.posix_acl_default", &acl);
    fs::write(root.join("acl-dir/inherited"), b"i").unwrap();
    fs::write(root.join("acl-file"), b"a").unwrap();
    setxattr(&root.join("acl-file"), "system.posix_acl_access", &acl);
    setxattr(&dir.join("plain"), "user.a", &[0, 1, 2, 255]);
    setxattr(&dir, "user.big", &vec![7; 60_000]);
    setxattr(&root.join("sym"), "trusted.on-link", b"t");
    setxattr(root, "user.root", b"r");
    lchown(&dir.join("plain"), 1234, 5678);
    lchown(&root.join("sym"), 42, 43);
    chmod(&dir.join("plain"), 0o4751);
    chmod(&dir.join("sub"), 0o1777);
    for (i, path) in [dir.join("plain"), root.join("sparse"), root.join("sym"), dir.join("sub"), dir, root.to_path_buf()]
        .iter()
        .enumerate()
    {
        set_times(path, (1_000_000_000 + i as i64, 1 + i as i64), (1_600_000_000 + i as i64, 999_999_999 - i as i64));
    }
}

/// What the kernel shows of one name, as text: lstat but ino, dev and
/// ctime, and xattr names with their values' lengths and checksums.
/// Nothing is read, so that nothing moves an atime the comparison sees.
type Seen = String;

fn digest(bytes: &[u8]) -> String {
    format!("{}b/{:08x}", bytes.len(), crc32(bytes))
}

/// A checksum for comparing contents without printing them.
fn crc32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0xffff_ffffu32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| if c & 1 == 1 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 })
    }) ^ 0xffff_ffff
}

fn xattrs(path: &Path) -> Vec<String> {
    let mut names = vec![0u8; 4096];
    // SAFETY: llistxattr into a buffer of its length; a valid C path.
    let n = unsafe { libc::llistxattr(cstr(path).as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "listxattr {}: errno {}", path.display(), errno());
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        let cname = cstr(Path::new(OsStr::from_bytes(name)));
        // SAFETY: lgetxattr into a buffer of its length.
        let len = unsafe { libc::lgetxattr(cstr(path).as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        assert!(len >= 0, "getxattr: errno {}", errno());
        value.truncate(len as usize);
        out.push(format!("{}={}", String::from_utf8_lossy(name), digest(&value)));
    }
    out.sort();
    out
}

/// Every name under `root` (relative, bytes) with `show` of it.
fn walk(root: &Path, show: &dyn Fn(&Path, &fs::Metadata) -> String) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        out.insert(rel, show(&path, &m));
        if m.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

/// What the kernel shows of every name, reading no file (the mount is
/// noatime, so listings move no directory's atime either).
fn seen(root: &Path) -> BTreeMap<Vec<u8>, Seen> {
    walk(root, &|path, m| {
        format!(
            "mode {:o} owner {}:{} nlink {} size {} rdev {:#x} atime {}.{:09} mtime {}.{:09} allocated {} xattrs {:?}",
            m.mode(), m.uid(), m.gid(), m.nlink(), m.size(), m.rdev(), m.atime(), m.atime_nsec(), m.mtime(),
            m.mtime_nsec(), m.blocks() > 0, xattrs(path),
        )
    })
}

/// Every file's contents and every symlink's target.
fn contents(root: &Path) -> BTreeMap<Vec<u8>, String> {
    walk(root, &|path, m| match m.file_type() {
        t if t.is_symlink() => format!("-> {:?}", fs::read_link(path).unwrap()),
        t if t.is_file() => digest(&fs::read(path).unwrap()),
        _ => String::new(),
    })
}

#[test]
fn every_kind_of_file_round_trips_through_dump_and_load() {
    let mut a = Mount::persistent(&["-o", "noatime,dev"]);
    build(&a.mountpoint);
    let before = seen(&a.mountpoint);
    for (name, acl) in [(&b"acl-file"[..], "access"), (b"acl-dir", "default"), (b"acl-dir/inherited", "access")] {
        assert!(before[name].contains(&format!("system.posix_acl_{acl}")), "{}", before[name]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let (first, again) = (tmp.path().join("first.dump"), tmp.path().join("again.dump"));
    dump_to(&a.mountpoint, &first);
    assert_same(&before, &seen(&a.mountpoint), "dumping changes nothing, atimes included");
    let bytes_before = contents(&a.mountpoint);
    a.unmount();
    let mut b = Mount::unstarted(true);
    let store_b = b.store.clone().unwrap();
    let (ok, err) = load_from(&store_b, &first);
    assert!(ok, "load failed: {err}");
    b.spawn(&["-o", "noatime,dev"]);
    assert_same(&before, &seen(&b.mountpoint), "the loaded tree looks the same through the kernel");
    let sparse = fs::metadata(b.path("sparse")).unwrap();
    assert_eq!(sparse.len(), 16 * MIB);
    assert!(sparse.blocks() * 512 < MIB, "holes stay holes: {} blocks", sparse.blocks());
    b.unmount();
    dump_to(&store_b, &again);
    assert!(fs::read(&first).unwrap() == fs::read(&again).unwrap(), "dump -> load -> dump is byte-identical");
    b.spawn(&["-o", "noatime,dev"]);
    assert_same(&bytes_before, &contents(&b.mountpoint), "the loaded files hold the same bytes");
}

/// `after` shows every name of `before` as `before` does: differences
/// listed, one per line.
fn assert_same(before: &BTreeMap<Vec<u8>, Seen>, after: &BTreeMap<Vec<u8>, Seen>, what: &str) {
    let show = |name: &Vec<u8>| String::from_utf8_lossy(name).into_owned();
    let mut diffs = Vec::new();
    for name in before.keys().chain(after.keys().filter(|k| !before.contains_key(*k))) {
        match (before.get(name), after.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => diffs.push(format!("{:?}:\n  before {a:?}\n  after  {b:?}", show(name))),
        }
    }
    assert!(diffs.is_empty(), "{what}, but:\n{}", diffs.join("\n"));
}

/// Every path of a stream.
fn paths(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = StreamReader::new(stream).expect("a dump");
    let (mut dirs, mut out): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    while let Some(record) = reader.next_record().expect("a whole dump") {
        let name = match record {
            Record::Inode(r) => {
                let path = [dirs.concat(), r.name.clone()].concat();
                if r.kind == holt_mount::schema::FileKind::Dir {
                    dirs.push([r.name.as_slice(), b"/"].concat());
                }
                path
            }
            Record::Link { name, .. } => [dirs.concat(), name].concat(),
            Record::End => {
                dirs.pop();
                continue;
            }
            _ => continue,
        };
        out.push(name);
    }
    out
}

/// While a thread renames a file back and forth between two directories
/// and moves a 500-file tree between them with rename(2), dumps through
/// the mountpoint see the file exactly once and the tree whole in one place.
#[test]
fn a_dump_through_the_mountpoint_is_one_moment_while_renames_run() {
    let m = Mount::persistent(&[]);
    fs::create_dir(m.path("x")).unwrap();
    fs::create_dir(m.path("y")).unwrap();
    fs::write(m.path("x/f"), b"f").unwrap();
    fs::create_dir(m.path("x/tree")).unwrap();
    for i in 0..500 {
        fs::write(m.path(&format!("x/tree/t{i:03}")), b"").unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let (root, done) = (m.mountpoint.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut moves = 0u32;
            while !done.load(Ordering::Relaxed) {
                let (from, to) = if moves.is_multiple_of(2) { ("x", "y") } else { ("y", "x") };
                fs::rename(root.join(from).join("f"), root.join(to).join("f")).unwrap();
                fs::rename(root.join(from).join("tree"), root.join(to).join("tree")).unwrap();
                moves += 1;
            }
            moves
        })
    };
    for _ in 0..8 {
        let out = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("dump").arg(&m.mountpoint).output().unwrap();
        assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
        let found = paths(&out.stdout);
        let files: Vec<_> = found.iter().filter(|p| p.ends_with(b"/f")).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        assert_eq!(files.len(), 1, "the renamed file appears exactly once: {files:?}");
        let in_x = found.iter().filter(|p| p.starts_with(b"/x/tree/")).count();
        let in_y = found.iter().filter(|p| p.starts_with(b"/y/tree/")).count();
        assert!((in_x, in_y) == (500, 0) || (in_x, in_y) == (0, 500), "the tree moved whole: {in_x} {in_y}");
    }
    done.store(true, Ordering::Relaxed);
    assert!(mover.join().unwrap() > 0, "renames ran during the dumps");
}

#[test]
fn load_refuses_mounted_and_non_empty_stores_and_bad_streams_and_a_pipe_copies() {
    let mut m = Mount::persistent(&[]);
    fs::write(m.path("f"), b"data").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.dump");
    dump_to(&m.mountpoint, &good);
    let store = m.store.clone().unwrap();
    let (ok, err) = load_from(&store, &good);
    assert!(!ok && err.contains("in use by a holt-fs daemon"), "{err}");
    let (ok, err) = load_from(&m.mountpoint, &good);
    assert!(!ok && err.contains("is the mountpoint of a holt-fs mount"), "{err}");
    m.unmount();
    let (ok, err) = load_from(&store, &good);
    assert!(!ok && err.contains("already holds files"), "{err}");
    let bytes = fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.dump");
    fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let (ok, err) = load_from(&tmp.path().join("s1"), &cut);
    assert!(!ok && err.contains("truncated"), "{err}");
    assert!(!tmp.path().join("s1").exists(), "a failed load removes the store it was making");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x04;
    let bad = tmp.path().join("bad.dump");
    fs::write(&bad, &flipped).unwrap();
    let (ok, err) = load_from(&tmp.path().join("s2"), &bad);
    assert!(!ok && err.contains("corrupt") && err.contains("at byte"), "{err}");
    // dump A | load B
    let copy = tmp.path().join("copy");
    let mut dump = Command::new(env!("CARGO_BIN_EXE_holt-fs")).arg("dump").arg(&store).stdout(Stdio::piped()).spawn().unwrap();
    let load = Command::new(env!("CARGO_BIN_EXE_holt-fs"))
        .arg("load")
        .arg(&copy)
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(dump.wait().unwrap().success() && load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let b = {
        let mut b = Mount::unstarted(false);
        b.store = Some(copy);
        b.spawn(&[]);
        b
    };
    assert_eq!(fs::read(b.path("f")).unwrap(), b"data");
}

/// A failed dump leaves its destination as it was. (It once removed
/// `-o /dev/null` after a failure, and the machine had no /dev/null.)
#[test]
fn dump_of_a_dead_mount_says_what_to_do_and_touches_no_output() {
    let mut m = Mount::persistent(&[]);
    m.kill9();
    let out = holt(&[os("dump"), m.mountpoint.as_os_str(), os("-o"), os("/dev/null")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is gone") && err.contains("holt-fs umount"), "{err}");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&fs::metadata("/dev/null").unwrap().file_type()));
    let tmp = tempfile::tempdir().unwrap();
    let kept = tmp.path().join("kept.dump");
    fs::write(&kept, b"an older dump").unwrap();
    let out = holt(&[os("dump"), m.mountpoint.as_os_str(), os("-o"), kept.as_os_str()]);
    assert!(!out.status.success());
    assert_eq!(fs::read(&kept).unwrap(), b"an older dump", "a failed dump leaves the file as it was");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "and nothing beside it");
    let store: PathBuf = m.store.clone().unwrap();
    let out = holt(&[os("dump"), store.as_os_str(), os("-o"), os("/dev/null")]);
    assert!(out.status.success(), "the store of a killed daemon is dumped read-only: {}", String::from_utf8_lossy(&out.stderr));
}
