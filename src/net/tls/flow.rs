//! Flow control both ways: the app's writes (`pause_writing`/`resume_writing` on the
//! app protocol by the outgoing size) and reading from the transport below
//! (`pause_reading`/`resume_reading` by the incoming BIO's size).

use pyo3::intern;
use pyo3::prelude::*;

use super::{opt, SSLProtocolCore};

impl SSLProtocolCore {
    // Flow control for writes from the app

    pub(super) fn get_write_buffer_size_inner(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let py = slf.py();
        let (outgoing, size) = slf
            .get()
            .st
            .with(|s| (s.outgoing.clone_ref(py), s.write_buffer_size));
        let pending: i64 = outgoing
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract()?;
        Ok(pending + size)
    }

    /// The app protocol's `pause_writing()` / `resume_writing()` (see
    /// [`crate::net::flow::call_protocol`]; asyncio names the app transport and this
    /// protocol in a failure's report).
    fn call_flow(slf: &Bound<'_, Self>, method: &Bound<'_, pyo3::types::PyString>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let transport = this.st.with(|s| opt(py, &s.app_transport));
        crate::net::flow::call_protocol(
            &this.loop_(py),
            &this.app_protocol_obj(py),
            method,
            &transport,
            slf.as_any(),
        )
    }

    pub(super) fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing_sized(slf, None)
    }

    /// `_control_app_writing()`, given the outgoing BIO's size if known.
    pub(super) fn control_app_writing_sized(
        slf: &Bound<'_, Self>,
        outgoing: Option<i64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = match outgoing {
            Some(n) => n + this.st.with(|s| s.write_buffer_size),
            None => Self::get_write_buffer_size_inner(slf)?,
        };
        let action = this.st.with(|s| {
            if size >= s.outgoing_high && !s.app_writing_paused {
                s.app_writing_paused = true;
                Some(true)
            } else if size <= s.outgoing_low && s.app_writing_paused {
                s.app_writing_paused = false;
                Some(false)
            } else {
                None
            }
        });
        match action {
            Some(true) => Self::call_flow(slf, intern!(py, "pause_writing")),
            Some(false) => Self::call_flow(slf, intern!(py, "resume_writing")),
            None => Ok(()),
        }
    }

    // Flow control for reads from the SSL socket

    pub(super) fn get_read_buffer_size_inner(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let py = slf.py();
        let incoming = slf.get().st.with(|s| s.incoming.clone_ref(py));
        incoming.bind(py).getattr(intern!(py, "pending"))?.extract()
    }

    pub(super) fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading_sized(slf, None)
    }

    /// `_control_ssl_reading()`, given the incoming BIO's size if known.
    pub(super) fn control_ssl_reading_sized(
        slf: &Bound<'_, Self>,
        incoming: Option<i64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = match incoming {
            Some(n) => n,
            None => Self::get_read_buffer_size_inner(slf)?,
        };
        let action = this.st.with(|s| {
            if size >= s.incoming_high && !s.ssl_reading_paused {
                s.ssl_reading_paused = true;
                Some(intern!(py, "pause_reading"))
            } else if size <= s.incoming_low && s.ssl_reading_paused {
                s.ssl_reading_paused = false;
                Some(intern!(py, "resume_reading"))
            } else {
                None
            }
        });
        if let Some(m) = action {
            this.transport_obj(py).call_method0(m)?;
        }
        Ok(())
    }
}
