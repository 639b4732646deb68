//! Calls through vectorcall: no argument tuple or keyword dict built.

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::context::with_context;

/// `func(*argv)` through vectorcall (no argument tuple), discarding the result.
#[inline(always)]
pub fn vectorcall(
    py: Python<'_>,
    func: &Bound<'_, PyAny>,
    argv: &[*mut ffi::PyObject],
) -> PyResult<()> {
    // SAFETY: `argv` holds borrowed references the caller keeps alive for the call; the
    // result is a new reference (released here) or NULL with an exception set.
    unsafe {
        let res = ffi::PyObject_Vectorcall(
            func.as_ptr(),
            argv.as_ptr(),
            argv.len(),
            std::ptr::null_mut(),
        );
        if res.is_null() {
            return Err(PyErr::fetch(py));
        }
        ffi::Py_DECREF(res);
    }
    Ok(())
}

/// Calls `func(*args)` inside `ctx`, as `ctx.run(func, *args)` would, without building
/// an argument vector for `Context.run`.
#[inline]
pub fn call_in_context(
    py: Python<'_>,
    ctx: &Bound<'_, PyAny>,
    func: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    // SAFETY: `args` is a live tuple (the macro reads its size field).
    let no_args = unsafe { ffi::PyTuple_GET_SIZE(args.as_ptr()) } == 0;
    with_context(py, ctx, || {
        if no_args {
            return vectorcall(py, func, &[]);
        }
        // SAFETY: `func` and `args` are live; a NULL result means an exception is set.
        unsafe {
            let res = ffi::PyObject_Call(func.as_ptr(), args.as_ptr(), std::ptr::null_mut());
            if res.is_null() {
                return Err(PyErr::fetch(py));
            }
            ffi::Py_DECREF(res);
        }
        Ok(())
    })
}

/// `callable(*args)` through vectorcall (no argument tuple built).
pub fn vcall<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[*mut ffi::PyObject],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `args` are borrowed references kept alive by the caller for the call; a new
    // reference or NULL with an exception set is returned.
    unsafe {
        Bound::from_owned_ptr_or_err(
            callable.py(),
            ffi::PyObject_Vectorcall(
                callable.as_ptr(),
                args.as_ptr(),
                args.len(),
                ptr::null_mut(),
            ),
        )
    }
}
