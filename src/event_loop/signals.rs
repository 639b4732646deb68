//! Unix signal handlers for `loop.add_signal_handler`, the way asyncio's unix loop does it.
//!
//! Python's C-level signal handler writes each signal number as one byte to the fd given
//! to `signal.set_wakeup_fd`; the loop watches the other end of a socket pair and
//! schedules the registered handler for every number it reads. The Python-level handler
//! installed for the signal is a no-op, so the handler only ever runs on the loop.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use mio::unix::SourceFd;
use mio::{Interest, Registry};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyTuple};

use super::{lock, os_error, LoopCore};
use crate::handle::{Handle, SlottedRef};
use crate::names::{logger, Names};
use crate::reactor::SIGNALS;

/// The fd a ferroloop loop last handed to `signal.set_wakeup_fd` (-1 once it handed -1):
/// the process-wide setting, so a forked child can tell whether the wakeup fd is one of
/// ferroloop's signal sockets, which it shares with the parent (see `_signal_wakeup_fd`).
static WAKEUP_FD: AtomicI32 = AtomicI32::new(-1);

/// `signal.set_wakeup_fd(fd)`, remembering the fd in [`WAKEUP_FD`] when it succeeds.
fn set_wakeup_fd<'py>(signal_mod: &Bound<'py, PyModule>, fd: i32) -> PyResult<Bound<'py, PyAny>> {
    let old = signal_mod.call_method1(intern!(signal_mod.py(), "set_wakeup_fd"), (fd,))?;
    WAKEUP_FD.store(fd, Ordering::Relaxed);
    Ok(old)
}

/// The wakeup fd ferroloop installed last, or -1: `ferroloop`'s fork hook resets the
/// wakeup fd in a child only when it is still this one (asyncio 3.12+ resets it always).
#[pyfunction]
pub fn _signal_wakeup_fd() -> i32 {
    WAKEUP_FD.load(Ordering::Relaxed)
}

/// The socket pair whose write end is `signal.set_wakeup_fd`'s target.
pub struct SignalSocket {
    read: UnixStream,
    write: UnixStream,
}

impl SignalSocket {
    pub fn new(registry: &Registry) -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        registry.register(
            &mut SourceFd(&read.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        Ok(SignalSocket { read, write })
    }

    /// The fd to hand to `signal.set_wakeup_fd`.
    pub fn wakeup_fd(&self) -> i32 {
        self.write.as_raw_fd()
    }

    /// Reads every pending signal number.
    pub fn drain(&mut self, out: &mut Vec<i32>) {
        let mut buf = [0u8; 256];
        loop {
            match self.read.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(buf[..n].iter().map(|&b| b as i32)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    pub fn deregister(&self, registry: &Registry) {
        // The loop is going away or no handler is left; an error only means epoll
        // already forgot the fd.
        let _ = registry.deregister(&mut SourceFd(&self.read.as_raw_fd()));
    }
}

/// asyncio's `_check_signal`: the signal must be an int naming a valid signal.
pub fn check_signal(sig: &Bound<'_, PyAny>, signal_mod: &Bound<'_, PyModule>) -> PyResult<i32> {
    if !sig.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "sig must be an int, not {}",
            sig.repr()?
        )));
    }
    let valid = signal_mod.call_method0(intern!(signal_mod.py(), "valid_signals"))?;
    if !valid.contains(sig)? {
        return Err(PyValueError::new_err(format!(
            "invalid signal number {sig}"
        )));
    }
    sig.extract()
}

/// What asyncio raises when `signal.signal(sig, ...)` failed with `e`: for `EINVAL`,
/// `RuntimeError('sig N cannot be caught')` raised inside `except OSError as exc:` (so the
/// `OSError` is its `__context__`), otherwise `e` itself.
pub fn cannot_be_caught(py: Python<'_>, sig: i32, e: PyErr) -> PyErr {
    let einval = e.is_instance_of::<PyOSError>(py)
        && e.value(py)
            .getattr(intern!(py, "errno"))
            .and_then(|n| n.extract::<i32>())
            .ok()
            == Some(libc::EINVAL);
    if !einval {
        return e;
    }
    let err = PyRuntimeError::new_err(format!("sig {sig} cannot be caught"));
    err.set_context(py, Some(e));
    err
}

/// The Python-level handler installed for signals handled by the loop: does nothing, so
/// that only the wakeup fd carries the signal to the loop.
#[pyfunction]
#[pyo3(signature = (*_args))]
pub fn _sighandler_noop(_args: &Bound<'_, pyo3::types::PyTuple>) {}

impl LoopCore {
    /// Runs `callback(*args)` on the loop whenever signal `sig` arrives (main thread only).
    pub(super) fn add_signal_handler(
        slf: &Bound<'_, Self>,
        sig: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let imports = Names::get(py)?;
        if imports
            .iscoroutine
            .bind(py)
            .call1((&callback,))?
            .is_truthy()?
            || imports
                .iscoroutinefunction
                .bind(py)
                .call1((&callback,))?
                .is_truthy()?
        {
            return Err(PyTypeError::new_err(
                "coroutines cannot be used with add_signal_handler()",
            ));
        }
        let signal_mod = imports.signal.bind(py);
        let sig = check_signal(sig, signal_mod)?;
        this.check_closed()?;
        let wakeup_fd = {
            let mut sock = lock(&this.signal_socket);
            if sock.is_none() {
                let new = this.registry.with(|registry| {
                    registry
                        .as_ref()
                        .map(|registry| SignalSocket::new(registry).map_err(os_error))
                });
                let Some(new) = new else {
                    return Err(PyRuntimeError::new_err("Event loop is closed"));
                };
                *sock = Some(new?);
            }
            sock.as_ref().map(|s| s.wakeup_fd()).unwrap_or(-1)
        };
        // set_wakeup_fd raises ValueError outside the main thread: check that first.
        if let Err(e) = set_wakeup_fd(signal_mod, wakeup_fd) {
            if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyOSError>(py) {
                // asyncio: `raise RuntimeError(str(exc))` inside `except ... as exc:`.
                let err = PyRuntimeError::new_err(e.value(py).str()?.unbind());
                err.set_context(py, Some(e));
                return Err(err);
            }
            return Err(e);
        }
        let handle = Self::new_handle(slf, callback, args, Self::context_for(slf.py(), None)?)?;
        let old = this.pystate.with(|s| s.signal_handlers.insert(sig, handle));
        this.signals_watched.store(true, Ordering::Relaxed);
        drop(old);
        let noop = wrap_pyfunction!(_sighandler_noop, py)?;
        let installed = signal_mod
            .call_method1(intern!(py, "signal"), (sig, noop))
            .and_then(|_| signal_mod.call_method1(intern!(py, "siginterrupt"), (sig, false)));
        if let Err(e) = installed {
            let (gone, none_left) = this.pystate.with(|st| {
                (
                    st.signal_handlers.remove(&sig),
                    st.signal_handlers.is_empty(),
                )
            });
            drop(gone);
            if none_left {
                if let Err(e2) = set_wakeup_fd(signal_mod, -1) {
                    logger(py)?.call_method1(
                        intern!(py, "info"),
                        ("set_wakeup_fd(-1) failed: %s", e2.value(py)),
                    )?;
                }
            }
            return Err(cannot_be_caught(py, sig, e));
        }
        Ok(())
    }

    /// Removes the handler for `sig`; True if one was installed.
    pub(super) fn remove_signal_handler(
        slf: &Bound<'_, Self>,
        sig: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let sig = check_signal(sig, Names::get(py)?.signal.bind(py))?;
        Self::remove_signal_handler_inner(slf, sig)
    }

    pub(super) fn remove_signal_handler_inner(slf: &Bound<'_, Self>, sig: i32) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let (removed, none_left) = this.pystate.with(|st| {
            let removed = st.signal_handlers.remove(&sig);
            (removed, st.signal_handlers.is_empty())
        });
        // `signals_watched` stays set even if none is left: see `run_once`.
        if removed.is_none() {
            return Ok(false);
        }
        drop(removed);
        let signal_mod = Names::get(py)?.signal.bind(py);
        let sigint: i32 = signal_mod.getattr(intern!(py, "SIGINT"))?.extract()?;
        let handler = if sig == sigint {
            signal_mod.getattr(intern!(py, "default_int_handler"))?
        } else {
            signal_mod.getattr(intern!(py, "SIG_DFL"))?
        };
        if let Err(e) = signal_mod.call_method1(intern!(py, "signal"), (sig, handler)) {
            return Err(cannot_be_caught(py, sig, e));
        }
        if none_left {
            if let Err(e) = set_wakeup_fd(signal_mod, -1) {
                logger(py)?.call_method1(
                    intern!(py, "info"),
                    ("set_wakeup_fd(-1) failed: %s", e.value(py)),
                )?;
            }
        }
        Ok(true)
    }

    pub(super) fn signal_handlers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let handlers: Vec<(i32, Py<Handle>)> = self.pystate.with(|s| {
            s.signal_handlers
                .iter()
                .map(|(sig, h)| (*sig, h.clone_ref(py)))
                .collect()
        });
        let d = PyDict::new(py);
        for (sig, h) in handlers {
            d.set_item(sig, h.into_any())?;
        }
        Ok(d)
    }

    /// Pulls every signal number from the signal socket and schedules its handler.
    pub(super) fn dispatch_signals(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut sigs = Vec::new();
        // asyncio's reader drains the self-pipe, wake-up bytes included: a
        // call_soon_threadsafe made before this read does not make the next poll read again.
        this.self_pipe_pending.store(false, Ordering::Release);
        if let Some(sock) = lock(&this.signal_socket).as_mut() {
            sock.drain(&mut sigs);
        }
        for sig in sigs {
            let handler = this
                .pystate
                .with(|s| s.signal_handlers.get(&sig).map(|h| h.clone_ref(py)));
            if let Some(h) = handler {
                if h.state().is_cancelled() {
                    Self::remove_signal_handler_inner(slf, sig)?;
                } else {
                    this.push_ready(h);
                }
            }
        }
        Ok(())
    }
}
