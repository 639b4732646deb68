//! The Python-visible methods of a datagram transport's core (`ferroloop._DatagramTransport`
//! calls them; `sendto` is bound directly), delegating to `send`/`close`.

use pyo3::prelude::*;

use super::close::release;
use super::send::{sendto, set_write_buffer_limits};
use super::DatagramCore;
use crate::net::transport::{self, transport_pymethods};

transport_pymethods!(DatagramCore {
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        sendto(slf, data, addr)
    }

    /// asyncio's `_sendto_ready()`: what a writable event does (send what is queued).
    fn _sendto_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        super::send::on_writable(slf)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        set_write_buffer_limits(slf, high, low)
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(|s| {
            s.protocol_connected = true;
            s.protocol.replace(protocol.clone().unbind())
        });
        drop(old);
    }

    /// The socket object (`None` once closed): asyncio's `transport._sock`.
    #[getter]
    fn _sock(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.sock.as_ref().map(|s| s.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    /// asyncio's `transport._address`.
    #[getter]
    fn _address(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.address.as_ref().map(|a| a.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    /// asyncio's transport `__repr__`, for the wrapper class named `cls_name`.
    fn _repr(&self, py: Python<'_>, cls_name: &str) -> String {
        transport::selector_repr(self, py, cls_name)
    }

    /// The wrapper's `__del__`: an unclosed transport warns and closes its socket.
    fn _del(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        if !transport::warn_unclosed(slf, transport)? {
            return Ok(());
        }
        release(slf)
    }
});
