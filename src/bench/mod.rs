//! The network benchmarks' load generator and floor (`ferroloop bench`,
//! `benchmarks/net.py`; the Python side is `python/ferroloop/_bench/echo.py`). Not used by the
//! loop: the two functions run in processes of their own, the GIL released while they work.
//!
//! * `_echo_client(kind, addr, conns, size, warmup, duration, on_window)` is the fixed load
//!   generator every server is measured with: `conns` connections, each sending one
//!   `size`-byte message and waiting for all of it to come back before sending the next
//!   (ping-pong), every echoed byte compared with what was sent (each message carries its
//!   sequence number, so a stale or reordered echo fails the run). After `warmup` seconds it
//!   calls `on_window()` (so the caller can start sampling the server's CPU), counts the round
//!   trips of the next `duration` seconds and returns them, with its own thread's CPU time over
//!   that window (`client_cpu`, 1.0 = one core busy). For `udp`: one connected socket per
//!   "connection", one datagram in flight each; a lost datagram is sent again after 100 ms
//!   (`resent`), a late echo of an earlier one is ignored (`stale`).
//! * `_echo_server(kind, addr, on_ready)` is the floor the Python loops are compared with:
//!   one thread, one mio `Poll` (epoll, edge-triggered), each readable event answered with one
//!   `read` into a 256 KiB buffer (asyncio's read size) and one `write` of what was read,
//!   queuing only what the kernel would not take; a short read ends the read loop without the
//!   `read` that would return `EAGAIN`. For `udp`, `recvfrom` + `sendto` until `EAGAIN`. It
//!   calls `on_ready(kind, address)` once listening and serves until a signal handler raises.
//!
//! * `_echo_server_protocol(addr, protocol_factory, on_ready)`: the floor's loop calling a
//!   Python protocol's `data_received` per read (`protocol_floor.rs`), for TCP.
//!
//! `kind` is `"tcp"` or `"udp"` (`addr` = `"HOST:PORT"`, port 0 for any) or `"unix"` (`addr` =
//! a path).

mod protocol_floor;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const READ_BUF: usize = 256 * 1024;
const LISTENER: Token = Token(usize::MAX);
const UDP_RESEND: Duration = Duration::from_millis(100);
/// How often the server takes the GIL to run Python's signal handlers (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

enum Addr {
    Tcp(SocketAddr),
    Unix(String),
    Udp(SocketAddr),
}

fn parse_addr(kind: &str, addr: &str) -> PyResult<Addr> {
    let ip = || {
        addr.parse::<SocketAddr>()
            .map_err(|e| PyValueError::new_err(format!("bad address {addr:?}: {e}")))
    };
    match kind {
        "tcp" => Ok(Addr::Tcp(ip()?)),
        "udp" => Ok(Addr::Udp(ip()?)),
        "unix" => Ok(Addr::Unix(addr.to_owned())),
        _ => Err(PyValueError::new_err(format!(
            "kind must be 'tcp', 'unix' or 'udp', not {kind:?}"
        ))),
    }
}

/// Why a benchmark function stopped: a socket error, or a Python exception (a signal
/// handler's, or the callback's).
enum Stop {
    Io(io::Error),
    Py(PyErr),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

impl From<Stop> for PyErr {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Io(e) => e.into(),
            Stop::Py(e) => e,
        }
    }
}

type Res<T> = Result<T, Stop>;

fn call0(cb: &Py<PyAny>) -> Res<()> {
    Python::attach(|py| cb.call0(py).map(drop)).map_err(Stop::Py)
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        r => r,
    }
}

// ---------------------------------------------------------------------------
// server (the floor)
// ---------------------------------------------------------------------------

trait Listen: Source {
    type S: Read + Write + Source;
    fn accept_one(&self) -> io::Result<Self::S>;
}

impl Listen for TcpListener {
    type S = TcpStream;
    fn accept_one(&self) -> io::Result<TcpStream> {
        let (s, _) = self.accept()?;
        s.set_nodelay(true)?; // asyncio's default
        Ok(s)
    }
}

impl Listen for UnixListener {
    type S = UnixStream;
    fn accept_one(&self) -> io::Result<UnixStream> {
        Ok(self.accept()?.0)
    }
}

struct Conn<S> {
    s: S,
    pending: Vec<u8>,
    off: usize,
}

/// `write` until done or `EAGAIN`; returns how much was written.
fn write_all_now<S: Write>(s: &mut S, data: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < data.len() {
        match s.write(&data[off..]) {
            Ok(k) => off += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

impl<S: Read + Write> Conn<S> {
    /// Writes `data` now if nothing is queued, queues what the kernel refuses.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if self.off < self.pending.len() {
            self.pending.extend_from_slice(data);
            return Ok(());
        }
        let off = write_all_now(&mut self.s, data)?;
        self.pending.clear();
        self.off = 0;
        self.pending.extend_from_slice(&data[off..]);
        Ok(())
    }

    /// Returns Ok(false) when the peer closed.
    fn on_event(&mut self, readable: bool, writable: bool, buf: &mut [u8]) -> io::Result<bool> {
        if writable && self.off < self.pending.len() {
            self.off += write_all_now(&mut self.s, &self.pending[self.off..])?;
        }
        if readable {
            loop {
                match self.s.read(buf) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        self.send(&buf[..n])?;
                        if n < buf.len() {
                            break; // drained; the next arrival re-arms the edge
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }
}

/// Runs Python's signal handlers every `SIGNAL_CHECK`, so Ctrl-C stops a server.
struct Signals(Instant);

impl Signals {
    fn check(&mut self) -> Res<()> {
        if self.0.elapsed() >= SIGNAL_CHECK {
            self.0 = Instant::now();
            Python::attach(|py| py.check_signals()).map_err(Stop::Py)?;
        }
        Ok(())
    }
}

fn serve<L: Listen>(mut l: L) -> Res<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    poll.registry()
        .register(&mut l, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn<L::S>>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut signals = Signals(Instant::now());
    loop {
        poll_once(&mut poll, &mut events, Some(SIGNAL_CHECK))?;
        signals.check()?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match l.accept_one() {
                        Ok(mut s) => {
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry().register(
                                &mut s,
                                Token(idx),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            conns[idx] = Some(Conn {
                                s,
                                pending: Vec::new(),
                                off: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break, // e.g. EMFILE: retried on the next event
                    }
                }
                continue;
            }
            let idx = ev.token().0;
            let Some(c) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let readable = ev.is_readable() || ev.is_read_closed();
            if !c
                .on_event(readable, ev.is_writable(), &mut buf)
                .unwrap_or(false)
            {
                if let Some(mut c) = conns[idx].take() {
                    let _ = poll.registry().deregister(&mut c.s);
                }
                free.push(idx);
            }
        }
    }
}

fn serve_udp(mut s: UdpSocket) -> Res<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    poll.registry()
        .register(&mut s, LISTENER, Interest::READABLE)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut signals = Signals(Instant::now());
    loop {
        poll_once(&mut poll, &mut events, Some(SIGNAL_CHECK))?;
        signals.check()?;
        loop {
            match s.recv_from(&mut buf) {
                // A reply the kernel will not take is dropped, as UDP may.
                Ok((n, from)) => drop(s.send_to(&buf[..n], from)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The echo floor: listens on `addr`, calls `on_ready(kind, address)` (the bound address,
/// `HOST:PORT` or the path), then serves until a Python signal handler raises.
#[pyfunction]
fn _echo_server(py: Python<'_>, kind: &str, addr: &str, on_ready: Py<PyAny>) -> PyResult<()> {
    match parse_addr(kind, addr)? {
        Addr::Tcp(sa) => {
            let l = TcpListener::bind(sa)?;
            on_ready.call1(py, (kind, l.local_addr()?.to_string()))?;
            py.detach(|| serve(l)).map_err(PyErr::from)
        }
        Addr::Unix(p) => {
            let _ = std::fs::remove_file(&p);
            let l = UnixListener::bind(&p)?;
            on_ready.call1(py, (kind, p))?;
            py.detach(|| serve(l)).map_err(PyErr::from)
        }
        Addr::Udp(sa) => {
            let s = UdpSocket::bind(sa)?;
            on_ready.call1(py, (kind, s.local_addr()?.to_string()))?;
            py.detach(|| serve_udp(s)).map_err(PyErr::from)
        }
    }
}

/// The floor with a Python protocol (see [`protocol_floor`]): listens on `addr` (TCP,
/// `HOST:PORT`), calls `on_ready("tcp", address)`, then serves each connection with a
/// protocol from `protocol_factory()` until a Python signal handler raises.
#[pyfunction]
fn _echo_server_protocol(
    py: Python<'_>,
    addr: &str,
    protocol_factory: Bound<'_, PyAny>,
    on_ready: Py<PyAny>,
) -> PyResult<()> {
    let Addr::Tcp(sa) = parse_addr("tcp", addr)? else {
        unreachable!("parse_addr(\"tcp\", ...) gives a TCP address")
    };
    let l = TcpListener::bind(sa)?;
    on_ready.call1(py, ("tcp", l.local_addr()?.to_string()))?;
    protocol_floor::serve(py, l, &protocol_factory)
}

// ---------------------------------------------------------------------------
// client (the load generator)
// ---------------------------------------------------------------------------

/// What a client run counted over its window.
struct Outcome {
    msgs: u64,
    secs: f64,
    cpu: f64,
    resent: u64,
    stale: u64,
}

/// The measuring window: opened after the warm-up, closed at its end.
struct Window {
    t_warm: Instant,
    t_end: Instant,
    open: Option<(Instant, f64, u64)>,
}

impl Window {
    fn new(warmup: f64, duration: f64) -> Self {
        let t_warm = Instant::now() + Duration::from_secs_f64(warmup);
        Window {
            t_warm,
            t_end: t_warm + Duration::from_secs_f64(duration),
            open: None,
        }
    }

    /// The time left to wait for, or None once the window has closed.
    fn tick(&mut self, count: u64, on_window: &Option<Py<PyAny>>) -> Res<Option<Duration>> {
        let now = Instant::now();
        if self.open.is_none() && now >= self.t_warm {
            if let Some(cb) = on_window {
                call0(cb)?;
            }
            self.open = Some((Instant::now(), crate::sys::thread_cpu_seconds(), count));
        }
        if now >= self.t_end {
            return Ok(None);
        }
        let until = if self.open.is_none() {
            self.t_warm
        } else {
            self.t_end
        };
        Ok(Some(until - now))
    }

    fn close(&self, count: u64, resent: u64, stale: u64) -> Outcome {
        let (w0, cpu0, n0) = self.open.expect("the window opens before it closes");
        Outcome {
            msgs: count - n0,
            secs: w0.elapsed().as_secs_f64(),
            cpu: crate::sys::thread_cpu_seconds() - cpu0,
            resent,
            stale,
        }
    }
}

/// A message that differs per connection and per position.
fn pattern(size: usize, id: usize) -> Vec<u8> {
    (0..size).map(|i| (i.wrapping_mul(31) ^ id) as u8).collect()
}

/// Writes the sequence number into the first bytes of the message.
fn tag(msg: &mut [u8], seq: u64) {
    let t = seq.to_le_bytes();
    let k = t.len().min(msg.len());
    msg[..k].copy_from_slice(&t[..k]);
}

struct CConn<S> {
    s: S,
    msg: Vec<u8>,
    sent: usize,
    recvd: usize,
    seq: u64,
}

impl<S: Read + Write> CConn<S> {
    fn write_some(&mut self) -> io::Result<()> {
        self.sent += write_all_now(&mut self.s, &self.msg[self.sent..])?;
        Ok(())
    }

    /// Reads what is there; returns the number of completed round trips.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let mut done = 0;
        loop {
            match self.s.read(buf) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed")),
                Ok(n) => {
                    if self.recvd + n > self.sent {
                        return Err(io::Error::other("server echoed more than was sent"));
                    }
                    if buf[..n] != self.msg[self.recvd..self.recvd + n] {
                        return Err(io::Error::other("echoed bytes differ from the sent ones"));
                    }
                    self.recvd += n;
                    if self.recvd == self.msg.len() {
                        done += 1;
                        self.seq += 1;
                        tag(&mut self.msg, self.seq);
                        self.sent = 0;
                        self.recvd = 0;
                        self.write_some()?;
                    }
                    if n < buf.len() {
                        return Ok(done);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn drive<S: Read + Write + Source>(
    mut conns: Vec<CConn<S>>,
    mut w: Window,
    on_window: &Option<Py<PyAny>>,
) -> Res<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        c.write_some()?;
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut count: u64 = 0;
    while let Some(left) = w.tick(count, on_window)? {
        poll_once(&mut poll, &mut events, Some(left))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                c.write_some()?;
            }
            if ev.is_readable() || ev.is_read_closed() {
                count += c.read_some(&mut buf)?;
            }
        }
    }
    Ok(w.close(count, 0, 0))
}

struct UConn {
    s: UdpSocket,
    msg: Vec<u8>,
    seq: u64,
    sent_at: Instant,
}

impl UConn {
    fn send(&mut self) -> io::Result<()> {
        tag(&mut self.msg, self.seq);
        self.sent_at = Instant::now();
        match self.s.send(&self.msg) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()), // lost: sent again later
            Err(e) => Err(e),
        }
    }
}

fn drive_udp(
    sa: SocketAddr,
    n: usize,
    size: usize,
    mut w: Window,
    on_window: &Option<Py<PyAny>>,
) -> Res<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let local: SocketAddr = if sa.is_ipv6() {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    };
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = UdpSocket::bind(local)?;
        s.connect(sa)?;
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        let mut c = UConn {
            s,
            msg: pattern(size, i),
            seq: 0,
            sent_at: Instant::now(),
        };
        c.send()?;
        conns.push(c);
    }
    let mut buf = vec![0u8; READ_BUF];
    let (mut count, mut resent, mut stale) = (0u64, 0u64, 0u64);
    while let Some(left) = w.tick(count, on_window)? {
        poll_once(&mut poll, &mut events, Some(left.min(UDP_RESEND)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                match c.s.recv(&mut buf) {
                    Ok(n) if buf[..n] == c.msg[..] => {
                        count += 1;
                        c.seq += 1;
                        c.send()?;
                    }
                    // An echo of an earlier datagram (resent meanwhile): same but the tag.
                    Ok(n) if n == c.msg.len() && buf[8.min(n)..n] == c.msg[8.min(n)..] => {
                        stale += 1;
                    }
                    Ok(_) => {
                        return Err(
                            io::Error::other("echoed datagram differs from the sent one").into(),
                        )
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let now = Instant::now();
        for c in conns.iter_mut() {
            if now.duration_since(c.sent_at) >= UDP_RESEND {
                resent += 1;
                c.send()?;
            }
        }
    }
    Ok(w.close(count, resent, stale))
}

fn run_client(
    addr: Addr,
    n: usize,
    size: usize,
    w: Window,
    on_window: &Option<Py<PyAny>>,
) -> Res<Outcome> {
    match addr {
        Addr::Udp(sa) => drive_udp(sa, n, size, w, on_window),
        Addr::Tcp(sa) => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let s = std::net::TcpStream::connect(sa)?;
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                v.push(CConn {
                    s: TcpStream::from_std(s),
                    msg: pattern(size, i),
                    sent: 0,
                    recvd: 0,
                    seq: 0,
                });
            }
            drive(v, w, on_window)
        }
        Addr::Unix(p) => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let s = std::os::unix::net::UnixStream::connect(&p)?;
                s.set_nonblocking(true)?;
                v.push(CConn {
                    s: UnixStream::from_std(s),
                    msg: pattern(size, i),
                    sent: 0,
                    recvd: 0,
                    seq: 0,
                });
            }
            drive(v, w, on_window)
        }
    }
}

/// The echo load generator (see the module docs). Returns a dict: `msgs`, `secs`,
/// `msgs_per_s`, `mib_per_s`, `client_cpu`, `conns`, `size`, `resent`, `stale`.
#[pyfunction]
#[pyo3(signature = (kind, addr, conns=10, size=1024, warmup=0.5, duration=2.0, on_window=None))]
#[allow(clippy::too_many_arguments)]
fn _echo_client<'py>(
    py: Python<'py>,
    kind: &str,
    addr: &str,
    conns: usize,
    size: usize,
    warmup: f64,
    duration: f64,
    on_window: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let addr = parse_addr(kind, addr)?;
    if conns == 0
        || size == 0
        || !(warmup >= 0.0 && duration > 0.0 && duration < 1e6 && warmup < 1e6)
    {
        return Err(PyValueError::new_err(
            "conns and size must be positive, warmup >= 0, duration > 0",
        ));
    }
    let o =
        py.detach(|| run_client(addr, conns, size, Window::new(warmup, duration), &on_window))?;
    let d = PyDict::new(py);
    d.set_item("msgs", o.msgs)?;
    d.set_item("secs", o.secs)?;
    d.set_item("msgs_per_s", o.msgs as f64 / o.secs)?;
    d.set_item(
        "mib_per_s",
        (o.msgs * size as u64) as f64 / o.secs / (1024.0 * 1024.0),
    )?;
    d.set_item("client_cpu", o.cpu / o.secs)?;
    d.set_item("conns", conns)?;
    d.set_item("size", size)?;
    d.set_item("resent", o.resent)?;
    d.set_item("stale", o.stale)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_echo_client, m)?)?;
    m.add_function(wrap_pyfunction!(_echo_server, m)?)?;
    m.add_function(wrap_pyfunction!(_echo_server_protocol, m)?)?;
    m.add_class::<protocol_floor::FloorTransport>()?;
    Ok(())
}
