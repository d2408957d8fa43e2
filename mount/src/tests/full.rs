//! A store that cannot write: listings and reads still work.

use holt_core::testing::SimDisk;

use super::crash::{open_fs, BOOT};
use super::USER;
use crate::schema::Ino;
use crate::{Fs, FsResult, OpenFlags};

fn errno<T: std::fmt::Debug>(r: FsResult<T>) -> i32 {
    r.expect_err("operation should fail").errno()
}

/// Create `name` in `parent` and write `body`; the file exists (maybe
/// empty) even when the write fails.
fn write_file(fs: &Fs, parent: Ino, name: &str, body: &[u8]) -> FsResult<Ino> {
    let (attr, fh) = fs.create(USER, parent, name.as_bytes(), 0o644, OpenFlags::from_raw(libc::O_RDWR))?;
    let written = fs.write(attr.ino, 0, body);
    fs.release(attr.ino, fh)?;
    written.map(|_| attr.ino)
}

fn names(fs: &Fs, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino).unwrap();
    let mut out = Vec::new();
    fs.readdir(ino, fh, 0, true, &mut |e| {
        out.push(String::from_utf8_lossy(&e.name).into_owned());
        true
    })
    .expect("a listing works whatever the store's space");
    fs.releasedir(ino, fh).unwrap();
    out.retain(|n| n != "." && n != "..");
    out
}

#[test]
fn listings_and_reads_work_on_a_store_that_refuses_writes() {
    let disk = SimDisk::new();
    let fs = open_fs(&disk, BOOT, false);
    let d = fs.mkdir(USER, Ino::ROOT, b"d", 0o755).unwrap().ino;
    let f = write_file(&fs, d, "f", b"contents").unwrap();
    let fh = fs.opendir(d).unwrap();
    disk.fail_syncs_after(0, libc::EIO);
    fs.fsyncdir(d, fh).expect_err("the sync fails");
    fs.releasedir(d, fh).unwrap();
    assert_eq!(errno(fs.mkdir(USER, d, b"refused", 0o755)), libc::EIO, "the tree refuses writes");
    // The directory's atime is due (its mtime moved): the update fails
    // and is dropped, the listing goes on.
    assert_eq!(names(&fs, d), vec!["f".to_string()]);
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"contents");
    assert_eq!(fs.getattr(f).unwrap().inode.size, 8);
}

#[test]
fn a_removal_stands_when_the_reclaim_after_it_fails() {
    let disk = SimDisk::new();
    let fs = open_fs(&disk, BOOT, false);
    let d = fs.mkdir(USER, Ino::ROOT, b"d", 0o755).unwrap().ino;
    // The rmdir's batch is the next write (the WAL has space reserved
    // ahead); the batch that reclaims the inode after it fails.
    disk.fail_writes_after(1, libc::EIO);
    fs.rmdir(Ino::ROOT, b"d").expect("the rmdir committed; its reclaim failing does not undo it");
    assert_eq!(errno(fs.lookup(Ino::ROOT, b"d")), libc::ENOENT);
    let image = disk.crash(holt_core::testing::CrashMode::KillProcess);
    std::mem::forget(fs);
    let fs = open_fs(&image, BOOT, false);
    assert_eq!(errno(fs.lookup(Ino::ROOT, b"d")), libc::ENOENT);
    assert_eq!(errno(fs.getattr(d)), libc::ENOENT, "the mount reclaimed the orphan");
}
