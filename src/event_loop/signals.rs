//! Unix signal handlers for `loop.add_signal_handler`, the way asyncio's unix loop does it.
//!
//! Python's C-level signal handler writes each signal number as one byte to the fd given
//! to `signal.set_wakeup_fd`; the loop watches the other end of a socket pair and
//! schedules the registered handler for every number it reads. The Python-level handler
//! installed for the signal is a no-op, so the handler only ever runs on the loop.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use mio::unix::SourceFd;
use mio::{Interest, Registry};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyInt;

use super::reactor::SIGNALS;

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
    let valid = signal_mod.call_method0("valid_signals")?;
    if !valid.contains(sig)? {
        return Err(PyValueError::new_err(format!(
            "invalid signal number {sig}"
        )));
    }
    sig.extract()
}

/// The Python-level handler installed for signals handled by the loop: does nothing, so
/// that only the wakeup fd carries the signal to the loop.
#[pyfunction]
#[pyo3(signature = (*_args))]
pub fn _sighandler_noop(_args: &Bound<'_, pyo3::types::PyTuple>) {}
