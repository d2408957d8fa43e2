//! The report: a text table for people, JSON for scripts (one object, the
//! same numbers; latencies in microseconds).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::phases::{PHASES, SEQ_OP_BYTES};
use super::runner::{Plan, Row};

/// What was measured, besides the numbers.
pub struct Header {
    pub dir: PathBuf,
    /// The filesystem holding `dir` (mount table type and source).
    pub fs_type: String,
    pub fs_source: String,
    pub plan: Plan,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Microseconds of CPU per operation.
fn us_per_op(ns: u64, ops: u64) -> f64 {
    us(ns) / ops.max(1) as f64
}

/// A right-aligned number with 3 significant digits at most after the point.
fn num(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

pub fn text(h: &Header, rows: &[Row]) -> String {
    let mut out = String::new();
    let p = &h.plan;
    let _ = writeln!(out, "holt-fs bench {} ({} from {})", h.dir.display(), h.fs_type, h.fs_source);
    let _ = writeln!(
        out,
        "files {} (big directory {}), sequential file {} MiB; totals split over the threads\n",
        p.files,
        p.files * super::phases::BIGDIR_FACTOR,
        p.seq_mib
    );
    let _ = writeln!(
        out,
        "{:<15} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "phase", "threads", "ops", "ops/s", "p50 us", "p99 us", "max us", "cpu us/op"
    );
    for r in rows {
        let s = &r.stats;
        let _ = writeln!(
            out,
            "{:<15} {:>7} {:>8} {:>10.0} {:>9} {:>9} {:>9} {:>10}",
            r.phase.name,
            r.threads,
            s.ops,
            s.ops_per_sec(),
            num(us(s.p50_ns)),
            num(us(s.p99_ns)),
            num(us(s.max_ns)),
            num(us_per_op(r.cpu.client_ns + r.cpu.daemon_ns.unwrap_or(0), s.ops))
        );
    }
    let daemon = match p.daemon_pid {
        Some(pid) => format!("this process plus daemon {pid}"),
        None => "this process only".into(),
    };
    let _ = writeln!(out, "\ncpu us/op: user + system CPU time per op of {daemon}, over the whole phase");
    requests_text(&mut out, rows);
    out.push_str("\none op:\n");
    for phase in PHASES.iter().filter(|ph| rows.iter().any(|r| r.phase.name == ph.name)) {
        let _ = writeln!(out, "  {:<15} {}", phase.name, phase.op);
    }
    let _ = writeln!(
        out,
        "seq ops are {} KiB, so their ops/s is MiB/s. seqread reads back what seqwrite\n\
         wrote, nothing dropped: from the page cache where the filesystem keeps it\n\
         (kernel filesystems; FUSE mounts that open with keep_cache, as holt-fs does),\n\
         else through the daemon from the page cache of what lies beneath.",
        SEQ_OP_BYTES / 1024
    );
    out
}

/// FUSE requests per op by opcode, for the rows that have them.
fn requests_text(out: &mut String, rows: &[Row]) {
    if rows.iter().all(|r| r.requests.is_none()) {
        return;
    }
    out.push_str("\nFUSE requests per op (the daemon's counters over the phase; forget comes when the kernel drops inodes):\n");
    let _ = writeln!(out, "{:<15} {:>7} {:>7}  by opcode", "phase", "threads", "total");
    for r in rows {
        let Some(p) = &r.requests else { continue };
        let shown = p.by_op.iter().filter(|(_, n)| *n >= 0.005);
        let by_op: Vec<String> = shown.map(|(op, n)| format!("{op} {n:.2}")).collect();
        let by_op = if by_op.is_empty() { "-".to_string() } else { by_op.join(", ") };
        let _ = writeln!(out, "{:<15} {:>7} {:>7.2}  {by_op}", r.phase.name, r.threads, p.total);
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn json(h: &Header, rows: &[Row]) -> String {
    let p = &h.plan;
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"dir\":{},\"fs_type\":{},\"fs_source\":{},\"files\":{},\"bigdir_files\":{},\"seq_mib\":{},\"results\":[",
        json_str(&h.dir.to_string_lossy()),
        json_str(&h.fs_type),
        json_str(&h.fs_source),
        p.files,
        p.files * super::phases::BIGDIR_FACTOR,
        p.seq_mib
    );
    for (i, r) in rows.iter().enumerate() {
        let s = &r.stats;
        let _ = write!(
            out,
            "{}{{\"phase\":{},\"threads\":{},\"ops\":{},\"secs\":{:.6},\"ops_per_s\":{:.1},\"p50_us\":{:.2},\"p99_us\":{:.2},\"max_us\":{:.2}",
            if i > 0 { "," } else { "" },
            json_str(r.phase.name),
            r.threads,
            s.ops,
            s.wall.as_secs_f64(),
            s.ops_per_sec(),
            us(s.p50_ns),
            us(s.p99_ns),
            us(s.max_ns)
        );
        let _ = write!(out, ",\"client_cpu_us_per_op\":{:.3}", us_per_op(r.cpu.client_ns, s.ops));
        if let Some(ns) = r.cpu.daemon_ns {
            let _ = write!(out, ",\"daemon_cpu_us_per_op\":{:.3}", us_per_op(ns, s.ops));
        }
        if let Some(p) = &r.requests {
            let _ = write!(out, ",\"requests_per_op\":{{\"total\":{:.4}", p.total);
            for (op, n) in &p.by_op {
                let _ = write!(out, ",{}:{n:.4}", json_str(op));
            }
            out.push('}');
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
