//! The loop's clock: `CLOCK_MONOTONIC`, the clock behind `time.monotonic()`.
//!
//! asyncio's `loop.time()` is `time.monotonic()`; using the very same clock keeps
//! deadlines computed by Python code (`asyncio.timeout`, libraries that call
//! `time.monotonic()` themselves) comparable with the loop's own time.

/// Seconds on the monotonic clock, with nanosecond resolution.
#[inline]
pub fn monotonic() -> f64 {
    let (sec, nsec) = crate::sys::monotonic_timespec();
    sec as f64 + nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let mut last = monotonic();
        for _ in 0..10_000 {
            let now = monotonic();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn monotonic_has_sub_millisecond_resolution() {
        // Two reads in a tight loop must eventually differ by less than a millisecond.
        let a = monotonic();
        let mut b = monotonic();
        while b == a {
            b = monotonic();
        }
        assert!(b - a < 1e-3, "clock step {} s", b - a);
    }
}
