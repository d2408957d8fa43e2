//! Space a store takes on its device, from allocated blocks, split by
//! what holds it. Names under `meta/` are holt-core's (doc/FORMAT.md,
//! "Store directory"). The walk never follows a symlink, and an entry that
//! vanishes under it (a daemon reclaiming an object, trimming the WAL)
//! simply no longer counts.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::report::DiskUsage;
use crate::store::{DATA_NAME, META_NAME};

/// holt-core's WAL directory, space reserve and manifest, inside `meta/`.
const WAL_NAME: &str = "wal";
const RESERVE_NAME: &str = "RESERVE";
const MANIFEST_NAME: &str = "MANIFEST";
/// Deepest directory level the walk enters (`data/<shard>/` is 2): a
/// bound against anything unexpected planted in a store.
const DEPTH_MAX: usize = 8;

/// Allocated bytes under `store`, by part.
pub(crate) fn usage(store: &Path) -> io::Result<DiskUsage> {
    let meta = store.join(META_NAME);
    let part = |p: &Path| allocated(p, 0);
    let wal_bytes = part(&meta.join(WAL_NAME))?;
    let reserve_bytes = part(&meta.join(RESERVE_NAME))?;
    let meta_bytes = part(&meta)?;
    Ok(DiskUsage {
        tree_bytes: meta_bytes.saturating_sub(wal_bytes + reserve_bytes),
        wal_bytes,
        reserve_bytes,
        data_bytes: part(&store.join(DATA_NAME))?,
        total_bytes: part(store)?,
    })
}

/// When the engine last published a checkpoint: the manifest's mtime
/// (a publication renames a new manifest into place), seconds since the
/// Unix epoch.
pub(crate) fn last_checkpoint_sec(store: &Path) -> Option<i64> {
    fs::symlink_metadata(store.join(META_NAME).join(MANIFEST_NAME)).ok().map(|m| m.mtime())
}

/// `st_blocks * 512` of `path` and, for a directory, of everything below.
fn allocated(path: &Path, depth: usize) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut bytes = meta.blocks() * 512;
    if !meta.is_dir() || depth >= DEPTH_MAX {
        return Ok(bytes);
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(bytes),
        Err(e) => return Err(e),
    };
    for entry in entries {
        bytes += allocated(&entry?.path(), depth + 1)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_and_a_missing_part_is_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path();
        fs::create_dir_all(store.join("meta/wal")).unwrap();
        fs::create_dir_all(store.join("data/01")).unwrap();
        fs::write(store.join("meta/wal/wal-1.log"), vec![1u8; 64 << 10]).unwrap();
        fs::write(store.join("meta/frames.dat"), vec![2u8; 128 << 10]).unwrap();
        fs::write(store.join("data/01/0000000000000001"), vec![3u8; 32 << 10]).unwrap();
        let u = usage(store).unwrap();
        assert!(u.wal_bytes >= 64 << 10 && u.tree_bytes >= 128 << 10 && u.data_bytes >= 32 << 10, "{u:?}");
        assert_eq!(u.reserve_bytes, 0);
        assert!(u.total_bytes >= u.tree_bytes + u.wal_bytes + u.data_bytes, "{u:?}");
        assert_eq!(last_checkpoint_sec(store), None, "no manifest yet");
    }
}
