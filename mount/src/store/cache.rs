//! The metadata tree's cache budget: `--cache-size`, or by default an
//! eighth of the memory this process may use.
//!
//! Why an eighth, between 64 MiB and 4 GiB: the tree caches whole 512 KiB
//! frames of metadata (names, inodes, xattrs, at a few hundred bytes per
//! entry, so 1 GiB holds several million entries); file data never goes
//! through it. The kernel's page cache, which holds file data and the
//! store's own files, and its dentry and inode caches, which answer most
//! lookups before they reach the daemon, need the rest of memory more. Below
//! 64 MiB (128 frames) a large tree thrashes: each miss reads a frame of
//! up to 512 KiB. Above 4 GiB a default would take too much of a shared
//! machine for a metadata cache; a bigger tree can be given more with
//! `--cache-size`. The memory counted is the smaller of MemTotal and the
//! cgroup (v2 or v1) limit of this process (a container sees the host's
//! MemTotal).

use std::path::Path;

/// Share of memory the default cache takes (1/8).
const MEMORY_SHARE_DIVISOR: u64 = 8;
pub const CACHE_BYTES_MIN: u64 = 64 << 20;
const CACHE_BYTES_DEFAULT_MAX: u64 = 4 << 30;
/// When the machine's memory cannot be read: holt-core's own default.
const CACHE_BYTES_FALLBACK: u64 = 512 << 20;

/// The default cache budget for this machine (see the module doc).
pub fn default_cache_bytes() -> u64 {
    let share = |m: u64| (m / MEMORY_SHARE_DIVISOR).clamp(CACHE_BYTES_MIN, CACHE_BYTES_DEFAULT_MAX);
    memory_bytes().map_or(CACHE_BYTES_FALLBACK, share)
}

/// `bytes` of cache in holt-core frames (at least the engine's minimum).
pub fn cache_frames(bytes: u64) -> usize {
    let frames = bytes / holt_core::FRAME_BYTES as u64;
    usize::try_from(frames).unwrap_or(usize::MAX).max(holt_core::POOL_FRAMES_MIN)
}

/// Memory this process may use: MemTotal, or less under a cgroup v2 limit.
fn memory_bytes() -> Option<u64> {
    let total = machine_memory()?;
    Some(cgroup_limit().map_or(total, |limit| limit.min(total)))
}

/// MemTotal of `/proc/meminfo`, in bytes.
fn machine_memory() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| mem_total(&s))
}

/// Whether this process runs under a memory limit below the machine's
/// memory (its cgroup's). The page cache then counts against the same
/// limit as the metadata cache, so once the cache is full the tree reads
/// its frames around the page cache (`TreeBuilder::direct_frame_reads`);
/// without a limit the page cache is a second level for evicted frames.
pub fn under_memory_limit() -> bool {
    machine_memory().is_some_and(|total| limited(total, cgroup_limit()))
}

fn limited(total: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| limit < total)
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of this process's cgroup, if it sets one: `memory.max`
/// (cgroup v2), else `memory.limit_in_bytes` of the v1 memory controller
/// ("max", or v1's huge "no limit", reads as none or as more than MemTotal).
fn cgroup_limit() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let limit = |dir: &str, path: &str, file: &str| -> Option<u64> {
        let at = Path::new("/sys/fs/cgroup").join(dir).join(path.trim_start_matches('/')).join(file);
        std::fs::read_to_string(at).ok()?.trim().parse().ok()
    };
    let v2 = || limit("", cgroup.lines().find_map(|l| l.strip_prefix("0::"))?, "memory.max");
    let v1 = || limit("memory", cgroup.lines().find_map(|l| l.split_once(":memory:"))?.1, "memory.limit_in_bytes");
    v2().or_else(v1)
}

/// A size in bytes: digits with an optional binary suffix K, M, G or T
/// (KiB, MiB, ...; `B` or `iB` may follow), as `--cache-size 512M`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("size '{s}': use digits with an optional K, M, G or T suffix (e.g. 512M)")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("size '{s}': no number before the suffix"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "M", "1.5G", "12X", "-1G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn only_a_limit_below_the_machine_s_memory_counts_as_one() {
        let total = 24 << 30;
        assert!(limited(total, Some(2 << 30)));
        assert!(!limited(total, None), "no limit");
        assert!(!limited(total, Some(total)), "a limit of all memory");
        assert!(!limited(total, Some(u64::MAX / 2)), "cgroup v1's 'no limit'");
    }

    #[test]
    fn default_cache_is_an_eighth_of_memory_within_bounds() {
        let b = default_cache_bytes();
        assert!((CACHE_BYTES_MIN..=CACHE_BYTES_DEFAULT_MAX).contains(&b) || b == CACHE_BYTES_FALLBACK, "{b}");
        assert_eq!(mem_total("MemFree: 1 kB\nMemTotal:       24576000 kB\n"), Some(24_576_000 * 1024));
        assert_eq!(mem_total("MemTotal: lots"), None);
        assert_eq!(cache_frames(512 << 20), 1024);
        assert_eq!(cache_frames(1), holt_core::POOL_FRAMES_MIN);
    }
}
