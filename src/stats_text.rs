//! The text of `holt-fs stats`: rates over the interval between two
//! reports of one daemon, a summary line each for requests and the
//! engine, then a row per opcode seen in the interval, busiest first.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use holt_mount::metrics::{OpStats, StatsReport};

/// One opcode over the interval.
struct OpDelta<'r> {
    op: &'r str,
    count: u64,
    errors: u64,
    duration_ns: u64,
    buckets: Vec<u64>,
    total: u64,
}

fn delta<'r>(before: Option<&OpStats>, now: &'r OpStats) -> OpDelta<'r> {
    let was = |f: fn(&OpStats) -> u64| before.map_or(0, f);
    let buckets = now.buckets.iter().enumerate().map(|(i, n)| n.saturating_sub(before.map_or(0, |b| b.buckets.get(i).copied().unwrap_or(0))));
    OpDelta {
        op: &now.op,
        count: now.count.saturating_sub(was(|b| b.count)),
        errors: now.errors.values().sum::<u64>().saturating_sub(was(|b| b.errors.values().sum())),
        duration_ns: now.duration_ns.saturating_sub(was(|b| b.duration_ns)),
        buckets: buckets.collect(),
        total: now.count,
    }
}

/// The `q` quantile of `buckets` in microseconds, interpolated inside
/// its bucket as Prometheus' `histogram_quantile` does; past the last
/// bound, that bound. `None` for an empty histogram.
fn quantile_us(buckets: &[u64], bounds_ns: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = bounds_ns.get(i) else { return bounds_ns.last().map(|&b| b as f64 / 1000.0) };
            let lower = if i == 0 { 0 } else { bounds_ns[i - 1] };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some((lower as f64 + within * (upper - lower) as f64) / 1000.0);
        }
        below += n;
    }
    None
}

fn bytes_per_sec(bytes: u64, secs: f64) -> String {
    let rate = bytes as f64 / secs;
    match rate {
        r if r >= (1 << 30) as f64 => format!("{:.1} GiB/s", r / (1u64 << 30) as f64),
        r if r >= (1 << 20) as f64 => format!("{:.1} MiB/s", r / (1u64 << 20) as f64),
        r if r >= 1024.0 => format!("{:.1} KiB/s", r / 1024.0),
        r => format!("{r:.0} B/s"),
    }
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

fn opt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |us| format!("{us:.1}"))
}

fn header(out: &mut String, mountpoint: &Path, now: &StatsReport) {
    let data = if now.passthrough { "FUSE passthrough (file reads and writes bypass the daemon)" } else { "through the daemon" };
    let _ = writeln!(out, "holt-fs stats {}  pid {}  up {}  data: {data}", mountpoint.display(), now.pid, uptime(now.uptime_sec));
}

fn summary(out: &mut String, before: &StatsReport, now: &StatsReport, ops: &[OpDelta], secs: f64) {
    let count: u64 = ops.iter().map(|o| o.count).sum();
    let errors: u64 = ops.iter().map(|o| o.errors).sum();
    let ns: u64 = ops.iter().map(|o| o.duration_ns).sum();
    let avg = (count > 0).then(|| ns as f64 / count as f64 / 1000.0);
    let _ = writeln!(
        out,
        "requests  {:.1}/s  avg {} us  errors {:.1}/s  read {}  write {}  conflicts {:.1}/s",
        count as f64 / secs,
        opt_us(avg),
        errors as f64 / secs,
        bytes_per_sec(now.read_bytes.saturating_sub(before.read_bytes), secs),
        bytes_per_sec(now.write_bytes.saturating_sub(before.write_bytes), secs),
        now.txn_conflicts.saturating_sub(before.txn_conflicts) as f64 / secs
    );
    let (e, b) = (&now.engine, &before.engine);
    let (hits, misses) = (e.cache_hits.saturating_sub(b.cache_hits), e.cache_misses.saturating_sub(b.cache_misses));
    let hit_rate = if hits + misses > 0 { format!("{:.2}%", 100.0 * hits as f64 / (hits + misses) as f64) } else { "-".into() };
    let _ = writeln!(
        out,
        "engine    cache hits {hit_rate}  loads {:.1}/s  evictions {:.1}/s  WAL {}  syncs {:.1}/s  checkpoints {} (last {:.1} ms)  keys {}",
        e.frames_loaded.saturating_sub(b.frames_loaded) as f64 / secs,
        e.frames_evicted.saturating_sub(b.frames_evicted) as f64 / secs,
        bytes_per_sec(e.wal_bytes_written.saturating_sub(b.wal_bytes_written), secs),
        e.wal_syncs.saturating_sub(b.wal_syncs) as f64 / secs,
        e.checkpoints,
        e.checkpoint_last_ns as f64 / 1e6,
        e.keys
    );
}

/// The screen for the interval of `elapsed` between `before` and `now`.
pub fn render(mountpoint: &Path, before: &StatsReport, now: &StatsReport, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut out = String::new();
    header(&mut out, mountpoint, now);
    let restarted = before.pid != now.pid;
    let before = if restarted { now } else { before };
    let mut ops: Vec<OpDelta> = now.requests.iter().map(|r| delta(before.op(&r.op), r)).collect();
    summary(&mut out, before, now, &ops, secs);
    if restarted {
        out.push_str("(a new daemon answered: rates start at the next reading)\n");
    }
    ops.retain(|o| o.count > 0);
    ops.sort_by(|a, b| b.count.cmp(&a.count).then(a.op.cmp(b.op)));
    let _ = writeln!(out, "\n{:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12}", "op", "ops/s", "avg us", "p50 us", "p99 us", "errors/s", "total");
    for o in &ops {
        let _ = writeln!(
            out,
            "{:<16} {:>10.1} {:>9} {:>9} {:>9} {:>9.1} {:>12}",
            o.op,
            o.count as f64 / secs,
            opt_us(Some(o.duration_ns as f64 / o.count as f64 / 1000.0)),
            opt_us(quantile_us(&o.buckets, &now.latency_bounds_ns, 0.5)),
            opt_us(quantile_us(&o.buckets, &now.latency_bounds_ns, 0.99)),
            o.errors as f64 / secs,
            o.total
        );
    }
    if ops.is_empty() {
        out.push_str("(no requests in the interval)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let bounds = [1000, 2000, 4000];
        assert_eq!(quantile_us(&[0, 0, 0, 0], &bounds, 0.5), None);
        assert_eq!(quantile_us(&[2, 0, 0, 0], &bounds, 0.5), Some(0.5));
        assert_eq!(quantile_us(&[0, 4, 0, 0], &bounds, 0.5), Some(1.5));
        assert_eq!(quantile_us(&[1, 0, 0, 1], &bounds, 0.99), Some(4.0), "past the last bound: that bound");
    }

    #[test]
    fn byte_rates_pick_their_unit() {
        assert_eq!(bytes_per_sec(512, 1.0), "512 B/s");
        assert_eq!(bytes_per_sec(3 << 20, 2.0), "1.5 MiB/s");
    }
}
