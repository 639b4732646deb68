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
//! (readable: `data_received` / `get_buffer`+`buffer_updated`, EOF), `reader.rs` (reads
//! fed to asyncio's own `StreamReader` without its Python frames), `write.rs` (`write`,
//! `writelines`, flushing, flow control), `close.rs` (close, abort, fatal errors,
//! `connection_lost`), [`sock`] (the socket: an object, or an accepted connection's fd until
//! an object is asked for, or a pipe's file object), [`pipe`] (what pipe transports do
//! differently: `read(2)`/`writev(2)`, their EOF, close and error rules). What the stream
//! and datagram cores share (the common state, the job runner, close / abort / fatal
//! errors, pause / resume reading, the common Python-visible methods) is
//! `net/transport.rs`; `StreamCore` implements its `TransportCore`.

mod api;
mod close;
pub(crate) mod pipe;
pub(crate) mod queue;
mod read;
pub(crate) mod reader;
pub(crate) mod sock;
mod write;

pub(crate) use api::install_fast_methods;

use std::os::fd::RawFd;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{LoopCore, Owner, StreamOwner};
use crate::net::transport::{self, transport_core_fields, MakeArgs, TransportCore, TransportState};
use crate::pyo::GilCell;
use queue::WriteQueue;
use sock::Sock;

/// `ferroloop._SocketTransport`, registered by the Python package at import.
static TRANSPORT_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Registers the Python class that wraps a [`StreamCore`] (`ferroloop._SocketTransport`).
#[pyfunction]
pub fn _register_transport_class(py: Python<'_>, cls: Bound<'_, PyType>) -> PyResult<()> {
    api::install_wrapper_methods(&cls)?;
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

pub(crate) use crate::net::transport::{run_job, StreamEvent};

/// A job of a stream transport (`Job::Stream`).
pub(crate) type StreamJob = crate::net::transport::TransportJob<StreamCore>;

/// The mutable state of a stream transport: what every transport has ([`TransportState`],
/// which it derefs to), and what a stream has.
pub(crate) struct StreamState {
    common: TransportState,
    /// `protocol` is an `asyncio.BufferedProtocol` (reads go into its buffer).
    buffered: bool,
    /// `protocol` is exactly asyncio's `StreamReaderProtocol`: reads may go straight into
    /// its reader (see [`reader`]).
    stock_stream: bool,
    /// How the next read is made (from the size of the last one).
    read_plan: read::ReadPlan,
    /// `protocol` is ferroloop's native TLS protocol: reads are fed to it directly.
    tls: Option<Py<crate::net::tls::SSLProtocolCore>>,
    /// The socket; `None` once `connection_lost` ran (asyncio's `_sock = None`).
    sock: Option<Sock>,
    server: Option<Py<PyAny>>,
    /// `loop.sendfile()`'s wait for an empty write queue.
    empty_waiter: Option<Py<PyAny>>,
    queue: WriteQueue,
    eof: bool,
    /// A write pipe's own `_conn_lost` (asyncio's pipe transport counts a failed write and
    /// every write dropped after `close()`, and warns from the sixth on; `conn_lost`
    /// only guards `connection_lost`).
    pipe_conn_lost: u32,
}

impl std::ops::Deref for StreamState {
    type Target = TransportState;
    #[inline]
    fn deref(&self) -> &TransportState {
        &self.common
    }
}

impl std::ops::DerefMut for StreamState {
    #[inline]
    fn deref_mut(&mut self) -> &mut TransportState {
        &mut self.common
    }
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

    // What `read.rs` and `write.rs` call ([`TransportCore`]'s, by name).

    #[inline]
    fn loop_<'py>(&self, py: Python<'py>) -> &Bound<'py, LoopCore> {
        self.loop_.bind(py)
    }

    fn transport<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        TransportCore::transport(self, py)
    }

    fn debug_log(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        TransportCore::debug_log(self, py, what)
    }

    #[inline]
    fn sync_interest(slf: &Bound<'_, Self>) {
        <Self as TransportCore>::sync_interest(slf)
    }

    /// Sets `protocol`, choosing the read path by its kind (asyncio's `set_protocol`).
    fn set_protocol_inner(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        let buffered =
            protocol.is_instance(crate::names::Names::get(py)?.buffered_protocol.bind(py))?;
        let stock_stream = reader::is_stock_protocol(protocol);
        let tls = protocol
            .cast::<crate::net::tls::SSLProtocolCore>()
            .ok()
            .map(|t| t.clone().unbind());
        let old = self.st.with(|s| {
            s.buffered = buffered;
            s.stock_stream = stock_stream;
            let old_tls = std::mem::replace(&mut s.tls, tls);
            s.protocol_connected = true;
            (s.protocol.replace(protocol.clone().unbind()), old_tls)
        });
        drop(old);
        Ok(())
    }
}

impl TransportCore for StreamCore {
    type State = StreamState;
    const WRITE_READY: &'static str = "_write_ready";
    type Dropped = ();
    type Cleared = (
        Option<Py<crate::net::tls::SSLProtocolCore>>,
        Option<Py<PyAny>>,
        Option<Py<PyAny>>,
    );

    transport_core_fields!();

    fn push_job(lp: &LoopCore, job: StreamJob) {
        lp.push_stream_job(job);
    }

    fn owner(core: Py<Self>, transport: Py<PyAny>) -> Owner {
        Owner::Stream(StreamOwner::new(core, transport))
    }

    fn is_open(s: &StreamState) -> bool {
        s.sock.is_some()
    }

    fn queue_is_empty(s: &StreamState) -> bool {
        s.queue.is_empty()
    }

    fn buffer_size(s: &StreamState) -> usize {
        s.queue.len()
    }

    fn drop_queue(s: &mut StreamState) {
        // Only `bytes` objects, exactly: dropping them runs no Python code.
        s.queue.clear();
    }

    #[inline]
    fn on_readable(slf: &Bound<'_, Self>, gen: u32) -> PyResult<()> {
        read::on_readable(slf, gen)
    }

    #[inline]
    fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        write::on_writable(slf)
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        close::call_connection_lost(slf, exc)
    }

    fn visit_own(s: &StreamState, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&s.tls)?;
        if let Some(sock) = &s.sock {
            sock.visit(visit)?;
        }
        visit.call(&s.server)?;
        visit.call(&s.empty_waiter)
    }

    fn clear_own(s: &mut StreamState) -> Self::Cleared {
        (s.tls.take(), s.server.take(), s.empty_waiter.take())
    }

    /// The socket's entries that are only made when asked for (see [`sock`]).
    fn fill_extra(&self, extra: &Bound<'_, PyDict>, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(key) = name.cast::<pyo3::types::PyString>() else {
            return Ok(false);
        };
        let key = key.to_str()?;
        if !sock::SOCKET_KEYS.contains(&key) {
            return Ok(false);
        }
        self.fill_socket_extra(name.py(), extra, key)?;
        Ok(true)
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
        .getattr(intern!(py, "_core"))
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
    args: MakeArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let fd: RawFd = sock.call_method0(intern!(sock.py(), "fileno"))?.extract()?;
    let extra = transport::socket_extra(sock, args.extra)?;
    // What `sock.family` and `sock.type` give, without their Python-level properties.
    let family = crate::sys::sockopt_int(fd, libc::SO_DOMAIN).unwrap_or(-1);
    let ty = crate::sys::sockopt_int(fd, libc::SO_TYPE).unwrap_or(-1);
    let proto: i32 = sock.getattr(intern!(lp.py(), "proto"))?.extract()?;
    build(
        lp,
        fd,
        (Kind::Socket, true),
        Sock::Py(sock.clone().unbind()),
        (family, ty, proto),
        extra,
        protocol,
        args,
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
    extra.set_item(intern!(py, "peername"), peername)?;
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
        MakeArgs {
            server,
            ..MakeArgs::default()
        },
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
    args: MakeArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let server = args.server.filter(|s| !s.is_none());
    let core = Bound::new(
        py,
        StreamCore {
            fd,
            kind,
            loop_: lp.clone().unbind(),
            st: GilCell::new(StreamState {
                common: TransportState::new(py, None, extra)?,
                buffered: false,
                stock_stream: false,
                read_plan: read::ReadPlan::Copy,
                tls: None,
                sock: Some(sock),
                server: server.map(|s| s.clone().unbind()),
                empty_waiter: None,
                queue: WriteQueue::default(),
                eof: false,
                pipe_conn_lost: 0,
            }),
        },
    )?;
    core.get().set_protocol_inner(protocol)?;
    let cls = match kind {
        Kind::Socket => TRANSPORT_CLASS.get(py),
        Kind::ReadPipe | Kind::WritePipe => pipe::transport_class(py, kind),
    };
    let transport = transport::wrap(&core, cls, "transport")?;
    if let Some(server) = server {
        if crate::names::Names::get(py)?.server_attach_takes_transport {
            server.call_method1(intern!(py, "_attach"), (&transport,))?;
        } else {
            server.call_method0(intern!(py, "_attach"))?;
        }
    }
    transport::adopt(&core, &transport)?;
    if kind == Kind::Socket {
        set_nodelay(fd, family, ty, proto)?;
    }
    // (A write pipe over a character device is never polled for reading.)
    transport::schedule_start(&core, start_reading, args.waiter);
    Ok(transport)
}
