//! Closing a transport core: `close()`, `_force_close()`, `_fatal_error()`, the
//! protocol's `connection_lost`, and the warning for a transport never closed.

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{StreamEvent, TransportCore};
use crate::names::{logger, Names};

/// `transport.close()`: stop reading; once the queue is flushed, `connection_lost(None)`.
pub(crate) fn close<C: TransportCore>(slf: &Bound<'_, C>) {
    let lost_now = slf.get().state().with(|s| {
        if s.closing {
            return None;
        }
        s.closing = true;
        s.stop_reading();
        if C::queue_is_empty(s) {
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
    C::sync_interest(slf);
    if lost_now {
        C::schedule(slf, StreamEvent::ConnectionLost(None));
    }
}

/// asyncio's `_force_close(exc)`: drop what is queued and schedule `connection_lost(exc)`.
/// (The datagram transport's `_buffer_size` stays as it was, as asyncio's does.)
pub(crate) fn force_close<C: TransportCore>(slf: &Bound<'_, C>, exc: Option<Py<PyAny>>) {
    let (go, dropped) = slf.get().state().with(|s| {
        if s.conn_lost > 0 {
            return (false, None);
        }
        let dropped = C::drop_queue(s);
        s.writing = false;
        s.closing = true;
        s.stop_reading();
        s.conn_lost += 1;
        (true, Some(dropped))
    });
    drop(dropped);
    if go {
        C::sync_interest(slf);
        C::schedule(slf, StreamEvent::ConnectionLost(exc));
    } else {
        drop(exc);
    }
}

/// asyncio's `_fatal_error(exc, message)`: report it (an `OSError` only to the debug
/// log), then force the transport closed with it.
pub(crate) fn fatal_error<C: TransportCore>(
    slf: &Bound<'_, C>,
    err: PyErr,
    message: &str,
) -> PyResult<()> {
    let quiet = err.is_instance_of::<PyOSError>(slf.py());
    report_fatal_error(slf, err, message, quiet)
}

/// `_fatal_error`, with the choice of what is only logged made by the caller (`quiet`:
/// to the debug log in debug mode; else to the exception handler), then `_force_close`.
pub(crate) fn report_fatal_error<C: TransportCore>(
    slf: &Bound<'_, C>,
    err: PyErr,
    message: &str,
    quiet: bool,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let exc = crate::pyo::exc::exc_value(py, &err);
    if quiet {
        if this.debug(py) {
            let kw = PyDict::new(py);
            kw.set_item("exc_info", &exc)?;
            logger(py)?.call_method(
                intern!(py, "debug"),
                ("%r: %s", this.transport(py), message),
                Some(&kw),
            )?;
        }
    } else {
        let ctx = PyDict::new(py);
        ctx.set_item("message", message)?;
        ctx.set_item("exception", &exc)?;
        ctx.set_item("transport", this.transport(py))?;
        ctx.set_item("protocol", this.protocol(py))?;
        this.event_loop(py)
            .call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
    }
    force_close(slf, Some(exc.into_any().unbind()));
    Ok(())
}

/// The first step of asyncio's `_call_connection_lost(exc)`:
/// `protocol.connection_lost(exc)` if the protocol was connected. `None` if it ran
/// already (a close raced with a flush); else what the call returned, for after the
/// caller's `finally:` part.
pub(crate) fn protocol_connection_lost<C: TransportCore>(
    slf: &Bound<'_, C>,
    exc: Option<Py<PyAny>>,
) -> Option<PyResult<()>> {
    let py = slf.py();
    let (proto, connected) = slf.get().state().with(|s| {
        if !C::is_open(s) {
            return None;
        }
        Some((
            s.protocol.as_ref().map(|p| p.clone_ref(py)),
            s.protocol_connected,
        ))
    })?;
    Some(match (proto, connected) {
        (Some(p), true) => p
            .bind(py)
            .call_method1(intern!(py, "connection_lost"), (exc,))
            .map(drop),
        _ => Ok(()),
    })
}

/// The first step of the wrapper's `__del__`: asyncio's transport warns `unclosed
/// transport` when collected open. Whether it was open (the caller then releases it).
pub(crate) fn warn_unclosed<C: TransportCore>(
    slf: &Bound<'_, C>,
    transport: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let py = slf.py();
    if !slf.get().state().with(|s| C::is_open(s)) {
        return Ok(false);
    }
    let names = Names::get(py)?;
    let msg = format!("unclosed transport {}", transport.repr()?);
    let kw = PyDict::new(py);
    kw.set_item("source", transport)?;
    names
        .warn
        .bind(py)
        .call((msg, names.resource_warning.bind(py)), Some(&kw))?;
    Ok(true)
}
