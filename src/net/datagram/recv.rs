//! Receiving: asyncio's `_read_ready`, a batch of `recvfrom` calls per readiness event,
//! each datagram handed to `datagram_received(data, addr)` with the sender's address
//! converted in Rust.

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{DatagramCore, READS_PER_EVENT};
use crate::net::{with_read_buf, would_block};
use crate::pyo::errno::os_error;
use crate::sys::{self, SockAddr};

/// The fd is readable: asyncio's `_read_ready`, for up to [`READS_PER_EVENT`] datagrams.
pub(super) fn on_readable(slf: &Bound<'_, DatagramCore>, gen: u32) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    for _ in 0..READS_PER_EVENT {
        // Checked before each datagram: the protocol may have paused reading or closed.
        let Some(proto) = this.st.with(|s| {
            if s.conn_lost > 0 || !s.reading || s.read_gen != gen {
                return None;
            }
            s.protocol.as_ref().map(|p| p.clone_ref(py))
        }) else {
            return Ok(());
        };
        let proto = proto.into_bound(py);
        // The loop thread's read buffer (the stream transports' too): 256 KiB, asyncio's
        // max_size for a datagram.
        let got = with_read_buf(|buf| match sys::recvfrom(this.fd, buf) {
            Ok((n, addr)) => Ok(Some((PyBytes::new(py, &buf[..n]), addr))),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        });
        match got {
            Ok(None) => return Ok(()),
            Err(e) => {
                let exc = os_error(e);
                proto.call_method1(intern!(py, "error_received"), (exc.value(py),))?;
                return Ok(());
            }
            Ok(Some((data, addr))) => {
                let addr = this.addr_to_python(py, &addr)?;
                proto.call_method1(intern!(py, "datagram_received"), (data, addr))?;
            }
        }
    }
    Ok(())
}

impl DatagramCore {
    /// The sender's address as the socket module gives it (the last one is reused).
    fn addr_to_python<'py>(&self, py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
        if addr.len == 0 {
            // No address (an unbound Unix datagram socket sent it).
            return Ok(py.None().into_bound(py));
        }
        let cached = self.st.with(|s| match &s.peer {
            Some((obj, sa)) if sa.as_bytes() == addr.as_bytes() => Some(obj.clone_ref(py)),
            _ => None,
        });
        if let Some(obj) = cached {
            return Ok(obj.into_bound(py));
        }
        let obj = match crate::net::sockaddr::to_python(py, addr)? {
            Some(o) => o,
            None => other_address(py, addr)?,
        };
        let old = self
            .st
            .with(|s| s.peer.replace((obj.clone().unbind(), *addr)));
        drop(old);
        Ok(obj)
    }
}

/// The socket module's form of an address `sockaddr::to_python` leaves to it: a named
/// Unix address, a scoped or IPv4-compatible IPv6 address; anything else as
/// `(family, sa_data)`.
fn other_address<'py>(py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
    let bytes = addr.as_bytes();
    let path_at = std::mem::size_of::<libc::sa_family_t>();
    match addr.family() {
        libc::AF_UNIX => {
            let path = &bytes[path_at.min(bytes.len())..];
            if path.first() == Some(&0) {
                // Linux's abstract namespace: the bytes as they are.
                return Ok(PyBytes::new(py, path).into_any());
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            let os = py.import("os")?;
            os.getattr(intern!(py, "fsdecode"))?
                .call1((PyBytes::new(py, &path[..end]),))
        }
        libc::AF_INET6 => {
            let a = addr
                .v6()
                .ok_or_else(|| PyRuntimeError::new_err("not an IPv6 address"))?;
            let host = match sys::getnameinfo(addr, libc::NI_NUMERICHOST | libc::NI_NUMERICSERV) {
                Ok((host, _)) => String::from_utf8_lossy(&host).into_owned(),
                Err(_) => a.ip().to_string(),
            };
            Ok((host, a.port(), a.flowinfo(), a.scope_id())
                .into_pyobject(py)?
                .into_any())
        }
        family => Ok((family, PyBytes::new(py, &addr.sa_data()))
            .into_pyobject(py)?
            .into_any()),
    }
}
