//! The listener of a server socket: asyncio's `_start_serving` / `_accept_connection` /
//! `_stop_serving`, with `accept4` in Rust and the connection's transport made at once.
//!
//! asyncio accepts up to `backlog` connections per readable event and starts a Task per
//! connection (`_accept_connection2`) that calls the protocol factory and makes the
//! transport. Here a plain connection gets its protocol and transport in the accept job
//! itself (no Task, no waiter future); the callbacks then follow asyncio's order
//! (`connection_made`, then reading). A TLS connection likewise (its handshake's failure
//! watched by a callback of its waiter) outside debug mode; in debug mode it takes
//! asyncio's own path (a Task), whose reports are asyncio's.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyConnectionAbortedError, PyOSError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{socket_from_fd, Attempt, LoopCore, Owner};
use crate::names::logger;
use crate::net::{sockaddr, would_block};
use crate::pyo::context::{copy_current, with_context};
use crate::pyo::errno::os_error;
use crate::pyo::exc::is_fatal;
use crate::reactor::Interest;

/// asyncio's `constants.ACCEPT_RETRY_DELAY`: seconds before accepting again after the
/// process ran out of fds (or memory).
const ACCEPT_RETRY_DELAY: f64 = 1.0;

/// A listening socket being served (asyncio's reader `_accept_connection`).
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct Listener {
    fd: RawFd,
    loop_: Py<LoopCore>,
    protocol_factory: Py<PyAny>,
    sock: Py<PyAny>,
    sslcontext: Py<PyAny>,
    server: Py<PyAny>,
    backlog: usize,
    ssl_handshake_timeout: Py<PyAny>,
    ssl_shutdown_timeout: Py<PyAny>,
    /// The context the factory and the connections' callbacks are copied from.
    context: Py<PyAny>,
    /// Cleared by `_stop_serving`: a queued accept job does nothing then.
    active: AtomicBool,
    /// The listening socket's family, type and proto: its connections' (as
    /// `socket.accept()` makes them).
    kind: (i32, i32, i32),
}

impl Listener {
    /// Stops accepting: the listener lost its fd (to `_stop_serving`, or to an
    /// `add_reader` that replaced it, as asyncio's reader would be).
    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
    }
}

/// `loop._start_serving(protocol_factory, sock, sslcontext, server, backlog, ...)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_serving(
    lp: &Bound<'_, LoopCore>,
    protocol_factory: &Bound<'_, PyAny>,
    sock: &Bound<'_, PyAny>,
    sslcontext: &Bound<'_, PyAny>,
    server: &Bound<'_, PyAny>,
    backlog: usize,
    ssl_handshake_timeout: &Bound<'_, PyAny>,
    ssl_shutdown_timeout: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = lp.py();
    let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    let kind = (
        crate::sys::sockopt_int(fd, libc::SO_DOMAIN).map_err(os_error)?,
        crate::sys::sockopt_int(fd, libc::SO_TYPE).map_err(os_error)?,
        sock.getattr(intern!(py, "proto"))?.extract()?,
    );
    let listener = Py::new(
        py,
        Listener {
            fd,
            loop_: lp.clone().unbind(),
            protocol_factory: protocol_factory.clone().unbind(),
            sock: sock.clone().unbind(),
            sslcontext: sslcontext.clone().unbind(),
            server: server.clone().unbind(),
            backlog: backlog.max(1),
            ssl_handshake_timeout: ssl_handshake_timeout.clone().unbind(),
            ssl_shutdown_timeout: ssl_shutdown_timeout.clone().unbind(),
            context: copy_current(py)?.unbind(),
            active: AtomicBool::new(true),
            kind,
        },
    )?;
    LoopCore::adopt_fd(lp, fd, Owner::Listener(listener.clone_ref(py)))?;
    // An error means the fd was closed behind the listener's back; accept() reports it.
    let _ = LoopCore::set_owner_interest(lp, fd, listener.as_ptr(), Interest::READ, 0);
    Ok(())
}

/// `loop._stop_serving(sock)`: stop accepting and close the listening socket; on 3.13,
/// remove the socket file of a `create_unix_server(cleanup_socket=True)` unless another
/// file took its path meanwhile (asyncio's `_UnixSelectorEventLoop._stop_serving`).
pub(crate) fn stop_serving(lp: &Bound<'_, LoopCore>, sock: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = lp.py();
    // `_unix_server_sockets` is a plain attribute of the 3.13 loop (create_unix_server
    // fills it in); absent before 3.13.
    let unix_sockets = lp
        .getattr(intern!(py, "_unix_server_sockets"))
        .ok()
        .and_then(|m| m.cast_into::<PyDict>().ok());
    let path = match &unix_sockets {
        Some(m) if m.contains(sock)? => Some(sock.call_method0(intern!(py, "getsockname"))?),
        _ => None,
    };
    let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    if fd >= 0 {
        if let Some(l) = LoopCore::release_listener(lp, fd) {
            l.get().deactivate();
        }
    }
    sock.call_method0(intern!(py, "close"))?;
    let (Some(path), Some(map)) = (path, unix_sockets) else {
        return Ok(());
    };
    let prev_ino = map.get_item(sock)?;
    map.del_item(sock)?;
    let os = py.import("os")?;
    let res = os
        .call_method1(intern!(py, "stat"), (&path,))
        .and_then(|st| {
            if st.getattr(intern!(py, "st_ino"))?.eq(&prev_ino)? {
                os.call_method1(intern!(py, "unlink"), (&path,))?;
            }
            Ok(())
        });
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyFileNotFoundError>(py) => Ok(()),
        Err(e) if e.is_instance_of::<PyOSError>(py) => {
            logger(py)?.call_method1(
                intern!(py, "error"),
                (
                    "Unable to clean up listening UNIX socket %r: %r",
                    sock,
                    e.value(py),
                ),
            )?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The listening socket is readable: accept up to `backlog` connections.
pub(crate) fn run_job(lp: &Bound<'_, LoopCore>, listener: Py<Listener>) -> PyResult<()> {
    let py = lp.py();
    let listener = listener.into_bound(py);
    let this = listener.get();
    let res = with_context(py, this.context.bind(py), || {
        // A connection outside debug mode: accepted and served with no socket object.
        let fast = !lp.get().is_debug();
        let tls = this.sslcontext.bind(py).is_truthy()?;
        for _ in 0..this.backlog {
            if !this.active.load(Ordering::Acquire) {
                return Ok(());
            }
            if fast {
                let (conn, addr) = match crate::sys::accept_owned(this.fd) {
                    Ok(v) => v,
                    Err(e) if would_block(&e) || e.raw_os_error() == Some(libc::ECONNABORTED) => {
                        return Ok(())
                    }
                    Err(e) => return out_of_resources(lp, &listener, os_error(e)),
                };
                // Each connection's callbacks run in a copy of the listener's context, as
                // asyncio's per-connection Task does.
                let ctx = copy_current(py)?;
                match sockaddr::to_python(py, &addr)? {
                    Some(peer) if tls => {
                        with_context(py, &ctx, || connect_tls(lp, this, TlsConn::Fd(conn, peer)))?
                    }
                    Some(peer) => with_context(py, &ctx, || connect_fd(lp, this, conn, peer))?,
                    None => {
                        // An address the socket module formats: make the object now.
                        let conn = socket_of(py, conn, this.kind)?;
                        let extra = PyDict::new(py);
                        extra.set_item(
                            intern!(py, "peername"),
                            conn.call_method0(intern!(py, "getpeername"))?,
                        )?;
                        with_context(py, &ctx, || {
                            if tls {
                                connect_tls(lp, this, TlsConn::Sock(&conn, &extra))
                            } else {
                                connect(lp, this, &conn, &extra)
                            }
                        })?;
                    }
                }
                continue;
            }
            let (conn, addr) =
                match crate::event_loop::accept_connection(py, this.fd, this.sock.bind(py))? {
                    Attempt::Blocked => return Ok(()),
                    Attempt::Failed(e) if e.is_instance_of::<PyConnectionAbortedError>(py) => {
                        return Ok(())
                    }
                    Attempt::Failed(e) => return out_of_resources(lp, &listener, e),
                    Attempt::Done(pair) => {
                        let pair = pair.into_bound(py);
                        let pair = pair.cast::<PyTuple>()?;
                        (pair.get_item(0)?, pair.get_item(1)?)
                    }
                };
            if lp.get().is_debug() {
                logger(py)?.call_method1(
                    intern!(py, "debug"),
                    (
                        "%r got a new connection from %r: %r",
                        this.server.bind(py),
                        &addr,
                        &conn,
                    ),
                )?;
            }
            let extra = PyDict::new(py);
            extra.set_item(intern!(py, "peername"), &addr)?;
            if tls {
                // asyncio's own path in debug mode (its reports): the handshake in a Task.
                let coro = lp.call_method1(
                    intern!(py, "_accept_connection2"),
                    (
                        this.protocol_factory.bind(py),
                        &conn,
                        &extra,
                        this.sslcontext.bind(py),
                        this.server.bind(py),
                        this.ssl_handshake_timeout.bind(py),
                        this.ssl_shutdown_timeout.bind(py),
                    ),
                )?;
                lp.call_method1(intern!(py, "create_task"), (coro,))?;
                continue;
            }
            // Each connection's callbacks run in a copy of the listener's context, as
            // asyncio's per-connection Task does.
            let ctx = copy_current(py)?;
            with_context(py, &ctx, || connect(lp, this, &conn, &extra))?;
        }
        Ok(())
    });
    match res {
        Err(e) if !is_fatal(py, &e) => {
            let ctx = PyDict::new(py);
            ctx.set_item("message", "Exception in the accept callback of a server")?;
            ctx.set_item("exception", crate::pyo::exc::exc_value(py, &e))?;
            lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
            Ok(())
        }
        other => other,
    }
}

/// The socket object of an accepted fd (which it owns then).
fn socket_of(
    py: Python<'_>,
    fd: std::os::fd::OwnedFd,
    (family, ty, proto): (i32, i32, i32),
) -> PyResult<Bound<'_, PyAny>> {
    let obj = socket_from_fd(py, std::os::fd::AsRawFd::as_raw_fd(&fd), family, ty, proto)?;
    let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
    Ok(obj)
}

/// [`connect`] for a connection accepted without a socket object.
fn connect_fd(
    lp: &Bound<'_, LoopCore>,
    this: &Listener,
    conn: std::os::fd::OwnedFd,
    peer: Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = lp.py();
    let made = this.protocol_factory.bind(py).call0().and_then(|p| {
        crate::net::stream::make_accepted_transport(
            lp,
            conn,
            this.kind,
            peer,
            &p,
            Some(this.server.bind(py)),
        )
    });
    match made {
        Ok(_) => Ok(()),
        Err(e) if is_fatal(py, &e) => Err(e),
        // Outside debug mode asyncio reports nothing; the connection is closed (the fd
        // was dropped with the error).
        Err(_) => Ok(()),
    }
}

/// asyncio's `_accept_connection2` for a plain connection: the protocol, then the
/// transport. A failure is reported in debug mode only, as asyncio does, and the
/// connection closed.
fn connect(
    lp: &Bound<'_, LoopCore>,
    this: &Listener,
    conn: &Bound<'_, PyAny>,
    extra: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let py = lp.py();
    let mut protocol = None;
    let made = (|| -> PyResult<()> {
        let p = this.protocol_factory.bind(py).call0()?;
        protocol = Some(p.clone());
        let args = crate::net::transport::MakeArgs {
            extra: Some(extra.as_any()),
            server: Some(this.server.bind(py)),
            ..Default::default()
        };
        crate::net::stream::make_socket_transport(lp, conn, &p, args)?;
        Ok(())
    })();
    let Err(e) = made else {
        return Ok(());
    };
    if is_fatal(py, &e) {
        return Err(e);
    }
    let _ = conn.call_method0(intern!(py, "close"));
    if lp.get().is_debug() {
        let ctx = PyDict::new(py);
        ctx.set_item(
            "message",
            "Error on transport creation for incoming connection",
        )?;
        ctx.set_item("exception", crate::pyo::exc::exc_value(py, &e))?;
        if let Some(p) = protocol {
            ctx.set_item("protocol", p)?;
        }
        lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
    }
    Ok(())
}

/// An accepted connection to serve over TLS: its fd and peer address, or (an address the
/// socket module formats) its socket object and extra info.
enum TlsConn<'a, 'py> {
    Fd(std::os::fd::OwnedFd, Bound<'py, PyAny>),
    Sock(&'a Bound<'py, PyAny>, &'a Bound<'py, PyDict>),
}

/// A TLS connection, as asyncio's `_accept_connection2` makes it outside debug mode
/// (where it reports nothing): the protocol, a waiter, `loop._make_ssl_transport(...)`
/// (ferroloop's native TLS protocol), and when the waiter fails (handshake error, timeout,
/// peer gone) `transport.close()`, which asyncio's Task does after `await waiter`. The
/// connection's callbacks run in the context current here (a copy per connection).
fn connect_tls(lp: &Bound<'_, LoopCore>, this: &Listener, conn: TlsConn<'_, '_>) -> PyResult<()> {
    let py = lp.py();
    let made = (|| -> PyResult<()> {
        let protocol = this.protocol_factory.bind(py).call0()?;
        let waiter = lp.call_method0(intern!(py, "create_future"))?;
        let kw = PyDict::new(py);
        kw.set_item(
            intern!(py, "ssl_handshake_timeout"),
            this.ssl_handshake_timeout.bind(py),
        )?;
        kw.set_item(
            intern!(py, "ssl_shutdown_timeout"),
            this.ssl_shutdown_timeout.bind(py),
        )?;
        let transport = match conn {
            // What `loop._make_ssl_transport()` does, over the accepted fd (no socket
            // object): the SSL protocol, its transport below, its app transport.
            TlsConn::Fd(fd, peer) => {
                let ssl_protocol = crate::net::tls::protocol_class(py)?.call(
                    (
                        lp,
                        &protocol,
                        this.sslcontext.bind(py),
                        &waiter,
                        true,
                        py.None(),
                    ),
                    Some(&kw),
                )?;
                crate::net::stream::make_accepted_transport(
                    lp,
                    fd,
                    this.kind,
                    peer,
                    &ssl_protocol,
                    Some(this.server.bind(py)),
                )?;
                ssl_protocol.getattr(intern!(py, "_app_transport"))?
            }
            TlsConn::Sock(sock, extra) => {
                kw.set_item(intern!(py, "waiter"), &waiter)?;
                kw.set_item(intern!(py, "server_side"), true)?;
                kw.set_item(intern!(py, "extra"), extra)?;
                kw.set_item(intern!(py, "server"), this.server.bind(py))?;
                lp.call_method(
                    intern!(py, "_make_ssl_transport"),
                    (sock, &protocol, this.sslcontext.bind(py)),
                    Some(&kw),
                )?
            }
        };
        let transport = transport.unbind();
        let on_done = pyo3::types::PyCFunction::new_closure(
            py,
            None,
            None,
            move |args: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                let py = args.py();
                let waiter = args.get_item(0)?;
                // `await waiter` raising: cancelled, or an exception (retrieved here).
                let failed = waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()?
                    || !waiter.call_method0(intern!(py, "exception"))?.is_none();
                if failed {
                    transport.bind(py).call_method0(intern!(py, "close"))?;
                }
                Ok(())
            },
        )?;
        waiter.call_method1(intern!(py, "add_done_callback"), (on_done,))?;
        Ok(())
    })();
    match made {
        // Outside debug mode asyncio's Task swallows the error.
        Err(e) if !is_fatal(py, &e) => Ok(()),
        other => other,
    }
}

/// asyncio's handling of `accept()` failing with EMFILE, ENFILE, ENOBUFS or ENOMEM:
/// report, stop accepting and try again in a second. Other errors are raised (and
/// reported as a failing callback).
fn out_of_resources(
    lp: &Bound<'_, LoopCore>,
    listener: &Bound<'_, Listener>,
    e: PyErr,
) -> PyResult<()> {
    let py = lp.py();
    let this = listener.get();
    let errno = if e.is_instance_of::<PyOSError>(py) {
        e.value(py)
            .getattr(intern!(py, "errno"))?
            .extract::<Option<i32>>()?
    } else {
        None
    };
    if !matches!(
        errno,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) {
        return Err(e);
    }
    let ctx = PyDict::new(py);
    ctx.set_item("message", "socket.accept() out of system resource")?;
    ctx.set_item("exception", crate::pyo::exc::exc_value(py, &e))?;
    let tsock = crate::names::Names::get(py)?
        .transport_socket
        .bind(py)
        .call1((this.sock.bind(py),))?;
    ctx.set_item("socket", tsock)?;
    lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
    let _ = LoopCore::set_owner_interest(lp, this.fd, listener.as_ptr(), Interest::default(), 0);
    lp.call_method1(
        intern!(py, "call_later"),
        (
            ACCEPT_RETRY_DELAY,
            listener.getattr(intern!(py, "_resume"))?,
        ),
    )?;
    Ok(())
}

#[pymethods]
impl Listener {
    /// Accept again after [`ACCEPT_RETRY_DELAY`], unless the server stopped meanwhile.
    fn _resume(slf: &Bound<'_, Self>) {
        let this = slf.get();
        if this.active.load(Ordering::Acquire) {
            let _ = LoopCore::set_owner_interest(
                this.loop_.bind(slf.py()),
                this.fd,
                slf.as_ptr(),
                Interest::READ,
                0,
            );
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.protocol_factory)?;
        visit.call(&self.sock)?;
        visit.call(&self.sslcontext)?;
        visit.call(&self.server)?;
        visit.call(&self.ssl_handshake_timeout)?;
        visit.call(&self.ssl_shutdown_timeout)?;
        visit.call(&self.context)?;
        Ok(())
    }
}
