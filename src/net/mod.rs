//! Networking: the stream transport core (TCP and Unix sockets now, pipes and TLS next),
//! the listener that accepts connections for a `Server`, and DNS (`getaddrinfo` /
//! `getnameinfo` off the GIL).
//!
//! Like `future` and `task`, this module reaches the loop through a narrow API
//! (`event_loop::io`'s owner registration and `event_loop::ready`'s jobs): a transport
//! owns its fd in the reactor (`Owner::Stream`), readiness becomes a ready-queue job
//! (`Job::Stream`), and the job runs here. Connection setup (`create_connection`,
//! `create_server`, happy eyeballs) is asyncio's own orchestration, bound to ferroloop's
//! loop in `python/ferroloop`: it calls the native pieces (`sock_connect`,
//! `_make_socket_transport`, `_start_serving`), which is where the time goes.

pub mod datagram;
pub mod dns;
pub mod listener;
pub(crate) mod sockaddr;
pub mod stream;
pub mod tls;

/// Whether a syscall error means "not now, wait for readiness" (asyncio's `except
/// (BlockingIOError, InterruptedError)`).
pub(crate) fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EINTR | libc::EINPROGRESS | libc::EALREADY)
    )
}

/// asyncio's `max_size`: at most this many bytes per `recv()` of a transport.
pub(crate) const MAX_READ: usize = 256 * 1024;

thread_local! {
    /// The buffer `recv()` fills before the bytes are copied into a `bytes` object of
    /// their exact size: one per thread, reused by every transport and `sock_recv` of the
    /// thread's loop (a fresh allocation of the requested size per read costs more than
    /// the copy, and a `bytes` of the full size shrunk afterwards more still).
    static READ_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(MAX_READ));
}

/// Runs `f` with the thread's read buffer, empty, of capacity [`MAX_READ`] at least.
/// `f` must not call into Python code (which could read again and need the buffer); if
/// the buffer is in use anyway, `f` gets a fresh one.
pub(crate) fn with_read_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    READ_BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf)
        }
        Err(_) => f(&mut Vec::with_capacity(MAX_READ)),
    })
}
