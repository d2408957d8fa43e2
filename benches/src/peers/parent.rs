//! Runs the engines' child processes (`child.rs`) cell by cell, one engine
//! at a time: a round gives each engine its next step, so every cell of
//! every engine is measured within a few seconds of the others' and the
//! machine's background load falls on all alike. Between its steps a
//! child is stopped (SIGSTOP), so its background threads (flushes,
//! compactions, checkpointers) never run during another engine's cell;
//! they resume with its own next step. Dirty pages are written back
//! (`sync`) before every step.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use super::report::{self, Column};
use super::{EngineDef, PeerOpts};

struct Child {
    e: &'static EngineDef,
    process: std::process::Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    values: HashMap<String, Result<f64, String>>,
    stopped: Option<String>,
    live: bool,
}

fn spawn(o: &PeerOpts, e: &'static EngineDef) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut process = Command::new(exe)
        .args(["--peers".as_ref(), o.dir.as_os_str()])
        .args(["--keys", &o.keys.to_string(), "--ops", &o.ops.to_string()])
        .args(["--write-ops", &o.write_ops.to_string(), "--mix-ops", &o.mix_ops.to_string()])
        .args(["--peer-engine", e.slug])
        .args(o.load1_only.then_some("--load1-only"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdin = process.stdin.take().expect("stdin is piped");
    let lines = BufReader::new(process.stdout.take().expect("stdout is piped")).lines();
    Ok(Child { e, process, stdin, lines, values: HashMap::new(), stopped: None, live: true })
}

/// Sends `sig` ("-STOP", "-CONT") to the child; a failure only costs isolation.
fn signal(c: &Child, sig: &str) {
    let pid = c.process.id().to_string();
    if let Err(e) = Command::new("kill").args([sig, &pid]).status() {
        eprintln!("kill {sig} {pid}: {e}");
    }
}

fn sync() {
    if let Err(e) = Command::new("sync").status() {
        eprintln!("sync between steps failed ({e})");
    }
}

impl Child {
    /// Takes results up to the child's next gate; false once it has ended.
    fn read_step(&mut self) -> bool {
        for line in self.lines.by_ref().map_while(Result::ok) {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["PEERSTEP"] => return true,
                ["PEERCELL", tag, "ok", x] => {
                    eprintln!("  {}: {tag} {x}", self.e.slug);
                    self.values.insert(tag.to_string(), x.parse::<f64>().map_err(|e| e.to_string()));
                }
                ["PEERCELL", tag, "error", msg] => {
                    eprintln!("  {}: {tag} error {msg}", self.e.slug);
                    self.values.insert(tag.to_string(), Err(msg.to_string()));
                }
                ["PEERABORT", msg] => self.stopped = Some(msg.to_string()),
                _ => {}
            }
        }
        false
    }

    /// Runs the child's next step, alone.
    fn step(&mut self) {
        sync();
        signal(self, "-CONT");
        let opened = writeln!(self.stdin, "go").and_then(|()| self.stdin.flush());
        self.live = opened.is_ok() && self.read_step();
        if self.live {
            signal(self, "-STOP");
        }
    }

    fn finish(mut self) -> Column {
        drop(self.stdin);
        match self.process.wait() {
            Ok(st) if st.success() => {}
            Ok(st) => self.stopped = self.stopped.or(Some(format!("exited with {st}"))),
            Err(e) => self.stopped = Some(format!("wait: {e}")),
        }
        if let Some(why) = &self.stopped {
            missing(&mut self.values, why);
        }
        Column { slug: self.e.slug, name: self.e.name, values: self.values }
    }
}

fn missing(values: &mut HashMap<String, Result<f64, String>>, why: &str) {
    for c in report::catalog() {
        values.entry(c.tag.to_string()).or_insert_with(|| Err(format!("not reached: {why}")));
    }
}

/// Every engine's column, its cells measured interleaved with the others'.
pub fn run(o: &PeerOpts) -> Vec<Column> {
    let mut failed = Vec::new();
    let mut children = Vec::new();
    for e in &o.engines {
        match spawn(o, e) {
            Ok(c) => children.push(c),
            Err(why) => failed.push((e, why)),
        }
    }
    // Each child generates its data set, then waits at its first gate.
    for c in &mut children {
        c.live = c.read_step();
        if c.live {
            signal(c, "-STOP");
        }
    }
    // The engine that goes first rotates, so none always follows another.
    let mut round = 0;
    while children.iter().any(|c| c.live) {
        let n = children.len();
        for i in 0..n {
            let c = &mut children[(round + i) % n];
            if c.live {
                c.step();
            }
        }
        round += 1;
    }
    let mut cols: Vec<Column> = children.into_iter().map(Child::finish).collect();
    for (e, why) in failed {
        let mut values = HashMap::new();
        missing(&mut values, &why);
        cols.push(Column { slug: e.slug, name: e.name, values });
    }
    cols.sort_by_key(|c| o.engines.iter().position(|e| e.slug == c.slug));
    cols
}
