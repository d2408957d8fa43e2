//! A full store: the metadata tree and the data objects share one
//! simulated disk with a capacity. Work that takes space is refused with
//! ENOSPC and leaves nothing half done; removing, renaming, truncating,
//! chmod and listings keep working; freeing space lets writes in again;
//! a remount finds everything acknowledged. Also the two ways a full store
//! used to fail more than the operation at hand: a listing whose atime
//! update could not be written, and a removal whose reclaim could not.

use std::collections::BTreeMap;

use holt_core::testing::SimDisk;

use super::crash::{open_fs, BOOT, RESERVE_BYTES};
use super::USER;
use crate::schema::Ino;
use crate::{Fs, FsResult, OpenFlags, RenameFlags, SetAttr, TimeSet, XattrFlags};

const FILE_BYTES: usize = 256 << 10;

type Files = BTreeMap<String, Vec<u8>>;

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

fn check_files(fs: &Fs, dir: Ino, files: &Files) {
    assert_eq!(names(fs, dir), files.keys().cloned().collect::<Vec<_>>());
    for (name, body) in files {
        let attr = fs.lookup(dir, name.as_bytes()).unwrap();
        assert_eq!(attr.inode.size, body.len() as u64, "size of {name}");
        assert!(fs.read(attr.ino, 0, body.len() as u32 + 1).unwrap() == *body, "contents of {name}");
    }
}

/// Fill `dir` with files until the disk is full; returns what was acknowledged.
fn fill(fs: &Fs, dir: Ino, files: &mut Files, tag: &str) {
    for i in 0..1000 {
        let name = format!("{tag}{i:04}");
        let body = vec![(i % 250) as u8 + 1; FILE_BYTES];
        match write_file(fs, dir, &name, &body) {
            Ok(_) => {
                files.insert(name, body);
            }
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOSPC, "{name}: {e}");
                if fs.lookup(dir, name.as_bytes()).is_ok() {
                    // A simulated failed write applies nothing.
                    files.insert(name, Vec::new());
                }
                return;
            }
        }
    }
    panic!("the disk never filled");
}

/// Take WAL space with big xattrs until the tree spends its reserve.
fn spend_the_reserve(fs: &Fs, ino: Ino) {
    let value = vec![7u8; 60_000];
    for i in 0..100 {
        if fs.space_low() {
            return;
        }
        let name = format!("user.fill{i}");
        match fs.setxattr(ino, name.as_bytes(), &value, XattrFlags::default()) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.errno(), libc::ENOSPC, "{e}"),
        }
    }
    assert!(fs.space_low(), "the tree's own writes never found the disk full");
}

#[test]
fn a_full_store_refuses_growth_frees_space_and_keeps_everything() {
    let disk = SimDisk::new();
    let fs = open_fs(&disk, BOOT, false);
    let d = fs.mkdir(USER, Ino::ROOT, b"d", 0o755).unwrap().ino;
    let empty = fs.mkdir(USER, Ino::ROOT, b"empty", 0o755).unwrap().ino;
    disk.set_capacity(Some(disk.used_bytes() + 4 * RESERVE_BYTES));
    let mut files = Files::new();
    fill(&fs, d, &mut files, "f");
    let f0 = fs.lookup(d, b"f0000").unwrap().ino;
    spend_the_reserve(&fs, f0);

    // Work that takes space is refused up front.
    let new = |name: &str| fs.create(USER, d, name.as_bytes(), 0o644, OpenFlags::from_raw(libc::O_RDWR));
    assert_eq!(errno(new("new")), libc::ENOSPC);
    assert_eq!(errno(fs.mkdir(USER, d, b"newdir", 0o755)), libc::ENOSPC);
    assert_eq!(errno(fs.symlink(USER, d, b"ln", b"f0000")), libc::ENOSPC);
    assert_eq!(errno(fs.link(f0, d, b"hard")), libc::ENOSPC);
    assert_eq!(errno(fs.setxattr(f0, b"user.more", b"v", XattrFlags::default())), libc::ENOSPC);
    assert_eq!(errno(fs.write(f0, FILE_BYTES as u64, b"past the end")), libc::ENOSPC);
    assert_eq!(errno(fs.fallocate(f0, 0, 2 * FILE_BYTES as u64, 0)), libc::ENOSPC);
    assert_eq!(errno(fs.copy_file_range(f0, 0, f0, FILE_BYTES as u64, 4096)), libc::ENOSPC);
    let excl = OpenFlags::from_raw(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
    assert_eq!(errno(fs.create(USER, d, b"f0000", 0o644, excl)), libc::EEXIST, "an existing name is EEXIST first");
    assert_eq!(names(&fs, empty), Vec::<String>::new());
    assert!(fs.space_low());

    // Work that frees space or changes attributes goes on.
    fs.write(f0, 0, b"overwrite").unwrap();
    files.get_mut("f0000").unwrap()[..9].copy_from_slice(b"overwrite");
    fs.setattr(f0, &SetAttr { mode: Some(0o600), atime: Some(TimeSet::Now), ..SetAttr::default() }).unwrap();
    fs.removexattr(f0, b"user.fill0").unwrap();
    fs.rename(d, b"f0001", d, b"renamed", RenameFlags::default()).unwrap();
    let moved = files.remove("f0001").unwrap();
    files.insert("renamed".into(), moved);
    let f2 = fs.lookup(d, b"f0002").unwrap().ino;
    fs.setattr(f2, &SetAttr { size: Some(1000), ..SetAttr::default() }).unwrap();
    files.get_mut("f0002").unwrap().truncate(1000);
    let f3 = fs.lookup(d, b"f0003").unwrap().ino;
    fs.fallocate(f3, 0, 4096, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE).unwrap();
    files.get_mut("f0003").unwrap()[..4096].fill(0);
    fs.rmdir(Ino::ROOT, b"empty").unwrap();
    fs.fsync(f0, false).unwrap();
    let freed: Vec<String> = files.keys().filter(|n| n.starts_with('f')).skip(4).take(8).cloned().collect();
    for name in &freed {
        fs.unlink(d, name.as_bytes()).unwrap();
        files.remove(name);
    }
    check_files(&fs, d, &files);

    // The freed space lets writes in again.
    write_file(&fs, d, "after", &[5; 4096]).expect("space was freed");
    files.insert("after".into(), vec![5; 4096]);
    assert!(!fs.space_low(), "the reserve is whole again");

    // A remount on the still nearly full disk finds everything and works.
    fs.shutdown().unwrap();
    drop(fs);
    let fs = open_fs(&disk, BOOT, false);
    check_files(&fs, d, &files);
    fill(&fs, d, &mut files, "g");
    let victim = files.keys().find(|n| n.starts_with('g')).cloned().unwrap();
    fs.unlink(d, victim.as_bytes()).unwrap();
    files.remove(&victim);
    check_files(&fs, d, &files);
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
