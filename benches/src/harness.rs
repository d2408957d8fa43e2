//! Timing: each cell runs `reps` times per engine, the engines interleaved
//! (A B A B ...) so background noise hits both alike; a cell reports the
//! median rate and the spread.

use std::time::{Duration, Instant};

use crate::engines::Res;

/// Rates (operations per second) of the repetitions of one cell on one engine.
#[derive(Clone, Debug, Default)]
pub struct Rates(pub Vec<f64>);

impl Rates {
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// Run `work` once and turn its operation count into a rate.
pub fn rate(work: impl FnOnce() -> Res<u64>) -> Res<f64> {
    let start = Instant::now();
    let ops = work()?;
    Ok(ops as f64 / secs(start.elapsed()))
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

/// Split `items` into `threads` contiguous parts and run `work` on each part in
/// its own thread; the rate is the total operations over the wall time.
pub fn parallel<T: Sync>(
    threads: usize,
    items: &[T],
    work: impl Fn(usize, &[T]) -> Res<u64> + Sync,
) -> Res<f64> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    rate(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = items
                .chunks(per)
                .enumerate()
                .map(|(t, part)| {
                    let work = &work;
                    s.spawn(move || work(t, part))
                })
                .collect();
            let mut ops = 0;
            for h in handles {
                ops += h.join().map_err(|_| "bench thread panicked".to_string())??;
            }
            Ok(ops)
        })
    })
}

/// Profiling hook: with `HOLT_BENCH_PERF_CTL=<fifo>` (perf record
/// `--control fifo:<fifo> -D -1`) and `HOLT_BENCH_PROFILE=<cell>:<engine>`
/// (e.g. `update:core`), perf samples only while that cell runs on that engine.
pub fn profiled<T>(cell: &str, engine: &str, run: impl FnOnce() -> T) -> T {
    let on = std::env::var("HOLT_BENCH_PROFILE").is_ok_and(|p| p == format!("{cell}:{engine}"));
    if on {
        perf_ctl("enable");
    }
    let r = run();
    if on {
        perf_ctl("disable");
    }
    r
}

fn perf_ctl(cmd: &str) {
    use std::io::Write;
    static CTL: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);
    let Ok(path) = std::env::var("HOLT_BENCH_PERF_CTL") else { return };
    let mut ctl = CTL.lock().unwrap_or_else(|p| p.into_inner());
    if ctl.is_none() {
        *ctl = std::fs::OpenOptions::new().write(true).open(&path).ok();
    }
    if let Some(f) = ctl.as_mut() {
        let _ = writeln!(f, "{cmd}");
        let _ = f.flush();
    }
}
