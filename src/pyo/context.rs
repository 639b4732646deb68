//! `contextvars` without Python-level calls: copy the current context, run Rust code inside
//! a context (what `Context.run` does, without building its argument vector).

use pyo3::ffi;
use pyo3::prelude::*;

/// `contextvars.copy_context()`: a new reference to a copy of the current context.
#[inline]
pub fn copy_current(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: attached (`py`); PyContext_CopyCurrent returns a new reference or NULL with
    // an exception set, which from_owned_ptr_or_err handles.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }
}

/// Runs `body` with `ctx` entered as the current context: `ctx.run(...)` without the
/// call. An error from leaving the context wins, with the body's error as its context.
#[inline(always)]
pub fn with_context<R>(
    py: Python<'_>,
    ctx: &Bound<'_, PyAny>,
    body: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    super::gil_cell::assert_no_access_open("a context entered");
    // SAFETY: `ctx` is a live object and the thread is attached (`py`); Exit is only
    // called after a successful Enter. A failure leaves an exception set, which `fetch`
    // takes.
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let res = body();
    // SAFETY: as above, pairing the successful Enter.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } < 0 {
        let err = PyErr::fetch(py);
        if let Err(first) = res {
            err.set_context(py, Some(first));
        }
        return Err(err);
    }
    res
}

/// `PyContext_Enter(ctx)`; an error is returned as the exception object (see
/// [`super::exc::fetch_exc`]). Pair a success with [`exit_raw`].
#[inline]
pub fn enter_raw<'py>(ctx: &Bound<'py, PyAny>) -> Result<(), Bound<'py, PyAny>> {
    // SAFETY: `ctx` is live and the thread attached; a failure leaves an exception set.
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
        return Err(super::exc::fetch_exc(ctx.py()));
    }
    Ok(())
}

/// `PyContext_Exit(ctx)` after a successful [`enter_raw`]; an error as for `enter_raw`.
#[inline]
pub fn exit_raw<'py>(ctx: &Bound<'py, PyAny>) -> Result<(), Bound<'py, PyAny>> {
    // SAFETY: as in `enter_raw`; CPython checks that `ctx` is the current context.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } < 0 {
        return Err(super::exc::fetch_exc(ctx.py()));
    }
    Ok(())
}
