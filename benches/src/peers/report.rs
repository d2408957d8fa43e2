//! What the peer run reports: the cells it measures, a Markdown table with
//! each cell's ratio to the best peer and to holt 0.3.0, and the same as
//! JSON (`--json FILE`).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::data::{LIST_SIZES, ROLLUP_ENTRIES, ROLLUP_SUBDIRS};
use super::store::Res;
use crate::cells::Better;

/// One measured quantity. `durability` says how writes in it are
/// acknowledged: "ack" (handed to the OS; redb: `Durability::None`),
/// "fsync" (on stable storage per commit), "-" (no writes timed).
pub struct CellDef {
    pub tag: &'static str,
    pub name: String,
    pub threads: usize,
    pub unit: &'static str,
    pub better: Better,
    pub durability: &'static str,
}

fn def(tag: &'static str, name: &str, threads: usize, unit: &'static str, better: Better, durability: &'static str) -> CellDef {
    CellDef { tag, name: name.into(), threads, unit, better, durability }
}

pub fn catalog() -> Vec<CellDef> {
    use Better::{Higher, Lower};
    let mut v = vec![
        def("load1", "bulk load, 1 put per commit (random order)", 1, "keys/s", Higher, "ack"),
        def("load1k", "bulk load, 1k puts per commit", 1, "keys/s", Higher, "ack"),
        def("load10k", "bulk load, 10k puts per commit", 1, "keys/s", Higher, "ack"),
        def("lat_p99", "write latency p99 (the 1-put load)", 1, "µs", Lower, "ack"),
        def("lat_max", "write latency max (the 1-put load)", 1, "µs", Lower, "ack"),
        def("settle", "settle after load (flush+compaction / checkpoint / durable commit)", 1, "ms", Lower, "fsync"),
        def("size", "on-disk bytes per entry after load + settle (du)", 1, "B/entry", Lower, "-"),
        def("get_hit", "get, existing key (random)", 1, "ops/s", Higher, "-"),
        def("get_miss", "get, absent name in an existing directory", 1, "ops/s", Higher, "-"),
        def("update", "update (put over existing key)", 1, "ops/s", Higher, "ack"),
        def("create_delete", "create + delete (1k creates, then their deletes)", 1, "ops/s", Higher, "ack"),
        def("rename_in", "rename within a directory", 1, "ops/s", Higher, "ack"),
        def("rename_across", "rename across directories", 1, "ops/s", Higher, "ack"),
    ];
    for (tag, entries, _) in LIST_SIZES {
        v.push(def(tag, &format!("list dir of {entries} entries (delimiter /)"), 1, "lists/s", Higher, "-"));
    }
    let rollup = format!("rollup listing: dir of {ROLLUP_SUBDIRS} subdirs x {ROLLUP_ENTRIES} entries");
    v.extend([
        def("rollup", &rollup, 1, "lists/s", Higher, "-"),
        def("scan", "full scan, every key and value", 1, "keys/s", Higher, "-"),
        def("rollup_churn", &format!("{rollup}, after churn"), 1, "lists/s", Higher, "-"),
        def("mix1", "metadata mix, 20% rollup listings", 1, "ops/s", Higher, "ack"),
        def("mix2", "metadata mix, 20% rollup listings", 2, "ops/s", Higher, "ack"),
        def("reopen", "reopen after clean close (open + first get)", 1, "ms", Lower, "-"),
        def("fsync1", "create, durable commit each", 1, "ops/s", Higher, "fsync"),
        def("fsync2", "create, durable commit each", 2, "ops/s", Higher, "fsync"),
        def("rss", "peak RSS above the data set", 1, "MiB", Lower, "-"),
    ]);
    v
}

/// One engine's column: its slug, display name and the values per tag.
pub struct Column {
    pub slug: &'static str,
    pub name: &'static str,
    pub values: HashMap<String, Res<f64>>,
}

fn human(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e4 => format!("{:.1} k", x / 1e3),
        x if x >= 100.0 => format!("{x:.0}"),
        x => format!("{x:.1}"),
    }
}

fn value<'a>(col: &'a Column, tag: &str) -> Option<&'a Res<f64>> {
    col.values.get(tag)
}

/// The best of the peers (every column but holt-core's, with or without
/// room made ahead, and holt 0.3.0's).
fn best_peer<'a>(cols: &'a [Column], c: &CellDef) -> Option<(&'a Column, f64)> {
    let ours = ["holt-core", super::CORE_AHEAD, "holt-0.3.0"];
    let peers = cols.iter().filter(|col| !ours.contains(&col.slug));
    let scored = peers.filter_map(|col| match value(col, c.tag) {
        Some(Ok(x)) if x.is_finite() => Some((col, *x)),
        _ => None,
    });
    scored.reduce(|a, b| match c.better {
        Better::Higher if b.1 > a.1 => b,
        Better::Lower if b.1 < a.1 => b,
        _ => a,
    })
}

fn core_value(cols: &[Column], slug: &str, tag: &str) -> Option<f64> {
    let col = cols.iter().find(|c| c.slug == slug)?;
    value(col, tag)?.as_ref().ok().copied()
}

fn ratio(core: Option<f64>, other: Option<f64>) -> Option<f64> {
    Some(core? / other?)
}

fn shown_ratio(c: &CellDef, r: Option<f64>) -> String {
    let Some(r) = r else { return "n/a".into() };
    let ok = match c.better {
        Better::Higher => r >= 1.0,
        Better::Lower => r <= 1.0,
    };
    format!("{r:.2}{}", if ok { "" } else { " **worse**" })
}

pub fn table(cells: &[CellDef], cols: &[Column]) -> String {
    let mut s = String::from("| cell | thr | unit | durability |");
    cols.iter().for_each(|col| s += &format!(" {} |", col.name));
    s += " best peer | holt-core / best peer | holt-core / holt 0.3.0 |\n|---|---:|---|---|";
    s += &"---:|".repeat(cols.len());
    s += "---|---:|---:|\n";
    for c in cells {
        let unit = if c.better == Better::Lower { format!("{} (lower is better)", c.unit) } else { c.unit.to_string() };
        let _ = write!(s, "| {} | {} | {} | {} |", c.name, c.threads, unit, c.durability);
        for col in cols {
            let shown = match value(col, c.tag) {
                Some(Ok(x)) => human(*x),
                Some(Err(e)) => format!("error: {}", e.chars().take(60).collect::<String>()),
                None => "-".into(),
            };
            let _ = write!(s, " {shown} |");
        }
        let best = best_peer(cols, c);
        let core = core_value(cols, "holt-core", c.tag);
        let vs_best = shown_ratio(c, ratio(core, best.map(|b| b.1)));
        let vs_holt = shown_ratio(c, ratio(core, core_value(cols, "holt-0.3.0", c.tag)));
        let _ = writeln!(s, " {} | {vs_best} | {vs_holt} |", best.map_or("-", |b| b.0.name));
    }
    s
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

fn json_num(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite()).map_or("null".into(), |x| format!("{x}"))
}

/// The table's content as JSON: run parameters (`header`, already JSON
/// members) and per cell every engine's value or error, the best peer and
/// both ratios.
pub fn json(header: &str, cells: &[CellDef], cols: &[Column]) -> String {
    let mut rows = Vec::new();
    for c in cells {
        let mut values = Vec::new();
        for col in cols {
            let v = match value(col, c.tag) {
                Some(Ok(x)) => json_num(Some(*x)),
                Some(Err(e)) => format!("{{\"error\": {}}}", json_str(e)),
                None => "null".into(),
            };
            values.push(format!("{}: {v}", json_str(col.slug)));
        }
        let best = best_peer(cols, c);
        let core = core_value(cols, "holt-core", c.tag);
        rows.push(format!(
            "{{\"tag\": {}, \"name\": {}, \"threads\": {}, \"unit\": {}, \"lower_is_better\": {}, \"durability\": {}, \"values\": {{{}}}, \"best_peer\": {}, \"core_over_best_peer\": {}, \"core_over_holt_0_3_0\": {}}}",
            json_str(c.tag),
            json_str(&c.name),
            c.threads,
            json_str(c.unit),
            c.better == Better::Lower,
            json_str(c.durability),
            values.join(", "),
            best.map_or("null".into(), |b| json_str(b.0.slug)),
            json_num(ratio(core, best.map(|b| b.1))),
            json_num(ratio(core, core_value(cols, "holt-0.3.0", c.tag))),
        ));
    }
    format!("{{{header}, \"cells\": [\n  {}\n]}}\n", rows.join(",\n  "))
}
