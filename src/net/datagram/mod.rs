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
//! flushing when writable), `close.rs` (`connection_lost`). What it shares with the stream
//! core (the common state, the job runner, close / abort / fatal errors, pause / resume
//! reading, flow control, the common Python-visible methods) is
//! `net/transport.rs`; `DatagramCore` implements its `TransportCore`.

mod api;
mod close;
mod recv;
mod send;

use std::collections::VecDeque;
use std::os::fd::RawFd;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{DatagramOwner, LoopCore, Owner};
use crate::net::transport::{
    self, transport_core_fields, MakeArgs, TransportCore, TransportJob, TransportState,
};
use crate::pyo::GilCell;
use crate::sys::{self, SockAddr};

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
    api::install_wrapper_methods(&cls)?;
    let _ = TRANSPORT_CLASS.set(py, cls.unbind());
    Ok(())
}

/// A job of a datagram transport (`Job::Datagram`); the events are a stream transport's.
pub(crate) type DatagramJob = TransportJob<DatagramCore>;

pub(crate) use crate::net::transport::run_job;

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
pub(crate) struct Queued {
    data: Vec<u8>,
    dest: Dest,
}

/// The mutable state of a datagram transport: what every transport has
/// ([`TransportState`], which it derefs to), and what a datagram transport has.
pub(crate) struct State {
    common: TransportState,
    /// The socket object; `None` once `connection_lost` ran.
    sock: Option<Py<PyAny>>,
    /// asyncio's `_address`: the remote address given to `create_datagram_endpoint`
    /// (kept only when truthy, as asyncio tests it).
    address: Option<Py<PyAny>>,
    /// `extra['peername']` is truthy: datagrams are sent with `send()`.
    connected: bool,
    queue: VecDeque<Queued>,
    /// asyncio's `_buffer_size`.
    buffer_size: usize,
    /// The last sender's address, with its Python form (reused for the next datagram
    /// from it, and for a send to that object).
    peer: Option<(Py<PyAny>, SockAddr)>,
    /// The last address object sent to that was not `peer`'s, converted.
    sent_to: Option<(Py<PyAny>, SockAddr)>,
}

impl std::ops::Deref for State {
    type Target = TransportState;
    #[inline]
    fn deref(&self) -> &TransportState {
        &self.common
    }
}

impl std::ops::DerefMut for State {
    #[inline]
    fn deref_mut(&mut self) -> &mut TransportState {
        &mut self.common
    }
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

    /// What a queued datagram of `n` bytes adds to `get_write_buffer_size()`.
    fn cost(&self, n: usize) -> usize {
        if self.py313 {
            n + HEADER_SIZE
        } else {
            n
        }
    }
}

impl TransportCore for DatagramCore {
    type State = State;
    const WRITE_READY: &'static str = "_sendto_ready";
    /// Its destinations may hold Python objects: dropped after the state's lock.
    type Dropped = VecDeque<Queued>;
    type Cleared = (
        Option<Py<PyAny>>,
        [Option<(Py<PyAny>, SockAddr)>; 2],
        VecDeque<Queued>,
    );

    transport_core_fields!();

    fn push_job(lp: &LoopCore, job: DatagramJob) {
        lp.push_datagram_job(job);
    }

    fn owner(core: Py<Self>, transport: Py<PyAny>) -> Owner {
        Owner::Datagram(DatagramOwner::new(core, transport))
    }

    fn is_open(s: &State) -> bool {
        s.sock.is_some()
    }

    fn queue_is_empty(s: &State) -> bool {
        s.queue.is_empty()
    }

    fn buffer_size(s: &State) -> usize {
        s.buffer_size
    }

    fn drop_queue(s: &mut State) -> VecDeque<Queued> {
        std::mem::take(&mut s.queue)
    }

    #[inline]
    fn on_readable(slf: &Bound<'_, Self>, gen: u32) -> PyResult<()> {
        recv::on_readable(slf, gen)
    }

    #[inline]
    fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        send::on_writable(slf)
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        close::call_connection_lost(slf, exc)
    }

    fn visit_own(s: &State, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&s.sock)?;
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
    }

    fn clear_own(s: &mut State) -> Self::Cleared {
        (
            s.address.take(),
            [s.peer.take(), s.sent_to.take()],
            std::mem::take(&mut s.queue),
        )
    }
}

/// `loop._make_datagram_transport(sock, protocol, address=None, waiter=None,
/// extra=None)`, as asyncio's selector loop makes it.
pub(crate) fn make_datagram_transport<'py>(
    lp: &Bound<'py, LoopCore>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    args: MakeArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    // asyncio's _ensure_fd_no_transport.
    LoopCore::take_over_from_transport(lp, fd)?;
    let extra = transport::socket_extra(sock, args.extra)?;
    let connected = match extra.get_item("peername")? {
        Some(p) => p.is_truthy()?,
        None => false,
    };
    let address = match args.address {
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
                common: TransportState::new(py, Some(protocol.clone().unbind()), extra)?,
                sock: Some(sock.clone().unbind()),
                address,
                connected,
                queue: VecDeque::new(),
                buffer_size: 0,
                peer: None,
                sent_to: None,
            }),
        },
    )?;
    let transport = transport::wrap(&core, TRANSPORT_CLASS.get(py), "datagram transport")?;
    transport::adopt(&core, &transport)?;
    transport::schedule_start(&core, true, args.waiter);
    Ok(transport)
}
