//! Closing: asyncio's `close`, `_force_close` (`abort()` and fatal errors), `_fatal_error`
//! (shared with the datagram transport, see [`crate::net::transport`]), and what is a
//! stream's own: `_call_connection_lost` and the warning of a transport collected unclosed.

use pyo3::exceptions::PyConnectionError;
use pyo3::intern;
use pyo3::prelude::*;

use super::StreamCore;
use crate::event_loop::LoopCore;
use crate::names::Names;
use crate::net::transport;
pub(super) use crate::net::transport::{close, fatal_error, force_close};

/// asyncio's `_call_connection_lost(exc)` (scheduled, or called by a flush that ends a
/// close): `protocol.connection_lost(exc)`, then the socket is closed (its fd released at
/// once) and the server told.
pub(super) fn call_connection_lost(
    slf: &Bound<'_, StreamCore>,
    exc: Option<Py<PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let Some(res) = transport::protocol_connection_lost(slf, exc) else {
        return Ok(());
    };
    // finally:
    let closed = release(slf, &this.transport(py));
    let waiter = this
        .st
        .with(|s| s.empty_waiter.as_ref().map(|w| w.clone_ref(py)));
    if let Some(w) = waiter {
        // asyncio's socket transport fails a pending sendfile() wait.
        let e = PyConnectionError::new_err("Connection is closed by peer");
        w.bind(py)
            .call_method1(intern!(py, "set_exception"), (e.value(py),))?;
    }
    res.and(closed)
}

/// Forgets the fd's registration, closes the socket and detaches from the server
/// (asyncio's `finally:` of `_call_connection_lost`, and its `__del__`).
fn release(slf: &Bound<'_, StreamCore>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    LoopCore::release_fd(this.loop_(py), this.fd, slf.as_ptr());
    let (sock, proto, server) = this.st.with(|s| {
        (
            s.sock.take(),
            (s.protocol.take(), s.tls.take()),
            s.server.take(),
        )
    });
    drop(proto);
    let closed = match sock {
        Some(sock) => sock.close(py),
        None => Ok(()),
    };
    if let Some(server) = server {
        if Names::get(py)?.server_attach_takes_transport {
            server
                .bind(py)
                .call_method1(intern!(py, "_detach"), (transport,))?;
        } else {
            server.bind(py).call_method0(intern!(py, "_detach"))?;
        }
    }
    closed
}

/// The wrapper's `__del__`: asyncio's transport warns `unclosed transport` and closes the
/// socket when collected open.
pub(super) fn on_del(slf: &Bound<'_, StreamCore>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    if !transport::warn_unclosed(slf, transport)? {
        return Ok(());
    }
    // 3.11's __del__ does not detach from the server; 3.12+ does.
    if slf.py().version_info() < (3, 12) {
        let server = slf.get().st.with(|s| s.server.take());
        drop(server);
    }
    release(slf, transport)
}
