//! Crashes at every disk step, without a kernel: the semantics layer with
//! its metadata tree and its data objects on one simulated disk, so one
//! crash image (the daemon killed, or the power cut, before any given disk
//! operation) covers both stores.
//!
//! `data_ops_killed_at_every_step_are_before_or_after` is the regression
//! test for the two-store bugs: a truncate that cut the data object before
//! the batch recording the new size (a kill in between left the old size
//! over a shorter object), and a write whose bytes reached the object before
//! the size that covers them (a later extension exposed them).

use std::path::Path;

use holt_core::testing::{CrashMode, SimDisk};
use holt_core::TreeBuilder;

use super::USER;
use crate::data::{DataStore, SimData};
use crate::schema::Ino;
use crate::{Fs, FsConfig, OpenFlags, SetAttr};

const STORE_META: &str = "/store/meta";
const STORE_DATA: &str = "/store/data";
/// The boot the tests' daemons run in; another id simulates a reboot.
pub(super) const BOOT: [u8; 16] = [1; 16];
pub(super) const REBOOTED: [u8; 16] = [2; 16];

/// Space reserve of the simulated stores: small, because a simulated file
/// is bytes in memory that each crash image copies.
pub(super) const RESERVE_BYTES: u64 = 1 << 20;

/// The filesystem of `disk`, as a daemon booted in `boot` mounts it.
pub(super) fn open_fs(disk: &SimDisk, boot: [u8; 16], sync: bool) -> Fs {
    let builder = TreeBuilder::new(STORE_META)
        .wal_sync_on_commit(sync)
        .checkpoint_interval(None)
        .buffer_pool_size(64)
        .space_reserve_bytes(RESERVE_BYTES);
    let tree = disk.open_tree(builder).expect("the simulated store opens");
    let data = SimData::new(disk.clone(), Path::new(STORE_DATA)).expect("the data directory opens");
    let cfg = FsConfig { sync_data: sync, boot_id: Some(boot), ..FsConfig::default() };
    Fs::new(tree, Box::new(data), cfg).expect("the filesystem mounts after a crash")
}

/// fsck of the store on `disk` (no daemon holds it) finds nothing.
pub(super) fn assert_fsck_clean(disk: &SimDisk, ctx: &str) {
    let builder = TreeBuilder::new(STORE_META).checkpoint_interval(None).buffer_pool_size(64);
    let tree = disk.open_tree(builder).expect("the simulated store opens for fsck");
    let data = SimData::new(disk.clone(), Path::new(STORE_DATA)).expect("the data directory opens");
    let report = crate::fsck::fsck(&tree, &data, &crate::fsck::FsckOptions { repair: false }, &mut |_| {}).expect("fsck runs");
    let found: Vec<String> = report.findings.iter().map(|f| f.problem.to_string()).collect();
    assert!(report.is_clean(), "{ctx}: fsck found {found:#?}");
}

/// After the mount of `image` (as `fs`): every data object belongs to an
/// inode, and fsck finds nothing once `fs` is closed.
fn assert_mounted_clean(image: &SimDisk, fs: Fs, ctx: &str) {
    let mut objects = Vec::new();
    SimData::new(image.clone(), Path::new(STORE_DATA)).unwrap().list(&mut |ino| objects.push(ino)).unwrap();
    for ino in objects {
        assert!(fs.getattr(ino).is_ok(), "{ctx}: object {} has no inode after the mount", ino.0);
    }
    drop(fs);
    assert_fsck_clean(image, ctx);
}

/// `ino`'s size and whole contents as a reader sees them.
fn contents(fs: &Fs, ino: Ino) -> (u64, Vec<u8>) {
    let size = fs.getattr(ino).expect("the file exists").inode.size;
    let bytes = fs.read(ino, 0, size as u32 + 4096).expect("the file reads");
    assert_eq!(bytes.len() as u64, size, "a read ends exactly at the size");
    (size, bytes)
}

/// A data operation under test, applied to file `f` of a prepared filesystem.
type DataOp = fn(&Fs, Ino);

fn prepare(disk: &SimDisk) -> (Fs, Ino) {
    let fs = open_fs(disk, BOOT, false);
    let (attr, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    let body: Vec<u8> = (0..12_288u32).map(|i| (i % 251) as u8 + 1).collect();
    fs.write(attr.ino, 0, &body).unwrap();
    fs.fsync(attr.ino, false).unwrap();
    fs.release(attr.ino, fh).unwrap();
    (fs, attr.ino)
}

fn data_ops() -> Vec<(&'static str, DataOp)> {
    vec![
        ("truncate down", |fs, f| drop(fs.setattr(f, &SetAttr { size: Some(5000), ..SetAttr::default() }).unwrap())),
        ("truncate up", |fs, f| drop(fs.setattr(f, &SetAttr { size: Some(20_000), ..SetAttr::default() }).unwrap())),
        ("O_TRUNC open", |fs, _| {
            let flags = OpenFlags::from_raw(libc::O_RDWR | libc::O_TRUNC);
            let (a, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, flags).unwrap();
            fs.release(a.ino, fh).unwrap();
        }),
        ("write past the end", |fs, f| assert_eq!(fs.write(f, 16_384, &[7; 4096]).unwrap(), 4096)),
        ("overwrite one page", |fs, f| assert_eq!(fs.write(f, 4096, &[9; 4096]).unwrap(), 4096)),
        ("fallocate growing", |fs, f| fs.fallocate(f, 12_288, 8192, 0).unwrap()),
        ("punch a hole", |fs, f| fs.fallocate(f, 4096, 4096, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE).unwrap()),
        ("copy_file_range", |fs, f| assert_eq!(fs.copy_file_range(f, 0, f, 12_288, 4096).unwrap(), 4096)),
        ("unlink the last name", |fs, _| fs.unlink(Ino::ROOT, b"f").unwrap()),
    ]
}

/// What a reader may see after a crash: the file as before or after the
/// operation (absent counts as a state for an unlink), and once grown by a
/// truncate, only zeros past the size it had.
fn check_before_or_after(fs: &Fs, f: Ino, before: &(u64, Vec<u8>), after: &Option<(u64, Vec<u8>)>, ctx: &str) {
    let now = match fs.lookup(Ino::ROOT, b"f") {
        Ok(attr) => {
            assert_eq!(attr.ino, f, "{ctx}: the name still names the same inode");
            Some(contents(fs, f))
        }
        Err(e) => {
            assert_eq!(e.errno(), libc::ENOENT, "{ctx}");
            None
        }
    };
    assert!(now.as_ref() == Some(before) || now == *after, "{ctx}: neither before nor after: {:?}", now.map(|c| c.0));
    if let Some((size, _)) = now {
        fs.setattr(f, &SetAttr { size: Some(size + 8192), ..SetAttr::default() }).unwrap();
        let tail = fs.read(f, size, 8192).unwrap();
        assert!(tail.iter().all(|&b| b == 0), "{ctx}: bytes past the size became readable");
    }
}

#[test]
fn data_ops_killed_at_every_step_are_before_or_after() {
    for (name, op) in data_ops() {
        let reference = SimDisk::new();
        let (fs, f) = prepare(&reference);
        let before = contents(&fs, f);
        let first = reference.ops_count();
        op(&fs, f);
        fs.drain_reclaims().unwrap();
        let last = reference.ops_count();
        let after = fs.lookup(Ino::ROOT, b"f").ok().map(|_| contents(&fs, f));
        drop(fs);
        for mode in [CrashMode::KillProcess, CrashMode::DropUnsynced] {
            for step in first..=last {
                let disk = SimDisk::new();
                let (fs, f) = prepare(&disk);
                disk.crash_before_op(step, mode);
                op(&fs, f);
                fs.drain_reclaims().unwrap();
                drop(fs);
                let image = disk.take_crash_image().unwrap_or_else(|| disk.crash(mode));
                let boot = if mode == CrashMode::KillProcess { BOOT } else { REBOOTED };
                let ctx = format!("{name}, {mode:?} before disk op {step} of {first}..{last}");
                assert_fsck_clean(&image, &format!("{ctx}, before the mount"));
                check_before_or_after(&open_fs(&image, boot, false), f, &before, &after, &ctx);
                assert_fsck_clean(&image, &ctx);
            }
        }
    }
}

#[test]
fn a_killed_create_leaves_an_empty_file_and_no_stray_object() {
    let reference = SimDisk::new();
    let fs = open_fs(&reference, BOOT, false);
    let first = reference.ops_count();
    let (a, fh) = fs.create(USER, Ino::ROOT, b"new", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    fs.release(a.ino, fh).unwrap();
    let last = reference.ops_count();
    drop(fs);
    for mode in [CrashMode::KillProcess, CrashMode::DropUnsynced, CrashMode::Torn { seed: 7 }] {
        for step in first..=last {
            let disk = SimDisk::new();
            let fs = open_fs(&disk, BOOT, false);
            disk.crash_before_op(step, mode);
            let (a, fh) = fs.create(USER, Ino::ROOT, b"new", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
            fs.release(a.ino, fh).unwrap();
            drop(fs);
            let image = disk.take_crash_image().unwrap_or_else(|| disk.crash(mode));
            let boot = if mode == CrashMode::KillProcess { BOOT } else { REBOOTED };
            let fs = open_fs(&image, boot, false);
            let ctx = format!("{mode:?} before disk op {step} of {first}..{last}");
            match fs.lookup(Ino::ROOT, b"new") {
                Ok(attr) => assert_eq!(contents(&fs, attr.ino), (0, Vec::new()), "{ctx}"),
                Err(e) => assert_eq!(e.errno(), libc::ENOENT, "{ctx}"),
            }
            assert_mounted_clean(&image, fs, &ctx);
        }
    }
}

/// Unlinked files are reclaimed in groups (one batch deletes the keys of
/// many): a crash at any disk operation of such a drain leaves each name
/// either whole (its unlink not yet durable) or gone, and the mount
/// finishes the rest: no marker, no object without an inode, fsck clean.
#[test]
fn a_group_reclaim_killed_at_every_step_loses_or_leaks_nothing() {
    const NAMES: [&[u8]; 3] = [b"a", b"b", b"c"];
    let setup = |disk: &SimDisk| {
        let fs = open_fs(disk, BOOT, false);
        for (i, name) in NAMES.iter().enumerate() {
            let (attr, fh) = fs.create(USER, Ino::ROOT, name, 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
            fs.write(attr.ino, 0, &[i as u8 + 1; 5000]).unwrap();
            fs.setxattr(attr.ino, b"user.k", b"v", crate::XattrFlags::default()).unwrap();
            fs.fsync(attr.ino, false).unwrap();
            fs.release(attr.ino, fh).unwrap();
        }
        fs
    };
    let unlink_all = |fs: &Fs| {
        for name in NAMES {
            fs.unlink(Ino::ROOT, name).unwrap();
        }
        fs.drain_reclaims().unwrap();
    };
    let reference = SimDisk::new();
    let fs = setup(&reference);
    let first = reference.ops_count();
    unlink_all(&fs);
    let last = reference.ops_count();
    drop(fs);
    for mode in [CrashMode::KillProcess, CrashMode::DropUnsynced] {
        for step in first..=last {
            let disk = SimDisk::new();
            let fs = setup(&disk);
            disk.crash_before_op(step, mode);
            unlink_all(&fs);
            drop(fs);
            let image = disk.take_crash_image().unwrap_or_else(|| disk.crash(mode));
            let boot = if mode == CrashMode::KillProcess { BOOT } else { REBOOTED };
            let ctx = format!("{mode:?} before disk op {step} of {first}..{last}");
            let fs = open_fs(&image, boot, false);
            for (i, name) in NAMES.iter().enumerate() {
                if let Ok(attr) = fs.lookup(Ino::ROOT, name) {
                    let (size, bytes) = contents(&fs, attr.ino);
                    assert!(size == 5000 && bytes.iter().all(|&b| b == i as u8 + 1), "{ctx}: a surviving name keeps its file");
                }
            }
            assert_mounted_clean(&image, fs, &ctx);
        }
    }
}
