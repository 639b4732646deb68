//! Write flow control as every transport has it (stream, datagram, TLS): asyncio's
//! watermark defaults and their check (`add_flowcontrol_defaults`), and the call of the
//! protocol's `pause_writing()` / `resume_writing()`, whose failure goes to the exception
//! handler as `_FlowControlMixin` reports it. Each transport keeps its own state and the
//! size it compares against the watermarks.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple};

use crate::pyo::exc::is_fatal;

/// Watermarks as asyncio's `add_flowcontrol_defaults(high, low, kb)` makes them.
pub(crate) struct Limits {
    /// The high watermark, as a byte count compared with a buffer's size.
    pub(crate) high: i64,
    /// The low watermark, likewise.
    pub(crate) low: i64,
    /// `(low, high)` as asyncio keeps them, for `get_write_buffer_limits()`, when they are
    /// not plain integers (asyncio takes floats, `high=1e6`, and returns them as given);
    /// `None` when `(low, high)` says it.
    pub(crate) given: Option<Py<PyTuple>>,
}

/// asyncio's `add_flowcontrol_defaults(high, low, kb)`: `kb` KiB as the default high
/// watermark and a quarter of the high one (floor division) as the default low one.
/// Plain integers are worked out here; any other value (a float, a huge int) with
/// Python's own operators and comparisons, as asyncio does, so its errors are asyncio's
/// (`TypeError` for a str), and the watermarks compared with a buffer's size are then
/// the values' floors (a byte count exceeds 10.5 exactly when it exceeds 10).
pub(crate) fn limits(
    high: Option<&Bound<'_, PyAny>>,
    low: Option<&Bound<'_, PyAny>>,
    kb: i64,
) -> PyResult<Limits> {
    let small = |v: Option<&Bound<'_, PyAny>>| match v {
        None => Some(None),
        Some(v) if v.is_exact_instance_of::<PyInt>() => v.extract::<i32>().ok().map(Some),
        Some(_) => None,
    };
    if let (Some(high), Some(low)) = (small(high), small(low)) {
        // Within i32, 4 * low cannot overflow an i64.
        let (high, low) = (high.map(i64::from), low.map(i64::from));
        let hi = match (high, low) {
            (Some(h), _) => h,
            (None, None) => kb * 1024,
            (None, Some(l)) => 4 * l,
        };
        let lo = low.unwrap_or(hi.div_euclid(4));
        if !(hi >= lo && lo >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({hi}) must be >= low ({lo}) must be >= 0"
            )));
        }
        return Ok(Limits {
            high: hi,
            low: lo,
            given: None,
        });
    }
    let Some(py) = high.or(low).map(|v| v.py()) else {
        // (Two Nones took the integer path above.)
        return limits(None, None, kb);
    };
    let four = 4i64.into_pyobject(py)?;
    let hi = match (high, low) {
        (Some(h), _) => h.clone(),
        (None, None) => (kb * 1024).into_pyobject(py)?.into_any(),
        (None, Some(l)) => four.mul(l)?,
    };
    let lo = match low {
        Some(l) => l.clone(),
        None => hi.floor_div(&four)?,
    };
    // asyncio: `if not high >= low >= 0`.
    if !(hi.ge(&lo)? && lo.ge(0)?) {
        return Err(PyValueError::new_err(format!(
            "high ({}) must be >= low ({}) must be >= 0",
            hi.repr()?,
            lo.repr()?
        )));
    }
    let floor = |v: &Bound<'_, PyAny>| -> PyResult<i64> {
        Ok(match v.extract::<i64>() {
            Ok(n) => n,
            // `as` saturates: inf and huge values become i64::MAX.
            Err(_) => v.extract::<f64>()?.floor() as i64,
        })
    };
    Ok(Limits {
        high: floor(&hi)?,
        low: floor(&lo)?,
        given: Some(PyTuple::new(py, [lo, hi])?.unbind()),
    })
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
