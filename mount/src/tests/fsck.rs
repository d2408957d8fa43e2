//! fsck on filesystems built through `Fs`: clean after varied work; then,
//! for each kind of damage injected into the tree or the data store:
//! found (with its path), repaired, and clean on a second run.

use std::sync::Arc;

use holt_core::Tree;

use super::USER;
use crate::data::{DataStore, MemoryData};
use crate::fsck::{fsck, FsckOptions, FsckReport, Problem, Progress};
use crate::schema::{self, AtimeMode, Dentry, FileKind, Ino, Inode, Superblock, Timespec, Usage};
use crate::{Fs, FsConfig, OpenFlags, RenameFlags, SetAttr, Store, StoreOptions, XattrFlags};

/// One data store seen by both the filesystem and fsck.
type Shared = Arc<MemoryData>;

/// A store after varied work, with the inodes the tests damage.
///
/// ```text
/// /a/f     "hello", xattr user.x; also /c/f2     /a (xattr user.k)
/// /a/f3    replaced by a rename over it          /c/pipe (fifo)
/// /sym -> a/f     /sparse (1 MiB, "x" at 0)      /p/q
/// an open file unlinked before the daemon went: an orphan in R/
/// ```
struct World {
    tree: Tree,
    data: Shared,
    a: Ino,
    c: Ino,
    p: Ino,
    q: Ino,
    f: Ino,
    f3: Ino,
    sparse: Ino,
    sym: Ino,
    orphan: Ino,
}

fn file(fs: &Fs, parent: Ino, name: &str, contents: &[u8]) -> Ino {
    let (attr, fh) = fs.create(USER, parent, name.as_bytes(), 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    fs.write(attr.ino, 0, contents).unwrap();
    fs.release(attr.ino, fh).unwrap();
    attr.ino
}

fn dir(fs: &Fs, parent: Ino, name: &str) -> Ino {
    fs.mkdir(USER, parent, name.as_bytes(), 0o755).unwrap().ino
}

fn populated() -> World {
    let store = Store::memory(&StoreOptions::default()).unwrap();
    let data = Arc::new(MemoryData::new(AtimeMode::Relatime));
    let tree = store.tree.clone();
    let fs = Fs::new(store.tree, Box::new(data.clone()), FsConfig::default()).unwrap();
    let root = Ino::ROOT;
    let none = RenameFlags::default();
    let a = dir(&fs, root, "a");
    let c = dir(&fs, a, "b");
    let f = file(&fs, a, "f", b"hello");
    fs.link(f, c, b"f2").unwrap();
    let sym = fs.symlink(USER, root, b"sym", b"a/f").unwrap().ino;
    fs.mknod(USER, c, b"pipe", libc::S_IFIFO | 0o644, 0).unwrap();
    fs.setxattr(a, b"user.k", b"v", XattrFlags::default()).unwrap();
    fs.setxattr(f, b"user.x", b"w", XattrFlags::default()).unwrap();
    fs.rename(a, b"b", root, b"c", none).unwrap();
    file(&fs, root, "tmp", b"first");
    fs.rename(root, b"tmp", a, b"f3", none).unwrap();
    let f3 = file(&fs, root, "g", b"replacement");
    fs.rename(root, b"g", a, b"f3", none).unwrap();
    let sparse = file(&fs, root, "sparse", b"x");
    fs.setattr(sparse, &SetAttr { size: Some(1 << 20), ..SetAttr::default() }).unwrap();
    dir(&fs, root, "gone");
    fs.rmdir(root, b"gone").unwrap();
    let p = dir(&fs, root, "p");
    let q = dir(&fs, p, "q");
    let (open, _kept_open) = fs.create(USER, root, b"open", 0o644, OpenFlags::from_raw(libc::O_RDWR)).unwrap();
    fs.write(open.ino, 0, b"still readable").unwrap();
    fs.unlink(root, b"open").unwrap();
    drop(fs);
    World { tree, data, a, c, p, q, f, f3, sparse, sym, orphan: open.ino }
}

fn check(w: &World, repair: bool) -> FsckReport {
    fsck(&w.tree, &w.data, &FsckOptions { repair }, &mut |_| {}).expect("fsck runs")
}

/// The variant names of the findings, in order.
fn variants(r: &FsckReport) -> Vec<String> {
    let name = |p: &Problem| format!("{p:?}").split([' ', '{']).next().unwrap_or_default().to_string();
    r.findings.iter().map(|f| name(&f.problem)).collect()
}

fn messages(r: &FsckReport) -> String {
    r.findings.iter().map(|f| format!("{}\n", f.problem)).collect()
}

fn assert_clean(w: &World) {
    let r = check(w, false);
    assert!(r.is_clean(), "expected a clean store:\n{}", messages(&r));
}

/// Finds exactly `expected`, repairs each, and is clean afterwards;
/// returns the repair's report.
fn repairs_cleanly(w: &World, expected: &[&str]) -> FsckReport {
    let found = check(w, false);
    assert_eq!(variants(&found), expected, "{}", messages(&found));
    assert!(found.findings.iter().all(|f| f.repaired.is_none()), "a check alone repairs nothing");
    let repaired = check(w, true);
    assert_eq!(variants(&repaired), expected);
    for f in &repaired.findings {
        assert!(f.repaired.is_some(), "not repaired: {}", f.problem);
    }
    assert_clean(w);
    repaired
}

fn message_of(r: &FsckReport, i: usize) -> String {
    r.findings[i].problem.to_string()
}

fn inode(w: &World, ino: Ino) -> Inode {
    let key = schema::inode_key(ino);
    Inode::decode(&key, &w.tree.get(&key).unwrap().expect("inode exists")).unwrap()
}

fn set_inode(w: &World, ino: Ino, change: impl FnOnce(&mut Inode)) {
    let mut i = inode(w, ino);
    change(&mut i);
    w.tree.put(&schema::inode_key(ino), &i.encode()).unwrap();
}

fn put_dentry(w: &World, dir: Ino, name: &[u8], ino: Ino, kind: FileKind) {
    w.tree.put(&schema::dentry_key(dir, name), &Dentry { ino, kind }.encode()).unwrap();
}

fn delete(w: &World, key: &[u8]) {
    assert!(w.tree.delete(key).unwrap(), "no key {}", schema::show_key(key));
}

/// Count `n` more inodes in usage shard `shard` than there are.
fn add_usage(w: &World, shard: u8, n: i64) {
    let key = schema::usage_key(shard);
    let was = w.tree.get(&key).unwrap().map_or(0, |v| Usage::decode(&key, &v).unwrap().inodes);
    w.tree.put(&key, &Usage { inodes: was + n }.encode()).unwrap();
}

/// The filesystem on the repaired store, as the next mount sees it.
fn remount(w: &World) -> Fs {
    Fs::new(w.tree.clone(), Box::new(w.data.clone()), FsConfig::default()).unwrap()
}

fn lost_found_entry(fs: &Fs, ino: Ino) -> Ino {
    let lf = fs.lookup(Ino::ROOT, b"lost+found").expect("lost+found exists");
    assert_eq!((lf.inode.kind, lf.inode.perm), (FileKind::Dir, 0o700));
    fs.lookup(lf.ino, format!("#{}", ino.0).as_bytes()).expect("reconnected by number").ino
}

#[test]
fn varied_operations_leave_a_clean_store() {
    let w = populated();
    let r = check(&w, false);
    assert!(r.is_clean(), "{}", messages(&r));
    let counts = (r.inodes, r.dirs, r.files, r.symlinks, r.others, r.orphans, r.objects);
    // root a c p q | f f3 sparse orphan | sym | pipe; objects: the four files.
    assert_eq!(counts, (11, 5, 4, 1, 1, 1, 4));
}

#[test]
fn progress_reports_every_phase_and_counts_up() {
    let store = Store::memory(&StoreOptions::default()).unwrap();
    let data = Arc::new(MemoryData::new(AtimeMode::Relatime));
    let fs = Fs::new(store.tree.clone(), Box::new(data.clone()), FsConfig::default()).unwrap();
    for i in 0..4200 {
        fs.mknod(USER, Ino::ROOT, format!("n{i}").as_bytes(), libc::S_IFREG | 0o644, 0).unwrap();
    }
    drop(fs);
    let mut seen: Vec<Progress> = Vec::new();
    let r = fsck(&store.tree, &data, &FsckOptions::default(), &mut |p| seen.push(p)).unwrap();
    assert!(r.is_clean(), "{}", messages(&r));
    let mut phases: Vec<&str> = seen.iter().map(|p| p.phase).collect();
    phases.dedup();
    assert_eq!(phases, ["engine", "counters", "inodes", "entries", "xattrs", "orphans", "objects", "paths"]);
    let inodes = seen.iter().filter(|p| p.phase == "inodes").map(|p| (p.done, p.total)).collect::<Vec<_>>();
    assert_eq!(inodes, [(0, Some(4201)), (4096, Some(4201)), (4201, Some(4201))]);
}

#[test]
fn missing_superblock_stops_the_check_and_is_left_alone() {
    let w = populated();
    delete(&w, schema::SUPERBLOCK_KEY);
    let r = check(&w, true);
    assert_eq!(variants(&r), ["SuperblockMissing"]);
    assert_eq!(r.findings[0].repaired, None);
    assert_eq!((r.inodes, r.objects), (0, 0), "nothing else is looked at");
}

#[test]
fn unsupported_format_is_reported_and_left_alone() {
    let w = populated();
    let sb = Superblock { format: 1, uuid: [3; 16], created: Timespec::now() };
    w.tree.put(schema::SUPERBLOCK_KEY, &sb.encode()).unwrap();
    let r = check(&w, true);
    assert_eq!(variants(&r), ["FormatUnsupported"]);
    assert!(message_of(&r, 0).contains("format 1"), "{}", message_of(&r, 0));
    assert_eq!(r.findings[0].repaired, None);
}

#[test]
fn unreadable_session_record_is_removed() {
    let w = populated();
    w.tree.put(schema::SESSION_KEY, b"\x07garbage").unwrap();
    repairs_cleanly(&w, &["SessionUnreadable"]);
    assert!(w.tree.get(schema::SESSION_KEY).unwrap().is_none());
}

#[test]
fn unknown_keys_are_reported_and_left_alone() {
    let w = populated();
    for key in [&b"Z/future"[..], b"toplevel", b"S/other", b"C/other"] {
        w.tree.put(key, b"v").unwrap();
    }
    let r = check(&w, true);
    assert_eq!(variants(&r), ["UnknownKey"; 4]);
    assert!(r.findings.iter().all(|f| f.repaired.is_none()));
    assert!(messages(&r).contains("Z/future belongs to no known family"), "{}", messages(&r));
    assert_eq!(check(&w, false).findings.len(), 4, "still there");
}

#[test]
fn malformed_keys_of_known_families_are_removed() {
    let w = populated();
    for key in [&b"I/abc"[..], b"D/short", b"X/\0\0\0\0\0\0\0\x02no-slash", b"R/abc", b"C/used/\x20"] {
        w.tree.put(key, b"v").unwrap();
    }
    let r = repairs_cleanly(&w, &["MalformedKey"; 5]);
    assert!(messages(&r).contains("key I/abc does not have its family's shape"), "{}", messages(&r));
}

#[test]
fn unreadable_inode_is_reported_and_nothing_around_it_is_touched() {
    let w = populated();
    w.tree.put(&schema::inode_key(w.f), b"\x01garbage").unwrap();
    let r = check(&w, true);
    assert_eq!(variants(&r), ["InodeUnreadable"], "its names, xattrs and object are trusted: {}", messages(&r));
    assert_eq!(r.findings[0].repaired, None);
    assert!(w.tree.get(&schema::dentry_key(w.a, b"f")).unwrap().is_some());
    assert!(w.data.stat(w.f).unwrap().is_some());
    assert_eq!(variants(&check(&w, false)), ["InodeUnreadable"]);
}

#[test]
fn entry_naming_a_missing_inode_is_removed() {
    let w = populated();
    put_dentry(&w, w.a, b"ghost", Ino(9999), FileKind::File);
    let r = repairs_cleanly(&w, &["DentryToMissingInode"]);
    assert_eq!(message_of(&r, 0), "/a/ghost: entry names inode 9999, which does not exist");
    assert_eq!(r.findings[0].repaired.as_deref(), Some("removed the entry"));
}

#[test]
fn entries_in_a_missing_inode_or_a_non_directory_are_removed() {
    let w = populated();
    put_dentry(&w, w.f, b"inside-a-file", w.f3, FileKind::File);
    put_dentry(&w, Ino(9999), b"nowhere", w.f3, FileKind::File);
    let r = repairs_cleanly(&w, &["DentryOutsideDir", "DentryOutsideDir"]);
    assert!(message_of(&r, 0).contains("a regular file, not a directory"), "{}", message_of(&r, 0));
    assert!(message_of(&r, 1).contains("which does not exist"), "{}", message_of(&r, 1));
}

#[test]
fn entry_kind_disagreeing_with_its_inode_takes_the_inode_kind() {
    let w = populated();
    put_dentry(&w, w.a, b"f", w.f, FileKind::Symlink);
    let r = repairs_cleanly(&w, &["DentryKindWrong"]);
    assert_eq!(message_of(&r, 0), format!("/a/f: entry says symlink but inode {} is a regular file", w.f.0));
    let key = schema::dentry_key(w.a, b"f");
    assert_eq!(Dentry::decode(&key, &w.tree.get(&key).unwrap().unwrap()).unwrap().kind, FileKind::File);
}

#[test]
fn entry_with_an_invalid_name_is_removed_and_its_inode_reconnected() {
    let w = populated();
    delete(&w, &schema::dentry_key(Ino::ROOT, b"sym"));
    put_dentry(&w, Ino::ROOT, b"..", w.sym, FileKind::Symlink);
    let r = repairs_cleanly(&w, &["DentryNameInvalid", "Unreachable"]);
    assert!(message_of(&r, 0).starts_with("/..: entry"), "{}", message_of(&r, 0));
    let fs = remount(&w);
    assert_eq!(fs.readlink(lost_found_entry(&fs, w.sym)).unwrap(), b"a/f");
}

#[test]
fn unreadable_entry_is_removed() {
    let w = populated();
    w.tree.put(&schema::dentry_key(w.c, b"junk"), b"\x09\x09").unwrap();
    let r = repairs_cleanly(&w, &["DentryUnreadable"]);
    assert!(message_of(&r, 0).starts_with("/c/junk: entry unreadable"), "{}", message_of(&r, 0));
}

#[test]
fn entry_naming_the_root_is_removed() {
    let w = populated();
    put_dentry(&w, w.a, b"loop", Ino::ROOT, FileKind::Dir);
    let r = repairs_cleanly(&w, &["RootHasName"]);
    assert_eq!(message_of(&r, 0), "/a/loop: entry names the root directory");
}

#[test]
fn file_that_lost_every_name_is_reconnected_in_lost_found() {
    let w = populated();
    delete(&w, &schema::dentry_key(Ino::ROOT, b"sparse"));
    let r = repairs_cleanly(&w, &["Unreachable"]);
    let expected = format!("regular file inode {} (nlink 1) is not reachable from the root", w.sparse.0);
    assert_eq!(message_of(&r, 0), expected);
    assert_eq!(r.findings[0].repaired, Some(format!("reconnected as /lost+found/#{}", w.sparse.0)));
    let fs = remount(&w);
    let ino = lost_found_entry(&fs, w.sparse);
    assert_eq!((fs.getattr(ino).unwrap().inode.size, fs.read(ino, 0, 2).unwrap()), (1 << 20, b"x\0".to_vec()));
    assert_eq!(fs.getattr(Ino::ROOT).unwrap().inode.nlink, 2 + 4, "a, c, p and lost+found");
}

#[test]
fn detached_directory_is_reconnected_with_its_subtree() {
    let w = populated();
    delete(&w, &schema::dentry_key(Ino::ROOT, b"c"));
    set_inode(&w, Ino::ROOT, |i| i.nlink -= 1);
    repairs_cleanly(&w, &["Unreachable"]);
    let fs = remount(&w);
    let c = lost_found_entry(&fs, w.c);
    assert_eq!(fs.lookup(c, b"f2").unwrap().ino, w.f);
    assert_eq!(fs.lookup(c, b"pipe").unwrap().inode.kind, FileKind::Fifo);
    assert_eq!(fs.getattr(c).unwrap().inode.parent, fs.lookup(Ino::ROOT, b"lost+found").unwrap().ino);
}

#[test]
fn cycle_of_directories_is_cut_into_lost_found() {
    let w = populated();
    // /p/q becomes q/p as well: p's name moves into q, out of the root.
    delete(&w, &schema::dentry_key(Ino::ROOT, b"p"));
    put_dentry(&w, w.q, b"p", w.p, FileKind::Dir);
    set_inode(&w, Ino::ROOT, |i| i.nlink -= 1);
    set_inode(&w, w.q, |i| i.nlink += 1);
    set_inode(&w, w.p, |i| i.parent = w.q);
    let r = repairs_cleanly(&w, &["DirCycle"]);
    assert!(message_of(&r, 0).contains(&format!("'p' in directory inode {}", w.q.0)), "{}", message_of(&r, 0));
    let fs = remount(&w);
    let p = lost_found_entry(&fs, w.p);
    assert_eq!(fs.lookup(p, b"q").unwrap().inode.nlink, 2);
}

#[test]
fn directory_with_two_names_keeps_one() {
    let w = populated();
    put_dentry(&w, Ino::ROOT, b"c2", w.c, FileKind::Dir);
    set_inode(&w, Ino::ROOT, |i| i.nlink += 1);
    let r = repairs_cleanly(&w, &["DirExtraName"]);
    assert!(message_of(&r, 0).starts_with("/c2: extra name of directory"), "{}", message_of(&r, 0));
    assert!(w.tree.get(&schema::dentry_key(Ino::ROOT, b"c")).unwrap().is_some());
}

#[test]
fn wrong_nlink_of_a_file_is_recomputed() {
    let w = populated();
    set_inode(&w, w.f, |i| i.nlink = 5);
    let r = repairs_cleanly(&w, &["NlinkWrong"]);
    assert_eq!(message_of(&r, 0), format!("/a/f (inode {}): nlink is 5, but it has 2 names", w.f.0));
    assert_eq!(inode(&w, w.f).nlink, 2);
}

#[test]
fn wrong_nlink_of_a_directory_is_recomputed() {
    let w = populated();
    set_inode(&w, w.a, |i| i.nlink = 7);
    let r = repairs_cleanly(&w, &["NlinkWrong"]);
    let expected = format!("/a (inode {}): directory nlink is 7, but 2 + its subdirectories is 2", w.a.0);
    assert_eq!(message_of(&r, 0), expected);
}

#[test]
fn wrong_recorded_parent_of_a_directory_is_fixed() {
    let w = populated();
    set_inode(&w, w.c, |i| i.parent = w.a);
    set_inode(&w, Ino::ROOT, |i| i.parent = w.p);
    let r = repairs_cleanly(&w, &["DirParentWrong", "DirParentWrong"]);
    assert!(message_of(&r, 0).starts_with("/ (inode 1): directory records parent"), "{}", message_of(&r, 0));
    assert!(message_of(&r, 1).starts_with(&format!("/c (inode {})", w.c.0)), "{}", message_of(&r, 1));
    assert_eq!((inode(&w, w.c).parent, inode(&w, Ino::ROOT).parent), (Ino::ROOT, Ino::ROOT));
}

#[test]
fn size_recorded_in_a_file_inode_is_cleared_and_the_object_keeps_the_data() {
    let w = populated();
    set_inode(&w, w.f, |i| (i.size, i.blocks) = (123, 8));
    let r = repairs_cleanly(&w, &["FileSizeInInode"]);
    assert!(message_of(&r, 0).starts_with("/a/f (inode"), "{}", message_of(&r, 0));
    let fs = remount(&w);
    assert_eq!(fs.read(w.f, 0, 100).unwrap(), b"hello");
}

#[test]
fn xattr_of_a_missing_inode_is_removed() {
    let w = populated();
    w.tree.put(&schema::xattr_key(Ino(9999), b"user.k"), b"v").unwrap();
    let r = repairs_cleanly(&w, &["XattrOfMissingInode"]);
    assert_eq!(message_of(&r, 0), "extended attribute 'user.k' of inode 9999, which does not exist");
}

#[test]
fn stale_orphan_markers_are_removed() {
    let w = populated();
    w.tree.put(&schema::orphan_key(w.f3), &[1, 1]).unwrap();
    w.tree.put(&schema::orphan_key(Ino(9999)), &[1, 1]).unwrap();
    let r = repairs_cleanly(&w, &["OrphanMarkerStale", "OrphanMarkerStale"]);
    assert!(message_of(&r, 0).contains("still linked (nlink 1, 1 names)"), "{}", message_of(&r, 0));
    assert_eq!(r.orphans, 1, "the real orphan stays one");
}

#[test]
fn orphan_marker_with_an_unreadable_value_is_rewritten() {
    let w = populated();
    w.tree.put(&schema::orphan_key(w.orphan), &[1, 99]).unwrap();
    repairs_cleanly(&w, &["OrphanMarkerUnreadable"]);
    assert_eq!(check(&w, false).orphans, 1);
}

#[test]
fn stray_data_objects_are_removed() {
    let w = populated();
    w.data.write(Ino(9999), 0, b"left by a lost create").unwrap();
    w.data.write(w.a, 0, b"a directory has no object").unwrap();
    let r = repairs_cleanly(&w, &["StrayObject", "StrayObject"]);
    assert!(message_of(&r, 0).contains("a directory (only regular files have one)"), "{}", message_of(&r, 0));
    assert_eq!((w.data.stat(Ino(9999)).unwrap(), w.data.stat(w.a).unwrap()), (None, None));
    assert_eq!(check(&w, false).objects, 4);
}

#[test]
fn wrong_inode_count_is_rewritten_into_shard_zero() {
    let w = populated();
    add_usage(&w, 3, 40);
    let r = repairs_cleanly(&w, &["InodeCountWrong"]);
    assert!(message_of(&r, 0).contains("count 51 inodes, but 11 are stored"), "{}", message_of(&r, 0));
    let shard = |s: u8| Usage::decode(b"C", &w.tree.get(&schema::usage_key(s)).unwrap().unwrap()).unwrap();
    assert_eq!((shard(0).inodes, shard(3).inodes), (11, 0));
}

#[test]
fn next_inode_number_missing_or_too_low_is_raised() {
    let w = populated();
    w.tree.put(schema::NEXT_INO_KEY, &schema::encode_u64(3)).unwrap();
    let r = repairs_cleanly(&w, &["NextInoTooLow"]);
    assert_eq!(r.findings[0].repaired, Some(format!("raised C/next_ino to {}", w.orphan.0 + 1)));
    delete(&w, schema::NEXT_INO_KEY);
    repairs_cleanly(&w, &["NextInoTooLow"]);
    let fs = remount(&w);
    assert!(fs.mknod(USER, Ino::ROOT, b"new", libc::S_IFREG | 0o644, 0).unwrap().ino.0 > w.orphan.0);
}

#[test]
fn unlinked_inode_without_orphan_marker_is_reconnected() {
    let w = populated();
    delete(&w, &schema::orphan_key(w.orphan));
    let r = repairs_cleanly(&w, &["Unreachable"]);
    assert!(message_of(&r, 0).contains("(nlink 0)"), "{}", message_of(&r, 0));
    let fs = remount(&w);
    let ino = lost_found_entry(&fs, w.orphan);
    assert_eq!((fs.getattr(ino).unwrap().inode.nlink, fs.read(ino, 0, 100).unwrap()), (1, b"still readable".to_vec()));
}

#[test]
fn removed_directory_that_still_holds_entries_is_brought_back() {
    let w = populated();
    delete(&w, &schema::dentry_key(Ino::ROOT, b"c"));
    set_inode(&w, Ino::ROOT, |i| i.nlink -= 1);
    set_inode(&w, w.c, |i| i.nlink = 0);
    w.tree.put(&schema::orphan_key(w.c), &[1, 1]).unwrap();
    let r = repairs_cleanly(&w, &["OrphanMarkerStale", "Unreachable", "NlinkWrong"]);
    assert!(message_of(&r, 0).contains("still holds entries"), "{}", message_of(&r, 0));
    let fs = remount(&w);
    assert_eq!(fs.getattr(lost_found_entry(&fs, w.c)).unwrap().inode.nlink, 2);
}

#[test]
fn lost_found_is_made_once_and_reused() {
    let w = populated();
    delete(&w, &schema::dentry_key(Ino::ROOT, b"sparse"));
    repairs_cleanly(&w, &["Unreachable"]);
    delete(&w, &schema::dentry_key(w.a, b"f3"));
    delete(&w, &schema::dentry_key(Ino::ROOT, b"p"));
    set_inode(&w, Ino::ROOT, |i| i.nlink -= 1);
    repairs_cleanly(&w, &["Unreachable", "Unreachable"]);
    assert_eq!(check(&w, false).inodes, 12, "lost+found is counted");
    let fs = remount(&w);
    for ino in [w.sparse, w.f3, w.p] {
        lost_found_entry(&fs, ino);
    }
    let lf = fs.lookup(Ino::ROOT, b"lost+found").unwrap();
    assert_eq!(lf.inode.nlink, 3, "p is its one subdirectory");
}

#[test]
fn lost_found_taken_by_a_file_leaves_the_inode_unreachable() {
    let w = populated();
    let fs = remount(&w);
    fs.mknod(USER, Ino::ROOT, b"lost+found", libc::S_IFREG | 0o644, 0).unwrap();
    drop(fs);
    delete(&w, &schema::dentry_key(Ino::ROOT, b"sparse"));
    let r = check(&w, true);
    assert_eq!(variants(&r), ["Unreachable"]);
    assert_eq!(r.findings[0].repaired, None);
    assert_eq!(variants(&check(&w, false)), ["Unreachable"]);
}

#[test]
fn many_kinds_of_damage_at_once_repair_into_a_working_filesystem() {
    let w = populated();
    delete(&w, &schema::dentry_key(Ino::ROOT, b"c"));
    set_inode(&w, w.f, |i| i.nlink = 9);
    set_inode(&w, w.a, |i| i.parent = w.p);
    put_dentry(&w, w.a, b"ghost", Ino(4242), FileKind::File);
    w.data.write(Ino(4242), 0, b"stray").unwrap();
    add_usage(&w, 9, 2);
    w.tree.put(&schema::xattr_key(Ino(4242), b"user.z"), b"z").unwrap();
    let r = check(&w, true);
    assert!(r.findings.len() >= 7, "{}", messages(&r));
    assert_eq!(r.repaired(), r.findings.len(), "{}", messages(&r));
    assert_clean(&w);
    let fs = remount(&w);
    let c = lost_found_entry(&fs, w.c);
    file(&fs, c, "after", b"works");
    fs.rename(c, b"after", w.a, b"after", RenameFlags::default()).unwrap();
    drop(fs);
    assert_clean(&w);
}

#[test]
fn every_problem_reads_as_words() {
    let at = || crate::fsck::Place { dir: Ino(5), name: b"n".to_vec(), path: None };
    let (ino, kind, key) = (Ino(7), FileKind::File, b"K/x".to_vec());
    let all = [
        Problem::Engine { message: "m".into() },
        Problem::SuperblockMissing,
        Problem::SuperblockUnreadable { what: "w" },
        Problem::FormatUnsupported { format: 9 },
        Problem::SessionUnreadable { what: "w" },
        Problem::UnknownKey { key: key.clone() },
        Problem::MalformedKey { key: key.clone() },
        Problem::RootMissing,
        Problem::RootNotDir { kind },
        Problem::InodeUnreadable { ino, what: "w" },
        Problem::DentryUnreadable { at: at(), what: "w" },
        Problem::DentryOutsideDir { at: at(), ino, dir_kind: None },
        Problem::DentryToMissingInode { at: at(), ino },
        Problem::DentryNameInvalid { at: at(), ino },
        Problem::DentryKindWrong { at: at(), ino, recorded: kind, actual: FileKind::Dir },
        Problem::RootHasName { at: at() },
        Problem::DirExtraName { ino, at: at() },
        Problem::DirParentWrong { ino, path: None, recorded: ino, actual: ino },
        Problem::DirCycle { ino, at: at() },
        Problem::Unreachable { ino, kind, nlink: 1 },
        Problem::NlinkWrong { ino, kind, path: None, nlink: 1, expected: 2 },
        Problem::FileSizeInInode { ino, path: None, size: 1, blocks: 1 },
        Problem::XattrOfMissingInode { ino, name: b"user.k".to_vec() },
        Problem::OrphanMarkerStale { ino, nlink: None, names: 0 },
        Problem::OrphanMarkerUnreadable { ino },
        Problem::StrayObject { ino, owner: None },
        Problem::CounterUnreadable { key, what: "w" },
        Problem::InodeCountWrong { counted: 1, actual: 2 },
        Problem::NextInoTooLow { next: None, max: ino },
    ];
    for p in all {
        let words = p.to_string();
        assert!(!words.contains('{') && words != format!("{p:?}"), "{p:?} has no message: {words}");
    }
}
