//! The handshake: starting it (arming its timeout), `do_handshake()` as records arrive,
//! and its completion: the extra info (`peercert`, `cipher`, ...), the waiter, the app
//! protocol's `connection_made`, the first read. `_check_handshake_timeout` is in `api.rs`.

use pyo3::intern;
use pyo3::prelude::*;

use super::{is_again, is_exc, is_exception, names, AppState, SSLProtocolCore, State};
use crate::pyo::call::vcall;

impl SSLProtocolCore {
    // Handshake flow

    pub(super) fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lp = this.loop_(py);
        let start = if this.debug(py)? {
            Self::log_debug(py, ("%r starts SSL handshake", slf))?;
            Some(lp.call_method0(intern!(py, "time"))?.extract::<f64>()?)
        } else {
            None
        };
        this.st.with(|s| s.handshake_start_time = start);
        this.set_state(State::DoHandshake)?;
        let timeout = this.st.with(|s| s.handshake_timeout.clone_ref(py));
        let cb = slf.getattr(intern!(py, "_check_handshake_timeout"))?;
        let handle = lp.call_method1(intern!(py, "call_later"), (timeout, cb))?;
        let old = this
            .st
            .with(|s| s.handshake_timeout_handle.replace(handle.unbind()));
        drop(old);
        // A server's first `do_handshake()` with nothing received can only raise
        // `SSLWantReadError` (it waits for the ClientHello) and has nothing to send: skip
        // it, and the exception it would make, until the first bytes arrive. A client's
        // makes its ClientHello.
        if this.st.with(|s| s.server_side) && this.nothing_to_read(py)? {
            return Ok(());
        }
        Self::do_handshake(slf)
    }

    pub(super) fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let n = names(py)?;
        let f = slf.get().st.with(|s| s.m.do_handshake.clone_ref(py));
        match vcall(f.bind(py), &[]) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(e) if is_again(py, &e, n) => Self::process_outgoing(slf),
            Err(e) if is_exc(py, &e, &n.ssl_error) => Self::on_handshake_complete(slf, Some(e)),
            Err(e) => Err(e),
        }
    }

    pub(super) fn cancel_handle(py: Python<'_>, h: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(h) = h {
            h.bind(py).call_method0(intern!(py, "cancel"))?;
        }
        Ok(())
    }

    pub(super) fn on_handshake_complete(
        slf: &Bound<'_, Self>,
        handshake_exc: Option<PyErr>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let h = this.st.with(|s| s.handshake_timeout_handle.take());
        Self::cancel_handle(py, h)?;
        let sslobj = this.st.with(|s| s.sslobj.clone_ref(py)).into_bound(py);
        let res = match handshake_exc {
            Some(e) => Err(e),
            None => this
                .set_state(State::Wrapped)
                .and_then(|()| sslobj.call_method0(intern!(py, "getpeercert"))),
        };
        let peercert = match res {
            Ok(p) => p,
            Err(e) if is_exception(py, &e) => {
                this.set_state(State::Unwrapped)?;
                let exc = e.into_value(py).into_bound(py).into_any();
                let msg = if exc.is_instance(names(py)?.cert_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                Self::fatal_error(slf, &exc, msg)?;
                return this.wakeup_waiter(py, Some(&exc));
            }
            Err(e) => return Err(e),
        };
        if this.debug(py)? {
            let start = this.st.with(|s| s.handshake_start_time).unwrap_or(0.0);
            let now: f64 = this
                .loop_(py)
                .call_method0(intern!(py, "time"))?
                .extract()?;
            Self::log_debug(
                py,
                ("%r: SSL handshake took %.1f ms", slf, (now - start) * 1e3),
            )?;
        }
        let extra = this.st.with(|s| s.extra.clone_ref(py)).into_bound(py);
        extra.set_item(intern!(py, "peercert"), peercert)?;
        extra.set_item(
            intern!(py, "cipher"),
            sslobj.call_method0(intern!(py, "cipher"))?,
        )?;
        extra.set_item(
            intern!(py, "compression"),
            sslobj.call_method0(intern!(py, "compression"))?,
        )?;
        extra.set_item(intern!(py, "ssl_object"), &sslobj)?;
        let made = this.st.with(|s| {
            if s.app_state == AppState::Init {
                s.app_state = AppState::ConMade;
                true
            } else {
                false
            }
        });
        if made {
            let app = this.app_protocol_obj(py);
            let t = Self::get_app_transport_inner(slf)?;
            app.call_method1(intern!(py, "connection_made"), (t,))?;
        }
        this.wakeup_waiter(py, None)?;
        Self::do_read(slf)
    }
}
