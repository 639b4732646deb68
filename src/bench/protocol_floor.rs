//! The floor with a Python protocol (`_echo_server_protocol`): the pure-Rust floor's event
//! loop (one mio `Poll`, edge-triggered; one `read` into a 256 KiB buffer per readable
//! event until a short read) that, for each read, makes a `bytes` and calls a Python
//! protocol's `data_received(data)`, whose `self.transport.write(data)` is a native method
//! sending at once. It is the least any Python event loop does per protocol echo (a
//! `bytes` per read, one Python call in, one native call out) with nothing else: no ready
//! queue, no contexts, no flow control, no asyncio API. Between it and the floor lies the
//! cost of Python's protocol call itself; between it and a loop, the loop's own work.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::io::{ErrorKind, Read};

use super::{poll_once, write_all_now, LISTENER, READ_BUF, SIGNAL_CHECK};

/// The transport the protocol writes to: `write(data)` sends at once, and queues what the
/// kernel does not take for the next writable event.
#[pyclass(module = "ferroloop._ferroloop", name = "_FloorTransport", frozen)]
pub(super) struct FloorTransport {
    fd: RawFd,
    pending: Mutex<Vec<u8>>,
}

#[pymethods]
impl FloorTransport {
    fn write(&self, data: &[u8]) -> PyResult<()> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            pending.extend_from_slice(data);
            return Ok(());
        }
        let mut off = 0;
        while off < data.len() {
            match crate::sys::send(self.fd, &data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        pending.extend_from_slice(&data[off..]);
        Ok(())
    }
}

impl FloorTransport {
    /// Sends what `write` queued (a writable event).
    fn flush(&self, stream: &mut mio::net::TcpStream) -> std::io::Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let n = write_all_now(stream, &pending)?;
        pending.drain(..n);
        Ok(())
    }
}

struct Conn {
    stream: mio::net::TcpStream,
    protocol: Py<PyAny>,
    transport: Py<FloorTransport>,
}

/// Serves `listener` with a protocol from `protocol_factory()` per connection until a
/// Python signal handler raises. The GIL is released while it polls, as a loop's is.
pub(super) fn serve(
    py: Python<'_>,
    mut listener: TcpListener,
    protocol_factory: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        py.detach(|| poll_once(&mut poll, &mut events, Some(SIGNAL_CHECK)))?;
        py.check_signals()?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?; // asyncio's default
                    let idx = conns.len();
                    poll.registry().register(
                        &mut stream,
                        Token(idx),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let transport = Py::new(
                        py,
                        FloorTransport {
                            fd: stream.as_raw_fd(),
                            pending: Mutex::new(Vec::new()),
                        },
                    )?;
                    let protocol = protocol_factory.call0()?;
                    protocol.call_method1(intern!(py, "connection_made"), (&transport,))?;
                    conns.push(Some(Conn {
                        stream,
                        protocol: protocol.unbind(),
                        transport,
                    }));
                }
                continue;
            }
            let idx = ev.token().0;
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let mut closed = false;
            if ev.is_writable() {
                closed |= conn.transport.get().flush(&mut conn.stream).is_err();
            }
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => {
                            let data = PyBytes::new(py, &buf[..n]);
                            conn.protocol
                                .bind(py)
                                .call_method1(intern!(py, "data_received"), (data,))?;
                            if n < buf.len() {
                                break; // drained; the next arrival re-arms the edge
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            if closed {
                if let Some(mut conn) = conns[idx].take() {
                    let _ = poll.registry().deregister(&mut conn.stream);
                    conn.protocol
                        .bind(py)
                        .call_method1(intern!(py, "connection_lost"), (py.None(),))?;
                }
            }
        }
    }
}
