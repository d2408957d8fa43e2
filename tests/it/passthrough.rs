//! File data through FUSE passthrough: the kernel writes data objects
//! directly and the daemon never sees the write, yet sizes and times stay
//! right and every completed write survives kill -9 of the daemon, because
//! the object is the only authority for them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use std::time::{Duration, Instant};

use crate::harness::{statvfs, Mount, Tmpfs};

/// Write through a shared mapping of `file`'s first `len` bytes.
fn write_mapped(file: &fs::File, len: usize, byte: u8) {
    // SAFETY: a shared mapping of an open file of at least `len` bytes,
    // written within bounds and unmapped before return.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0);
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        std::ptr::write_bytes(p.cast::<u8>(), byte, len);
        assert_eq!(libc::munmap(p, len), 0);
    }
}

#[test]
fn passthrough_writes_keep_sizes_and_survive_kill9() {
    let mut m = Mount::persistent(&[]);
    if std::env::var("HOLT_IT_MOUNT_ARGS").unwrap_or_default().contains("--no-passthrough") {
        assert!(!m.passthrough(), "--no-passthrough serves data through the daemon");
    } else {
        assert!(m.passthrough(), "a store mount uses FUSE passthrough where the kernel has it; log:\n{}", m.log_text());
    }
    let mut appended = OpenOptions::new().create(true).append(true).open(m.path("log")).unwrap();
    for i in 0..100u32 {
        writeln!(appended, "line {i}").unwrap();
    }
    let expect_log: String = (0..100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(fs::metadata(m.path("log")).unwrap().len(), expect_log.len() as u64, "stat sees appends at once");

    let mapped = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(m.path("mapped")).unwrap();
    mapped.set_len(64 * 1024).unwrap();
    write_mapped(&mapped, 64 * 1024, b'M');
    let sparse = OpenOptions::new().write(true).create(true).truncate(true).open(m.path("sparse")).unwrap();
    sparse.write_all_at(b"tail", 10 << 20).unwrap();
    let before = fs::metadata(m.path("sparse")).unwrap();
    assert_eq!(before.len(), (10 << 20) + 4);
    assert!(before.blocks() * 512 < 1 << 20, "a hole stays a hole");
    drop((appended, mapped, sparse));

    m.kill9();
    m.spawn(&[]);
    assert_eq!(fs::read_to_string(m.path("log")).unwrap(), expect_log);
    assert_eq!(fs::read(m.path("mapped")).unwrap(), vec![b'M'; 64 * 1024], "stores through a mapping survive");
    let after = fs::metadata(m.path("sparse")).unwrap();
    assert_eq!((after.len(), after.mtime(), after.mtime_nsec()), (before.len(), before.mtime(), before.mtime_nsec()));
    let data = fs::read(m.path("sparse")).unwrap();
    assert!(data[..10 << 20].iter().all(|&b| b == 0) && &data[10 << 20..] == b"tail");
}

/// Write `byte` through a shared mapping that `mapped` made, then msync it
/// (which cleans the page, so the next store faults and stamps mtime).
fn store_and_sync(map: *mut libc::c_void, len: usize, byte: u8) {
    // SAFETY: `map` is a live shared mapping of at least `len` bytes.
    unsafe {
        std::ptr::write_bytes(map.cast::<u8>(), byte, len);
        assert_eq!(libc::msync(map, len, libc::MS_SYNC), 0, "msync: {}", std::io::Error::last_os_error());
    }
}

/// A shared writable mapping outlives its handle and changes the file the
/// daemon cannot see: a stat after the handle's close must still see it
/// (the daemon's attribute cache must not keep the first look).
#[test]
fn writes_through_a_mapping_that_outlived_its_handle_show_in_stat() {
    const LEN: usize = 4096;
    let mut m = Mount::persistent(&["--attr-ttl", "0", "--entry-ttl", "0"]);
    let path = m.path("mapped-after-close");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(LEN as u64).unwrap();
    // SAFETY: a shared mapping of the open file's LEN bytes, unmapped below.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), LEN, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0) };
    assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    store_and_sync(map, LEN, b'a');
    drop(file);
    let first = fs::metadata(&path).unwrap();
    let first = (first.mtime(), first.mtime_nsec());
    assert_eq!(fs::metadata(&path).unwrap().mtime_nsec(), first.1, "a second look without a change sees the same");
    // Past the backing filesystem's coarse clock tick.
    std::thread::sleep(Duration::from_millis(30));
    store_and_sync(map, LEN, b'b');
    let later = fs::metadata(&path).unwrap();
    // SAFETY: the mapping made above, no longer used.
    assert_eq!(unsafe { libc::munmap(map, LEN) }, 0);
    assert!((later.mtime(), later.mtime_nsec()) > first, "the store through the mapping is seen: {first:?} then {:?}", (later.mtime(), later.mtime_nsec()));
    assert_eq!(fs::read(&path).unwrap(), vec![b'b'; LEN]);
    m.unmount();
}

/// Free bytes of the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let st = statvfs(path);
    st.f_bavail * st.f_frsize
}

/// Released passthrough backings are kept for a quick reopen; removing the
/// file must still give its space back. The store sits on a tmpfs that
/// holds one big file but not two: each round writes one, reads it back
/// (a reopen through the kept backing) and removes it, and the next round
/// only fits if the kept backing let go of the removed object.
#[test]
fn removing_a_file_frees_its_space_although_its_backing_was_kept() {
    const DISK: u64 = 96 << 20;
    const BIG: usize = 48 << 20;
    let disk = Tmpfs::mount(DISK);
    let mut m = Mount::unstarted(true);
    m.store = Some(disk.path().join("store"));
    m.spawn(&[]);
    let body: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    for round in 0..3 {
        let free_before = free_bytes(disk.path());
        let path = m.path(&format!("big{round}"));
        fs::write(&path, &body).unwrap_or_else(|e| panic!("round {round}: writing {BIG} bytes: {e}"));
        assert!(fs::read(&path).unwrap() == body, "round {round}: read back");
        assert!(fs::read(&path).unwrap() == body, "round {round}: read back through a reopen");
        fs::remove_file(&path).unwrap();
        // The object goes once the unlink is durable, in the background.
        // The store's WAL reserves its space a few MiB ahead of its end
        // meanwhile: the removed file's 48 MiB must come back, give or
        // take that.
        let deadline = Instant::now() + Duration::from_secs(10);
        while free_bytes(disk.path()) + (6 << 20) < free_before {
            assert!(Instant::now() < deadline, "round {round}: the removed file's space never came back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    m.unmount();
}

fn ctime(path: &std::path::Path) -> (i64, i64) {
    let st = fs::metadata(path).unwrap();
    (st.ctime(), st.ctime_nsec())
}

/// Status changes and writes alternating within one tick of the backing
/// file system's coarse clock each move the ctime forward. A status
/// change stamps the object's ctime like a write does (the daemon asks
/// the object for its times first, so a file system with multigrain
/// timestamps stamps with its fine-grained clock where the coarse one
/// would not move): one clock. A ctime kept in the inode by the daemon's
/// clock and read as the later of the two fails here: a write in the same
/// tick gets the coarse stamp, older than the daemon's.
#[test]
fn status_changes_and_writes_each_move_the_ctime_forward() {
    let mut m = Mount::persistent(&["--attr-ttl", "0", "--entry-ttl", "0"]);
    let path = m.path("ctime");
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.write_all(b"x").unwrap();
    let mut last = ctime(&path);
    for round in 0..100u32 {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600 | ((round % 2) * 0o40))).unwrap();
        let chmod = ctime(&path);
        assert!(chmod > last, "round {round}: the chmod moved the ctime: {last:?} then {chmod:?}");
        file.write_all_at(b"y", u64::from(round)).unwrap();
        let written = ctime(&path);
        assert!(written > chmod, "round {round}: the write after the chmod moved the ctime: {chmod:?} then {written:?}");
        last = written;
    }
    drop(file);
    m.unmount();
}
