//! Thin wrappers over libc calls (the only `unsafe` outside [`crate::pyo`]).

/// `clock_gettime(CLOCK_MONOTONIC)`: seconds and nanoseconds.
#[inline]
pub fn monotonic_timespec() -> (libc::time_t, libc::c_long) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux,
    // so clock_gettime cannot fail here.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

/// `pthread_self()`: what `threading.get_ident()` returns on Linux.
#[inline]
pub fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
}
