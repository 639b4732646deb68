//! Pipe transports on the stream core: `loop.connect_read_pipe()` and
//! `loop.connect_write_pipe()`, asyncio's `unix_events._UnixReadPipeTransport` and
//! `_UnixWritePipeTransport` (identical in 3.11 and 3.13), over pipes, FIFOs, sockets,
//! character devices and PTYs.
//!
//! A pipe transport is a [`StreamCore`] of kind [`Kind::ReadPipe`] or [`Kind::WritePipe`]
//! whose socket is the pipe's file object ([`Sock::Pipe`]): the same state, fd
//! registration (`Owner::Stream`), ready-queue jobs, write queue, flow control and
//! `connection_lost` as a socket transport. What differs lives here:
//!
//! * the syscalls: `read(2)` and `write(2)`/`writev(2)` (`recv`/`sendmsg` need a socket);
//! * a read pipe at EOF schedules `eof_received()` then `connection_lost(None)` (it never
//!   stays half-open), and hands every read to `data_received()` (no `BufferedProtocol`
//!   path; asyncio's own `StreamReaderProtocol` gets it in its reader, see `reader.rs`),
//!   letting the protocol's errors reach the loop's handler;
//! * a write pipe polls a pipe or socket fd for reading to notice that the reader went
//!   away (`connection_lost(BrokenPipeError())` if bytes were queued, else
//!   `connection_lost(None)`); `close()` is `write_eof()`: flush, then close the pipe;
//!   writes after it are dropped, counted, and warned about from the fifth on;
//!   `resume_writing()` comes once the queue is empty, not at the low watermark;
//! * errors: a read pipe only logs `EIO` (a PTY whose other side closed), and only in
//!   debug mode, and reports any other error to the exception handler; a write pipe logs
//!   any `OSError` (debug mode); then the transport is closed with it.

use std::os::fd::RawFd;

use pyo3::exceptions::{
    PyAssertionError, PyBrokenPipeError, PyBufferError, PyOSError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyType};

use super::close::force_close;
use super::read::{read_and_take, receive, Fed, ReadCall, Received};
use super::sock::Sock;
use super::write::queue_from;
use super::{build, Kind, StreamCore, StreamEvent};
use crate::event_loop::LoopCore;
use crate::names::logger;
use crate::net::transport::wrapper::{core_in, forward_to_core};
use crate::net::transport::{
    self, maybe_pause_protocol, maybe_resume_protocol, polling, MakeArgs, TransportCore,
};
use crate::net::would_block;
use crate::pyo::buffer::with_bytes;
use crate::pyo::errno::os_error;
use crate::pyo::fastcall::{install_on, VectorArgs, WrapperMethod};
use crate::pyo::object::SlotMember;
use crate::sys;

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// `ferroloop._ReadPipeTransport` and `ferroloop._WritePipeTransport`, registered by the
/// Python package at import.
static READ_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static WRITE_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Registers the Python classes that wrap a pipe transport's core.
#[pyfunction]
pub fn _register_pipe_transport_classes(
    py: Python<'_>,
    read_cls: Bound<'_, PyType>,
    write_cls: Bound<'_, PyType>,
) -> PyResult<()> {
    let _ = READ_CLASS.set(py, read_cls.unbind());
    let _ = WRITE_PIPE_CORE.set(py, SlotMember::of(&write_cls, "_core")?);
    install_on::<WrapperPipeWrite>(&write_cls, c"write", c"write($self, data)\n--\n\n")?;
    let _ = WRITE_CLASS.set(py, write_cls.unbind());
    Ok(())
}

/// Where `ferroloop._WritePipeTransport` keeps its core (its `_core` slot).
static WRITE_PIPE_CORE: PyOnceLock<SlotMember> = PyOnceLock::new();

/// `_WritePipeTransport.write`: the core's [`write`], through a method descriptor on the
/// class (as the socket transport's `write`), so that no Python frame runs per write and a
/// subclass or a patch of the class's `write` is still what `transport.write` finds.
struct WrapperPipeWrite;
impl WrapperMethod for WrapperPipeWrite {
    #[inline]
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        let core = core_in::<StreamCore>(&WRITE_PIPE_CORE, slf)?;
        if args.nargs() == 1 && args.nkw() == 0 {
            write(&core, &args.arg(0))?;
            return Ok(py.None());
        }
        forward_to_core(&core, intern!(py, "_pipe_write"), args)
    }
}

/// The Python class of a pipe transport of `kind`.
pub(super) fn transport_class(py: Python<'_>, kind: Kind) -> Option<&Py<PyType>> {
    match kind {
        Kind::WritePipe => WRITE_CLASS.get(py),
        _ => READ_CLASS.get(py),
    }
}

/// The file type bits of `fd`'s mode (`stat.S_IFMT(os.fstat(fd).st_mode)`).
fn file_type(fd: RawFd) -> PyResult<u32> {
    Ok(sys::file_mode(fd).map_err(os_error)? & libc::S_IFMT)
}

/// `extra` (copied) with `extra['pipe'] = pipe`.
fn pipe_extra<'py>(
    pipe: &Bound<'py, PyAny>,
    extra: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let extra = match extra {
        Some(e) if !e.is_none() => e.cast::<PyDict>()?.copy()?,
        _ => PyDict::new(pipe.py()),
    };
    extra.set_item("pipe", pipe)?;
    Ok(extra)
}

/// The checks both pipe transports make of `pipe` (asyncio's, in its order): its fd is a
/// FIFO, a socket or a character device (else `ValueError(refused)`), no open transport
/// uses it, and it is made non-blocking. Returns the fd and its file type.
fn pipe_fd(
    lp: &Bound<'_, LoopCore>,
    pipe: &Bound<'_, PyAny>,
    refused: &'static str,
) -> PyResult<(RawFd, libc::mode_t)> {
    let fd: RawFd = pipe.call_method0(intern!(pipe.py(), "fileno"))?.extract()?;
    let ty = file_type(fd)?;
    if !matches!(ty, libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR) {
        return Err(PyValueError::new_err(refused));
    }
    LoopCore::ensure_fd_no_transport(lp, fd)?;
    sys::set_nonblocking(fd).map_err(os_error)?;
    Ok((fd, ty))
}

/// `loop._make_read_pipe_transport(pipe, protocol, waiter, extra)` (`kind`
/// [`Kind::ReadPipe`]) and `loop._make_write_pipe_transport(...)` ([`Kind::WritePipe`]):
/// a pipe transport over `pipe`, after asyncio's checks of it.
pub(crate) fn make_pipe_transport<'py>(
    lp: &Bound<'py, LoopCore>,
    kind: Kind,
    pipe: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    args: MakeArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let extra = pipe_extra(pipe, args.extra)?;
    let refused = match kind {
        Kind::WritePipe => "Pipe transport is only for pipes, sockets and character devices",
        _ => "Pipe transport is for pipes/sockets only.",
    };
    let (fd, ty) = pipe_fd(lp, pipe, refused)?;
    // A write pipe is polled for reading to notice the reader's close: for a pipe or a
    // socket (a character device would report readable for its own input).
    let start_reading = kind != Kind::WritePipe || ty != libc::S_IFCHR;
    build(
        lp,
        fd,
        (kind, start_reading),
        Sock::Pipe(pipe.clone().unbind()),
        (-1, -1, -1),
        extra,
        protocol,
        MakeArgs {
            server: None,
            ..args
        },
    )
}

/// Logs `"%r was closed by peer"` at info level in debug mode.
fn log_closed_by_peer(slf: &Bound<'_, StreamCore>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    if this.debug(py) {
        logger(py)?.call_method1(
            intern!(py, "info"),
            ("%r was closed by peer", this.transport(py)),
        )?;
    }
    Ok(())
}

/// The fd is readable (the stream core's readable job, for a pipe).
pub(super) fn on_readable(
    slf: &Bound<'_, StreamCore>,
    proto: &Bound<'_, PyAny>,
    plan: super::read::ReadPlan,
    stock_stream: bool,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    if this.kind == Kind::WritePipe {
        // asyncio's _UnixWritePipeTransport._read_ready: the reader closed its end.
        log_closed_by_peer(slf)?;
        let queued = this.st.with(|s| !s.queue.is_empty());
        let exc = if queued {
            Some(py.get_type::<PyBrokenPipeError>().call0()?.unbind())
        } else {
            None
        };
        force_close(slf, exc);
        return Ok(());
    }
    // asyncio's own stream protocol (`connect_read_pipe` of a `StreamReaderProtocol`, the
    // usual way to read stdin): the bytes go into its reader (see `reader.rs`).
    let stock_reader = match stock_stream {
        true => super::reader::StockReader::of(proto)?,
        false => None,
    };
    let received = match stock_reader {
        Some(reader) => match read_and_take(ReadCall::Read, this.fd, |data| reader.extend(data)) {
            Fed::Data(extended) => return extended.and_then(|()| reader.wake()),
            Fed::Eof => Received::Eof,
            Fed::WouldBlock => Received::WouldBlock,
            Fed::Failed(e) => Received::Failed(e),
        },
        None => receive(slf, ReadCall::Read, plan)?,
    };
    match received {
        Received::WouldBlock => Ok(()),
        Received::Failed(e) => fatal_error(slf, os_error(e), "Fatal read error on pipe transport"),
        Received::Eof => {
            log_closed_by_peer(slf)?;
            this.st.with(|s| {
                s.closing = true;
                s.conn_lost += 1;
                s.stop_reading();
            });
            StreamCore::sync_interest(slf);
            StreamCore::schedule(slf, StreamEvent::EofReceived);
            StreamCore::schedule(slf, StreamEvent::ConnectionLost(None));
            Ok(())
        }
        // An error of the protocol's goes to the loop's handler; reading goes on.
        Received::Data(data, cap) => {
            let res = proto.call_method1(intern!(py, "data_received"), (&data,));
            crate::pyo::bytes::recycle(data, cap);
            res.map(drop)
        }
    }
}

/// asyncio's pipe `_fatal_error(exc, message)`: report it (see the module docs for
/// which errors are only logged), then close the transport with it.
fn fatal_error(slf: &Bound<'_, StreamCore>, err: PyErr, message: &str) -> PyResult<()> {
    let py = slf.py();
    let exc = err.value(py);
    let quiet = exc.is_instance_of::<PyOSError>()
        && (slf.get().kind == Kind::WritePipe
            || exc
                .getattr(intern!(py, "errno"))?
                .extract::<Option<i32>>()?
                == Some(libc::EIO));
    transport::report_fatal_error(slf, err, message, quiet)
}

/// What a write found before touching the pipe.
enum Outcome {
    /// Written, or nothing to write.
    Done,
    /// Dropped: the pipe is closing or lost (`true`: warn about it).
    Dropped(bool),
    /// Queued, the fd to be polled for writing.
    Queued,
}

/// A write pipe's `write(data)`: written at once when nothing is queued, else queued.
pub(super) fn write(slf: &Bound<'_, StreamCore>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    if !(data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>())
    {
        // asyncio's `assert isinstance(data, (bytes, bytearray, memoryview)), repr(data)`.
        return Err(PyAssertionError::new_err(data.repr()?.unbind()));
    }
    let this = slf.get();
    let fd = this.fd;
    // `obj`: the `bytes` object `b` is, queued by reference when large (see `WriteQueue`).
    let attempt = |b: &[u8], obj: Option<&Bound<'_, PyBytes>>| {
        this.st.with(|s| {
            if b.is_empty() {
                return Ok(Outcome::Done);
            }
            if s.pipe_conn_lost > 0 || s.closing {
                let warn = s.pipe_conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                s.pipe_conn_lost += 1;
                return Ok(Outcome::Dropped(warn));
            }
            if !s.queue.is_empty() {
                queue_from(s, b, obj, 0);
                return Ok(Outcome::Queued);
            }
            let n = match sys::write(fd, b) {
                Ok(n) => n,
                Err(e) if would_block(&e) => 0,
                Err(e) => {
                    s.pipe_conn_lost += 1;
                    return Err(e);
                }
            };
            if n == b.len() {
                return Ok(Outcome::Done);
            }
            queue_from(s, b, obj, n);
            s.writing = true;
            Ok(Outcome::Queued)
        })
    };
    // Exactly `bytes`: a subclass could have a `__del__`, which must not run when the
    // queue drops it inside the state's lock.
    let outcome = match data.cast_exact::<PyBytes>() {
        Ok(bytes) => attempt(bytes.as_bytes(), Some(bytes)),
        Err(_) => match with_bytes(data, |b| attempt(b, None)) {
            Ok(outcome) => outcome,
            // A memoryview that is not C-contiguous (`memoryview(b)[::2]`): asyncio's
            // `os.write()` raises the BufferError inside its try, a fatal error of the
            // pipe, not of the call (after its empty and lost-pipe checks).
            Err(e) if e.is_instance_of::<PyBufferError>(py) => {
                if data.len()? == 0 {
                    return Ok(());
                }
                let lost = this.st.with(|s| {
                    let lost = s.pipe_conn_lost > 0 || s.closing;
                    s.pipe_conn_lost += 1;
                    lost
                });
                if lost {
                    return Ok(());
                }
                return fatal_error(slf, e, "Fatal write error on pipe transport");
            }
            Err(e) => return Err(e),
        },
    };
    match outcome {
        Ok(Outcome::Done) | Ok(Outcome::Dropped(false)) => Ok(()),
        Ok(Outcome::Dropped(true)) => {
            logger(py)?.call_method1(
                intern!(py, "warning"),
                ("pipe closed by peer or os.write(pipe, data) raised exception.",),
            )?;
            Ok(())
        }
        Ok(Outcome::Queued) => {
            StreamCore::sync_interest(slf);
            maybe_pause_protocol(slf)
        }
        Err(e) => fatal_error(slf, os_error(e), "Fatal write error on pipe transport"),
    }
}

/// A write pipe's fd is writable: asyncio's `_write_ready`, with one `writev()`.
pub(super) fn on_writable(slf: &Bound<'_, StreamCore>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let fd = this.fd;
    let res = this.st.with(|s| {
        if s.conn_lost > 0 || s.queue.is_empty() {
            return Ok(false);
        }
        match sys::write_vectored(fd, &s.queue.slices(py)) {
            Ok(n) => {
                s.queue.consume(n);
                if s.queue.is_empty() {
                    s.writing = false;
                    return Ok(true);
                }
                Ok(false)
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => {
                s.queue.clear();
                s.writing = false;
                s.pipe_conn_lost += 1;
                Err(e)
            }
        }
    });
    match res {
        Ok(false) => Ok(()),
        Err(e) => {
            StreamCore::sync_interest(slf);
            fatal_error(slf, os_error(e), "Fatal write error on pipe transport")
        }
        Ok(true) => {
            StreamCore::sync_interest(slf);
            // May write again (and queue).
            maybe_resume_protocol(slf)?;
            let closing = this.st.with(|s| {
                if s.closing {
                    s.stop_reading();
                }
                s.closing
            });
            if closing {
                StreamCore::sync_interest(slf);
                super::close::call_connection_lost(slf, None)
            } else {
                Ok(())
            }
        }
    }
}

/// A write pipe's `write_eof()`, which is also its `close()`: once the queue is flushed,
/// `connection_lost(None)` and the pipe is closed.
pub(super) fn write_eof(slf: &Bound<'_, StreamCore>) {
    let now = slf.get().st.with(|s| {
        if s.closing || s.sock.is_none() {
            return false;
        }
        s.closing = true;
        if !s.queue.is_empty() {
            return false;
        }
        s.stop_reading();
        true
    });
    if now {
        StreamCore::sync_interest(slf);
        StreamCore::schedule(slf, StreamEvent::ConnectionLost(None));
    }
}

/// `transport._pipe = None`: forgets the pipe without closing it (asyncio's tests do
/// this to silence the unclosed-transport warning of a pipe they closed themselves).
pub(super) fn forget_pipe(slf: &Bound<'_, StreamCore>) {
    let this = slf.get();
    LoopCore::release_fd(this.loop_(slf.py()), this.fd, slf.as_ptr());
    let old = this.st.with(|s| {
        s.reading = false;
        s.writing = false;
        s.sock.take()
    });
    drop(old);
}

/// The pipe's file object (`None` once closed).
pub(super) fn pipe_object(this: &StreamCore, py: Python<'_>) -> Option<Py<PyAny>> {
    this.st.with(|s| match &s.sock {
        Some(Sock::Pipe(p)) => Some(p.clone_ref(py)),
        _ => None,
    })
}

/// asyncio's pipe transport `__repr__`, for the wrapper class named `cls_name`.
pub(super) fn repr(this: &StreamCore, py: Python<'_>, cls_name: &str) -> String {
    transport::repr(this, cls_name, |r, info| {
        if r.closed {
            info.push("closed".into());
        } else if this.loop_(py).get().is_closed_now() {
            info.push("open".into());
        } else if this.kind == Kind::WritePipe {
            info.push(polling(r.writing).into());
            info.push(format!("bufsize={}", r.size));
        } else {
            info.push(polling(r.reading).into());
        }
    })
}
