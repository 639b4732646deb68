//! Shutdown and errors: the TLS close (flush, `unwrap()`, arming its timeout, closing
//! the transport below), abort, and fatal errors (reported to the loop's exception
//! handler). `connection_lost` and the timeout checks are in `api.rs`.

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{is_again, is_exc, names, SSLProtocolCore, State};

impl SSLProtocolCore {
    // Shutdown flow

    pub(super) fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let state = this.state();
        if matches!(state, State::Flushing | State::Shutdown | State::Unwrapped) {
            return Ok(());
        }
        let app_t = this
            .st
            .with(|s| s.app_transport.as_ref().map(|t| t.clone_ref(py)));
        if let Some(t) = app_t {
            t.bind(py).setattr(intern!(py, "_closed"), true)?;
        }
        if state == State::DoHandshake {
            Self::abort_inner(slf, None)
        } else {
            this.set_state(State::Flushing)?;
            let timeout = this.st.with(|s| s.shutdown_timeout.clone_ref(py));
            let cb = slf.getattr(intern!(py, "_check_shutdown_timeout"))?;
            let handle = this
                .loop_(py)
                .call_method1(intern!(py, "call_later"), (timeout, cb))?;
            let old = this
                .st
                .with(|s| s.shutdown_timeout_handle.replace(handle.unbind()));
            drop(old);
            Self::do_flush(slf)
        }
    }

    pub(super) fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)?;
        slf.get().set_state(State::Shutdown)?;
        Self::do_shutdown(slf)
    }

    pub(super) fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let (eof, sslobj) = this.st.with(|s| (s.eof_received, s.sslobj.clone_ref(py)));
        let res = if eof {
            Ok(())
        } else {
            sslobj
                .bind(py)
                .call_method0(intern!(py, "unwrap"))
                .map(drop)
        };
        match res {
            Err(e) if is_again(py, &e, n) => Self::process_outgoing(slf),
            Err(e) if is_exc(py, &e, &n.ssl_error) => {
                Self::on_shutdown_complete(slf, Some(e.into_value(py).into_bound(py).into_any()))
            }
            Err(e) => Err(e),
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
        }
    }

    fn on_shutdown_complete(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let h = this.st.with(|s| s.shutdown_timeout_handle.take());
        Self::cancel_handle(py, h)?;
        match exc {
            Some(e) => Self::fatal_error(slf, &e, "Fatal error on transport"),
            None => {
                let close = this.transport_obj(py).getattr(intern!(py, "close"))?;
                this.loop_(py)
                    .call_method1(intern!(py, "call_soon"), (close,))
                    .map(drop)
            }
        }
    }

    pub(super) fn abort_inner(
        slf: &Bound<'_, Self>,
        exc: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.set_state(State::Unwrapped)?;
        let t = this
            .st
            .with(|s| s.transport.as_ref().map(|t| t.clone_ref(py)));
        if let Some(t) = t {
            let t = t.into_bound(py);
            if names(py)?.abort_takes_exc {
                let exc = exc.unwrap_or_else(|| py.None().into_bound(py));
                t.call_method1(intern!(py, "_force_close"), (exc,))?;
            } else {
                t.call_method0(intern!(py, "abort"))?;
            }
        }
        Ok(())
    }

    pub(super) fn fatal_error(
        slf: &Bound<'_, Self>,
        exc: &Bound<'_, PyAny>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let t = this.transport_obj(py);
        if t.is_truthy()? {
            t.call_method1(intern!(py, "_force_close"), (exc,))?;
        }
        let n = names(py)?;
        if exc.is_instance_of::<PyOSError>() {
            if this.debug(py)? {
                let kw = PyDict::new(py);
                kw.set_item("exc_info", exc)?;
                n.logger.bind(py).call_method(
                    intern!(py, "debug"),
                    ("%r: %s", slf, message),
                    Some(&kw),
                )?;
            }
        } else if !exc.is_instance(n.cancelled_error.bind(py))? {
            let ctx = PyDict::new(py);
            ctx.set_item("message", message)?;
            ctx.set_item("exception", exc)?;
            ctx.set_item("transport", this.transport_obj(py))?;
            ctx.set_item("protocol", slf)?;
            this.loop_(py)
                .call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        }
        Ok(())
    }
}
