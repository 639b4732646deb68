//! Closing: asyncio's `close`, `_force_close` (`abort()` and fatal errors), `_fatal_error`
//! and `_call_connection_lost`, and the warning of a transport collected unclosed.

use pyo3::exceptions::{PyConnectionError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{StreamCore, StreamEvent};
use crate::event_loop::LoopCore;
use crate::names::{logger, Names};

/// `transport.close()`: stop reading; once the queue is flushed, `connection_lost(None)`.
pub(super) fn close(slf: &Bound<'_, StreamCore>) {
    let lost_now = slf.get().st.with(|s| {
        if s.closing {
            return None;
        }
        s.closing = true;
        if s.reading {
            s.reading = false;
            s.read_gen = s.read_gen.wrapping_add(1);
        }
        if s.queue.is_empty() {
            s.conn_lost += 1;
            s.writing = false;
            Some(true)
        } else {
            Some(false)
        }
    });
    let Some(lost_now) = lost_now else {
        return;
    };
    StreamCore::sync_interest(slf);
    if lost_now {
        StreamCore::schedule(slf, StreamEvent::ConnectionLost(None));
    }
}

/// asyncio's `_force_close(exc)`: drop what is queued and schedule `connection_lost(exc)`.
pub(super) fn force_close(slf: &Bound<'_, StreamCore>, exc: Option<Py<PyAny>>) {
    let go = slf.get().st.with(|s| {
        if s.conn_lost > 0 {
            return false;
        }
        s.queue.clear();
        s.writing = false;
        s.closing = true;
        if s.reading {
            s.reading = false;
            s.read_gen = s.read_gen.wrapping_add(1);
        }
        s.conn_lost += 1;
        true
    });
    if go {
        StreamCore::sync_interest(slf);
        StreamCore::schedule(slf, StreamEvent::ConnectionLost(exc));
    } else {
        drop(exc);
    }
}

/// asyncio's `_fatal_error(exc, message)`: report it (an `OSError` only to the debug
/// log), then force the transport closed with it.
pub(super) fn fatal_error(slf: &Bound<'_, StreamCore>, err: PyErr, message: &str) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let exc = err.value(py).clone();
    if exc.is_instance_of::<PyOSError>() {
        if this.debug(py) {
            let kw = PyDict::new(py);
            kw.set_item("exc_info", &exc)?;
            logger(py)?.call_method("debug", ("%r: %s", this.transport(py), message), Some(&kw))?;
        }
    } else {
        let ctx = PyDict::new(py);
        ctx.set_item("message", message)?;
        ctx.set_item("exception", &exc)?;
        ctx.set_item("transport", this.transport(py))?;
        let proto = this
            .st
            .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)));
        ctx.set_item("protocol", proto)?;
        this.loop_(py)
            .call_method1("call_exception_handler", (ctx,))?;
    }
    force_close(slf, Some(exc.into_any().unbind()));
    Ok(())
}

/// asyncio's `_call_connection_lost(exc)` (scheduled, or called by a flush that ends a
/// close): `protocol.connection_lost(exc)`, then the socket is closed (its fd released at
/// once) and the server told.
pub(super) fn call_connection_lost(
    slf: &Bound<'_, StreamCore>,
    exc: Option<Py<PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let Some((proto, connected)) = this.st.with(|s| {
        // Ran already (a close raced with a flush).
        s.sock.as_ref()?;
        Some((
            s.protocol.as_ref().map(|p| p.clone_ref(py)),
            s.protocol_connected,
        ))
    }) else {
        return Ok(());
    };
    let res = match (proto, connected) {
        (Some(p), true) => p
            .bind(py)
            .call_method1(pyo3::intern!(py, "connection_lost"), (exc,))
            .map(drop),
        _ => Ok(()),
    };
    // finally:
    let closed = release(slf, &this.transport(py));
    let waiter = this
        .st
        .with(|s| s.empty_waiter.as_ref().map(|w| w.clone_ref(py)));
    if let Some(w) = waiter {
        // asyncio's socket transport fails a pending sendfile() wait.
        let e = PyConnectionError::new_err("Connection is closed by peer");
        w.bind(py).call_method1("set_exception", (e.value(py),))?;
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
                .call_method1(pyo3::intern!(py, "_detach"), (transport,))?;
        } else {
            server.bind(py).call_method0(pyo3::intern!(py, "_detach"))?;
        }
    }
    closed
}

/// The wrapper's `__del__`: asyncio's transport warns `unclosed transport` and closes the
/// socket when collected open.
pub(super) fn on_del(slf: &Bound<'_, StreamCore>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    if this.st.with(|s| s.sock.is_none()) {
        return Ok(());
    }
    let names = Names::get(py)?;
    let msg = format!("unclosed transport {}", transport.repr()?);
    let kw = PyDict::new(py);
    kw.set_item("source", transport)?;
    names
        .warn
        .bind(py)
        .call((msg, names.resource_warning.bind(py)), Some(&kw))?;
    // 3.11's __del__ does not detach from the server; 3.12+ does.
    if py.version_info() < (3, 12) {
        let server = this.st.with(|s| s.server.take());
        drop(server);
    }
    release(slf, transport)
}
