//! The results table, in Markdown, as it goes into RESULTS.md.

use crate::cells::{Better, Cell};
use crate::engines::Res;
use crate::harness::Rates;

/// A number as the tables show it: 1.23 M, 45.6 k, 789, 1.5.
pub fn human(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e4 => format!("{:.1} k", x / 1e3),
        x if x >= 100.0 => format!("{x:.0}"),
        x => format!("{x:.1}"),
    }
}

fn shown(r: &Res<Rates>) -> String {
    match r {
        Ok(r) if r.0.len() > 1 => format!("{} ({}–{})", human(r.median()), human(r.min()), human(r.max())),
        Ok(r) => human(r.median()),
        Err(e) => format!("error: {e}"),
    }
}

fn ratio(c: &Cell) -> String {
    let (Ok(a), Ok(b)) = (&c.core, &c.holt) else { return "n/a".into() };
    let r = a.median() / b.median();
    let ok = match c.better {
        Better::Higher => r >= 1.0,
        Better::Lower => r <= 1.0,
    };
    format!("{r:.2}{}", if ok { "" } else { " **worse**" })
}

pub fn table(cells: &[Cell]) -> String {
    let mut s = String::from(
        "| cell | threads | unit | holt-core | holt 0.3.0 | holt-core / holt 0.3.0 |\n|---|---:|---|---:|---:|---:|\n",
    );
    for c in cells {
        let unit = match c.better {
            Better::Higher => c.unit.to_string(),
            Better::Lower => format!("{} (lower is better)", c.unit),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c.name,
            c.threads,
            unit,
            shown(&c.core),
            shown(&c.holt),
            ratio(c)
        );
    }
    s
}
