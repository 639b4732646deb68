//! TLS: a native port of asyncio's `sslproto.SSLProtocol` (the MemoryBIO design of
//! asyncio 3.11+ and uvloop): an `ssl.SSLObject` over two `ssl.MemoryBIO`s, driven by the
//! transport below (a native stream transport, or any transport) and serving the app
//! protocol through asyncio's `_SSLProtocolTransport` (a subclass in `python/ferroloop`).
//!
//! The state machine is asyncio's, method for method (UNWRAPPED → DO_HANDSHAKE → WRAPPED →
//! FLUSHING → SHUTDOWN, and the app protocol's INIT → CON_MADE → EOF → CON_LOST), with the
//! same exceptions, log messages and exception-handler contexts, per Python version
//! (3.11's `_abort()` calls `transport.abort()`, 3.13's `_abort(exc)` calls
//! `transport._force_close(exc)`).
//!
//! What differs is the cost of a record: on a native transport the received bytes come
//! straight from the stream core (no `get_buffer` / `buffer_updated` calls) and the
//! encrypted output goes straight into its write path; when the SSL object is exactly
//! `ssl.SSLObject`, its C-level `_sslobj` (`_ssl._SSLSocket`) methods are called, cached
//! as bound methods, skipping the Python-level wrapper frames (as uvloop does); decrypted
//! records are read into one per-thread buffer rather than a fresh 256 KiB `bytes` per
//! read, and the read loop stops when the BIO and the SSL object have nothing left
//! instead of provoking an `SSLWantReadError` to find out.
//!
//! The Python-visible class is `ferroloop._SSLProtocol`, a subclass of this one and of
//! `asyncio.BufferedProtocol`.

use std::collections::VecDeque;

use pyo3::exceptions::{
    PyAssertionError, PyConnectionResetError, PyException, PyKeyboardInterrupt, PyOSError,
    PyRuntimeError, PySystemExit, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyTuple, PyType};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::net::stream::StreamCore;
use crate::net::MAX_READ;
use crate::pyo::call::vcall;
use crate::pyo::GilCell;

/// asyncio's `SSLProtocolState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Unwrapped,
    DoHandshake,
    Wrapped,
    Flushing,
    Shutdown,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Unwrapped => "UNWRAPPED",
            State::DoHandshake => "DO_HANDSHAKE",
            State::Wrapped => "WRAPPED",
            State::Flushing => "FLUSHING",
            State::Shutdown => "SHUTDOWN",
        }
    }
}

/// asyncio's `AppProtocolState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AppState {
    Init,
    ConMade,
    Eof,
    ConLost,
}

impl AppState {
    fn name(self) -> &'static str {
        match self {
            AppState::Init => "STATE_INIT",
            AppState::ConMade => "STATE_CON_MADE",
            AppState::Eof => "STATE_EOF",
            AppState::ConLost => "STATE_CON_LOST",
        }
    }
}

/// The Python objects the protocol uses, looked up once.
struct SslNames {
    want_read: Py<PyAny>,
    syscall_error: Py<PyAny>,
    ssl_error: Py<PyAny>,
    cert_error: Py<PyAny>,
    ssl_object: Py<PyAny>,
    memory_bio: Py<PyAny>,
    cancelled_error: Py<PyAny>,
    create_context: Py<PyAny>,
    state_enum: Py<PyAny>,
    app_state_enum: Py<PyAny>,
    logger: Py<PyAny>,
    /// `asyncio.constants` (its `SSL_*_TIMEOUT` read at each use, as asyncio does).
    constants: Py<PyAny>,
    /// asyncio 3.13's `_abort(exc)` (`transport._force_close(exc)`); 3.11's is
    /// `_abort()` (`transport.abort()`).
    abort_takes_exc: bool,
}

static SSL_NAMES: PyOnceLock<SslNames> = PyOnceLock::new();

/// `ferroloop._SSLTransport`, registered by the Python package at import.
static APP_TRANSPORT_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn names(py: Python<'_>) -> PyResult<&'static SslNames> {
    SSL_NAMES.get_or_try_init(py, || {
        let ssl = py.import("ssl")?;
        let sslproto = py.import("asyncio.sslproto")?;
        let exceptions = py.import("asyncio.exceptions")?;
        let get = |m: &Bound<'_, PyModule>, n: &str| m.getattr(n).map(Bound::unbind);
        Ok::<_, PyErr>(SslNames {
            want_read: get(&ssl, "SSLWantReadError")?,
            syscall_error: get(&ssl, "SSLSyscallError")?,
            ssl_error: get(&ssl, "SSLError")?,
            cert_error: get(&ssl, "CertificateError")?,
            ssl_object: get(&ssl, "SSLObject")?,
            memory_bio: get(&ssl, "MemoryBIO")?,
            cancelled_error: get(&exceptions, "CancelledError")?,
            create_context: get(&sslproto, "_create_transport_context")?,
            state_enum: get(&sslproto, "SSLProtocolState")?,
            app_state_enum: get(&sslproto, "AppProtocolState")?,
            logger: py.import("asyncio.log")?.getattr("logger")?.unbind(),
            constants: py.import("asyncio.constants")?.into_any().unbind(),
            abort_takes_exc: py.version_info() >= (3, 13),
        })
    })
}

/// `ferroloop._SSLProtocol`, registered by the Python package at import.
static PROTOCOL_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Registers the protocol class (`ferroloop._SSLProtocol`) and the app transport class
/// (`ferroloop._SSLTransport`).
#[pyfunction]
pub fn _register_ssl_classes(
    py: Python<'_>,
    protocol_cls: Bound<'_, PyType>,
    transport_cls: Bound<'_, PyType>,
) -> PyResult<()> {
    let _ = PROTOCOL_CLASS.set(py, protocol_cls.unbind());
    let _ = APP_TRANSPORT_CLASS.set(py, transport_cls.unbind());
    Ok(())
}

/// `ferroloop._SSLProtocol` (what `loop._make_ssl_transport()` makes).
pub(crate) fn protocol_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    PROTOCOL_CLASS
        .get(py)
        .map(|c| c.bind(py))
        .ok_or_else(|| PyRuntimeError::new_err("ferroloop's SSL protocol class is not registered"))
}

thread_local! {
    /// The buffer decrypted records are read into (`SSLObject.read(n, buffer)`) before
    /// they are copied into a `bytes` of their size: one per thread.
    static READ_BUF: std::cell::RefCell<Option<Py<PyByteArray>>> =
        const { std::cell::RefCell::new(None) };
}

static MAX_READ_INT: PyOnceLock<Py<PyInt>> = PyOnceLock::new();

/// `MAX_READ` as a Python int (not a cached small int: made once).
fn max_read_int(py: Python<'_>) -> &Bound<'_, PyInt> {
    MAX_READ_INT
        .get_or_init(py, || PyInt::new(py, MAX_READ).unbind())
        .bind(py)
}

fn read_buf(py: Python<'_>) -> Py<PyByteArray> {
    READ_BUF.with(|b| {
        b.borrow_mut()
            .get_or_insert_with(|| PyByteArray::new(py, &vec![0u8; MAX_READ]).unbind())
            .clone_ref(py)
    })
}

/// The SSL object's methods of the hot path, as bound methods: the C-level
/// `_ssl._SSLSocket`'s when the object is exactly `ssl.SSLObject` (whose methods only
/// forward to them), else the object's own.
struct SslMethods {
    read: Py<PyAny>,
    write: Py<PyAny>,
    do_handshake: Py<PyAny>,
    pending: Py<PyAny>,
    incoming_write: Py<PyAny>,
    outgoing_read: Py<PyAny>,
}

struct TlsState {
    state: State,
    app_state: AppState,
    loop_: Py<PyAny>,
    app_protocol: Option<Py<PyAny>>,
    app_is_buffer: bool,
    app_transport: Option<Py<PyAny>>,
    app_transport_created: bool,
    /// The transport below (asyncio's `_transport`).
    transport: Option<Py<PyAny>>,
    /// Its native core, when it is a ferroloop stream transport.
    core: Option<Py<StreamCore>>,
    waiter: Option<Py<PyAny>>,
    server_side: bool,
    server_hostname: Option<Py<PyAny>>,
    sslcontext: Py<PyAny>,
    extra: Py<PyDict>,
    sslobj: Py<PyAny>,
    incoming: Py<PyAny>,
    outgoing: Py<PyAny>,
    m: SslMethods,
    /// `get_buffer()`'s buffer and its view (asyncio's `_ssl_buffer`), made when first
    /// asked for: a native transport never asks.
    ssl_buffer: Option<(Py<PyByteArray>, Py<PyAny>)>,
    write_backlog: VecDeque<Py<PyAny>>,
    write_buffer_size: i64,
    handshake_timeout: Py<PyAny>,
    shutdown_timeout: Py<PyAny>,
    handshake_start_time: Option<f64>,
    handshake_timeout_handle: Option<Py<PyAny>>,
    shutdown_timeout_handle: Option<Py<PyAny>>,
    conn_lost: u32,
    ssl_writing_paused: bool,
    app_reading_paused: bool,
    ssl_reading_paused: bool,
    eof_received: bool,
    app_writing_paused: bool,
    incoming_high: i64,
    incoming_low: i64,
    outgoing_high: i64,
    outgoing_low: i64,
}

/// The native part of `ferroloop._SSLProtocol`. See the module docs.
#[pyclass(module = "ferroloop._ferroloop", subclass, weakref, frozen)]
pub struct SSLProtocolCore {
    st: GilCell<TlsState>,
}

/// asyncio's `add_flowcontrol_defaults(high, low, kb)`.
fn flowcontrol_defaults(high: Option<i64>, low: Option<i64>, kb: i64) -> PyResult<(i64, i64)> {
    let hi = match (high, low) {
        (Some(h), _) => h,
        (None, None) => kb * 1024,
        (None, Some(l)) => 4 * l,
    };
    let lo = low.unwrap_or(hi / 4);
    if !(hi >= lo && lo >= 0) {
        return Err(PyValueError::new_err(format!(
            "high ({hi}) must be >= low ({lo}) must be >= 0"
        )));
    }
    Ok((hi, lo))
}

fn is_exc(py: Python<'_>, e: &PyErr, ty: &Py<PyAny>) -> bool {
    e.value(py).is_instance(ty.bind(py)).unwrap_or(false)
}

/// `SSLAgainErrors`: `(ssl.SSLWantReadError, ssl.SSLSyscallError)`.
fn is_again(py: Python<'_>, e: &PyErr, n: &SslNames) -> bool {
    is_exc(py, e, &n.want_read) || is_exc(py, e, &n.syscall_error)
}

fn is_exception(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyException>(py)
}

fn opt<'py>(py: Python<'py>, o: &Option<Py<PyAny>>) -> Bound<'py, PyAny> {
    match o {
        Some(o) => o.bind(py).clone(),
        None => py.None().into_bound(py),
    }
}

impl SSLProtocolCore {
    fn loop_<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.st.with(|s| s.loop_.bind(py).clone())
    }

    fn debug(&self, py: Python<'_>) -> PyResult<bool> {
        crate::event_loop::debug_of(&self.loop_(py))
    }

    fn transport_obj<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.st.with(|s| opt(py, &s.transport))
    }

    fn app_protocol_obj<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.st.with(|s| opt(py, &s.app_protocol))
    }

    fn state(&self) -> State {
        self.st.with(|s| s.state)
    }

    fn set_state(&self, new: State) -> PyResult<()> {
        self.st.with(|s| {
            let allowed = matches!(
                (s.state, new),
                (_, State::Unwrapped)
                    | (State::Unwrapped, State::DoHandshake)
                    | (State::DoHandshake, State::Wrapped)
                    | (State::Wrapped, State::Flushing)
                    | (State::Flushing, State::Shutdown)
            );
            if allowed {
                s.state = new;
                Ok(())
            } else {
                Err(PyRuntimeError::new_err(format!(
                    "cannot switch state from SSLProtocolState.{} to SSLProtocolState.{}",
                    s.state.name(),
                    new.name()
                )))
            }
        })
    }

    fn set_app_protocol_inner(&self, app_protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = app_protocol.py();
        let is_buffer = app_protocol.hasattr(intern!(py, "get_buffer"))?
            && app_protocol
                .is_instance(crate::names::Names::get(py)?.buffered_protocol.bind(py))?;
        let old = self.st.with(|s| {
            s.app_is_buffer = is_buffer;
            s.app_protocol.replace(app_protocol.clone().unbind())
        });
        drop(old);
        Ok(())
    }

    fn wakeup_waiter(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(waiter) = self.st.with(|s| s.waiter.take()) else {
            return Ok(());
        };
        let waiter = waiter.into_bound(py);
        if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            match exc {
                Some(e) => waiter.call_method1(intern!(py, "set_exception"), (e,))?,
                None => waiter.call_method1(intern!(py, "set_result"), (py.None(),))?,
            };
        }
        Ok(())
    }

    fn get_app_transport_inner<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (existing, created) = this.st.with(|s| {
            (
                s.app_transport.as_ref().map(|t| t.clone_ref(py)),
                s.app_transport_created,
            )
        });
        if let Some(t) = existing {
            return Ok(t.into_bound(py));
        }
        if created {
            return Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            ));
        }
        let cls = APP_TRANSPORT_CLASS.get(py).ok_or_else(|| {
            PyRuntimeError::new_err("ferroloop's SSL transport class is not registered")
        })?;
        let t = cls.bind(py).call1((this.loop_(py), slf))?;
        this.st.with(|s| {
            s.app_transport = Some(t.clone().unbind());
            s.app_transport_created = true;
        });
        Ok(t)
    }

    fn log_debug<'py>(py: Python<'py>, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<()> {
        names(py)?
            .logger
            .bind(py)
            .call_method1(intern!(py, "debug"), args)
            .map(drop)
    }

    // Handshake flow

    fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lp = this.loop_(py);
        let start = if this.debug(py)? {
            Self::log_debug(py, ("%r starts SSL handshake", slf))?;
            Some(lp.call_method0(intern!(py, "time"))?.extract::<f64>()?)
        } else {
            None
        };
        this.st.with(|s| s.handshake_start_time = start);
        this.set_state(State::DoHandshake)?;
        let timeout = this.st.with(|s| s.handshake_timeout.clone_ref(py));
        let cb = slf.getattr(intern!(py, "_check_handshake_timeout"))?;
        let handle = lp.call_method1(intern!(py, "call_later"), (timeout, cb))?;
        let old = this
            .st
            .with(|s| s.handshake_timeout_handle.replace(handle.unbind()));
        drop(old);
        Self::do_handshake(slf)
    }

    fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let n = names(py)?;
        let f = slf.get().st.with(|s| s.m.do_handshake.clone_ref(py));
        match vcall(f.bind(py), &[]) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(e) if is_again(py, &e, n) => Self::process_outgoing(slf),
            Err(e) if is_exc(py, &e, &n.ssl_error) => Self::on_handshake_complete(slf, Some(e)),
            Err(e) => Err(e),
        }
    }

    fn cancel_handle(py: Python<'_>, h: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(h) = h {
            h.bind(py).call_method0(intern!(py, "cancel"))?;
        }
        Ok(())
    }

    fn on_handshake_complete(slf: &Bound<'_, Self>, handshake_exc: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let h = this.st.with(|s| s.handshake_timeout_handle.take());
        Self::cancel_handle(py, h)?;
        let sslobj = this.st.with(|s| s.sslobj.clone_ref(py)).into_bound(py);
        let res = match handshake_exc {
            Some(e) => Err(e),
            None => this
                .set_state(State::Wrapped)
                .and_then(|()| sslobj.call_method0(intern!(py, "getpeercert"))),
        };
        let peercert = match res {
            Ok(p) => p,
            Err(e) if is_exception(py, &e) => {
                this.set_state(State::Unwrapped)?;
                let exc = e.into_value(py).into_bound(py).into_any();
                let msg = if exc.is_instance(names(py)?.cert_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                Self::fatal_error(slf, &exc, msg)?;
                return this.wakeup_waiter(py, Some(&exc));
            }
            Err(e) => return Err(e),
        };
        if this.debug(py)? {
            let start = this.st.with(|s| s.handshake_start_time).unwrap_or(0.0);
            let now: f64 = this
                .loop_(py)
                .call_method0(intern!(py, "time"))?
                .extract()?;
            Self::log_debug(
                py,
                ("%r: SSL handshake took %.1f ms", slf, (now - start) * 1e3),
            )?;
        }
        let extra = this.st.with(|s| s.extra.clone_ref(py)).into_bound(py);
        extra.set_item(intern!(py, "peercert"), peercert)?;
        extra.set_item(
            intern!(py, "cipher"),
            sslobj.call_method0(intern!(py, "cipher"))?,
        )?;
        extra.set_item(
            intern!(py, "compression"),
            sslobj.call_method0(intern!(py, "compression"))?,
        )?;
        extra.set_item(intern!(py, "ssl_object"), &sslobj)?;
        let made = this.st.with(|s| {
            if s.app_state == AppState::Init {
                s.app_state = AppState::ConMade;
                true
            } else {
                false
            }
        });
        if made {
            let app = this.app_protocol_obj(py);
            let t = Self::get_app_transport_inner(slf)?;
            app.call_method1(intern!(py, "connection_made"), (t,))?;
        }
        this.wakeup_waiter(py, None)?;
        Self::do_read(slf)
    }

    // Shutdown flow

    fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let state = this.state();
        if matches!(state, State::Flushing | State::Shutdown | State::Unwrapped) {
            return Ok(());
        }
        let app_t = this
            .st
            .with(|s| s.app_transport.as_ref().map(|t| t.clone_ref(py)));
        if let Some(t) = app_t {
            t.bind(py).setattr(intern!(py, "_closed"), true)?;
        }
        if state == State::DoHandshake {
            Self::abort_inner(slf, None)
        } else {
            this.set_state(State::Flushing)?;
            let timeout = this.st.with(|s| s.shutdown_timeout.clone_ref(py));
            let cb = slf.getattr(intern!(py, "_check_shutdown_timeout"))?;
            let handle = this
                .loop_(py)
                .call_method1(intern!(py, "call_later"), (timeout, cb))?;
            let old = this
                .st
                .with(|s| s.shutdown_timeout_handle.replace(handle.unbind()));
            drop(old);
            Self::do_flush(slf)
        }
    }

    fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)?;
        slf.get().set_state(State::Shutdown)?;
        Self::do_shutdown(slf)
    }

    fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let (eof, sslobj) = this.st.with(|s| (s.eof_received, s.sslobj.clone_ref(py)));
        let res = if eof {
            Ok(())
        } else {
            sslobj
                .bind(py)
                .call_method0(intern!(py, "unwrap"))
                .map(drop)
        };
        match res {
            Err(e) if is_again(py, &e, n) => Self::process_outgoing(slf),
            Err(e) if is_exc(py, &e, &n.ssl_error) => {
                Self::on_shutdown_complete(slf, Some(e.into_value(py).into_bound(py).into_any()))
            }
            Err(e) => Err(e),
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
        }
    }

    fn on_shutdown_complete(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let h = this.st.with(|s| s.shutdown_timeout_handle.take());
        Self::cancel_handle(py, h)?;
        match exc {
            Some(e) => Self::fatal_error(slf, &e, "Fatal error on transport"),
            None => {
                let close = this.transport_obj(py).getattr(intern!(py, "close"))?;
                this.loop_(py)
                    .call_method1(intern!(py, "call_soon"), (close,))
                    .map(drop)
            }
        }
    }

    fn abort_inner(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.set_state(State::Unwrapped)?;
        let t = this
            .st
            .with(|s| s.transport.as_ref().map(|t| t.clone_ref(py)));
        if let Some(t) = t {
            let t = t.into_bound(py);
            if names(py)?.abort_takes_exc {
                let exc = exc.unwrap_or_else(|| py.None().into_bound(py));
                t.call_method1(intern!(py, "_force_close"), (exc,))?;
            } else {
                t.call_method0(intern!(py, "abort"))?;
            }
        }
        Ok(())
    }

    // Outgoing flow

    fn write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if matches!(
            this.state(),
            State::Flushing | State::Shutdown | State::Unwrapped
        ) {
            let n = this.st.with(|s| s.conn_lost);
            if n >= 5 {
                names(py)?
                    .logger
                    .bind(py)
                    .call_method1(intern!(py, "warning"), ("SSL connection is closed",))?;
            }
            this.st.with(|s| s.conn_lost += 1);
            return Ok(());
        }
        for data in list_of_data.try_iter()? {
            let data = data?;
            let len = data.len()? as i64;
            this.st.with(|s| {
                s.write_backlog.push_back(data.unbind());
                s.write_buffer_size += len;
            });
        }
        Self::write_if_wrapped(slf)
    }

    /// One piece of app data (the app transport's `write` of a non-empty bytes-like).
    fn write_one(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if matches!(
            this.state(),
            State::Flushing | State::Shutdown | State::Unwrapped
        ) {
            let t = PyTuple::new(py, [data])?;
            return Self::write_appdata(slf, t.as_any());
        }
        let len = data.len()? as i64;
        this.st.with(|s| {
            s.write_backlog.push_back(data.clone().unbind());
            s.write_buffer_size += len;
        });
        Self::write_if_wrapped(slf)
    }

    fn write_if_wrapped(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().state() != State::Wrapped {
            return Ok(());
        }
        match Self::do_write(slf) {
            Err(e) if is_exception(py, &e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Fatal error on SSL protocol")
            }
            other => other,
        }
    }

    fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let write = this.st.with(|s| s.m.write.clone_ref(py)).into_bound(py);
        loop {
            let Some(data) = this
                .st
                .with(|s| s.write_backlog.front().map(|d| d.clone_ref(py)))
            else {
                break;
            };
            let data = data.into_bound(py);
            let count: i64 = match vcall(&write, &[data.as_ptr()]) {
                Ok(c) => c.extract()?,
                Err(e) if is_again(py, &e, n) => break,
                Err(e) => return Err(e),
            };
            let data_len = data.len()? as i64;
            if count < data_len {
                let rest =
                    data.get_item(pyo3::types::PySlice::new(py, count as isize, isize::MAX, 1))?;
                this.st.with(|s| {
                    if let Some(front) = s.write_backlog.front_mut() {
                        *front = rest.unbind();
                    }
                    s.write_buffer_size -= count;
                });
            } else {
                let old = this.st.with(|s| {
                    s.write_buffer_size -= data_len;
                    s.write_backlog.pop_front()
                });
                drop(old);
            }
        }
        Self::process_outgoing(slf)
    }

    fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (paused, read) = this
            .st
            .with(|s| (s.ssl_writing_paused, s.m.outgoing_read.clone_ref(py)));
        // The outgoing BIO's size: 0 once read out (only the SSL object adds to it).
        let mut pending = None;
        if !paused {
            let data = vcall(read.bind(py), &[])?;
            pending = Some(0);
            if data.len()? > 0 {
                let (core, t) = this.st.with(|s| {
                    (
                        s.core.as_ref().map(|c| c.clone_ref(py)),
                        s.transport.as_ref().map(|t| t.clone_ref(py)),
                    )
                });
                match core {
                    Some(core) => crate::net::stream::write_data(core.bind(py), &data)?,
                    None => {
                        opt(py, &t).call_method1(intern!(py, "write"), (data,))?;
                    }
                }
            }
        }
        Self::control_app_writing_sized(slf, pending)
    }

    // Incoming flow

    /// Encrypted bytes from the transport below (a native transport's read, or
    /// `buffer_updated` / `data_received`).
    pub(crate) fn feed(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::bio_write(slf, data)?;
        Self::advance(slf)
    }

    /// `self._incoming.write(data)`: runs no Python code (`ssl.MemoryBIO.write`).
    pub(crate) fn bio_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let w = slf.get().st.with(|s| s.m.incoming_write.clone_ref(py));
        vcall(w.bind(py), &[data.as_ptr()]).map(drop)
    }

    /// What `buffer_updated` does after the BIO write: the state's next step.
    pub(crate) fn advance(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        match this.state() {
            State::DoHandshake => Self::do_handshake(slf),
            State::Wrapped => Self::do_read(slf),
            State::Flushing => Self::do_flush(slf),
            State::Shutdown => Self::do_shutdown(slf),
            State::Unwrapped => Ok(()),
        }
    }

    fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !matches!(this.state(), State::Wrapped | State::Flushing) {
            return Ok(());
        }
        let res = (|| {
            let (paused, buffered) = this.st.with(|s| (s.app_reading_paused, s.app_is_buffer));
            // The incoming BIO's size when the read found it empty (only the transport
            // below adds to it, never during the read).
            let mut incoming = None;
            if !paused {
                if buffered {
                    Self::do_read_buffered(slf)?;
                } else if Self::do_read_copied(slf)? {
                    incoming = Some(0);
                }
                if this.st.with(|s| !s.write_backlog.is_empty()) {
                    Self::do_write(slf)?;
                } else {
                    Self::process_outgoing(slf)?;
                }
            }
            Self::control_ssl_reading_sized(slf, incoming)
        })();
        match res {
            Err(e) if is_exception(py, &e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Fatal error on SSL protocol")
            }
            other => other,
        }
    }

    /// Whether the SSL object has nothing more to read now, after a read of up to
    /// `MAX_READ` bytes: the incoming BIO is empty (then `read()` could only raise
    /// `SSLWantReadError`: a read of `MAX_READ`, more than a record's 16 KiB, leaves
    /// nothing of its record pending, and without read-ahead the SSL object takes no more
    /// from the BIO than the records it reads).
    fn drained(&self, py: Python<'_>) -> PyResult<bool> {
        let incoming = self.st.with(|s| s.incoming.clone_ref(py));
        Ok(incoming
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract::<usize>()?
            == 0)
    }

    /// `_do_read__copied()`; true if it found the incoming BIO empty.
    fn do_read_copied(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let read = this.st.with(|s| s.m.read.clone_ref(py)).into_bound(py);
        let buf = read_buf(py).into_bound(py);
        let size = max_read_int(py);
        let mut chunks: Vec<Bound<'_, PyBytes>> = Vec::new();
        let mut eof = false;
        let mut drained = false;
        loop {
            let got = match vcall(&read, &[size.as_ptr(), buf.as_ptr()]) {
                Ok(c) => c.extract::<usize>()?,
                Err(e) if is_again(py, &e, n) => break,
                Err(e) => return Err(e),
            };
            if got == 0 {
                eof = true;
                break;
            }
            let chunk =
                crate::pyo::buffer::with_bytes(buf.as_any(), |b| PyBytes::new(py, &b[..got]))?;
            chunks.push(chunk);
            if this.drained(py)? {
                drained = true;
                break;
            }
        }
        drop(buf);
        if !chunks.is_empty() {
            let data = if chunks.len() == 1 {
                chunks.pop().map(Bound::into_any)
            } else {
                let empty = PyBytes::new(py, b"");
                Some(empty.call_method1(intern!(py, "join"), (chunks,))?)
            };
            let app = this.app_protocol_obj(py);
            app.call_method1(intern!(py, "data_received"), (data,))?;
        }
        if eof {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
            return Ok(false);
        }
        Ok(drained)
    }

    fn do_read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let app = this.app_protocol_obj(py);
        let size = Self::get_read_buffer_size_inner(slf)?;
        let buf = app.call_method1(intern!(py, "get_buffer"), (size,))?;
        let wants = buf.len()?;
        let read = this.st.with(|s| s.m.read.clone_ref(py)).into_bound(py);
        let mut offset = 0usize;
        let mut count = 1usize;
        let mut reschedule = false;
        let res: PyResult<()> = (|| {
            count = vcall(&read, &[PyInt::new(py, wants).as_ptr(), buf.as_ptr()])?.extract()?;
            if count > 0 {
                offset = count;
                let view = PyMemoryView::from(&buf)?;
                loop {
                    if offset >= wants {
                        reschedule = true;
                        break;
                    }
                    let rest = view.get_item(pyo3::types::PySlice::new(
                        py,
                        offset as isize,
                        isize::MAX,
                        1,
                    ))?;
                    count = vcall(
                        &read,
                        &[PyInt::new(py, wants - offset).as_ptr(), rest.as_ptr()],
                    )?
                    .extract()?;
                    if count > 0 {
                        offset += count;
                    } else {
                        break;
                    }
                }
            }
            Ok(())
        })();
        match res {
            Err(e) if is_again(py, &e, n) => {}
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if reschedule {
            let cb = slf.getattr(intern!(py, "_do_read"))?;
            this.loop_(py)
                .call_method1(intern!(py, "call_soon"), (cb,))?;
        }
        if offset > 0 {
            app.call_method1(intern!(py, "buffer_updated"), (offset,))?;
        }
        if count == 0 {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let go = this.st.with(|s| {
            if s.app_state == AppState::ConMade {
                s.app_state = AppState::Eof;
                true
            } else {
                false
            }
        });
        if !go {
            return Ok(());
        }
        let res = this
            .app_protocol_obj(py)
            .call_method0(intern!(py, "eof_received"))
            .and_then(|k| k.is_truthy());
        match res {
            Ok(true) => names(py)?
                .logger
                .bind(py)
                .call_method1(
                    intern!(py, "warning"),
                    ("returning true from eof_received() has no effect when using ssl",),
                )
                .map(drop),
            Ok(false) => Ok(()),
            Err(e)
                if e.is_instance_of::<PyKeyboardInterrupt>(py)
                    || e.is_instance_of::<PySystemExit>(py) =>
            {
                Err(e)
            }
            Err(e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Error calling eof_received()")
            }
        }
    }

    // Flow control for writes from the app

    fn get_write_buffer_size_inner(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let py = slf.py();
        let (outgoing, size) = slf
            .get()
            .st
            .with(|s| (s.outgoing.clone_ref(py), s.write_buffer_size));
        let pending: i64 = outgoing
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract()?;
        Ok(pending + size)
    }

    fn call_flow(
        slf: &Bound<'_, Self>,
        method: &Bound<'_, pyo3::types::PyString>,
        what: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match this.app_protocol_obj(py).call_method0(method) {
            Ok(_) => Ok(()),
            Err(e)
                if e.is_instance_of::<PyKeyboardInterrupt>(py)
                    || e.is_instance_of::<PySystemExit>(py) =>
            {
                Err(e)
            }
            Err(e) => {
                let ctx = PyDict::new(py);
                ctx.set_item("message", format!("protocol.{what}() failed"))?;
                ctx.set_item("exception", e.value(py))?;
                ctx.set_item("transport", this.st.with(|s| opt(py, &s.app_transport)))?;
                ctx.set_item("protocol", slf)?;
                this.loop_(py)
                    .call_method1(intern!(py, "call_exception_handler"), (ctx,))
                    .map(drop)
            }
        }
    }

    fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing_sized(slf, None)
    }

    /// `_control_app_writing()`, given the outgoing BIO's size if known.
    fn control_app_writing_sized(slf: &Bound<'_, Self>, outgoing: Option<i64>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = match outgoing {
            Some(n) => n + this.st.with(|s| s.write_buffer_size),
            None => Self::get_write_buffer_size_inner(slf)?,
        };
        let action = this.st.with(|s| {
            if size >= s.outgoing_high && !s.app_writing_paused {
                s.app_writing_paused = true;
                Some(true)
            } else if size <= s.outgoing_low && s.app_writing_paused {
                s.app_writing_paused = false;
                Some(false)
            } else {
                None
            }
        });
        match action {
            Some(true) => Self::call_flow(slf, intern!(py, "pause_writing"), "pause_writing"),
            Some(false) => Self::call_flow(slf, intern!(py, "resume_writing"), "resume_writing"),
            None => Ok(()),
        }
    }

    // Flow control for reads from the SSL socket

    fn get_read_buffer_size_inner(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let py = slf.py();
        let incoming = slf.get().st.with(|s| s.incoming.clone_ref(py));
        incoming.bind(py).getattr(intern!(py, "pending"))?.extract()
    }

    fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading_sized(slf, None)
    }

    /// `_control_ssl_reading()`, given the incoming BIO's size if known.
    fn control_ssl_reading_sized(slf: &Bound<'_, Self>, incoming: Option<i64>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = match incoming {
            Some(n) => n,
            None => Self::get_read_buffer_size_inner(slf)?,
        };
        let action = this.st.with(|s| {
            if size >= s.incoming_high && !s.ssl_reading_paused {
                s.ssl_reading_paused = true;
                Some(intern!(py, "pause_reading"))
            } else if size <= s.incoming_low && s.ssl_reading_paused {
                s.ssl_reading_paused = false;
                Some(intern!(py, "resume_reading"))
            } else {
                None
            }
        });
        if let Some(m) = action {
            this.transport_obj(py).call_method0(m)?;
        }
        Ok(())
    }

    fn fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let t = this.transport_obj(py);
        if t.is_truthy()? {
            t.call_method1(intern!(py, "_force_close"), (exc,))?;
        }
        let n = names(py)?;
        if exc.is_instance_of::<PyOSError>() {
            if this.debug(py)? {
                let kw = PyDict::new(py);
                kw.set_item("exc_info", exc)?;
                n.logger
                    .bind(py)
                    .call_method("debug", ("%r: %s", slf, message), Some(&kw))?;
            }
        } else if !exc.is_instance(n.cancelled_error.bind(py))? {
            let ctx = PyDict::new(py);
            ctx.set_item("message", message)?;
            ctx.set_item("exception", exc)?;
            ctx.set_item("transport", this.transport_obj(py))?;
            ctx.set_item("protocol", slf)?;
            this.loop_(py)
                .call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        }
        Ok(())
    }
}

/// Checks asyncio's `ssl_*_timeout` argument: `None` gives `default`, else it must be a
/// positive number.
fn check_timeout<'py>(
    py: Python<'py>,
    value: Option<Bound<'py, PyAny>>,
    what: &str,
    default: &str,
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
            "SSL_HANDSHAKE_TIMEOUT",
        )?;
        let shutdown_timeout = check_timeout(
            py,
            ssl_shutdown_timeout,
            "ssl_shutdown_timeout",
            "SSL_SHUTDOWN_TIMEOUT",
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
        extra.set_item("sslcontext", &sslcontext)?;
        let incoming = n.memory_bio.bind(py).call0()?;
        let outgoing = n.memory_bio.bind(py).call0()?;
        let kw = PyDict::new(py);
        kw.set_item("server_side", server_side_b)?;
        kw.set_item("server_hostname", hostname.clone())?;
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
        let (incoming_high, incoming_low) = flowcontrol_defaults(None, None, 256)?;
        let (outgoing_high, outgoing_low) = flowcontrol_defaults(None, None, 512)?;
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
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {}",
                data.get_type().name()?
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        Self::write_one(slf, data)
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
    fn _set_write_buffer_limits(&self, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (h, l) = flowcontrol_defaults(high, low, 512)?;
        self.st.with(|s| {
            s.outgoing_high = h;
            s.outgoing_low = l;
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
    fn _set_read_buffer_limits(&self, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (h, l) = flowcontrol_defaults(high, low, 256)?;
        self.st.with(|s| {
            s.incoming_high = h;
            s.incoming_low = l;
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
        names(py)?.state_enum.bind(py).getattr(name)
    }
    #[getter]
    fn _app_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let name = self.st.with(|s| s.app_state.name());
        names(py)?.app_state_enum.bind(py).getattr(name)
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
        py.import("collections")?.getattr("deque")?.call1((items,))
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

/// Registers the class and function of this module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SSLProtocolCore>()?;
    m.add_function(wrap_pyfunction!(_register_ssl_classes, m)?)?;
    Ok(())
}
