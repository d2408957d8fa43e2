//! Latency buckets: powers of two of nanoseconds, so finding a sample's
//! bucket is one `leading_zeros`, with no table and no loop.
//!
//! Bucket `k < BOUNDS` holds samples of at most `bound_ns(k)` =
//! 2^(FIRST_BOUND_LOG2 + k) ns and more than the bound below it; bucket
//! `BOUNDS` holds everything slower than the last bound (`+Inf`). The
//! bounds run from 1.024 µs to 17.2 s: a FUSE request takes no less than
//! a few microseconds, and one slower than seconds is a fault to see,
//! not to resolve.

/// log2 of the first bound, in nanoseconds (1024 ns).
const FIRST_BOUND_LOG2: u32 = 10;
/// Finite bounds; the bucket past the last is `+Inf`.
pub const BOUNDS: usize = 25;
/// Buckets, the `+Inf` one included.
pub const BUCKETS: usize = BOUNDS + 1;

/// Upper bound of bucket `k < BOUNDS`, in nanoseconds.
pub const fn bound_ns(k: usize) -> u64 {
    1u64 << (FIRST_BOUND_LOG2 as usize + k)
}

/// The bucket of a sample of `ns` nanoseconds: the least `k` with
/// `ns <= bound_ns(k)`, or `BOUNDS` when there is none.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    if ns <= bound_ns(0) {
        return 0;
    }
    // ceil(log2(ns)) for ns >= 2: the bit length of ns - 1.
    let ceil_log2 = u64::BITS - (ns - 1).leading_zeros();
    ((ceil_log2 - FIRST_BOUND_LOG2) as usize).min(BOUNDS)
}

/// Every finite bound, in nanoseconds.
pub fn bounds_ns() -> Vec<u64> {
    (0..BOUNDS).map(bound_ns).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sample_lands_in_the_least_bucket_that_holds_it() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1024), 0);
        assert_eq!(bucket_of(1025), 1);
        assert_eq!(bucket_of(2048), 1);
        assert_eq!(bucket_of(2049), 2);
        assert_eq!(bucket_of(bound_ns(BOUNDS - 1)), BOUNDS - 1);
        assert_eq!(bucket_of(bound_ns(BOUNDS - 1) + 1), BOUNDS);
        assert_eq!(bucket_of(u64::MAX), BOUNDS);
        for ns in (0..40).map(|s| 1u64 << s).flat_map(|p| [p.saturating_sub(1), p, p + 1]) {
            let k = bucket_of(ns);
            if k < BOUNDS {
                assert!(ns <= bound_ns(k), "{ns} above its bucket {k}");
            }
            if k > 0 {
                assert!(ns > bound_ns(k - 1), "{ns} fits the bucket below {k}");
            }
        }
    }

    #[test]
    fn bounds_run_from_a_microsecond_to_seconds() {
        let b = bounds_ns();
        assert_eq!((b.len(), b[0], b[BOUNDS - 1]), (BOUNDS, 1024, 1 << 34));
        assert!(b.windows(2).all(|w| w[1] == 2 * w[0]));
    }
}
