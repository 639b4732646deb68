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
pub(crate) mod flow;
pub mod listener;
pub(crate) mod sockaddr;
pub mod stream;
pub mod tls;
pub(crate) mod transport;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

/// Whether a syscall error means "not now, wait for readiness" (asyncio's `except
/// (BlockingIOError, InterruptedError)`).
pub(crate) fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EINTR | libc::EINPROGRESS | libc::EALREADY)
    )
}

/// The callback asyncio would have run where a transport's job ran (its `Handle`'s).
#[derive(Clone, Copy)]
pub(crate) enum AsyncioCallback {
    /// `transport.<name>()`, e.g. `_read_ready`.
    Transport(&'static str),
    /// `protocol.connection_made(transport)`.
    ConnectionMade,
    /// `protocol.eof_received()`.
    EofReceived,
    /// None that a `Handle` could name here (a native step of the transport's own).
    Native,
}

/// Reports an error that escaped a transport's callback as asyncio's `Handle._run` does
/// for the callback asyncio schedules there: "Exception in callback ..." with the
/// exception and a `Handle` of that callback (`LoopCore::report_call_error`, as the loop
/// reports the callbacks it calls without a handle of their own). Where asyncio has none
/// ([`AsyncioCallback::Native`]), the message says so and the context names the
/// transport. Only on the error path: nothing of this is hot.
pub(crate) fn report_callback_error(
    lp: &Bound<'_, crate::event_loop::LoopCore>,
    callback: AsyncioCallback,
    transport: &Bound<'_, PyAny>,
    protocol: Option<Bound<'_, PyAny>>,
    err: PyErr,
) -> PyResult<()> {
    let py = lp.py();
    let resolved = match (callback, protocol) {
        (AsyncioCallback::Transport(name), _) => Some((
            transport.getattr(PyString::intern(py, name))?,
            PyTuple::empty(py),
        )),
        (AsyncioCallback::ConnectionMade, Some(p)) => Some((
            p.getattr(pyo3::intern!(py, "connection_made"))?,
            PyTuple::new(py, [transport])?,
        )),
        (AsyncioCallback::EofReceived, Some(p)) => Some((
            p.getattr(pyo3::intern!(py, "eof_received"))?,
            PyTuple::empty(py),
        )),
        _ => None,
    };
    match resolved {
        // As the loop reports any callback it calls with no `Handle` of its own.
        Some((cb, args)) => crate::event_loop::LoopCore::report_call_error(lp, err, &cb, &args),
        None => {
            let ctx = PyDict::new(py);
            ctx.set_item("message", "Exception in a transport callback")?;
            ctx.set_item("exception", crate::pyo::exc::exc_value(py, &err))?;
            ctx.set_item("transport", transport)?;
            lp.call_method1(pyo3::intern!(py, "call_exception_handler"), (ctx,))
                .map(drop)
        }
    }
}

/// asyncio's `max_size`: at most this many bytes per `recv()` of a transport.
pub(crate) const MAX_READ: usize = 256 * 1024;

/// Alignment of the read buffer: a page (at least a cache line is what matters). The
/// kernel's copy of received bytes into a buffer that is not 64-byte aligned runs at about
/// half speed on x86-64 (`rep movsb` with a misaligned destination): a 256 KiB buffer from
/// `malloc` starts 16 bytes into a page, and that doubled the server CPU of a 100 KiB echo.
const READ_BUF_ALIGN: usize = 4096;

/// A zeroed buffer of [`MAX_READ`] bytes starting at a [`READ_BUF_ALIGN`] boundary (the
/// storage is over-allocated by one alignment and used from its first aligned byte).
struct ReadBuf {
    storage: Vec<u8>,
    start: usize,
}

impl ReadBuf {
    fn new() -> Self {
        // Zeroed once (calloc: untouched pages cost nothing), so the slice handed out is
        // initialized memory and needs no `unsafe`.
        let storage = vec![0u8; MAX_READ + READ_BUF_ALIGN];
        let start = storage.as_ptr().align_offset(READ_BUF_ALIGN);
        debug_assert!(start < READ_BUF_ALIGN);
        ReadBuf { storage, start }
    }

    fn slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + MAX_READ]
    }
}

thread_local! {
    /// The buffer `recv()` fills before the bytes are copied into a `bytes` object of
    /// their exact size: one per thread, reused by every transport and `sock_recv` of the
    /// thread's loop (a fresh allocation of the requested size per read costs more than
    /// the copy, and a `bytes` of the full size shrunk afterwards more still).
    static READ_BUF: std::cell::RefCell<ReadBuf> = std::cell::RefCell::new(ReadBuf::new());
}

/// Runs `f` with the thread's read buffer: [`MAX_READ`] bytes, page-aligned, contents
/// unspecified (what an earlier read left). `f` must not call into Python code (which
/// could read again and need the buffer); if the buffer is in use anyway, `f` gets a
/// fresh one.
pub(crate) fn with_read_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => f(buf.slice()),
        Err(_) => f(ReadBuf::new().slice()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_is_page_aligned_even_when_nested() {
        with_read_buf(|outer| {
            assert_eq!(outer.len(), MAX_READ);
            assert_eq!(outer.as_ptr() as usize % READ_BUF_ALIGN, 0);
            outer[0] = 1;
            // In use: a fresh buffer, aligned as well.
            with_read_buf(|inner| {
                assert_eq!(inner.len(), MAX_READ);
                assert_eq!(inner.as_ptr() as usize % READ_BUF_ALIGN, 0);
                assert_ne!(inner.as_ptr(), outer.as_ptr());
            });
        });
    }
}
