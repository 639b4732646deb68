//! The Python-visible methods of a stream transport's core (`ferroloop._SocketTransport`
//! calls them), delegating to `read`/`write`/`close`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::{close, pipe, write, Kind, StreamCore};
use crate::event_loop::LoopCore;
use crate::net::transport::wrapper::{
    core_of, forward_to_core, remember_core_slot, WrappedCore, WrapperIsClosing,
};
use crate::net::transport::{self, transport_pymethods};
use crate::pyo::fastcall::{
    forward_to_replaced, install_on, install_over, VectorArgs, VectorMethod, WrapperMethod,
};
use crate::pyo::object::SlotMember;
use pyo3::types::PyType;

/// PyO3's `StreamCore.write`, which [`FastWrite`] replaces and hands the calls it does not
/// take.
static PYO3_WRITE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `StreamCore.write` (bound as the transport's `write`, once per `write()` call) without
/// PyO3's trampoline and generic argument extraction, which cost as much as the write's
/// own bookkeeping. It takes the common call, `write(data)` from a callback of the loop
/// running on this thread (inside `run_forever`'s trampoline: see
/// [`LoopCore::runs_on_this_thread`]), and runs the same Rust code as PyO3's method;
/// every other call (keywords, a wrong number of arguments, another thread, the loop not
/// running) goes to PyO3's method as before, with its argument errors.
struct FastWrite;
impl VectorMethod for FastWrite {
    type Recv = StreamCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, StreamCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        if args.nargs() == 1 && args.nkw() == 0 && slf.get().loop_(py).get().runs_on_this_thread() {
            write::write(slf, &args.arg(0))?;
            return Ok(py.None());
        }
        forward_to_replaced(&PYO3_WRITE, slf.as_any(), &args)
    }
}

/// Installs [`FastWrite`] as `StreamCore.write` (after the class was added to the module).
pub(crate) fn install_fast_methods(py: Python<'_>) -> PyResult<()> {
    install_over::<FastWrite>(py, c"write", c"write($self, data)\n--\n\n", &PYO3_WRITE)
}

/// Where a `ferroloop._SocketTransport` keeps its core (its `_core` slot).
static CORE_SLOT: PyOnceLock<SlotMember> = PyOnceLock::new();

impl WrappedCore for StreamCore {
    fn core_slot() -> &'static PyOnceLock<SlotMember> {
        &CORE_SLOT
    }
}

/// `_SocketTransport.write`: [`FastWrite`] on the transport's core.
struct WrapperWrite;
impl WrapperMethod for WrapperWrite {
    #[inline]
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        FastWrite::call(&core_of::<StreamCore>(slf)?, args)
    }
}

/// `_SocketTransport.writelines`: the core's `writelines`.
struct WrapperWritelines;
impl WrapperMethod for WrapperWritelines {
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        let core = core_of::<StreamCore>(slf)?;
        if args.nargs() == 1 && args.nkw() == 0 {
            write::writelines(&core, &args.arg(0))?;
            return Ok(py.None());
        }
        forward_to_core(&core, pyo3::intern!(py, "writelines"), args)
    }
}

/// Makes `cls` (`ferroloop._SocketTransport`, whose `_core` slot holds a [`StreamCore`])
/// call its core's `write`, `writelines` and `is_closing` natively: each is a method
/// descriptor of the class, which CPython's specializing interpreter calls directly.
pub(crate) fn install_wrapper_methods(cls: &Bound<'_, PyType>) -> PyResult<()> {
    remember_core_slot::<StreamCore>(cls)?;
    install_on::<WrapperWrite>(cls, c"write", c"write($self, data)\n--\n\n")?;
    install_on::<WrapperWritelines>(
        cls,
        c"writelines",
        c"writelines($self, list_of_data)\n--\n\n",
    )?;
    install_on::<WrapperIsClosing<StreamCore>>(cls, c"is_closing", c"is_closing($self)\n--\n\n")
}

transport_pymethods!(StreamCore {
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        write::write(slf, data)
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        write::writelines(slf, list_of_data)
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        write::write_eof(slf)
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    /// asyncio's `_write_ready()`: what a writable event does (flush what is queued).
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        write::on_writable(slf)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        transport::set_write_buffer_limits(slf, high.as_ref(), low.as_ref())
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_protocol_inner(protocol)
    }

    /// The socket object (`None` once closed): asyncio's `transport._sock`, used by
    /// `loop.sendfile()` and `start_tls()`.
    #[getter]
    fn _sock(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.socket_object(py)?.unwrap_or_else(|| py.None()))
    }

    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        write::make_empty_waiter(slf)
    }

    /// `loop.sendfile()` hands the fd to `sock_sendfile` (asyncio takes the transport out
    /// of `loop._transports` for that time): the registration is released...
    fn _sendfile_begin(slf: &Bound<'_, Self>) {
        let this = slf.get();
        LoopCore::release_fd(this.loop_(slf.py()), this.fd, slf.as_ptr());
    }

    /// ... and taken back afterwards, unless the transport was closed meanwhile.
    fn _sendfile_end(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.st.with(|s| s.sock.is_none()) {
            return Ok(());
        }
        transport::adopt(slf, &this.transport(slf.py()))?;
        Self::sync_interest(slf);
        Ok(())
    }

    fn _reset_empty_waiter(&self) {
        let old = self.st.with(|s| s.empty_waiter.take());
        drop(old);
    }

    /// asyncio's transport `__repr__`, for the wrapper class named `cls_name`.
    fn _repr(&self, py: Python<'_>, cls_name: &str) -> String {
        match self.kind {
            Kind::Socket => transport::selector_repr(self, py, cls_name),
            Kind::ReadPipe | Kind::WritePipe => pipe::repr(self, py, cls_name),
        }
    }

    // ----- pipe transports (pipe.rs) ----------------------------------------------------

    /// A write pipe's `write(data)`.
    fn _pipe_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        pipe::write(slf, data)
    }

    /// A write pipe's `write_eof()` and `close()`.
    fn _pipe_write_eof(slf: &Bound<'_, Self>) {
        pipe::write_eof(slf)
    }

    /// A pipe transport's `_pipe`: its file object, `None` once closed.
    #[getter]
    fn _pipe(&self, py: Python<'_>) -> Py<PyAny> {
        pipe::pipe_object(self, py).unwrap_or_else(|| py.None())
    }

    /// `transport._pipe = None`: forget the pipe without closing it.
    fn _forget_pipe(slf: &Bound<'_, Self>) {
        pipe::forget_pipe(slf)
    }

    /// The wrapper's `__del__`: an unclosed transport warns and closes its socket.
    fn _del(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        close::on_del(slf, transport)
    }
});
