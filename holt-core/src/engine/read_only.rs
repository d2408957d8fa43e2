//! Read-only opens (`TreeBuilder::read_only`): the last checkpoint, plus the
//! WAL records past it replayed into frames held in memory, through a `Vfs`
//! that cannot write (`ReadOnlyVfs`), under a shared lock on `LOCK` opened
//! for reading.
//!
//! The engine has no `Durable` part, so nothing ever checkpoints (no
//! checkpointer is started, and close finds nothing to do); its sink
//! refuses every batch before anything is latched for writing, so the
//! frames, the WAL and the manifest stay as they were. Frames the replay
//! changed are dirty and so never evicted: memory grows with the WAL
//! replayed, as it would until the first checkpoint of a writer.

use std::sync::Arc;

use super::durable::{load_checkpoint, Checkpoint, WAL_DIR};
use super::sink::RefusingSink;
use super::{format_root, Config, Engine};
use crate::error::Result;
use crate::journal;
use crate::store::frame_store::FrameStore;
use crate::store::lock::StoreLock;
use crate::store::read_only_vfs::ReadOnlyVfs;
use crate::store::vfs::Vfs;

impl Engine {
    pub(super) fn open_read_only(cfg: Config) -> Result<Arc<Self>> {
        let lock = StoreLock::acquire_shared(&cfg.dir)?;
        let vfs: Arc<dyn Vfs> = Arc::new(ReadOnlyVfs);
        let (store, meta) = FrameStore::open_read_only(vfs.clone(), &cfg.dir)?;
        let Checkpoint { pool, lsn, keys, fresh } = load_checkpoint(&Arc::new(store), meta.as_ref(), &cfg.dir, &cfg)?;
        let replay = journal::read_records(&*vfs, &cfg.dir.join(WAL_DIR), lsn)?;
        if fresh {
            // Never checkpointed: the root a writer formats lives in memory only.
            format_root(&pool);
        }
        let engine = Self::assemble(cfg, pool, Box::new(RefusingSink { _keep: Box::new(lock) }), None);
        engine.recover(keys, &replay)?;
        log::debug!("{}: opened read-only, {} WAL records replayed in memory", engine.dir().display(), replay.len());
        Ok(Arc::new(engine))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::api::TreeBuilder;
    use crate::error::Error;

    /// Every file under `dir` with its bytes and mode, to prove nothing changed.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    stack.push(p.clone());
                    out.push((p, Vec::new(), m.mode()));
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap(), m.mode()));
                }
            }
        }
        out.sort();
        out
    }

    /// Copy the files of the store in `from` (a tree is open on it) to `to`,
    /// as a snapshot or backup of a live store would.
    fn copy_store(from: &Path, to: &Path) {
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dst = to.join(p.file_name().unwrap());
            if p.is_dir() {
                std::fs::create_dir(&dst).unwrap();
                copy_store(&p, &dst);
            } else {
                std::fs::copy(&p, &dst).unwrap();
            }
        }
    }

    /// A copy of a store with a checkpoint and WAL records past it, taken
    /// while its writer ran (so no close replayed or trimmed them).
    fn store_with_unreplayed_wal(dir: &Path) {
        let live = tempfile::tempdir().unwrap();
        let t = TreeBuilder::new(live.path()).checkpoint_interval(None).open().unwrap();
        for i in 0..200u32 {
            t.put(format!("k{i:04}").as_bytes(), b"checkpointed").unwrap();
        }
        t.checkpoint().unwrap();
        for i in 0..100u32 {
            t.put(format!("k{i:04}").as_bytes(), b"in the WAL only").unwrap();
        }
        t.delete(b"k0199").unwrap();
        t.sync().unwrap();
        copy_store(live.path(), dir);
    }

    #[test]
    fn read_only_open_replays_in_memory_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        store_with_unreplayed_wal(tmp.path());
        let before = snapshot(tmp.path());
        let t = TreeBuilder::new(tmp.path()).read_only(true).open().unwrap();
        let other = TreeBuilder::new(tmp.path()).read_only(true).open().expect("readers share the store");
        assert_eq!(t.get(b"k0000").unwrap().as_deref(), Some(&b"in the WAL only"[..]));
        assert_eq!(t.get(b"k0150").unwrap().as_deref(), Some(&b"checkpointed"[..]));
        assert!(t.get(b"k0199").unwrap().is_none());
        assert_eq!(other.scan_prefix(b"k").into_iter().count(), 199);
        assert!(matches!(t.put(b"new", b"v"), Err(Error::ReadOnly)));
        assert!(matches!(t.delete(b"k0000"), Err(Error::ReadOnly)));
        assert!(t.get(b"new").unwrap().is_none());
        t.sync().unwrap();
        t.checkpoint().unwrap();
        let writer = TreeBuilder::new(tmp.path()).open();
        assert!(matches!(writer, Err(Error::Locked { .. })), "a writer must wait for the readers");
        drop((t, other));
        assert_eq!(snapshot(tmp.path()), before, "a read-only open changed the store");
        let t = TreeBuilder::new(tmp.path()).open().expect("the writer gets the store once the readers close");
        assert_eq!(t.get(b"k0000").unwrap().as_deref(), Some(&b"in the WAL only"[..]));
    }

    /// A read-only bind mount of a directory (root ignores `chmod a-w`, a
    /// read-only mount stops it too), unmounted on drop.
    struct ReadOnlyBind {
        target: tempfile::TempDir,
    }

    impl ReadOnlyBind {
        fn new(source: &Path) -> ReadOnlyBind {
            use std::os::unix::ffi::OsStrExt;
            let target = tempfile::tempdir().unwrap();
            let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            let (src, dst) = (c(source), c(target.path()));
            let bind = |flags| {
                // SAFETY: mount(2) with valid C strings and no data.
                let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), flags, std::ptr::null()) };
                assert_eq!(rc, 0, "bind mount (needs root): {}", std::io::Error::last_os_error());
            };
            bind(libc::MS_BIND);
            let guard = ReadOnlyBind { target };
            bind(libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY);
            guard
        }
    }

    impl Drop for ReadOnlyBind {
        fn drop(&mut self) {
            use std::os::unix::ffi::OsStrExt;
            let dst = std::ffi::CString::new(self.target.path().as_os_str().as_bytes()).unwrap();
            // SAFETY: umount2 of the bind mount this guard made.
            unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
        }
    }

    #[test]
    fn read_only_open_works_on_read_only_media() {
        let tmp = tempfile::tempdir().unwrap();
        store_with_unreplayed_wal(tmp.path());
        let ro = ReadOnlyBind::new(tmp.path());
        let dir = ro.target.path();
        assert!(std::fs::write(dir.join("probe"), b"").is_err(), "the bind mount is read-only, even for root");
        match TreeBuilder::new(dir).open() {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EROFS)),
            Err(e) => panic!("a writer on read-only media should meet EROFS, got {e}"),
            Ok(_) => panic!("a writer cannot open a store on read-only media"),
        }
        let t = TreeBuilder::new(dir).read_only(true).open().unwrap();
        assert_eq!(t.get(b"k0042").unwrap().as_deref(), Some(&b"in the WAL only"[..]));
        assert_eq!(t.scan_prefix(b"k").into_iter().count(), 199);
        assert!(matches!(t.put(b"k", b"v"), Err(Error::ReadOnly)));
    }

    #[test]
    fn read_only_open_needs_an_existing_store() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = TreeBuilder::new(tmp.path().join("absent")).read_only(true).open();
        assert!(matches!(missing, Err(Error::Io { .. })), "no LOCK, no store");
        assert!(!tmp.path().join("absent").exists());
        assert!(matches!(TreeBuilder::new("x").memory().read_only(true).open(), Err(Error::InvalidArgument(_))));
    }
}
