//! The report `holt-fs info` prints, as the daemon sends it over the
//! control socket and as `--json` shows it. Field names are a public
//! interface (doc/FORMAT.md, "Info report"): a field may be added, never
//! renamed or given another meaning without a new protocol version.
//! Optional fields default when absent, so a newer client reads an older
//! daemon's report; unknown fields are ignored, so an older client reads
//! a newer one's.

use serde::{Deserialize, Serialize};

/// Everything `info` tells about one store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The store directory, absolute.
    pub store: String,
    /// Who gathered the report.
    pub answered_by: AnsweredBy,
    /// Filesystem format (`S/format`); `None`: no superblock (never mounted).
    #[serde(default)]
    pub format: Option<u32>,
    /// The filesystem's uuid, `8-4-4-4-12` hex; `None`: unknown.
    #[serde(default)]
    pub uuid: Option<String>,
    /// When the filesystem was formatted, seconds since the Unix epoch.
    #[serde(default)]
    pub created_sec: Option<i64>,
    /// Mounts of the store in the mount table (empty: not mounted).
    #[serde(default)]
    pub mounts: Vec<MountInfo>,
    /// How the last read-write mount ended (see [`LastShutdown`]).
    pub last_shutdown: LastShutdown,
    /// The control socket as `info` found it.
    pub control_socket: SocketState,
    pub counts: Counts,
    pub disk: DiskUsage,
    pub engine: EngineInfo,
}

/// Who gathered a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    /// The daemon serving the store, over its control socket.
    Daemon,
    /// `info` itself, from a read-only open of a store no daemon serves
    /// read-write.
    Store,
}

/// One mount of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub mountpoint: String,
    /// The serving daemon's pid, where known (read-only daemons have no
    /// control socket to say it).
    #[serde(default)]
    pub pid: Option<u32>,
    pub read_only: bool,
    pub state: MountState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountState {
    /// A daemon answers requests on it.
    Serving,
    /// Its daemon is gone (killed): every access fails with ENOTCONN
    /// until it is unmounted or the store is mounted again.
    Dead,
}

/// How the last read-write mount ended; for a store being served
/// read-write, the mount before the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastShutdown {
    /// There was none (a new store, or only read-only mounts).
    None,
    Clean,
    /// Its daemon was killed; the machine stayed up.
    Killed,
    /// The machine went down under it (power loss or reboot).
    PowerLoss,
}

/// `STORE/ctl.sock` as `info` found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketState {
    /// A daemon answered on it.
    Answering,
    /// It exists but refuses connections: left by a daemon that was killed.
    Stale,
    /// There is none (no read-write daemon, or it is not started yet).
    Absent,
}

/// What the tree holds, from one walk of the inodes: not a snapshot, so
/// under concurrent changes the numbers may mix moments of the walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Inodes stored, orphans awaiting reclaim included.
    pub inodes: u64,
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes.
    pub others: u64,
    /// Inodes with no name left, awaiting reclaim (`R/`).
    pub orphans: u64,
    /// Sum of regular files' sizes (each its data object's length).
    pub file_bytes: u64,
}

/// Space the store takes on its device: allocated blocks (`st_blocks *
/// 512`), so sparse files count what they hold, not their length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// `meta/` except the WAL and the space reserve: frames and manifest.
    pub tree_bytes: u64,
    /// `meta/wal/`: the WAL segments.
    pub wal_bytes: u64,
    /// `meta/RESERVE`: space the engine keeps for a full disk.
    pub reserve_bytes: u64,
    /// `data/`: the data objects.
    pub data_bytes: u64,
    /// Everything under the store directory, directories included.
    pub total_bytes: u64,
}

/// The engine's statistics, as seen by the process that answered (the
/// daemon since it opened the store, or `info`'s own read-only open).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Keys in the tree.
    pub keys: u64,
    /// Frames holding tree nodes.
    pub frames: u64,
    /// Frames in the cache, and their bytes.
    pub frames_cached: u64,
    pub cache_bytes: u64,
    /// Frames changed since the last checkpoint.
    pub frames_dirty: u64,
    /// Live node bytes over the frames' capacity, 0 to 1.
    pub fill_factor: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Hits over lookups; `None` before the first lookup.
    #[serde(default)]
    pub cache_hit_rate: Option<f64>,
    /// Bytes the live WAL holds (`None` for a read-only open, which
    /// replays the WAL in memory and keeps no log).
    #[serde(default)]
    pub wal_bytes: Option<u64>,
    /// Checkpoints since the store was opened.
    pub checkpoints: u64,
    /// When the last checkpoint was published (the manifest's mtime),
    /// seconds since the Unix epoch; `None` if unknown.
    #[serde(default)]
    pub last_checkpoint_sec: Option<i64>,
}

/// `8-4-4-4-12` lowercase hex.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_grouped_8_4_4_4_12() {
        let uuid = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(format_uuid(&uuid), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
