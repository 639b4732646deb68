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
//!
//! Files: `api.rs` (the Python-visible methods), `recv.rs` (readable: `recvfrom` batches,
//! `datagram_received`, the sender's address), `send.rs` (`sendto` at once or queued,
//! flushing when writable, flow control), `close.rs` (close, abort, fatal errors,
//! `connection_lost`).

mod api;
mod close;
mod recv;
mod send;

use std::collections::VecDeque;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{DatagramOwner, LoopCore, Owner};
use crate::names::{logger, Names};
use crate::net::stream::StreamEvent;
use crate::pyo::context::{copy_current, with_context};
use crate::pyo::exc::is_fatal;
use crate::pyo::GilCell;
use crate::reactor::Interest;
use crate::sys::{self, SockAddr};
use close::call_connection_lost;
use recv::on_readable;
use send::on_writable;

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
        // An error means the fd was closed behind the transport's back; its next
        // syscall reports that.
        let _ = LoopCore::set_owner_interest(
            this.loop_(slf.py()),
            this.fd,
            slf.as_ptr(),
            interest,
            gen,
        );
    }

    fn schedule(slf: &Bound<'_, Self>, event: StreamEvent) {
        let job = DatagramJob {
            core: slf.clone().unbind(),
            event,
        };
        slf.get().loop_(slf.py()).get().push_datagram_job(job);
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
    let callback = job.event.asyncio_callback("_sendto_ready");
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
            let this = core.get();
            let protocol = this.protocol(py);
            crate::net::report_callback_error(lp, callback, &this.transport(py), protocol, e)
        }
        other => other,
    }
}
