//! FUSE requests per operation, for phases run on a holt-fs mount whose
//! daemon the bench was given (`--daemon-pid`): the daemon's request
//! counters, read over its control socket before and after each timed
//! phase (`stats`; answering it is no FUSE request, so reading does not
//! count itself). The counts cover the whole phase, so a phase's setup
//! inside its timing (creating its directory) is in them, spread over its
//! operations; `forget` comes when the kernel drops inodes, not with the
//! operation that made them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use holt_mount::{ctl, mountpoint};

/// Request counts by opcode.
pub type Counts = BTreeMap<String, u64>;

/// Reads the counters of the daemon serving one store.
#[derive(Debug, Clone)]
pub struct Probe {
    store: PathBuf,
}

impl Probe {
    /// A probe of the daemon of the mount of type `fs_type` from
    /// `source`, which must answer and be process `pid`; else why not.
    pub fn connect(fs_type: &str, source: &str, pid: u32) -> Result<Probe, String> {
        if fs_type != mountpoint::FS_TYPE || source == mountpoint::MEMORY_SOURCE {
            return Err(format!("the directory is on {fs_type} from {source}, not on a holt-fs mount of a store"));
        }
        let probe = Probe { store: PathBuf::from(source) };
        let report = ctl::stats(&probe.store).map_err(|e| format!("the daemon of {source}: {e}"))?;
        if report.pid != pid {
            return Err(format!("{source} is served by pid {}, not by --daemon-pid {pid}", report.pid));
        }
        Ok(probe)
    }

    pub fn read(&self) -> Result<Counts, String> {
        let report = ctl::stats(&self.store).map_err(|e| format!("cannot read the daemon's request counters: {e}"))?;
        Ok(report.requests.into_iter().map(|r| (r.op, r.count)).collect())
    }
}

/// Requests per operation over one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PerOp {
    pub total: f64,
    /// Every opcode that moved, most requests first.
    pub by_op: Vec<(String, f64)>,
}

/// `after - before`, per each of `ops` operations.
pub fn per_op(before: &Counts, after: &Counts, ops: u64) -> PerOp {
    let ops = ops.max(1) as f64;
    let mut by_op: Vec<(String, f64)> = after
        .iter()
        .map(|(op, n)| (op.clone(), n.saturating_sub(before.get(op).copied().unwrap_or(0))))
        .filter(|(_, moved)| *moved > 0)
        .map(|(op, moved)| (op, moved as f64 / ops))
        .collect();
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    PerOp { total: by_op.iter().map(|(_, n)| n).sum(), by_op }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_op_divides_what_moved_and_orders_it() {
        let before: Counts = [("lookup".into(), 10), ("create".into(), 5), ("statfs".into(), 1)].into();
        let after: Counts = [("lookup".into(), 30), ("create".into(), 15), ("statfs".into(), 1), ("release".into(), 10)].into();
        let p = per_op(&before, &after, 10);
        assert_eq!(p.by_op, [("lookup".to_string(), 2.0), ("create".to_string(), 1.0), ("release".to_string(), 1.0)]);
        assert_eq!(p.total, 4.0);
    }

    #[test]
    fn a_directory_off_holt_fs_has_no_probe() {
        assert!(Probe::connect("ext4", "/dev/vda", 1).unwrap_err().contains("not on a holt-fs mount"));
        assert!(Probe::connect(mountpoint::FS_TYPE, mountpoint::MEMORY_SOURCE, 1).is_err());
    }
}
