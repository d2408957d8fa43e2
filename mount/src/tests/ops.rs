//! Behaviour of single operations and their error cases.

use super::{acl_bytes, memory_fs, memory_fs_and_tree, USER};
use crate::data::SeekKind;
use crate::schema::{self, FileKind, Ino, Timespec};
use crate::{Caller, Fs, FsConfig, FsError, OpenFlags, RenameFlags, SetAttr, Store, StoreOptions, TimeSet, XattrFlags, XattrReply};

fn file(fs: &Fs, parent: Ino, name: &str) -> Ino {
    fs.mknod(USER, parent, name.as_bytes(), libc::S_IFREG | 0o644, 0).unwrap().ino
}

fn dir(fs: &Fs, parent: Ino, name: &str) -> Ino {
    fs.mkdir(USER, parent, name.as_bytes(), 0o755).unwrap().ino
}

fn errno<T: std::fmt::Debug>(r: crate::FsResult<T>) -> i32 {
    r.expect_err("operation should fail").errno()
}

fn names(fs: &Fs, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino).unwrap();
    let mut out = Vec::new();
    fs.readdir(ino, fh, 0, true, &mut |e| {
        out.push(String::from_utf8_lossy(&e.name).into_owned());
        true
    })
    .unwrap();
    fs.releasedir(ino, fh).unwrap();
    out
}

#[test]
fn mkdir_and_link_counts_are_exact() {
    let fs = memory_fs();
    let a = dir(&fs, Ino::ROOT, "a");
    dir(&fs, a, "sub");
    assert_eq!(fs.getattr(Ino::ROOT).unwrap().inode.nlink, 3);
    assert_eq!(fs.getattr(a).unwrap().inode.nlink, 3);
    let f = file(&fs, a, "f");
    fs.link(f, Ino::ROOT, b"f2").unwrap();
    assert_eq!(fs.getattr(f).unwrap().inode.nlink, 2);
    assert_eq!(errno(fs.link(a, Ino::ROOT, b"dirlink")), libc::EPERM);
    fs.unlink(a, b"f").unwrap();
    assert_eq!(fs.lookup(Ino::ROOT, b"f2").unwrap().inode.nlink, 1);
    assert_eq!(errno(fs.rmdir(Ino::ROOT, b"a")), libc::ENOTEMPTY);
    fs.rmdir(a, b"sub").unwrap();
    fs.rmdir(Ino::ROOT, b"a").unwrap();
    assert_eq!(fs.getattr(Ino::ROOT).unwrap().inode.nlink, 2);
    assert_eq!(errno(fs.getattr(a)), libc::ENOENT);
}

#[test]
fn name_rules_give_einval_and_enametoolong() {
    let fs = memory_fs();
    let long = vec![b'x'; 256];
    assert_eq!(errno(fs.mkdir(USER, Ino::ROOT, &long, 0o755)), libc::ENAMETOOLONG);
    assert_eq!(errno(fs.lookup(Ino::ROOT, &long)), libc::ENAMETOOLONG);
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert_eq!(errno(fs.mkdir(USER, Ino::ROOT, bad, 0o755)), libc::EINVAL, "name {bad:?}");
    }
    assert!(fs.mkdir(USER, Ino::ROOT, &long[..255], 0o755).is_ok());
    assert_eq!(errno(fs.symlink(USER, Ino::ROOT, b"l", &vec![b'y'; 4096])), libc::ENAMETOOLONG);
}

#[test]
fn create_errors_name_the_cause() {
    let fs = memory_fs();
    let f = file(&fs, Ino::ROOT, "f");
    assert_eq!(errno(fs.mknod(USER, Ino::ROOT, b"f", libc::S_IFIFO | 0o644, 0)), libc::EEXIST);
    assert_eq!(errno(fs.mkdir(USER, f, b"x", 0o755)), libc::ENOTDIR);
    assert_eq!(errno(fs.lookup(f, b"x")), libc::ENOTDIR);
    assert_eq!(errno(fs.lookup(Ino::ROOT, b"missing")), libc::ENOENT);
    assert_eq!(errno(fs.unlink(Ino::ROOT, b"missing")), libc::ENOENT);
    dir(&fs, Ino::ROOT, "d");
    assert_eq!(errno(fs.unlink(Ino::ROOT, b"d")), libc::EISDIR);
    assert_eq!(errno(fs.rmdir(Ino::ROOT, b"f")), libc::ENOTDIR);
    let excl = OpenFlags { write: true, read_write: false, exclusive: true, truncate: false };
    assert_eq!(errno(fs.create(USER, Ino::ROOT, b"f", 0o644, excl)), libc::EEXIST);
    let dev = fs.mknod(USER, Ino::ROOT, b"dev", libc::S_IFCHR | 0o600, 0x0501).unwrap();
    assert_eq!((dev.inode.kind, dev.inode.rdev), (FileKind::CharDev, 0x0501));
}

#[test]
fn create_without_excl_opens_and_truncates_existing() {
    let fs = memory_fs();
    let flags = OpenFlags { write: true, read_write: false, exclusive: false, truncate: true };
    let (a, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, flags).unwrap();
    fs.write(a.ino, 0, b"hello").unwrap();
    fs.release(a.ino, fh).unwrap();
    let (b, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, flags).unwrap();
    assert_eq!((b.ino, b.inode.size), (a.ino, 0));
    fs.release(b.ino, fh).unwrap();
}

#[test]
fn rename_rules_follow_posix() {
    let fs = memory_fs();
    let a = dir(&fs, Ino::ROOT, "a");
    let b = dir(&fs, a, "b");
    file(&fs, Ino::ROOT, "f");
    dir(&fs, Ino::ROOT, "empty");
    let none = RenameFlags::default();
    assert_eq!(errno(fs.rename(Ino::ROOT, b"a", b, b"x", none)), libc::EINVAL);
    assert_eq!(errno(fs.rename(Ino::ROOT, b"a", Ino::ROOT, b"f", none)), libc::ENOTDIR);
    assert_eq!(errno(fs.rename(Ino::ROOT, b"f", Ino::ROOT, b"a", none)), libc::EISDIR);
    assert_eq!(errno(fs.rename(Ino::ROOT, b"empty", Ino::ROOT, b"a", none)), libc::ENOTEMPTY);
    let noreplace = RenameFlags { noreplace: true, exchange: false };
    assert_eq!(errno(fs.rename(Ino::ROOT, b"f", Ino::ROOT, b"empty", noreplace)), libc::EEXIST);
    assert_eq!(errno(fs.rename(Ino::ROOT, b"nope", Ino::ROOT, b"x", none)), libc::ENOENT);
    // A directory over an empty directory across parents: nlinks move.
    fs.rename(a, b"b", Ino::ROOT, b"empty", none).unwrap();
    assert_eq!(fs.lookup(Ino::ROOT, b"empty").unwrap().ino, b);
    assert_eq!(fs.getattr(a).unwrap().inode.nlink, 2);
    assert_eq!(fs.getattr(Ino::ROOT).unwrap().inode.nlink, 4);
    assert_eq!(fs.getattr(b).unwrap().inode.parent, Ino::ROOT);
    // Same inode under two names: a no-op that keeps both.
    let f = fs.lookup(Ino::ROOT, b"f").unwrap().ino;
    fs.link(f, a, b"g").unwrap();
    fs.rename(Ino::ROOT, b"f", a, b"g", none).unwrap();
    assert_eq!(fs.getattr(f).unwrap().inode.nlink, 2);
    assert_eq!(names(&fs, a), [".", "..", "g"]);
}

#[test]
fn rename_exchange_swaps_directories_across_parents() {
    let fs = memory_fs();
    let a = dir(&fs, Ino::ROOT, "a");
    let d = dir(&fs, a, "d");
    let f = file(&fs, Ino::ROOT, "f");
    let ex = RenameFlags { noreplace: false, exchange: true };
    assert_eq!(errno(fs.rename(Ino::ROOT, b"f", Ino::ROOT, b"none", ex)), libc::ENOENT);
    assert_eq!(errno(fs.rename(Ino::ROOT, b"a", a, b"d", ex)), libc::EINVAL);
    fs.rename(a, b"d", Ino::ROOT, b"f", ex).unwrap();
    assert_eq!(fs.lookup(Ino::ROOT, b"f").unwrap().ino, d);
    assert_eq!(fs.lookup(a, b"d").unwrap().ino, f);
    assert_eq!(fs.getattr(d).unwrap().inode.parent, Ino::ROOT);
    assert_eq!(fs.getattr(a).unwrap().inode.nlink, 2);
    assert_eq!(fs.getattr(Ino::ROOT).unwrap().inode.nlink, 4);
}

#[test]
fn unlinked_open_file_lives_until_release() {
    let (fs, tree) = memory_fs_and_tree();
    let (a, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    fs.write(a.ino, 0, b"still here").unwrap();
    fs.unlink(Ino::ROOT, b"f").unwrap();
    assert_eq!(fs.read(a.ino, 0, 100).unwrap(), b"still here");
    assert_eq!(fs.getattr(a.ino).unwrap().inode.nlink, 0);
    assert!(tree.get(&schema::orphan_key(a.ino)).unwrap().is_some());
    fs.release(a.ino, fh).unwrap();
    fs.drain_reclaims().unwrap();
    assert_eq!(errno(fs.getattr(a.ino)), libc::ENOENT);
    assert!(tree.get(&schema::orphan_key(a.ino)).unwrap().is_none());
    assert_eq!(fs.usage().inodes, 1);
}

#[test]
fn orphans_left_open_are_swept_at_mount() {
    let (fs, tree) = memory_fs_and_tree();
    let (a, _fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    fs.setxattr(a.ino, b"user.k", b"v", XattrFlags::default()).unwrap();
    fs.unlink(Ino::ROOT, b"f").unwrap();
    drop(fs); // the daemon dies with the file open
    let again = Fs::new(tree.clone(), Box::new(crate::data::MemoryData::new(crate::AtimeMode::Relatime)), FsConfig::default()).unwrap();
    assert_eq!(errno(again.getattr(a.ino)), libc::ENOENT);
    assert!(tree.scan_prefix(b"R/").into_iter().next().is_none());
    assert!(tree.scan_prefix(&schema::xattr_prefix(a.ino)).into_iter().next().is_none());
}

/// Every offset a handle handed out stays valid for its life (telldir and
/// seekdir back to any earlier position), also after entries are removed:
/// resuming there continues with the first surviving name after it.
#[test]
fn every_readdir_offset_stays_valid_after_removals() {
    let fs = memory_fs();
    let d = dir(&fs, Ino::ROOT, "d");
    let names: Vec<String> = (0..10_000).map(|i| format!("n{i:05}")).collect();
    for n in &names {
        file(&fs, d, n);
    }
    let fh = fs.opendir(d).unwrap();
    let mut listed = Vec::new();
    let mut offset = 2; // after `..`
    loop {
        let before = listed.len();
        fs.readdir(d, fh, offset, false, &mut |e| {
            listed.push((e.name.clone(), e.offset));
            listed.len() - before < 100
        })
        .unwrap();
        match listed.last() {
            Some(&(_, o)) if listed.len() > before => offset = o,
            _ => break,
        }
    }
    assert_eq!(listed.len(), names.len());
    for n in names.iter().skip(1).step_by(3) {
        fs.unlink(d, n.as_bytes()).unwrap();
    }
    let survives = |i: usize| i % 3 != 1;
    for (i, (name, offset)) in listed.iter().enumerate().step_by(997) {
        let mut next = None;
        fs.readdir(d, fh, *offset, false, &mut |e| {
            next = Some(e.name.clone());
            false
        })
        .unwrap_or_else(|e| panic!("seekdir back to the offset of {} failed: {e}", String::from_utf8_lossy(name)));
        let want = (i + 1..names.len()).find(|&j| survives(j)).map(|j| names[j].clone().into_bytes());
        assert_eq!(next, want, "resuming after {}", String::from_utf8_lossy(name));
    }
    fs.releasedir(d, fh).unwrap();
}

#[test]
fn readdir_resumes_by_name_while_the_directory_changes() {
    let fs = memory_fs();
    let d = dir(&fs, Ino::ROOT, "d");
    for i in 0..600 {
        file(&fs, d, &format!("n{i:04}"));
    }
    let fh = fs.opendir(d).unwrap();
    let (mut offset, mut seen, mut round) = (0u64, Vec::new(), 0);
    loop {
        let mut batch = Vec::new();
        fs.readdir(d, fh, offset, false, &mut |e| {
            if batch.len() == 7 {
                return false;
            }
            batch.push((e.name.clone(), e.offset));
            true
        })
        .unwrap();
        let Some(&(_, last)) = batch.last() else { break };
        // Re-asking from an earlier offset (the kernel does, when a user
        // buffer fills) must repeat from there, not skip.
        if round % 5 == 4 && batch.len() > 2 {
            offset = batch[1].1;
            seen.extend(batch[..2].iter().map(|b| b.0.clone()));
        } else {
            offset = last;
            seen.extend(batch.into_iter().map(|b| b.0));
        }
        // Churn: remove a name not yet listed, add one before and after the cursor.
        let _ = fs.unlink(d, format!("n{:04}", 599 - round).as_bytes());
        file(&fs, d, &format!("a-new{round}"));
        file(&fs, d, &format!("z-new{round}"));
        round += 1;
    }
    fs.releasedir(d, fh).unwrap();
    let listed: Vec<String> = seen.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    for i in 0..(599 - round) {
        let name = format!("n{i:04}");
        assert_eq!(listed.iter().filter(|n| **n == name).count(), 1, "{name} listed once");
    }
    assert!(!listed.iter().any(|n| n.starts_with("a-new")), "names before the cursor are not revisited");
}

#[test]
fn xattr_flags_and_size_protocol() {
    let fs = memory_fs();
    let f = file(&fs, Ino::ROOT, "f");
    let create = XattrFlags { create: true, replace: false };
    let replace = XattrFlags { create: false, replace: true };
    assert_eq!(errno(fs.setxattr(f, b"user.a", b"1", replace)), libc::ENODATA);
    fs.setxattr(f, b"user.a", b"12345", create).unwrap();
    assert_eq!(errno(fs.setxattr(f, b"user.a", b"1", create)), libc::EEXIST);
    fs.setxattr(f, b"user.b", b"", XattrFlags::default()).unwrap();
    assert_eq!(fs.getxattr(f, b"user.a", 0).unwrap(), XattrReply::Size(5));
    assert_eq!(errno(fs.getxattr(f, b"user.a", 4)), libc::ERANGE);
    assert_eq!(fs.getxattr(f, b"user.a", 5).unwrap(), XattrReply::Data(b"12345".to_vec()));
    assert_eq!(fs.listxattr(f, 0).unwrap(), XattrReply::Size(14));
    assert_eq!(fs.listxattr(f, 100).unwrap(), XattrReply::Data(b"user.a\0user.b\0".to_vec()));
    assert_eq!(errno(fs.listxattr(f, 3)), libc::ERANGE);
    fs.removexattr(f, b"user.a").unwrap();
    assert_eq!(errno(fs.removexattr(f, b"user.a")), libc::ENODATA);
    assert_eq!(errno(fs.getxattr(f, b"user.a", 0)), libc::ENODATA);
    assert_eq!(errno(fs.setxattr(f, b"user.big", &vec![0; 65537], XattrFlags::default())), libc::E2BIG);
}

#[test]
fn sparse_writes_seek_and_read_zeros() {
    let fs = memory_fs();
    let (a, fh) = fs.create(USER, Ino::ROOT, b"s", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    fs.write(a.ino, 1 << 20, b"data").unwrap();
    let size = fs.getattr(a.ino).unwrap().inode.size;
    assert_eq!(size, (1 << 20) + 4);
    assert_eq!(fs.lseek(a.ino, 0, SeekKind::Data).unwrap(), 1 << 20);
    assert_eq!(fs.lseek(a.ino, 0, SeekKind::Hole).unwrap(), 0);
    assert_eq!(fs.lseek(a.ino, 1 << 20, SeekKind::Hole).unwrap(), size);
    assert_eq!(errno(fs.lseek(a.ino, size, SeekKind::Data)), libc::ENXIO);
    assert_eq!(fs.read(a.ino, 100, 8).unwrap(), vec![0; 8]);
    assert!(fs.getattr(a.ino).unwrap().inode.blocks < size / 512);
    fs.fallocate(a.ino, 0, 8192, 0).unwrap();
    fs.fallocate(a.ino, 1 << 20, 4096, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE).unwrap();
    assert_eq!(fs.read(a.ino, 1 << 20, 4).unwrap(), vec![0; 4]);
    assert_eq!(fs.getattr(a.ino).unwrap().inode.size, size);
    fs.release(a.ino, fh).unwrap();
}

#[test]
fn copy_file_range_copies_and_extends() {
    let fs = memory_fs();
    let src = file(&fs, Ino::ROOT, "src");
    let dst = file(&fs, Ino::ROOT, "dst");
    fs.write(src, 0, b"0123456789").unwrap();
    fs.write(dst, 0, b"xxxxxxxxxxxxxxxx").unwrap();
    assert_eq!(fs.copy_file_range(src, 2, dst, 12, 100).unwrap(), 8);
    assert_eq!(fs.read(dst, 0, 100).unwrap(), b"xxxxxxxxxxxx23456789");
    assert_eq!(fs.copy_file_range(src, 10, dst, 0, 5).unwrap(), 0);
}

#[test]
fn setattr_truncates_and_honours_omit_and_now() {
    let fs = memory_fs();
    let f = file(&fs, Ino::ROOT, "f");
    fs.write(f, 0, b"hello world").unwrap();
    let t = Timespec { sec: 1_000_000, nsec: 123_456_789 };
    let set = SetAttr { atime: Some(TimeSet::At(t)), ..SetAttr::default() };
    let before = fs.getattr(f).unwrap().inode;
    let after = fs.setattr(f, &set).unwrap().inode;
    assert_eq!((after.atime, after.mtime), (t, before.mtime));
    assert!(after.ctime >= before.ctime);
    let after = fs.setattr(f, &SetAttr { size: Some(5), mode: Some(0o4700), ..SetAttr::default() }).unwrap().inode;
    assert_eq!((after.size, after.perm), (5, 0o4700));
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"hello");
    fs.setattr(f, &SetAttr { size: Some(8), ..SetAttr::default() }).unwrap();
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"hello\0\0\0");
    let d = dir(&fs, Ino::ROOT, "d");
    assert_eq!(errno(fs.setattr(d, &SetAttr { size: Some(0), ..SetAttr::default() })), libc::EISDIR);
}

#[test]
fn times_follow_the_update_rules() {
    let fs = memory_fs();
    let root_before = fs.getattr(Ino::ROOT).unwrap().inode;
    let f = file(&fs, Ino::ROOT, "f");
    let root = fs.getattr(Ino::ROOT).unwrap().inode;
    assert!(root.mtime >= root_before.mtime && root.ctime == root.mtime);
    let created = fs.getattr(f).unwrap().inode;
    // A new file's times are one stamp (its inode's, until its object exists).
    assert_eq!((created.atime, created.ctime), (created.mtime, created.mtime));
    assert!(created.crtime <= created.mtime);
    fs.link(f, Ino::ROOT, b"g").unwrap();
    assert!(fs.getattr(f).unwrap().inode.ctime >= created.ctime);
    // relatime: a read after a write refreshes atime.
    fs.write(f, 0, b"x").unwrap();
    let written = fs.getattr(f).unwrap().inode;
    fs.read(f, 0, 1).unwrap();
    assert!(fs.getattr(f).unwrap().inode.atime > written.atime);
}

/// A filesystem on an in-memory tree whose data store the test also holds.
fn fs_and_data() -> (Fs, std::sync::Arc<crate::data::MemoryData>) {
    let store = Store::memory(&StoreOptions::default()).unwrap();
    let data = std::sync::Arc::new(crate::data::MemoryData::new(crate::AtimeMode::Relatime));
    (Fs::new(store.tree, Box::new(data.clone()), FsConfig::default()).unwrap(), data)
}

#[test]
fn without_kernel_io_a_file_gets_its_object_at_its_first_data_step() {
    use crate::data::DataStore;
    let (fs, data) = fs_and_data();
    let (f, fh) = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags { write: true, ..OpenFlags::default() }).unwrap();
    let f = f.ino;
    assert_eq!(data.stat(f).unwrap(), None, "an empty new file needs no object");
    let created = fs.getattr(f).unwrap().inode;
    assert_eq!((created.size, created.blocks), (0, 0));
    std::thread::sleep(std::time::Duration::from_millis(2));
    fs.rename(Ino::ROOT, b"f", Ino::ROOT, b"g", RenameFlags::default()).unwrap();
    fs.setattr(f, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).unwrap();
    assert_eq!(data.stat(f).unwrap(), None, "status changes stamp the inode, not a new object");
    let changed = fs.getattr(f).unwrap().inode;
    assert!(changed.ctime > created.ctime && changed.mtime == created.mtime);
    fs.write(f, 0, b"data").unwrap();
    let object = data.stat(f).unwrap().expect("the first write made the object");
    let written = fs.getattr(f).unwrap().inode;
    assert_eq!((written.size, written.mtime), (4, object.mtime));
    assert!(written.mtime >= changed.ctime && written.ctime >= changed.ctime);
    assert_eq!(written.atime, created.atime, "the object starts with the file's times; a write leaves atime");
    fs.release(f, fh).unwrap();
    fs.unlink(Ino::ROOT, b"g").unwrap();
    fs.drain_reclaims().unwrap();
    assert_eq!(data.stat(f).unwrap(), None);
}

#[test]
fn a_first_step_that_sets_one_time_keeps_the_other() {
    let (fs, data) = fs_and_data();
    let f = file(&fs, Ino::ROOT, "f");
    let created = fs.getattr(f).unwrap().inode;
    std::thread::sleep(std::time::Duration::from_millis(2));
    let mtime = Timespec { sec: 1_000_000, nsec: 5 };
    fs.setattr(f, &SetAttr { mtime: Some(TimeSet::At(mtime)), ..SetAttr::default() }).unwrap();
    assert!(crate::data::DataStore::stat(&*data, f).unwrap().is_some(), "utimens made the object");
    let set = fs.getattr(f).unwrap().inode;
    assert_eq!((set.atime, set.mtime), (created.atime, mtime), "UTIME_OMIT left the atime as it was");
    let g = file(&fs, Ino::ROOT, "g");
    let g_created = fs.getattr(g).unwrap().inode;
    std::thread::sleep(std::time::Duration::from_millis(2));
    fs.setattr(g, &SetAttr { size: Some(10), ..SetAttr::default() }).unwrap();
    let grown = fs.getattr(g).unwrap().inode;
    assert_eq!((grown.size, grown.atime), (10, g_created.atime), "a truncate leaves the atime");
    assert!(grown.mtime > g_created.mtime);
}

#[test]
fn with_kernel_io_a_create_makes_the_object_the_kernel_will_open() {
    use crate::data::DataStore;
    let (fs, data) = fs_and_data();
    fs.share_objects_with_kernel();
    let made = fs.create(USER, Ino::ROOT, b"f", 0o644, OpenFlags::default()).unwrap().0;
    let object = data.stat(made.ino).unwrap().expect("passthrough opens need an object");
    assert_eq!(made.inode.mtime, object.mtime, "the reply shows the object's times");
    let m = fs.mknod(USER, Ino::ROOT, b"m", libc::S_IFREG | 0o644, 0).unwrap();
    assert!(data.stat(m.ino).unwrap().is_some());
}

#[test]
fn setgid_directories_pass_on_their_group() {
    let fs = memory_fs();
    let d = fs.mkdir(Caller::ROOT, Ino::ROOT, b"shared", 0o2777).unwrap();
    assert_eq!(d.inode.perm & 0o2000, 0o2000);
    let sub = fs.mkdir(USER, d.ino, b"sub", 0o755).unwrap().inode;
    assert_eq!((sub.gid, sub.perm & 0o2000), (0, 0o2000));
    let f = fs.mknod(USER, d.ino, b"f", libc::S_IFREG | 0o2755, 0).unwrap().inode;
    assert_eq!((f.gid, f.perm & 0o2000), (0, 0), "a non-member loses setgid on a new file");
}

#[test]
fn statfs_counts_inodes_and_reports_the_device() {
    let fs = memory_fs();
    let base = fs.statfs().unwrap();
    let f = file(&fs, Ino::ROOT, "f");
    fs.write(f, 0, &[1; 10000]).unwrap();
    let st = fs.statfs().unwrap();
    assert_eq!(st.files - st.files_free, base.files - base.files_free + 1);
    assert!(st.blocks >= st.blocks_free && st.blocks_free >= st.blocks_avail && st.blocks > 0);
    assert_eq!(st.name_bytes_max, 255);
    fs.unlink(Ino::ROOT, b"f").unwrap();
    fs.drain_reclaims().unwrap();
    assert_eq!(fs.usage().inodes, 1);
}

#[test]
fn read_only_refuses_mutations() {
    let store = Store::memory(&StoreOptions::default()).unwrap();
    let cfg = FsConfig { read_only: true, ..FsConfig::default() };
    let fs = Fs::new(store.tree, store.data, cfg).unwrap();
    assert_eq!(errno(fs.mkdir(USER, Ino::ROOT, b"d", 0o755)), libc::EROFS);
    assert_eq!(errno(fs.open(Ino::ROOT, OpenFlags::from_raw(libc::O_WRONLY))), libc::EROFS);
    assert!(fs.getattr(Ino::ROOT).is_ok());
}

#[test]
fn concurrent_creates_in_one_directory_all_land() {
    let fs = std::sync::Arc::new(memory_fs());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    file(&fs, Ino::ROOT, &format!("t{t}-{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(names(&fs, Ino::ROOT).len(), 2 + 800);
    assert_eq!(fs.usage().inodes, 801);
    let err = FsError::Contention { attempts: 3 };
    assert_eq!(err.errno(), libc::EIO);
}

/// Two threads keep moving two directories into each other (and back):
/// whichever interleaving, no move may create a cycle, so every directory
/// still reaches the root and no rename is lost.
#[test]
fn crossed_directory_moves_never_make_a_cycle() {
    let fs = std::sync::Arc::new(memory_fs());
    let (p, q) = (dir(&fs, Ino::ROOT, "p"), dir(&fs, Ino::ROOT, "q"));
    let threads: Vec<_> = [(q, "p"), (p, "q")]
        .into_iter()
        .map(|(other, name)| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let none = RenameFlags::default();
                    if fs.rename(Ino::ROOT, name.as_bytes(), other, name.as_bytes(), none).is_ok() {
                        fs.rename(other, name.as_bytes(), Ino::ROOT, name.as_bytes(), none).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for d in [p, q] {
        assert_eq!(fs.getattr(d).unwrap().inode.parent, Ino::ROOT, "each move was undone: both are back at the root");
    }
    assert_eq!(names(&fs, Ino::ROOT).len(), 2 + 2);
}

/// A write, truncate or fallocate by a caller outside a setgid file's
/// group drops the bit (the kernel sends an empty setattr, or one that
/// clears only setuid); a member, root, and directories keep it.
#[test]
fn setattr_as_an_outsider_drops_setgid() {
    use crate::Setter;
    let fs = memory_fs();
    let f = file(&fs, Ino::ROOT, "f");
    let d = dir(&fs, Ino::ROOT, "d");
    let outsider = Setter { uid: 1000, in_group: &|_| false };
    let member = Setter { uid: 1000, in_group: &|gid| gid == 0 };
    let root = Setter { uid: 0, in_group: &|_| false };
    let chmod = |ino, mode| fs.setattr(ino, &SetAttr { mode: Some(mode), gid: Some(0), ..SetAttr::default() }).unwrap();
    let perm = |ino| fs.getattr(ino).unwrap().inode.perm;
    for who in [&member, &root] {
        chmod(f, 0o2666);
        fs.setattr_as(f, &SetAttr::default(), who).unwrap();
        assert_eq!(perm(f), 0o2666);
    }
    chmod(f, 0o2666);
    fs.setattr_as(f, &SetAttr::default(), &outsider).unwrap();
    assert_eq!(perm(f), 0o666, "an empty kill request from an outsider");
    chmod(f, 0o6766);
    fs.setattr_as(f, &SetAttr { mode: Some(0o2766), ..SetAttr::default() }, &outsider).unwrap();
    assert_eq!(perm(f), 0o766, "setuid cleared by the kernel, setgid by the rule");
    chmod(d, 0o2777);
    fs.setattr_as(d, &SetAttr::default(), &outsider).unwrap();
    assert_eq!(perm(d), 0o2777, "directories keep it");
}

/// What the kernel asks to turn a file handle back into an inode: `.` of
/// any live inode and `..` of a directory (the root is its own parent).
#[test]
fn lookup_of_dot_and_dotdot_by_inode_number() {
    let fs = memory_fs();
    let d = dir(&fs, Ino::ROOT, "d");
    let f = file(&fs, d, "f");
    assert_eq!(fs.lookup(f, b".").unwrap().ino, f);
    assert_eq!(fs.lookup(d, b"..").unwrap().ino, Ino::ROOT);
    assert_eq!(fs.lookup(Ino::ROOT, b"..").unwrap().ino, Ino::ROOT);
    assert_eq!(errno(fs.lookup(f, b"..")), libc::ENOTDIR);
    fs.unlink(d, b"f").unwrap();
    assert_eq!(errno(fs.lookup(f, b".")), libc::ENOENT, "a removed inode is stale");
}


#[test]
fn access_acls_set_the_mode_and_follow_chmod() {
    let fs = memory_fs();
    let f = file(&fs, Ino::ROOT, "f");
    let any = u32::MAX;
    let mode_only = acl_bytes(&[(0x01, 7, any), (0x04, 5, any), (0x20, 0, any)]);
    fs.setxattr(f, b"system.posix_acl_access", &mode_only, XattrFlags::default()).unwrap();
    assert_eq!(fs.getattr(f).unwrap().inode.perm, 0o750, "the ACL's bits become the mode");
    assert_eq!(errno(fs.getxattr(f, b"system.posix_acl_access", 0)), libc::ENODATA, "a mode-only ACL is not kept");
    let named = acl_bytes(&[(0x01, 6, any), (0x02, 6, 2000), (0x04, 4, any), (0x10, 6, any), (0x20, 4, any)]);
    fs.setxattr(f, b"system.posix_acl_access", &named, XattrFlags::default()).unwrap();
    assert_eq!(fs.getattr(f).unwrap().inode.perm, 0o664, "the mask is the group class");
    fs.setattr(f, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).unwrap();
    let XattrReply::Data(kept) = fs.getxattr(f, b"system.posix_acl_access", 4096).unwrap() else { panic!() };
    assert_eq!(kept, acl_bytes(&[(0x01, 6, any), (0x02, 6, 2000), (0x04, 4, any), (0x10, 0, any), (0x20, 0, any)]));
    let bad = acl_bytes(&[(0x01, 6, any), (0x02, 6, 2000), (0x04, 4, any), (0x20, 4, any)]);
    assert_eq!(errno(fs.setxattr(f, b"system.posix_acl_access", &bad, XattrFlags::default())), libc::EINVAL);
    assert_eq!(errno(fs.setxattr(f, b"system.posix_acl_default", &named, XattrFlags::default())), libc::EACCES);
    assert_eq!(errno(fs.setxattr(f, b"system.other", b"1", XattrFlags::default())), libc::EOPNOTSUPP);
    assert_eq!(errno(fs.setxattr(f, b"bogus.x", b"1", XattrFlags::default())), libc::EOPNOTSUPP);
}

#[test]
fn new_inodes_inherit_a_default_acl_or_take_the_umask() {
    let fs = memory_fs();
    let d = dir(&fs, Ino::ROOT, "d");
    let masked = Caller { umask: 0o077, ..USER };
    let plain = fs.mknod(masked, Ino::ROOT, b"plain", libc::S_IFREG | 0o666, 0).unwrap();
    assert_eq!(plain.inode.perm, 0o600, "no default ACL: the umask applies");
    let any = u32::MAX;
    let default = acl_bytes(&[(0x01, 7, any), (0x02, 7, 2000), (0x04, 5, any), (0x10, 7, any), (0x20, 5, any)]);
    fs.setxattr(d, b"system.posix_acl_default", &default, XattrFlags::default()).unwrap();
    let f = fs.mknod(masked, d, b"f", libc::S_IFREG | 0o640, 0).unwrap();
    assert_eq!(f.inode.perm, 0o640, "the create mode masks the default ACL; no umask");
    assert!(fs.getxattr(f.ino, b"system.posix_acl_access", 0).is_ok());
    let sub = fs.mkdir(masked, d, b"sub", 0o777).unwrap();
    assert_eq!(sub.inode.perm, 0o775);
    assert!(fs.getxattr(sub.ino, b"system.posix_acl_default", 0).is_ok(), "directories inherit the default ACL");
}

#[test]
fn attributes_read_while_no_handle_is_open_follow_later_truncates_and_chmods() {
    let fs = memory_fs();
    let f = file(&fs, Ino::ROOT, "f");
    fs.write(f, 0, b"hello world").unwrap();
    let seen = fs.getattr(f).unwrap().inode;
    assert_eq!(fs.getattr(f).unwrap().inode, seen, "a second look, cached, sees the same");
    fs.setattr(f, &SetAttr { size: Some(3), ..SetAttr::default() }).unwrap();
    assert_eq!(fs.getattr(f).unwrap().inode.size, 3, "the truncate is seen after the cached look");
    let before = fs.getattr(f).unwrap().inode;
    std::thread::sleep(std::time::Duration::from_millis(2));
    fs.setattr(f, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).unwrap();
    assert!(fs.getattr(f).unwrap().inode.ctime > before.ctime, "the chmod's ctime stamp is seen");
}
