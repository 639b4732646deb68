//! The reactor: I/O readiness through `mio` (epoll on Linux) and the cross-thread waker.
//!
//! mio registers file descriptors edge-triggered. asyncio's `add_reader`/`add_writer` are
//! level-triggered (the callback runs on every iteration while the fd stays ready), so
//! after reporting an event for a watched fd the reactor re-arms it: `EPOLL_CTL_MOD`
//! re-checks readiness, and a still-ready fd is reported again by the next poll.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

/// Token of the eventfd waker used by `call_soon_threadsafe`.
pub const WAKER: Token = Token(usize::MAX);
/// Token of the socket that receives signal numbers (`signal.set_wakeup_fd`).
pub const SIGNALS: Token = Token(usize::MAX - 1);

/// Which directions an fd is watched for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    pub read: bool,
    pub write: bool,
}

impl Watch {
    fn interest(self) -> Option<Interest> {
        match (self.read, self.write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// A readiness event for a watched fd.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
}

/// The poller owned by the loop thread.
pub struct Poller {
    poll: Poll,
    events: Events,
}

impl Poller {
    pub fn new() -> io::Result<(Poller, Registry, Waker)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((
            Poller {
                poll,
                events: Events::with_capacity(1024),
            },
            registry,
            waker,
        ))
    }

    /// Waits up to `timeout` (None: forever) and appends the events to `out`.
    /// Returns `ErrorKind::Interrupted` when a signal interrupted the wait.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Ready>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)?;
        out.extend(self.events.iter().map(|e| Ready {
            token: e.token(),
            // Errors and hang-ups wake both directions, as select() reports them.
            readable: e.is_readable() || e.is_read_closed() || e.is_error(),
            writable: e.is_writable() || e.is_write_closed() || e.is_error(),
        }));
        Ok(())
    }
}

/// Brings the registration of `fd` from `old` to `new` watch directions.
pub fn update(registry: &Registry, fd: RawFd, old: Watch, new: Watch) -> io::Result<()> {
    let token = Token(fd as usize);
    match (old.interest(), new.interest()) {
        (None, None) => Ok(()),
        (None, Some(i)) => match registry.register(&mut SourceFd(&fd), token, i) {
            // Still registered from an earlier life of the same fd number.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                registry.reregister(&mut SourceFd(&fd), token, i)
            }
            r => r,
        },
        (Some(_), Some(i)) => rearm(registry, fd, i),
        (Some(_), None) => match registry.deregister(&mut SourceFd(&fd)) {
            // The fd was closed (epoll forgot it) or replaced: nothing left to undo.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EBADF)) => Ok(()),
            r => r,
        },
    }
}

/// Re-arms a watched fd so that the next poll reports it again if it is still ready.
pub fn rearm(registry: &Registry, fd: RawFd, interest: Interest) -> io::Result<()> {
    let token = Token(fd as usize);
    match registry.reregister(&mut SourceFd(&fd), token, interest) {
        // The fd was closed and reopened under the same number: register it anew.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            registry.register(&mut SourceFd(&fd), token, interest)
        }
        r => r,
    }
}

/// Re-arms after an event, for the directions still watched.
pub fn rearm_watch(registry: &Registry, fd: RawFd, watch: Watch) -> io::Result<()> {
    match watch.interest() {
        Some(i) => rearm(registry, fd, i),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn level_triggered_by_rearming() {
        let (mut poller, registry, _waker) = Poller::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let read = Watch {
            read: true,
            write: false,
        };
        update(&registry, fd, Watch::default(), read).unwrap();
        b.write_all(b"x").unwrap();
        let mut out = Vec::new();
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        assert!(out
            .iter()
            .any(|r| r.token == Token(fd as usize) && r.readable));
        // Not drained: after re-arming, the fd is reported again.
        rearm_watch(&registry, fd, read).unwrap();
        out.clear();
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        assert!(out
            .iter()
            .any(|r| r.token == Token(fd as usize) && r.readable));
        update(&registry, fd, read, Watch::default()).unwrap();
    }

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
