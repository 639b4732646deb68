//! Thin wrappers over libc calls (the only `unsafe` outside [`crate::pyo`]); the
//! resolver's are in `dns.rs`.

mod dns;
pub use dns::*;

use std::io;
#[cfg(test)]
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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

/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` in seconds: the calling thread's CPU time
/// (user + system), what the benchmark echo client reports as its own cost.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux
    // for the calling thread, so clock_gettime cannot fail here.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
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

/// The result of a socket syscall: `Ok(n)` or the errno it failed with.
fn ssize_result(n: libc::ssize_t) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, len, MSG_DONTWAIT)`: never blocks, whatever the socket's mode.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes during the call.
    ssize_result(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// `ioctl(fd, FIONREAD)`: how many bytes a read could take at once (a stream socket's
/// unread bytes, a pipe's buffered ones).
pub fn bytes_readable(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// [`recv`] into uninitialized storage (a `bytes` object being filled): returns how many
/// bytes, from the start, the kernel initialized.
pub fn recv_uninit(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes during the call; recv
    // only writes, so its being uninitialized is fine.
    ssize_result(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// [`read`] into uninitialized storage (a `bytes` object being filled): returns how many
/// bytes, from the start, the kernel initialized.
pub fn read_uninit(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes during the call; read
    // only writes, so its being uninitialized is fine.
    ssize_result(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)`: never blocks, and a closed peer
/// gives `EPIPE` rather than `SIGPIPE` (Python ignores SIGPIPE anyway).
///
/// Made with `syscall(2)` (the `sendto` syscall without an address, which is what libc's
/// `send` makes): libc's wrapper is a thread-cancellation point, which switches
/// asynchronous cancellation on and off around the syscall, about half the wrapper's
/// instructions, for a `pthread_cancel` that nothing in a Python process uses. The
/// result and `errno` are the wrapper's.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and readable for `buf.len()` bytes during the call; a null
    // address of length 0 is what `send` passes to `sendto`.
    ssize_result(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        ) as libc::ssize_t
    })
}

/// `epoll_wait(epfd, events, timeout_ms)` (the `epoll_pwait` syscall without a signal
/// mask, which is `epoll_wait`), into `events`' spare capacity, extending its length;
/// made with `syscall(2)` for the reason given at [`send`]. `EINTR` is returned as the
/// error, as libc's wrapper returns it.
pub fn epoll_wait(
    epfd: RawFd,
    events: &mut Vec<libc::epoll_event>,
    timeout_ms: libc::c_int,
) -> io::Result<usize> {
    events.clear();
    let max = events.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: the kernel writes at most `max` events into the vector's spare capacity,
    // which is valid for that many; a null signal mask leaves the mask alone (its size
    // argument is then not read).
    let n = ssize_result(unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait,
            epfd,
            events.as_mut_ptr(),
            max,
            timeout_ms,
            std::ptr::null::<libc::sigset_t>(),
            8usize,
        ) as libc::ssize_t
    })?;
    // SAFETY: epoll_pwait initialized the first `n` (<= `max`) events.
    unsafe { events.set_len(n) };
    Ok(n)
}

/// `sendmsg(fd, iov, MSG_DONTWAIT | MSG_NOSIGNAL)`: a vectored send that never blocks
/// and never raises SIGPIPE.
pub fn send_vectored(fd: RawFd, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only reads them.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs.len()` valid iovecs that outlive the call. Made with
    // `syscall(2)` for the reason given at [`send`].
    ssize_result(unsafe {
        libc::syscall(
            libc::SYS_sendmsg,
            fd,
            &msg as *const libc::msghdr,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        ) as libc::ssize_t
    })
}

/// `recvfrom(fd, buf, MSG_DONTWAIT)`: one datagram into `buf`, its length, and the
/// sender's address (`len == 0` when the sender has none, e.g. an unbound Unix datagram
/// socket).
pub fn recvfrom(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    let mut addr = SockAddr {
        // SAFETY: an all-zero sockaddr_storage is valid.
        storage: unsafe { std::mem::zeroed() },
        len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    };
    // SAFETY: `buf` is valid and writable for its length during the call; `addr.storage`
    // is writable for `addr.len` bytes, which recvfrom updates.
    let got = ssize_result(unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            &mut addr.storage as *mut _ as *mut libc::sockaddr,
            &mut addr.len,
        )
    })?;
    Ok((got, addr))
}

/// `sendto(fd, buf, MSG_DONTWAIT | MSG_NOSIGNAL, addr)`, or `send` with no address (a
/// connected socket).
pub fn sendto(fd: RawFd, buf: &[u8], addr: Option<&SockAddr>) -> io::Result<usize> {
    let (ptr, len) = match addr {
        Some(a) => (&a.storage as *const _ as *const libc::sockaddr, a.len),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `buf` is readable for its length; `ptr` is null or points at a sockaddr of
    // `len` bytes that outlives the call.
    ssize_result(unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            ptr,
            len,
        )
    })
}

/// `shutdown(fd, SHUT_WR)`.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: a plain syscall on an fd number; no memory is passed.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `read(fd, buf)`: as [`recv`], for pipes, FIFOs, character devices and PTYs, where
/// `recv` fails with `ENOTSOCK`. The fd must be in non-blocking mode.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes during the call.
    ssize_result(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(fd, buf)`: for pipes and character devices (`send` needs a socket). The fd must
/// be in non-blocking mode; a pipe whose reader is gone gives `EPIPE` (Python ignores
/// `SIGPIPE`).
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and readable for `buf.len()` bytes during the call.
    ssize_result(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// `writev(fd, iov)`: [`write`] of several buffers in one call.
pub fn write_vectored(fd: RawFd, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; writev only reads them.
    // SAFETY: `bufs` holds `bufs.len()` valid iovecs that outlive the call.
    ssize_result(unsafe {
        libc::writev(
            fd,
            bufs.as_ptr() as *const libc::iovec,
            bufs.len() as libc::c_int,
        )
    })
}

/// `fstat(fd).st_mode`.
pub fn file_mode(fd: RawFd) -> io::Result<u32> {
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat for the call.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode)
}

/// `os.set_blocking(fd, False)`: sets `O_NONBLOCK`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL only takes integers; a bad fd is an error.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, SOL_SOCKET, opt)` for an int option (`SO_DOMAIN`, `SO_TYPE`,
/// `SO_PROTOCOL`, ...).
pub fn sockopt_int(fd: RawFd, opt: libc::c_int) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a writable c_int and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// `setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, 1)`.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a readable c_int and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sendfile(out_fd, in_fd, &offset, count)`: sends up to `count` bytes of `in_fd` from
/// `offset` (the file position of `in_fd` is not used nor moved); the bytes sent.
pub fn sendfile(out_fd: RawFd, in_fd: RawFd, offset: i64, count: usize) -> io::Result<usize> {
    let mut off: libc::off_t = offset;
    // SAFETY: `off` is a valid, writable off_t for the call; bad fds are reported as errors.
    ssize_result(unsafe { libc::sendfile(out_fd, in_fd, &mut off, count) })
}

/// `lseek(fd, offset, SEEK_SET)`.
pub fn seek_set(fd: RawFd, offset: i64) -> io::Result<i64> {
    // SAFETY: lseek only takes integers; a bad fd is reported as an error.
    let rc = unsafe { libc::lseek(fd, offset, libc::SEEK_SET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// `fstat(fd).st_size`.
pub fn file_size(fd: RawFd) -> io::Result<i64> {
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat for the call.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_size)
}

/// A socket address as the kernel fills it in.
#[derive(Clone, Copy)]
pub struct SockAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl SockAddr {
    pub fn family(&self) -> libc::c_int {
        self.storage.ss_family as libc::c_int
    }

    /// The IPv4 address and port, if it is one.
    pub fn v4(&self) -> Option<std::net::SocketAddrV4> {
        if self.family() != libc::AF_INET {
            return None;
        }
        // SAFETY: the family says the storage holds a sockaddr_in, and sockaddr_storage is
        // large and aligned enough for it.
        let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
        Some(std::net::SocketAddrV4::new(
            u32::from_be(sin.sin_addr.s_addr).into(),
            u16::from_be(sin.sin_port),
        ))
    }

    /// The IPv6 address, port, flow info and scope id, if it is one.
    pub fn v6(&self) -> Option<std::net::SocketAddrV6> {
        if self.family() != libc::AF_INET6 {
            return None;
        }
        // SAFETY: as in `v4`, for a sockaddr_in6.
        let sin6 = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
        Some(std::net::SocketAddrV6::new(
            sin6.sin6_addr.s6_addr.into(),
            u16::from_be(sin6.sin6_port),
            // Network order in the sockaddr; the socket module gives it in host order.
            u32::from_be(sin6.sin6_flowinfo),
            sin6.sin6_scope_id,
        ))
    }

    /// Sets the flow info (given in host order, stored in network order, as the socket
    /// module does) and scope id of an IPv6 address; no effect on another family.
    pub fn set_v6_flow_scope(&mut self, flowinfo: u32, scope_id: u32) {
        if self.family() != libc::AF_INET6 {
            return;
        }
        // SAFETY: the family says the storage holds a sockaddr_in6, and sockaddr_storage is
        // large and aligned enough for it.
        let sin6 = unsafe { &mut *(&mut self.storage as *mut _ as *mut libc::sockaddr_in6) };
        sin6.sin6_flowinfo = flowinfo.to_be();
        sin6.sin6_scope_id = scope_id;
    }

    /// The address's bytes (`len` of them), for comparing two addresses.
    pub fn as_bytes(&self) -> &[u8] {
        let len = (self.len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: sockaddr_storage is plain data of at least `len` bytes, all initialized
        // (zeroed or written by the kernel).
        unsafe { std::slice::from_raw_parts(&self.storage as *const _ as *const u8, len) }
    }

    /// The raw bytes of `sa_data` (what the socket module returns for an unknown family).
    pub fn sa_data(&self) -> [u8; 14] {
        // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr.
        let sa = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr) };
        sa.sa_data.map(|c| c as u8)
    }

    /// The `sockaddr` of an IP socket address.
    pub fn from_ip(addr: &std::net::SocketAddr) -> SockAddr {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            std::net::SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                std::mem::size_of::<libc::sockaddr_in>()
            }
            std::net::SocketAddr::V6(a) => {
                // SAFETY: as above, for a sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                // Host order in the address, network order in the sockaddr (as the
                // socket module's getsockaddrarg stores it).
                sin6.sin6_flowinfo = a.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        SockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// `accept4(fd, ..., SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new connection's fd (owned by
/// the caller) and the peer's address.
pub fn accept(fd: RawFd) -> io::Result<(RawFd, SockAddr)> {
    let mut addr = SockAddr {
        // SAFETY: an all-zero sockaddr_storage is valid.
        storage: unsafe { std::mem::zeroed() },
        len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    };
    // SAFETY: `addr.storage` is writable for `addr.len` bytes, which accept4 updates.
    let conn = unsafe {
        libc::accept4(
            fd,
            &mut addr.storage as *mut _ as *mut libc::sockaddr,
            &mut addr.len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if conn < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((conn, addr))
}

/// [`accept`], the connection's fd owned.
pub fn accept_owned(fd: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    let (conn, addr) = accept(fd)?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(conn) }, addr))
}

/// `connect(fd, addr)`.
pub fn connect(fd: RawFd, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: `addr.storage` holds a sockaddr of `addr.len` bytes.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr.storage as *const _ as *const libc::sockaddr,
            addr.len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, SOL_SOCKET, SO_ERROR)`: the socket's pending error (0 if none).
pub fn socket_error(fd: RawFd) -> io::Result<i32> {
    sockopt_int(fd, libc::SO_ERROR)
}

/// `close(fd)`, for an fd the caller owns and gives up.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and nothing uses it afterwards.
    unsafe { libc::close(fd) };
}

/// `pidfd_open(pid, 0)` (Linux 5.3+): an fd, close-on-exec, that becomes readable when the
/// process `pid` exits. `ENOSYS` on older kernels, `EPERM` under some seccomp policies.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: the raw syscall takes two integers and returns a new fd or -1 with errno set;
    // it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open, so it is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `waitpid(pid, &status, WNOHANG)`: `Ok(None)` while `pid` has not exited, else its raw
/// wait status. `EINTR` is retried.
pub fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc > 0 {
            return Ok(Some(status));
        }
        if rc == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `os.waitstatus_to_exitcode`: the exit code, or minus the signal number.
pub fn waitstatus_to_exitcode(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        // Stopped or continued: not an exit (waitpid without WUNTRACED never says so).
        status
    }
}

/// `poll(fds, timeout_ms)` (-1: no timeout); `EINTR` is returned as an error.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, writable slice of pollfd of the given length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// `getpid()`.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::os::unix::net::UnixStream;

    #[test]
    fn sockaddr_round_trips() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(SockAddr::from_ip(&v4).v4().map(SocketAddr::V4), Some(v4));
        assert!(SockAddr::from_ip(&v4).v6().is_none());
        let v6 = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            443,
            7,
            2,
        ));
        assert_eq!(SockAddr::from_ip(&v6).v6().map(SocketAddr::V6), Some(v6));
        // The flow info sits in network order in the sockaddr, as the socket module puts it.
        let raw = SockAddr::from_ip(&v6);
        // SAFETY: `from_ip` of an IPv6 address fills in a sockaddr_in6.
        let sin6 = unsafe { &*(&raw.storage as *const _ as *const libc::sockaddr_in6) };
        assert_eq!(sin6.sin6_flowinfo, 7u32.to_be());
    }

    #[test]
    fn send_recv_never_block() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 8];
        let e = recv(a.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        assert_eq!(send(b.as_raw_fd(), b"hi").unwrap(), 2);
        assert_eq!(recv(a.as_raw_fd(), &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(send(b.as_raw_fd(), b"abc").unwrap(), 3);
        let mut v = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        assert_eq!(recv_uninit(a.as_raw_fd(), &mut v).unwrap(), 3);
        let e = recv_uninit(a.as_raw_fd(), &mut v).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
    }

    #[test]
    fn accept_connect_and_socket_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let e = accept(listener.as_raw_fd())
            .err()
            .expect("nothing to accept yet");
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        // SAFETY: a plain socket call; the fd is owned by `client` below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
        assert!(fd >= 0);
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let client = unsafe { OwnedFd::from_raw_fd(fd) };
        match connect(client.as_raw_fd(), &SockAddr::from_ip(&addr)) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINPROGRESS)),
        }
        let (conn, peer) = loop {
            match accept(listener.as_raw_fd()) {
                Ok(v) => break v,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            peer.v4().map(|a| *a.ip()),
            Some(std::net::Ipv4Addr::LOCALHOST)
        );
        assert_eq!(socket_error(client.as_raw_fd()).unwrap(), 0);
        close(conn);
    }
}
