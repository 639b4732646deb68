//! The one `#[pymethods]` block: the Python-visible methods and getters of
//! `ferroloop._SSLProtocol` (asyncio's `SSLProtocol` names), delegating to the
//! helpers of the other files, plus GC support.

use std::collections::VecDeque;

use pyo3::exceptions::{
    PyAssertionError, PyConnectionResetError, PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyMemoryView, PyString};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::{is_exception, names, opt, AppState, SSLProtocolCore, SslMethods, State, TlsState};
use crate::net::MAX_READ;
use crate::pyo::call::vcall;
use crate::pyo::GilCell;

/// Checks asyncio's `ssl_*_timeout` argument: `None` gives `default`, else it must be a
/// positive number.
fn check_timeout<'py>(
    py: Python<'py>,
    value: Option<Bound<'py, PyAny>>,
    what: &str,
    default: &Bound<'py, PyString>,
) -> PyResult<Py<PyAny>> {
    match value.filter(|v| !v.is_none()) {
        None => Ok(names(py)?.constants.bind(py).getattr(default)?.unbind()),
        Some(v) => {
            if v.le(0)? {
                return Err(PyValueError::new_err(format!(
                    "{what} should be a positive number, got {}",
                    v.str()?
                )));
            }
            Ok(v.unbind())
        }
    }
}

#[pymethods]
impl SSLProtocolCore {
    #[new]
    #[pyo3(signature = (loop_, app_protocol, sslcontext, waiter, server_side=None,
                        server_hostname=None, call_connection_made=None,
                        ssl_handshake_timeout=None, ssl_shutdown_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        py: Python<'py>,
        loop_: Bound<'py, PyAny>,
        app_protocol: Bound<'py, PyAny>,
        sslcontext: Bound<'py, PyAny>,
        waiter: Bound<'py, PyAny>,
        server_side: Option<Bound<'py, PyAny>>,
        server_hostname: Option<Bound<'py, PyAny>>,
        call_connection_made: Option<Bound<'py, PyAny>>,
        ssl_handshake_timeout: Option<Bound<'py, PyAny>>,
        ssl_shutdown_timeout: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let n = names(py)?;
        let handshake_timeout = check_timeout(
            py,
            ssl_handshake_timeout,
            "ssl_handshake_timeout",
            intern!(py, "SSL_HANDSHAKE_TIMEOUT"),
        )?;
        let shutdown_timeout = check_timeout(
            py,
            ssl_shutdown_timeout,
            "ssl_shutdown_timeout",
            intern!(py, "SSL_SHUTDOWN_TIMEOUT"),
        )?;
        let server_side =
            server_side.unwrap_or_else(|| false.into_pyobject(py).unwrap().to_owned().into_any());
        let server_side_b = server_side.is_truthy()?;
        let server_hostname = server_hostname.filter(|h| !h.is_none());
        let sslcontext = if sslcontext.is_truthy()? {
            sslcontext
        } else {
            n.create_context.bind(py).call1((
                &server_side,
                server_hostname
                    .clone()
                    .unwrap_or_else(|| py.None().into_bound(py)),
            ))?
        };
        let hostname = match &server_hostname {
            Some(h) if h.is_truthy()? && !server_side_b => Some(h.clone()),
            _ => None,
        };
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "sslcontext"), &sslcontext)?;
        let incoming = n.memory_bio.bind(py).call0()?;
        let outgoing = n.memory_bio.bind(py).call0()?;
        let kw = PyDict::new(py);
        kw.set_item(intern!(py, "server_side"), server_side_b)?;
        kw.set_item(intern!(py, "server_hostname"), hostname.clone())?;
        let sslobj =
            sslcontext.call_method(intern!(py, "wrap_bio"), (&incoming, &outgoing), Some(&kw))?;
        let target = if sslobj.get_type().is(n.ssl_object.bind(py)) {
            sslobj.getattr(intern!(py, "_sslobj"))?
        } else {
            sslobj.clone()
        };
        let m = SslMethods {
            read: target.getattr(intern!(py, "read"))?.unbind(),
            write: target.getattr(intern!(py, "write"))?.unbind(),
            do_handshake: target.getattr(intern!(py, "do_handshake"))?.unbind(),
            pending: target.getattr(intern!(py, "pending"))?.unbind(),
            incoming_write: incoming.getattr(intern!(py, "write"))?.unbind(),
            outgoing_read: outgoing.getattr(intern!(py, "read"))?.unbind(),
        };
        let (incoming_high, incoming_low) = (256 * 1024, 64 * 1024);
        let (outgoing_high, outgoing_low) = (512 * 1024, 128 * 1024);
        let this = SSLProtocolCore {
            st: GilCell::new(TlsState {
                state: State::Unwrapped,
                app_state: if call_connection_made.map_or(Ok(true), |c| c.is_truthy())? {
                    AppState::Init
                } else {
                    AppState::ConMade
                },
                loop_: loop_.unbind(),
                app_protocol: None,
                app_is_buffer: false,
                app_transport: None,
                app_transport_created: false,
                transport: None,
                core: None,
                waiter: if waiter.is_none() {
                    None
                } else {
                    Some(waiter.unbind())
                },
                server_side: server_side_b,
                server_hostname: hostname.map(Bound::unbind),
                sslcontext: sslcontext.unbind(),
                extra: extra.unbind(),
                sslobj: sslobj.unbind(),
                incoming: incoming.unbind(),
                outgoing: outgoing.unbind(),
                m,
                ssl_buffer: None,
                write_backlog: VecDeque::new(),
                write_buffer_size: 0,
                handshake_timeout,
                shutdown_timeout,
                handshake_start_time: None,
                handshake_timeout_handle: None,
                shutdown_timeout_handle: None,
                conn_lost: 0,
                ssl_writing_paused: false,
                app_reading_paused: false,
                ssl_reading_paused: false,
                eof_received: false,
                app_writing_paused: false,
                incoming_high,
                incoming_low,
                outgoing_high,
                outgoing_low,
            }),
        };
        this.set_app_protocol_inner(&app_protocol)?;
        Ok(this)
    }

    #[classattr]
    fn max_size() -> usize {
        MAX_READ
    }

    fn _set_app_protocol(&self, app_protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_app_protocol_inner(app_protocol)
    }

    #[pyo3(signature = (exc=None))]
    fn _wakeup_waiter(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        self.wakeup_waiter(py, exc.filter(|e| !e.is_none()).as_ref())
    }

    fn _get_app_transport<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::get_app_transport_inner(slf)
    }

    fn connection_made(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let core = crate::net::stream::core_of(transport);
        let old = slf.get().st.with(|s| {
            (
                s.transport.replace(transport.clone().unbind()),
                std::mem::replace(&mut s.core, core),
            )
        });
        drop(old);
        let _ = py;
        Self::start_handshake(slf)
    }

    fn connection_lost(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (backlog, outgoing_read) = this.st.with(|s| {
            s.conn_lost += 1;
            (
                std::mem::take(&mut s.write_backlog),
                s.m.outgoing_read.clone_ref(py),
            )
        });
        drop(backlog);
        vcall(outgoing_read.bind(py), &[])?;
        let app_t = this
            .st
            .with(|s| s.app_transport.as_ref().map(|t| t.clone_ref(py)));
        if let Some(t) = app_t {
            t.bind(py).setattr(intern!(py, "_closed"), true)?;
        }
        let lost = this.st.with(|s| {
            if s.state != State::DoHandshake
                && matches!(s.app_state, AppState::ConMade | AppState::Eof)
            {
                s.app_state = AppState::ConLost;
                true
            } else {
                false
            }
        });
        if lost {
            let cb = this
                .app_protocol_obj(py)
                .getattr(intern!(py, "connection_lost"))?;
            this.loop_(py)
                .call_method1(intern!(py, "call_soon"), (cb, exc))?;
        }
        this.set_state(State::Unwrapped)?;
        let old = this.st.with(|s| {
            (
                s.transport.take(),
                s.core.take(),
                s.app_transport.take(),
                s.app_protocol.take(),
            )
        });
        drop(old);
        let exc = if exc.is_none() { None } else { Some(exc) };
        this.wakeup_waiter(py, exc)?;
        let h = this.st.with(|s| s.shutdown_timeout_handle.take());
        Self::cancel_handle(py, h)?;
        let h = this.st.with(|s| s.handshake_timeout_handle.take());
        Self::cancel_handle(py, h)
    }

    fn get_buffer<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyAny>> {
        let want = if n <= 0 || n > MAX_READ as i64 {
            MAX_READ
        } else {
            n as usize
        };
        let existing = self.st.with(|s| {
            s.ssl_buffer
                .as_ref()
                .map(|(b, v)| (b.clone_ref(py), v.clone_ref(py)))
        });
        if let Some((b, v)) = existing {
            if b.bind(py).len() >= want {
                return Ok(v.into_bound(py));
            }
        }
        let size = want.max(MAX_READ);
        let b = PyByteArray::new(py, &vec![0u8; size]);
        let v = PyMemoryView::from(b.as_any())?.into_any();
        let old = self
            .st
            .with(|s| s.ssl_buffer.replace((b.unbind(), v.clone().unbind())));
        drop(old);
        Ok(v)
    }

    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let view = slf
            .get()
            .st
            .with(|s| s.ssl_buffer.as_ref().map(|(_, v)| v.clone_ref(py)))
            .ok_or_else(|| PyRuntimeError::new_err("buffer_updated() before get_buffer()"))?;
        let part = view
            .bind(py)
            .get_item(pyo3::types::PySlice::new(py, 0, nbytes as isize, 1))?;
        Self::feed(slf, &part)
    }

    /// Not asyncio's (a `BufferedProtocol` has no `data_received`), for a transport that
    /// does not know buffered protocols.
    fn data_received(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::feed(slf, data)
    }

    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        let this = slf.get();
        this.st.with(|s| s.eof_received = true);
        let res: PyResult<Option<bool>> = (|| {
            if this.debug(py)? {
                Self::log_debug(py, ("%r received EOF", slf))?;
            }
            match this.state() {
                State::DoHandshake => {
                    let e = PyErr::from_type(py.get_type::<PyConnectionResetError>(), ());
                    Self::on_handshake_complete(slf, Some(e))?;
                }
                State::Wrapped => {
                    this.set_state(State::Flushing)?;
                    if this.st.with(|s| s.app_reading_paused) {
                        return Ok(Some(true));
                    }
                    Self::do_flush(slf)?;
                }
                State::Flushing => {
                    Self::do_write(slf)?;
                    this.set_state(State::Shutdown)?;
                    Self::do_shutdown(slf)?;
                }
                State::Shutdown => Self::do_shutdown(slf)?,
                State::Unwrapped => {}
            }
            Ok(None)
        })();
        match res {
            Err(e) if is_exception(py, &e) => {
                this.transport_obj(py).call_method0(intern!(py, "close"))?;
                Err(e)
            }
            other => other,
        }
    }

    #[pyo3(signature = (name, default=None))]
    fn _get_extra_info<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let extra = self.st.with(|s| s.extra.clone_ref(py)).into_bound(py);
        if let Some(v) = extra.get_item(name)? {
            return Ok(v);
        }
        match self
            .st
            .with(|s| s.transport.as_ref().map(|t| t.clone_ref(py)))
        {
            Some(t) => t
                .bind(py)
                .call_method1(intern!(py, "get_extra_info"), (name, default)),
            None => Ok(default),
        }
    }

    fn _set_state(&self, py: Python<'_>, new_state: &Bound<'_, PyAny>) -> PyResult<()> {
        let name: String = new_state.getattr(intern!(py, "name"))?.extract()?;
        let new = match name.as_str() {
            "UNWRAPPED" => State::Unwrapped,
            "DO_HANDSHAKE" => State::DoHandshake,
            "WRAPPED" => State::Wrapped,
            "FLUSHING" => State::Flushing,
            "SHUTDOWN" => State::Shutdown,
            _ => return Err(PyValueError::new_err("not an SSLProtocolState")),
        };
        self.set_state(new)
    }

    fn _start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_handshake(slf)
    }

    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.state() == State::DoHandshake {
            let t = this.st.with(|s| s.handshake_timeout.clone_ref(py));
            let msg = format!(
                "SSL handshake is taking longer than {} seconds: aborting the connection",
                t.bind(py).str()?
            );
            let exc = pyo3::exceptions::PyConnectionAbortedError::new_err(msg);
            let exc = exc.into_value(py).into_bound(py).into_any();
            Self::fatal_error(slf, &exc, "Fatal error on transport")?;
        }
        Ok(())
    }

    fn _do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_handshake(slf)
    }

    fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_shutdown(slf)
    }

    fn _check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if matches!(this.state(), State::Flushing | State::Shutdown) {
            let exc = PyTimeoutError::new_err("SSL shutdown timed out");
            this.transport_obj(py)
                .call_method1(intern!(py, "_force_close"), (exc.into_value(py),))?;
        }
        Ok(())
    }

    fn _do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_flush(slf)
    }

    fn _do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_shutdown(slf)
    }

    #[pyo3(signature = (exc=None))]
    fn _abort(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        Self::abort_inner(slf, exc.filter(|e| !e.is_none()))
    }

    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }

    /// The app transport's `write(data)`: asyncio's type check, then one piece of data.
    fn _app_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if super::write::has_app_data(data)? {
            Self::write_one(slf, data)?;
        }
        Ok(())
    }

    /// `_SSLProtocolTransport._test__append_write_backlog`'s work.
    fn _append_write_backlog(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = data.len()? as i64;
        self.st.with(|s| {
            s.write_backlog.push_back(data.clone().unbind());
            s.write_buffer_size += len;
        });
        Ok(())
    }

    fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_write(slf)
    }

    fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::process_outgoing(slf)
    }

    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    fn _call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::call_eof_received(slf)
    }

    fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing(slf)
    }

    fn _get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Self::get_write_buffer_size_inner(slf)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_write_buffer_limits(
        &self,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let limits = crate::net::flow::limits(high.as_ref(), low.as_ref(), 512)?;
        self.st.with(|s| {
            s.outgoing_high = limits.high;
            s.outgoing_low = limits.low;
        });
        Ok(())
    }

    fn _pause_reading(&self) {
        self.st.with(|s| s.app_reading_paused = true);
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let was = this
            .st
            .with(|s| std::mem::replace(&mut s.app_reading_paused, false));
        if was {
            let cb = slf.getattr(intern!(py, "_resume_reading_cb"))?;
            this.loop_(py)
                .call_method1(intern!(py, "call_soon"), (cb,))?;
        }
        Ok(())
    }

    /// The `resume()` callback `_resume_reading` schedules.
    fn _resume_reading_cb(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state() {
            State::Wrapped => Self::do_read(slf),
            State::Flushing => Self::do_flush(slf),
            State::Shutdown => Self::do_shutdown(slf),
            _ => Ok(()),
        }
    }

    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_read_buffer_limits(
        &self,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let limits = crate::net::flow::limits(high.as_ref(), low.as_ref(), 256)?;
        self.st.with(|s| {
            s.incoming_high = limits.high;
            s.incoming_low = limits.low;
        });
        Ok(())
    }

    fn _get_read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Self::get_read_buffer_size_inner(slf)
    }

    fn pause_writing(&self) -> PyResult<()> {
        self.st.with(|s| {
            if s.ssl_writing_paused {
                return Err(PyAssertionError::new_err(()));
            }
            s.ssl_writing_paused = true;
            Ok(())
        })
    }

    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().st.with(|s| {
            if !s.ssl_writing_paused {
                return Err(PyAssertionError::new_err(()));
            }
            s.ssl_writing_paused = false;
            Ok(())
        })?;
        Self::process_outgoing(slf)
    }

    #[pyo3(signature = (exc, message="Fatal error on transport"))]
    fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        Self::fatal_error(slf, exc, message)
    }

    // asyncio's attributes, read-only.

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.loop_.clone_ref(py))
    }
    #[getter]
    fn _app_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| opt(py, &s.app_protocol).unbind())
    }
    #[getter]
    fn _app_protocol_is_buffer(&self) -> bool {
        self.st.with(|s| s.app_is_buffer)
    }
    #[getter]
    fn _app_transport(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| opt(py, &s.app_transport).unbind())
    }
    #[getter]
    fn _app_transport_created(&self) -> bool {
        self.st.with(|s| s.app_transport_created)
    }
    #[getter]
    fn _transport(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| opt(py, &s.transport).unbind())
    }
    #[getter]
    fn _waiter(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| opt(py, &s.waiter).unbind())
    }
    #[getter]
    fn _server_side(&self) -> bool {
        self.st.with(|s| s.server_side)
    }
    #[getter]
    fn _server_hostname(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| opt(py, &s.server_hostname).unbind())
    }
    #[getter]
    fn _sslcontext(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.sslcontext.clone_ref(py))
    }
    #[getter]
    fn _extra(&self, py: Python<'_>) -> Py<PyDict> {
        self.st.with(|s| s.extra.clone_ref(py))
    }
    #[getter]
    fn _sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.sslobj.clone_ref(py))
    }
    #[getter]
    fn _incoming(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.incoming.clone_ref(py))
    }
    #[getter]
    fn _outgoing(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.outgoing.clone_ref(py))
    }
    #[getter]
    fn _ssl_handshake_timeout(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.handshake_timeout.clone_ref(py))
    }
    #[getter]
    fn _ssl_shutdown_timeout(&self, py: Python<'_>) -> Py<PyAny> {
        self.st.with(|s| s.shutdown_timeout.clone_ref(py))
    }
    #[getter]
    fn _handshake_timeout_handle(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| opt(py, &s.handshake_timeout_handle).unbind())
    }
    #[getter]
    fn _shutdown_timeout_handle(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| opt(py, &s.shutdown_timeout_handle).unbind())
    }
    #[getter]
    fn _state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let name = self.st.with(|s| s.state.name());
        names(py)?
            .state_enum
            .bind(py)
            .getattr(PyString::intern(py, name))
    }
    #[getter]
    fn _app_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let name = self.st.with(|s| s.app_state.name());
        names(py)?
            .app_state_enum
            .bind(py)
            .getattr(PyString::intern(py, name))
    }
    #[getter]
    fn _conn_lost(&self) -> u32 {
        self.st.with(|s| s.conn_lost)
    }
    #[getter]
    fn _eof_received(&self) -> bool {
        self.st.with(|s| s.eof_received)
    }
    #[getter]
    fn _ssl_writing_paused(&self) -> bool {
        self.st.with(|s| s.ssl_writing_paused)
    }
    #[getter]
    fn _ssl_reading_paused(&self) -> bool {
        self.st.with(|s| s.ssl_reading_paused)
    }
    #[getter]
    fn _app_reading_paused(&self) -> bool {
        self.st.with(|s| s.app_reading_paused)
    }
    #[getter]
    fn _app_writing_paused(&self) -> bool {
        self.st.with(|s| s.app_writing_paused)
    }
    #[getter]
    fn _write_buffer_size(&self) -> i64 {
        self.st.with(|s| s.write_buffer_size)
    }
    #[getter]
    fn _write_backlog<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items: Vec<Py<PyAny>> = self
            .st
            .with(|s| s.write_backlog.iter().map(|d| d.clone_ref(py)).collect());
        py.import("collections")?
            .getattr(intern!(py, "deque"))?
            .call1((items,))
    }
    #[getter]
    fn _incoming_high_water(&self) -> i64 {
        self.st.with(|s| s.incoming_high)
    }
    #[getter]
    fn _incoming_low_water(&self) -> i64 {
        self.st.with(|s| s.incoming_low)
    }
    #[getter]
    fn _outgoing_high_water(&self) -> i64 {
        self.st.with(|s| s.outgoing_high)
    }
    #[getter]
    fn _outgoing_low_water(&self) -> i64 {
        self.st.with(|s| s.outgoing_low)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.st
            .try_with(|s| -> Result<(), PyTraverseError> {
                visit.call(&s.loop_)?;
                visit.call(&s.app_protocol)?;
                visit.call(&s.app_transport)?;
                visit.call(&s.transport)?;
                visit.call(&s.core)?;
                visit.call(&s.waiter)?;
                visit.call(&s.server_hostname)?;
                visit.call(&s.sslcontext)?;
                visit.call(&s.extra)?;
                visit.call(&s.sslobj)?;
                visit.call(&s.incoming)?;
                visit.call(&s.outgoing)?;
                visit.call(&s.m.read)?;
                visit.call(&s.m.write)?;
                visit.call(&s.m.do_handshake)?;
                visit.call(&s.m.pending)?;
                visit.call(&s.m.incoming_write)?;
                visit.call(&s.m.outgoing_read)?;
                if let Some((b, v)) = &s.ssl_buffer {
                    visit.call(b)?;
                    visit.call(v)?;
                }
                for d in &s.write_backlog {
                    visit.call(d)?;
                }
                visit.call(&s.handshake_timeout)?;
                visit.call(&s.shutdown_timeout)?;
                visit.call(&s.handshake_timeout_handle)?;
                visit.call(&s.shutdown_timeout_handle)?;
                Ok(())
            })
            .transpose()?;
        Ok(())
    }

    fn __clear__(&self) {
        let taken = self.st.try_with(|s| {
            (
                s.app_protocol.take(),
                s.app_transport.take(),
                s.transport.take(),
                s.core.take(),
                s.waiter.take(),
                s.ssl_buffer.take(),
                std::mem::take(&mut s.write_backlog),
                s.handshake_timeout_handle.take(),
                s.shutdown_timeout_handle.take(),
            )
        });
        drop(taken);
    }
}
