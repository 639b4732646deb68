//! The Python-visible methods of a datagram transport's core (`ferroloop._DatagramTransport`
//! calls them; its `sendto` and `is_closing` are native method descriptors), delegating to
//! `send`/`close`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use super::close::release;
use super::send::{sendto, set_write_buffer_limits};
use super::DatagramCore;
use crate::net::transport::wrapper::{
    core_of, forward_to_core, remember_core_slot, WrappedCore, WrapperIsClosing,
};
use crate::net::transport::{self, transport_pymethods};
use crate::pyo::fastcall::{install_on, VectorArgs, WrapperMethod};
use crate::pyo::object::SlotMember;

/// Where a `ferroloop._DatagramTransport` keeps its core (its `_core` slot).
static CORE_SLOT: PyOnceLock<SlotMember> = PyOnceLock::new();

impl WrappedCore for DatagramCore {
    fn core_slot() -> &'static PyOnceLock<SlotMember> {
        &CORE_SLOT
    }
}

/// `_DatagramTransport.sendto(data, addr=None)`: the core's `sendto`, with no Python frame
/// and no bound method per call. Calls with keywords or a wrong number of arguments go to
/// the core's PyO3 method (its argument errors).
struct WrapperSendto;
impl WrapperMethod for WrapperSendto {
    #[inline]
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        let core = core_of::<DatagramCore>(slf)?;
        if args.nkw() == 0 && (1..=2).contains(&args.nargs()) {
            let addr = (args.nargs() == 2).then(|| args.arg(1));
            sendto(&core, &args.arg(0), addr.as_ref())?;
            return Ok(py.None());
        }
        forward_to_core(&core, pyo3::intern!(py, "sendto"), args)
    }
}

/// Makes `cls` (`ferroloop._DatagramTransport`, whose `_core` slot holds a
/// [`DatagramCore`]) call its core's `sendto` and `is_closing` natively: each is a method
/// descriptor of the class, which CPython's specializing interpreter calls directly.
pub(crate) fn install_wrapper_methods(cls: &Bound<'_, PyType>) -> PyResult<()> {
    remember_core_slot::<DatagramCore>(cls)?;
    install_on::<WrapperSendto>(cls, c"sendto", c"sendto($self, data, addr=None)\n--\n\n")?;
    install_on::<WrapperIsClosing<DatagramCore>>(cls, c"is_closing", c"is_closing($self)\n--\n\n")
}

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
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        set_write_buffer_limits(slf, high.as_ref(), low.as_ref())
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
