//! The outgoing flow: the app's writes (the backlog kept until the handshake is done),
//! their encryption into the outgoing BIO and its flush to the transport below.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyTuple};

use super::{is_again, is_exception, names, opt, SSLProtocolCore, State};
use crate::pyo::call::vcall;
use crate::pyo::fastcall::{VectorArgs, WrapperMethod};

/// asyncio's `_SSLProtocolTransport.write(data)` checks: `data` must be bytes-like
/// (`TypeError`); false when it is empty (nothing to write).
pub(super) fn has_app_data(data: &Bound<'_, PyAny>) -> PyResult<bool> {
    if !(data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>())
    {
        return Err(PyTypeError::new_err(format!(
            "data: expecting a bytes-like instance, got {}",
            data.get_type().name()?
        )));
    }
    data.is_truthy()
}

/// `ferroloop._SSLTransport.write`: `self._ssl_protocol`'s write, through a method
/// descriptor on the class (no Python frame per write, and a subclass's or a patched
/// `write` is still what `transport.write` finds).
pub(super) struct WrapperAppWrite;
impl WrapperMethod for WrapperAppWrite {
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        let protocol = slf.getattr(intern!(py, "_ssl_protocol"))?;
        if args.nargs() != 1 || args.nkw() != 0 {
            // Keywords or a wrong number of arguments: the protocol's method, with its
            // argument errors.
            return args.call(&protocol.getattr(intern!(py, "_app_write"))?);
        }
        let data = args.arg(0);
        if has_app_data(&data)? {
            match protocol.cast::<SSLProtocolCore>() {
                Ok(core) => SSLProtocolCore::write_one(core, &data)?,
                // None after a second close(): asyncio's AttributeError.
                Err(_) => {
                    let tuple = PyTuple::new(py, [data])?;
                    protocol.call_method1(intern!(py, "_write_appdata"), (tuple,))?;
                }
            }
        }
        Ok(py.None())
    }
}

impl SSLProtocolCore {
    // Outgoing flow

    pub(super) fn write_appdata(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if matches!(
            this.state(),
            State::Flushing | State::Shutdown | State::Unwrapped
        ) {
            let n = this.st.with(|s| s.conn_lost);
            if n >= 5 {
                names(py)?
                    .logger
                    .bind(py)
                    .call_method1(intern!(py, "warning"), ("SSL connection is closed",))?;
            }
            this.st.with(|s| s.conn_lost += 1);
            return Ok(());
        }
        for data in list_of_data.try_iter()? {
            let data = data?;
            let len = data.len()? as i64;
            this.st.with(|s| {
                s.write_backlog.push_back(data.unbind());
                s.write_buffer_size += len;
            });
        }
        Self::write_if_wrapped(slf)
    }

    /// One piece of app data (the app transport's `write` of a non-empty bytes-like).
    pub(super) fn write_one(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if matches!(
            this.state(),
            State::Flushing | State::Shutdown | State::Unwrapped
        ) {
            let t = PyTuple::new(py, [data])?;
            return Self::write_appdata(slf, t.as_any());
        }
        let len = data.len()? as i64;
        this.st.with(|s| {
            s.write_backlog.push_back(data.clone().unbind());
            s.write_buffer_size += len;
        });
        Self::write_if_wrapped(slf)
    }

    fn write_if_wrapped(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().state() != State::Wrapped {
            return Ok(());
        }
        match Self::do_write(slf) {
            Err(e) if is_exception(py, &e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Fatal error on SSL protocol")
            }
            other => other,
        }
    }

    pub(super) fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let write = this.st.with(|s| s.m.write.clone_ref(py)).into_bound(py);
        loop {
            let Some(data) = this
                .st
                .with(|s| s.write_backlog.front().map(|d| d.clone_ref(py)))
            else {
                break;
            };
            let data = data.into_bound(py);
            let count: i64 = match vcall(&write, &[data.as_ptr()]) {
                Ok(c) => c.extract()?,
                Err(e) if is_again(py, &e, n) => break,
                Err(e) => return Err(e),
            };
            let data_len = data.len()? as i64;
            if count < data_len {
                let rest =
                    data.get_item(pyo3::types::PySlice::new(py, count as isize, isize::MAX, 1))?;
                this.st.with(|s| {
                    if let Some(front) = s.write_backlog.front_mut() {
                        *front = rest.unbind();
                    }
                    s.write_buffer_size -= count;
                });
            } else {
                let old = this.st.with(|s| {
                    s.write_buffer_size -= data_len;
                    s.write_backlog.pop_front()
                });
                drop(old);
            }
        }
        Self::process_outgoing(slf)
    }

    pub(super) fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (paused, read) = this
            .st
            .with(|s| (s.ssl_writing_paused, s.m.outgoing_read.clone_ref(py)));
        // The outgoing BIO's size: 0 once read out (only the SSL object adds to it).
        let mut pending = None;
        if !paused {
            let data = vcall(read.bind(py), &[])?;
            pending = Some(0);
            if data.len()? > 0 {
                let (core, t) = this.st.with(|s| {
                    (
                        s.core.as_ref().map(|c| c.clone_ref(py)),
                        s.transport.as_ref().map(|t| t.clone_ref(py)),
                    )
                });
                match core {
                    Some(core) => crate::net::stream::write_data(core.bind(py), &data)?,
                    None => {
                        opt(py, &t).call_method1(intern!(py, "write"), (data,))?;
                    }
                }
            }
        }
        Self::control_app_writing_sized(slf, pending)
    }
}
