//! A [`StatsReport`] in the Prometheus text exposition format (version
//! 0.0.4): for each family a `# HELP` and a `# TYPE` line, then its
//! samples. Every metric is documented in doc/METRICS.md; a test keeps
//! the two in step.

use std::fmt::Write as _;

use super::report::{EngineStats, StatsReport};

/// The `Content-Type` of the text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const NS_PER_SEC: f64 = 1e9;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The engine's metrics: name, kind, help, value.
type EngineMetric = (&'static str, Kind, &'static str, fn(&EngineStats) -> f64);

const ENGINE: &[EngineMetric] = &[
    ("holt_fs_engine_keys", Kind::Gauge, "Keys in the metadata tree.", |e| e.keys as f64),
    ("holt_fs_engine_frames_cached", Kind::Gauge, "Tree frames (512 KiB each) in the cache.", |e| e.frames_cached as f64),
    ("holt_fs_engine_cache_hits_total", Kind::Counter, "Frame lookups served from the cache.", |e| e.cache_hits as f64),
    ("holt_fs_engine_cache_misses_total", Kind::Counter, "Frame lookups that read the store.", |e| e.cache_misses as f64),
    ("holt_fs_engine_frames_loaded_total", Kind::Counter, "Whole frames read from the store into the cache.", |e| e.frames_loaded as f64),
    ("holt_fs_engine_frames_evicted_total", Kind::Counter, "Frames evicted from the cache.", |e| e.frames_evicted as f64),
    (
        "holt_fs_engine_optimistic_restarts_total",
        Kind::Counter,
        "Reads and batches that started over after a concurrent change to a frame they read.",
        |e| e.optimistic_restarts as f64,
    ),
    (
        "holt_fs_engine_frame_loaded_bytes_total",
        Kind::Counter,
        "Bytes read from the store for loaded frames and pages.",
        |e| e.frame_bytes_loaded as f64,
    ),
    (
        "holt_fs_engine_frame_pages_loaded_total",
        Kind::Counter,
        "4 KiB pages read for frames the cache holds in part (lookups and scans into a full cache).",
        |e| e.frame_pages_loaded as f64,
    ),
    ("holt_fs_engine_cache_capacity_frames", Kind::Gauge, "The cache budget, in 512 KiB frames.", |e| e.cache_capacity_frames as f64),
    ("holt_fs_engine_frames_dirty", Kind::Gauge, "Frames modified since the last checkpoint.", |e| e.frames_dirty as f64),
    (
        "holt_fs_engine_pinned_retries_total",
        Kind::Counter,
        "Operations that lost a loaded frame to eviction and went on pinning.",
        |e| e.pinned_retries as f64,
    ),
    ("holt_fs_engine_spills_total", Kind::Counter, "Subtrees moved into a new child frame.", |e| e.spills as f64),
    (
        "holt_fs_engine_spills_ahead_total",
        Kind::Counter,
        "Spills the background made ahead of writers in nearly full frames.",
        |e| e.spills_ahead as f64,
    ),
    ("holt_fs_engine_spill_seconds_total", Kind::Counter, "Time those spills took, summed.", |e| e.spill_ns as f64 / NS_PER_SEC),
    (
        "holt_fs_engine_spill_max_seconds",
        Kind::Gauge,
        "The longest one spill took: a write that had to make room waited for it.",
        |e| e.spill_max_ns as f64 / NS_PER_SEC,
    ),
    ("holt_fs_engine_merges_total", Kind::Counter, "Child frames folded back into their parent.", |e| e.merges as f64),
    ("holt_fs_engine_compactions_total", Kind::Counter, "In-frame compactions of dead space.", |e| e.compactions as f64),
    ("holt_fs_engine_tidies_total", Kind::Counter, "Frames laid out again in key order.", |e| e.tidies as f64),
    (
        "holt_fs_engine_frames_written_out_total",
        Kind::Counter,
        "Dirty frames written out between checkpoints so that they could be evicted.",
        |e| e.frames_written_out as f64,
    ),
    (
        "holt_fs_engine_frame_punches_total",
        Kind::Counter,
        "Holes punched in the frame file: free slots and images' free gaps given back.",
        |e| e.frame_punches as f64,
    ),
    (
        "holt_fs_engine_frame_deltas_total",
        Kind::Counter,
        "Frame images written as the pages changed since the frame's stored whole image.",
        |e| e.frame_deltas as f64,
    ),
    ("holt_fs_engine_wal_bytes", Kind::Gauge, "Bytes the write-ahead log holds now.", |e| e.wal_bytes as f64),
    ("holt_fs_engine_wal_written_bytes_total", Kind::Counter, "Bytes of WAL records written.", |e| e.wal_bytes_written as f64),
    ("holt_fs_engine_wal_syncs_total", Kind::Counter, "fdatasyncs of the WAL.", |e| e.wal_syncs as f64),
    ("holt_fs_engine_checkpoints_total", Kind::Counter, "Checkpoints that published frames.", |e| e.checkpoints as f64),
    (
        "holt_fs_engine_checkpoints_stopped_total",
        Kind::Counter,
        "Background checkpoints that stopped, publishing nothing, for one asked for.",
        |e| e.checkpoints_stopped as f64,
    ),
    (
        "holt_fs_engine_checkpoint_seconds_total",
        Kind::Counter,
        "Time those checkpoints took, summed.",
        |e| e.checkpoint_ns as f64 / NS_PER_SEC,
    ),
    (
        "holt_fs_engine_checkpoint_last_seconds",
        Kind::Gauge,
        "Time the last checkpoint took (0 before the first).",
        |e| e.checkpoint_last_ns as f64 / NS_PER_SEC,
    ),
    (
        "holt_fs_engine_checkpoint_cut_max_seconds",
        Kind::Gauge,
        "The longest a checkpoint's cut held writers out.",
        |e| e.checkpoint_cut_max_ns as f64 / NS_PER_SEC,
    ),
    (
        "holt_fs_engine_checkpoint_copies_on_write_total",
        Kind::Counter,
        "Frames writers copied for a running checkpoint before changing them.",
        |e| e.checkpoint_copies_on_write as f64,
    ),
    (
        "holt_fs_engine_checkpoint_frame_copy_max_seconds",
        Kind::Gauge,
        "The longest one frame's copy for a checkpoint took (the most a writer waited on one).",
        |e| e.checkpoint_frame_copy_max_ns as f64 / NS_PER_SEC,
    ),
    (
        "holt_fs_engine_miss_filter_answers_total",
        Kind::Counter,
        "Lookups of absent names the miss filter answered without walking the tree.",
        |e| e.miss_filter_answers as f64,
    ),
    ("holt_fs_engine_miss_filter_bytes", Kind::Gauge, "Memory the miss filter holds.", |e| e.miss_filter_bytes as f64),
    (
        "holt_fs_engine_miss_filter_capacity_keys",
        Kind::Gauge,
        "Keys the current miss filter was sized for (0: none current).",
        |e| e.miss_filter_capacity as f64,
    ),
];

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: Kind, help: &str, value: f64) {
    family(out, name, kind.name(), help);
    let _ = writeln!(out, "{name} {value}");
}

fn requests(out: &mut String, r: &StatsReport) {
    family(
        out,
        "holt_fs_requests_total",
        "counter",
        "FUSE requests the daemon answered, by opcode (those fuser answers itself, INTERRUPT and requests the mount's access policy refuses, are not counted).",
    );
    for op in &r.requests {
        let _ = writeln!(out, "holt_fs_requests_total{{op=\"{}\"}} {}", label(&op.op), op.count);
    }
    family(out, "holt_fs_request_errors_total", "counter", "FUSE requests answered with an error, by opcode and errno.");
    for op in &r.requests {
        for (errno, n) in &op.errors {
            let _ = writeln!(out, "holt_fs_request_errors_total{{op=\"{}\",errno=\"{}\"}} {n}", label(&op.op), label(errno));
        }
    }
}

fn durations(out: &mut String, r: &StatsReport) {
    let name = "holt_fs_request_duration_seconds";
    family(out, name, "histogram", "Time from the daemon taking a FUSE request to its reply being written, by opcode.");
    for op in &r.requests {
        let op_label = label(&op.op);
        let mut cumulative = 0u64;
        for (i, n) in op.buckets.iter().enumerate() {
            cumulative += n;
            let le = match r.latency_bounds_ns.get(i) {
                Some(&ns) => (ns as f64 / NS_PER_SEC).to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{op=\"{op_label}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{op=\"{op_label}\"}} {}", op.duration_ns as f64 / NS_PER_SEC);
        let _ = writeln!(out, "{name}_count{{op=\"{op_label}\"}} {}", op.count);
    }
}

fn daemon(out: &mut String, r: &StatsReport) {
    let data_help = |what: &str| {
        format!(
            "Bytes of file data {what} the daemon in FUSE requests. With FUSE passthrough (holt_fs_passthrough 1) \
             the kernel reads and writes data objects directly and those bytes never reach the daemon, so they are not counted."
        )
    };
    scalar(out, "holt_fs_read_bytes_total", Kind::Counter, &data_help("read through"), r.read_bytes as f64);
    scalar(out, "holt_fs_write_bytes_total", Kind::Counter, &data_help("written through"), r.write_bytes as f64);
    let passthrough = "1 while the kernel reads and writes file data directly (FUSE passthrough), 0 when data goes through the daemon.";
    scalar(out, "holt_fs_passthrough", Kind::Gauge, passthrough, f64::from(u8::from(r.passthrough)));
    let conflicts = "Operations re-run because another operation changed what they had read before they committed.";
    scalar(out, "holt_fs_txn_conflicts_total", Kind::Counter, conflicts, r.txn_conflicts as f64);
    let started = "When the filesystem was mounted, seconds since the Unix epoch.";
    scalar(out, "holt_fs_start_time_seconds", Kind::Gauge, started, r.started_sec as f64);
}

/// The whole exposition.
pub fn render(r: &StatsReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    requests(&mut out, r);
    durations(&mut out, r);
    daemon(&mut out, r);
    for &(name, kind, help, value) in ENGINE {
        scalar(&mut out, name, kind, help, value(&r.engine));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::report::Daemon;
    use crate::metrics::{Op, Requests};

    const METRICS_MD: &str = include_str!("../../../doc/METRICS.md");

    fn sample() -> StatsReport {
        let r = Requests::default();
        r.record(Op::Lookup, 1500, libc::ENOENT);
        r.record(Op::Lookup, 800, 0);
        r.record(Op::Create, 40_000_000_000, 0);
        let daemon = Daemon { pid: 7, started_sec: 1_700_000_000, uptime_sec: 2.5, passthrough: true, txn_conflicts: 3 };
        StatsReport::new(daemon, &r.totals(), holt_core::TreeCounters { keys: 5, checkpoint_nanos: 1_500_000, ..Default::default() })
    }

    /// `(name, type)` of every `# TYPE` line.
    fn families(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').expect("# TYPE name kind");
                (name.to_string(), kind.to_string())
            })
            .collect()
    }

    #[test]
    fn samples_follow_their_family_and_histograms_are_cumulative() {
        let text = render(&sample());
        assert!(text.contains("holt_fs_requests_total{op=\"lookup\"} 2\n"));
        assert!(text.contains("holt_fs_request_errors_total{op=\"lookup\",errno=\"ENOENT\"} 1\n"));
        assert!(text.contains("holt_fs_request_duration_seconds_bucket{op=\"lookup\",le=\"0.000001024\"} 1\n"));
        assert!(text.contains("holt_fs_request_duration_seconds_bucket{op=\"lookup\",le=\"0.000002048\"} 2\n"));
        assert!(text.contains("holt_fs_request_duration_seconds_bucket{op=\"create\",le=\"17.179869184\"} 0\n"));
        assert!(text.contains("holt_fs_request_duration_seconds_bucket{op=\"create\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("holt_fs_request_duration_seconds_sum{op=\"lookup\"} 0.0000023\n"));
        assert!(text.contains("holt_fs_engine_checkpoint_seconds_total 0.0015\n"));
        assert!(text.contains("holt_fs_passthrough 1\n") && text.contains("holt_fs_engine_keys 5\n"));
        let names: Vec<String> = families(&text).into_iter().map(|f| f.0).collect();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let metric = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| metric.strip_suffix(s)).unwrap_or(metric);
            assert!(names.iter().any(|n| n == metric || n == base), "{line}: no family");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_metric_is_documented_with_its_type() {
        let documented: Vec<(String, String)> = METRICS_MD
            .lines()
            .filter(|l| l.starts_with("| `holt_fs_"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                (cells[0].trim_matches('`').to_string(), cells[1].to_string())
            })
            .collect();
        assert_eq!(documented, families(&render(&sample())), "doc/METRICS.md lists every family, in order, with its type");
    }
}
