//! The fd of a `socket.socket`, read from the object instead of calling `sock.fileno()`.
//!
//! Every `sock_*` call needs its socket's fd, and the method call (attribute lookup, bound
//! method, vectorcall, int conversion) cost more than the rest of a `sock_recv` that
//! completes at once. `socket.socket` is a Python subclass of `_socket.socket`, whose C
//! struct (`PySocketSockObject`, Modules/socketmodule.h) starts with `PyObject_HEAD`
//! followed by `SOCKET_T sock_fd`, an `int` on POSIX, and `fileno()` returns that field.
//! The layout is checked once against `fileno()` on a real socket; if it ever differs the
//! fast path is off and `fileno()` is called as before.

use std::os::fd::RawFd;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The head of CPython's `PySocketSockObject`.
#[repr(C)]
struct SocketObjectHead {
    ob_base: ffi::PyObject,
    sock_fd: libc::c_int,
}

/// Whether [`SocketObjectHead`] matches this interpreter's sockets (checked once).
static LAYOUT_MATCHES: PyOnceLock<bool> = PyOnceLock::new();

/// Reads the fd field of `sock`, an instance of exactly `socket.socket`.
fn read_fd(sock: &Bound<'_, PyAny>) -> RawFd {
    // SAFETY: callers pass an instance of exactly `socket.socket`, whose object starts
    // with `PySocketSockObject` (a subclass of `_socket.socket` adding only `__slots__`
    // after the base struct); reading an int field of a live object has no side effects.
    unsafe { (*sock.as_ptr().cast::<SocketObjectHead>()).sock_fd }
}

fn layout_matches(py: Python<'_>, socket_cls: &Bound<'_, PyAny>) -> bool {
    *LAYOUT_MATCHES.get_or_init(py, || {
        (|| -> PyResult<bool> {
            let socket = py.import("socket")?;
            let probe = socket_cls.call1((
                socket.getattr(intern!(py, "AF_INET"))?,
                socket.getattr(intern!(py, "SOCK_STREAM"))?,
            ))?;
            let expected: RawFd = probe.call_method0(intern!(py, "fileno"))?.extract()?;
            let matches = probe.get_type().is(socket_cls) && read_fd(&probe) == expected;
            probe.call_method0(intern!(py, "close"))?;
            Ok(matches)
        })()
        .unwrap_or(false)
    })
}

/// `sock.fileno()`, read from the object when `sock` is exactly `socket_cls`
/// (`socket.socket`); `None` for any other object (call `fileno()` then).
#[inline]
pub fn socket_fd(sock: &Bound<'_, PyAny>, socket_cls: &Bound<'_, PyAny>) -> Option<RawFd> {
    if !sock.get_type().is(socket_cls) || !layout_matches(sock.py(), socket_cls) {
        return None;
    }
    Some(read_fd(sock))
}
