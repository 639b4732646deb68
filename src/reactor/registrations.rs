//! The registrations of the loop's fds, keyed by owner.
//!
//! Each registration holds one fd, the directions it is polled for and its owner (the
//! loop's `add_reader`/`add_writer` callbacks today; transports and the like next). It
//! lives in a [`Slab`] and is registered with epoll under its slab token, so an event
//! resolves to its owner without a lookup by fd number, and an event for an earlier
//! registration — an fd since deregistered, closed and perhaps reused — resolves to
//! nothing.
//!
//! One owner per fd: registering an fd that already has an owner is refused with
//! [`RegisterError::InUse`], naming the owner's token; the caller decides whether its
//! request can join that owner (a second `add_reader` on a watched fd) or must fail (asyncio
//! raises `RuntimeError` for `add_reader` on an fd a transport uses).
//!
//! Registrations are level-triggered, as asyncio's selectors are: an fd stays reported
//! while it is ready, so dispatching an event costs no `epoll_ctl`; one is made only when
//! the directions change or the owner goes. (mio registers edge-triggered only, so the
//! `epoll_ctl` calls are made here, on mio's epoll instance.)
//!
//! The price of level triggering, shared with asyncio and libuv: an fd closed without
//! being deregistered while a duplicate keeps its file open stays in epoll, out of reach
//! (epoll_ctl needs an fd naming that file), and is reported for as long as the file is
//! ready. Its events carry a dead token and are dropped, but each poll returns at once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use mio::{Registry, Token};

use super::slab::Slab;

/// The directions a registration is polled for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };

    pub fn is_empty(self) -> bool {
        !(self.read || self.write)
    }

    fn epoll_events(self) -> u32 {
        let mut events = 0;
        if self.read {
            events |= libc::EPOLLIN as u32;
        }
        if self.write {
            events |= libc::EPOLLOUT as u32;
        }
        events
    }
}

/// Why [`Registrations::register`] refused a registration.
#[derive(Debug)]
pub enum RegisterError {
    /// The fd already has an owner, registered under this token.
    InUse(Token),
    Os(io::Error),
}

impl From<RegisterError> for io::Error {
    fn from(e: RegisterError) -> io::Error {
        match e {
            RegisterError::InUse(_) => io::Error::from_raw_os_error(libc::EEXIST),
            RegisterError::Os(e) => e,
        }
    }
}

struct Registration<O> {
    fd: RawFd,
    owner: O,
    /// Whether epoll has the fd: a registration polled for no direction (a paused
    /// transport) is kept here, as the fd's owner, but not in epoll, which would report
    /// hang-ups and errors for it on every poll.
    in_epoll: bool,
}

/// The hasher of the fd table: one multiplication by 2^64 / phi (Fibonacci hashing), where
/// the default SipHash cost about 50 instructions per lookup, several of which a `sock_*`
/// call that waits makes (register, `add_reader`'s checks, remove). Fd numbers are not
/// chosen by a remote peer: no flooding to defend against. The multiplier is odd, so
/// distinct fd numbers keep distinct low bits (the bucket) and the high bits (hashbrown's
/// tag) are mixed.
#[derive(Default, Clone, Copy)]
struct FdHasher(u64);

const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = (self.0 ^ u64::from(n as u32)).wrapping_mul(FIBONACCI);
    }
}

/// The loop's registrations: owners by token, and tokens by fd number.
pub struct Registrations<O> {
    slab: Slab<Registration<O>>,
    by_fd: HashMap<RawFd, Token, BuildHasherDefault<FdHasher>>,
}

impl<O> Default for Registrations<O> {
    fn default() -> Self {
        Registrations {
            slab: Slab::default(),
            by_fd: HashMap::default(),
        }
    }
}

/// `epoll_ctl` on mio's epoll instance, which stays open while `registry` is borrowed.
fn epoll_ctl(
    registry: &Registry,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    token: Token,
) -> io::Result<()> {
    crate::sys::epoll_ctl(registry.as_raw_fd(), op, fd, events, token.0 as u64)
}

fn errno_is(e: &io::Error, errno: libc::c_int) -> bool {
    e.raw_os_error() == Some(errno)
}

impl<O> Registrations<O> {
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The token of the registration that owns `fd`.
    pub fn token_of(&self, fd: RawFd) -> Option<Token> {
        self.by_fd.get(&fd).copied()
    }

    /// The owner of `fd` and its token.
    pub fn owner_of_fd(&mut self, fd: RawFd) -> Option<(Token, &mut O)> {
        let token = *self.by_fd.get(&fd)?;
        Some((token, &mut self.slab.get_mut(token)?.owner))
    }

    /// The owner registered under `token`; `None` for the token of a registration that is
    /// gone (the event that carried it is stale).
    pub fn owner_mut(&mut self, token: Token) -> Option<&mut O> {
        self.slab.get_mut(token).map(|r| &mut r.owner)
    }

    /// The fd of the first registration whose owner `pred` accepts (a linear scan, for
    /// the rare lookup by something other than the fd number).
    pub fn find_fd(&self, mut pred: impl FnMut(&O) -> bool) -> Option<RawFd> {
        self.slab
            .iter()
            .find(|(_, r)| pred(&r.owner))
            .map(|(_, r)| r.fd)
    }

    /// The live registrations' owners.
    pub fn owners(&self) -> impl Iterator<Item = &O> {
        self.slab.iter().map(|(_, r)| &r.owner)
    }

    /// Registers `fd` for `interest` on behalf of `owner`; gives the owner back if the fd
    /// already has one or epoll refuses the fd. With an empty `interest` the owner is
    /// recorded and epoll is left alone until [`Self::reregister`] gives a direction.
    pub fn register(
        &mut self,
        registry: &Registry,
        fd: RawFd,
        interest: Interest,
        owner: O,
    ) -> Result<Token, (RegisterError, O)> {
        if let Some(&token) = self.by_fd.get(&fd) {
            return Err((RegisterError::InUse(token), owner));
        }
        let in_epoll = !interest.is_empty();
        let token = match self.slab.insert(Registration {
            fd,
            owner,
            in_epoll,
        }) {
            Ok(token) => token,
            Err(r) => {
                let e = io::Error::other("too many registered file descriptors");
                return Err((RegisterError::Os(e), r.owner));
            }
        };
        if !in_epoll {
            self.by_fd.insert(fd, token);
            return Ok(token);
        }
        let events = interest.epoll_events();
        let res = match epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, events, token) {
            // epoll still has the fd under a token the slab no longer knows (a descriptor
            // the loop registered outside this table): take it over.
            Err(e) if errno_is(&e, libc::EEXIST) => {
                epoll_ctl(registry, libc::EPOLL_CTL_MOD, fd, events, token)
            }
            r => r,
        };
        match res {
            Ok(()) => {
                self.by_fd.insert(fd, token);
                Ok(token)
            }
            Err(e) => {
                let r = self.slab.remove(token).expect("just inserted");
                Err((RegisterError::Os(e), r.owner))
            }
        }
    }

    /// Polls the registration under `token` for `interest` from now on (`EPOLL_CTL_MOD`,
    /// made even if the directions are unchanged). On error nothing changed.
    ///
    /// If the fd number no longer names the file that was registered — the fd was closed
    /// behind the loop's back and the number reused — the registration is made anew for
    /// the file the number names now, under a new token (see [`Self::token_of`]): events
    /// still reported for the old file, which lives on if it was duplicated, carry the old
    /// token and are dropped.
    ///
    /// An empty `interest` takes the fd out of epoll and keeps the registration (see
    /// [`Registration::in_epoll`]); a direction puts it back.
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let Some(r) = self.slab.get_mut(token) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let fd = r.fd;
        let events = interest.epoll_events();
        if interest.is_empty() {
            if r.in_epoll {
                r.in_epoll = false;
                // EBADF/ENOENT: closed (and perhaps reused) already; epoll forgot it.
                let _ = epoll_ctl(registry, libc::EPOLL_CTL_DEL, fd, 0, token);
            }
            return Ok(());
        }
        if !r.in_epoll {
            match epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, events, token) {
                // Still there under a token the slab no longer knows: take it over.
                Err(e) if errno_is(&e, libc::EEXIST) => {
                    epoll_ctl(registry, libc::EPOLL_CTL_MOD, fd, events, token)?
                }
                r => r?,
            }
            if let Some(r) = self.slab.get_mut(token) {
                r.in_epoll = true;
            }
            return Ok(());
        }
        match epoll_ctl(registry, libc::EPOLL_CTL_MOD, fd, events, token) {
            Err(e) if errno_is(&e, libc::ENOENT) => {
                let new = self.slab.next_token(token).expect("checked above");
                epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, events, new)?;
                self.slab.retag(token);
                self.by_fd.insert(fd, new);
                Ok(())
            }
            r => r,
        }
    }

    /// Removes the registration under `token` and gives its owner back. Its fd is
    /// deregistered from epoll unless `registry` is `None` (the poller is gone) or the fd
    /// was closed already (epoll forgot it then).
    pub fn deregister(&mut self, registry: Option<&Registry>, token: Token) -> Option<O> {
        let r = self.slab.remove(token)?;
        self.by_fd.remove(&r.fd);
        if let (Some(registry), true) = (registry, r.in_epoll) {
            // EBADF/ENOENT: closed, or closed and the number reused; nothing to undo.
            let _ = epoll_ctl(registry, libc::EPOLL_CTL_DEL, r.fd, 0, token);
        }
        Some(r.owner)
    }

    /// Deregisters everything and gives the owners back.
    pub fn drain(&mut self, registry: Option<&Registry>) -> Vec<O> {
        let tokens: Vec<Token> = self.slab.iter().map(|(t, _)| t).collect();
        tokens
            .into_iter()
            .filter_map(|t| self.deregister(registry, t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::{Poller, Ready};
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn poll(poller: &mut Poller) -> Vec<Ready> {
        let mut out = Vec::new();
        poller
            .poll(Some(Duration::from_millis(50)), &mut out)
            .unwrap();
        out
    }

    /// The owners the events resolve to, as the loop's dispatch finds them.
    fn owners_woken(regs: &mut Registrations<&'static str>, events: &[Ready]) -> Vec<&'static str> {
        events
            .iter()
            .filter_map(|e| regs.owner_mut(e.token).map(|o| *o))
            .collect()
    }

    /// Closes `old` and puts a new open file (one end of a fresh socket pair) under its
    /// number, in one step, so no other test thread can take the number between.
    fn reuse_number(old: UnixStream) -> (OwnedFd, UnixStream) {
        let fd = old.as_raw_fd();
        let (new, peer) = UnixStream::pair().unwrap();
        let reused = crate::sys::dup2_onto(new.as_fd(), old.into()).unwrap();
        assert_eq!(reused.as_raw_fd(), fd);
        (reused, peer)
    }

    #[test]
    fn level_triggered_without_rearming() {
        let (mut poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = regs
            .register(&registry, a.as_raw_fd(), Interest::READ, "a")
            .unwrap();
        b.write_all(b"x").unwrap();
        // Not drained: reported on every poll, with no epoll_ctl in between.
        for _ in 0..3 {
            let events = poll(&mut poller);
            assert!(events.iter().any(|e| e.token == t && e.readable));
            assert_eq!(owners_woken(&mut regs, &events), ["a"]);
        }
        a.read_exact(&mut [0u8]).unwrap();
        assert!(poll(&mut poller).is_empty());
        assert_eq!(regs.deregister(Some(&registry), t), Some("a"));
        assert!(regs.is_empty());
    }

    #[test]
    fn interest_changes_and_deregistration() {
        let (mut poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let t = regs.register(&registry, fd, Interest::READ, "a").unwrap();
        assert!(poll(&mut poller).is_empty());
        // A socket with room in its buffer is writable.
        regs.reregister(&registry, t, Interest::WRITE).unwrap();
        assert_eq!(regs.token_of(fd), Some(t));
        let events = poll(&mut poller);
        assert!(events
            .iter()
            .any(|e| e.token == t && e.writable && !e.readable));
        assert_eq!(regs.deregister(Some(&registry), t), Some("a"));
        assert_eq!(regs.token_of(fd), None);
        assert!(poll(&mut poller).is_empty());
        assert_eq!(regs.deregister(Some(&registry), t), None);
    }

    #[test]
    fn one_owner_per_fd() {
        let (_poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        let (a, _b) = UnixStream::pair().unwrap();
        let t = regs
            .register(&registry, a.as_raw_fd(), Interest::READ, "watch")
            .unwrap();
        // A second owner (a transport, say) for the same fd is refused and handed back,
        // with the token of the owner in place.
        match regs.register(&registry, a.as_raw_fd(), Interest::WRITE, "transport") {
            Err((RegisterError::InUse(owner), back)) => {
                assert_eq!(owner, t);
                assert_eq!(back, "transport");
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        assert_eq!(regs.owner_mut(t), Some(&mut "watch"));
        // Once the owner goes the fd is free for another.
        regs.deregister(Some(&registry), t);
        regs.register(&registry, a.as_raw_fd(), Interest::WRITE, "transport")
            .unwrap();
    }

    #[test]
    fn a_refused_fd_gives_the_owner_back() {
        let (_poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        // A number no test opens (tests run in parallel: a number just closed may not stay so).
        let fd = i32::MAX - 1;
        match regs.register(&registry, fd, Interest::READ, "closed") {
            Err((RegisterError::Os(e), back)) => {
                assert_eq!(e.raw_os_error(), Some(libc::EBADF));
                assert_eq!(back, "closed");
            }
            other => panic!("expected EBADF, got {other:?}"),
        }
        assert!(regs.is_empty());
        assert_eq!(regs.token_of(fd), None);
    }

    /// The stale event: a token handed out for an fd that was then deregistered, closed
    /// and its number reused by a new registration (in the same slot) resolves to nothing.
    #[test]
    fn stale_token_for_a_reused_fd_number_is_dropped() {
        let (mut poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let old = regs.register(&registry, fd, Interest::READ, "old").unwrap();
        a_peer.write_all(b"x").unwrap();
        let events = poll(&mut poller);
        assert!(events.iter().any(|e| e.token == old));
        // Before the event is dispatched, its owner goes, the fd is closed and the
        // number taken by a new owner.
        regs.deregister(Some(&registry), old);
        let (b, _b_peer) = reuse_number(a);
        let new = regs
            .register(&registry, b.as_raw_fd(), Interest::READ, "new")
            .unwrap();
        assert_eq!(b.as_raw_fd(), fd);
        assert_ne!(new, old);
        // The old event is dropped; the new owner, whose fd is not ready, is not woken.
        assert_eq!(owners_woken(&mut regs, &events), Vec::<&str>::new());
        assert_eq!(
            owners_woken(&mut regs, &poll(&mut poller)),
            Vec::<&str>::new()
        );
        assert_eq!(regs.token_of(fd), Some(new));
    }

    /// The same, with the kernel delivering the stale event: the fd is closed behind the
    /// loop's back while a duplicate keeps its file (and so its epoll registration) alive,
    /// the number is reused and the new file watched. Readiness of the old file keeps
    /// coming under the old token and must not wake the new owner.
    #[test]
    fn kernel_event_for_a_closed_and_reused_fd_number_is_dropped() {
        let (mut poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let old = regs.register(&registry, fd, Interest::READ, "old").unwrap();
        let _dup = a.try_clone().unwrap();
        let (b, mut b_peer) = reuse_number(a);
        // The loop still believes `fd` is the old file: a new watch on the number reaches
        // the registration in place and re-registers it, under a new token.
        assert_eq!(regs.token_of(fd), Some(old));
        *regs.owner_mut(old).unwrap() = "new";
        regs.reregister(&registry, old, Interest::READ).unwrap();
        let new = regs.token_of(fd).unwrap();
        assert_ne!(new, old);
        assert_eq!(regs.owner_mut(old), None);
        a_peer.write_all(b"x").unwrap();
        let events = poll(&mut poller);
        assert!(
            events.iter().any(|e| e.token == old),
            "kernel reports the old file"
        );
        assert_eq!(owners_woken(&mut regs, &events), Vec::<&str>::new());
        // The new file is watched.
        b_peer.write_all(b"y").unwrap();
        let events = poll(&mut poller);
        assert_eq!(owners_woken(&mut regs, &events), ["new"]);
        assert_eq!(regs.deregister(Some(&registry), new), Some("new"));
        drop(b);
    }

    #[test]
    fn drain_deregisters_everything() {
        let (mut poller, registry, _waker) = Poller::new().unwrap();
        let mut regs = Registrations::default();
        let (a, _a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        regs.register(&registry, a.as_raw_fd(), Interest::WRITE, "a")
            .unwrap();
        regs.register(&registry, b.as_raw_fd(), Interest::WRITE, "b")
            .unwrap();
        let mut owners: Vec<&str> = regs.owners().copied().collect();
        owners.sort();
        assert_eq!(owners, ["a", "b"]);
        let mut drained = regs.drain(Some(&registry));
        drained.sort();
        assert_eq!(drained, ["a", "b"]);
        assert!(regs.is_empty());
        assert!(poll(&mut poller).is_empty());
    }
}
