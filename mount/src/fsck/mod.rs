//! fsck: check a store's metadata tree and data store against the
//! invariants the semantics layer keeps, and optionally repair them.
//!
//! Phases, each reading only facts gathered by the ones before it:
//! 1. the engine's own check (`Tree::check_invariants`);
//! 2. `S/` (superblock, session): without a readable format-2 superblock
//!    nothing else is checked;
//! 3. one streaming scan per family: `C/`, `I/`, `D/`, `X/`, `R/`, then the
//!    data objects and keys of unknown families (`scan`);
//! 4. the namespace: reachability from the root, one name per directory,
//!    cycles, nlink, recorded parents (`namespace`);
//! 5. paths for the messages (`paths`), then, with `repair`, the fixes.
//!
//! Invariants:
//! - fsck never constructs `Fs` and runs no mount-time recovery: it sees the
//!   store as the last daemon left it (orphans in `R/` are counted, not fixed).
//! - Nothing it cannot decode is repaired (inodes, the superblock, unknown
//!   keys): those are reported and left for a person.
//! - Repair never drops contents a name could reach: an inode that lost its
//!   names is reconnected as `/lost+found/#<ino>`; only data objects of
//!   missing or non-file inodes are removed.
//! - Every repair is one guarded `meta::Txn`. Fixes that set a value run
//!   first; fixes that move names (dropping a directory's extra name,
//!   reconnecting) run after them and adjust nlinks relative to what they
//!   read. The tree is synced at the end.
//! - Memory: a small record per inode and one edge per directory entry;
//!   names are kept only for problems and a bounded cache of directories.
//! - fsck reads the tree directly through range scans (the `meta` seam has
//!   no streaming scan) and writes only through `meta::Txn`.

mod namespace;
mod paths;
mod problem;
mod repair;
mod scan;

pub use problem::{kind_name, show_name, Place, Problem};

use holt_core::Tree;

use crate::data::DataStore;
use crate::error::FsResult;

/// Items between two progress reports.
const PROGRESS_EVERY: u64 = 4096;

/// What fsck may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsckOptions {
    /// Fix what is safe to fix (see the module docs).
    pub repair: bool,
}

/// How far a phase has come; `total` when it is known in advance (an
/// estimate for the inode scan: the usage counters' total).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: &'static str,
    pub done: u64,
    pub total: Option<u64>,
}

/// One problem, and what `--repair` did about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub problem: Problem,
    /// `None`: not repaired (not asked, or not safe to).
    pub repaired: Option<String>,
}

/// The outcome of one fsck run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub findings: Vec<Finding>,
    /// Inode keys stored, orphans included.
    pub inodes: u64,
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    /// Fifos, sockets and device nodes.
    pub others: u64,
    /// Inodes without names awaiting reclaim (`R/`): not problems.
    pub orphans: u64,
    /// Data objects in the data store.
    pub objects: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings that a repair fixed.
    pub fn repaired(&self) -> usize {
        self.findings.iter().filter(|f| f.repaired.is_some()).count()
    }
}

/// Check `tree` and `data` (one store, not mounted) and, with
/// `opts.repair`, fix what is safe. Errors are failures to read or write
/// the store, not problems found in it.
pub fn fsck(
    tree: &Tree,
    data: &dyn DataStore,
    opts: &FsckOptions,
    progress: &mut dyn FnMut(Progress),
) -> FsResult<FsckReport> {
    let mut plan = Plan::default();
    let ticker = Ticker::new("engine", None, progress);
    let engine = tree.check_invariants();
    ticker.finish();
    if let Err(e) = engine {
        plan.report(Problem::Engine { message: e.to_string() });
        return Ok(plan.into_report(FsckReport::default(), None));
    }
    let Some(mut census) = scan::census(tree, data, &mut plan, progress)? else {
        return Ok(plan.into_report(FsckReport::default(), None));
    };
    namespace::analyse(&mut census, tree, &mut plan)?;
    paths::locate(&census, tree, &mut plan, progress)?;
    let counts = census.counts();
    drop(census);
    let repaired = match opts.repair && plan.items.iter().any(|i| i.fix.is_some()) {
        true => Some(repair::apply(tree, data, &plan.items, progress)?),
        false => None,
    };
    Ok(plan.into_report(counts, repaired))
}

/// A problem and the fix that repairs it, if one is safe.
struct Item {
    problem: Problem,
    fix: Option<repair::Fix>,
}

/// Everything found so far, in the order found.
#[derive(Default)]
struct Plan {
    items: Vec<Item>,
}

impl Plan {
    /// A problem that fsck leaves alone.
    fn report(&mut self, problem: Problem) {
        self.items.push(Item { problem, fix: None });
    }

    fn fix(&mut self, problem: Problem, fix: repair::Fix) {
        self.items.push(Item { problem, fix: Some(fix) });
    }

    fn into_report(self, counts: FsckReport, repaired: Option<Vec<Option<String>>>) -> FsckReport {
        let mut repaired = repaired.unwrap_or_default().into_iter();
        let findings = self
            .items
            .into_iter()
            .map(|i| Finding { problem: i.problem, repaired: repaired.next().flatten() })
            .collect();
        FsckReport { findings, ..counts }
    }
}

/// Reports a phase's progress every `PROGRESS_EVERY` items and at its ends.
struct Ticker<'p> {
    phase: &'static str,
    done: u64,
    total: Option<u64>,
    report: &'p mut dyn FnMut(Progress),
}

impl<'p> Ticker<'p> {
    fn new(phase: &'static str, total: Option<u64>, report: &'p mut dyn FnMut(Progress)) -> Ticker<'p> {
        report(Progress { phase, done: 0, total });
        Ticker { phase, done: 0, total, report }
    }

    fn tick(&mut self) {
        self.done += 1;
        if self.done.is_multiple_of(PROGRESS_EVERY) {
            (self.report)(Progress { phase: self.phase, done: self.done, total: self.total });
        }
    }

    fn finish(self) {
        let total = self.total.map(|t| t.max(self.done));
        (self.report)(Progress { phase: self.phase, done: self.done, total: total.or(Some(self.done)) });
    }
}
