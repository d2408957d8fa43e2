//! A strict reader of the Prometheus text exposition format (0.0.4), as
//! much of it as a check of holt-fs's endpoint needs, refusing whatever
//! a scraper could misread: a sample before its family's `# TYPE`, a
//! family declared twice or split in two, a bad name or label, an
//! escape other than `\\`, `\"`, `\n`, a value that is not a float, a
//! timestamp, a repeated series, a negative or non-finite counter, and
//! histograms whose buckets are not cumulative or do not end in `+Inf`
//! equal to `_count`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Label names and values.
pub type Labels = Vec<(String, String)>;
/// A series: metric name and its labels, sorted.
pub type Series = (String, Labels);

/// Every sample of one scrape, by series; and each family's type.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: BTreeMap<Series, f64>,
    pub types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        l.sort();
        self.samples.get(&(name.to_string(), l)).copied()
    }
}

fn valid_name(s: &str, colons: bool) -> bool {
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    let mut chars = s.chars();
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|e| format!("value {s:?}: {e}")),
    }
}

/// `k="v",...}` after the `{`; returns the labels and the rest of the line.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let name = &s[..eq];
        if !valid_name(name, false) {
            return Err(format!("label name {name:?}"));
        }
        let mut chars = s[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("escape \\{c}")),
                },
                (_, '\n') => return Err("newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        s = &s[eq + 2 + end + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The family a sample name belongs to, given the families' types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s))?;
    (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
}

fn comment(line: &str, scrape: &mut Scrape, current: &mut Option<String>, done: &mut HashSet<String>) -> Result<(), String> {
    let mut words = line.splitn(4, ' ');
    let (hash, kind, name) = (words.next(), words.next(), words.next().ok_or("comment without a name")?);
    if hash != Some("#") || !valid_name(name, true) {
        return Err("only '# HELP name text' and '# TYPE name type' comments".into());
    }
    if current.as_deref() != Some(name) {
        if done.contains(name) {
            return Err(format!("family {name} split in two"));
        }
        if let Some(prev) = current.replace(name.to_string()) {
            done.insert(prev);
        }
    }
    match (kind, words.next()) {
        (Some("HELP"), Some(_)) => Ok(()),
        (Some("TYPE"), Some(t)) if ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) => {
            match scrape.types.insert(name.to_string(), t.to_string()) {
                None => Ok(()),
                Some(_) => Err(format!("two TYPE lines for {name}")),
            }
        }
        _ => Err("a HELP with no text, or a TYPE of no known type".into()),
    }
}

fn sample(line: &str, scrape: &mut Scrape, current: &Option<String>) -> Result<(), String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !valid_name(name, true) {
        return Err(format!("metric name {name:?}"));
    }
    let (mut labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(l) => parse_labels(l)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("a timestamp or trailing text after the value".into());
    }
    let value = parse_value(value)?;
    let family = family_of(name, &scrape.types).ok_or(format!("{name} has no # TYPE before it"))?;
    if current.as_deref() != Some(family) {
        return Err(format!("{name} outside its family's block"));
    }
    if scrape.types[family] == "counter" && !(value.is_finite() && value >= 0.0) {
        return Err(format!("counter {name} = {value}"));
    }
    labels.sort();
    if scrape.samples.insert((name.to_string(), labels), value).is_some() {
        return Err(format!("{name}: the same series twice"));
    }
    Ok(())
}

/// Buckets cumulative, ending in `+Inf` equal to `_count`, with a `_sum`.
fn check_histograms(scrape: &Scrape) -> Result<(), String> {
    for (family, _) in scrape.types.iter().filter(|(_, t)| *t == "histogram") {
        let mut by_series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in scrape.samples.iter().filter(|((n, _), _)| *n == format!("{family}_bucket")) {
            let le = labels.iter().find(|(k, _)| k == "le").ok_or(format!("{name} without le"))?;
            let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            by_series.entry(rest).or_default().push((parse_value(&le.1)?, *v));
        }
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let cumulative = buckets.windows(2).all(|w| w[0].1 <= w[1].1);
            let last = buckets.last().expect("a bucket");
            let count = scrape.samples.get(&(format!("{family}_count"), labels.clone()));
            let sum = scrape.samples.get(&(format!("{family}_sum"), labels.clone()));
            if !cumulative || last.0 != f64::INFINITY || count != Some(&last.1) || sum.is_none() {
                return Err(format!("histogram {family}{labels:?}: buckets {buckets:?}, count {count:?}, sum {sum:?}"));
            }
        }
    }
    Ok(())
}

/// Read a whole exposition, or say which line is wrong and why.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let (mut current, mut done) = (None, HashSet::new());
    if !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let step = if line.starts_with('#') {
            comment(line, &mut scrape, &mut current, &mut done)
        } else {
            sample(line, &mut scrape, &current)
        };
        step.map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?;
    }
    check_histograms(&scrape)?;
    Ok(scrape)
}

#[test]
fn the_parser_refuses_what_a_scraper_could_misread() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
    assert_eq!(parse(good).unwrap().get("a_total", &[("x", "q\"\\\n")]), Some(1.0));
    let bad = [
        "a_total 1\n",
        "# TYPE a counter\na -1\n",
        "# TYPE a gauge\na 1 1700000000\n",
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
        "# TYPE a gauge\n# TYPE b gauge\na 1\n",
        "# TYPE a gauge\na one\n",
        "# TYPE 1a gauge\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE a gauge\na 1",
    ];
    for text in bad {
        assert!(parse(text).is_err(), "accepted: {text:?}");
    }
}
