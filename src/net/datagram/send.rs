//! Sending: asyncio's `sendto` (at once when nothing is queued, else queued) and
//! `_sendto_ready` (the queue flushed when the fd is writable), with numeric addresses
//! converted in Rust; the flow control of `_FlowControlMixin` is the shared one
//! ([`crate::net::transport`]).

use pyo3::exceptions::{
    PyBlockingIOError, PyBufferError, PyInterruptedError, PyOSError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};

use super::close::{call_connection_lost, fatal_error};
use super::{DatagramCore, Dest, Queued, LOG_THRESHOLD_FOR_CONNLOST_WRITES};
use crate::names::logger;
pub(super) use crate::net::transport::set_write_buffer_limits;
use crate::net::transport::{
    check_bytes_like, maybe_pause_protocol, maybe_resume_protocol, TransportCore,
};
use crate::net::would_block;
use crate::pyo::buffer::with_bytes;
use crate::pyo::errno::os_error;
use crate::pyo::exc::is_fatal;
use crate::sys::{self, SockAddr};

/// The outcome of one send.
enum Sent {
    Done,
    WouldBlock,
    /// An exception (see [`failed`]).
    Failed(PyErr),
}

/// What asyncio's `sendto` / `_sendto_ready` do when a send raised `err`: an `OSError`
/// goes to `protocol.error_received()`, any other exception is fatal for the transport.
fn failed(slf: &Bound<'_, DatagramCore>, err: PyErr) -> PyResult<()> {
    let py = slf.py();
    if !err.is_instance_of::<PyOSError>(py) {
        return fatal_error(slf, err, "Fatal write error on datagram transport");
    }
    match slf.get().protocol(py) {
        Some(p) => p
            .call_method1(intern!(py, "error_received"), (err.value(py),))
            .map(drop),
        None => Ok(()),
    }
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
    match sock.call_method1(intern!(py, "sendto"), (data, addr)) {
        Ok(_) => Ok(Sent::Done),
        Err(e)
            if e.is_instance_of::<PyBlockingIOError>(py)
                || e.is_instance_of::<PyInterruptedError>(py) =>
        {
            Ok(Sent::WouldBlock)
        }
        Err(e) if is_fatal(py, &e) => Err(e),
        Err(e) => Ok(Sent::Failed(e)),
    }
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
}

/// `transport.sendto(data, addr=None)`.
pub(super) fn sendto(
    slf: &Bound<'_, DatagramCore>,
    data: &Bound<'_, PyAny>,
    addr: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    check_bytes_like(data)?;
    let nbytes = match with_data(data, |b| b.len()) {
        Ok(n) => n,
        // A memoryview that is not C-contiguous (`memoryview(b)[::2]`): asyncio's
        // `sock.sendto()` raises the BufferError inside its try, a fatal error of the
        // transport, not of the call.
        Err(e) if e.is_instance_of::<PyBufferError>(py) => {
            if data.len()? == 0 && !this.py313 {
                return Ok(());
            }
            return fatal_error(slf, e, "Fatal write error on datagram transport");
        }
        Err(e) => return Err(e),
    };
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
            logger(py)?
                .call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
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
            Sent::Failed(e) => return failed(slf, e),
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
pub(super) fn on_writable(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
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
            Sent::Failed(e) => return failed(slf, e),
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
