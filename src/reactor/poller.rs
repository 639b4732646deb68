//! The poller: one `epoll` instance (through `mio`), the eventfd waker of
//! `call_soon_threadsafe`, and the readiness events a poll reports.

use std::io;
use std::time::Duration;

use mio::{Events, Poll, Registry, Token, Waker};

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
