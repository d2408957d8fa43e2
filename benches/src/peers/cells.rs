//! The timed work of the peer cells, each on any `Store`. Keys are built
//! before a clock starts; every result is checked (counts, hits, misses).

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::data::{ListDir, ROLLUP_SUBDIRS};
use super::store::{Res, Store};
use crate::harness::{parallel, rate, secs};
use crate::workload::Dataset;

/// A read cell repeats its pass until this much time has gone by, so a
/// fast engine's number is not one short burst.
const READ_CELL_MIN: Duration = Duration::from_millis(500);
/// Creates per commit group in create+delete: this many are created,
/// then deleted, each its own commit.
const CREATE_DELETE_GROUP: usize = 1000;

pub fn pairs<'a>(ds: &'a Dataset, idx: &[u32]) -> Vec<(&'a [u8], &'a [u8])> {
    idx.iter().map(|&i| (ds.keys[i as usize].as_slice(), ds.values[i as usize].as_slice())).collect()
}

/// Loads `order` in commits of `batch` puts; with `batch == 1` each put's
/// latency (ns) goes into `lat_ns`.
pub fn load(s: &dyn Store, ds: &Dataset, order: &[u32], batch: usize, lat_ns: &mut Vec<u32>) -> Res<f64> {
    rate(|| {
        if batch == 1 {
            for &i in order {
                let start = Instant::now();
                s.put(&ds.keys[i as usize], &ds.values[i as usize])?;
                lat_ns.push(u32::try_from(start.elapsed().as_nanos()).unwrap_or(u32::MAX));
            }
        } else {
            for chunk in order.chunks(batch) {
                s.put_batch(&pairs(ds, chunk))?;
            }
        }
        Ok(order.len() as u64)
    })
}

/// (p99, max) of the latencies, in microseconds.
pub fn p99_max_us(mut lat_ns: Vec<u32>) -> Res<(f64, f64)> {
    if lat_ns.is_empty() {
        return Err("no latencies recorded".into());
    }
    lat_ns.sort_unstable();
    let p99 = lat_ns[(lat_ns.len() * 99 / 100).min(lat_ns.len() - 1)];
    let max = lat_ns[lat_ns.len() - 1];
    Ok((f64::from(p99) / 1e3, f64::from(max) / 1e3))
}

pub fn gets(s: &dyn Store, keys: &[&[u8]]) -> Res<f64> {
    rate(|| {
        let mut bytes = 0usize;
        for k in keys {
            bytes += s.get(k)?.ok_or_else(|| format!("get: key {k:?} missing"))?.len();
        }
        black_box(bytes);
        Ok(keys.len() as u64)
    })
}

pub fn misses(s: &dyn Store, keys: &[Vec<u8>]) -> Res<f64> {
    rate(|| {
        for k in keys {
            if s.get(k)?.is_some() {
                return Err(format!("get: absent key {k:?} found"));
            }
        }
        Ok(keys.len() as u64)
    })
}

/// Puts over existing keys: same length, changed bytes (a setattr).
pub fn updates(s: &dyn Store, ds: &Dataset, idx: &[u32]) -> Res<f64> {
    let mut buf = Vec::with_capacity(128);
    rate(|| {
        for &i in idx {
            buf.clear();
            buf.extend_from_slice(&ds.values[i as usize]);
            buf[8] = buf[8].wrapping_add(1);
            s.put(&ds.keys[i as usize], &buf)?;
        }
        Ok(idx.len() as u64)
    })
}

/// Groups of `CREATE_DELETE_GROUP` creates then their deletes; ops count both.
pub fn create_delete(s: &dyn Store, keys: &[Vec<u8>], value: &[u8]) -> Res<f64> {
    rate(|| {
        for group in keys.chunks(CREATE_DELETE_GROUP) {
            group.iter().try_for_each(|k| s.put(k, value))?;
            group.iter().try_for_each(|k| s.delete(k))?;
        }
        Ok(2 * keys.len() as u64)
    })
}

/// Every rename, then every one back: the store ends as it began.
pub fn renames(s: &dyn Store, moves: &[(Vec<u8>, Vec<u8>)]) -> Res<f64> {
    rate(|| {
        moves.iter().try_for_each(|(src, dst)| s.rename(src, dst))?;
        moves.iter().try_for_each(|(src, dst)| s.rename(dst, src))?;
        Ok(2 * moves.len() as u64)
    })
}

fn repeat(mut pass: impl FnMut() -> Res<u64>) -> Res<f64> {
    let start = Instant::now();
    let mut ops = 0;
    loop {
        ops += pass()?;
        if start.elapsed() >= READ_CELL_MIN {
            return Ok(ops as f64 / secs(start.elapsed()));
        }
    }
}

/// Listings of `dirs` per second, each checked against its entry count.
pub fn lists(s: &dyn Store, dirs: &[ListDir]) -> Res<f64> {
    repeat(|| {
        for d in dirs {
            let (n, bytes) = s.list(&d.prefix)?;
            if n != d.entries {
                return Err(format!("list {:?}: {n} entries, expected {}", d.prefix, d.entries));
            }
            black_box(bytes);
        }
        Ok(dirs.len() as u64)
    })
}

/// Listings per second of rollup top directories (all groups, no keys).
pub fn rollups(s: &dyn Store, tops: &[Vec<u8>]) -> Res<f64> {
    repeat(|| {
        for top in tops {
            let (n, _) = s.list(top)?;
            if n != ROLLUP_SUBDIRS {
                return Err(format!("rollup list {top:?}: {n} entries, expected {ROLLUP_SUBDIRS}"));
            }
        }
        Ok(tops.len() as u64)
    })
}

/// Keys per second of full scans, repeated like the other read cells (one
/// pass of a 1M-key store takes ~70 ms, which this host's noise moved by
/// 1.5x), each checked against the count expected.
pub fn scan(s: &dyn Store, expected: usize) -> Res<f64> {
    repeat(|| {
        let (n, bytes) = s.scan_all()?;
        if n != expected {
            return Err(format!("full scan: {n} keys, expected {expected}"));
        }
        black_box(bytes);
        Ok(n as u64)
    })
}

/// Durable creates for `time` from each of `threads` threads, into
/// directory prefixes of their own; counts only what committed.
pub fn fsync_creates(s: &dyn Store, prefixes: &[Vec<u8>], value: &[u8], time: Duration) -> Res<f64> {
    parallel(prefixes.len(), prefixes, |t, mine| {
        let deadline = Instant::now() + time;
        let mut done = 0u64;
        while Instant::now() < deadline {
            let mut k = mine[0].clone();
            k.extend_from_slice(format!("fsync-{t}-{done}").as_bytes());
            s.put(&k, value)?;
            done += 1;
        }
        Ok(done)
    })
}

/// Peak resident memory of this process so far (`VmHWM`), and now (`VmRSS`), MiB.
pub fn rss_mib() -> Res<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let field = |name: &str| -> Res<f64> {
        let line = status.lines().find(|l| l.starts_with(name)).ok_or(format!("no {name} in /proc/self/status"))?;
        let kib: f64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().map_err(|e| format!("{name}: {e}"))?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}
