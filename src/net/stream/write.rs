//! Writing: asyncio's `write`, `writelines`, `_write_ready`, `write_eof` and the flow
//! control of `_FlowControlMixin`, with the syscalls in Rust.
//!
//! `write()` sends at once when nothing is queued (as asyncio and uvloop do) and queues
//! what the kernel did not take; a writable event flushes the queue with one vectored
//! send.

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

use super::close::{call_connection_lost, fatal_error};
use super::{Kind, StreamCore, StreamState};
use crate::names::logger;
use crate::net::transport::{check_bytes_like, maybe_pause_protocol, maybe_resume_protocol};
use crate::net::would_block;
use crate::pyo::buffer::with_bytes;
use crate::pyo::errno::os_error;
use crate::sys;

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// What a write found before touching the socket.
enum Gate {
    /// Nothing to do (empty data, or the connection is lost).
    Skip { warn: bool },
    /// Send now: nothing is queued.
    SendNow,
    /// Queue behind what is queued.
    Queue,
}

/// Queues `b[start..]`: by reference to `obj` (the `bytes` object `b` is, if any) when
/// large, else a copy.
pub(super) fn queue_from(
    s: &mut StreamState,
    b: &[u8],
    obj: Option<&Bound<'_, PyBytes>>,
    start: usize,
) {
    match obj {
        Some(o) => s.queue.push_bytes(o, start),
        None => s.queue.push(&b[start..]),
    }
}

/// `transport.write(data)`.
pub(super) fn write(slf: &Bound<'_, StreamCore>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    check_bytes_like(data)?;
    let this = slf.get();
    let fd = this.fd;
    let gate = this.st.with(|s| {
        if s.eof {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if s.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        Ok(())
    });
    gate?;
    // The send (or the copy into the queue) happens while the bytes are held: no Python
    // code runs in between. A `bytes` object is read in place, other bytes-like objects
    // through the buffer protocol. `obj`: the `bytes` object `b` is, whose unsent rest is
    // queued by reference when large (see `WriteQueue`): no copy of a large write's tail.
    let attempt = |b: &[u8], obj: Option<&Bound<'_, PyBytes>>| {
        this.st.with(|s| {
            let gate = if b.is_empty() {
                Gate::Skip { warn: false }
            } else if s.conn_lost > 0 {
                let warn = s.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                s.conn_lost += 1;
                Gate::Skip { warn }
            } else if s.queue.is_empty() {
                Gate::SendNow
            } else {
                Gate::Queue
            };
            match gate {
                Gate::Skip { warn } => Ok(Some(warn)),
                Gate::Queue => {
                    queue_from(s, b, obj, 0);
                    Ok(None)
                }
                Gate::SendNow => match sys::send(fd, b) {
                    Ok(n) if n == b.len() => Ok(Some(false)),
                    Ok(n) => {
                        queue_from(s, b, obj, n);
                        s.writing = true;
                        Ok(None)
                    }
                    Err(e) if would_block(&e) => {
                        queue_from(s, b, obj, 0);
                        s.writing = true;
                        Ok(None)
                    }
                    Err(e) => Err(e),
                },
            }
        })
    };
    // Exactly `bytes` is kept by reference: a subclass could have a `__del__`, which must
    // not run when the queue drops it inside the state's lock.
    let outcome = match data.cast_exact::<PyBytes>() {
        Ok(bytes) => attempt(bytes.as_bytes(), Some(bytes)),
        Err(_) => match with_bytes(data, |b| attempt(b, None)) {
            Ok(outcome) => outcome,
            // A memoryview that is not C-contiguous (`memoryview(b)[::2]`): asyncio's
            // `sock.send(data)` raises the BufferError inside its try, a fatal error of
            // the connection, not of the call.
            Err(e) if e.is_instance_of::<PyBufferError>(slf.py()) => {
                return fatal_error(slf, e, "Fatal write error on socket transport");
            }
            Err(e) => return Err(e),
        },
    };
    match outcome {
        // Sent, or nothing to send.
        Ok(Some(warn)) => {
            if warn {
                let py = slf.py();
                logger(py)?
                    .call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
            }
            Ok(())
        }
        // Queued: poll for writing (a no-op when polled already), maybe pause the protocol.
        Ok(None) => {
            StreamCore::sync_interest(slf);
            maybe_pause_protocol(slf)
        }
        Err(e) => fatal_error(slf, os_error(e), "Fatal write error on socket transport"),
    }
}

/// `transport.writelines(list_of_data)`: on 3.12+ every buffer is queued and the queue
/// flushed with one vectored send, as asyncio's `sendmsg` path does; on 3.11, asyncio
/// joins them and writes once.
pub(super) fn writelines(slf: &Bound<'_, StreamCore>, list: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    if py.version_info() < (3, 12) {
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list,))?;
        return write(slf, &joined);
    }
    let this = slf.get();
    this.st.with(|s| {
        if s.eof {
            return Err(PyRuntimeError::new_err(
                "Cannot call writelines() after write_eof()",
            ));
        }
        if s.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(
                "unable to writelines; sendfile is in progress",
            ));
        }
        Ok(())
    })?;
    // asyncio takes memoryview(data) of each first: nothing is queued if one is not
    // bytes-like.
    let views: Vec<Bound<'_, PyAny>> = list
        .try_iter()?
        .map(|d| d.and_then(|d| PyMemoryView::from(&d).map(|m| m.into_any())))
        .collect::<PyResult<_>>()?;
    if views.is_empty() {
        return Ok(());
    }
    for v in &views {
        with_bytes(v, |b| this.st.with(|s| s.queue.push(b)))?;
    }
    let conn_lost = this.st.with(|s| s.conn_lost > 0);
    if !conn_lost {
        flush(slf)?;
    }
    let queued = this.st.with(|s| {
        let queued = !s.queue.is_empty() && s.conn_lost == 0;
        if queued {
            s.writing = true;
        }
        queued
    });
    if queued {
        StreamCore::sync_interest(slf);
    }
    Ok(())
}

/// The fd is writable: asyncio's `_write_ready`.
pub(super) fn on_writable(slf: &Bound<'_, StreamCore>) -> PyResult<()> {
    if slf.get().kind == Kind::WritePipe {
        return super::pipe::on_writable(slf);
    }
    let busy = slf
        .get()
        .st
        .with(|s| s.conn_lost == 0 && !s.queue.is_empty());
    if busy {
        flush(slf)?;
    }
    Ok(())
}

/// Sends what is queued (one vectored send), then does what asyncio's `_write_ready`
/// does after a send: resume the protocol, stop polling once empty, and finish a pending
/// close or `write_eof()`.
fn flush(slf: &Bound<'_, StreamCore>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let fd = this.fd;
    let sent = this.st.with(|s| {
        let res = sys::send_vectored(fd, &s.queue.slices(py));
        match res {
            Ok(n) => {
                s.queue.consume(n);
                Ok(true)
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => {
                s.queue.clear();
                s.writing = false;
                Err((e, s.empty_waiter.as_ref().map(|w| w.clone_ref(py))))
            }
        }
    });
    match sent {
        Ok(false) => Ok(()),
        Err((e, waiter)) => {
            StreamCore::sync_interest(slf);
            let err = os_error(e);
            let value = err.value(py).clone();
            fatal_error(slf, err, "Fatal write error on socket transport")?;
            if let Some(w) = waiter {
                w.bind(py)
                    .call_method1(intern!(py, "set_exception"), (value,))?;
            }
            Ok(())
        }
        Ok(true) => {
            maybe_resume_protocol(slf)?;
            let done = this.st.with(|s| {
                if !s.queue.is_empty() {
                    return None;
                }
                s.writing = false;
                Some((
                    s.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                    s.closing,
                    s.eof,
                ))
            });
            let Some((waiter, closing, eof)) = done else {
                return Ok(());
            };
            StreamCore::sync_interest(slf);
            if let Some(w) = waiter {
                w.bind(py)
                    .call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
            if closing {
                call_connection_lost(slf, None)
            } else if eof {
                slf.get().shutdown_write(slf.py())
            } else {
                Ok(())
            }
        }
    }
}

/// `transport.write_eof()`.
pub(super) fn write_eof(slf: &Bound<'_, StreamCore>) -> PyResult<()> {
    let now = slf.get().st.with(|s| {
        if s.closing || s.eof {
            return false;
        }
        s.eof = true;
        s.queue.is_empty()
    });
    if now {
        slf.get().shutdown_write(slf.py())?;
    }
    Ok(())
}

/// `transport._make_empty_waiter()` (for `loop.sendfile()`).
pub(super) fn make_empty_waiter(slf: &Bound<'_, StreamCore>) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let this = slf.get();
    if this.st.with(|s| s.empty_waiter.is_some()) {
        return Err(PyRuntimeError::new_err("Empty waiter is already set"));
    }
    let fut = this.loop_(py).call_method0(intern!(py, "create_future"))?;
    let empty = this.st.with(|s| {
        s.empty_waiter = Some(fut.clone().unbind());
        s.queue.is_empty()
    });
    if empty {
        fut.call_method1(intern!(py, "set_result"), (py.None(),))?;
    }
    Ok(fut.unbind())
}
