//! One round: mount, run the workload until a seeded SIGKILL, remount,
//! verify every thread's directory and the whole tree, unmount, fsck.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::daemon::{self, Daemon, Setup};
use crate::model::Model;
use crate::observe;
use crate::rng::Rng;
use crate::verify::{self, Found};
use crate::workload::{self, Outcome};

/// Shortest wait before the kill.
const KILL_MS_MIN: u64 = 20;
/// The rng stream of the kill delays (workers use streams 0..threads).
const KILL_STREAM: u64 = u64::MAX;

/// What every round shares.
pub struct Run {
    pub setup: Setup,
    pub seed: u64,
    pub kill_ms_max: u64,
    pub fsck: bool,
}

/// What a passed round did.
pub struct Report {
    pub acked: u64,
    /// Each thread's in-flight call and what the remount showed of it.
    pub in_flight: Vec<(&'static str, Found)>,
    pub kill_ms: u64,
    pub verify: Duration,
    /// The fsck after the unmount (zero when skipped).
    pub fsck: Duration,
    pub total: Duration,
}

/// Round `round` (from 1) over `models`, one per worker thread.
pub fn run(run: &Run, models: &mut [Model], round: u64) -> Result<Report, String> {
    let start = Instant::now();
    let mount = run.setup.mountpoint.as_path();
    let mut daemon = Daemon::mount(&run.setup)?;
    if round == 1 {
        make_roots(mount, models)?;
    }
    let kill_ms = Rng::stream(run.seed, round, KILL_STREAM).between(KILL_MS_MIN, run.kill_ms_max.max(KILL_MS_MIN));
    let outcomes = work_until_killed(mount, models, run.seed, round, kill_ms, daemon.pid());
    daemon.reap_killed()?;
    let outcomes = outcomes?;
    for (t, o) in outcomes.iter().enumerate() {
        if let Some(what) = &o.unexpected {
            return Err(thread_failure(t, &models[t], o, what));
        }
    }
    let daemon = Daemon::mount(&run.setup)?;
    let verify_start = Instant::now();
    let in_flight = verify_all(mount, models, &outcomes)?;
    let verify = verify_start.elapsed();
    daemon.unmount()?;
    let fsck_start = Instant::now();
    if run.fsck {
        daemon::fsck(&run.setup)?;
    }
    let fsck = fsck_start.elapsed();
    Ok(Report {
        acked: outcomes.iter().map(|o| o.acked).sum(),
        in_flight,
        kill_ms,
        verify,
        fsck,
        total: start.elapsed(),
    })
}

/// Each thread's own directory, made before the first workload.
fn make_roots(mount: &Path, models: &[Model]) -> Result<(), String> {
    for m in models {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(mount.join(&m.root))
            .map_err(|e| format!("mkdir {}: {e}", m.root))?;
    }
    Ok(())
}

/// Run every worker; SIGKILL the daemon after `kill_ms`; return once every
/// worker has stopped.
fn work_until_killed(
    mount: &Path,
    models: &mut [Model],
    seed: u64,
    round: u64,
    kill_ms: u64,
    pid: i32,
) -> Result<Vec<Outcome>, String> {
    let killed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = models
            .iter_mut()
            .enumerate()
            .map(|(t, model)| {
                let (rng, killed) = (Rng::stream(seed, round, t as u64), &killed);
                s.spawn(move || workload::run(mount, model, rng, killed))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(kill_ms));
        killed.store(true, Ordering::SeqCst);
        // SAFETY: SIGKILL to the daemon this process started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        workers.into_iter().map(|w| w.join().map_err(|_| "a worker thread panicked".to_string())).collect()
    })
}

/// Verify each thread's directory, the mount's root listing and the whole
/// tree; returns what became of each in-flight call.
fn verify_all(mount: &Path, models: &mut [Model], outcomes: &[Outcome]) -> Result<Vec<(&'static str, Found)>, String> {
    let mut in_flight = Vec::new();
    for (t, (model, o)) in models.iter_mut().zip(outcomes).enumerate() {
        let before = model.clone();
        let found =
            verify::thread(mount, model, o.in_flight.as_ref()).map_err(|e| thread_failure(t, &before, o, &e))?;
        if let Some(op) = &o.in_flight {
            in_flight.push((op.name(), found));
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(mount)
        .map_err(|e| format!("readdir of the mount's root: {e}"))?
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned()).map_err(|e| format!("readdir of the root: {e}"))
        })
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut roots: Vec<String> = models.iter().map(|m| m.root.clone()).collect();
    roots.sort();
    if names != roots {
        return Err(format!("the mount's root lists {names:?}, expected {roots:?}"));
    }
    observe::check_tree(mount).map_err(|e| format!("namespace check: {e}"))?;
    Ok(in_flight)
}

fn thread_failure(t: usize, model: &Model, o: &Outcome, what: &str) -> String {
    let recent: Vec<&str> = o.recent.iter().map(String::as_str).collect();
    format!(
        "thread {t} (directory {}): {what}\n last acknowledged operations of thread {t}, oldest first:\n  {}",
        model.root,
        recent.join("\n  ")
    )
}
