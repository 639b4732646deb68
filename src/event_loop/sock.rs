//! The `sock_*` methods on plain sockets, as asyncio's `selector_events.py` does them:
//! check the socket, try the syscall at once (in Rust, on the socket's fd), and only when
//! it would block wait for readiness, retrying then and resolving a future.
//!
//! A wait joins the fd's `add_reader`/`add_writer` watch (`Owner::Watch` in `io.rs`)
//! exactly as asyncio's `_add_reader(fd, self._sock_recv, fut, sock, n)` does, with a
//! native callable ([`SockWait`]) as the reader or writer. That keeps asyncio's observable
//! rules: a `sock_recv` and a `sock_sendall` may wait on one socket at once (reader and
//! writer); a second `sock_recv` on the same socket replaces the first one's reader (which
//! then never completes), as does an `add_reader`. The future's done-callback
//! ([`SockDone`], asyncio's `_sock_read_done`/`_sock_write_done`) removes the reader or
//! writer unless it was replaced meanwhile, so a cancelled call leaves nothing registered.
//!
//! `python/ferroloop` wraps each in an `async def` (asyncio's are coroutines:
//! `create_task(loop.sock_recv(...))` must work); the methods here return a future.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyKeyboardInterrupt, PyOSError, PySystemExit,
    PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::sock_address::numeric_address;
use super::LoopCore;
use crate::handle::{Handle, SlottedRef};
use crate::names::Names;
use crate::pyo::buffer::{with_bytes, with_bytes_mut};
use crate::pyo::errno::os_error;
use crate::pyo::fastcall::{forward_to_replaced, install_over, VectorArgs, VectorMethod};
use crate::sys;

/// What a waiting call does each time its fd is ready.
enum Op {
    /// `sock_recv(sock, n)`.
    Recv(usize),
    /// `sock_recv_into(sock, buf)`.
    RecvInto(Py<PyAny>),
    /// `sock_sendall(sock, data)`: the bytes sent so far.
    SendAll { data: Py<PyAny>, pos: AtomicUsize },
    /// `sock_connect(sock, address)`, waiting for the connection's outcome.
    Connect(Py<PyAny>),
    /// `sock_accept(sock)`: the listening socket.
    Accept(Py<PyAny>),
    /// `sock.<method>(*args)`: the datagram calls (`sock_recvfrom`, `sock_recvfrom_into`,
    /// `sock_sendto`), whose addresses the socket module converts.
    Method {
        sock: Py<PyAny>,
        method: Py<PyString>,
        args: Py<PyTuple>,
    },
}

/// The outcome of one attempt.
pub(crate) enum Attempt {
    /// Would block: wait (again).
    Blocked,
    /// The call's result.
    Done(Py<PyAny>),
    /// The call's error, to be set on its future.
    Failed(PyErr),
}

/// Whether a syscall error means "try again when ready" (asyncio's `except
/// (BlockingIOError, InterruptedError)`).
fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EINTR | libc::EINPROGRESS | libc::EALREADY)
    )
}

fn attempt_of<T>(
    res: std::io::Result<T>,
    done: impl FnOnce(T) -> PyResult<Py<PyAny>>,
) -> PyResult<Attempt> {
    Ok(match res {
        Ok(v) => Attempt::Done(done(v)?),
        Err(e) if would_block(&e) => Attempt::Blocked,
        Err(e) => Attempt::Failed(os_error(e)),
    })
}

/// An error from Python code that asyncio catches as `BaseException` (and sets on the
/// future), or that must propagate (`SystemExit`, `KeyboardInterrupt`).
fn caught(py: Python<'_>, e: PyErr) -> PyResult<Attempt> {
    if e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py) {
        return Err(e);
    }
    if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) {
        return Ok(Attempt::Blocked);
    }
    Ok(Attempt::Failed(e))
}

fn recv(py: Python<'_>, fd: RawFd, n: usize) -> PyResult<Attempt> {
    if n == 0 {
        // socket.recv(0) makes no syscall.
        return Ok(Attempt::Done(PyBytes::new(py, b"").into_any().unbind()));
    }
    if n <= crate::net::MAX_READ {
        return crate::net::with_read_buf(|buf| {
            attempt_of(sys::recv(fd, &mut buf[..n]), |got| {
                Ok(PyBytes::new(py, &buf[..got]).into_any().unbind())
            })
        });
    }
    // As socket.recv(n): a bytes object of n bytes (MemoryError where it cannot be made),
    // received into and shrunk to what came.
    let res = crate::pyo::bytes::bytes_filled_by(py, n, |buf| sys::recv_uninit(fd, buf))?;
    attempt_of(res, |data| Ok(data.into_any().unbind()))
}

fn recv_into(py: Python<'_>, fd: RawFd, buf: &Bound<'_, PyAny>) -> PyResult<Attempt> {
    let res = with_bytes_mut(buf, |b| sys::recv(fd, b)).map_err(|_| {
        // The socket module's `w*` argument check.
        let ty = buf
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "recv_into() argument 1 must be read-write bytes-like object, not {ty}"
        ))
    })?;
    attempt_of(res, |k| Ok(k.into_pyobject(py)?.into_any().unbind()))
}

/// Sends what is left of `data` from `pos`; `Done` once all of it is sent.
fn send_rest(
    py: Python<'_>,
    fd: RawFd,
    data: &Bound<'_, PyAny>,
    pos: &AtomicUsize,
) -> PyResult<Attempt> {
    let start = pos.load(Ordering::Relaxed);
    let (res, len) = with_bytes(data, |b| (sys::send(fd, &b[start.min(b.len())..]), b.len()))?;
    Ok(match res {
        Ok(n) if start + n >= len => Attempt::Done(py.None()),
        Ok(n) => {
            pos.store(start + n, Ordering::Relaxed);
            Attempt::Blocked
        }
        Err(e) if would_block(&e) => Attempt::Blocked,
        Err(e) => Attempt::Failed(os_error(e)),
    })
}

/// asyncio's `_sock_connect_cb`: the connection's outcome, from `SO_ERROR`.
fn connect_outcome(py: Python<'_>, fd: RawFd, address: &Bound<'_, PyAny>) -> PyResult<Attempt> {
    match sys::socket_error(fd) {
        Ok(0) => Ok(Attempt::Done(py.None())),
        Ok(err) => Ok(Attempt::Failed(PyOSError::new_err((
            err,
            format!("Connect call failed {}", address.str()?),
        )))),
        Err(e) => attempt_of(Err::<(), _>(e), |_| Ok(py.None())),
    }
}

/// `sock.accept()` followed by `conn.setblocking(False)`: the connection as
/// `socket.socket(family, type, proto, fileno=fd)`, and the peer's address.
pub(crate) fn accept_connection(
    py: Python<'_>,
    fd: RawFd,
    sock: &Bound<'_, PyAny>,
) -> PyResult<Attempt> {
    let (conn, addr) = match sys::accept(fd) {
        Ok(v) => v,
        Err(e) if would_block(&e) => return Ok(Attempt::Blocked),
        Err(e) => return Ok(Attempt::Failed(os_error(e))),
    };
    let made = (|| -> PyResult<Bound<'_, PyAny>> {
        socket_from_fd(
            py,
            conn,
            sock.getattr(intern!(py, "family"))?.extract()?,
            sock.getattr(intern!(py, "type"))?.extract()?,
            sock.getattr(intern!(py, "proto"))?.extract()?,
        )
    })();
    let conn_obj = match made {
        Ok(c) => c,
        Err(e) => {
            sys::close(conn);
            return caught(py, e);
        }
    };
    let address = match crate::net::sockaddr::to_python(py, &addr)? {
        Some(a) => a,
        None => match conn_obj.call_method0(intern!(py, "getpeername")) {
            Ok(a) => a,
            Err(e) => {
                let _ = conn_obj.call_method0(intern!(py, "close"));
                return caught(py, e);
            }
        },
    };
    Ok(Attempt::Done(
        PyTuple::new(py, [conn_obj, address])?.into_any().unbind(),
    ))
}

/// `sock.<method>(*args)`, as asyncio calls it.
fn call_method(
    sock: &Bound<'_, PyAny>,
    method: &Bound<'_, PyString>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<Attempt> {
    match sock.call_method1(method, args.clone()) {
        Ok(v) => Ok(Attempt::Done(v.unbind())),
        Err(e) => caught(sock.py(), e),
    }
}

/// The native reader/writer callback of a waiting call (asyncio's `_sock_recv`,
/// `_sock_sendall`, `_sock_connect_cb`, `_sock_accept`, ...).
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub(crate) struct SockWait {
    fut: Py<PyAny>,
    fd: RawFd,
    op: Op,
}

impl SockWait {
    fn attempt(&self, py: Python<'_>) -> PyResult<Attempt> {
        match &self.op {
            Op::Recv(n) => recv(py, self.fd, *n),
            Op::RecvInto(buf) => match recv_into(py, self.fd, buf.bind(py)) {
                Err(e) => caught(py, e),
                ok => ok,
            },
            Op::SendAll { data, pos } => send_rest(py, self.fd, data.bind(py), pos),
            Op::Connect(address) => connect_outcome(py, self.fd, address.bind(py)),
            Op::Accept(sock) => accept_connection(py, self.fd, sock.bind(py)),
            Op::Method { sock, method, args } => {
                call_method(sock.bind(py), method.bind(py), args.bind(py))
            }
        }
    }
}

#[pymethods]
impl SockWait {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        // Cancelled (or replaced and resolved) since the poll reported the fd.
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        settle(fut, self.attempt(py)?)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)?;
        match &self.op {
            Op::Recv(_) => Ok(()),
            Op::RecvInto(o) | Op::SendAll { data: o, .. } | Op::Connect(o) | Op::Accept(o) => {
                visit.call(o)
            }
            Op::Method { sock, args, .. } => {
                visit.call(sock)?;
                visit.call(args)
            }
        }
    }
}

/// Resolves `fut` with a finished attempt (a blocked one leaves it pending).
fn settle(fut: &Bound<'_, PyAny>, attempt: Attempt) -> PyResult<()> {
    match attempt {
        Attempt::Blocked => {}
        Attempt::Done(v) => {
            fut.call_method1(intern!(fut.py(), "set_result"), (v,))?;
        }
        Attempt::Failed(e) => {
            fut.call_method1(
                intern!(fut.py(), "set_exception"),
                (e.into_value(fut.py()),),
            )?;
        }
    }
    Ok(())
}

/// The done-callback of a waiting call's future: asyncio's `_sock_read_done` /
/// `_sock_write_done`, which remove the reader or writer unless its handle was cancelled
/// (replaced by another reader, or removed).
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub(crate) struct SockDone {
    loop_: Py<LoopCore>,
    handle: Py<Handle>,
    fd: RawFd,
    write: bool,
    /// For `sock_sendfile` (asyncio's `_sock_add_cancellation_callback`): the socket,
    /// whose fd must still be `fd` (not closed, not another file's now) to be removed.
    sock: Option<Py<PyAny>>,
}

#[pymethods]
impl SockDone {
    fn __call__(&self, py: Python<'_>, _fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.handle.state().is_cancelled() {
            return Ok(());
        }
        if let Some(sock) = &self.sock {
            let fd: RawFd = sock
                .bind(py)
                .call_method0(intern!(py, "fileno"))?
                .extract()?;
            if fd != self.fd {
                return Ok(());
            }
        }
        LoopCore::remove_io_fd(self.loop_.bind(py), self.fd, self.write).map(drop)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.handle)?;
        visit.call(&self.sock)
    }
}

/// The done-callback of the `getaddrinfo` a `sock_connect` to a host name waits for:
/// connects to the first address found.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub(crate) struct SockResolved {
    loop_: Py<LoopCore>,
    fut: Py<PyAny>,
    sock: Py<PyAny>,
}

#[pymethods]
impl SockResolved {
    fn __call__(&self, py: Python<'_>, infos: &Bound<'_, PyAny>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        if infos.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            fut.call_method0(intern!(py, "cancel"))?;
            return Ok(());
        }
        let step = infos
            .call_method0(intern!(py, "result"))
            .and_then(|infos| infos.get_item(0)?.get_item(4))
            .and_then(|address| {
                LoopCore::connect_step(self.loop_.bind(py), fut, self.sock.bind(py), &address)
            });
        match step {
            Ok(()) => Ok(()),
            Err(e) => match caught(py, e)? {
                Attempt::Failed(e) => settle(fut, Attempt::Failed(e)),
                _ => Ok(()),
            },
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.fut)?;
        visit.call(&self.sock)
    }
}

/// `socket.socket(family, type, proto, fileno=fd)` for a non-blocking connected or
/// accepted `fd`, which the object owns once made. SOCK_NONBLOCK in the type makes the
/// object start with timeout 0.0, as asyncio's `conn.setblocking(False)` leaves it.
pub(crate) fn socket_from_fd(
    py: Python<'_>,
    fd: RawFd,
    family: i32,
    ty: i32,
    proto: i32,
) -> PyResult<Bound<'_, PyAny>> {
    let kw = pyo3::types::PyDict::new(py);
    kw.set_item(intern!(py, "fileno"), fd)?;
    Names::get(py)?
        .socket_cls
        .bind(py)
        .call((family, ty | libc::SOCK_NONBLOCK, proto), Some(&kw))
}

impl LoopCore {
    /// The checks every `sock_*` method makes first; the socket's fd.
    fn sock_prologue(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
        let py = slf.py();
        // asyncio's `_check_ssl_socket(sock)` refuses an `ssl.SSLSocket`; a plain
        // `socket.socket` (the usual case) cannot be one, so the call is skipped for it.
        let names = Names::get(py)?;
        let fast_fd = crate::pyo::socket_fd::socket_fd(sock, names.socket_cls.bind(py));
        if fast_fd.is_none() {
            names
                .base_events
                .bind(py)
                .getattr(intern!(py, "_check_ssl_socket"))?
                .call1((sock,))?;
        }
        if slf.get().debug_on() && sock.call_method0(intern!(py, "gettimeout"))?.ne(0)? {
            return Err(PyValueError::new_err("the socket must be non-blocking"));
        }
        match fast_fd {
            Some(fd) => Ok(fd),
            None => sock.call_method0(intern!(py, "fileno"))?.extract(),
        }
    }

    /// Waits for `fd` to be readable (`write == false`) or writable, then runs `op` until
    /// it completes; resolves and returns the future.
    fn sock_wait(
        slf: &Bound<'_, Self>,
        fut: Bound<'_, PyAny>,
        fd: RawFd,
        write: bool,
        op: Op,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let wait = Bound::new(
            py,
            SockWait {
                fut: fut.clone().unbind(),
                fd,
                op,
            },
        )?;
        Self::wait_on_fd(slf, fut, fd, write, wait.into_any(), None)
    }

    /// Makes `callback` the reader (`write == false`) or writer of `fd` until `fut` is
    /// done, as asyncio's `_add_reader`/`_add_writer` plus the done-callback that removes
    /// it (see [`SockDone`]); returns `fut`.
    pub(super) fn wait_on_fd(
        slf: &Bound<'_, Self>,
        fut: Bound<'_, PyAny>,
        fd: RawFd,
        write: bool,
        callback: Bound<'_, PyAny>,
        sock: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let handle = Self::add_io_fd(slf, fd, None, callback, PyTuple::empty(py), write)?;
        let done = SockDone {
            loop_: slf.clone().unbind(),
            handle,
            fd,
            write,
            sock,
        };
        fut.call_method1(intern!(py, "add_done_callback"), (Bound::new(py, done)?,))?;
        Ok(fut.unbind())
    }

    /// The result of an attempt that completed at once (the `sock_*` wrapper returns it
    /// without a future), or its error; `None` if it would block.
    fn value_at_once(attempt: Attempt) -> PyResult<Option<Py<PyAny>>> {
        match attempt {
            Attempt::Blocked => Ok(None),
            Attempt::Failed(e) => Err(e),
            Attempt::Done(v) => Ok(Some(v)),
        }
    }

    pub(super) fn sock_recv(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        n: isize,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fd = Self::sock_prologue(slf, sock)?;
        let n =
            usize::try_from(n).map_err(|_| PyValueError::new_err("negative buffersize in recv"))?;
        if let Some(value) = Self::value_at_once(recv(py, fd, n)?)? {
            return Ok(value);
        }
        let fut = Self::create_future(slf)?.into_bound(py);
        Self::sock_wait(slf, fut, fd, false, Op::Recv(n))
    }

    pub(super) fn sock_recv_into(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        buf: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fd = Self::sock_prologue(slf, sock)?;
        if let Some(value) = Self::value_at_once(recv_into(py, fd, buf)?)? {
            return Ok(value);
        }
        let fut = Self::create_future(slf)?.into_bound(py);
        Self::sock_wait(slf, fut, fd, false, Op::RecvInto(buf.clone().unbind()))
    }

    pub(super) fn sock_sendall(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fd = Self::sock_prologue(slf, sock)?;
        let pos = AtomicUsize::new(0);
        if let Some(value) = Self::value_at_once(send_rest(py, fd, data, &pos)?)? {
            return Ok(value);
        }
        // asyncio keeps a memoryview of the data while it waits: the object cannot be
        // resized meanwhile.
        let data = pyo3::types::PyMemoryView::from(data)?.into_any().unbind();
        let fut = Self::create_future(slf)?.into_bound(py);
        Self::sock_wait(slf, fut, fd, true, Op::SendAll { data, pos })
    }

    /// `sock.<method>(*args)` at once, else when `sock` is readable (`write == false`) or
    /// writable, calling `sock.<method>(*wait_args)` then.
    pub(super) fn sock_method(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        method: &Bound<'_, PyString>,
        args: Bound<'_, PyTuple>,
        wait_args: Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fd = Self::sock_prologue(slf, sock)?;
        if let Some(value) = Self::value_at_once(call_method(sock, method, &args)?)? {
            return Ok(value);
        }
        let fut = Self::create_future(slf)?.into_bound(py);
        let op = Op::Method {
            sock: sock.clone().unbind(),
            method: method.clone().unbind(),
            args: wait_args.unbind(),
        };
        Self::sock_wait(slf, fut, fd, write, op)
    }

    pub(super) fn sock_accept(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fd = Self::sock_prologue(slf, sock)?;
        let fut = Self::create_future(slf)?.into_bound(py);
        match accept_connection(py, fd, sock)? {
            Attempt::Blocked => {
                Self::sock_wait(slf, fut, fd, false, Op::Accept(sock.clone().unbind()))
            }
            done => {
                settle(&fut, done)?;
                Ok(fut.unbind())
            }
        }
    }

    pub(super) fn sock_connect(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        Self::sock_prologue(slf, sock)?;
        let family: i32 = sock.getattr(intern!(py, "family"))?.extract()?;
        let fut = Self::create_future(slf)?.into_bound(py);
        let mut address = address.clone();
        if family == libc::AF_INET || family == libc::AF_INET6 {
            // asyncio's _ensure_resolved: a numeric host needs no getaddrinfo.
            match Self::resolve_numeric(slf, sock, family, &address)? {
                Some(resolved) => address = resolved,
                None => {
                    let (host, port) = address
                        .get_item(0)
                        .and_then(|h| Ok((h, address.get_item(1)?)))?;
                    // asyncio's _ensure_resolved: `await loop.getaddrinfo(host, port,
                    // family=, type=, proto=, flags=0)` with the socket's values.
                    let (family, ty, proto) = (
                        sock.getattr(intern!(py, "family"))?,
                        sock.getattr(intern!(py, "type"))?,
                        sock.getattr(intern!(py, "proto"))?,
                    );
                    let getaddrinfo = slf.getattr(intern!(py, "getaddrinfo"))?;
                    let infos = if getaddrinfo.hasattr(intern!(py, "_ferroloop_native"))? {
                        // ferroloop's own: its native work, without a coroutine and task.
                        let zero = 0i32.into_pyobject(py)?.into_any();
                        crate::net::dns::getaddrinfo(
                            slf, &host, &port, &family, &ty, &proto, &zero,
                        )?
                    } else {
                        let kw = pyo3::types::PyDict::new(py);
                        kw.set_item("family", family)?;
                        kw.set_item("type", ty)?;
                        kw.set_item("proto", proto)?;
                        kw.set_item("flags", 0)?;
                        let coro = getaddrinfo.call((host, port), Some(&kw))?;
                        let kw = pyo3::types::PyDict::new(py);
                        kw.set_item("loop", slf)?;
                        Names::get(py)?
                            .ensure_future
                            .bind(py)
                            .call((coro,), Some(&kw))?
                            .unbind()
                    };
                    let then = SockResolved {
                        loop_: slf.clone().unbind(),
                        fut: fut.clone().unbind(),
                        sock: sock.clone().unbind(),
                    };
                    infos
                        .bind(py)
                        .call_method1(intern!(py, "add_done_callback"), (Bound::new(py, then)?,))?;
                    return Ok(fut.unbind());
                }
            }
        }
        Self::connect_step(slf, &fut, sock, &address)?;
        Ok(fut.unbind())
    }

    /// asyncio's `_sock_connect`: connects, or waits for the connection's outcome.
    fn connect_step(
        slf: &Bound<'_, Self>,
        fut: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let family: i32 = sock.getattr(intern!(py, "family"))?.extract()?;
        let attempt = match numeric_address(family, address) {
            Some(addr) => {
                let res = sys::connect(fd, &sys::SockAddr::from_ip(&addr));
                attempt_of(res, |()| Ok(py.None()))?
            }
            // Unix and other families, and addresses the socket module must check.
            None => match sock.call_method1(intern!(py, "connect"), (address,)) {
                Ok(_) => Attempt::Done(py.None()),
                Err(e) => caught(py, e)?,
            },
        };
        match attempt {
            Attempt::Blocked => {
                let op = Op::Connect(address.clone().unbind());
                Self::sock_wait(slf, fut.clone(), fd, true, op).map(drop)
            }
            done => settle(fut, done),
        }
    }
}

/// PyO3's `LoopCore._sock_recv` and `_sock_sendall`, replaced by [`FastSockRecv`] and
/// [`FastSockSendall`], which hand them the calls they do not take.
static PYO3_SOCK_RECV: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PYO3_SOCK_SENDALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_sock_recv(sock, n)` (once per `sock_recv`) without PyO3's trampoline and generic
/// argument extraction. It takes the call `Loop.sock_recv` makes, two positional
/// arguments with `n` an `int` in range, from the loop's thread while it runs (inside
/// `run_forever`'s trampoline: see [`LoopCore::runs_on_this_thread`]); any other call goes
/// to PyO3's method, with its argument errors.
struct FastSockRecv;
impl VectorMethod for FastSockRecv {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        if args.nargs() == 2 && args.nkw() == 0 && slf.get().runs_on_this_thread() {
            let n = args.arg(1);
            if let Some(n) = n
                .cast_exact::<PyInt>()
                .ok()
                .and_then(|n| n.extract::<isize>().ok())
            {
                return LoopCore::sock_recv(slf, &args.arg(0), n);
            }
        }
        forward_to_replaced(&PYO3_SOCK_RECV, slf.as_any(), &args)
    }
}

/// `_sock_sendall(sock, data)` (once per `sock_sendall`), as [`FastSockRecv`].
struct FastSockSendall;
impl VectorMethod for FastSockSendall {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        if args.nargs() == 2 && args.nkw() == 0 && slf.get().runs_on_this_thread() {
            return LoopCore::sock_sendall(slf, &args.arg(0), &args.arg(1));
        }
        forward_to_replaced(&PYO3_SOCK_SENDALL, slf.as_any(), &args)
    }
}

/// Installs [`FastSockRecv`] and [`FastSockSendall`] over PyO3's methods.
pub(super) fn install_fast_methods(py: Python<'_>) -> PyResult<()> {
    install_over::<FastSockRecv>(
        py,
        c"_sock_recv",
        c"_sock_recv($self, sock, n)\n--\n\n`sock_recv`'s work: up to `n` bytes received from `sock`, or a future for them when\nnone are there yet.",
        &PYO3_SOCK_RECV,
    )?;
    install_over::<FastSockSendall>(
        py,
        c"_sock_sendall",
        c"_sock_sendall($self, sock, data)\n--\n\n`sock_sendall`'s work: `None` once all of `data` is sent at once, else a future done\nonce it is.",
        &PYO3_SOCK_SENDALL,
    )
}
