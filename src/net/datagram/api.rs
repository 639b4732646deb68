//! The Python-visible methods of a datagram transport's core (`ferroloop._DatagramTransport`
//! calls them; `sendto` is bound directly), delegating to `send`/`close`.

use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};

use super::close::{close, force_close, release};
use super::send::{maybe_pause_protocol, sendto};
use super::{DatagramCore, Dest};
use crate::names::Names;

#[pymethods]
impl DatagramCore {
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        sendto(slf, data, addr)
    }

    fn close(slf: &Bound<'_, Self>) {
        close(slf)
    }

    /// asyncio's `_read_ready()`: what a readable event does (the datagrams waiting, if
    /// reading). The callback of the `asyncio.Handle` an error escaping
    /// `datagram_received` is reported with.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let gen = slf.get().st.with(|s| s.read_gen);
        super::recv::on_readable(slf, gen)
    }

    /// asyncio's `_sendto_ready()`: what a writable event does (send what is queued).
    fn _sendto_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        super::send::on_writable(slf)
    }

    fn abort(slf: &Bound<'_, Self>) {
        force_close(slf, None)
    }

    #[pyo3(signature = (exc=None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) {
        let exc = exc.filter(|e| !e.is_none(slf.py()));
        force_close(slf, exc)
    }

    fn is_closing(&self) -> bool {
        self.st.with(|s| s.closing)
    }

    fn is_reading(&self) -> bool {
        self.st.with(|s| !s.closing && !s.paused)
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let changed = this.st.with(|s| {
            if s.closing || s.paused {
                return false;
            }
            s.paused = true;
            if s.reading {
                s.reading = false;
                s.read_gen = s.read_gen.wrapping_add(1);
            }
            true
        });
        if changed {
            Self::sync_interest(slf);
            this.debug_log(slf.py(), "pauses reading")?;
        }
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let changed = this.st.with(|s| {
            if s.closing || !s.paused {
                return false;
            }
            s.paused = false;
            s.reading = true;
            s.read_gen = s.read_gen.wrapping_add(1);
            true
        });
        if changed {
            Self::sync_interest(slf);
            this.debug_log(slf.py(), "resumes reading")?;
        }
        Ok(())
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        let (high, low) = crate::net::flow::limits(high, low, 64)?;
        slf.get().st.with(|s| {
            s.high_water = high as usize;
            s.low_water = low as usize;
        });
        maybe_pause_protocol(slf)
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.st.with(|s| (s.low_water, s.high_water))
    }

    fn get_write_buffer_size(&self) -> usize {
        self.st.with(|s| s.buffer_size)
    }

    #[pyo3(signature = (name, default=None))]
    fn get_extra_info<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let extra = self.st.with(|s| s.extra.as_ref().map(|e| e.clone_ref(py)));
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        match extra {
            Some(extra) => Ok(extra.bind(py).get_item(name)?.unwrap_or(default)),
            None => Ok(default),
        }
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(|s| {
            s.protocol_connected = true;
            s.protocol.replace(protocol.clone().unbind())
        });
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    /// The socket object (`None` once closed): asyncio's `transport._sock`.
    #[getter]
    fn _sock(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.sock.as_ref().map(|s| s.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    /// The loop, until `connection_lost` ran (asyncio's `transport._loop`).
    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        if self.st.with(|s| s.sock.is_none()) {
            return py.None();
        }
        self.loop_.clone_ref(py).into_any()
    }

    /// asyncio's `transport._address`.
    #[getter]
    fn _address(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .with(|s| s.address.as_ref().map(|a| a.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    #[getter]
    fn _protocol_paused(&self) -> bool {
        self.st.with(|s| s.protocol_paused)
    }

    /// asyncio's transport `__repr__`, for the wrapper class named `cls_name`.
    fn _repr(&self, py: Python<'_>, cls_name: &str) -> String {
        let (closed, closing, reading, writing, size) = self.st.with(|s| {
            (
                s.sock.is_none(),
                s.closing,
                s.reading,
                s.writing,
                s.buffer_size,
            )
        });
        let mut info = vec![cls_name.to_owned()];
        if closed {
            info.push("closed".into());
        } else if closing {
            info.push("closing".into());
        }
        info.push(format!("fd={}", self.fd));
        if !closed && !self.loop_(py).get().is_closed_now() {
            info.push(format!("read={}", if reading { "polling" } else { "idle" }));
            info.push(format!(
                "write=<{}, bufsize={size}>",
                if writing { "polling" } else { "idle" }
            ));
        }
        format!("<{}>", info.join(" "))
    }

    /// The wrapper's `__del__`: an unclosed transport warns and closes its socket.
    fn _del(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().st.with(|s| s.sock.is_none()) {
            return Ok(());
        }
        let names = Names::get(py)?;
        let msg = format!("unclosed transport {}", transport.repr()?);
        let kw = PyDict::new(py);
        kw.set_item("source", transport)?;
        names
            .warn
            .bind(py)
            .call((msg, names.resource_warning.bind(py)), Some(&kw))?;
        release(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        self.st
            .try_with(|s| -> Result<(), PyTraverseError> {
                visit.call(&s.transport)?;
                visit.call(&s.protocol)?;
                visit.call(&s.sock)?;
                visit.call(&s.extra)?;
                visit.call(&s.context)?;
                visit.call(&s.address)?;
                for (obj, _) in s.peer.iter().chain(&s.sent_to) {
                    visit.call(obj)?;
                }
                for q in &s.queue {
                    if let Dest::Py(a) = &q.dest {
                        visit.call(a)?;
                    }
                }
                Ok(())
            })
            .transpose()?;
        Ok(())
    }

    fn __clear__(&self) {
        let taken = self.st.try_with(|s| {
            (
                s.transport.take(),
                s.protocol.take(),
                s.extra.take(),
                s.context.take(),
                s.address.take(),
                s.peer.take(),
                s.sent_to.take(),
                std::mem::take(&mut s.queue),
            )
        });
        drop(taken);
    }
}
