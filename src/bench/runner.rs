//! Runs the selected phases at each thread count: every thread in its own
//! directory, all threads of a phase released together by a barrier, and
//! the fixtures a phase needs made (untimed) when their phase was not selected.

use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Barrier;

use super::cpu::{CpuMark, CpuUse};
use super::phases::{self, Ctx, Fixture, Phase, BIGDIR_FACTOR};
use super::record::{PhaseStats, Recorder};
use super::requests::{self, PerOp, Probe};

/// What to run; `files` and `seq_mib` are totals, split over the threads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub phases: Vec<&'static Phase>,
    pub threads: Vec<usize>,
    pub files: usize,
    pub seq_mib: usize,
    /// A process whose CPU time each phase also reports (the FUSE daemon).
    pub daemon_pid: Option<u32>,
    /// The holt-fs daemon whose request counters each phase reads.
    pub requests: Option<Probe>,
}

/// One line of the report.
pub struct Row {
    pub phase: &'static Phase,
    pub threads: usize,
    pub stats: PhaseStats,
    pub cpu: CpuUse,
    /// FUSE requests per operation, when the plan has a probe.
    pub requests: Option<PerOp>,
}

/// Fixtures present in the thread directories right now.
#[derive(Default)]
struct Present(Vec<Fixture>);

impl Present {
    fn has(&self, f: Fixture) -> bool {
        self.0.contains(&f)
    }

    fn after(&mut self, phase: &Phase) {
        if let (true, Some(used)) = (phase.consumes, phase.needs) {
            self.0.retain(|f| *f != used);
        }
        if let Some(made) = phase.makes {
            self.0.push(made);
        }
    }
}

/// Share `total` over `threads`: thread `k` gets its part, the first ones one more.
fn share(total: usize, threads: usize, k: usize) -> usize {
    total / threads + usize::from(k < total % threads)
}

fn contexts(dir: &Path, plan: &Plan, threads: usize) -> Vec<Ctx> {
    (0..threads)
        .map(|k| Ctx {
            dir: dir.join(format!("t{k}")),
            files: share(plan.files, threads, k),
            bigdir_files: share(plan.files * BIGDIR_FACTOR, threads, k),
            seq_ops: share(plan.seq_mib, threads, k),
        })
        .collect()
}

/// Run `phase` on every context at once, one thread each.
fn run_phase(phase: &Phase, ctxs: &[Ctx], stop: &AtomicBool) -> Result<PhaseStats, String> {
    let barrier = Barrier::new(ctxs.len());
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ctxs
            .iter()
            .map(|ctx| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut rec = Recorder::new(stop);
                    barrier.wait();
                    let result = (phase.run)(ctx, &mut rec);
                    (rec, result)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench threads do not panic")).collect()
    });
    let mut recorders = Vec::with_capacity(outcomes.len());
    for (rec, result) in outcomes {
        result.map_err(|e| format!("phase {}: {e}", phase.name))?;
        recorders.push(rec);
    }
    Ok(PhaseStats::merge(recorders))
}

/// Make `fixture` exist, running its maker (and the maker's needs) untimed.
fn ensure(fixture: Option<Fixture>, present: &mut Present, ctxs: &[Ctx], stop: &AtomicBool) -> Result<(), String> {
    let Some(fixture) = fixture.filter(|f| !present.has(*f)) else { return Ok(()) };
    let maker = phases::maker_of(fixture);
    ensure(maker.needs, present, ctxs, stop)?;
    log::info!("setting up for the next phase: {} (untimed)", maker.name);
    run_phase(maker, ctxs, stop)?;
    present.after(maker);
    Ok(())
}

/// Run the plan at one thread count inside `dir`, which it removes after.
fn run_threads(dir: &Path, plan: &Plan, threads: usize, stop: &AtomicBool, out: &mut Vec<Row>) -> Result<(), String> {
    fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ctxs = contexts(dir, plan, threads);
    for ctx in &ctxs {
        fs::create_dir(&ctx.dir).map_err(|e| format!("cannot create {}: {e}", ctx.dir.display()))?;
    }
    let mut present = Present::default();
    for &phase in &plan.phases {
        ensure(phase.needs, &mut present, &ctxs, stop)?;
        // Counters outside the CPU window: answering them costs the daemon CPU.
        let before = plan.requests.as_ref().map(Probe::read).transpose()?;
        let cpu_error = |e: std::io::Error| format!("cannot read CPU times: {e}");
        let mark = CpuMark::now(plan.daemon_pid).map_err(cpu_error)?;
        let stats = run_phase(phase, &ctxs, stop)?;
        let cpu = mark.since(plan.daemon_pid).map_err(cpu_error)?;
        let after = plan.requests.as_ref().map(Probe::read).transpose()?;
        let requests = before.zip(after).map(|(b, a)| requests::per_op(&b, &a, stats.ops));
        log::info!("{} x{threads}: {:.0} ops/s", phase.name, stats.ops_per_sec());
        present.after(phase);
        out.push(Row { phase, threads, stats, cpu, requests });
    }
    fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
}

/// Run every phase of `plan` at every thread count inside `root`.
pub fn run(root: &Path, plan: &Plan, stop: &AtomicBool) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &threads in &plan.threads {
        run_threads(&root.join(format!("threads-{threads}")), plan, threads, stop, &mut rows)?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_splits_exactly() {
        assert_eq!((0..3).map(|k| share(10, 3, k)).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!((0..2).map(|k| share(1, 2, k)).sum::<usize>(), 1);
    }

    #[test]
    fn any_subset_of_phases_runs_on_a_plain_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let picked = phases::select("unlink,read4k,seqread,bigdir-rm").unwrap();
        let plan = Plan { phases: picked, threads: vec![1, 2], files: 7, seq_mib: 3, daemon_pid: None, requests: None };
        let rows = run(tmp.path(), &plan, &stop).unwrap();
        let got: Vec<(&str, usize, u64)> = rows.iter().map(|r| (r.phase.name, r.threads, r.stats.ops)).collect();
        let want = [("unlink", 1, 7), ("read4k", 1, 7), ("seqread", 1, 3), ("bigdir-rm", 1, 70)];
        assert_eq!(got[..4], want);
        assert_eq!(got[4..].iter().map(|r| r.2).collect::<Vec<_>>(), [7, 7, 3, 70]);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "each thread count's directory is removed");
    }

    #[test]
    fn every_phase_runs_and_counts_its_operations() {
        let tmp = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let all = phases::select("all").unwrap();
        let plan = Plan { phases: all, threads: vec![2], files: 5, seq_mib: 2, daemon_pid: None, requests: None };
        let rows = run(tmp.path(), &plan, &stop).unwrap();
        assert_eq!(rows.len(), phases::PHASES.len());
        for r in &rows {
            let want = match r.phase.name {
                n if n.starts_with("seq") => 2,
                n if n.starts_with("bigdir") => 50,
                _ => 5,
            };
            assert_eq!(r.stats.ops, want, "{}", r.phase.name);
        }
    }
}
