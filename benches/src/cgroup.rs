//! A memory cap for the larger-than-memory cells (`--ltm-cap`): the bench
//! moves itself into a new child of its own memory cgroup whose limit is
//! the engine's budget, so an engine that caches through the page cache
//! (LMDB) gets the same memory as holt-core's pool. Pages already charged
//! (the data set, generated before the move) stay with the parent: in a
//! v1 hierarchy a moved task leaves its charges behind unless
//! `memory.move_charge_at_immigrate` says otherwise, and the child's is 0.
//! The engine's own memory and every page of its files read or written
//! after the move count against the cap. Needs root and the v1 memory
//! controller (`/sys/fs/cgroup/memory`), as on this machine; a v2-only
//! system gets an error naming what is missing.

use std::path::{Path, PathBuf};

use crate::engines::Res;

const V1_ROOT: &str = "/sys/fs/cgroup/memory";

/// The cap this process lives under until dropped.
pub struct MemoryCap {
    dir: PathBuf,
    parent: PathBuf,
}

fn write(path: &Path, value: &str) -> Res<()> {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
}

/// This process's group in the v1 memory hierarchy.
fn own_group() -> Res<PathBuf> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = groups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .ok_or("--ltm-cap needs the cgroup v1 memory controller (no memory line in /proc/self/cgroup)")?;
    Ok(Path::new(V1_ROOT).join(path.trim_start_matches('/')))
}

impl MemoryCap {
    /// Move this process into a new group limited to `bytes`.
    pub fn enter(bytes: u64) -> Res<MemoryCap> {
        let parent = own_group()?;
        remove_stale(&parent);
        let dir = parent.join(format!("holt-bench-ltm-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("create cgroup {}: {e} (root needed)", dir.display()))?;
        let cap = MemoryCap { dir, parent };
        write(&cap.dir.join("memory.move_charge_at_immigrate"), "0")?;
        write(&cap.dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
        write(&cap.dir.join("cgroup.procs"), &std::process::id().to_string())?;
        Ok(cap)
    }

    /// The most memory the group has used so far, in bytes.
    pub fn peak_bytes(&self) -> Res<u64> {
        let path = self.dir.join("memory.max_usage_in_bytes");
        let s = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        s.trim().parse().map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for MemoryCap {
    fn drop(&mut self) {
        let back = write(&self.parent.join("cgroup.procs"), &std::process::id().to_string());
        if let Err(e) = back.and_then(|()| std::fs::remove_dir(&self.dir).map_err(|e| e.to_string())) {
            eprintln!("ltm: leaving the memory cap {}: {e}", self.dir.display());
        }
    }
}

/// Remove the caps of earlier runs that died inside them (a cap whose
/// process the kernel killed for going over it is never dropped). A group
/// that still has tasks refuses the removal and stays.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("holt-bench-ltm-") {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Write back every dirty page and drop the clean page cache, so the next
/// reads of the engine's files come from the disk (root only).
pub fn drop_caches() -> Res<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    write(Path::new("/proc/sys/vm/drop_caches"), "1")
}
