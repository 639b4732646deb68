//! The stream transport core: one native implementation of asyncio's socket transport
//! (`selector_events._SelectorSocketTransport`) for TCP and Unix sockets, which also
//! carries asyncio's pipe transports (`unix_events._UnixReadPipeTransport` /
//! `_UnixWritePipeTransport`, see [`pipe`]), meant to carry TLS next.
//!
//! [`StreamCore`] holds the state: the socket, the protocol, the write queue
//! ([`queue::WriteQueue`]), flow control, and the EOF / close / abort flags. The object
//! protocols see is `ferroloop._SocketTransport`, a subclass of `asyncio.Transport`
//! (isinstance checks must hold, and `BaseTransport`'s `__slots__` rule out a native base)
//! whose methods are one-line calls into this core.
//!
//! The transport owns its fd in the reactor (`Owner::Stream`) for its whole life, polled
//! for reading while it reads (asyncio's `_add_reader(fd, _read_ready)`), for writing
//! while bytes are queued. A poll turns readiness into `Job::Stream` jobs in the ready
//! queue, in event order with the other I/O callbacks, as asyncio's `_process_events`
//! does; protocol calls that asyncio schedules with `call_soon` (`connection_made`,
//! `connection_lost`) are jobs too, so the order of callbacks is asyncio's.
//!
//! Files: `api.rs` (the Python-visible methods), [`queue`] (the write queue), `read.rs`
//! (readable: `data_received` / `get_buffer`+`buffer_updated`, EOF), `write.rs` (`write`,
//! `writelines`, flushing, flow control), `close.rs` (close, abort, fatal errors,
//! `connection_lost`), [`sock`] (the socket: an object, or an accepted connection's fd until
//! an object is asked for, or a pipe's file object), [`pipe`] (what pipe transports do
//! differently: `read(2)`/`writev(2)`, their EOF, close and error rules).

mod api;
mod close;
pub(crate) mod pipe;
pub(crate) mod queue;
mod read;
pub(crate) mod sock;
mod write;

pub(crate) use api::install_fast_methods;

use std::os::fd::RawFd;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{LoopCore, Owner, StreamOwner};
use crate::names::logger;
use crate::pyo::context::{copy_current, with_context};
use crate::pyo::errno::os_error;
use crate::pyo::GilCell;
use crate::reactor::Interest;
use queue::WriteQueue;
use sock::Sock;

/// `ferroloop._SocketTransport`, registered by the Python package at import.
static TRANSPORT_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Registers the Python class that wraps a [`StreamCore`] (`ferroloop._SocketTransport`).
#[pyfunction]
pub fn _register_transport_class(py: Python<'_>, cls: Bound<'_, PyType>) -> PyResult<()> {
    let _ = TRANSPORT_CLASS.set(py, cls.unbind());
    Ok(())
}

/// What a stream transport carries: a socket, or one direction of a pipe (see [`pipe`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Socket,
    /// `connect_read_pipe`: read-only.
    ReadPipe,
    /// `connect_write_pipe`: write-only; polled for reading only to notice that the reader
    /// went away.
    WritePipe,
}

/// What the ready queue runs for a stream transport.
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

/// A job of a stream transport (`Job::Stream`).
pub(crate) struct StreamJob {
    pub(crate) core: Py<StreamCore>,
    pub(crate) event: StreamEvent,
}

impl StreamJob {
    /// The Python objects the job holds, for the loop's GC traversal.
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)?;
        match &self.event {
            StreamEvent::WakeWaiter(w) => visit.call(w),
            StreamEvent::ConnectionLost(e) => visit.call(e),
            _ => Ok(()),
        }
    }
}

/// The mutable state of a stream transport.
struct StreamState {
    /// The Python-visible transport wrapping this core (what protocols receive), by weak
    /// reference: the wrapper holds the core, and the fd's registration holds the wrapper
    /// while the transport is open, as asyncio's selector holds its transport. So a
    /// transport nobody holds is freed by reference counting, not left to the cycle
    /// collector (an unclosed one warns then, as asyncio's does).
    transport: Option<Py<PyWeakrefReference>>,
    protocol: Option<Py<PyAny>>,
    /// `protocol` is an `asyncio.BufferedProtocol` (reads go into its buffer).
    buffered: bool,
    /// `protocol` is ferroloop's native TLS protocol: reads are fed to it directly.
    tls: Option<Py<crate::net::tls::SSLProtocolCore>>,
    protocol_connected: bool,
    /// The socket; `None` once `connection_lost` ran (asyncio's `_sock = None`).
    sock: Option<Sock>,
    server: Option<Py<PyAny>>,
    extra: Option<Py<PyDict>>,
    /// The context the transport's callbacks run in.
    context: Option<Py<PyAny>>,
    /// `loop.sendfile()`'s wait for an empty write queue.
    empty_waiter: Option<Py<PyAny>>,
    queue: WriteQueue,
    closing: bool,
    eof: bool,
    paused: bool,
    protocol_paused: bool,
    /// asyncio's `_conn_lost`: set once `connection_lost` is scheduled, then counts the
    /// writes made after it.
    conn_lost: u32,
    /// A write pipe's own `_conn_lost` (asyncio's pipe transport counts a failed write and
    /// every write dropped after `close()`, and warns from the sixth on; `conn_lost`
    /// above only guards `connection_lost`).
    pipe_conn_lost: u32,
    high_water: usize,
    low_water: usize,
    /// Polled for reading (asyncio: `_read_ready` is the fd's reader).
    reading: bool,
    /// Polled for writing (asyncio: `_write_ready` is the fd's writer).
    writing: bool,
    /// Bumped whenever the reader is added or removed: a readable event queued before
    /// is stale then, as asyncio's cancelled reader handle is.
    read_gen: u32,
}

/// The native core of a stream transport. See the module docs.
#[pyclass(module = "ferroloop._ferroloop", frozen, weakref)]
pub struct StreamCore {
    fd: RawFd,
    kind: Kind,
    loop_: Py<LoopCore>,
    st: GilCell<StreamState>,
}

impl StreamCore {
    /// Whether `close()`/`abort()` was called (asyncio lets `add_reader` take a closing
    /// transport's fd).
    pub(crate) fn is_closing_now(&self) -> bool {
        self.st.with(|s| s.closing)
    }

    fn loop_<'py>(&self, py: Python<'py>) -> &Bound<'py, LoopCore> {
        self.loop_.bind(py)
    }

    /// The Python-visible transport, or `None` once released.
    fn transport<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.st
            .with(|s| s.transport.as_ref().map(|t| t.clone_ref(py)))
            .and_then(|t| t.into_bound(py).upgrade())
            .unwrap_or_else(|| py.None().into_bound(py))
    }

    fn debug(&self, py: Python<'_>) -> bool {
        crate::event_loop::debug_of(self.loop_(py).as_any()).unwrap_or(false)
    }

    /// Logs `"%r <what>"` at debug level when the loop is in debug mode.
    fn debug_log(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        if self.debug(py) {
            let fmt = format!("%r {what}");
            logger(py)?.call_method1("debug", (fmt, self.transport(py)))?;
        }
        Ok(())
    }

    /// Polls the fd for what the state asks for now.
    /// Polls the fd for what the transport waits for now. An error here means the fd was
    /// closed behind the transport's back; its next syscall reports that.
    fn sync_interest(slf: &Bound<'_, Self>) {
        let _ = Self::try_sync_interest(slf);
    }

    /// [`Self::sync_interest`], with epoll's error: it refuses an fd that was closed, or
    /// one it cannot poll (such as `/dev/zero`).
    fn try_sync_interest(slf: &Bound<'_, Self>) -> std::io::Result<()> {
        let this = slf.get();
        let (interest, gen) = this.st.with(|s| {
            (
                Interest {
                    read: s.reading,
                    write: s.writing,
                },
                s.read_gen,
            )
        });
        LoopCore::set_owner_interest(this.loop_(slf.py()), this.fd, slf.as_ptr(), interest, gen)
    }

    /// Schedules `event` as the next job of the ready queue.
    fn schedule(slf: &Bound<'_, Self>, event: StreamEvent) {
        let job = StreamJob {
            core: slf.clone().unbind(),
            event,
        };
        slf.get().loop_(slf.py()).get().push_stream_job(job);
    }

    /// Sets `protocol`, choosing the read path by its kind (asyncio's `set_protocol`).
    fn set_protocol_inner(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        let buffered =
            protocol.is_instance(crate::names::Names::get(py)?.buffered_protocol.bind(py))?;
        let tls = protocol
            .cast::<crate::net::tls::SSLProtocolCore>()
            .ok()
            .map(|t| t.clone().unbind());
        let old = self.st.with(|s| {
            s.buffered = buffered;
            let old_tls = std::mem::replace(&mut s.tls, tls);
            s.protocol_connected = true;
            (s.protocol.replace(protocol.clone().unbind()), old_tls)
        });
        drop(old);
        Ok(())
    }
}

/// The native core of `transport` when it is a ferroloop stream transport (the TLS
/// protocol then writes into it directly).
pub(crate) fn core_of(transport: &Bound<'_, PyAny>) -> Option<Py<StreamCore>> {
    let py = transport.py();
    let cls = TRANSPORT_CLASS.get(py)?;
    if !transport.get_type().is(cls.bind(py)) {
        return None;
    }
    transport
        .getattr(pyo3::intern!(py, "_core"))
        .ok()?
        .cast_into::<StreamCore>()
        .ok()
        .map(Bound::unbind)
}

/// `transport.write(data)` on a native transport's core.
pub(crate) fn write_data(core: &Bound<'_, StreamCore>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    write::write(core, data)
}

/// TCP_NODELAY on a TCP stream socket, as asyncio documents ("set by default for all TCP
/// connections"). Its `base_events._set_nodelay` also asks for `sock.proto ==
/// IPPROTO_TCP`, which leaves out a TCP socket made with proto 0 (`socket.socket()`, as
/// uvicorn makes its listening socket) and its accepted connections: those get Nagle's
/// 40 ms stalls on asyncio. ferroloop follows the documentation, as uvloop does.
fn set_nodelay(fd: RawFd, family: i32, ty: i32, proto: i32) -> PyResult<()> {
    if (family == libc::AF_INET || family == libc::AF_INET6)
        && ty == libc::SOCK_STREAM
        && (proto == libc::IPPROTO_TCP || proto == 0)
    {
        crate::sys::set_nodelay(fd).map_err(crate::pyo::errno::os_error)?;
    }
    Ok(())
}

/// `loop._make_socket_transport(sock, protocol, waiter, extra=, server=)`: a transport
/// over connected socket object `sock`, as asyncio's `_SelectorSocketTransport(...)`
/// makes it.
pub(crate) fn make_socket_transport<'py>(
    lp: &Bound<'py, LoopCore>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    waiter: Option<&Bound<'py, PyAny>>,
    extra: Option<&Bound<'py, PyAny>>,
    server: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let fd: RawFd = sock.call_method0("fileno")?.extract()?;
    let extra = match extra {
        Some(e) if !e.is_none() => e.cast::<PyDict>()?.copy()?,
        _ => PyDict::new(py),
    };
    let tsock = crate::names::Names::get(py)?.transport_socket.bind(py);
    extra.set_item("socket", tsock.call1((sock,))?)?;
    let os_error = py.get_type::<pyo3::exceptions::PyOSError>();
    match sock.call_method0("getsockname") {
        Ok(n) => extra.set_item("sockname", n)?,
        Err(e) if e.matches(py, &os_error)? => extra.set_item("sockname", py.None())?,
        Err(e) => return Err(e),
    }
    if !extra.contains("peername")? {
        match sock.call_method0("getpeername") {
            Ok(n) => extra.set_item("peername", n)?,
            Err(e) if e.matches(py, &os_error)? => extra.set_item("peername", py.None())?,
            Err(e) => return Err(e),
        }
    }
    // What `sock.family` and `sock.type` give, without their Python-level properties.
    let family = crate::sys::sockopt_int(fd, libc::SO_DOMAIN).unwrap_or(-1);
    let ty = crate::sys::sockopt_int(fd, libc::SO_TYPE).unwrap_or(-1);
    let proto: i32 = sock.getattr(pyo3::intern!(py, "proto"))?.extract()?;
    let server = server.filter(|s| !s.is_none());
    build(
        lp,
        fd,
        (Kind::Socket, true),
        Sock::Py(sock.clone().unbind()),
        (family, ty, proto),
        extra,
        protocol,
        waiter,
        server,
    )
}

/// A transport over a connection the listener accepted (`fd`, with the listening
/// socket's `family`/`ty`/`proto` and the peer's address): no socket object is made
/// until asked for (see [`sock`]).
pub(crate) fn make_accepted_transport<'py>(
    lp: &Bound<'py, LoopCore>,
    fd: std::os::fd::OwnedFd,
    kind: (i32, i32, i32),
    peername: Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    server: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let extra = PyDict::new(py);
    extra.set_item(pyo3::intern!(py, "peername"), peername)?;
    let (family, ty, proto) = kind;
    build(
        lp,
        raw,
        (Kind::Socket, true),
        Sock::Fd {
            fd,
            family,
            ty,
            proto,
        },
        kind,
        extra,
        protocol,
        None,
        server.filter(|s| !s.is_none()),
    )
}

/// The common part of making a transport (a socket's, or a pipe's, see [`pipe`]): the
/// core, the Python-visible transport, the server's count, the fd's registration,
/// `TCP_NODELAY`, and the scheduled `connection_made` / start of reading / waiter.
#[allow(clippy::too_many_arguments)]
fn build<'py>(
    lp: &Bound<'py, LoopCore>,
    fd: RawFd,
    (kind, start_reading): (Kind, bool),
    sock: Sock,
    (family, ty, proto): (i32, i32, i32),
    extra: Bound<'py, PyDict>,
    protocol: &Bound<'py, PyAny>,
    waiter: Option<&Bound<'py, PyAny>>,
    server: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let core = Bound::new(
        py,
        StreamCore {
            fd,
            kind,
            loop_: lp.clone().unbind(),
            st: GilCell::new(StreamState {
                transport: None,
                protocol: None,
                buffered: false,
                tls: None,
                protocol_connected: false,
                sock: Some(sock),
                server: server.map(|s| s.clone().unbind()),
                extra: Some(extra.unbind()),
                context: Some(copy_current(py)?.unbind()),
                empty_waiter: None,
                queue: WriteQueue::default(),
                closing: false,
                eof: false,
                paused: false,
                protocol_paused: false,
                conn_lost: 0,
                pipe_conn_lost: 0,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                reading: false,
                writing: false,
                read_gen: 0,
            }),
        },
    )?;
    core.get().set_protocol_inner(protocol)?;
    let cls = match kind {
        Kind::Socket => TRANSPORT_CLASS.get(py),
        Kind::ReadPipe | Kind::WritePipe => pipe::transport_class(py, kind),
    }
    .ok_or_else(|| PyRuntimeError::new_err("ferroloop's transport class is not registered"))?;
    let transport = cls.bind(py).call1((&core,))?;
    let weak = PyWeakrefReference::new(&transport)?;
    core.get().st.with(|s| s.transport = Some(weak.unbind()));
    if let Some(server) = server {
        if crate::names::Names::get(py)?.server_attach_takes_transport {
            server.call_method1(pyo3::intern!(py, "_attach"), (&transport,))?;
        } else {
            server.call_method0(pyo3::intern!(py, "_attach"))?;
        }
    }
    LoopCore::adopt_fd(
        lp,
        fd,
        Owner::Stream(StreamOwner::new(
            core.clone().unbind(),
            transport.clone().unbind(),
        )),
    )?;
    if kind == Kind::Socket {
        set_nodelay(fd, family, ty, proto)?;
    }
    StreamCore::schedule(&core, StreamEvent::ConnectionMade);
    // (A write pipe over a character device is never polled for reading.)
    if start_reading {
        StreamCore::schedule(&core, StreamEvent::StartReading);
    }
    if let Some(w) = waiter.filter(|w| !w.is_none()) {
        StreamCore::schedule(&core, StreamEvent::WakeWaiter(w.clone().unbind()));
    }
    Ok(transport)
}

/// Runs a stream transport's job in the transport's context. Errors that asyncio's
/// transport would let escape its callback (a failing `sock.close()`, say) are reported
/// as a failing callback is; `SystemExit` and `KeyboardInterrupt` propagate.
pub(crate) fn run_job(lp: &Bound<'_, LoopCore>, job: StreamJob) -> PyResult<()> {
    let py = lp.py();
    let core = job.core.into_bound(py);
    let Some(context) = core
        .get()
        .st
        .with(|s| s.context.as_ref().map(|c| c.clone_ref(py)))
    else {
        return Ok(());
    };
    let callback = job.event.asyncio_callback("_write_ready");
    let res = with_context(py, context.bind(py), || match job.event {
        StreamEvent::Readable(gen) => read::on_readable(&core, gen),
        StreamEvent::Writable => write::on_writable(&core),
        StreamEvent::ConnectionMade => {
            let this = core.get();
            let proto = this
                .st
                .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)));
            match proto {
                Some(p) => p
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "connection_made"), (this.transport(py),))
                    .map(drop),
                None => Ok(()),
            }
        }
        StreamEvent::StartReading => {
            let start = core.get().st.with(|s| {
                let start = !s.closing && !s.paused && !s.reading;
                if start {
                    s.reading = true;
                    s.read_gen = s.read_gen.wrapping_add(1);
                }
                start
            });
            if start {
                // asyncio's `call_soon(self._add_reader, ...)`: epoll's refusal is that
                // callback's error, reported to the exception handler.
                StreamCore::try_sync_interest(&core).map_err(os_error)?;
            }
            Ok(())
        }
        StreamEvent::WakeWaiter(w) => {
            let w = w.bind(py);
            if !w
                .call_method0(pyo3::intern!(py, "cancelled"))?
                .is_truthy()?
            {
                w.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
            }
            Ok(())
        }
        StreamEvent::ConnectionLost(exc) => close::call_connection_lost(&core, exc),
        StreamEvent::EofReceived => {
            let proto = core
                .get()
                .st
                .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)));
            match proto {
                Some(p) => p
                    .bind(py)
                    .call_method0(pyo3::intern!(py, "eof_received"))
                    .map(drop),
                None => Ok(()),
            }
        }
    });
    match res {
        Err(e) if !crate::pyo::exc::is_fatal(py, &e) => {
            let this = core.get();
            let protocol = this
                .st
                .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
                .map(|p| p.into_bound(py));
            crate::net::report_callback_error(lp, callback, &this.transport(py), protocol, e)
        }
        other => other,
    }
}
