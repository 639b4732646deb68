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
//!
//! This file holds the state types, the class and its small accessors; one
//! `impl SSLProtocolCore` per concern beside it: `handshake.rs`, `read.rs` (the incoming
//! flow), `write.rs` (the outgoing flow), `flow.rs` (flow control), `shutdown.rs`
//! (shutdown, abort, fatal errors); `api.rs` has the one `#[pymethods]` block
//! (PyO3's `multiple-pymethods` is not enabled).

mod api;
mod flow;
mod handshake;
mod read;
mod shutdown;
mod write;

use std::collections::VecDeque;

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyDict, PyInt, PyType};

use crate::net::stream::StreamCore;
use crate::net::MAX_READ;
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
            logger: py
                .import("asyncio.log")?
                .getattr(intern!(py, "logger"))?
                .unbind(),
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
    crate::pyo::fastcall::install_on::<write::WrapperAppWrite>(
        &transport_cls,
        c"write",
        c"write($self, data)\n--\n\n",
    )?;
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
}

/// Registers the class and function of this module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SSLProtocolCore>()?;
    m.add_function(wrap_pyfunction!(_register_ssl_classes, m)?)?;
    Ok(())
}
