//! `holt-fs info`'s text form: one labelled line per topic, for people.
//! Scripts use `--json`, whose field names are stable; this text is not.

use std::fmt::Write;

use holt_mount::info::{AnsweredBy, LastShutdown, MountState, SocketState, StoreInfo};

use crate::fsck_cmd::count;

/// Width of the label column.
const LABEL_WIDTH: usize = 14;

pub fn render(i: &StoreInfo) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<LABEL_WIDTH$} {text}");
    };
    line("store", i.store.clone());
    line("filesystem", filesystem(i));
    line("mounted", mounted(i));
    line("last shutdown", last_shutdown(i.last_shutdown).into());
    let c = &i.counts;
    line(
        "inodes",
        format!(
            "{}: {}, {}, {}, {} others; {} awaiting reclaim",
            c.inodes,
            count(c.dirs, "directory"),
            count(c.files, "file"),
            count(c.symlinks, "symlink"),
            c.others,
            count(c.orphans, "orphan")
        ),
    );
    line("file bytes", format!("{} ({} bytes)", bytes(c.file_bytes), c.file_bytes));
    let d = &i.disk;
    line(
        "on disk",
        format!(
            "{}: tree {}, WAL {}, data {}, space reserve {}",
            bytes(d.total_bytes),
            bytes(d.tree_bytes),
            bytes(d.wal_bytes),
            bytes(d.data_bytes),
            bytes(d.reserve_bytes)
        ),
    );
    line("engine", engine(i));
    line("checkpoints", checkpoints(i));
    line("answered by", answered_by(i));
    out
}

fn filesystem(i: &StoreInfo) -> String {
    let format = i.format.map_or("unknown".to_string(), |f| f.to_string());
    let uuid = i.uuid.as_deref().unwrap_or("unknown");
    let created = i.created_sec.map_or("unknown".to_string(), utc);
    format!("format {format}, uuid {uuid}, created {created}")
}

fn mounted(i: &StoreInfo) -> String {
    if i.mounts.is_empty() {
        return "no".into();
    }
    let each = i.mounts.iter().map(|m| {
        let mode = if m.read_only { "read-only" } else { "read-write" };
        match (m.state, m.pid) {
            (MountState::Dead, _) => format!("dead mount at {} (its daemon is gone; holt-fs umount clears it)", m.mountpoint),
            (MountState::Serving, Some(pid)) => format!("at {} ({mode}, pid {pid})", m.mountpoint),
            (MountState::Serving, None) => format!("at {} ({mode})", m.mountpoint),
        }
    });
    each.collect::<Vec<_>>().join("; ")
}

fn last_shutdown(s: LastShutdown) -> &'static str {
    match s {
        LastShutdown::None => "none recorded (never mounted read-write)",
        LastShutdown::Clean => "clean",
        LastShutdown::Killed => "unclean: the daemon was killed (a mount recovers its work)",
        LastShutdown::PowerLoss => "unclean: the machine went down under it (power loss or reboot)",
    }
}

fn engine(i: &StoreInfo) -> String {
    let e = &i.engine;
    let hit_rate = e.cache_hit_rate.map_or("no lookups yet".to_string(), |r| format!("hit rate {:.1}%", r * 100.0));
    format!(
        "{} keys in {} ({:.1}% full); cache {} ({}), {} dirty, {hit_rate}",
        e.keys,
        count(e.frames, "frame"),
        e.fill_factor * 100.0,
        count(e.frames_cached, "frame"),
        bytes(e.cache_bytes),
        e.frames_dirty
    )
}

fn checkpoints(i: &StoreInfo) -> String {
    let e = &i.engine;
    let last = e.last_checkpoint_sec.map_or("unknown".to_string(), utc);
    let wal = e.wal_bytes.map_or(String::new(), |b| format!("; WAL holds {} not yet checkpointed", bytes(b)));
    format!("last {last}, {} since open{wal}", e.checkpoints)
}

fn answered_by(i: &StoreInfo) -> String {
    let pid = i.mounts.iter().find_map(|m| m.pid);
    match (i.answered_by, pid) {
        (AnsweredBy::Daemon, Some(pid)) => format!("the daemon (pid {pid}), over the control socket"),
        (AnsweredBy::Daemon, None) => "the daemon, over the control socket".into(),
        (AnsweredBy::Store, _) => {
            let socket = match i.control_socket {
                SocketState::Stale => "; its control socket is stale (left by a killed daemon)",
                _ => "",
            };
            format!("a read-only open of the store{socket}")
        }
    }
}

/// Bytes in binary units with one decimal: "512 B", "10.5 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (proleptic
/// Gregorian; Howard Hinnant's days-to-civil).
fn utc(sec: i64) -> String {
    let (days, rem) = (sec.div_euclid(86_400), sec.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_sizes_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00 UTC");
        assert_eq!(utc(1_735_689_599), "2024-12-31 23:59:59 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 << 20), "10.0 MiB");
    }
}
