//! Closing: asyncio's `close`, `_force_close` (`abort()` and fatal errors) and
//! `_fatal_error` (shared with the stream transport, see [`crate::net::transport`]), and
//! `_call_connection_lost`, which releases the fd and closes the socket.

use pyo3::intern;
use pyo3::prelude::*;

use super::DatagramCore;
use crate::event_loop::LoopCore;
use crate::net::transport;
pub(super) use crate::net::transport::fatal_error;

/// asyncio's `_call_connection_lost(exc)`: `protocol.connection_lost(exc)`, then the
/// socket is closed (its fd released at once).
pub(super) fn call_connection_lost(
    slf: &Bound<'_, DatagramCore>,
    exc: Option<Py<PyAny>>,
) -> PyResult<()> {
    match transport::protocol_connection_lost(slf, exc) {
        Some(res) => res.and(release(slf)),
        None => Ok(()),
    }
}

/// Forgets the fd's registration and closes the socket.
pub(super) fn release(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    LoopCore::release_fd(this.loop_.bind(py), this.fd, slf.as_ptr());
    let (sock, proto, queue, peers) = this.st.with(|s| {
        (
            s.sock.take(),
            s.protocol.take(),
            std::mem::take(&mut s.queue),
            (s.peer.take(), s.sent_to.take()),
        )
    });
    drop((proto, queue, peers));
    match sock {
        Some(sock) => sock.bind(py).call_method0(intern!(py, "close")).map(drop),
        None => Ok(()),
    }
}
