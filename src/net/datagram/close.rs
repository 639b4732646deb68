//! Closing: asyncio's `close`, `_force_close` (`abort()` and fatal errors), `_fatal_error`
//! and `_call_connection_lost`, which releases the fd and closes the socket.

use std::collections::VecDeque;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::DatagramCore;
use crate::event_loop::LoopCore;
use crate::names::logger;
use crate::net::stream::StreamEvent;

/// `transport.close()`: stop reading; once the queue is flushed, `connection_lost(None)`.
pub(super) fn close(slf: &Bound<'_, DatagramCore>) {
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
    DatagramCore::sync_interest(slf);
    if lost_now {
        DatagramCore::schedule(slf, StreamEvent::ConnectionLost(None));
    }
}

/// asyncio's `_force_close(exc)`: drop what is queued, schedule `connection_lost(exc)`.
/// (asyncio leaves `_buffer_size` as it was.)
pub(super) fn force_close(slf: &Bound<'_, DatagramCore>, exc: Option<Py<PyAny>>) {
    let (go, dropped) = slf.get().st.with(|s| {
        if s.conn_lost > 0 {
            return (false, VecDeque::new());
        }
        let dropped = std::mem::take(&mut s.queue);
        s.writing = false;
        s.closing = true;
        if s.reading {
            s.reading = false;
            s.read_gen = s.read_gen.wrapping_add(1);
        }
        s.conn_lost += 1;
        (true, dropped)
    });
    drop(dropped);
    if go {
        DatagramCore::sync_interest(slf);
        DatagramCore::schedule(slf, StreamEvent::ConnectionLost(exc));
    } else {
        drop(exc);
    }
}

/// asyncio's `_fatal_error(exc, message)`: report it (an `OSError` only to the debug
/// log), then force the transport closed with it.
pub(super) fn fatal_error(
    slf: &Bound<'_, DatagramCore>,
    err: PyErr,
    message: &str,
) -> PyResult<()> {
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
        ctx.set_item("protocol", this.protocol(py))?;
        this.loop_(py)
            .call_method1("call_exception_handler", (ctx,))?;
    }
    force_close(slf, Some(exc.into_any().unbind()));
    Ok(())
}

/// asyncio's `_call_connection_lost(exc)`: `protocol.connection_lost(exc)`, then the
/// socket is closed (its fd released at once).
pub(super) fn call_connection_lost(
    slf: &Bound<'_, DatagramCore>,
    exc: Option<Py<PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let Some((proto, connected)) = this.st.with(|s| {
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
    res.and(release(slf))
}

/// Forgets the fd's registration and closes the socket.
pub(super) fn release(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    LoopCore::release_fd(this.loop_(py), this.fd, slf.as_ptr());
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
        Some(sock) => sock.bind(py).call_method0("close").map(drop),
        None => Ok(()),
    }
}
