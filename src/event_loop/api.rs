//! The Python face of `LoopCore`: the one `#[pymethods]` block, in the order of
//! `asyncio.AbstractEventLoop`, each method delegating to the file of its concern (see the
//! table in [`super`]). Getters and one-line checks are answered here.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::{LoopCore, CLOCK_RESOLUTION};
use crate::clock::monotonic;
use crate::net::stream::Kind;
use crate::net::transport::MakeArgs;

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Self::create(py)
    }

    // ----- running and stopping -------------------------------------------------------

    /// Runs the loop until `stop()` is called.
    #[pyo3(name = "run_forever")]
    fn py_run_forever(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_forever(slf)
    }

    /// Runs until `future` (a future or coroutine) is done and returns its result.
    #[pyo3(name = "run_until_complete")]
    fn py_run_until_complete(
        slf: &Bound<'_, Self>,
        future: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Self::run_until_complete(slf, future)
    }

    /// Stops the loop after the current iteration.
    #[pyo3(name = "stop")]
    fn py_stop(&self) {
        self.stop()
    }

    fn is_running(&self) -> bool {
        self.is_running_inner()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the loop: drops pending callbacks, removes signal handlers, shuts the
    /// default executor down without waiting and releases the epoll and waker fds.
    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close(slf)
    }

    /// Starts closing every live async generator; returns a future done when all are
    /// closed (None if there is none). `ferroloop.Loop.shutdown_asyncgens` awaits it.
    fn _shutdown_asyncgens(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        Self::shutdown_asyncgens(slf)
    }

    /// Starts shutting the default executor down in a helper thread; returns a future
    /// resolved when its threads are joined (asyncio's `shutdown_default_executor`).
    #[pyo3(signature = (timeout=None))]
    fn _shutdown_default_executor(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Py<PyAny>>> {
        Self::shutdown_default_executor(slf, timeout)
    }

    /// Emits asyncio's `ResourceWarning` for a loop garbage-collected while open.
    fn _warn_unclosed(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::warn_unclosed(slf)
    }

    // ----- scheduling (the hot ones are replaced by `fastcall`'s entry points) ---------

    fn _timer_handle_cancelled(&self, _handle: &Bound<'_, PyAny>) {
        self.timer_handle_cancelled();
    }

    /// Schedules `callback(*args)` for the next iteration.
    #[pyo3(name = "call_soon", signature = (callback, *args, context=None))]
    fn py_call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Self::call_soon(slf, callback, args, context).map(Py::into_any)
    }

    /// Schedules `callback(*args)` to run `delay` seconds from now.
    #[pyo3(name = "call_later", signature = (delay, callback, *args, context=None))]
    fn py_call_later(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Self::call_later(slf, delay, callback, args, context).map(Py::into_any)
    }

    /// Schedules `callback(*args)` at the absolute loop time `when`.
    #[pyo3(name = "call_at", signature = (when, callback, *args, context=None))]
    fn py_call_at(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Self::call_at(slf, when, callback, args, context).map(Py::into_any)
    }

    /// The loop's clock (`time.monotonic()`).
    fn time(&self) -> f64 {
        monotonic()
    }

    /// A new `asyncio.Future` bound to this loop.
    #[pyo3(name = "create_future")]
    fn py_create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Self::create_future(slf)
    }

    /// Wraps a coroutine in a task (through the task factory, if one is set).
    #[pyo3(name = "create_task", signature = (coro, *, name=None, context=None))]
    fn py_create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Self::create_task(slf, coro, name, context)
    }

    #[pyo3(name = "set_task_factory", signature = (factory))]
    fn py_set_task_factory(&self, factory: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_task_factory(factory)
    }

    #[pyo3(name = "get_task_factory")]
    fn py_get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_task_factory(py)
    }

    /// asyncio's attribute behind `get_task_factory()`.
    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_task_factory(py)
    }

    // ----- methods for running in threads ---------------------------------------------

    /// `call_soon` that may be called from any thread; wakes the loop.
    #[pyo3(name = "call_soon_threadsafe", signature = (callback, *args, context=None))]
    fn py_call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Self::call_soon_threadsafe(slf, callback, args, context).map(Py::into_any)
    }

    /// Runs `func(*args)` in `executor` (the default thread pool when None) and returns
    /// an asyncio future for the result.
    #[pyo3(name = "run_in_executor", signature = (executor, func, *args))]
    fn py_run_in_executor(
        slf: &Bound<'_, Self>,
        executor: &Bound<'_, PyAny>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        Self::run_in_executor(slf, executor, func, args)
    }

    /// Sets the executor used by `run_in_executor(None, ...)`.
    #[pyo3(name = "set_default_executor")]
    fn py_set_default_executor(&self, executor: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_default_executor(executor)
    }

    #[getter]
    fn _default_executor(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.default_executor(py)
    }

    // ----- ready-based callback registration ------------------------------------------

    /// Calls `callback(*args)` whenever `fd` is readable. Returns None, as asyncio does.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_io(slf, fd, callback, args, false).map(drop)
    }

    /// `add_reader` returning the reader's `Handle`, as asyncio's `_add_reader` (what its
    /// transports use) does.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        Self::add_io(slf, fd, callback, args, false).map(Py::into_any)
    }

    /// Stops watching `fd` for reading; True if it was watched.
    fn remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, false)
    }

    /// `remove_reader` under asyncio's private name (`_remove_reader`), which its own
    /// helpers call on the loop (`PidfdChildWatcher`, a user's subclass of it).
    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, false)
    }

    /// Calls `callback(*args)` whenever `fd` is writable. Returns None, as asyncio does.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_io(slf, fd, callback, args, true).map(drop)
    }

    /// `add_writer` returning the writer's `Handle` (asyncio's `_add_writer`).
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        Self::add_io(slf, fd, callback, args, true).map(Py::into_any)
    }

    /// Stops watching `fd` for writing; True if it was watched.
    fn remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, true)
    }

    /// `remove_writer` under asyncio's private name (`_remove_writer`).
    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, true)
    }

    // ----- sockets (wrapped in coroutines by python/ferroloop) -------------------------

    /// `sock_recv`'s work: up to `n` bytes received from `sock`, or a future for them when
    /// none are there yet.
    fn _sock_recv(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, n: isize) -> PyResult<Py<PyAny>> {
        Self::sock_recv(slf, sock, n)
    }

    /// `sock_recv_into`'s work: the number of bytes received into `buf`, or a future for it
    /// when none are there yet.
    fn _sock_recv_into(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        buf: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Self::sock_recv_into(slf, sock, buf)
    }

    /// `sock_recvfrom`'s work: `(data, address)`, or a future for it when it would block.
    fn _sock_recvfrom(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        bufsize: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let args = PyTuple::new(py, [bufsize])?;
        let method = intern!(py, "recvfrom");
        Self::sock_method(slf, sock, method, args.clone(), args, false)
    }

    /// `sock_recvfrom_into`'s work: `(nbytes, address)`, or a future for it when it would
    /// block.
    #[pyo3(signature = (sock, buf, nbytes=None))]
    fn _sock_recvfrom_into(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        buf: &Bound<'_, PyAny>,
        nbytes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        // asyncio: `if not nbytes: nbytes = len(buf)`.
        let nbytes = match nbytes {
            Some(n) if n.is_truthy()? => n.clone(),
            _ => buf.len()?.into_pyobject(py)?.into_any(),
        };
        let args = PyTuple::new(py, [buf.clone(), nbytes])?;
        let method = intern!(py, "recvfrom_into");
        Self::sock_method(slf, sock, method, args.clone(), args, false)
    }

    /// `sock_sendto`'s work: the number of bytes sent, or a future for it when it would block.
    fn _sock_sendto(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let args = PyTuple::new(py, [data, address])?;
        // asyncio retries with `sock.sendto(data, 0, address)`.
        let zero = 0i32.into_pyobject(py)?.into_any();
        let wait_args = PyTuple::new(py, [data.clone(), zero, address.clone()])?;
        Self::sock_method(slf, sock, intern!(py, "sendto"), args, wait_args, true)
    }

    /// `sock_sendall`'s work: `None` once all of `data` is sent at once, else a future done
    /// once it is.
    fn _sock_sendall(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Self::sock_sendall(slf, sock, data)
    }

    /// `sock_connect`'s work: a future done once `sock` is connected to `address`.
    fn _sock_connect(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Self::sock_connect(slf, sock, address)
    }

    /// `sock_accept`'s work: a future for `(conn, address)`.
    fn _sock_accept(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::sock_accept(slf, sock)
    }

    // ----- transports and servers (net/) ---------------------------------------------

    /// A native stream transport over connected socket `sock` (asyncio's selector loop
    /// method, which `create_connection` and friends call).
    #[pyo3(signature = (sock, protocol, waiter=None, extra=None, server=None))]
    fn _make_socket_transport<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        protocol: &Bound<'py, PyAny>,
        waiter: Option<&Bound<'py, PyAny>>,
        extra: Option<&Bound<'py, PyAny>>,
        server: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = MakeArgs {
            waiter,
            extra,
            server,
            address: None,
        };
        crate::net::stream::make_socket_transport(slf, sock, protocol, args)
    }

    /// A native read pipe transport over `pipe` (asyncio's unix loop method, which
    /// `connect_read_pipe` and subprocesses call).
    #[pyo3(signature = (pipe, protocol, waiter=None, extra=None))]
    fn _make_read_pipe_transport<'py>(
        slf: &Bound<'py, Self>,
        pipe: &Bound<'py, PyAny>,
        protocol: &Bound<'py, PyAny>,
        waiter: Option<&Bound<'py, PyAny>>,
        extra: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = MakeArgs {
            waiter,
            extra,
            ..Default::default()
        };
        crate::net::stream::pipe::make_pipe_transport(slf, Kind::ReadPipe, pipe, protocol, args)
    }

    /// A native write pipe transport over `pipe` (see `_make_read_pipe_transport`).
    #[pyo3(signature = (pipe, protocol, waiter=None, extra=None))]
    fn _make_write_pipe_transport<'py>(
        slf: &Bound<'py, Self>,
        pipe: &Bound<'py, PyAny>,
        protocol: &Bound<'py, PyAny>,
        waiter: Option<&Bound<'py, PyAny>>,
        extra: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = MakeArgs {
            waiter,
            extra,
            ..Default::default()
        };
        crate::net::stream::pipe::make_pipe_transport(slf, Kind::WritePipe, pipe, protocol, args)
    }

    /// A native datagram transport over `sock` (asyncio's selector loop method, which
    /// `create_datagram_endpoint` calls).
    #[pyo3(signature = (sock, protocol, address=None, waiter=None, extra=None))]
    fn _make_datagram_transport<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        protocol: &Bound<'py, PyAny>,
        address: Option<&Bound<'py, PyAny>>,
        waiter: Option<&Bound<'py, PyAny>>,
        extra: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = MakeArgs {
            waiter,
            extra,
            server: None,
            address,
        };
        crate::net::datagram::make_datagram_transport(slf, sock, protocol, args)
    }

    /// Starts accepting connections on listening `sock` for `server` (called by
    /// `asyncio.Server`).
    #[pyo3(signature = (protocol_factory, sock, sslcontext=None, server=None, backlog=100,
                        ssl_handshake_timeout=None, ssl_shutdown_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn _start_serving(
        slf: &Bound<'_, Self>,
        protocol_factory: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        sslcontext: Option<&Bound<'_, PyAny>>,
        server: Option<&Bound<'_, PyAny>>,
        backlog: usize,
        ssl_handshake_timeout: Option<&Bound<'_, PyAny>>,
        ssl_shutdown_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let none = py.None().into_bound(py);
        crate::net::listener::start_serving(
            slf,
            protocol_factory,
            sock,
            sslcontext.unwrap_or(&none),
            server.unwrap_or(&none),
            backlog,
            ssl_handshake_timeout.unwrap_or(&none),
            ssl_shutdown_timeout.unwrap_or(&none),
        )
    }

    /// Stops accepting on `sock` and closes it (called by `asyncio.Server.close`).
    fn _stop_serving(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::net::listener::stop_serving(slf, sock)
    }

    // ----- DNS (src/net/dns.rs) and sendfile (sendfile.rs) -------------------------------

    /// `getaddrinfo`'s work: a future for `socket.getaddrinfo(...)`'s list.
    #[pyo3(signature = (host, port, family, r#type, proto, flags))]
    fn _getaddrinfo(
        slf: &Bound<'_, Self>,
        host: &Bound<'_, PyAny>,
        port: &Bound<'_, PyAny>,
        family: &Bound<'_, PyAny>,
        r#type: &Bound<'_, PyAny>,
        proto: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        crate::net::dns::getaddrinfo(slf, host, port, family, r#type, proto, flags)
    }

    /// `getnameinfo`'s work: a future for `socket.getnameinfo(sockaddr, flags)`.
    fn _getnameinfo(
        slf: &Bound<'_, Self>,
        sockaddr: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        crate::net::dns::getnameinfo(slf, sockaddr, flags)
    }

    /// asyncio's `_check_sendfile_params`.
    fn _check_sendfile_params(
        &self,
        sock: &Bound<'_, PyAny>,
        file: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::check_sendfile_params(sock, file, offset, count)
    }

    /// `sock_sendfile`'s checks before sending, in asyncio's order.
    fn _sock_sendfile_prologue(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        file: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::sock_sendfile_prologue(slf, sock, file, offset, count)
    }

    /// asyncio's `_sock_sendfile_native`: a future for the bytes sent by `sendfile(2)`.
    fn _sock_sendfile_native(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        file: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Self::sock_sendfile_native(slf, sock, file, offset, count)
    }

    // ----- child processes ------------------------------------------------------------

    /// Calls `callback(pid, returncode, *args)` from the loop once child `pid` exited,
    /// watched through a pidfd (`process`); `OSError` if pidfds are not available.
    #[pyo3(signature = (pid, callback, *args))]
    fn _watch_child(
        slf: &Bound<'_, Self>,
        pid: i32,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        crate::process::watch_child(slf, pid, callback, args)
    }

    // ----- signals --------------------------------------------------------------------

    /// Runs `callback(*args)` on the loop whenever signal `sig` arrives (main thread only).
    #[pyo3(name = "add_signal_handler", signature = (sig, callback, *args))]
    fn py_add_signal_handler(
        slf: &Bound<'_, Self>,
        sig: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_signal_handler(slf, sig, callback, args)
    }

    /// Removes the handler for `sig`; True if one was installed.
    #[pyo3(name = "remove_signal_handler")]
    fn py_remove_signal_handler(slf: &Bound<'_, Self>, sig: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_signal_handler(slf, sig)
    }

    #[getter]
    fn _signal_handlers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.signal_handlers(py)
    }

    // ----- error handlers -------------------------------------------------------------

    #[pyo3(name = "set_exception_handler")]
    fn py_set_exception_handler(&self, handler: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_exception_handler(handler)
    }

    #[pyo3(name = "get_exception_handler")]
    fn py_get_exception_handler(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_exception_handler(py)
    }

    /// Logs `context` through asyncio's logger, in asyncio's format.
    /// asyncio's attribute behind `get_exception_handler()`, which code written before that
    /// method existed saves and restores (`old = loop._exception_handler`).
    #[getter]
    fn _exception_handler(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_exception_handler(py)
    }

    #[pyo3(name = "default_exception_handler")]
    fn py_default_exception_handler(
        slf: &Bound<'_, Self>,
        context: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        Self::default_exception_handler(slf, context)
    }

    /// Reports `context` to the custom exception handler, or the default one.
    #[pyo3(name = "call_exception_handler")]
    fn py_call_exception_handler(
        slf: &Bound<'_, Self>,
        context: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        Self::call_exception_handler(slf, context)
    }

    // ----- debug flag management ------------------------------------------------------

    fn get_debug(&self) -> bool {
        self.debug_on()
    }

    #[pyo3(name = "set_debug")]
    fn py_set_debug(slf: &Bound<'_, Self>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::set_debug(slf, enabled)
    }

    fn _set_coroutine_origin_tracking(&self, py: Python<'_>, enabled: bool) -> PyResult<()> {
        self.set_coroutine_origin_tracking(py, enabled)
    }

    #[getter]
    fn get_slow_callback_duration(&self) -> f64 {
        f64::from_bits(self.slow_callback_duration.load(Ordering::Relaxed))
    }

    #[setter]
    fn set_slow_callback_duration(&self, value: f64) {
        self.slow_callback_duration
            .store(value.to_bits(), Ordering::Relaxed);
    }

    // ----- async generators -----------------------------------------------------------

    fn _asyncgen_firstiter_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::asyncgen_firstiter_hook(slf, agen)
    }

    fn _asyncgen_finalizer_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::asyncgen_finalizer_hook(slf, agen)
    }

    /// The live async generators the loop will close on `shutdown_asyncgens()`.
    #[getter]
    fn _asyncgens<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::asyncgens(slf)
    }

    // ----- BaseEventLoop's private attributes that tests and libraries read -------------

    /// asyncio's `_clock_resolution`: the resolution of `time.monotonic()`.
    #[getter]
    fn _clock_resolution(&self) -> f64 {
        CLOCK_RESOLUTION
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.debug_on()
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate.with(|s| {
            s.current_handle
                .as_ref()
                .map(|h| h.clone_ref(py).into_any())
        })
    }

    /// Number of callbacks ready to run (for introspection and tests).
    #[getter]
    fn _ready_count(&self) -> usize {
        self.queues.with(|s| s.ready.len())
    }

    /// Number of timers in the heap, cancelled ones included.
    #[getter]
    fn _timer_count(&self) -> usize {
        self.queues.with(|s| s.timers.len())
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    fn _check_running(&self, py: Python<'_>) -> PyResult<()> {
        self.check_running(py)
    }

    fn _check_thread(&self) -> PyResult<()> {
        self.check_thread()
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf, &mut VecDeque::new(), &mut Vec::new())
    }

    // ----- object protocol ------------------------------------------------------------

    /// Generic attribute assignment that notes when an instance attribute shadows a
    /// method the fast paths skip (see [`super::dispatch`]).
    fn __setattr__(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::generic_setattr(slf, name, Some(value))
    }

    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>) -> PyResult<()> {
        Self::generic_setattr(slf, name, None)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let cap = |b: bool| if b { "True" } else { "False" };
        Ok(format!(
            "<{} running={} closed={} debug={}>",
            slf.get_type().name()?,
            cap(this.is_running_inner()),
            cap(this.closed.load(Ordering::Acquire)),
            cap(this.debug_on())
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse(visit)
    }

    fn __clear__(&self, py: Python<'_>) {
        self.clear(py)
    }
}
