//! Write flow control as every transport has it (stream, datagram, TLS): asyncio's
//! watermark defaults and their check (`add_flowcontrol_defaults`), and the call of the
//! protocol's `pause_writing()` / `resume_writing()`, whose failure goes to the exception
//! handler as `_FlowControlMixin` reports it. Each transport keeps its own state and the
//! size it compares against the watermarks.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::pyo::exc::is_fatal;

/// asyncio's `add_flowcontrol_defaults(high, low, kb)`: `(high, low)`, with `kb` KiB as the
/// default high watermark and a quarter of the high one as the default low one.
pub(crate) fn limits(high: Option<i64>, low: Option<i64>, kb: i64) -> PyResult<(i64, i64)> {
    let hi = match (high, low) {
        (Some(h), _) => h,
        (None, None) => kb * 1024,
        (None, Some(l)) => 4 * l,
    };
    let lo = low.unwrap_or(hi / 4);
    if !(hi >= lo && lo >= 0) {
        return Err(PyValueError::new_err(format!(
            "high ({hi}) must be >= low ({lo}) must be >= 0"
        )));
    }
    Ok((hi, lo))
}

/// Calls `protocol.<method>()` (`pause_writing` or `resume_writing`). A failure other than
/// `SystemExit`/`KeyboardInterrupt` goes to the loop's exception handler with
/// "protocol.<method>() failed" and the `transport` and `protocol` asyncio names there
/// (for TLS, the app transport and the SSL protocol).
pub(crate) fn call_protocol(
    loop_: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    method: &Bound<'_, PyString>,
    ctx_transport: &Bound<'_, PyAny>,
    ctx_protocol: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = loop_.py();
    let err = match protocol.call_method0(method) {
        Ok(_) => return Ok(()),
        Err(e) if is_fatal(py, &e) => return Err(e),
        Err(e) => e,
    };
    let ctx = PyDict::new(py);
    ctx.set_item("message", format!("protocol.{method}() failed"))?;
    ctx.set_item("exception", err.value(py))?;
    ctx.set_item("transport", ctx_transport)?;
    ctx.set_item("protocol", ctx_protocol)?;
    loop_
        .call_method1(pyo3::intern!(py, "call_exception_handler"), (ctx,))
        .map(drop)
}
