//! The poller: one `epoll` instance (through `mio`), the eventfd waker of
//! `call_soon_threadsafe`, and the readiness events a poll reports.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::{Poll, Registry, Token, Waker};

/// Token of the eventfd waker used by `call_soon_threadsafe`.
pub const WAKER: Token = Token(usize::MAX);
/// Token of the socket that receives signal numbers (`signal.set_wakeup_fd`).
pub const SIGNALS: Token = Token(usize::MAX - 1);

/// A readiness event for a watched fd.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
}

/// The poller owned by the loop thread.
pub struct Poller {
    /// mio's epoll instance, for its registry and waker; the loop waits on its fd itself
    /// (see [`Poller::poll`]).
    poll: Poll,
    events: Vec<libc::epoll_event>,
}

/// How many events one poll returns at most (more stay reported for the next poll).
const EVENTS_PER_POLL: usize = 1024;

impl Poller {
    pub fn new() -> io::Result<(Poller, Registry, Waker)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((
            Poller {
                poll,
                events: Vec::with_capacity(EVENTS_PER_POLL),
            },
            registry,
            waker,
        ))
    }

    /// Waits up to `timeout` (None: forever) and appends the events to `out`.
    /// Returns `ErrorKind::Interrupted` when a signal interrupted the wait.
    ///
    /// The wait is `sys::epoll_wait` on mio's epoll fd rather than `Poll::poll`, which
    /// waits through libc's `epoll_wait` wrapper (see `sys::send` for the difference); the
    /// timeout is rounded as mio rounds it: up to the next millisecond, so a timer is
    /// never polled for early, and a zero timeout stays zero.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Ready>) -> io::Result<()> {
        let timeout_ms = timeout
            .map(|to| {
                libc::c_int::try_from(
                    to.checked_add(Duration::from_nanos(999_999))
                        .unwrap_or(to)
                        .as_millis(),
                )
                .unwrap_or(libc::c_int::MAX)
            })
            .unwrap_or(-1);
        crate::sys::epoll_wait(self.poll.as_raw_fd(), &mut self.events, timeout_ms)?;
        out.extend(self.events.iter().map(|e| {
            let bits = e.events as libc::c_int;
            let has = |flag: libc::c_int| bits & flag != 0;
            // What mio's Event reports (is_readable / is_read_closed / is_error, and the
            // writing side's), combined: errors and hang-ups wake both directions, as
            // select() reports them.
            let error = has(libc::EPOLLERR);
            let hup = has(libc::EPOLLHUP);
            Ready {
                token: Token(e.u64 as usize),
                readable: has(libc::EPOLLIN) || has(libc::EPOLLPRI) || hup || error,
                writable: has(libc::EPOLLOUT) || hup || error,
            }
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_wakes_a_blocked_poll() {
        let (mut poller, _registry, waker) = Poller::new().unwrap();
        // The waker must outlive the poll: closing its eventfd would drop the event.
        let waker = std::sync::Arc::new(waker);
        let remote = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.wake().unwrap();
        });
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        poller.poll(Some(Duration::from_secs(5)), &mut out).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(out.iter().any(|r| r.token == WAKER));
        t.join().unwrap();
    }

    #[test]
    fn timeout_never_returns_early() {
        let (mut poller, _registry, _waker) = Poller::new().unwrap();
        let mut out = Vec::new();
        for micros in [300u64, 1500, 2500] {
            let start = std::time::Instant::now();
            poller
                .poll(Some(Duration::from_micros(micros)), &mut out)
                .unwrap();
            assert!(start.elapsed() >= Duration::from_micros(micros));
        }
    }
}
