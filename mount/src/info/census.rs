//! Counting a store's inodes and file bytes without getting in a
//! serving daemon's way: one streaming scan of `I/` (the engine's scans
//! hold no latch between refills, so writers never wait for it), a
//! `fstatat` per regular file that bypasses the data store's descriptor
//! cache, and a yield of the CPU every `CHUNK_INODES` inodes, where a
//! stop request is also honoured.

use super::report::Counts;
use super::InfoError;
use crate::data::DataStore;
use crate::error::{FsError, FsResult};
use crate::meta::Meta;
use crate::schema::{self, FileKind, Inode};

/// Inodes counted between two yields of the CPU (and stop checks).
const CHUNK_INODES: u64 = 1024;

/// Count the inodes of `meta` by kind and sum the regular files' sizes
/// from their objects in `data`. `stop` is polled between chunks; when it
/// says so, the count ends with `InfoError::Stopped`.
pub(crate) fn count(meta: &Meta, data: &dyn DataStore, stop: &dyn Fn() -> bool) -> Result<Counts, InfoError> {
    let mut counts = Counts::default();
    let mut stopped = false;
    let mut visit = |key: &[u8], value: &[u8]| -> FsResult<bool> {
        let inode = Inode::decode(key, value)?;
        add_inode(&mut counts, &inode);
        if inode.kind == FileKind::File {
            counts.file_bytes += file_size(data, key)?;
        }
        if counts.inodes.is_multiple_of(CHUNK_INODES) {
            stopped = stop();
            std::thread::yield_now();
        }
        Ok(!stopped)
    };
    meta.scan_each(schema::INODE_PREFIX, &mut visit)?;
    if stopped {
        return Err(InfoError::Stopped);
    }
    meta.scan_each(schema::ORPHAN_PREFIX, &mut |_, _| {
        counts.orphans += 1;
        Ok(true)
    })?;
    Ok(counts)
}

fn add_inode(counts: &mut Counts, inode: &Inode) {
    counts.inodes += 1;
    match inode.kind {
        FileKind::Dir => counts.dirs += 1,
        FileKind::File => counts.files += 1,
        FileKind::Symlink => counts.symlinks += 1,
        _ => counts.others += 1,
    }
}

/// A regular file's size: its object's length; a missing object is an
/// empty file (a create killed between its two steps, or a reclaim
/// racing this walk).
fn file_size(data: &dyn DataStore, key: &[u8]) -> FsResult<u64> {
    let ino = schema::inode_ino(key)?;
    let stat = data.stat(ino).map_err(|e| FsError::data("info", ino, e))?;
    Ok(stat.map_or(0, |s| s.size))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::MemoryData;
    use crate::{Caller, Fs, FsConfig};

    #[test]
    fn counts_match_what_was_made_and_stop_ends_the_walk() {
        let tree = holt_core::TreeBuilder::new("m").memory().open().unwrap();
        let data = Arc::new(MemoryData::new(crate::AtimeMode::Relatime));
        let fs = Fs::new(tree, Box::new(Arc::clone(&data)), FsConfig::default()).unwrap();
        let root = schema::Ino::ROOT;
        let dir = fs.mkdir(Caller::ROOT, root, b"d", 0o755).unwrap().ino;
        for (i, len) in [0usize, 10, 4096].into_iter().enumerate() {
            let (a, fh) = fs.create(Caller::ROOT, dir, format!("f{i}").as_bytes(), 0o644, Default::default()).unwrap();
            fs.write(a.ino, 0, &vec![7; len]).unwrap();
            fs.release(a.ino, fh).unwrap();
        }
        fs.symlink(Caller::ROOT, root, b"l", b"d/f0").unwrap();
        let c = count(fs.meta(), fs.data(), &|| false).unwrap();
        let want = Counts { inodes: 6, dirs: 2, files: 3, symlinks: 1, others: 0, orphans: 0, file_bytes: 4106 };
        assert_eq!(c, want);
        for i in 0..CHUNK_INODES {
            fs.mknod(Caller::ROOT, dir, format!("p{i}").as_bytes(), libc::S_IFIFO | 0o644, 0).unwrap();
        }
        let stopped = count(fs.meta(), fs.data(), &|| true);
        assert!(matches!(stopped, Err(InfoError::Stopped)), "a stop request ends a long walk");
    }
}
