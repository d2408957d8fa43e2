//! Dump and load through the fs layer, no kernel: a tree with every kind
//! of inode round-trips byte for byte; a dump taken while another thread
//! renames is one moment's namespace; bad input and non-empty stores are
//! refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::format::{Record, StreamReader};
use super::*;
use crate::schema::{FileKind, TimeSet, Timespec};
use crate::tests::USER;
use crate::ctl::proto::{self, Request};
use crate::{Caller, OpenFlags, RenameFlags, SetAttr, XattrFlags};

const MIB: u64 = 1 << 20;
const NO_CTIME: DumpOptions = DumpOptions { meta_only: false, no_ctime: true };

fn open_fs(dir: &Path) -> Fs {
    let store = Store::open(dir, &StoreOptions::default()).expect("store opens");
    Fs::from_store(store, FsConfig::default()).expect("filesystem opens")
}

fn file(fs: &Fs, parent: Ino, name: &[u8], perm: u32, chunks: &[(u64, &[u8])]) -> Ino {
    let flags = OpenFlags { write: true, read_write: false, exclusive: true, truncate: false };
    let (attr, fh) = fs.create(USER, parent, name, perm, flags).unwrap();
    for (off, bytes) in chunks {
        fs.write(attr.ino, *off, bytes).unwrap();
    }
    fs.release(attr.ino, fh).unwrap();
    attr.ino
}

fn at(sec: i64, nsec: u32) -> Option<TimeSet> {
    Some(TimeSet::At(Timespec { sec, nsec }))
}

/// Every kind of inode, hard links (one to a symlink), xattrs, a sparse
/// file with a trailing hole, odd names, a setgid directory whose
/// children the loader must correct, and times to the nanosecond.
fn build(fs: &Fs) {
    let root = Ino::ROOT;
    let dir = fs.mkdir(USER, root, b"dir", 0o2755).unwrap().ino;
    let plain = file(fs, dir, b"plain", 0o640, &[(0, b"hello")]);
    fs.setattr(plain, &SetAttr { gid: Some(5), ..SetAttr::default() }).unwrap();
    let sub = fs.mkdir(USER, dir, b"sub", 0o755).unwrap().ino;
    fs.setattr(sub, &SetAttr { mode: Some(0o700), ..SetAttr::default() }).unwrap();
    fs.link(plain, root, b"hardlink").unwrap();
    fs.link(plain, sub, b"third").unwrap();
    let sparse = file(fs, root, b"sparse", 0o600, &[(0, &[b'a'; 4096]), (8 * MIB, &[b'b'; 4096])]);
    fs.setattr(sparse, &SetAttr { size: Some(16 * MIB), ..SetAttr::default() }).unwrap();
    let sym = fs.symlink(USER, root, b"sym", b"dir/plain").unwrap().ino;
    fs.link(sym, sub, b"sym2").unwrap();
    fs.mknod(USER, root, b"fifo", libc::S_IFIFO | 0o644, 0).unwrap();
    fs.mknod(USER, root, b"sock", libc::S_IFSOCK | 0o600, 0).unwrap();
    fs.mknod(Caller::ROOT, root, b"chr", libc::S_IFCHR | 0o600, 0x0501).unwrap();
    fs.mknod(Caller::ROOT, root, b"blk", libc::S_IFBLK | 0o660, 0x0801).unwrap();
    for name in [&b"new\nline"[..], b"\xff\xfe not utf-8", &[b'x'; 255], b" spaced out "] {
        file(fs, root, name, 0o644, &[(0, name)]);
    }
    fs.setxattr(plain, b"user.a", &[0, 1, 2, 255], XattrFlags::default()).unwrap();
    fs.setxattr(dir, b"user.big", &vec![7; 65536], XattrFlags::default()).unwrap();
    fs.setxattr(root, b"trusted.root", b"r", XattrFlags::default()).unwrap();
    fs.setxattr(sym, b"user.on-link", b"", XattrFlags::default()).unwrap();
    let times = SetAttr { atime: at(1_000_000_000, 1), mtime: at(1_600_000_000, 999_999_999), ..SetAttr::default() };
    for ino in [plain, sparse, sym, sub, dir] {
        fs.setattr(ino, &times).unwrap();
    }
}

fn dump_to_vec(fs: &Fs, opts: DumpOptions) -> Vec<u8> {
    let mut out = Vec::new();
    dump_live(fs, &mut out, opts, &mut |_| {}, &|| false).unwrap();
    out
}

fn lookup_path(fs: &Fs, path: &[&[u8]]) -> crate::Attr {
    path.iter().fold(fs.getattr(Ino::ROOT).unwrap(), |dir, name| fs.lookup(dir.ino, name).unwrap())
}

#[test]
fn every_kind_of_inode_round_trips_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = {
        let fs = open_fs(&a);
        build(&fs);
        dump_to_vec(&fs, NO_CTIME)
    };
    let totals = load_store(&b, &first[..], &mut |_| {}).unwrap();
    assert_eq!((totals.inodes, totals.names), (14, 16), "{totals:?}");
    let mut again = Vec::new();
    dump_store(&b, &mut again, NO_CTIME, &mut |_| {}).unwrap();
    assert!(again == first, "dump -> load -> dump gives the same bytes");
    let fs = open_fs(&b);
    let sparse = lookup_path(&fs, &[b"sparse"]);
    assert_eq!(sparse.inode.size, 16 * MIB);
    assert!(sparse.inode.blocks * 512 < MIB, "holes stay holes: {} blocks", sparse.inode.blocks);
    assert_eq!(fs.read(sparse.ino, 8 * MIB, 4).unwrap(), b"bbbb");
    let plain = lookup_path(&fs, &[b"dir", b"sub", b"third"]);
    assert_eq!((plain.inode.nlink, plain.inode.gid, plain.inode.perm), (3, 5, 0o640));
    assert_eq!(lookup_path(&fs, &[b"dir", b"sub"]).inode.perm, 0o700, "setgid inheritance undone");
    assert_eq!(lookup_path(&fs, &[b"chr"]).inode.rdev, 0x0501);
    assert_eq!(fs.readlink(lookup_path(&fs, &[b"dir", b"sub", b"sym2"]).ino).unwrap(), b"dir/plain");
}

#[test]
fn dumps_with_ctimes_and_meta_only_load_too() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = open_fs(&tmp.path().join("a"));
    build(&fs);
    let full = dump_to_vec(&fs, DumpOptions::default());
    assert_ne!(full, dump_to_vec(&fs, NO_CTIME), "ctimes are recorded unless asked not to be");
    assert_eq!(full, dump_to_vec(&fs, DumpOptions::default()), "two dumps of one moment are identical");
    load_store(&tmp.path().join("b"), &full[..], &mut |_| {}).unwrap();
    let mut reloaded = Vec::new();
    dump_store(&tmp.path().join("b"), &mut reloaded, DumpOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(without_ctimes(&reloaded), without_ctimes(&full), "with ctimes, only the ctimes differ");
    let meta_only = DumpOptions { meta_only: true, no_ctime: true };
    let first = dump_to_vec(&fs, meta_only);
    load_store(&tmp.path().join("c"), &first[..], &mut |_| {}).unwrap();
    let mut again = Vec::new();
    dump_store(&tmp.path().join("c"), &mut again, meta_only, &mut |_| {}).unwrap();
    assert!(again == first, "a meta-only dump round-trips too");
    let c = open_fs(&tmp.path().join("c"));
    let sparse = lookup_path(&c, &[b"sparse"]);
    assert_eq!((sparse.inode.size, sparse.inode.blocks), (16 * MIB, 0), "contents left out: all hole");
}

/// The records of a stream, every ctime zeroed.
fn without_ctimes(stream: &[u8]) -> Vec<Record> {
    let mut reader = StreamReader::new(stream).unwrap();
    let mut out = Vec::new();
    while let Some(mut record) = reader.next_record().unwrap() {
        if let Record::Inode(r) = &mut record {
            r.ctime = Timespec::default();
        }
        out.push(record);
    }
    out
}

#[test]
fn load_refuses_a_store_with_files_and_bad_streams() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = open_fs(&tmp.path().join("a"));
    build(&fs);
    let good = dump_to_vec(&fs, DumpOptions::default());
    let err = load_store(&tmp.path().join("a"), &good[..], &mut |_| {}).unwrap_err();
    assert!(matches!(err, DumpError::Store(StoreError::Locked { .. })), "a store in use is refused: {err}");
    drop(fs);
    let err = load_store(&tmp.path().join("a"), &good[..], &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("already holds files"), "{err}");
    let cut = &good[..good.len() - 10];
    let err = load_store(&tmp.path().join("b"), cut, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    let err = load_store(&tmp.path().join("c"), &flipped[..], &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    let err = load_store(&tmp.path().join("d"), &b"not a dump at all"[..], &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("not a holt-fs dump"), "{err}");
}

/// Each path of a stream with its stream id.
fn paths(stream: &[u8]) -> BTreeMap<Vec<u8>, u64> {
    let mut reader = StreamReader::new(stream).unwrap();
    let (mut dirs, mut out): (Vec<Vec<u8>>, BTreeMap<Vec<u8>, u64>) = (Vec::new(), BTreeMap::new());
    while let Some(record) = reader.next_record().unwrap() {
        let path = |name: &[u8], dirs: &[Vec<u8>]| [dirs.concat(), name.to_vec()].concat();
        match record {
            Record::Inode(r) => {
                out.insert(path(&r.name, &dirs), r.id);
                if r.kind == FileKind::Dir {
                    dirs.push([r.name.as_slice(), b"/"].concat());
                }
            }
            Record::Link { id, name } => {
                out.insert(path(&name, &dirs), id);
            }
            Record::End => {
                dirs.pop();
            }
            _ => {}
        }
    }
    out
}

/// A file renamed back and forth between two directories, and a whole
/// tree moved from one parent to another, while dumps run: every dump
/// holds the file exactly once and the tree whole in one place.
#[test]
fn a_dump_is_one_moment_while_renames_run() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Arc::new(open_fs(&tmp.path().join("a")));
    let root = Ino::ROOT;
    let (x, y) = (fs.mkdir(USER, root, b"x", 0o755).unwrap().ino, fs.mkdir(USER, root, b"y", 0o755).unwrap().ino);
    file(&fs, x, b"f", 0o644, &[(0, b"f")]);
    let tree = fs.mkdir(USER, x, b"tree", 0o755).unwrap().ino;
    for i in 0..300 {
        file(&fs, tree, format!("t{i:03}").as_bytes(), 0o644, &[]);
    }
    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let (fs, done) = (Arc::clone(&fs), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut moves = 0u32;
            while !done.load(Ordering::Relaxed) {
                let (from, to) = if moves.is_multiple_of(2) { (x, y) } else { (y, x) };
                fs.rename(from, b"f", to, b"f", RenameFlags::default()).unwrap();
                fs.rename(from, b"tree", to, b"tree", RenameFlags::default()).unwrap();
                moves += 1;
            }
            moves
        })
    };
    for _ in 0..20 {
        let found = paths(&dump_to_vec(&fs, DumpOptions::default()));
        let files: Vec<String> =
            found.keys().filter(|p| p.ends_with(b"/f")).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        assert_eq!(files.len(), 1, "the renamed file appears exactly once: {files:?}");
        let in_x = found.keys().filter(|p| p.starts_with(b"/x/tree/")).count();
        let in_y = found.keys().filter(|p| p.starts_with(b"/y/tree/")).count();
        assert!((in_x, in_y) == (300, 0) || (in_x, in_y) == (0, 300), "the tree moved whole: {in_x} {in_y}");
    }
    done.store(true, Ordering::Relaxed);
    assert!(mover.join().unwrap() > 0, "renames ran while dumping");
}

/// A file deleted after the snapshot is still dumped with its bytes: its
/// object outlives its last name until the dump ends.
#[test]
fn objects_of_files_deleted_during_a_dump_are_kept_until_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = open_fs(&tmp.path().join("a"));
    let gone = file(&fs, Ino::ROOT, b"gone", 0o644, &[(0, b"still here")]);
    let hold = fs.hold_reclaims();
    fs.unlink(Ino::ROOT, b"gone").unwrap();
    fs.drain_reclaims().unwrap();
    assert!(fs.data().stat(gone).unwrap().is_some(), "the object is kept while held");
    drop(hold);
    fs.drain_reclaims().unwrap();
    assert!(fs.data().stat(gone).unwrap().is_none(), "and reclaimed once the hold is gone");
}

#[test]
fn a_stop_request_aborts_the_stream_with_its_reason() {
    let fs = crate::tests::memory_fs();
    for i in 0..2100 {
        fs.mknod(USER, Ino::ROOT, format!("p{i}").as_bytes(), libc::S_IFIFO | 0o644, 0).unwrap();
    }
    let mut out = Vec::new();
    let err = dump_live(&fs, &mut out, DumpOptions::default(), &mut |_| {}, &|| true).unwrap_err();
    assert!(matches!(err, DumpError::Stopped));
    let loaded = load_store(&tempfile::tempdir().unwrap().path().join("s"), &out[..], &mut |_| {});
    assert!(loaded.unwrap_err().to_string().contains("unmounting"), "the reader is told why");
}

/// The daemon's answer over a real control socket is the same stream as
/// a dump made in process; bad arguments are refused before any stream.
#[test]
fn a_dump_over_the_control_socket_is_the_filesystem_s_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let fs = Arc::new(open_fs(&dir));
    build(&fs);
    let stats = crate::metrics::StatsSource::new(Arc::clone(&fs), Arc::default(), Arc::default());
    let handler = crate::ctl::DaemonHandler { fs: Arc::clone(&fs), stats, store: dir.clone(), mountpoint: "/mnt".into() };
    let _server = crate::ctl::Server::start(&dir, Arc::new(handler)).unwrap();
    let mut out = Vec::new();
    let mut shown = Progress::default();
    let report = dump_remote(&dir, &mut out, NO_CTIME, &mut |p| shown = p).unwrap();
    assert!(out == dump_to_vec(&fs, NO_CTIME), "the socket carries the filesystem's dump");
    assert_eq!((report.totals.inodes, report.stream_bytes), (14, out.len() as u64));
    assert_eq!((shown.inodes, shown.bytes), (14, out.len() as u64), "progress counts what passed");
    let stream = crate::ctl::connect(&dir).unwrap();
    let bad = Request { args: Some(serde_json::json!({"meta_only": "yes"})), ..Request::new(proto::REQUEST_DUMP) };
    std::io::Write::write_all(&mut &stream, &proto::encode(&bad)).unwrap();
    let reply = crate::ctl::read_reply(&mut std::io::BufReader::new(&stream)).unwrap();
    assert_eq!(reply.error.map(|e| e.code).as_deref(), Some(proto::code::BAD_REQUEST));
}

/// A file written while the dump reads it is dumped as read and named in
/// the report; the others are not.
#[test]
fn a_file_written_while_read_is_reported_by_path() {
    let fs = Arc::new(crate::tests::memory_fs());
    let dir = fs.mkdir(USER, Ino::ROOT, b"d", 0o755).unwrap().ino;
    file(&fs, Ino::ROOT, b"quiet", 0o644, &[(0, b"still")]);
    let busy = file(&fs, dir, b"busy", 0o644, &[(0, &vec![1; 8 << 20])]);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fs, done) = (Arc::clone(&fs), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                fs.write(busy, 0, b"x").unwrap();
            }
        })
    };
    let mut report = DumpReport::default();
    for _ in 0..50 {
        let mut out = Vec::new();
        report = dump_live(&fs, &mut out, DumpOptions::default(), &mut |_| {}, &|| false).unwrap();
        if report.changed_while_read > 0 {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(report.changed_while_read, 1, "{report:?}");
    assert_eq!(report.changed_paths, vec!["/d/busy".to_string()]);
}

/// A damaged tree whose directory names the root again would send a
/// walk round forever; the dump refuses it and says to run fsck.
#[test]
fn a_directory_cycle_in_a_damaged_tree_is_refused() {
    let fs = crate::tests::memory_fs();
    let sub = fs.mkdir(USER, Ino::ROOT, b"sub", 0o755).unwrap().ino;
    let mut txn = fs.meta().txn();
    txn.put_dentry(sub, b"loop", crate::schema::Dentry { ino: Ino::ROOT, kind: FileKind::Dir });
    assert!(txn.commit().unwrap());
    let err = dump_live(&fs, std::io::sink(), DumpOptions::default(), &mut |_| {}, &|| false).unwrap_err();
    assert!(err.to_string().contains("run holt-fs fsck"), "{err}");
}

/// ACLs come back exactly as they were: a directory's default ACL is set
/// only after its entries are made, so none inherits one it did not have
/// (here: a file whose inherited ACL was removed, and entries made
/// before the default ACL was set).
#[test]
fn acls_round_trip_and_nothing_is_inherited_twice() {
    const NONE: u32 = u32::MAX;
    let access = crate::tests::acl_bytes(&[(0x01, 7, NONE), (0x02, 5, 1234), (0x04, 5, NONE), (0x10, 5, NONE), (0x20, 4, NONE)]);
    let tmp = tempfile::tempdir().unwrap();
    let first = {
        let fs = open_fs(&tmp.path().join("a"));
        let root = Ino::ROOT;
        let dir = fs.mkdir(USER, root, b"acl", 0o755).unwrap().ino;
        file(&fs, dir, b"before", 0o644, &[]);
        fs.setxattr(dir, b"system.posix_acl_default", &access, XattrFlags::default()).unwrap();
        file(&fs, dir, b"inherits", 0o644, &[]);
        fs.mkdir(USER, dir, b"sub", 0o755).unwrap();
        let stripped = file(&fs, dir, b"stripped", 0o644, &[]);
        fs.removexattr(stripped, b"system.posix_acl_access").unwrap();
        let own = file(&fs, root, b"own", 0o640, &[]);
        fs.setxattr(own, b"system.posix_acl_access", &access, XattrFlags::default()).unwrap();
        dump_to_vec(&fs, NO_CTIME)
    };
    let xattr_names = |stream: &[u8]| {
        without_ctimes(stream).iter().filter(|r| matches!(r, Record::Xattr { .. })).count()
    };
    assert_eq!(xattr_names(&first), 5, "default on acl/, access+default on sub/, access on inherits and own");
    load_store(&tmp.path().join("b"), &first[..], &mut |_| {}).unwrap();
    let mut again = Vec::new();
    dump_store(&tmp.path().join("b"), &mut again, NO_CTIME, &mut |_| {}).unwrap();
    assert_eq!(without_ctimes(&again), without_ctimes(&first));
    assert!(again == first, "byte-identical");
}
