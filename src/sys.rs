//! Thin wrappers over libc calls (the only `unsafe` outside [`crate::pyo`]).

use std::io;
use std::os::fd::RawFd;
#[cfg(test)]
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

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

/// `epoll_ctl(epfd, op, fd, &{events, data})`: adds, modifies or deletes the registration
/// of `fd` in the epoll instance `epfd`.
pub fn epoll_ctl(
    epfd: RawFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    data: u64,
) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: `event` is a valid epoll_event that outlives the call (epoll_ctl only reads
    // it, and ignores it for EPOLL_CTL_DEL). Bad fds are reported as errors.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `dup2`: closes `target` and makes its number name `src`'s open file, in one step (so
/// no other thread can take the number in between). Tests use it to reuse an fd number.
#[cfg(test)]
pub fn dup2_onto(src: BorrowedFd<'_>, target: OwnedFd) -> io::Result<OwnedFd> {
    let fd = target.into_raw_fd();
    // SAFETY: `fd` is a descriptor we own (released by `into_raw_fd`); dup2 closes it and
    // installs `src`'s file under the same number, or fails leaving it open.
    let res = unsafe { libc::dup2(src.as_raw_fd(), fd) };
    let err = (res < 0).then(io::Error::last_os_error);
    // SAFETY: `fd` is open (the new file, or the old one if dup2 failed) and owned by
    // nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match err {
        Some(e) => Err(e),
        None => Ok(owned),
    }
}
