//! The socket under a stream transport: a Python socket object (a connection made by
//! `create_connection`, `sock=`, ...), or, for a connection the listener accepted, just
//! its fd until someone asks for the object (`get_extra_info('socket')`, `'sockname'`,
//! `transport._sock`). uvloop makes its socket objects lazily too: most servers never
//! ask, and making one (the `socket.socket` constructor, `TransportSocket`,
//! `getsockname()`) costs more than the rest of accepting a connection.

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::StreamCore;
use crate::pyo::errno::os_error;

/// The socket of a stream transport.
pub(crate) enum Sock {
    /// An accepted connection with no socket object yet (`family`, `ty`, `proto` as the
    /// listening socket's).
    Fd {
        fd: OwnedFd,
        family: i32,
        ty: i32,
        proto: i32,
    },
    /// A socket object.
    Py(Py<PyAny>),
    /// A pipe transport's file object (`connect_read_pipe(factory, pipe)`'s `pipe`: a
    /// file, a socket, anything with `fileno()` and `close()`).
    Pipe(Py<PyAny>),
}

impl Sock {
    pub(crate) fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self {
            Sock::Py(s) | Sock::Pipe(s) => visit.call(s),
            Sock::Fd { .. } => Ok(()),
        }
    }

    /// Closes the socket: the fd at once, or `sock.close()` (`pipe.close()`).
    pub(crate) fn close(self, py: Python<'_>) -> PyResult<()> {
        match self {
            Sock::Fd { fd, .. } => {
                drop(fd);
                Ok(())
            }
            Sock::Py(s) | Sock::Pipe(s) => s.bind(py).call_method0(intern!(py, "close")).map(drop),
        }
    }
}

/// The extra-info keys that come from the socket, made on first use for an accepted
/// connection.
pub(super) const SOCKET_KEYS: [&str; 2] = ["socket", "sockname"];

impl StreamCore {
    /// The transport's socket object (`None` once closed), made now if it was not.
    pub(crate) fn socket_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        enum Found {
            Closed,
            Made(Py<PyAny>),
            Make(RawFd, i32, i32, i32),
        }
        let found = self.st.with(|s| match &s.sock {
            // A pipe transport has no socket object (its `pipe` is in the extra info).
            None | Some(Sock::Pipe(_)) => Found::Closed,
            Some(Sock::Py(p)) => Found::Made(p.clone_ref(py)),
            Some(Sock::Fd {
                fd,
                family,
                ty,
                proto,
            }) => Found::Make(std::os::fd::AsRawFd::as_raw_fd(fd), *family, *ty, *proto),
        });
        let (fd, family, ty, proto) = match found {
            Found::Closed => return Ok(None),
            Found::Made(p) => return Ok(Some(p)),
            Found::Make(fd, family, ty, proto) => (fd, family, ty, proto),
        };
        let obj = crate::event_loop::socket_from_fd(py, fd, family, ty, proto)?;
        // The object owns the fd now.
        let owned = self.st.with(|s| match s.sock.take() {
            Some(Sock::Fd { fd, .. }) => {
                let _ = fd.into_raw_fd();
                s.sock = Some(Sock::Py(obj.clone().unbind()));
                None
            }
            other => {
                s.sock = other;
                Some(())
            }
        });
        if owned.is_some() {
            // Closed meanwhile (cannot happen without Python code running in between,
            // but never let two owners close one fd number).
            let _ = obj.call_method0(intern!(py, "detach"));
        }
        Ok(Some(obj.unbind()))
    }

    /// Fills in `extra[name]` for a socket key not computed yet (see [`SOCKET_KEYS`]).
    pub(super) fn fill_socket_extra(
        &self,
        py: Python<'_>,
        extra: &Bound<'_, PyDict>,
        name: &str,
    ) -> PyResult<()> {
        let Some(sock) = self.socket_object(py)? else {
            return Ok(());
        };
        let sock = sock.bind(py);
        if !extra.contains("socket")? {
            let tsock = crate::names::Names::get(py)?.transport_socket.bind(py);
            extra.set_item("socket", tsock.call1((sock,))?)?;
        }
        if name == "sockname" && !extra.contains("sockname")? {
            let os_error = py.get_type::<pyo3::exceptions::PyOSError>();
            match sock.call_method0(intern!(py, "getsockname")) {
                Ok(n) => extra.set_item("sockname", n)?,
                Err(e) if e.matches(py, &os_error)? => extra.set_item("sockname", py.None())?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `sock.shutdown(socket.SHUT_WR)`.
    pub(super) fn shutdown_write(&self, py: Python<'_>) -> PyResult<()> {
        let sock = self.st.with(|s| match &s.sock {
            None | Some(Sock::Pipe(_)) => None,
            Some(Sock::Py(p)) => Some(Err(p.clone_ref(py))),
            Some(Sock::Fd { fd, .. }) => Some(Ok(std::os::fd::AsRawFd::as_raw_fd(fd))),
        });
        match sock {
            None => Ok(()),
            Some(Ok(fd)) => crate::sys::shutdown_write(fd).map_err(os_error),
            Some(Err(p)) => p
                .bind(py)
                .call_method1(intern!(py, "shutdown"), (libc::SHUT_WR,))
                .map(drop),
        }
    }
}
