//! What the stream and datagram transport cores share ([`crate::net::stream::StreamCore`],
//! [`crate::net::datagram::DatagramCore`]), written once: asyncio's `_SelectorTransport`
//! part of `_SelectorSocketTransport` and `_SelectorDatagramTransport`.
//!
//! * [`TransportState`]: the fields both states hold (the protocol, the weak reference to
//!   the Python-visible transport, `extra`, the context, the closing / paused / reading
//!   flags and the reader generation, flow control); each core's state embeds it and
//!   derefs to it, so `s.closing` reads the same in every file of either core.
//! * [`TransportCore`]: what a core tells the shared code (its fd, loop, state, queue, and
//!   the readable / writable / `connection_lost` steps that differ), with the shared steps
//!   as provided methods (the transport, the protocol, debug logging, polling, scheduling).
//! * free functions generic over it: `close()`, `_force_close()`, `_fatal_error()`,
//!   `pause_reading()` / `resume_reading()`, the job runner, the `__repr__`, the
//!   unclosed-transport warning, the socket's `extra` entries, the transport's creation.
//! * [`transport_pymethods!`]: the Python-visible methods both cores have, in the one
//!   `#[pymethods]` block of each (PyO3's `multiple-pymethods` is not enabled).
//!
//! Monomorphized per core: the read and write paths cost what they did.
//!
//! Files: this one (the state, the trait, making a transport, the job runner, pausing and
//! resuming reading), `write_flow.rs` (write flow control), `close.rs` (close, abort, fatal
//! errors, `connection_lost`), `methods.rs` (`__repr__`, `get_extra_info`, and the macros
//! that write the shared Python-visible methods into each core's `#[pymethods]`).

mod close;
mod methods;
pub(crate) mod wrapper;
mod write_flow;

pub(crate) use close::*;
pub(crate) use methods::*;
pub(crate) use write_flow::*;

use std::ops::DerefMut;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyByteArray, PyBytes, PyDict, PyMemoryView, PyTuple, PyType, PyWeakrefMethods,
    PyWeakrefReference,
};
use pyo3::{PyClass, PyTraverseError, PyVisit};

use crate::event_loop::{LoopCore, Owner};
use crate::names::{logger, Names};
use crate::pyo::context::{copy_current, with_context};
use crate::pyo::errno::os_error;
use crate::pyo::GilCell;
use crate::reactor::Interest;

/// What the ready queue runs for a transport (stream or datagram).
pub(crate) enum StreamEvent {
    /// The fd is readable; the reader generation at the time of the poll.
    Readable(u32),
    /// The fd is writable.
    Writable,
    /// `protocol.connection_made(transport)`.
    ConnectionMade,
    /// Start polling for reading (asyncio's `call_soon(self._add_reader, ...)` after
    /// `connection_made`).
    StartReading,
    /// `futures._set_result_unless_cancelled(waiter, None)`.
    WakeWaiter(Py<PyAny>),
    /// `_call_connection_lost(exc)`.
    ConnectionLost(Option<Py<PyAny>>),
    /// `protocol.eof_received()`, scheduled by a read pipe at EOF (its return value is
    /// ignored: the pipe closes).
    EofReceived,
}

impl StreamEvent {
    /// The callback asyncio's transport schedules for this event (`write_ready`: its
    /// writable callback's name, `_write_ready`, or `_sendto_ready` for datagrams).
    pub(crate) fn asyncio_callback(
        &self,
        write_ready: &'static str,
    ) -> crate::net::AsyncioCallback {
        use crate::net::AsyncioCallback as C;
        match self {
            StreamEvent::Readable(_) => C::Transport("_read_ready"),
            StreamEvent::Writable => C::Transport(write_ready),
            StreamEvent::ConnectionMade => C::ConnectionMade,
            StreamEvent::EofReceived => C::EofReceived,
            StreamEvent::StartReading
            | StreamEvent::WakeWaiter(_)
            | StreamEvent::ConnectionLost(_) => C::Native,
        }
    }
}

/// A job of a transport (`Job::Stream`, `Job::Datagram`).
pub(crate) struct TransportJob<C> {
    pub(crate) core: Py<C>,
    pub(crate) event: StreamEvent,
}

impl<C> TransportJob<C> {
    /// The Python objects the job holds, for the loop's GC traversal.
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self.core.as_any())?;
        match &self.event {
            StreamEvent::WakeWaiter(w) => visit.call(w),
            StreamEvent::ConnectionLost(e) => visit.call(e),
            _ => Ok(()),
        }
    }
}

/// The state every transport core holds (see the module docs).
pub(crate) struct TransportState {
    /// The Python-visible transport wrapping the core (what protocols receive), by weak
    /// reference: the wrapper holds the core, and the fd's registration holds the wrapper
    /// while the transport is open, as asyncio's selector holds its transport. So a
    /// transport nobody holds is freed by reference counting, not left to the cycle
    /// collector (an unclosed one warns then, as asyncio's does).
    pub(crate) transport: Option<Py<PyWeakrefReference>>,
    pub(crate) protocol: Option<Py<PyAny>>,
    pub(crate) protocol_connected: bool,
    pub(crate) extra: Option<Py<PyDict>>,
    /// The context the transport's callbacks run in.
    pub(crate) context: Option<Py<PyAny>>,
    /// asyncio's `_closing`: `close()`/`abort()` was called.
    pub(crate) closing: bool,
    /// asyncio's `_paused`: `pause_reading()` was called.
    pub(crate) paused: bool,
    pub(crate) protocol_paused: bool,
    /// asyncio's `_conn_lost`: set once `connection_lost` is scheduled, then counts the
    /// writes made after it.
    pub(crate) conn_lost: u32,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    /// `(low, high)` as `set_write_buffer_limits` was given them when they were not plain
    /// integers (see [`crate::net::flow::Limits::given`]).
    pub(crate) given_limits: Option<Py<PyTuple>>,
    /// Polled for reading (asyncio: `_read_ready` is the fd's reader).
    pub(crate) reading: bool,
    /// Polled for writing (asyncio: `_write_ready` is the fd's writer).
    pub(crate) writing: bool,
    /// Bumped whenever the reader is added or removed: a readable event queued before
    /// is stale then, as asyncio's cancelled reader handle is.
    pub(crate) read_gen: u32,
}

impl TransportState {
    /// The state of a new transport: connected to `protocol`, in the current context,
    /// with asyncio's default watermarks, not polled yet.
    pub(crate) fn new(
        py: Python<'_>,
        protocol: Option<Py<PyAny>>,
        extra: Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        Ok(TransportState {
            transport: None,
            protocol_connected: protocol.is_some(),
            protocol,
            extra: Some(extra.unbind()),
            context: Some(copy_current(py)?.unbind()),
            closing: false,
            paused: false,
            protocol_paused: false,
            conn_lost: 0,
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            given_limits: None,
            reading: false,
            writing: false,
            read_gen: 0,
        })
    }

    /// Stops polling for reading (asyncio's `_remove_reader`); whether it was polled.
    #[inline]
    pub(crate) fn stop_reading(&mut self) -> bool {
        let was = self.reading;
        if was {
            self.reading = false;
            self.read_gen = self.read_gen.wrapping_add(1);
        }
        was
    }

    /// Starts polling for reading unless closing, paused or polled already (the
    /// scheduled `_add_reader` after `connection_made`); whether it started.
    pub(crate) fn start_reading(&mut self) -> bool {
        let start = !self.closing && !self.paused && !self.reading;
        if start {
            self.reading = true;
            self.read_gen = self.read_gen.wrapping_add(1);
        }
        start
    }

    /// `transport.is_reading()`.
    pub(crate) fn is_reading(&self) -> bool {
        !self.closing && !self.paused
    }

    /// `pause_reading()`'s change of state; whether anything changed.
    fn pause_reading(&mut self) -> bool {
        if self.closing || self.paused {
            return false;
        }
        self.paused = true;
        self.stop_reading();
        true
    }

    /// `resume_reading()`'s change of state; whether anything changed.
    fn resume_reading(&mut self) -> bool {
        if self.closing || !self.paused {
            return false;
        }
        self.paused = false;
        self.reading = true;
        self.read_gen = self.read_gen.wrapping_add(1);
        true
    }

    /// Visits the Python objects of these fields (the core's `__traverse__`).
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.transport)?;
        visit.call(&self.protocol)?;
        visit.call(&self.extra)?;
        visit.call(&self.given_limits)?;
        visit.call(&self.context)
    }

    /// Takes the Python objects of these fields that can form cycles (the core's
    /// `__clear__`), to be dropped after the state's lock.
    pub(crate) fn take_refs(&mut self) -> impl Sized {
        (
            self.transport.take(),
            self.protocol.take(),
            self.extra.take(),
            self.context.take(),
        )
    }
}

/// A transport core: what the shared code needs of `StreamCore` and `DatagramCore`.
pub(crate) trait TransportCore:
    PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync
{
    /// The core's mutable state, which embeds (and derefs to) a [`TransportState`].
    type State: DerefMut<Target = TransportState> + Send;
    /// asyncio's name of the transport's writable callback (`_write_ready`,
    /// `_sendto_ready`).
    const WRITE_READY: &'static str;
    /// What [`Self::drop_queue`] takes out of the state.
    type Dropped;
    /// What [`Self::clear_own`] takes out of the state.
    type Cleared;

    fn fd(&self) -> RawFd;
    fn loop_ref(&self) -> &Py<LoopCore>;
    fn state(&self) -> &GilCell<Self::State>;
    /// Appends a job of this transport to the loop's ready queue.
    fn push_job(lp: &LoopCore, job: TransportJob<Self>);
    /// The fd's reactor registration for this core and its Python-visible transport.
    fn owner(core: Py<Self>, transport: Py<PyAny>) -> Owner;
    /// The socket is still held (`None` once `connection_lost` ran: asyncio's `_sock`).
    fn is_open(s: &Self::State) -> bool;
    /// Nothing waits to be sent.
    fn queue_is_empty(s: &Self::State) -> bool;
    /// What `get_write_buffer_size()` returns, and flow control compares with the
    /// watermarks.
    fn buffer_size(s: &Self::State) -> usize;
    /// Drops what waits to be sent (`_force_close`); what is returned is dropped after the
    /// state's lock (it may hold Python objects).
    fn drop_queue(s: &mut Self::State) -> Self::Dropped;
    /// The fd is readable, and was polled as of reader generation `gen`.
    fn on_readable(slf: &Bound<'_, Self>, gen: u32) -> PyResult<()>;
    /// The fd is writable.
    fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()>;
    /// asyncio's `_call_connection_lost(exc)`.
    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()>;
    /// Visits the Python objects of the core's own fields (`__traverse__`; the
    /// [`TransportState`]'s are visited already).
    fn visit_own(s: &Self::State, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
    /// Takes the Python objects of the core's own fields that can form cycles
    /// (`__clear__`), to be dropped after the state's lock.
    fn clear_own(s: &mut Self::State) -> Self::Cleared;
    /// `get_extra_info(name)` found no entry `name` in `extra`: fills it in if the
    /// transport has it; whether it did.
    fn fill_extra(&self, _extra: &Bound<'_, PyDict>, _name: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(false)
    }

    /// The loop.
    fn event_loop<'py>(&self, py: Python<'py>) -> &Bound<'py, LoopCore> {
        self.loop_ref().bind(py)
    }

    /// The Python-visible transport, or `None` once released.
    fn transport<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.state()
            .with(|s| s.transport.as_ref().map(|t| t.clone_ref(py)))
            .and_then(|t| t.into_bound(py).upgrade())
            .unwrap_or_else(|| py.None().into_bound(py))
    }

    /// The protocol, until `connection_lost` ran.
    fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.state()
            .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .map(|p| p.into_bound(py))
    }

    /// The loop is in debug mode.
    fn debug(&self, py: Python<'_>) -> bool {
        crate::event_loop::debug_of(self.event_loop(py).as_any()).unwrap_or(false)
    }

    /// Logs `"%r <what>"` at debug level when the loop is in debug mode.
    fn debug_log(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        if self.debug(py) {
            let fmt = format!("%r {what}");
            logger(py)?.call_method1(intern!(py, "debug"), (fmt, self.transport(py)))?;
        }
        Ok(())
    }

    /// Polls the fd for what the transport waits for now. An error here means the fd was
    /// closed behind the transport's back; its next syscall reports that.
    #[inline]
    fn sync_interest(slf: &Bound<'_, Self>) {
        let _ = Self::try_sync_interest(slf);
    }

    /// [`Self::sync_interest`], with epoll's error: it refuses an fd that was closed, or
    /// one it cannot poll (such as `/dev/zero`).
    fn try_sync_interest(slf: &Bound<'_, Self>) -> std::io::Result<()> {
        let this = slf.get();
        let (interest, gen) = this.state().with(|s| {
            (
                Interest {
                    read: s.reading,
                    write: s.writing,
                },
                s.read_gen,
            )
        });
        LoopCore::set_owner_interest(
            this.event_loop(slf.py()),
            this.fd(),
            slf.as_ptr(),
            interest,
            gen,
        )
    }

    /// Schedules `event` as the next job of the ready queue.
    fn schedule(slf: &Bound<'_, Self>, event: StreamEvent) {
        let job = TransportJob {
            core: slf.clone().unbind(),
            event,
        };
        Self::push_job(slf.get().event_loop(slf.py()).get(), job);
    }
}

// ----- making a transport -----------------------------------------------------------------

/// The optional arguments of asyncio's `loop._make_*_transport()` methods (a kind of
/// transport that does not take one has it `None`).
#[derive(Clone, Copy, Default)]
pub(crate) struct MakeArgs<'a, 'py> {
    /// The future to wake once `connection_made` ran.
    pub(crate) waiter: Option<&'a Bound<'py, PyAny>>,
    /// The caller's `extra` (copied).
    pub(crate) extra: Option<&'a Bound<'py, PyAny>>,
    /// Socket transports: the `asyncio.Server` the connection is counted in.
    pub(crate) server: Option<&'a Bound<'py, PyAny>>,
    /// Datagram transports: the remote address given to `create_datagram_endpoint`.
    pub(crate) address: Option<&'a Bound<'py, PyAny>>,
}

/// `data` is bytes-like as a transport's write takes it (`bytes`, `bytearray`,
/// `memoryview`), else asyncio's `TypeError`.
pub(crate) fn check_bytes_like(data: &Bound<'_, PyAny>) -> PyResult<()> {
    if data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>()
    {
        return Ok(());
    }
    let name = data.get_type().name()?;
    Err(PyTypeError::new_err(format!(
        "data argument must be a bytes-like object, not '{name}'"
    )))
}

/// `extra` (a copy of the caller's, or a new dict) with asyncio's `_SelectorTransport`
/// entries of socket object `sock`: `socket` (a `TransportSocket`), `sockname`, and
/// `peername` unless given (`None` where the socket has none).
pub(crate) fn socket_extra<'py>(
    sock: &Bound<'py, PyAny>,
    extra: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = sock.py();
    let extra = match extra {
        Some(e) if !e.is_none() => e.cast::<PyDict>()?.copy()?,
        _ => PyDict::new(py),
    };
    let tsock = Names::get(py)?.transport_socket.bind(py);
    extra.set_item("socket", tsock.call1((sock,))?)?;
    let os_error_type = py.get_type::<PyOSError>();
    match sock.call_method0(intern!(py, "getsockname")) {
        Ok(n) => extra.set_item("sockname", n)?,
        Err(e) if e.matches(py, &os_error_type)? => extra.set_item("sockname", py.None())?,
        Err(e) => return Err(e),
    }
    if !extra.contains("peername")? {
        match sock.call_method0(intern!(py, "getpeername")) {
            Ok(n) => extra.set_item("peername", n)?,
            Err(e) if e.matches(py, &os_error_type)? => extra.set_item("peername", py.None())?,
            Err(e) => return Err(e),
        }
    }
    Ok(extra)
}

/// The Python-visible transport of `core`: an instance of `cls` (registered by the Python
/// package as `what`), which the core references weakly.
pub(crate) fn wrap<'py, C: TransportCore>(
    core: &Bound<'py, C>,
    cls: Option<&Py<PyType>>,
    what: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let py = core.py();
    let cls = cls.ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err(format!(
            "ferroloop's {what} class is not registered"
        ))
    })?;
    let transport = cls.bind(py).call1((core,))?;
    let weak = PyWeakrefReference::new(&transport)?;
    core.get()
        .state()
        .with(|s| s.transport = Some(weak.unbind()));
    Ok(transport)
}

/// Registers `core`'s fd with the reactor, owned by the transport for its whole life.
pub(crate) fn adopt<C: TransportCore>(
    core: &Bound<'_, C>,
    transport: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let this = core.get();
    LoopCore::adopt_fd(
        this.event_loop(core.py()),
        this.fd(),
        C::owner(core.clone().unbind(), transport.clone().unbind()),
    )
}

/// Schedules what asyncio's transport `__init__` schedules: `connection_made`, the start
/// of reading (when `start_reading`), the waking of `waiter`.
pub(crate) fn schedule_start<C: TransportCore>(
    core: &Bound<'_, C>,
    start_reading: bool,
    waiter: Option<&Bound<'_, PyAny>>,
) {
    C::schedule(core, StreamEvent::ConnectionMade);
    if start_reading {
        C::schedule(core, StreamEvent::StartReading);
    }
    if let Some(w) = waiter.filter(|w| !w.is_none()) {
        C::schedule(core, StreamEvent::WakeWaiter(w.clone().unbind()));
    }
}

// ----- the job runner ---------------------------------------------------------------------

/// Runs a transport's job in the transport's context. An exception that asyncio's
/// transport would let escape its callback (from `data_received` or
/// `datagram_received`, a failing `sock.close()`, ...) is reported as asyncio reports a
/// failing callback; `SystemExit` and `KeyboardInterrupt` propagate.
pub(crate) fn run_job<C: TransportCore>(
    lp: &Bound<'_, LoopCore>,
    job: TransportJob<C>,
) -> PyResult<()> {
    let py = lp.py();
    let core = job.core.into_bound(py);
    let Some(context) = core
        .get()
        .state()
        .with(|s| s.context.as_ref().map(|c| c.clone_ref(py)))
    else {
        return Ok(());
    };
    let callback = job.event.asyncio_callback(C::WRITE_READY);
    let res = with_context(py, context.bind(py), || match job.event {
        StreamEvent::Readable(gen) => C::on_readable(&core, gen),
        StreamEvent::Writable => C::on_writable(&core),
        StreamEvent::ConnectionMade => {
            let this = core.get();
            match this.protocol(py) {
                Some(p) => p
                    .call_method1(intern!(py, "connection_made"), (this.transport(py),))
                    .map(drop),
                None => Ok(()),
            }
        }
        StreamEvent::StartReading => {
            if core.get().state().with(|s| s.start_reading()) {
                // asyncio's `call_soon(self._add_reader, ...)`: epoll's refusal is that
                // callback's error, reported to the exception handler.
                C::try_sync_interest(&core).map_err(os_error)?;
            }
            Ok(())
        }
        StreamEvent::WakeWaiter(w) => {
            let w = w.bind(py);
            if !w.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
                w.call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
            Ok(())
        }
        StreamEvent::ConnectionLost(exc) => C::call_connection_lost(&core, exc),
        // Only read pipes schedule it.
        StreamEvent::EofReceived => match core.get().protocol(py) {
            Some(p) => p.call_method0(intern!(py, "eof_received")).map(drop),
            None => Ok(()),
        },
    });
    match res {
        Err(e) if !crate::pyo::exc::is_fatal(py, &e) => {
            let this = core.get();
            crate::net::report_callback_error(
                lp,
                callback,
                &this.transport(py),
                this.protocol(py),
                e,
            )
        }
        other => other,
    }
}

// ----- reading ----------------------------------------------------------------------------

/// `transport.pause_reading()`.
pub(crate) fn pause_reading<C: TransportCore>(slf: &Bound<'_, C>) -> PyResult<()> {
    let this = slf.get();
    if this.state().with(|s| s.pause_reading()) {
        C::sync_interest(slf);
        this.debug_log(slf.py(), "pauses reading")?;
    }
    Ok(())
}

/// `transport.resume_reading()`.
pub(crate) fn resume_reading<C: TransportCore>(slf: &Bound<'_, C>) -> PyResult<()> {
    let this = slf.get();
    if this.state().with(|s| s.resume_reading()) {
        C::sync_interest(slf);
        this.debug_log(slf.py(), "resumes reading")?;
    }
    Ok(())
}
