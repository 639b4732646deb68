//! The datagram transport: a native implementation of asyncio's
//! `selector_events._SelectorDatagramTransport` for UDP and Unix datagram sockets, made
//! by `loop.create_datagram_endpoint()` (asyncio's own orchestration, bound to the loop,
//! calls `_make_datagram_transport`).
//!
//! [`DatagramCore`] holds the state: the socket, the protocol, the queue of datagrams
//! that could not be sent at once, flow control, and the close / abort flags. The object
//! protocols see is `ferroloop._DatagramTransport`, a subclass of
//! `asyncio.DatagramTransport` (and of `_FlowControlMixin`, hence `asyncio.Transport`, as
//! asyncio's is) whose methods call into this core; `sendto` is the core's own bound
//! method, so a send runs no Python frame.
//!
//! Like a stream transport it owns its fd in the reactor (`Owner::Datagram`), polled for
//! reading while it reads and for writing while datagrams are queued; readiness becomes
//! `Job::Datagram` jobs in the ready queue, in event order with the other I/O callbacks,
//! and `connection_made` / `connection_lost` are jobs too, so the order of callbacks is
//! asyncio's.
//!
//! Receiving: `recvfrom` into a per-thread buffer of asyncio's `max_size` (256 KiB), a
//! `bytes` of the datagram's size, `datagram_received(data, addr)`. asyncio reads one
//! datagram per readiness event; this transport reads up to [`READS_PER_EVENT`] while the
//! socket has them (libuv does the same), so a burst that the kernel buffer holds is
//! delivered in a few iterations, and other callbacks still run between batches. The
//! sender's address is converted in Rust (IPv4, IPv6, Unix paths), and the last one is
//! kept with its Python object: an echo server sending back to `addr` needs no parsing.
//!
//! Sending: `sendto(data, addr)` sends at once when nothing is queued (`send` on a
//! connected socket, else `sendto` with the address converted in Rust when it is numeric;
//! other addresses, a host name or a malformed one, go through `sock.sendto` so that the
//! socket module resolves them or raises its own exception), and queues `(data, addr)`
//! otherwise, flushed when the fd is writable.
//!
//! Per-version behaviour, as asyncio's: before 3.13 an empty datagram is not sent, and
//! `get_write_buffer_size()` counts the queued bytes; from 3.13 empty datagrams are sent
//! and each queued datagram counts 8 bytes more (its header). asyncio 3.13 subtracts only
//! the data's length when it sends a queued datagram, so its count never returns to 0;
//! here it does (a known difference, see the README).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::RawFd;

use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyString, PyTuple, PyType, PyWeakrefMethods,
    PyWeakrefReference,
};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{DatagramOwner, LoopCore, Owner};
use crate::names::{logger, Names};
use crate::net::stream::StreamEvent;
use crate::net::would_block;
use crate::pyo::buffer::with_bytes;
use crate::pyo::context::{copy_current, with_context};
use crate::pyo::errno::os_error;
use crate::pyo::exc::is_fatal;
use crate::pyo::GilCell;
use crate::reactor::Interest;
use crate::sys::{self, SockAddr};

/// asyncio's `max_size`: the largest datagram received whole.
const MAX_SIZE: usize = 256 * 1024;
/// At most this many datagrams are received per readiness event (libuv's bound).
const READS_PER_EVENT: usize = 32;
/// What asyncio 3.13+ adds to `get_write_buffer_size()` per queued datagram.
const HEADER_SIZE: usize = 8;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// `ferroloop._DatagramTransport`, registered by the Python package at import.
static TRANSPORT_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Registers the Python class that wraps a [`DatagramCore`].
#[pyfunction]
pub fn _register_datagram_transport_class(py: Python<'_>, cls: Bound<'_, PyType>) -> PyResult<()> {
    let _ = TRANSPORT_CLASS.set(py, cls.unbind());
    Ok(())
}

thread_local! {
    /// The buffer `recvfrom()` fills before the datagram is copied into a `bytes` of its
    /// size: one per thread, reused by every datagram transport of the thread's loop.
    static RECV_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(MAX_SIZE));
}

/// A job of a datagram transport (`Job::Datagram`); the events are a stream transport's.
pub(crate) struct DatagramJob {
    pub(crate) core: Py<DatagramCore>,
    pub(crate) event: StreamEvent,
}

impl DatagramJob {
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

/// Where a datagram goes.
enum Dest {
    /// The connected peer: `send()`.
    Peer,
    /// An address converted natively: `sendto()`.
    Addr(SockAddr),
    /// An address that only the socket module converts (a host name, a Unix path, a
    /// malformed one, `None`): `sock.sendto(data, addr)`.
    Py(Py<PyAny>),
}

/// A datagram waiting for the socket to be writable.
struct Queued {
    data: Vec<u8>,
    dest: Dest,
}

/// The mutable state of a datagram transport.
struct State {
    /// The Python-visible transport, by weak reference (see `net::stream`'s `transport`).
    transport: Option<Py<PyWeakrefReference>>,
    protocol: Option<Py<PyAny>>,
    protocol_connected: bool,
    /// The socket object; `None` once `connection_lost` ran.
    sock: Option<Py<PyAny>>,
    extra: Option<Py<PyDict>>,
    context: Option<Py<PyAny>>,
    /// asyncio's `_address`: the remote address given to `create_datagram_endpoint`
    /// (kept only when truthy, as asyncio tests it).
    address: Option<Py<PyAny>>,
    /// `extra['peername']` is truthy: datagrams are sent with `send()`.
    connected: bool,
    queue: VecDeque<Queued>,
    /// asyncio's `_buffer_size`.
    buffer_size: usize,
    closing: bool,
    paused: bool,
    protocol_paused: bool,
    conn_lost: u32,
    high_water: usize,
    low_water: usize,
    reading: bool,
    writing: bool,
    read_gen: u32,
    /// The last sender's address, with its Python form (reused for the next datagram
    /// from it, and for a send to that object).
    peer: Option<(Py<PyAny>, SockAddr)>,
    /// The last address object sent to that was not `peer`'s, converted.
    sent_to: Option<(Py<PyAny>, SockAddr)>,
}

/// The native core of a datagram transport. See the module docs.
#[pyclass(module = "ferroloop._ferroloop", frozen, weakref)]
pub struct DatagramCore {
    fd: RawFd,
    family: i32,
    /// 3.13+: empty datagrams are sent, queued ones count their header.
    py313: bool,
    loop_: Py<LoopCore>,
    st: GilCell<State>,
}

/// The outcome of one send.
enum Sent {
    Done,
    WouldBlock,
    /// An `OSError`: for `protocol.error_received()`.
    Failed(PyErr),
    /// Any other exception: fatal for the transport.
    Fatal(PyErr),
}

fn sent_native(res: std::io::Result<usize>) -> Sent {
    match res {
        Ok(_) => Sent::Done,
        Err(e) if would_block(&e) => Sent::WouldBlock,
        Err(e) => Sent::Failed(os_error(e)),
    }
}

/// `sock.sendto(data, addr)`, its exceptions sorted as asyncio's `sendto` sorts them.
fn send_py(
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    addr: &Bound<'_, PyAny>,
) -> PyResult<Sent> {
    let py = sock.py();
    match sock.call_method1(pyo3::intern!(py, "sendto"), (data, addr)) {
        Ok(_) => Ok(Sent::Done),
        Err(e)
            if e.is_instance_of::<PyBlockingIOError>(py)
                || e.is_instance_of::<PyInterruptedError>(py) =>
        {
            Ok(Sent::WouldBlock)
        }
        Err(e) if is_fatal(py, &e) => Err(e),
        Err(e) if e.is_instance_of::<PyOSError>(py) => Ok(Sent::Failed(e)),
        Err(e) => Ok(Sent::Fatal(e)),
    }
}

fn check_bytes_like(data: &Bound<'_, PyAny>) -> PyResult<()> {
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

/// Runs `f` on the bytes of bytes-like `data` (a `bytes` read in place).
fn with_data<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    match data.cast::<PyBytes>() {
        Ok(b) => Ok(f(b.as_bytes())),
        Err(_) => with_bytes(data, f),
    }
}

/// A port as the socket module takes it (an int in 0..=65535), else `None`.
fn port_of(obj: &Bound<'_, PyAny>) -> Option<u16> {
    if !obj.is_instance_of::<PyInt>() {
        return None;
    }
    obj.extract::<u16>().ok()
}

/// The native form of IP address `addr` for a socket of `family`, when it is numeric
/// and well-formed; `None` leaves it to the socket module.
fn numeric_sockaddr(family: i32, addr: &Bound<'_, PyAny>) -> Option<SockAddr> {
    let t = addr.cast_exact::<PyTuple>().ok()?;
    let host = t.get_item(0).ok()?;
    let host = host.cast_exact::<PyString>().ok()?;
    let host = host.to_str().ok()?;
    match (family, t.len()) {
        (libc::AF_INET, 2) => {
            let ip: std::net::Ipv4Addr = host.parse().ok()?;
            let port = port_of(&t.get_item(1).ok()?)?;
            Some(SockAddr::from_ip(&std::net::SocketAddr::new(
                ip.into(),
                port,
            )))
        }
        (libc::AF_INET6, 2..=4) => {
            let ip: std::net::Ipv6Addr = host.parse().ok()?;
            let port = port_of(&t.get_item(1).ok()?)?;
            let flowinfo = match t.get_item(2) {
                Ok(f) if f.is_instance_of::<PyInt>() => f.extract::<u32>().ok()?,
                Ok(_) => return None,
                Err(_) => 0,
            };
            if flowinfo > 0xfffff {
                return None;
            }
            let scope_id = match t.get_item(3) {
                Ok(s) if s.is_instance_of::<PyInt>() => s.extract::<u32>().ok()?,
                Ok(_) => return None,
                Err(_) => 0,
            };
            Some(SockAddr::from_ip(&std::net::SocketAddr::V6(
                std::net::SocketAddrV6::new(ip, port, flowinfo, scope_id),
            )))
        }
        _ => None,
    }
}

impl DatagramCore {
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

    fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st
            .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .map(|p| p.into_bound(py))
    }

    fn debug(&self, py: Python<'_>) -> bool {
        crate::event_loop::debug_of(self.loop_(py).as_any()).unwrap_or(false)
    }

    fn debug_log(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        if self.debug(py) {
            let fmt = format!("%r {what}");
            logger(py)?.call_method1("debug", (fmt, self.transport(py)))?;
        }
        Ok(())
    }

    /// What a queued datagram of `n` bytes adds to `get_write_buffer_size()`.
    fn cost(&self, n: usize) -> usize {
        if self.py313 {
            n + HEADER_SIZE
        } else {
            n
        }
    }

    /// Polls the fd for what the state asks for now.
    fn sync_interest(slf: &Bound<'_, Self>) {
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
        LoopCore::set_owner_interest(this.loop_(slf.py()), this.fd, slf.as_ptr(), interest, gen);
    }

    fn schedule(slf: &Bound<'_, Self>, event: StreamEvent) {
        let job = DatagramJob {
            core: slf.clone().unbind(),
            event,
        };
        slf.get().loop_(slf.py()).get().push_datagram_job(job);
    }

    /// Where a datagram for `addr` goes (see [`Dest`]).
    fn dest_of(&self, py: Python<'_>, addr: Option<&Bound<'_, PyAny>>, connected: bool) -> Dest {
        if connected {
            return Dest::Peer;
        }
        let Some(addr) = addr else {
            return Dest::Py(py.None());
        };
        let cached = self.st.with(|s| {
            [&s.peer, &s.sent_to]
                .into_iter()
                .flatten()
                .find(|(obj, _)| obj.is(addr))
                .map(|(_, sa)| *sa)
        });
        if let Some(sa) = cached {
            return Dest::Addr(sa);
        }
        match numeric_sockaddr(self.family, addr) {
            Some(sa) => {
                let old = self
                    .st
                    .with(|s| s.sent_to.replace((addr.clone().unbind(), sa)));
                drop(old);
                Dest::Addr(sa)
            }
            None => Dest::Py(addr.clone().unbind()),
        }
    }

    /// The sender's address as the socket module gives it (the last one is reused).
    fn addr_to_python<'py>(&self, py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
        if addr.len == 0 {
            // No address (an unbound Unix datagram socket sent it).
            return Ok(py.None().into_bound(py));
        }
        let cached = self.st.with(|s| match &s.peer {
            Some((obj, sa)) if sa.as_bytes() == addr.as_bytes() => Some(obj.clone_ref(py)),
            _ => None,
        });
        if let Some(obj) = cached {
            return Ok(obj.into_bound(py));
        }
        let obj = match crate::net::sockaddr::to_python(py, addr)? {
            Some(o) => o,
            None => other_address(py, addr)?,
        };
        let old = self
            .st
            .with(|s| s.peer.replace((obj.clone().unbind(), *addr)));
        drop(old);
        Ok(obj)
    }
}

/// The socket module's form of an address `sockaddr::to_python` leaves to it: a named
/// Unix address, a scoped or IPv4-compatible IPv6 address; anything else as
/// `(family, sa_data)`.
fn other_address<'py>(py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
    let bytes = addr.as_bytes();
    let path_at = std::mem::size_of::<libc::sa_family_t>();
    match addr.family() {
        libc::AF_UNIX => {
            let path = &bytes[path_at.min(bytes.len())..];
            if path.first() == Some(&0) {
                // Linux's abstract namespace: the bytes as they are.
                return Ok(PyBytes::new(py, path).into_any());
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            let os = py.import("os")?;
            os.getattr("fsdecode")?
                .call1((PyBytes::new(py, &path[..end]),))
        }
        libc::AF_INET6 => {
            let a = addr
                .v6()
                .ok_or_else(|| PyRuntimeError::new_err("not an IPv6 address"))?;
            let host = match sys::getnameinfo(addr, libc::NI_NUMERICHOST | libc::NI_NUMERICSERV) {
                Ok((host, _)) => String::from_utf8_lossy(&host).into_owned(),
                Err(_) => a.ip().to_string(),
            };
            Ok((host, a.port(), a.flowinfo(), a.scope_id())
                .into_pyobject(py)?
                .into_any())
        }
        family => Ok((family, PyBytes::new(py, &addr.sa_data()))
            .into_pyobject(py)?
            .into_any()),
    }
}

/// `loop._make_datagram_transport(sock, protocol, address=None, waiter=None,
/// extra=None)`, as asyncio's selector loop makes it.
pub(crate) fn make_datagram_transport<'py>(
    lp: &Bound<'py, LoopCore>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    address: Option<&Bound<'py, PyAny>>,
    waiter: Option<&Bound<'py, PyAny>>,
    extra: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let fd: RawFd = sock.call_method0("fileno")?.extract()?;
    // asyncio's _ensure_fd_no_transport.
    LoopCore::take_over_from_transport(lp, fd)?;
    let extra = match extra {
        Some(e) if !e.is_none() => e.cast::<PyDict>()?.copy()?,
        _ => PyDict::new(py),
    };
    let names = Names::get(py)?;
    extra.set_item("socket", names.transport_socket.bind(py).call1((sock,))?)?;
    let os_error_type = py.get_type::<PyOSError>();
    match sock.call_method0("getsockname") {
        Ok(n) => extra.set_item("sockname", n)?,
        Err(e) if e.matches(py, &os_error_type)? => extra.set_item("sockname", py.None())?,
        Err(e) => return Err(e),
    }
    if !extra.contains("peername")? {
        match sock.call_method0("getpeername") {
            Ok(n) => extra.set_item("peername", n)?,
            Err(e) if e.matches(py, &os_error_type)? => extra.set_item("peername", py.None())?,
            Err(e) => return Err(e),
        }
    }
    let connected = match extra.get_item("peername")? {
        Some(p) => p.is_truthy()?,
        None => false,
    };
    let address = match address {
        Some(a) if a.is_truthy()? => Some(a.clone().unbind()),
        _ => None,
    };
    let family = sys::sockopt_int(fd, libc::SO_DOMAIN).unwrap_or(-1);
    let core = Bound::new(
        py,
        DatagramCore {
            fd,
            family,
            py313: py.version_info() >= (3, 13),
            loop_: lp.clone().unbind(),
            st: GilCell::new(State {
                transport: None,
                protocol: Some(protocol.clone().unbind()),
                protocol_connected: true,
                sock: Some(sock.clone().unbind()),
                extra: Some(extra.unbind()),
                context: Some(copy_current(py)?.unbind()),
                address,
                connected,
                queue: VecDeque::new(),
                buffer_size: 0,
                closing: false,
                paused: false,
                protocol_paused: false,
                conn_lost: 0,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                reading: false,
                writing: false,
                read_gen: 0,
                peer: None,
                sent_to: None,
            }),
        },
    )?;
    let cls = TRANSPORT_CLASS.get(py).ok_or_else(|| {
        PyRuntimeError::new_err("ferroloop's datagram transport class is not registered")
    })?;
    let transport = cls.bind(py).call1((&core,))?;
    let weak = PyWeakrefReference::new(&transport)?;
    core.get().st.with(|s| s.transport = Some(weak.unbind()));
    LoopCore::adopt_fd(
        lp,
        fd,
        Owner::Datagram(DatagramOwner::new(
            core.clone().unbind(),
            transport.clone().unbind(),
        )),
    )?;
    DatagramCore::schedule(&core, StreamEvent::ConnectionMade);
    DatagramCore::schedule(&core, StreamEvent::StartReading);
    if let Some(w) = waiter.filter(|w| !w.is_none()) {
        DatagramCore::schedule(&core, StreamEvent::WakeWaiter(w.clone().unbind()));
    }
    Ok(transport)
}

/// Runs a datagram transport's job in the transport's context. An exception that
/// asyncio's transport would let escape its callback (from `datagram_received`, say) is
/// reported as asyncio reports a failing callback; `SystemExit` and `KeyboardInterrupt`
/// propagate.
pub(crate) fn run_job(lp: &Bound<'_, LoopCore>, job: DatagramJob) -> PyResult<()> {
    let py = lp.py();
    let core = job.core.into_bound(py);
    let Some(context) = core
        .get()
        .st
        .with(|s| s.context.as_ref().map(|c| c.clone_ref(py)))
    else {
        return Ok(());
    };
    let what = match &job.event {
        StreamEvent::Readable(_) => "._read_ready()",
        StreamEvent::Writable => "._sendto_ready()",
        _ => "",
    };
    let res = with_context(py, context.bind(py), || match job.event {
        StreamEvent::Readable(gen) => on_readable(&core, gen),
        StreamEvent::Writable => on_writable(&core),
        StreamEvent::ConnectionMade => {
            let this = core.get();
            match this.protocol(py) {
                Some(p) => p
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
                DatagramCore::sync_interest(&core);
            }
            Ok(())
        }
        StreamEvent::WakeWaiter(w) => {
            let w = w.bind(py);
            if !w.call_method0("cancelled")?.is_truthy()? {
                w.call_method1("set_result", (py.None(),))?;
            }
            Ok(())
        }
        StreamEvent::ConnectionLost(exc) => call_connection_lost(&core, exc),
        // Only read pipes schedule it; a datagram transport has no EOF.
        StreamEvent::EofReceived => Ok(()),
    });
    match res {
        Err(e) if !is_fatal(py, &e) => {
            let transport = core.get().transport(py);
            let message = if what.is_empty() {
                "Exception in a transport callback".to_owned()
            } else {
                let cls = transport.get_type().name()?;
                format!("Exception in callback {cls}{what}")
            };
            let ctx = PyDict::new(py);
            ctx.set_item("message", message)?;
            ctx.set_item("exception", e.value(py))?;
            ctx.set_item("transport", transport)?;
            lp.call_method1("call_exception_handler", (ctx,))?;
            Ok(())
        }
        other => other,
    }
}

/// The fd is readable: asyncio's `_read_ready`, for up to [`READS_PER_EVENT`] datagrams.
fn on_readable(slf: &Bound<'_, DatagramCore>, gen: u32) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    for _ in 0..READS_PER_EVENT {
        // Checked before each datagram: the protocol may have paused reading or closed.
        let Some(proto) = this.st.with(|s| {
            if s.conn_lost > 0 || !s.reading || s.read_gen != gen {
                return None;
            }
            s.protocol.as_ref().map(|p| p.clone_ref(py))
        }) else {
            return Ok(());
        };
        let proto = proto.into_bound(py);
        let got = RECV_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            buf.clear();
            match sys::recvfrom_spare(this.fd, &mut buf) {
                Ok((_, addr)) => Ok(Some((PyBytes::new(py, &buf), addr))),
                Err(e) if would_block(&e) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(None) => return Ok(()),
            Err(e) => {
                let exc = os_error(e);
                proto.call_method1(pyo3::intern!(py, "error_received"), (exc.value(py),))?;
                return Ok(());
            }
            Ok(Some((data, addr))) => {
                let addr = this.addr_to_python(py, &addr)?;
                proto.call_method1(pyo3::intern!(py, "datagram_received"), (data, addr))?;
            }
        }
    }
    Ok(())
}

/// `transport.sendto(data, addr=None)`.
fn sendto(
    slf: &Bound<'_, DatagramCore>,
    data: &Bound<'_, PyAny>,
    addr: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    check_bytes_like(data)?;
    let nbytes = with_data(data, |b| b.len())?;
    if nbytes == 0 && !this.py313 {
        return Ok(());
    }
    let mut addr = addr.filter(|a| !a.is_none()).cloned();
    // One look at the state: in the common case (no remote address, the connection not
    // lost, the address object the last peer's) it is all a send needs.
    let (address, connected, lost, empty, cached) = this.st.with(|s| {
        let lost = s.conn_lost > 0 && (s.address.is_some() || s.sock.is_none());
        let cached = match (&addr, s.connected || s.address.is_some()) {
            (Some(a), false) => [&s.peer, &s.sent_to]
                .into_iter()
                .flatten()
                .find(|(obj, _)| obj.is(a))
                .map(|(_, sa)| *sa),
            _ => None,
        };
        (
            s.address.as_ref().map(|a| a.clone_ref(py)),
            s.connected,
            lost,
            s.queue.is_empty(),
            cached,
        )
    });
    if let Some(address) = address {
        let address = address.into_bound(py);
        if let Some(a) = &addr {
            if !(a.is(&address) || a.eq(&address)?) {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    address.str()?
                )));
            }
        }
        addr = Some(address);
    }
    // asyncio drops the datagram once the connection is lost with an address set; with
    // none, it would still send on an open socket (and fail on a closed one).
    if lost {
        let warn = this.st.with(|s| {
            s.conn_lost += 1;
            s.conn_lost > LOG_THRESHOLD_FOR_CONNLOST_WRITES
        });
        if warn {
            logger(py)?.call_method1("warning", ("socket.send() raised exception.",))?;
        }
        return Ok(());
    }
    let dest = match cached {
        Some(sa) => Dest::Addr(sa),
        None => this.dest_of(py, addr.as_ref(), connected),
    };
    if empty {
        // Attempt to send it right away first.
        let sent = match &dest {
            Dest::Peer => with_data(data, |b| sent_native(sys::sendto(this.fd, b, None)))?,
            Dest::Addr(sa) => with_data(data, |b| sent_native(sys::sendto(this.fd, b, Some(sa))))?,
            Dest::Py(a) => {
                let sock = this.st.with(|s| s.sock.as_ref().map(|s| s.clone_ref(py)));
                match sock {
                    Some(sock) => send_py(sock.bind(py), data, a.bind(py))?,
                    None => return Ok(()),
                }
            }
        };
        match sent {
            Sent::Done => return Ok(()),
            Sent::WouldBlock => {
                this.st.with(|s| s.writing = true);
                DatagramCore::sync_interest(slf);
            }
            Sent::Failed(e) => {
                if let Some(p) = this.protocol(py) {
                    p.call_method1(pyo3::intern!(py, "error_received"), (e.value(py),))?;
                }
                return Ok(());
            }
            Sent::Fatal(e) => {
                return fatal_error(slf, e, "Fatal write error on datagram transport");
            }
        }
    }
    // Queue a copy (asyncio's `bytes(data)`).
    let bytes = with_data(data, |b| b.to_vec())?;
    let cost = this.cost(bytes.len());
    this.st.with(|s| {
        s.queue.push_back(Queued { data: bytes, dest });
        s.buffer_size += cost;
    });
    maybe_pause_protocol(slf)
}

/// The fd is writable: asyncio's `_sendto_ready`.
fn on_writable(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    loop {
        let Some((item, sock)) = this.st.with(|s| {
            let item = s.queue.pop_front()?;
            s.buffer_size = s.buffer_size.saturating_sub(this.cost(item.data.len()));
            Some((item, s.sock.as_ref().map(|s| s.clone_ref(py))))
        }) else {
            break;
        };
        let sent = match &item.dest {
            Dest::Peer => sent_native(sys::sendto(this.fd, &item.data, None)),
            Dest::Addr(sa) => sent_native(sys::sendto(this.fd, &item.data, Some(sa))),
            Dest::Py(a) => match sock {
                Some(sock) => send_py(sock.bind(py), &PyBytes::new(py, &item.data), a.bind(py))?,
                None => Sent::Done,
            },
        };
        match sent {
            Sent::Done => {}
            Sent::WouldBlock => {
                // Try again later.
                let cost = this.cost(item.data.len());
                this.st.with(|s| {
                    s.buffer_size += cost;
                    s.queue.push_front(item);
                });
                break;
            }
            Sent::Failed(e) => {
                if let Some(p) = this.protocol(py) {
                    p.call_method1(pyo3::intern!(py, "error_received"), (e.value(py),))?;
                }
                return Ok(());
            }
            Sent::Fatal(e) => {
                return fatal_error(slf, e, "Fatal write error on datagram transport");
            }
        }
    }
    maybe_resume_protocol(slf)?; // May queue more.
    let (empty, closing) = this.st.with(|s| {
        let empty = s.queue.is_empty();
        if empty {
            s.writing = false;
        }
        (empty, s.closing)
    });
    if empty {
        DatagramCore::sync_interest(slf);
        if closing {
            return call_connection_lost(slf, None);
        }
    }
    Ok(())
}

/// `transport.close()`: stop reading; once the queue is flushed, `connection_lost(None)`.
fn close(slf: &Bound<'_, DatagramCore>) {
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
fn force_close(slf: &Bound<'_, DatagramCore>, exc: Option<Py<PyAny>>) {
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
fn fatal_error(slf: &Bound<'_, DatagramCore>, err: PyErr, message: &str) -> PyResult<()> {
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
fn call_connection_lost(slf: &Bound<'_, DatagramCore>, exc: Option<Py<PyAny>>) -> PyResult<()> {
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
fn release(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
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

/// Reports a failing `pause_writing()`/`resume_writing()` as asyncio does.
fn report_flow_error(
    slf: &Bound<'_, DatagramCore>,
    e: PyErr,
    proto: &Bound<'_, PyAny>,
    message: &str,
) -> PyResult<()> {
    let py = slf.py();
    if is_fatal(py, &e) {
        return Err(e);
    }
    let ctx = PyDict::new(py);
    ctx.set_item("message", message)?;
    ctx.set_item("exception", e.value(py))?;
    ctx.set_item("transport", slf.get().transport(py))?;
    ctx.set_item("protocol", proto)?;
    slf.get()
        .loop_(py)
        .call_method1("call_exception_handler", (ctx,))?;
    Ok(())
}

/// asyncio's `_maybe_pause_protocol`.
fn maybe_pause_protocol(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
    let py = slf.py();
    let proto = slf.get().st.with(|s| {
        if s.buffer_size <= s.high_water || s.protocol_paused {
            return None;
        }
        s.protocol_paused = true;
        s.protocol.as_ref().map(|p| p.clone_ref(py))
    });
    let Some(proto) = proto else {
        return Ok(());
    };
    let proto = proto.into_bound(py);
    match proto.call_method0(pyo3::intern!(py, "pause_writing")) {
        Ok(_) => Ok(()),
        Err(e) => report_flow_error(slf, e, &proto, "protocol.pause_writing() failed"),
    }
}

/// asyncio's `_maybe_resume_protocol`.
fn maybe_resume_protocol(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
    let py = slf.py();
    let proto = slf.get().st.with(|s| {
        if !(s.protocol_paused && s.buffer_size <= s.low_water) {
            return None;
        }
        s.protocol_paused = false;
        s.protocol.as_ref().map(|p| p.clone_ref(py))
    });
    let Some(proto) = proto else {
        return Ok(());
    };
    let proto = proto.into_bound(py);
    match proto.call_method0(pyo3::intern!(py, "resume_writing")) {
        Ok(_) => Ok(()),
        Err(e) => report_flow_error(slf, e, &proto, "protocol.resume_writing() failed"),
    }
}

#[pymethods]
impl DatagramCore {
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        sendto(slf, data, addr)
    }

    fn close(slf: &Bound<'_, Self>) {
        close(slf)
    }

    fn abort(slf: &Bound<'_, Self>) {
        force_close(slf, None)
    }

    #[pyo3(signature = (exc=None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) {
        let exc = exc.filter(|e| !e.is_none(slf.py()));
        force_close(slf, exc)
    }

    fn is_closing(&self) -> bool {
        self.st.with(|s| s.closing)
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
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, None) => 64 * 1024,
            (None, Some(l)) => 4 * l,
        };
        let low = low.unwrap_or(high / 4);
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        slf.get().st.with(|s| {
            s.high_water = high as usize;
            s.low_water = low as usize;
        });
        maybe_pause_protocol(slf)
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.st.with(|s| (s.low_water, s.high_water))
    }

    fn get_write_buffer_size(&self) -> usize {
        self.st.with(|s| s.buffer_size)
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
        match extra {
            Some(extra) => Ok(extra.bind(py).get_item(name)?.unwrap_or(default)),
            None => Ok(default),
        }
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(|s| {
            s.protocol_connected = true;
            s.protocol.replace(protocol.clone().unbind())
        });
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    /// The socket object (`None` once closed): asyncio's `transport._sock`.
    #[getter]
    fn _sock(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.sock.as_ref().map(|s| s.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    /// The loop, until `connection_lost` ran (asyncio's `transport._loop`).
    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        if self.st.with(|s| s.sock.is_none()) {
            return py.None();
        }
        self.loop_.clone_ref(py).into_any()
    }

    /// asyncio's `transport._address`.
    #[getter]
    fn _address(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.address.as_ref().map(|a| a.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    #[getter]
    fn _protocol_paused(&self) -> bool {
        self.st.with(|s| s.protocol_paused)
    }

    /// asyncio's transport `__repr__`, for the wrapper class named `cls_name`.
    fn _repr(&self, py: Python<'_>, cls_name: &str) -> String {
        let (closed, closing, reading, writing, size) = self.st.with(|s| {
            (
                s.sock.is_none(),
                s.closing,
                s.reading,
                s.writing,
                s.buffer_size,
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
        format!("<{}>", info.join(" "))
    }

    /// The wrapper's `__del__`: an unclosed transport warns and closes its socket.
    fn _del(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().st.with(|s| s.sock.is_none()) {
            return Ok(());
        }
        let names = Names::get(py)?;
        let msg = format!("unclosed transport {}", transport.repr()?);
        let kw = PyDict::new(py);
        kw.set_item("source", transport)?;
        names
            .warn
            .bind(py)
            .call((msg, names.resource_warning.bind(py)), Some(&kw))?;
        release(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        self.st
            .try_with(|s| -> Result<(), PyTraverseError> {
                visit.call(&s.transport)?;
                visit.call(&s.protocol)?;
                visit.call(&s.sock)?;
                visit.call(&s.extra)?;
                visit.call(&s.context)?;
                visit.call(&s.address)?;
                for (obj, _) in s.peer.iter().chain(&s.sent_to) {
                    visit.call(obj)?;
                }
                for q in &s.queue {
                    if let Dest::Py(a) = &q.dest {
                        visit.call(a)?;
                    }
                }
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
                s.extra.take(),
                s.context.take(),
                s.address.take(),
                s.peer.take(),
                s.sent_to.take(),
                std::mem::take(&mut s.queue),
            )
        });
        drop(taken);
    }
}
