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

/// Whether a syscall error means "not now, wait for readiness" (asyncio's `except
/// (BlockingIOError, InterruptedError)`).
pub(crate) fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EINTR | libc::EINPROGRESS | libc::EALREADY)
    )
}
