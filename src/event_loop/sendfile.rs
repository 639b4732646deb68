//! `sock_sendfile`'s native parts: asyncio's checks (`_check_sendfile_params` and the
//! prologue of `sock_sendfile`) and the zero-copy `sendfile(2)` path, as
//! `unix_events._sock_sendfile_native` does it.
//!
//! The orchestration stays asyncio's (`python/ferroloop`): checks, the native path, and on
//! `SendfileNotAvailableError` (a file without a usable fd, or a first `sendfile` call that
//! fails) asyncio's own `_sock_sendfile_fallback` (read chunks, `sock_sendall`) unless
//! `fallback=False`.
//!
//! The native path tries `sendfile(2)` at once and, as `sock_sendall` does (`sock.rs`),
//! waits for writability as the writer of the socket's watch ([`SendfileWait`], one
//! syscall per writability event, as asyncio), removed by the future's done-callback
//! ([`SendfileDone`]) so that a cancelled call leaves nothing registered. The file
//! position is moved past what was sent at the end, with `lseek`, as asyncio's
//! `_sock_sendfile_update_filepos` does (and not when cancelled).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI64, Ordering};

use pyo3::exceptions::{PyAttributeError, PyConnectionError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyInt;
use pyo3::{PyTraverseError, PyVisit};

use super::LoopCore;
use crate::names::Names;
use crate::pyo::errno::os_error;
use crate::sys;

/// `asyncio.exceptions.SendfileNotAvailableError` and `io.UnsupportedOperation`.
struct SendfileNames {
    not_available: Py<PyAny>,
    unsupported: Py<PyAny>,
}

static NAMES: PyOnceLock<SendfileNames> = PyOnceLock::new();

fn names(py: Python<'_>) -> PyResult<&SendfileNames> {
    NAMES.get_or_try_init(py, || {
        Ok(SendfileNames {
            not_available: py
                .import("asyncio.exceptions")?
                .getattr(intern!(py, "SendfileNotAvailableError"))?
                .unbind(),
            unsupported: py
                .import("io")?
                .getattr(intern!(py, "UnsupportedOperation"))?
                .unbind(),
        })
    })
}

fn not_available(py: Python<'_>, msg: &str) -> PyResult<PyErr> {
    Ok(PyErr::from_value(
        names(py)?.not_available.bind(py).call1((msg,))?,
    ))
}

/// What one `sendfile` attempt came to.
enum Step {
    /// Sent some or nothing yet: wait for writability and go on.
    Wait,
    /// Finished: the total sent.
    Done(i64),
    /// Failed: the future's exception.
    Failed(PyErr),
}

/// The writer of the socket's watch while a native `sock_sendfile` waits (asyncio's
/// `_sock_sendfile_native_impl` with its arguments).
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub(crate) struct SendfileWait {
    fut: Py<PyAny>,
    fd: RawFd,
    file_fd: RawFd,
    /// `count` when given (then each call sends at most what is left of it).
    count: Option<i64>,
    /// What each call asks for when there is no count: the file's size.
    blocksize: i64,
    offset: AtomicI64,
    total_sent: AtomicI64,
}

impl SendfileWait {
    /// asyncio's `_sock_sendfile_update_filepos`: the file position after what was sent.
    fn update_filepos(&self) {
        if self.total_sent.load(Ordering::Relaxed) > 0 {
            // asyncio's os.lseek errors would escape its callback; the fd is valid here
            // (the file is open while sendfile runs), so none is expected.
            let _ = sys::seek_set(self.file_fd, self.offset.load(Ordering::Relaxed));
        }
    }

    /// One `sendfile` call; `first` for the call made before any wait (asyncio's
    /// `registered_fd is None`).
    fn step(&self, py: Python<'_>, first: bool) -> PyResult<Step> {
        let total = self.total_sent.load(Ordering::Relaxed);
        let blocksize = match self.count {
            Some(count) => {
                let left = count - total;
                if left <= 0 {
                    self.update_filepos();
                    return Ok(Step::Done(total));
                }
                left
            }
            None => self.blocksize,
        };
        let offset = self.offset.load(Ordering::Relaxed);
        let res = sys::sendfile(self.fd, self.file_fd, offset, blocksize as usize);
        Ok(match res {
            Ok(0) => {
                // EOF.
                self.update_filepos();
                Step::Done(total)
            }
            Ok(n) => {
                self.offset.store(offset + n as i64, Ordering::Relaxed);
                self.total_sent.store(total + n as i64, Ordering::Relaxed);
                Step::Wait
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Step::Wait,
            Err(e) => {
                let errno = e.raw_os_error();
                let mut exc = os_error(e);
                if !first
                    && errno == Some(libc::ENOTCONN)
                    && !exc.get_type(py).is(py.get_type::<PyConnectionError>())
                {
                    // asyncio: "the connection was closed in the middle of the operation",
                    // normalized to ConnectionError as on every POSIX system.
                    let new =
                        PyConnectionError::new_err(("socket is not connected", libc::ENOTCONN));
                    new.set_cause(py, Some(exc));
                    exc = new;
                }
                self.update_filepos();
                if total == 0 {
                    // Most likely not a file sendfile(2) can read: asyncio falls back.
                    Step::Failed(not_available(py, "os.sendfile call failed")?)
                } else {
                    Step::Failed(exc)
                }
            }
        })
    }
}

#[pymethods]
impl SendfileWait {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            self.update_filepos();
            return Ok(());
        }
        // Resolved since the poll reported the fd (replaced by another writer, which then
        // finished it): nothing to do.
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        settle(fut, self.step(py, false)?)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)
    }
}

fn settle(fut: &Bound<'_, PyAny>, step: Step) -> PyResult<()> {
    let py = fut.py();
    match step {
        Step::Wait => {}
        Step::Done(total) => {
            fut.call_method1(intern!(py, "set_result"), (total,))?;
        }
        Step::Failed(e) => {
            fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?;
        }
    }
    Ok(())
}

impl LoopCore {
    /// asyncio's `_check_sendfile_params`, with its messages.
    pub(super) fn check_sendfile_params(
        sock: &Bound<'_, PyAny>,
        file: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = sock.py();
        // `'b' not in getattr(file, 'mode', 'b')`
        let binary = match file.getattr(intern!(py, "mode")) {
            Ok(mode) => mode.contains("b")?,
            Err(e) if e.is_instance_of::<PyAttributeError>(py) => true,
            Err(e) => return Err(e),
        };
        if !binary {
            return Err(PyValueError::new_err(
                "file should be opened in binary mode",
            ));
        }
        if !sock.getattr(intern!(py, "type"))?.eq(libc::SOCK_STREAM)? {
            return Err(PyValueError::new_err(
                "only SOCK_STREAM type sockets are supported",
            ));
        }
        if !count.is_none() {
            if !count.is_instance_of::<PyInt>() {
                return Err(PyTypeError::new_err(format!(
                    "count must be a positive integer (got {})",
                    count.repr()?
                )));
            }
            if count.le(0)? {
                return Err(PyValueError::new_err(format!(
                    "count must be a positive integer (got {})",
                    count.repr()?
                )));
            }
        }
        if !offset.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(format!(
                "offset must be a non-negative integer (got {})",
                offset.repr()?
            )));
        }
        if offset.lt(0)? {
            return Err(PyValueError::new_err(format!(
                "offset must be a non-negative integer (got {})",
                offset.repr()?
            )));
        }
        Ok(())
    }

    /// The checks `sock_sendfile` makes before sending: debug mode's non-blocking check,
    /// `_check_ssl_socket`, then `_check_sendfile_params`, in asyncio's order.
    pub(super) fn sock_sendfile_prologue(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        file: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if slf.get().debug_on() && sock.call_method0(intern!(py, "gettimeout"))?.ne(0)? {
            return Err(PyValueError::new_err("the socket must be non-blocking"));
        }
        Names::get(py)?
            .base_events
            .bind(py)
            .getattr(intern!(py, "_check_ssl_socket"))?
            .call1((sock,))?;
        slf.call_method1(
            intern!(py, "_check_sendfile_params"),
            (sock, file, offset, count),
        )?;
        Ok(())
    }

    /// asyncio's `_sock_sendfile_native` (unix_events): a future for the number of bytes
    /// sent with `sendfile(2)`, or `SendfileNotAvailableError` (raised, or set on the
    /// future when the first call fails).
    pub(super) fn sock_sendfile_native(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        file: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        // asyncio's `try: os.sendfile except AttributeError`, on the `os` its unix_events
        // module sees (tests replace it to simulate a platform without sendfile).
        let os = py
            .import("asyncio.unix_events")?
            .getattr(intern!(py, "os"))?;
        if !os.hasattr(intern!(py, "sendfile"))? {
            return Err(not_available(py, "os.sendfile() is not available")?);
        }
        let fileno = match file.call_method0(intern!(py, "fileno")) {
            Ok(f) => f,
            Err(e)
                if e.is_instance_of::<PyAttributeError>(py)
                    || e.is_instance(py, names(py)?.unsupported.bind(py)) =>
            {
                return Err(not_available(py, "not a regular file")?);
            }
            Err(e) => return Err(e),
        };
        let file_fd: RawFd = fileno.extract()?;
        let Ok(fsize) = sys::file_size(file_fd) else {
            return Err(not_available(py, "not a regular file")?);
        };
        let count: Option<i64> = if count.is_truthy()? {
            Some(count.extract()?)
        } else {
            None
        };
        let blocksize = count.unwrap_or(fsize);
        let fut = Self::create_future(slf)?.into_bound(py);
        if blocksize == 0 {
            // An empty file.
            fut.call_method1(intern!(py, "set_result"), (0,))?;
            return Ok(fut.unbind());
        }
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let wait = SendfileWait {
            fut: fut.clone().unbind(),
            fd,
            file_fd,
            count,
            blocksize,
            offset: AtomicI64::new(offset.extract()?),
            total_sent: AtomicI64::new(0),
        };
        match wait.step(py, true)? {
            Step::Wait => {}
            done => {
                settle(&fut, done)?;
                return Ok(fut.unbind());
            }
        }
        let wait = Bound::new(py, wait)?.into_any();
        Self::wait_on_fd(slf, fut, fd, true, wait, Some(sock.clone().unbind()))
    }
}
