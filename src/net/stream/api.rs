//! The Python-visible methods of a stream transport's core (`ferroloop._SocketTransport`
//! calls them), delegating to `read`/`write`/`close`.

use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{PyTraverseError, PyVisit};

use super::{close, pipe, sock, write, Kind, StreamCore};
use crate::event_loop::{LoopCore, Owner, StreamOwner};
use crate::pyo::fastcall::{forward_to_replaced, install_over, VectorArgs, VectorMethod};

/// PyO3's `StreamCore.write`, which [`FastWrite`] replaces and hands the calls it does not
/// take.
static PYO3_WRITE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `StreamCore.write` (bound as the transport's `write`, once per `write()` call) without
/// PyO3's trampoline and generic argument extraction, which cost as much as the write's
/// own bookkeeping. It takes the common call, `write(data)` from a callback of the loop
/// running on this thread (inside `run_forever`'s trampoline: see
/// [`LoopCore::runs_on_this_thread`]), and runs the same Rust code as PyO3's method;
/// every other call (keywords, a wrong number of arguments, another thread, the loop not
/// running) goes to PyO3's method as before, with its argument errors.
struct FastWrite;
impl VectorMethod for FastWrite {
    type Recv = StreamCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, StreamCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        if args.nargs() == 1 && args.nkw() == 0 && slf.get().loop_(py).get().runs_on_this_thread() {
            write::write(slf, &args.arg(0))?;
            return Ok(py.None());
        }
        forward_to_replaced(&PYO3_WRITE, slf.as_any(), &args)
    }
}

/// Installs [`FastWrite`] as `StreamCore.write` (after the class was added to the module).
pub(crate) fn install_fast_methods(py: Python<'_>) -> PyResult<()> {
    install_over::<FastWrite>(py, c"write", c"write($self, data)\n--\n\n", &PYO3_WRITE)
}

#[pymethods]
impl StreamCore {
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        write::write(slf, data)
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        write::writelines(slf, list_of_data)
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        write::write_eof(slf)
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn close(slf: &Bound<'_, Self>) {
        close::close(slf)
    }

    fn abort(slf: &Bound<'_, Self>) {
        close::force_close(slf, None)
    }

    /// asyncio's `_force_close(exc)` (called by `SSLProtocol` on a fatal error).
    #[pyo3(signature = (exc=None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) {
        let exc = exc.filter(|e| !e.is_none(slf.py()));
        close::force_close(slf, exc)
    }

    fn is_closing(&self) -> bool {
        self.st.with(|s| s.closing)
    }

    /// asyncio's `_read_ready()`: what a readable event does (one read, if reading). The
    /// callback of the `asyncio.Handle` an error escaping a read is reported with.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let gen = slf.get().st.with(|s| s.read_gen);
        super::read::on_readable(slf, gen)
    }

    /// asyncio's `_write_ready()`: what a writable event does (flush what is queued).
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        write::on_writable(slf)
    }

    fn is_reading(&self) -> bool {
        self.st.with(|s| !s.closing && !s.paused)
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let changed = this.st.with(|s| {
            if s.closing || s.paused {
                return false;
            }
            s.paused = true;
            if s.reading {
                s.reading = false;
                s.read_gen = s.read_gen.wrapping_add(1);
            }
            true
        });
        if changed {
            Self::sync_interest(slf);
            this.debug_log(slf.py(), "pauses reading")?;
        }
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let changed = this.st.with(|s| {
            if s.closing || !s.paused {
                return false;
            }
            s.paused = false;
            s.reading = true;
            s.read_gen = s.read_gen.wrapping_add(1);
            true
        });
        if changed {
            Self::sync_interest(slf);
            this.debug_log(slf.py(), "resumes reading")?;
        }
        Ok(())
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        write::set_write_buffer_limits(slf, high, low)
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.st.with(|s| (s.low_water, s.high_water))
    }

    fn get_write_buffer_size(&self) -> usize {
        self.st.with(|s| s.queue.len())
    }

    #[pyo3(signature = (name, default=None))]
    fn get_extra_info<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let extra = self.st.with(|s| s.extra.as_ref().map(|e| e.clone_ref(py)));
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let Some(extra) = extra else {
            return Ok(default);
        };
        let extra = extra.into_bound(py);
        if let Some(v) = extra.get_item(name)? {
            return Ok(v);
        }
        if let Ok(key) = name.cast::<pyo3::types::PyString>() {
            let key = key.to_str()?;
            if sock::SOCKET_KEYS.contains(&key) {
                self.fill_socket_extra(py, &extra, key)?;
                return Ok(extra.get_item(name)?.unwrap_or(default));
            }
        }
        Ok(default)
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_protocol_inner(protocol)
    }

    fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    /// The socket object (`None` once closed): asyncio's `transport._sock`, used by
    /// `loop.sendfile()` and `start_tls()`.
    #[getter]
    fn _sock(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.socket_object(py)?.unwrap_or_else(|| py.None()))
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    /// The loop, until `connection_lost` ran (asyncio's `transport._loop`, read by
    /// `loop.sendfile()`'s fallback).
    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        if self.st.with(|s| s.sock.is_none()) {
            return py.None();
        }
        self.loop_.clone_ref(py).into_any()
    }

    /// Whether `pause_writing()` was called and `resume_writing()` not yet.
    #[getter]
    fn _protocol_paused(&self) -> bool {
        self.st.with(|s| s.protocol_paused)
    }

    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        write::make_empty_waiter(slf)
    }

    /// `loop.sendfile()` hands the fd to `sock_sendfile` (asyncio takes the transport out
    /// of `loop._transports` for that time): the registration is released...
    fn _sendfile_begin(slf: &Bound<'_, Self>) {
        let this = slf.get();
        LoopCore::release_fd(this.loop_(slf.py()), this.fd, slf.as_ptr());
    }

    /// ... and taken back afterwards, unless the transport was closed meanwhile.
    fn _sendfile_end(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.st.with(|s| s.sock.is_none()) {
            return Ok(());
        }
        LoopCore::adopt_fd(
            this.loop_(slf.py()),
            this.fd,
            Owner::Stream(StreamOwner::new(
                slf.clone().unbind(),
                this.transport(slf.py()).unbind(),
            )),
        )?;
        Self::sync_interest(slf);
        Ok(())
    }

    fn _reset_empty_waiter(&self) {
        let old = self.st.with(|s| s.empty_waiter.take());
        drop(old);
    }

    /// asyncio's transport `__repr__`, for the wrapper class named `cls_name`.
    fn _repr(&self, py: Python<'_>, cls_name: &str) -> PyResult<String> {
        if self.kind != Kind::Socket {
            return Ok(pipe::repr(self, py, cls_name));
        }
        let (closed, closing, reading, writing, size) = self.st.with(|s| {
            (
                s.sock.is_none(),
                s.closing,
                s.reading,
                s.writing,
                s.queue.len(),
            )
        });
        let mut info = vec![cls_name.to_owned()];
        if closed {
            info.push("closed".into());
        } else if closing {
            info.push("closing".into());
        }
        info.push(format!("fd={}", self.fd));
        if !closed && !self.loop_(py).get().is_closed_now() {
            info.push(format!("read={}", if reading { "polling" } else { "idle" }));
            info.push(format!(
                "write=<{}, bufsize={size}>",
                if writing { "polling" } else { "idle" }
            ));
        }
        Ok(format!("<{}>", info.join(" ")))
    }

    // ----- pipe transports (pipe.rs) ----------------------------------------------------

    /// A write pipe's `write(data)`.
    fn _pipe_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        pipe::write(slf, data)
    }

    /// A write pipe's `write_eof()` and `close()`.
    fn _pipe_write_eof(slf: &Bound<'_, Self>) {
        pipe::write_eof(slf)
    }

    /// A pipe transport's `_pipe`: its file object, `None` once closed.
    #[getter]
    fn _pipe(&self, py: Python<'_>) -> Py<PyAny> {
        pipe::pipe_object(self, py).unwrap_or_else(|| py.None())
    }

    /// `transport._pipe = None`: forget the pipe without closing it.
    fn _forget_pipe(slf: &Bound<'_, Self>) {
        pipe::forget_pipe(slf)
    }

    /// The wrapper's `__del__`: an unclosed transport warns and closes its socket.
    fn _del(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        close::on_del(slf, transport)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        self.st
            .try_with(|s| -> Result<(), PyTraverseError> {
                visit.call(&s.transport)?;
                visit.call(&s.protocol)?;
                visit.call(&s.tls)?;
                if let Some(sock) = &s.sock {
                    sock.visit(&visit)?;
                }
                visit.call(&s.server)?;
                visit.call(&s.extra)?;
                visit.call(&s.context)?;
                visit.call(&s.empty_waiter)?;
                Ok(())
            })
            .transpose()?;
        Ok(())
    }

    fn __clear__(&self) {
        let taken = self.st.try_with(|s| {
            (
                s.transport.take(),
                s.protocol.take(),
                s.tls.take(),
                s.server.take(),
                s.extra.take(),
                s.context.take(),
                s.empty_waiter.take(),
            )
        });
        drop(taken);
    }
}
